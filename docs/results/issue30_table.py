"""The issue-30 comparison tables from evaluation files only: each run of docs/results/issue30_finetunes.sh
against the bundled model, on val and val_shift.

    python docs/results/issue30_table.py > docs/results/issue30_table.md

Reads docs/results/NAME/eval_SPLIT.json and boxes_SPLIT.json (per_class_boxes.py); the bundled model's
evaluation files are docs/results/dense/eval_SPLIT.json (the run it was trained as).
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
RUNS = {"bundled (dense)": (HERE / "dense", HERE / "bundled_dense"),
        "hide_floor": (HERE / "hide_floor",) * 2, "splice_events": (HERE / "splice_events",) * 2}
SPLITS = ("val", "val_shift")


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def main() -> None:
    evals = {(r, s): load(ev / f"eval_{s}.json") for r, (ev, _) in RUNS.items() for s in SPLITS}
    boxes = {(r, s): load(bx / f"boxes_{s}.json") for r, (_, bx) in RUNS.items() for s in SPLITS}
    runs = [r for r in RUNS if any(evals[r, s] for s in SPLITS)]
    print("## Summary\n")
    print("| run | split | micro-F1 | macro-F1 | SED F1 | SED ER | AVVP seg. audio | Type@AV | CorLoc | pointing "
          "| median IoU | box/object size |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in SPLITS:
        for r in runs:
            e, b = evals[r, s], boxes[r, s]
            if e is None:
                continue
            loc = e.get("localization") or {}
            ball = (b or {}).get("all", {})
            print(f"| {r} | {s} | {fmt(e['classification']['micro_f1'])} | {fmt(e['classification']['macro_f1'])} "
                  f"| {fmt(e['sed']['f1'])} | {fmt(e['sed']['error_rate'])} | {fmt(e['avvp']['segment']['audio'])} "
                  f"| {fmt(e['avvp']['segment']['type_av'])} | {fmt(loc.get('corloc'))} "
                  f"| {fmt(loc.get('pointing_accuracy'))} | {fmt(ball.get('median_iou'))} "
                  f"| {fmt(ball.get('median_size_ratio'))} |")
    for s in SPLITS:
        print(f"\n## Per class, {s}: classification F1 / SED F1 / pointing / CorLoc / visual stream alive\n")
        print("| class | " + " | ".join(runs) + " |")
        print("|---|" + "---|" * len(runs))
        names = [c["name"] for c in next(evals[r, s] for r in runs if evals[r, s])["classification"]["classes"]]
        for c in names:
            cells = []
            for r in runs:
                e, b = evals[r, s], boxes[r, s]
                if e is None:
                    cells.append("–")
                    continue
                f1 = next(x["f1"] for x in e["classification"]["classes"] if x["name"] == c)
                sed = next((x["f1"] for x in e["sed"]["classes"] if x["name"] == c), None)
                bx = next((x for x in (b or {}).get("classes", []) if x["name"] == c), {})
                cells.append(f"{fmt(f1)} / {fmt(sed)} / {fmt(bx.get('pointing'))} / {fmt(bx.get('corloc'))} / "
                             f"{fmt(bx.get('alive_share'))}")
            print(f"| {c} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
