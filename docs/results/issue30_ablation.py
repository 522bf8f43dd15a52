"""Issue 30's training-side ablation from evaluation files only: the model bundled before (dense) and its
6-epoch fine-tunes (docs/results/issue30_finetunes.sh: floor_only, hide_only, hide_floor, hide64_floor), all
evaluated by one version of avscene evaluate (evidence-map boxes snapped by grabCut, no box without
evidence, events of heard or predicted classes with hysteresis), on val and val_shift.

    python docs/results/issue30_ablation.py > docs/results/issue30_ablation.md

Reads docs/results/NAME/eval_evidence_rules_SPLIT.json (hide_floor: eval_bundled_SPLIT.json, the
bundled model's evaluation) and each run's training log for its hold-out figures.
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
RUNS = {"dense (bundled before)": ("dense", "eval_evidence_rules_{s}.json"),
        "+ floor": ("floor_only", "eval_evidence_rules_{s}.json"),
        "+ hide-and-seek": ("hide_only", "eval_evidence_rules_{s}.json"),
        "+ both (bundled now)": ("hide_floor", "eval_bundled_{s}.json"),
        "+ both, 64-px patches": ("hide64_floor", "eval_{s}.json")}
SPLITS = ("val", "val_shift")


def fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def load(run: str, split: str) -> dict:
    folder, pattern = RUNS[run]
    return json.loads((HERE / folder / pattern.format(s=split)).read_text())


def holdout(run: str) -> str:
    """The selected epoch's hold-out micro-F1 (clean) from the run's training log, or a dash."""
    log = HERE / RUNS[run][0] / "train_log.jsonl"
    if RUNS[run][0] == "dense" or not log.is_file():
        return "–"
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "val_micro_f1" in r]
    return fmt(max(r["val_micro_f1"] for r in rows)) if rows else "–"


def by_class(e: dict, section: str) -> dict[str, dict]:
    return {c["name"]: c for c in (e.get(section) or {}).get("classes") or []}


def main() -> None:
    print("## Summary (val / val_shift)\n")
    print("| model | hold-out micro-F1 | micro-F1 | SED F1 | SED ER | AVVP seg. audio | Type@AV | CorLoc@0.5 "
          "| pointing | median IoU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in RUNS:
        a, b = (load(r, s) for s in SPLITS)

        def pair(*keys: str) -> str:
            vals = []
            for e in (a, b):
                for k in keys:
                    e = (e or {}).get(k)
                vals.append(fmt(e))
            return " / ".join(vals)

        print(f"| {r} | {holdout(r)} | {pair('classification', 'micro_f1')} | {pair('sed', 'f1')} "
              f"| {pair('sed', 'error_rate')} | {pair('avvp', 'segment', 'audio')} "
              f"| {pair('avvp', 'segment', 'type_av')} | {pair('localization', 'corloc')} "
              f"| {pair('localization', 'pointing_accuracy')} | {pair('localization', 'median_iou')} |")
    for s in SPLITS:
        evals = {r: load(r, s) for r in RUNS}
        print(f"\n## Per class, {s}: classification F1 / CorLoc@0.5 / pointing\n")
        print("| class | " + " | ".join(RUNS) + " |")
        print("|---|" + "---|" * len(RUNS))
        names = sorted(by_class(evals[next(iter(RUNS))], "classification"))
        for c in names:
            cells = []
            for r in RUNS:
                cls, loc = by_class(evals[r], "classification").get(c, {}), by_class(evals[r], "localization").get(c, {})
                cells.append(f"{fmt(cls.get('f1'))} / {fmt(loc.get('corloc'))} / {fmt(loc.get('pointing_accuracy'))}")
            print(f"| {c} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
