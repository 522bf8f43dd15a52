"""Box rules of ``localize`` on one split with ground truth, from one forward pass per clip, scored as
``avscene evaluate`` scores them (the first box ``tasks.localize.report_boxes`` gives for each class at
each frame where it is visible; pointing, CorLoc@0.5, median IoU, median box/object area, per class).

    python docs/results/box_erasing/ablation.py ../shared/avbench/val docs/results/box_erasing/ablation_val.json \
        [--regressor runs/box_regressor.safetensors] [--rules NAME ...]

Every rule is fixed beforehand (nothing is tuned here); the manifests are named relative to the
repository root (``../shared/avbench/...``) whatever path is given.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from avscene.checkpoint.box_regressor import read_box_regressor
from avscene.evaluation.evaluate import read_ground_truth, score_boxes
from avscene.evaluation.metrics.localization import LocalizationScores
from avscene.tasks._pipeline import analyse
from avscene.tasks.localize import LocalizeOptions
from avscene.tasks.models import load_model
from avscene.train.data import read_manifest

MODEL = "models/avscene-av-small"
RULES = {  # name -> options
    "window": LocalizeOptions(box_mode="window", snap=False),
    "evidence": LocalizeOptions(snap=False),
    "evidence, snapped (default)": LocalizeOptions(),
    "erase": LocalizeOptions(box_mode="erase", snap=False),
    "erase, snapped": LocalizeOptions(box_mode="erase"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("split", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--regressor", type=Path, default=None, help="a box regressor file: adds its rules")
    ap.add_argument("--rules", nargs="*", default=None, help="names of RULES to run (default: all)")
    args = ap.parse_args()
    loaded = load_model(MODEL, offline=True, device="cpu")
    names = list(loaded.labels)
    gt = read_ground_truth(args.split / "ground_truth.jsonl")
    rules = dict(RULES)
    if args.regressor is not None:
        reg = read_box_regressor(args.regressor)
        rules.update({"evidence, regressor": LocalizeOptions(snap=False, box_regressor=reg),
                      "evidence, regressor, snapped": LocalizeOptions(box_regressor=reg),
                      "erase, regressor, snapped": LocalizeOptions(box_mode="erase", box_regressor=reg)})
    rules = {k: v for k, v in rules.items() if args.rules is None or k in args.rules}
    loc = {k: LocalizationScores() for k in rules}
    seconds = dict.fromkeys(rules, 0.0)
    for ex in read_manifest(args.split / "labels.csv", class_names=names):
        rec = gt.get(ex.path.stem)
        shown = [ev for ev in (rec or {}).get("events", []) if ev.get("visual")]
        if not shown:
            continue
        a = analyse(ex.path, loaded, keep_frames=True)
        for k, opts in rules.items():
            t0 = time.perf_counter()
            score_boxes(ex.path, a, rec, names, loc[k], opts, loaded)  # what avscene evaluate scores
            seconds[k] += time.perf_counter() - t0
    split = args.split.resolve()
    out = {"model": MODEL, "split": split.name, "manifest": f"../shared/avbench/{split.name}/labels.csv",
           "rules": {k: {"options": {f: v for f, v in dataclasses.asdict(rules[k]).items()
                                     if f in ("box_mode", "erase_rounds", "evidence_weight", "evidence_fraction",
                                              "snap")} | {"box_regressor": rules[k].box_regressor is not None},
                         "box_seconds": round(seconds[k], 2), **loc[k].to_json()} for k in rules}}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for k, s in loc.items():
        print(f"{k:30s} CorLoc {s.corloc:.3f} pointing {s.pointing_accuracy:.3f} IoU {s.median_iou:.3f} "
              f"size {s.median_size_ratio:.3f} ({seconds[k]:.1f} s)")


if __name__ == "__main__":
    main()
