#!/bin/bash
# The runs of docs/results/separator-ablation, one at a time, one CPU thread each (run from the
# repository root; avbench at ../shared/avbench). Each run fine-tunes a copy of the bundled
# model's mask network (1200 steps: anchors and last session's pairs-assessor; 800 steps: the
# other three, for lack of time) and is scored on the training hold-out, the only set choices are
# made on.
set -e
export OMP_NUM_THREADS=1
AV=../shared/avbench
common="--threads 1 --fine-tune --lr 3e-4 --seed 0"
declare -A recipe=(
  [anchors]="--steps 1200 --pair-fraction 0"
  [pairs]="--steps 800 --pair-fraction 0.5 --assessor-weight 0 --overlap-weight 0"
  [pairs-overlap]="--steps 800 --pair-fraction 0.5 --assessor-weight 0 --overlap-weight 1.0"
  [pairs-assessor]="--steps 1200 --pair-fraction 0.5 --assessor-weight 0.02 --overlap-weight 1.0"
  [coseparation]="--steps 800 --pair-fraction 0.5 --objective coseparation --assessor-weight 0 --overlap-weight 1.0"
)
for run in anchors pairs pairs-overlap pairs-assessor coseparation; do
  rm -rf runs/ablation/$run && mkdir -p runs/ablation/$run && cp -r models/avscene-av-small runs/ablation/$run/model
  avscene train-separator runs/ablation/$run/model $AV/train/labels.csv $common ${recipe[$run]} \
      --log runs/ablation/$run/log.jsonl
  avscene evaluate-separation $AV/train --pairs --holdout --per-cell 4 --model runs/ablation/$run/model \
      --only hybrid --only mask --json-out runs/ablation/$run/holdout.json
done
# the bundled model (every method: the default method is chosen here)
avscene evaluate-separation $AV/train --pairs --holdout --per-cell 4 --model models/avscene-av-small \
    --json-out runs/ablation/bundled/holdout.json
# val and val_shift (two-source and one-source sets) of a run (RUN: coseparation, pairs-overlap)
for split in val val_shift; do
  avscene evaluate-separation $AV/$split --pairs --per-cell 6 --model runs/ablation/RUN/model --only hybrid --only mask \
      --json-out runs/ablation/RUN/pairs_$split.json
  avscene evaluate-separation $AV/$split/sep --model runs/ablation/RUN/model --json-out runs/ablation/RUN/sep_$split.json
done
# the memory and speed bench (not a test)
python bench/separate_long.py --minutes 60 --model models/avscene-av-small --repeat 3 --json runs/ablation/separate_long.json
