#!/bin/bash
# The runs of docs/results/separator-remix, one at a time, one CPU thread each (run from the
# repository root; avbench at ../shared/avbench). Bootstrapped remixing (RemixIT): the bundled
# model's default separation (hybrid) is the teacher; its estimates of the single-label training
# clips are cached (runs/remix/teacher, built by the first train-separator call), and a copy of the
# bundled mask network is fine-tuned on remixes of them (800 steps). Round 2: the student's
# checkpoint builds a new cache (runs/remix/teacher2) and is fine-tuned again on its remixes;
# round 3 the same from round 2 (runs/remix/teacher3).
set -e
export OMP_NUM_THREADS=1
AV=../shared/avbench
common="--threads 1 --fine-tune --lr 3e-4 --steps 800 --pair-fraction 0.5 --overlap-weight 1 --objective remix"
mkdir -p runs/remix
rm -rf runs/remix/remix && mkdir -p runs/remix/remix && cp -r models/avscene-av-small runs/remix/remix/model
avscene train-separator runs/remix/remix/model $AV/train/labels.csv $common --seed 0 \
    --teacher-cache runs/remix/teacher --log runs/remix/remix/log.jsonl
rm -rf runs/remix/remix-round2 && mkdir -p runs/remix/remix-round2 && cp -r runs/remix/remix/model runs/remix/remix-round2/model
avscene train-separator runs/remix/remix-round2/model $AV/train/labels.csv $common --seed 1 \
    --teacher-cache runs/remix/teacher2 --log runs/remix/remix-round2/log.jsonl
rm -rf runs/remix/remix-round3 && mkdir -p runs/remix/remix-round3 && cp -r runs/remix/remix-round2/model runs/remix/remix-round3/model
avscene train-separator runs/remix/remix-round3/model $AV/train/labels.csv $common --seed 2 \
    --teacher-cache runs/remix/teacher3 --log runs/remix/remix-round3/log.jsonl
# the hold-outs (the only sets choices are made on): the training hold-out, and the remix hold-out
# (remixes of the held-out clips' estimates of the first teacher, scored against them)
mkdir -p runs/remix/bundled
avscene evaluate-separation runs/remix/teacher --pairs --remix --per-cell 4 --model models/avscene-av-small \
    --only hybrid --only mask --only dictionary --json-out runs/remix/bundled/remix_holdout.json
for run in remix remix-round2 remix-round3; do
  avscene evaluate-separation $AV/train --pairs --holdout --per-cell 4 --model runs/remix/$run/model \
      --only hybrid --only mask --json-out runs/remix/$run/holdout.json
  avscene evaluate-separation runs/remix/teacher --pairs --remix --per-cell 4 --model runs/remix/$run/model \
      --only hybrid --only mask --only dictionary --json-out runs/remix/$run/remix_holdout.json
done
# val and val_shift (reported, never used to choose): two sources and one source
avscene evaluate-separation $AV/val_shift/sep --model models/avscene-av-small --json-out runs/remix/bundled/sep_val_shift.json
# measured (time): remix and remix-round3: val_shift only; remix-round2: val and val_shift
for run in remix remix-round2 remix-round3; do
  for split in val val_shift; do
    avscene evaluate-separation $AV/$split --pairs --per-cell 6 --model runs/remix/$run/model --only hybrid --only mask \
        --json-out runs/remix/$run/pairs_$split.json
    avscene evaluate-separation $AV/$split/sep --model runs/remix/$run/model --json-out runs/remix/$run/sep_$split.json
  done
done
