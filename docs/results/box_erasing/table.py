"""The ablation tables of docs/results/box_erasing from its evaluation files (``ablation_*.json``).

    python docs/results/box_erasing/table.py > docs/results/box_erasing/table.md
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
SPLITS = ("val", "val_shift")


def f(x) -> str:
    return "—" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def main() -> None:
    runs = {s: json.loads((HERE / f"ablation_{s}.json").read_text()) for s in SPLITS}
    rules = list(runs[SPLITS[0]]["rules"])
    print("# Box rules of the bundled model (`models/avscene-av-small`), val / val_shift\n")
    print("From `ablation_val.json` / `ablation_val_shift.json` (`ablation.py`); box seconds: the time the "
          "rule added to one forward pass, summed over the split's clips, one thread.\n")
    print("| rule | CorLoc@0.5 | pointing | median IoU | box/object area | box seconds |\n|---|---|---|---|---|---|")
    for r in rules:
        rows = [runs[s]["rules"][r] for s in SPLITS]
        print(f"| {r} | " + " | ".join(" / ".join(f(x[k]) if k != "box_seconds" else f"{x[k]:.1f}" for x in rows) for k in
                                         ("corloc", "pointing_accuracy", "median_iou", "median_size_ratio",
                                          "box_seconds")) + " |")
    for key, title in (("corloc", "CorLoc@0.5"), ("pointing_accuracy", "pointing"), ("median_iou", "median IoU"),
                       ("median_size_ratio", "box/object area")):
        for s in SPLITS:
            first = runs[s]["rules"][rules[0]]["classes"]
            classes = [c["name"] for c in first]
            print(f"\n## {title} per class, {s} (class, frames scored)\n")
            print("| rule | " + " | ".join(f"{c['name']} ({c['n']})" for c in first) + " |\n|---|" + "---|" * len(classes))
            for r in rules:
                by = {c["name"]: c for c in runs[s]["rules"][r]["classes"]}
                print(f"| {r} | " + " | ".join(f(by[c][key]) for c in classes) + " |")


if __name__ == "__main__":
    main()
