#!/bin/bash
# issue 22: OICR refinement branches (3) added to the bundled model (ctx) and fine-tuned with its recipe;
# then the same weights without the branches (the MIL head chooses the boxes), both evaluated.
cd "$(dirname "$0")/../../../.." && . .venv/bin/activate
OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 -m avscene train ../shared/avbench/train/labels.csv -o runs/s12/oicr \
  --preset small --batch-size 12 --seed 0 --device cpu --variant async --epochs 10 --lr 0.0005 --patience 25 \
  --mix-prob 0.3 --aux-loss 0.5 --init-model models/avscene-av-small --model-opt visual_refine=3 \
  --aug-opt background_prob=0.5 --aug-opt 'background_snr_db=[-5,20]' --aug-opt negative_prob=0.1 \
  --aug-opt pitch_semitones=2 --aug-opt pitch_prob=0.5 --aug-opt warp=0.08 || exit 1
avscene calibrate runs/s12/oicr ../shared/avbench/train/labels.csv || exit 1
python scripts/strip_refiner.py runs/s12/oicr runs/s12/oicr_mil || exit 1
for m in oicr oicr_mil; do for s in val val_shift; do
  avscene evaluate ../shared/avbench/$s/labels.csv --model runs/s12/$m --json-out runs/s12/$m/eval_$s.json || exit 1
done; done
