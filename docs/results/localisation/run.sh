#!/bin/bash
# Issue 30, inference side: boxes and sound events of the bundled model, before and after, on val and val_shift.
# Usage (from anywhere; AVBENCH is the avbench folder, default ../shared/avbench from the repository root):
#   docs/results/localisation/run.sh before after     # avscene evaluate, old rule and new defaults, both splits
#   BEFORE_TREE=<checkout of the commit before> docs/results/localisation/run.sh bench   # warm localize speed
cd "$(dirname "$0")/../../.." || exit 1
AVBENCH=${AVBENCH:-../shared/avbench}
OUT=docs/results/localisation
MODEL=(--model models/avscene-av-small --offline)
# the rule before this change: the top window, events of heard classes where E > 0
BEFORE=(--box-mode window --no-snap --event-classes heard --no-hysteresis)
for what in "$@"; do
  case $what in
    before|after)
      for s in val val_shift; do
        opts=(); [ "$what" = before ] && opts=("${BEFORE[@]}")
        echo "$(date -u +%FT%TZ) evaluate $what $s"
        python -m avscene evaluate "$AVBENCH/$s/labels.csv" "${MODEL[@]}" "${opts[@]}" \
          --json-out "$OUT/eval_${what}_$s.json" --force > "$OUT/eval_${what}_$s.log" 2>&1 || echo "evaluate $what $s failed"
      done;;
    bench)
      clip=examples/clips/car_ambulance_sync.mp4
      [ -n "$BEFORE_TREE" ] && PYTHONPATH=$BEFORE_TREE python "$BEFORE_TREE/bench/run.py" --durations "" --jobs-clips 0 \
        --repeat 7 --clip "$clip" --json "$OUT/bench_before.json" > "$OUT/bench_before.log" 2>&1
      PYTHONPATH=$PWD python bench/run.py --durations "" --jobs-clips 0 --repeat 7 --clip "$clip" \
        --json "$OUT/bench_after.json" > "$OUT/bench_after.log" 2>&1;;
    *) echo "unknown step $what"; exit 2;;
  esac
done
