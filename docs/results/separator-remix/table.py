"""Print the tables of docs/results/separator-remix/README.md from the evaluation JSON files.

    python docs/results/separator-remix/table.py [--method hybrid|mask|both]

Runs: ``bundled`` (the bundled separator) and each remix run folder. Per run, where measured:
``holdout.json`` (``evaluate-separation avbench/train --pairs --holdout``), ``remix_holdout.json``
(``evaluate-separation TEACHER_CACHE --pairs --remix``: remixes of the held-out clips' teacher
estimates, scored against them), ``pairs_val.json``, ``pairs_val_shift.json`` (``--pairs``) and
``sep_val.json``, ``sep_val_shift.json`` (the single-source ``sep/`` sets), the reports of
``avscene evaluate-separation --json-out`` as written (per item). The bundled separator's
``holdout.json`` and ``pairs_*.json`` are docs/results/separator-ablation/bundled's (the same
commands, the same model). The tables of the training hold-out and of val / val_shift are
printed by docs/results/separator-ablation/table.py's functions over these runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
ABLATION = HERE.parent / "separator-ablation"
RUNS = (  # (folder, what it is)
    ("bundled", "the bundled separator (no fine-tuning)"),
    ("remix", "fine-tuned on remixes of the bundled hybrid's estimates (RemixIT), pairs 0.5, consistency 1"),
    ("remix-round2", "round 2: the remix run as the teacher (its hybrid), fine-tuned again from it on remixes of its estimates"),
    ("remix-round3", "round 3: remix-round2 as the teacher, fine-tuned again from it"),
)


def load(run: str, name: str) -> dict | None:
    """``run/name`` of this folder; the bundled separator's from the ablation's folder where this one has none."""
    for folder in (HERE, ABLATION) if run == "bundled" else (HERE,):
        if (folder / run / name).exists():
            return json.loads((folder / run / name).read_text())
    return None


def ablation_tables():
    """docs/results/separator-ablation/table.py, reading this folder's runs."""
    spec = importlib.util.spec_from_file_location("separator_ablation_table", ABLATION / "table.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.HERE, mod.STEPS, mod.load = HERE, (), load
    mod.RUNS = tuple(r for r in RUNS if r[0] == "bundled" or (HERE / r[0]).is_dir())
    return mod


def remix_tables(tab, method: str) -> None:
    """The remix hold-out: two sources (pairs per kind and SNR) and one source (each estimate over
    another clip's residual), mean SDR against the teacher's estimates, and paired differences."""
    label = tab.METHODS[method]
    reps = {run: tab.load(run, "remix_holdout.json") for run, _ in tab.RUNS}
    reps = {k: v for k, v in reps.items() if v is not None}
    if not reps:
        return
    two, one = tab.KINDS_TWO, tab.KINDS_ONE
    print(f"\n### Remix hold-out (`--pairs --remix`, against the teacher's estimates), {method}: mean SDR (dB)\n")
    head = ["run", "two sources", "one source", "all", "SDRi all", "SI-SDR all"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for run, rep in reps.items():
        a = [s for r, s in tab.items(rep, label) if r["kind"] in two]
        b = [s for r, s in tab.items(rep, label) if r["kind"] in one]
        print(f"| {run} | {tab.mean(a)} (n={len(a)}) | {tab.mean(b)} (n={len(b)}) | {tab.mean(a + b)} "
              f"| {tab.mean([s for _, s in tab.items(rep, label, 'sdr_improvement')])} "
              f"| {tab.mean([s for _, s in tab.items(rep, label, 'si_sdr')])} |")
    if "bundled" in reps:
        print(f"\nPaired difference from the bundled separator, {method} (same items; mean ± standard error, dB):\n")
        print("| run | two sources | one source | all |\n|---|---|---|---|")
        for run, rep in reps.items():
            if run != "bundled":
                print(f"| {run} | " + " | ".join(tab.paired(rep, reps["bundled"], label, k)
                                                 for k in (two, one, two + one)) + " |")
    print(f"\n### Remix hold-out, {method}: mean SDR (dB) per pair kind and SNR\n")
    cols = [(k, s) for k in two + one for s in tab.SNRS]
    print("| run | " + " | ".join(f"{k} {s:+.0f}" for k, s in cols) + " |\n|" + "---|" * (len(cols) + 1))
    for run, rep in reps.items():
        print(f"| {run} | " + " | ".join(tab.mean([x for _, x in tab.items(rep, label, kind=k, snr_db=s)])
                                        for k, s in cols) + " |")
    print(f"\n### Remix hold-out, {method}: mean SDR (dB) per queried class\n")
    classes = sorted({r["label"] for v in reps.values() for r in v["results"]})
    print("| class | " + " | ".join(reps) + " | n |\n|" + "---|" * (len(reps) + 2))
    for c in classes:
        cells = [tab.mean([x for _, x in tab.items(rep, label, label=c)]) for rep in reps.values()]
        print(f"| {c} | " + " | ".join(cells) + f" | {len(tab.items(next(iter(reps.values())), label, label=c))} |")


def other_rows(tab) -> None:
    """The remix hold-out's other rows (bundled model): the dictionaries, the mixture, the oracle."""
    rep = tab.load("bundled", "remix_holdout.json")
    if rep is None:
        return
    print("\n### Remix hold-out, every row of the bundled model's report, mean SDR (dB)\n")
    print("| row | two sources | one source | all |\n|---|---|---|---|")
    for label in rep["methods"]:
        a = [s for r, s in tab.items(rep, label) if r["kind"] in tab.KINDS_TWO]
        b = [s for r, s in tab.items(rep, label) if r["kind"] in tab.KINDS_ONE]
        print(f"| {label} | {tab.mean(a)} | {tab.mean(b)} | {tab.mean(a + b) if a + b else '—'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=("hybrid", "mask", "both"), default="both")
    args = ap.parse_args()
    methods = ("hybrid", "mask") if args.method == "both" else (args.method,)
    tab = ablation_tables()
    print("Runs: " + "; ".join(f"`{r}`: {what}" for r, what in tab.RUNS))
    for m in methods:
        tab.holdout_tables(m)
        remix_tables(tab, m)
    other_rows(tab)
    for split in ("val", "val_shift"):
        for m in methods:
            tab.pairs_tables(split, m)
            tab.sep_tables(split, m)


if __name__ == "__main__":
    main()
