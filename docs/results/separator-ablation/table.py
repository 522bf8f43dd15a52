"""Print the tables of docs/results/separator-ablation/README.md from the evaluation JSON files.

    python docs/results/separator-ablation/table.py [--method hybrid|mask|both]

Each run's files are ``<run>/holdout.json`` (``evaluate-separation avbench/train --pairs
--holdout``), and where measured ``<run>/pairs_val.json``, ``pairs_val_shift.json``
(``--pairs``) and ``sep_val.json``, ``sep_val_shift.json`` (the single-source ``sep/`` sets),
the reports of ``avscene evaluate-separation --json-out`` as written (per item). Every figure is
recomputed from the per-item scores: means per pair kind and SNR, per queried class, and for the
hold-out the two set kinds (two sources: the pairs of clips; one source: a clip over ambience).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = (  # (folder, what it is)
    ("bundled", "the bundled separator (no fine-tuning)"),
    ("anchors", "fine-tuned on anchors only (no pairs)"),
    ("pairs", "+ pairs (mix-and-separate), no consistency, no assessor"),
    ("pairs-overlap", "+ pairs, consistency 1, no assessor"),
    ("pairs-assessor", "+ pairs, consistency 1, assessor 0.02 (last session's run)"),
    ("coseparation", "+ co-separation pairs, consistency 1"),
)
METHODS = {"hybrid": "avscene hybrid, label known", "mask": "avscene mask network, label known"}
KINDS_TWO = ("instrument+instrument", "instrument+street", "street+street")
KINDS_ONE = ("instrument+ambience", "street+ambience")
SNRS = (-5.0, 0.0, 5.0)


def load(run: str, name: str) -> dict | None:
    path = HERE / run / name
    return json.loads(path.read_text()) if path.exists() else None


def reports(name: str) -> dict[str, dict]:
    """Each run's evaluation file ``name``, for the runs that have it (in RUNS order)."""
    reps = {run: load(run, name) for run, _ in RUNS}
    return {k: v for k, v in reps.items() if v is not None}


def mean(xs: list[float]) -> str:
    return f"{statistics.fmean(xs):+.2f}" if xs else "—"


def items(report: dict, method: str, metric: str = "sdr", **where) -> list[tuple[dict, float]]:
    out = []
    for r in report["results"]:
        if all(r.get(k) == v for k, v in where.items()) and method in r["scores"]:
            out.append((r, r["scores"][method][metric]))
    return out


def paired(rep: dict, base: dict, label: str, kinds: tuple[str, ...]) -> str:
    """Mean ± standard error of the per-item SDR difference ``rep - base`` over the items of ``kinds``."""
    def key(r: dict) -> tuple:
        return r["set"], r["name"], r["label"], r["kind"], r["snr_db"]

    ref = {key(r): s for r, s in items(base, label) if r["kind"] in kinds}
    diff = [s - ref[key(r)] for r, s in items(rep, label) if r["kind"] in kinds and key(r) in ref]
    if len(diff) < 2:
        return "—"
    return f"{statistics.fmean(diff):+.2f} ± {statistics.stdev(diff) / len(diff) ** 0.5:.2f} (n={len(diff)})"


STEPS = (  # (run, the run it adds one ingredient to)
    ("anchors", "bundled"), ("pairs", "anchors"), ("pairs-overlap", "pairs"),
    ("pairs-assessor", "pairs-overlap"), ("coseparation", "pairs-overlap"),
)


def ingredient_table(method: str) -> None:
    """Each ingredient's effect: the paired difference between a run and the run it adds to."""
    label = METHODS[method]
    print(f"\n### Training hold-out, {method}: what each ingredient adds (paired difference, mean ± standard error, dB)\n")
    print("| run | against | two sources | one source |\n|---|---|---|---|")
    for run, base in STEPS:
        rep, ref = load(run, "holdout.json"), load(base, "holdout.json")
        if rep is not None and ref is not None:
            print(f"| {run} | {base} | {paired(rep, ref, label, KINDS_TWO)} | {paired(rep, ref, label, KINDS_ONE)} |")


