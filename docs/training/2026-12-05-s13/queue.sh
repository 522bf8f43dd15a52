#!/bin/bash
# Issue 22 ablation (session 13): 8-epoch fine-tunes of the bundled model (ctx), the bundled recipe with one
# change each; every run calibrated (decision threshold on the training hold-out, then heard / seen
# thresholds with `avscene calibrate`) and evaluated on val and val_shift. Usage: queue.sh NAME [NAME...]
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
RECIPE=(--preset small --batch-size 12 --seed 0 --device cpu --epochs 8 --lr 0.0005 --patience 25
  --mix-prob 0.3 --aux-loss 0.5 --init-model models/avscene-av-small
  --aug-opt background_prob=0.5 --aug-opt 'background_snr_db=[-5,20]' --aug-opt negative_prob=0.1
  --aug-opt pitch_semitones=2 --aug-opt pitch_prob=0.5 --aug-opt warp=0.08)
declare -A CHANGE=(
  [ctl]="--variant async"
  [avor]="--variant avor"
  [refine]="--variant async --refine-labels"
  [frames]="--variant async --aug-opt zoom=0.3 --aug-opt blur=0.3"
  [oicr]="--variant async --model-opt visual_refine=3 --oicr-weight 0.1"
  [dense]="--variant async --pre-opt visual_proposals=dense"
  [dense_oicr]="--variant async --pre-opt visual_proposals=dense --model-opt visual_refine=3 --oicr-weight 0.1"
)
for name in "$@"; do
  out=runs/s13/$name; doc=docs/training/2026-12-05-s13/$name; mkdir -p "$out" "$doc"
  echo "$(date -u +%FT%TZ) start $name: ${CHANGE[$name]}"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 -m avscene train ../shared/avbench/train/labels.csv \
    -o "$out" "${RECIPE[@]}" ${CHANGE[$name]} > "$doc/train_stdout.log" 2>&1 || { echo "train $name failed"; continue; }
  cp "$out/train_log.jsonl" "$doc/" 2>/dev/null
  avscene calibrate "$out" ../shared/avbench/train/labels.csv > "$doc/calibrate.log" 2>&1 || { echo "calibrate $name failed"; continue; }
  for s in val val_shift; do
    avscene evaluate ../shared/avbench/$s/labels.csv --model "$out" --json-out "$doc/eval_$s.json" \
      > "$doc/eval_$s.log" 2>&1 || echo "evaluate $name $s failed"
  done
  echo "$(date -u +%FT%TZ) done $name"
done
