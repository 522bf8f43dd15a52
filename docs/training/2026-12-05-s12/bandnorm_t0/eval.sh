#!/bin/bash
# the band_norm run at threshold 0 (not the +0.20 its robust calibration chose): separates the normalisation from the threshold
cd "$(dirname "$0")/../../../.." && . .venv/bin/activate
D=docs/training/2026-12-05-s12/bandnorm_t0
for s in val val_shift; do
  avscene evaluate ../shared/avbench/$s/labels.csv --model runs/s12/bandnorm --threshold 0 --add-noise heldout:0 --add-noise heldout:10 \
    --json-out $D/eval_${s}_noise.json || exit 1
done
