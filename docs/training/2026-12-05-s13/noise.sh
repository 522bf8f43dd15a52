#!/bin/bash
# Noise stress of one session-13 run (held-out noise families at 0 and 10 dB, pure noise), as the
# bundled model's card measures it. Usage: noise.sh NAME [NAME...]
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
for name in "$@"; do
  out=runs/s13/$name; doc=docs/training/2026-12-05-s13/$name
  for s in val val_shift; do
    OMP_NUM_THREADS=1 avscene evaluate ../shared/avbench/$s/labels.csv --model "$out" --add-noise heldout:0 \
      --add-noise heldout:10 --json-out "$doc/eval_${s}_noise.json" > "$doc/eval_${s}_noise.log" 2>&1 \
      || echo "noise $name $s failed"
  done
  echo "$(date -u +%FT%TZ) noise done $name"
done
