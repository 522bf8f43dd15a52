"""Print the splice_events record's table against the bundled model (recipe `dense`), from the
evaluation files: python docs/results/splice_events/table.py > docs/results/splice_events/table.md"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = {"bundled (dense)": HERE.parent / "dense", "splice_events": HERE}
SPLITS = ("val", "val_shift")


def load(folder: Path, split: str) -> dict:
    return json.loads((folder / f"eval_{split}.json").read_text())


def by_class(rows: list, key: str) -> dict:
    return {r["name"]: r[key] for r in rows}


def main() -> None:
    print("| run | split | micro-F1 | SED F1 / ER (P / R) | AVVP segment audio / visual / AV / Type@AV | CorLoc / pointing |")
    print("|---|---|---|---|---|---|")
    for name, folder in RUNS.items():
        for s in SPLITS:
            d = load(folder, s)
            sed, seg, loc = d["sed"], d["avvp"]["segment"], d["localization"]
            print(f"| {name} | {s} | {d['classification']['micro_f1']:.3f} | {sed['f1']:.3f} / {sed['error_rate']:.3f} "
                  f"({sed['precision']:.3f} / {sed['recall']:.3f}) | {seg['audio']:.3f} / {seg['visual']:.3f} / "
                  f"{seg['audio_visual']:.3f} / {seg['type_av']:.3f} | {loc['corloc']:.3f} / {loc['pointing_accuracy']:.3f} |")
    print()
    for key, title in (("f1", "classification F1"),):
        print(f"Per class, {title} and SED F1 (bundled → splice_events)\n")
        print("| class | " + " | ".join(f"{s} cls F1 | {s} SED F1" for s in SPLITS) + " |")
        print("|---" * (1 + 2 * len(SPLITS)) + "|")
        base = {s: load(RUNS["bundled (dense)"], s) for s in SPLITS}
        new = {s: load(HERE, s) for s in SPLITS}
        labels = [r["name"] for r in base["val"]["classification"]["classes"]]
        cells = []
        for lab in labels:
            row = [lab]
            for s in SPLITS:
                c0 = by_class(base[s]["classification"]["classes"], key).get(lab)
                c1 = by_class(new[s]["classification"]["classes"], key).get(lab)
                e0 = by_class(base[s]["sed"]["classes"], "f1").get(lab)
                e1 = by_class(new[s]["sed"]["classes"], "f1").get(lab)
                f = lambda a, b: "—" if a is None or b is None else f"{a:.2f} → {b:.2f}"  # noqa: E731
                row += [f(c0, c1), f(e0, e1)]
            cells.append(row)
        for row in cells:
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
