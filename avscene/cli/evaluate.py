"""``avscene evaluate``: a model's scores on a manifest with ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from avscene.cli._options import (
    AudioThresholdOpt,
    BoxModeOpt,
    BoxRegressorOpt,
    EraseRoundsOpt,
    DeviceOpt,
    HubTimeoutOpt,
    ModelOpt,
    OfflineOpt,
    ReportForceOpt,
    ReportJsonOpt,
    ReportJsonOutOpt,
    RevisionOpt,
    SnapOpt,
    ThreadsOpt,
    VisualThresholdOpt,
    uses_threads,
)
from avscene.cli._output import check_report_path, emit_report

EPILOG = """Examples:

  avscene evaluate ../shared/avbench/val/labels.csv --model runs/av

  avscene evaluate --mode async ../shared/avbench/val/labels.csv --json-out eval.json

  avscene evaluate ../shared/avbench/val/labels.csv --add-noise heldout:0 --add-noise heldout:10

  avscene evaluate ../shared/avbench/val/labels.csv --add-noise crowd:5 --pure-noise-clips 20
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
        rows += [("pointing game", rep.localization.pointing_accuracy), ("CorLoc@0.5", rep.localization.corloc),
                 ("median IoU of the boxes", rep.localization.median_iou),
                 ("median box area / object area", rep.localization.median_size_ratio)]
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


def class_tables(rep) -> list[Table]:
    """Per class: visual localisation (pointing, CorLoc, median IoU and size ratio) and SED."""
    tables = []
    if rep.localization is not None and rep.localization.classes:
        t = Table("class", "frames", "pointing", "CorLoc@0.5", "median IoU", "box/object area",
                  title="visual localisation per class")
        for c in sorted(rep.localization.classes.values(), key=lambda c: c.name):
            t.add_row(c.name, str(c.n), _fmt(c.pointing_accuracy), _fmt(c.corloc), _fmt(c.median_iou),
                      _fmt(c.median_size_ratio))
        tables.append(t)
    if rep.sed is not None:
        t = Table("class", "ref segments", "F1", "ER", "precision", "recall", title="SED (1-s segments) per class")
        for c in rep.sed.classes:
            if c.n_ref or c.n_sys:
                t.add_row(c.name, str(c.n_ref), _fmt(c.f1), _fmt(c.error_rate), _fmt(c.precision), _fmt(c.recall))
        tables.append(t)
    return tables


def noise_tables(ns) -> list[Table]:
    """The noise-stress section: one row per family and SNR, then the pure-noise false alarms."""
    clean = ns.clean
    t = Table("noise", "SNR dB", "micro-F1", "Δ clean", "max FP rate", "worst class",
              title=f"noise stress ({clean.n_clips} clips; clean micro-F1 {_fmt(clean.micro_f1)}, "
                    f"max FP rate {_fmt(clean.max_fp_rate)})")
    for c in ns.conditions:
        t.add_row(c.family, f"{c.snr_db:g}", _fmt(c.micro_f1), f"{c.micro_f1 - clean.micro_f1:+.3f}",
                  _fmt(c.max_fp_rate), c.worst_class() or "—")
    tables = [t]
    if ns.pure_noise:
        p = Table("noise", "clips", "with any label", "labels given", title="pure noise (audio only): false alarms")
        for r in ns.pure_noise:
            given = ", ".join(f"{k} {v}" for k, v in sorted(r.label_counts.items(), key=lambda kv: -kv[1])[:3])
            p.add_row(r.family, str(r.n_clips), _fmt(r.any_label), given or "—")
        tables.append(p)
    return tables