def holdout_tables(method: str) -> None:
    label = METHODS[method]
    print(f"\n### Training hold-out (`--pairs --holdout`), {method}: mean SDR (dB)\n")
    head = ["run", "two sources", "one source", "all", "SDRi all", "SI-SDR all"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for run, _ in RUNS:
        rep = load(run, "holdout.json")
        if rep is None:
            continue
        two = [s for r, s in items(rep, label) if r["kind"] in KINDS_TWO]
        one = [s for r, s in items(rep, label) if r["kind"] in KINDS_ONE]
        sdri = [s for _, s in items(rep, label, "sdr_improvement")]
        si = [s for _, s in items(rep, label, "si_sdr")]
        print(f"| {run} | {mean(two)} (n={len(two)}) | {mean(one)} (n={len(one)}) | {mean(two + one)} "
              f"| {mean(sdri)} | {mean(si)} |")
    base = load("bundled", "holdout.json")
    if base is not None:
        print(f"\nPaired difference from the bundled separator, {method} (same items; mean ± standard error, dB):\n")
        print("| run | two sources | one source | all |\n|---|---|---|---|")
        for run, _ in RUNS[1:]:
            rep = load(run, "holdout.json")
            if rep is not None:
                print(f"| {run} | " + " | ".join(paired(rep, base, label, kinds) for kinds in
                                                 (KINDS_TWO, KINDS_ONE, KINDS_TWO + KINDS_ONE)) + " |")
    print(f"\n### Training hold-out, {method}: mean SDR (dB) per pair kind and SNR\n")
    cols = [(k, s) for k in KINDS_TWO + KINDS_ONE for s in SNRS]
    print("| run | " + " | ".join(f"{k} {s:+.0f}" for k, s in cols) + " |\n|" + "---|" * (len(cols) + 1))
    for run, _ in RUNS:
        rep = load(run, "holdout.json")
        if rep is not None:
            print(f"| {run} | " + " | ".join(mean([x for _, x in items(rep, label, kind=k, snr_db=s)])
                                            for k, s in cols) + " |")
    print(f"\n### Training hold-out, {method}: mean SDR (dB) per queried class (all hold-out items)\n")
    reps = reports("holdout.json")
    classes = sorted({r["label"] for v in reps.values() for r in v["results"]})
    print("| class | " + " | ".join(reps) + " | n |\n|" + "---|" * (len(reps) + 2))
    for c in classes:
        cells = [mean([x for _, x in items(rep, label, label=c)]) for rep in reps.values()]
        n = len(items(next(iter(reps.values())), label, label=c))
        print(f"| {c} | " + " | ".join(cells) + f" | {n} |")


def default_method_table() -> None:
    """Every method of the bundled model's hold-out report: the default is the best mean SDR over
    both set kinds together (``evaluate-separation --pairs --holdout --set-default``)."""
    rep = load("bundled", "holdout.json")
    if rep is None:
        return
    print("\n### The default method: every method on the training hold-out (bundled model), mean SDR (dB)\n")
    print("| method | two sources | one source | all |\n|---|---|---|---|")
    rows = []
    for label in rep["methods"]:
        two = [s for r, s in items(rep, label) if r["kind"] in KINDS_TWO]
        one = [s for r, s in items(rep, label) if r["kind"] in KINDS_ONE]
        rows.append((statistics.fmean(two + one), label, two, one))
    for _, label, two, one in sorted(rows, reverse=True):
        print(f"| {label} | {mean(two)} | {mean(one)} | {mean(two + one)} |")


def pairs_tables(split: str, method: str) -> None:
    label = METHODS[method]
    reps = reports(f"pairs_{split}.json")
    if not reps:
        return
    print(f"\n### {split}, two sources, {method}: mean SDR (dB) (clips: per pair kind; duets: per kind and SNR)\n")
    cols = [("clips", k, None) for k in KINDS_TWO] + [("clips", None, None)] + \
        [("duets", k, s) for k in KINDS_TWO for s in SNRS] + [("duets", None, None)]
    names = [f"{st} {k or 'all'}" + (f" {s:+.0f}" if s is not None else "") for st, k, s in cols]
    print("| run | " + " | ".join(names) + " |\n|" + "---|" * (len(cols) + 1))
    for run, rep in reps.items():
        cells = []
        for st, k, s in cols:
            where = {"set": st, **({"kind": k} if k else {}), **({"snr_db": s} if s is not None else {})}
            cells.append(mean([x for _, x in items(rep, label, **where)]))
        print(f"| {run} | " + " | ".join(cells) + " |")
    print(f"\n### {split}, two sources, {method}: mean SDR improvement (dB), clips and duets\n")
    print("| run | clips | duets |\n|---|---|---|")
    for run, rep in reps.items():
        print(f"| {run} | {mean([x for _, x in items(rep, label, 'sdr_improvement', set='clips')])} "
              f"| {mean([x for _, x in items(rep, label, 'sdr_improvement', set='duets')])} |")
    print(f"\n### {split}, two sources (clips and duets), {method}: mean SDR (dB) per queried class\n")
    classes = sorted({r["label"] for v in reps.values() for r in v["results"]})
    print("| class | " + " | ".join(reps) + " | n |\n|" + "---|" * (len(reps) + 2))
    for c in classes:
        cells = [mean([x for _, x in items(rep, label, label=c)]) for rep in reps.values()]
        print(f"| {c} | " + " | ".join(cells) + f" | {len(items(next(iter(reps.values())), label, label=c))} |")


def sep_tables(split: str, method: str) -> None:
    label = METHODS[method]
    reps = reports(f"sep_{split}.json")
    if not reps:
        return
    print(f"\n### {split}/sep, one source, {method}: mean SDR (dB) at -5 / 0 / +5 dB, all, and per class\n")
    classes = sorted({m["label"] for v in reps.values() for m in v["mixtures"]})
    print("| run | -5 | +0 | +5 | all | " + " | ".join(classes) + " |\n|" + "---|" * (len(classes) + 5))
    for run, rep in reps.items():
        def sdr(**where):
            return mean([m["scores"][label]["sdr"] for m in rep["mixtures"] if label in m["scores"]
                         and m["scores"][label]["sdr"] is not None and all(m[k] == v for k, v in where.items())])
        print(f"| {run} | " + " | ".join(sdr(snr_db=s) for s in SNRS) + f" | {sdr()} | "
              + " | ".join(sdr(label=c) for c in classes) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=("hybrid", "mask", "both"), default="both")
    args = ap.parse_args()
    methods = ("hybrid", "mask") if args.method == "both" else (args.method,)
    print("Runs: " + "; ".join(f"`{r}`: {what}" for r, what in RUNS if (HERE / r).is_dir()))
    for m in methods:
        holdout_tables(m)
        ingredient_table(m)
    default_method_table()
    for split in ("val", "val_shift"):
        for m in methods:
            pairs_tables(split, m)
            sep_tables(split, m)


if __name__ == "__main__":
    main()
