"""``avscene evaluate``: a model's scores on a manifest with ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from avscene.cli._options import (
    AudioThresholdOpt,
    DeviceOpt,
    ModelOpt,
    OfflineOpt,
    ReportForceOpt,
    ReportJsonOpt,
    ReportJsonOutOpt,
    RevisionOpt,
    VisualThresholdOpt,
)
from avscene.cli._output import check_report_path, emit_report

EPILOG = """Examples:

  avscene evaluate runs/av ../shared/avbench/val/labels.csv

  avscene evaluate --mode async ../shared/avbench/val/labels.csv --json-out eval.json
"""


def _fmt(x) -> str:
    return "—" if x is None or x != x else f"{x:.3f}"


def report_table(rep) -> Table:
    t = Table("metric", "value", title=f"{rep.model['id']} ({rep.model['variant']}) on {rep.n_clips} clips"
              + (f", mode {rep.mode}" if rep.mode else ""))
    c = rep.classification
    rows = [("classification micro-F1", c.micro_f1), ("classification precision", c.micro_precision),
            ("classification recall", c.micro_recall), ("classification macro-F1", c.macro_f1),
            ("subset accuracy", c.accuracy), ("top-1 accuracy", rep.top1_accuracy)]
    if rep.sed is not None:
        rows += [("SED segment F1 (1 s)", rep.sed.f1), ("SED error rate", rep.sed.error_rate)]
    if rep.localization is not None:
        rows += [("pointing game", rep.localization.pointing_accuracy), ("CorLoc@0.5", rep.localization.corloc)]
    if rep.avvp is not None:
        for level in ("segment", "event"):
            sc = getattr(rep.avvp, level)
            rows += [(f"AVVP {level}-level {name}", getattr(sc, key)) for name, key in (
                ("audio F1", "audio"), ("visual F1", "visual"), ("audio-visual F1", "audio_visual"),
                ("Type@AV", "type_av"), ("Event@AV", "event_av"))]
    for mode, r in (rep.recall_by_mode or {}).items():
        rows.append((f"recall, {mode} events (n={r['n']})", r["recall"]))
    for mode, r in (rep.recall_by_mode_parse or {}).items():
        rows.append((f"recall, {mode} events, heard or seen", r["recall"]))
    for name, v in rows:
        t.add_row(name, _fmt(v))
    return t


def evaluate_cmd(
    manifest: Annotated[Path, typer.Argument(help="CSV clip,labels; ground_truth.jsonl beside it is used "
                                             "for detection and localisation.")],
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    device: DeviceOpt = "auto",
    offline: OfflineOpt = False,
    mode: Annotated[Optional[str], typer.Option(help="Only clips with an event of this synchrony mode: "
                                                "sync, async, offscreen, silent.")] = None,
    ground_truth: Annotated[Optional[Path], typer.Option(help="ground_truth.jsonl (default: beside the "
                                                         "manifest).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Decision threshold (default: the model's; "
                                                       "0 is the paper's).")] = None,
    audio_threshold: AudioThresholdOpt = None,
    visual_threshold: VisualThresholdOpt = None,
    json_out: ReportJsonOutOpt = None,
    json_flag: ReportJsonOpt = False,
    force: ReportForceOpt = False,
) -> int:
    """Evaluate a model: classification F1, sound event detection, visual localisation, AVVP parsing."""
    from rich.console import Console
    from rich.progress import Progress

    from avscene.tasks.models import load_model
    from avscene.train.evaluate import evaluate

    check_report_path(json_out, force=force)
    loaded = load_model(model, revision=revision, offline=offline, device=device)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("evaluate", total=None)
        rep = evaluate(loaded, manifest, ground_truth=ground_truth, mode=mode, threshold=threshold,
                       audio_threshold=audio_threshold, visual_threshold=visual_threshold,
                       progress=lambda done, total: bar.update(task, completed=done, total=total))
    emit_report(rep, [report_table(rep)], json_out=json_out, json_flag=json_flag, force=force)
    return 0
