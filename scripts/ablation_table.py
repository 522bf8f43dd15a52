"""A markdown table comparing training recipes, copied from their evaluation files (never typed in).

    python scripts/ablation_table.py [--parsing] RECIPE|NAME=DIR [...]

A bare ``RECIPE`` is the run recorded in ``docs/results/RECIPE/`` (the folder layout is described in
``docs/results/README.md``); ``NAME=DIR`` names a row and reads another folder. Each holds
``eval_val_noise.json`` and ``eval_val_shift_noise.json`` (``avscene evaluate --add-noise heldout:0
--add-noise heldout:10 --json-out``, before calibration: the fused decision the noise stress scores)
and optionally ``train_log.jsonl`` (the training hold-out, per epoch). A run trained with ``--select
robust`` is given as ``RECIPE@robust`` (or ``NAME=DIR@robust``): its kept epoch is the best on the
hold-out pooled clean, with training-family noise and pure noise (``robust_micro_f1``), as `avscene
train` keeps it.

``--parsing`` gives the heard / seen / both table instead (issue 22), from ``eval_val.json`` and
``eval_val_shift.json`` (``avscene evaluate --json-out`` of the calibrated model): micro-F1, recall of
events seen but never heard (``silent``) and heard but never seen (``offscreen``) by the heard-or-seen
decisions, the AVVP segment-level audio, visual, audio-visual and Type@AV F1, event-level Type@AV,
CorLoc@0.5 and pointing.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"  # one folder per recipe


def _f(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


SELECT_KEY = {"clean": "val_micro_f1", "robust": "robust_micro_f1"}  # what `avscene train --select` keeps by
LOSS_KEY = {"clean": "val_loss", "robust": "robust_loss"}  # and what breaks its ties


def _holdout(log: Path, select: str = "clean") -> str:
    """The kept epoch's hold-out micro-F1 (the best one by the run's selection; on a tie the lower
    validation loss, then the first, as `avscene train` keeps it); a robust selection also shows its
    pooled figure."""
    if not log.is_file():
        return "—"
    key = SELECT_KEY[select]
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get(key) is not None]
    if not rows:
        return "—"
    best = max(rows, key=lambda r: (r[key], -r.get(LOSS_KEY[select], math.inf), -r["epoch"]))
    if select == "clean":
        return f"{best['val_micro_f1']:.3f} (ep. {best['epoch']})"
    return f"{best['val_micro_f1']:.3f} (ep. {best['epoch']}, robust {best[key]:.3f})"


def _worst(e: dict) -> str:
    per = [(c["f1"], c["name"]) for c in e["classification"]["classes"] if c.get("f1") is not None]
    f1, name = min(per)
    return f"{name} {f1:.2f}"


def _pooled_0db(e: dict) -> dict:
    """The noise stress pooled over every held-out family (``all``) at 0 dB."""
    return next(c for c in e["noise_stress"]["conditions"] if c["family"] == "all" and c["snr_db"] == 0.0)


def _pure(e: dict) -> float:
    """Share of pure-noise clips given any label, over every held-out family."""
    fams = e["noise_stress"]["pure_noise"]
    return sum(p["any_label"] * p["n_clips"] for p in fams) / sum(p["n_clips"] for p in fams)


def row(name: str, folder: Path, select: str = "clean") -> str:
    val, shift = (json.loads((folder / f"eval_{s}_noise.json").read_text()) for s in ("val", "val_shift"))
    cells = [name, _holdout(folder / "train_log.jsonl", select)]
    cells += [f"{_f(val['classification']['micro_f1'])} / {_f(shift['classification']['micro_f1'])}",
              _worst(shift), f"{_f(val['sed']['f1'])} / {_f(shift['sed']['f1'])}"]
    a, b = _pooled_0db(val), _pooled_0db(shift)
    cells += [f"{_f(a['micro_f1'])} / {_f(b['micro_f1'])}", f"{_f(a['max_fp_rate'])} / {_f(b['max_fp_rate'])}"]
    cells.append(f"{_f(_pure(val))} / {_f(_pure(shift))}")
    return "| " + " | ".join(cells) + " |"


def parsing_row(name: str, folder: Path, select: str = "clean") -> str:
    val, shift = (json.loads((folder / f"eval_{s}.json").read_text()) for s in ("val", "val_shift"))

    def both(*keys: str) -> str:
        def get(e: dict) -> float | None:
            for k in keys:
                e = e.get(k) if isinstance(e, dict) else None
            return e
        return f"{_f(get(val))} / {_f(get(shift))}"

    cells = [name, _holdout(folder / "train_log.jsonl", select), both("classification", "micro_f1"),
             both("recall_by_mode_parse", "silent", "recall"), both("recall_by_mode_parse", "offscreen", "recall")]
    cells += [both("avvp", "segment", k) for k in ("audio", "visual", "audio_visual", "type_av")]
    cells += [both("avvp", "event", "type_av"), both("localization", "corloc"),
              both("localization", "pointing_accuracy")]
    return "| " + " | ".join(cells) + " |"


PARSING_HEADER = ("| recipe | hold-out micro-F1 (kept epoch) | micro-F1 | silent recall | offscreen recall "
                  "| AVVP segment audio | segment visual | segment audio-visual | segment Type@AV "
                  "| event Type@AV | CorLoc@0.5 | pointing |\n|---|---|---|---|---|---|---|---|---|---|---|---|")

HEADER = ("| recipe | hold-out micro-F1 (kept epoch) | micro-F1 val / val_shift | val_shift worst class F1 "
          "| SED F1 val / val_shift | held-out noise 0 dB, micro-F1 | held-out noise 0 dB, max FP rate "
          "| pure noise, clips with a label |\n|---|---|---|---|---|---|---|---|")


def parse_arg(arg: str) -> tuple[str, Path, str]:
    """``RECIPE[@SELECT]`` or ``NAME=DIR[@SELECT]`` → (row name, folder, selection)."""
    name, eq, spec = arg.partition("=")
    spec, _, select = (spec if eq else name).partition("@")
    if (select or "clean") not in SELECT_KEY:
        raise SystemExit(f"{arg}: the selection after @ is one of {', '.join(SELECT_KEY)}")
    return (name, Path(spec), select or "clean") if eq else (spec, RESULTS / spec, select or "clean")


def main(argv: list[str]) -> None:
    parsing = bool(argv) and argv[0] == "--parsing"
    argv = argv[1:] if parsing else argv
    if not argv:
        raise SystemExit(__doc__)
    lines, make = ([PARSING_HEADER], parsing_row) if parsing else ([HEADER], row)
    lines += [make(*parse_arg(arg)) for arg in argv]
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
