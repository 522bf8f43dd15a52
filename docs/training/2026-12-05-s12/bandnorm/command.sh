#!/bin/bash
# issue 19 ablation: the bundled recipe (ctx) with per-band normalisation of the audio front end,
# epoch and threshold chosen by the robust selection (hold-out clean + training-family noise at 0 dB + pure noise)
# start model: mkdir /tmp/ftmodel && git archive a889ba7 models/avscene-av-small | tar -x -C /tmp/ftmodel
cd "$(dirname "$0")/../../../.." && . .venv/bin/activate
OMP_NUM_THREADS=1 exec torchrun --standalone --nproc_per_node=2 -m avscene train ../shared/avbench/train/labels.csv -o runs/s12/bandnorm \
  --preset small --batch-size 12 --seed 0 --device cpu --variant async --epochs 25 --lr 0.0005 --patience 25 \
  --mix-prob 0.3 --aux-loss 0.5 --init-model /tmp/ftmodel/models/avscene-av-small --model-opt 'audio_context=[1,2,4]' \
  --aug-opt background_prob=0.5 --aug-opt 'background_snr_db=[-5,20]' --aug-opt negative_prob=0.1 \
  --aug-opt pitch_semitones=2 --aug-opt pitch_prob=0.5 --aug-opt warp=0.08 \
  --pre-opt band_norm=true --select robust --keep-epochs
