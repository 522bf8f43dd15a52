#!/bin/bash
# Issue 30 (where and when), training side: short fine-tunes of the bundled model (6 epochs; 3 for
# splice_events, for the CPU time left that day), the bundled recipe (docs/results/README.md, recipe `dense`;
# run "dense", 8 epochs) with one change each. hide_floor ran (docs/results/hide_floor); splice_events ran
# too (docs/results/splice_events); floor_only (the floor without hide-and-seek) and hide_only (hide-and-seek without the floor) separate the two; hide64_floor is hide_floor with 64-px hidden
# patches instead of 32 (large enough to hide a banjo's whole head, whose box is all the model finds). Every run is
# calibrated on the training hold-out (decision threshold after training, then heard / seen
# thresholds with `avscene calibrate`) and evaluated on val and val_shift (with per-class box figures,
# docs/results/per_class_boxes.py); nothing is chosen on them.
# Usage, from the repository root: AVBENCH=<avbench folder> docs/results/issue30_finetunes.sh NAME [NAME...]
cd "$(dirname "$0")/../.." || exit 1
AVBENCH=${AVBENCH:-../shared/avbench}
# Every run starts from `dense`, the model bundled before hide_floor (the runs above started from
# models/avscene-av-small when it was dense; since it is hide_floor, dense is taken from git).
mkdir -p runs/from/dense && git archive aff29de^ models/avscene-av-small | tar -x -C runs/from/dense
RECIPE=(--preset small --batch-size 12 --seed 0 --device cpu --lr 0.0005 --patience 25
  --mix-prob 0.3 --aux-loss 0.5 --init-model runs/from/dense/models/avscene-av-small
  --variant async --pre-opt visual_proposals=dense
  --aug-opt background_prob=0.5 --aug-opt 'background_snr_db=[-5,20]' --aug-opt negative_prob=0.1
  --aug-opt pitch_semitones=2 --aug-opt pitch_prob=0.5 --aug-opt warp=0.08)
declare -A EPOCHS=([hide_floor]=6 [splice_events]=3 [floor_only]=6 [hide_only]=6 [hide64_floor]=6)
declare -A CHANGE=(
  [hide_floor]="--aug-opt hide_prob=0.5 --aug-opt hide_patch=32 --visual-floor 0.5"
  [splice_events]="--model-opt event_head=true --splice-prob 0.3"
  [floor_only]="--visual-floor 0.5"
  [hide_only]="--aug-opt hide_prob=0.5 --aug-opt hide_patch=32"
  [hide64_floor]="--aug-opt hide_prob=0.5 --aug-opt hide_patch=64 --visual-floor 0.5"
)
for name in "$@"; do
  out=runs/issue30/$name; doc=docs/results/$name; mkdir -p "$out" "$doc"
  echo "$(date -u +%FT%TZ) start $name: ${CHANGE[$name]}"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 -m avscene train "$AVBENCH/train/labels.csv" \
    -o "$out" "${RECIPE[@]}" --epochs "${EPOCHS[$name]}" ${CHANGE[$name]} > "$doc/train_stdout.log" 2>&1 || { echo "train $name failed"; continue; }
  cp "$out/train_log.jsonl" "$doc/"
  avscene calibrate "$out" "$AVBENCH/train/labels.csv" > "$doc/calibrate.log" 2>&1 || { echo "calibrate $name failed"; continue; }
  for s in val val_shift; do
    avscene evaluate "$AVBENCH/$s/labels.csv" --model "$out" --json-out "$doc/eval_$s.json" \
      > "$doc/eval_$s.log" 2>&1 || echo "evaluate $name $s failed"
    python docs/results/per_class_boxes.py "$out" "$AVBENCH/$s/labels.csv" "$doc/boxes_$s.json" \
      > "$doc/boxes_$s.log" 2>&1 || echo "per-class boxes $name $s failed"
  done
  echo "$(date -u +%FT%TZ) done $name"
done
