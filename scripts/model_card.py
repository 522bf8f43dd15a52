"""Write the bundled model's folder and card from a training run and its evaluations.

    python scripts/model_card.py RUNS_DIR BEST_VARIANT models/avscene-av-small
    python scripts/model_card.py --update-separation models/avscene-av-small --sep VAL.txt --sep-shift SHIFT.txt
    python scripts/model_card.py RUNS_DIR --update-variants models/avscene-av-small
    python scripts/model_card.py --update-noise-stress models/avscene-av-small --eval-val VAL.json --eval-shift SHIFT.json

The command line of :mod:`avscene.checkpoint.bundle` (the folder: weights and ``config.json`` of
``RUNS_DIR/BEST_VARIANT``) and :mod:`avscene.checkpoint.card` (the card, with the variant comparison
read from ``RUNS_DIR/*/eval_val*.json``, produced by ``scripts/train_bundled.sh``) — figures are
copied, never typed in.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avscene.checkpoint.bundle import replace_classifier, write_bundled
from avscene.checkpoint.card import (
    RECIPE_NOTE,
    update_noise_stress,
    update_separation,
    update_splits,
    update_variants,
)
from avscene.errors import AvsceneError


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path, nargs="?")
    ap.add_argument("best", nargs="?")
    ap.add_argument("out", type=Path, nargs="?")
    ap.add_argument("--sep", type=Path, default=None, help="the text report of avscene evaluate-separation "
                    "on val/sep, copied into the card")
    ap.add_argument("--sep-shift", type=Path, default=None, help="the same on val_shift/sep")
    ap.add_argument("--update-separation", type=Path, default=None, metavar="MODEL_DIR",
                    help="only rewrite the separation section of MODEL_DIR/README.md")
    ap.add_argument("--update-evaluation", type=Path, default=None, metavar="MODEL_DIR",
                    help="only rewrite the val / val_shift section of MODEL_DIR/README.md (with --eval-val, --eval-shift)")
    ap.add_argument("--update-variants", type=Path, default=None, metavar="MODEL_DIR",
                    help="only rewrite the rows of the variant table of MODEL_DIR/README.md from the runs of RUNS_DIR")
    ap.add_argument("--update-noise-stress", type=Path, default=None, metavar="MODEL_DIR",
                    help="only rewrite the noise-stress section of MODEL_DIR/README.md (with --eval-val and "
                         "optionally --eval-shift: avscene evaluate --add-noise ... --json-out files)")
    ap.add_argument("--replace-classifier", type=Path, default=None, metavar="MODEL_DIR",
                    help="only replace MODEL_DIR's classifier by the run RUNS_DIR fine-tuned from it (separation kept)")
    ap.add_argument("--recipe-note", default=RECIPE_NOTE,
                    help="with --replace-classifier: what the fine-tuning changed, for the card's recipe")
    ap.add_argument("--eval-val", type=Path, default=None, help="avscene evaluate --json-out of the model on val")
    ap.add_argument("--eval-shift", type=Path, default=None, help="the same on val_shift")
    ap.add_argument("--keep-separation", action="store_true",
                    help="keep OUT_DIR's separation entry of config.json (dictionaries, separator, default "
                         "method) and the files it declares, when only the classifier is replaced")
    ap.add_argument("--keep-earlier-table", action="store_true",
                    help="carry OUT_DIR/README.md's previous variant table (val only, older columns) over "
                         "as an earlier comparison, for runs whose folders are no longer on disk")
    ap.add_argument("--base", type=Path, default=None, metavar="RUN_DIR",
                    help="for a fine-tuned model: the run it started from (its command goes first in the card)")
    ap.add_argument("--processes", type=int, default=None,
                    help="training processes, for runs that predate its record in config.json")
    args = ap.parse_args()
    try:
        _run(ap, args)
    except AvsceneError as e:
        raise SystemExit(f"error: {e}") from e


def _run(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.update_evaluation is not None:
        if args.eval_val is None or args.eval_shift is None:
            ap.error("--update-evaluation needs --eval-val and --eval-shift")
        update_splits(args.update_evaluation, args.eval_val, args.eval_shift)
    elif args.replace_classifier is not None:
        if args.runs is None:
            ap.error("--replace-classifier needs the run folder as RUNS_DIR")
        replace_classifier(args.replace_classifier, args.runs, args.recipe_note)
    elif args.update_noise_stress is not None:
        if args.eval_val is None:
            ap.error("--update-noise-stress needs --eval-val (and optionally --eval-shift)")
        update_noise_stress(args.update_noise_stress, args.eval_val, args.eval_shift)
    elif args.update_variants is not None:
        if args.runs is None:
            ap.error("--update-variants needs RUNS_DIR")
        update_variants(args.update_variants, args.runs)
    elif args.update_separation is not None:
        update_separation(args.update_separation, args.sep, args.sep_shift)
    elif args.out is None:
        ap.error("give RUNS_DIR BEST_VARIANT OUT_DIR, or --update-separation MODEL_DIR")
    else:
        write_bundled(args.runs, args.best, args.out, sep=args.sep, sep_shift=args.sep_shift,
                      keep_separation=args.keep_separation, keep_earlier_table=args.keep_earlier_table,
                      base=args.base, processes=args.processes)


if __name__ == "__main__":
    main()
