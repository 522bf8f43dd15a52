"""How often erasing grows a class's box: per class, the frames where the class is visible and has an
evidence box, the share of them where ``--box-mode erase`` added a region, and the median ratio of the
erase box's area to the evidence box's there (boxes unsnapped).

    python docs/results/box_erasing/erase_growth.py ../shared/avbench/val > docs/results/box_erasing/erase_growth_val.txt
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from avscene.tasks._pipeline import analyse
from avscene.tasks.localize import LocalizeOptions, report_boxes
from avscene.tasks.models import load_model
from avscene.train.data import read_manifest


def main(split: Path) -> None:
    loaded = load_model("models/avscene-av-small", offline=True, device="cpu")
    names = list(loaded.labels)
    gt = {json.loads(x)["clip"]: json.loads(x) for x in (split / "ground_truth.jsonl").read_text().splitlines()}
    per: dict[str, list[float]] = {}
    boxed: dict[str, int] = {}
    for ex in read_manifest(split / "labels.csv", class_names=names):
        shown = [ev for ev in gt[ex.path.stem]["events"] if ev.get("visual")]
        if not shown:
            continue
        a = analyse(ex.path, loaded, keep_frames=True)
        classes = [names.index(ev["class"]) for ev in shown]
        ev_boxes = report_boxes(ex.path, a, classes, loaded, LocalizeOptions(snap=False))
        er_boxes = report_boxes(ex.path, a, classes, loaded, LocalizeOptions(box_mode="erase", snap=False))
        for ev in shown:
            c = names.index(ev["class"])
            visible = {round(f["t"], 3) for f in ev["visual"]["frames"]}
            for t, t_sec in enumerate(a.visual.times):
                if round(float(t_sec), 3) not in visible or not ev_boxes[c][t]:
                    continue
                e, g = ev_boxes[c][t][0][0], er_boxes[c][t][0][0]
                boxed[ev["class"]] = boxed.get(ev["class"], 0) + 1
                area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
                if not np.array_equal(e, g):
                    per.setdefault(ev["class"], []).append(float(area(g) / area(e)))
    print(f"# {split.name}: erasing, per class\n\n| class | frames with an evidence box | grown by erasing | "
          "median area erase / evidence where grown |\n|---|---|---|---|")
    for lab in sorted(boxed):
        grown = per.get(lab, [])
        print(f"| {lab} | {boxed[lab]} | {len(grown) / boxed[lab]:.2f} | "
              f"{np.median(grown):.2f} |" if grown else f"| {lab} | {boxed[lab]} | 0.00 | — |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