@uses_threads
def evaluate_cmd(
    manifest: Annotated[Path, typer.Argument(help="CSV clip,labels; ground_truth.jsonl beside it is used "
                                             "for detection and localisation.")],
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    device: DeviceOpt = "auto",
    offline: OfflineOpt = False,
    hub_timeout: HubTimeoutOpt = None,
    threads: ThreadsOpt = None,
    mode: Annotated[Optional[str], typer.Option(help="Only clips with an event of this synchrony mode: "
                                                "sync, async, offscreen, silent.")] = None,
    ground_truth: Annotated[Optional[Path], typer.Option(help="ground_truth.jsonl (default: beside the "
                                                         "manifest).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Decision threshold (default: the model's; "
                                                       "0 is the paper's).")] = None,
    audio_threshold: AudioThresholdOpt = None,
    visual_threshold: VisualThresholdOpt = None,
    add_noise: Annotated[Optional[list[str]], typer.Option(
        "--add-noise", metavar="FAMILY[:SNR]",
        help="Noise stress (repeatable): also evaluate with this noise family added at SNR dB (default 0) "
             "over each clip's mixture power; 'heldout' = every held-out family. Adds per-class "
             "false-positive rates, micro-F1 and pure-noise false alarms.")] = None,
    pure_noise_clips: Annotated[Optional[int], typer.Option(
        min=0, help="Pure-noise clips per family with --add-noise (default: one per evaluated clip).")] = None,
    box_mode: BoxModeOpt = "evidence",
    erase_rounds: EraseRoundsOpt = 3,
    box_regressor: BoxRegressorOpt = None,
    evidence_weight: Annotated[str, typer.Option(
        help="What each window adds to the evidence map: 'A' (its positive class score), 'E' (its "
             "localisation-weighted score) or 'loc' (its localisation weight).")] = "A",
    evidence_fraction: Annotated[float, typer.Option(
        help="Evidence map threshold, a fraction of its range (CAM's 0.2).")] = 0.2,
    snap: SnapOpt = True,
    event_classes: Annotated[str, typer.Option(
        help="Classes whose windows become sound events: heard_or_predicted, heard, predicted.")] = "heard_or_predicted",
    event_low: Annotated[Optional[float], typer.Option(
        help="Hysteresis: an event continues while the window's class score A is above this "
             "(default -0.5; --no-hysteresis for the threshold alone).")] = None,
    no_hysteresis: Annotated[bool, typer.Option("--no-hysteresis", help="Events: E above the threshold alone.")] = False,
    event_fraction: Annotated[Optional[float], typer.Option(
        help="Clip-relative events instead: windows with A at least this fraction of the clip's best.")] = None,
    event_median: Annotated[int, typer.Option(min=1, help="Median filter over this many window decisions (odd).")] = 1,
    json_out: ReportJsonOutOpt = None,
    json_flag: ReportJsonOpt = False,
    force: ReportForceOpt = False,
) -> int:
    """Evaluate a model: classification F1, sound event detection, visual localisation, AVVP parsing."""
    from rich.console import Console
    from rich.progress import Progress

    from avscene.tasks.models import load_model
    from avscene.evaluation.evaluate import evaluate
    from avscene.evaluation.noise_stress import parse_noise_specs

    from avscene.checkpoint.box_regressor import read_box_regressor
    from avscene.tasks.localize import EVENT_LOW, LocalizeOptions

    check_report_path(json_out, force=force)
    noise = parse_noise_specs(add_noise or [])
    low = None if no_hysteresis else (EVENT_LOW if event_low is None else event_low)
    loc_opts = LocalizeOptions(box_mode=box_mode, erase_rounds=erase_rounds,
                               box_regressor=None if box_regressor is None else read_box_regressor(box_regressor), evidence_weight=evidence_weight, evidence_fraction=evidence_fraction,
                               snap=snap, event_classes=event_classes, event_low=low, event_fraction=event_fraction,
                               event_median=event_median)
    loaded = load_model(model, revision=revision, offline=offline, device=device, hub_timeout=hub_timeout)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("evaluate", total=None)
        rep = evaluate(loaded, manifest, ground_truth=ground_truth, mode=mode, threshold=threshold,
                       audio_threshold=audio_threshold, visual_threshold=visual_threshold,
                       progress=lambda done, total: bar.update(task, completed=done, total=total),
                       noise=noise, pure_noise_clips=pure_noise_clips, localize=loc_opts)
    tables = [report_table(rep), *class_tables(rep)] + ([] if rep.noise_stress is None else noise_tables(rep.noise_stress))
    emit_report(rep, tables, json_out=json_out, json_flag=json_flag, force=force)
    return 0
