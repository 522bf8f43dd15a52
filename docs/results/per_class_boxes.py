"""Per-class box figures of a checkpoint on a split with ground truth (the box `avscene evaluate` scores:
the top window of each class in each frame where the class is visible), and whether each class's visual
stream is alive there.

    python docs/results/per_class_boxes.py MODEL AVBENCH/val_shift/labels.csv OUT.json

For each class: the (frame, class) pairs scored, pointing and CorLoc@0.5 of its top box, the median IoU
of that box with the object and the median ratio of its area to the object's; and over the clips where
the class is visible, the share whose best visual classification score A of the class is above 0
(a class whose visual stream is dead has A below 0 in every window, and its top box is the first window).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from avscene.checkpoint.load import load_pretrained
from avscene.nn.model import box_scores
from avscene.tasks._pipeline import analyse
from avscene.train.data import read_manifest
from avscene.evaluation.evaluate import read_ground_truth
from avscene.evaluation.metrics.localization import box_iou, corloc_hit, pointing_hit


def main(model: str, manifest: str, out: str) -> None:
    loaded = load_pretrained(model, offline=True, device="cpu")
    names = list(loaded.labels)
    gt = read_ground_truth(Path(manifest).parent / "ground_truth.jsonl")
    per = {c: {"n": 0, "pointing": 0, "corloc": 0, "iou": [], "size": [], "clips": 0, "alive": 0} for c in names}
    for ex in read_manifest(manifest, class_names=names):
        rec = gt.get(ex.path.stem)
        if rec is None or not any(ev.get("visual") for ev in rec["events"]):
            continue
        a = analyse(ex.path, loaded)
        if a.output.visual_A is None or a.visual is None:
            continue
        scores = box_scores(a.output).numpy()  # (T, M, C)
        for ev in rec["events"]:
            if not ev.get("visual"):
                continue
            c = names.index(ev["class"])
            acc = per[ev["class"]]
            acc["clips"] += 1
            acc["alive"] += bool(a.output.visual_A[..., c].max() > 0)
            gt_frames = {round(fr["t"], 3): fr["box"] for fr in ev["visual"]["frames"]}
            for t, t_sec in enumerate(a.visual.times):
                box = gt_frames.get(round(float(t_sec), 3))
                if box is None:
                    continue
                g = np.asarray(box, dtype=np.float64).reshape(-1, 4)
                pred = np.asarray(a.visual.boxes[t, int(np.argmax(scores[t, :, c]))], dtype=np.float64)
                acc["n"] += 1
                acc["pointing"] += pointing_hit(pred, g)
                acc["corloc"] += corloc_hit(pred, g)
                ious = box_iou(pred.reshape(1, 4), g)[0]
                best = int(np.argmax(ious))
                acc["iou"].append(float(ious[best]))
                gt_area = float((g[best, 2] - g[best, 0]) * (g[best, 3] - g[best, 1]))
                acc["size"].append(float((pred[2] - pred[0]) * (pred[3] - pred[1])) / gt_area)

    def row(name: str, acc: dict) -> dict:
        n = acc["n"]
        return {"name": name, "n": n, "pointing": acc["pointing"] / n if n else None,
                "corloc": acc["corloc"] / n if n else None,
                "median_iou": float(np.median(acc["iou"])) if n else None,
                "median_size_ratio": float(np.median(acc["size"])) if n else None,
                "visible_clips": acc["clips"], "alive_share": acc["alive"] / acc["clips"] if acc["clips"] else None}

    total = {k: sum(acc[k] for acc in per.values()) if k not in ("iou", "size") else
             [v for acc in per.values() for v in acc[k]] for k in per[names[0]]}
    report = {"model": model, "split": Path(manifest).parent.name, "box": "top window of box_scores (as avscene evaluate)",
              "all": row("all", total), "classes": [row(c, per[c]) for c in names if per[c]["clips"]]}
    Path(out).write_text(json.dumps(report, indent=1) + "\n")
    for r in [report["all"], *report["classes"]]:
        print(f"{r['name']:11s} n {r['n']:4d}  pointing {r['pointing']:.3f}  CorLoc {r['corloc']:.3f}  "
              f"IoU {r['median_iou']:.3f}  size {r['median_size_ratio']:.3f}  alive {r['alive_share']:.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
