#!/bin/bash
# the band_norm run on val / val_shift with the held-out noise families at 0 and +10 dB and pure noise
cd "$(dirname "$0")/../../../.." && . .venv/bin/activate
D=docs/training/2026-12-05-s12/bandnorm
for s in val val_shift; do
  avscene evaluate ../shared/avbench/$s/labels.csv --model runs/s12/bandnorm --add-noise heldout:0 --add-noise heldout:10 \
    --json-out $D/eval_${s}_noise.json || exit 1
done
