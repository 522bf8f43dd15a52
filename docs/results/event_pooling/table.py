"""Print the event_pooling ablation from its evaluation and fit files:
python docs/results/event_pooling/table.py > docs/results/event_pooling/table.md"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPLITS = ("val", "val_shift")
POOLINGS = ("max", "mean", "linear_softmax", "exp_softmax", "attention", "auto_pool")


def runs() -> list[tuple[str, str | None]]:
    """(name of the evaluation files, pooling of its fit file or None) in table order, those present."""
    names = [("bundled", None)] + [(p, p) for p in POOLINGS] + [
        (f"{p}_{tag}", p) for p in POOLINGS for tag in ("t0", "last")]
    return [(n, p) for n, p in names if all((HERE / f"eval_{n}_{s}.json").is_file() for s in SPLITS)]


def load(name: str, split: str) -> dict:
    return json.loads((HERE / f"eval_{name}_{split}.json").read_text())


def fit(pooling: str | None) -> dict | None:
    f = HERE / f"fit_{pooling}.json"
    return json.loads(f.read_text()) if pooling and f.is_file() else None


def row(name: str, pooling: str | None, split: str) -> str:
    d = load(name, split)
    sed, seg = d["sed"], d["avvp"]["segment"]
    fr = fit(pooling)
    how = "two-stream head's A" if fr is None else (
        f"step {fr['best_step']}, t {fr['threshold']:+.2f}, hold-out F1 {fr['holdout']['f1']:.3f}"
        if name == pooling else name.split("_")[-1])
    return (f"| {name} | {how} | {split} | {d['classification']['micro_f1']:.3f} | {sed['f1']:.3f} / "
            f"{sed['error_rate']:.3f} ({sed['precision']:.3f} / {sed['recall']:.3f}) | {seg['audio']:.3f} / "
            f"{seg['type_av']:.3f} |")


def main() -> None:
    rs = runs()
    print("| run | chosen on the hold-out | split | micro-F1 | SED F1 / ER (P / R) | AVVP segment audio / Type@AV |")
    print("|---|---|---|---|---|---|")
    for s in SPLITS:
        for name, pooling in rs:
            print(row(name, pooling, s))
    for s in SPLITS:
        print(f"\nPer-class SED F1, {s}\n")
        print("| class | " + " | ".join(n for n, _ in rs) + " |")
        print("|---" * (1 + len(rs)) + "|")
        evals = {n: {c["name"]: c["f1"] for c in load(n, s)["sed"]["classes"]} for n, _ in rs}
        for lab in evals["bundled"]:
            print(f"| {lab} | " + " | ".join(f"{evals[n].get(lab, float('nan')):.2f}" for n, _ in rs) + " |")
    print("\nHold-out (training splices; pseudo-reference: the two-stream head's own events on the clean splice)\n")
    print("| pooling | best step / steps | threshold | F1 (P / R) | F1 at threshold 0 | false alarms outside the part "
          "| auto-pool α (mean, min–max) |")
    print("|---|---|---|---|---|---|---|")
    ref = None
    for p in POOLINGS:
        fr = fit(p)
        if fr is None:
            continue
        ref = fr["reference"]
        h = fr["holdout"]
        alpha = "—" if fr["alpha"] is None else (f"{sum(fr['alpha']) / len(fr['alpha']):.1f} "
                                                 f"({min(fr['alpha']):.1f}–{max(fr['alpha']):.1f})")
        print(f"| {p} | {fr['best_step']} / {fr['steps']} | {fr['threshold']:+.2f} | {h['f1']:.3f} "
              f"({h['precision']:.3f} / {h['recall']:.3f}) | {fr['holdout_at_zero']['f1']:.3f} | {h['outside']:.3f} "
              f"| {alpha} |")
    if ref is not None:
        print(f"| (the two-stream head's A > 0) | — | — | {ref['f1']:.3f} ({ref['precision']:.3f} / "
              f"{ref['recall']:.3f}) | — | {ref['outside']:.3f} | — |")


if __name__ == "__main__":
    main()
