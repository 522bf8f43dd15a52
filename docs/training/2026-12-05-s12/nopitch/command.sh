#!/bin/bash
# issue 19 ablation: the bundled recipe (ctx) without pitch shift and frequency warp
cd "$(dirname "$0")/../../../.." && . .venv/bin/activate
OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 -m avscene train ../shared/avbench/train/labels.csv -o runs/s12/nopitch \
  --preset small --batch-size 12 --seed 0 --device cpu --variant async --epochs 25 --lr 0.0005 --patience 25 \
  --mix-prob 0.3 --aux-loss 0.5 --init-model /tmp/ftmodel/models/avscene-av-small --model-opt 'audio_context=[1,2,4]' \
  --aug-opt background_prob=0.5 --aug-opt 'background_snr_db=[-5,20]' --aug-opt negative_prob=0.1 --keep-epochs || exit 1
D=docs/training/2026-12-05-s12/nopitch
for s in val val_shift; do
  avscene evaluate ../shared/avbench/$s/labels.csv --model runs/s12/nopitch --add-noise heldout:0 --add-noise heldout:10 \
    --json-out $D/eval_${s}_noise.json || exit 1
done
