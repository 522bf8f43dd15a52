#!/bin/bash
# Separation of the bundled model after its classifier was replaced by the dense run (separation parts kept).
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
for s in val val_shift; do
  COLUMNS=120 avscene evaluate-separation ../shared/avbench/$s/sep --model models/avscene-av-small \
    > docs/training/2026-12-05-s13/dense/sep_$s.txt 2> docs/training/2026-12-05-s13/dense/sep_$s.log || echo "sep $s failed"
done
echo "$(date -u +%FT%TZ) sep done"
