"""Print the event_pooling ablation from its evaluation and fit files:
python docs/results/event_pooling/table.py > docs/results/event_pooling/table.md"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPLITS = ("val", "val_shift")
POOLINGS = ("max", "mean", "linear_softmax", "exp_softmax", "attention", "auto_pool")


BUNDLED = HERE.parent / "hide_floor"  # the bundled model's own evaluation (eval_bundled_<split>.json)
NOISE = "auto_pool_noise"  # the chosen head under the held-out noise families at 0 dB


def runs() -> list[str]:
    """The runs with both evaluation files, in table order."""
    names = ["bundled", *POOLINGS, *(f"{p}_last" for p in POOLINGS), *(f"{p}_t0" for p in POOLINGS)]
    return [n for n in names if all(path(n, s).is_file() for s in SPLITS)]


def path(name: str, split: str) -> Path:
    return BUNDLED / f"eval_bundled_{split}.json" if name == "bundled" else HERE / f"eval_{name}_{split}.json"


def load(name: str, split: str) -> dict:
    return json.loads(path(name, split).read_text())


def fit(name: str) -> dict | None:
    """The fit record of a run: fit_<name>.json; a `_t0` run is its pooling's chosen fit, threshold 0."""
    f = HERE / f"fit_{name.removesuffix('_t0')}.json"
    return json.loads(f.read_text()) if name != "bundled" and f.is_file() else None


def how(name: str) -> str:
    fr = fit(name)
    if fr is None:
        return "the two-stream head's A (today)"
    t = 0.0 if name.endswith("_t0") else fr["threshold"]
    what = {"_t0": "threshold 0 (not chosen)", "_last": "last step (threshold on the hold-out)"}
    tag = next((v for k, v in what.items() if name.endswith(k)), "step and threshold on the hold-out")
    return f"{tag}: step {fr['best_step']} / {fr['steps']}, t {t:+.2f}"


def row(name: str, split: str) -> str:
    d = load(name, split)
    sed, seg = d["sed"], d["avvp"]["segment"]
    return (f"| {name} | {how(name)} | {split} | {d['classification']['micro_f1']:.3f} | {sed['f1']:.3f} / "
            f"{sed['error_rate']:.3f} ({sed['precision']:.3f} / {sed['recall']:.3f}) | {seg['audio']:.3f} / "
            f"{seg['type_av']:.3f} |")


def main() -> None:
    rs = runs()
    print("| run | how | split | micro-F1 | SED F1 / ER (P / R) | AVVP segment audio / Type@AV |")
    print("|---|---|---|---|---|---|")
    for s in SPLITS:
        for name in rs:
            print(row(name, s))
    chosen = [n for n in rs if n in ("bundled", *POOLINGS)]
    for s in SPLITS:
        print(f"\nPer-class SED F1, {s} (heads: step and threshold chosen on the hold-out)\n")
        print("| class | " + " | ".join(chosen) + " |")
        print("|---" * (1 + len(chosen)) + "|")
        evals = {n: {c["name"]: c["f1"] for c in load(n, s)["sed"]["classes"]} for n in chosen}
        for lab in evals["bundled"]:
            print(f"| {lab} | " + " | ".join(f"{evals[n].get(lab, float('nan')):.2f}" for n in chosen) + " |")
    if all((HERE / f"eval_{NOISE}_{s}.json").is_file() for s in SPLITS):
        print("\nHeld-out noise families at 0 dB (`--add-noise heldout:0`): micro-F1 / SED F1 / SED ER, "
              "bundled → auto_pool\n")
        print("| family | " + " | ".join(SPLITS) + " |")
        print("|---" * (1 + len(SPLITS)) + "|")
        conds = {s: (load("bundled", s)["noise_stress"]["conditions"],
                     json.loads((HERE / f"eval_{NOISE}_{s}.json").read_text())["noise_stress"]["conditions"])
                 for s in SPLITS}
        for i, c in enumerate(conds[SPLITS[0]][0]):
            cells = []
            for s in SPLITS:
                a, b = conds[s][0][i], conds[s][1][i]
                cells.append(f"{a['micro_f1']:.3f} / {a['sed_f1']:.3f} / {a['sed_error_rate']:.3f} → "
                             f"{b['micro_f1']:.3f} / {b['sed_f1']:.3f} / {b['sed_error_rate']:.3f}")
            print(f"| {c['family']} | " + " | ".join(cells) + " |")
    print("\nHold-out (training clips' splices; pseudo-reference: the two-stream head's own events on the clean "
          "splice, inside the right part)\n")
    print("| run | step / steps | threshold | F1 (P / R) | F1 at threshold 0 | false alarms in the other part "
          "| auto-pool α (mean, min–max) |")
    print("|---|---|---|---|---|---|---|")
    ref = None
    for name in [*POOLINGS, *(f"{p}_last" for p in POOLINGS)]:
        fr = fit(name)
        if fr is None:
            continue
        ref, h = fr["reference"], fr["holdout"]
        alpha = "—" if fr["alpha"] is None else (f"{sum(fr['alpha']) / len(fr['alpha']):.2f} "
                                                 f"({min(fr['alpha']):.2f}–{max(fr['alpha']):.2f})")
        print(f"| {name} | {fr['best_step']} / {fr['steps']} | {fr['threshold']:+.2f} | {h['f1']:.3f} "
              f"({h['precision']:.3f} / {h['recall']:.3f}) | {fr['holdout_at_zero']['f1']:.3f} | {h['outside']:.3f} "
              f"| {alpha} |")
    if ref is not None:
        print(f"| two-stream head, A > 0 | — | — | {ref['f1']:.3f} ({ref['precision']:.3f} / "
              f"{ref['recall']:.3f}) | — | {ref['outside']:.3f} | — |")


if __name__ == "__main__":
    main()
