"""``avscene calibrate``: per-modality (heard / seen) thresholds of a checkpoint, on its training hold-out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from avscene.cli._options import ThreadsOpt, uses_threads

EPILOG = """Examples:

  avscene calibrate models/avscene-av-small ../shared/avbench/train/labels.csv

  avscene calibrate runs/av --dry-run

  avscene calibrate runs/av --events

  avscene calibrate models/avscene-av-small --threshold robust
"""


@uses_threads
def calibrate_cmd(
    model: Annotated[Path, typer.Argument(help="Checkpoint folder (its config.json is updated).")],
    manifest: Annotated[Optional[Path], typer.Argument(help="The training labels.csv it was trained on "
                                                       "(default: the path its training record gives).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, mps.")] = "cpu",
    threads: ThreadsOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the thresholds, leave config.json.")] = False,
    threshold: Annotated[Optional[str], typer.Option(
        "--threshold", metavar="POOLS",
        help="First choose the fused decision threshold too, on the hold-out's 'clean' clips or 'robust': "
             "clean, with a training-family background at 0 dB, and that background alone (no label), "
             "the pools train --select robust uses.")] = None,
    events: Annotated[bool, typer.Option("--events", help="Then choose the sound-event rule (event_*) on "
                                         "temporal splices of the hold-out (two clips of disjoint labels).")] = False,
    event_criterion: Annotated[str, typer.Option(help="What --events maximises on the splices: 'segment' (DCASE "
                                                 "segment F1 against each part's labels), 'part' (part-level F1, "
                                                 "exact) or 'consistency' (the clean splice's events, kept under a "
                                                 "recording change; the segment F1 over-states the reference "
                                                 "and rewards flooding a part).")] = "consistency",
) -> int:
    """Choose audio_threshold / visual_threshold (first, with --threshold, the fused decision threshold;
    then, with --events, the event rule) on the clips the training run held out."""
    from rich.console import Console
    from rich.progress import Progress

    from avscene.results import json_text
    from avscene.train.calibrate import calibrate_fused, calibrate_modalities

    fused = None
    if threshold is not None:
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("scoring the hold-out's pools", total=None)
            fused = calibrate_fused(model, manifest, pools=threshold, write=not dry_run, device=device,
                                    progress=lambda d, n: bar.update(task, completed=d, total=n))
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("scoring the hold-out", total=None)
        res = calibrate_modalities(model, manifest, write=not dry_run, device=device,
                                   decision_threshold=None if fused is None else fused.threshold,
                                   progress=lambda d, n: bar.update(task, completed=d, total=n))
    out = res.to_json()
    if fused is not None:
        out["threshold"] = fused.to_json()
    if events:
        from avscene.train.event_calibration import calibrate_events

        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("scoring the hold-out's splices", total=None)
            ev = calibrate_events(model, manifest, write=not dry_run, device=device, criterion=event_criterion,
                                  progress=lambda d, n: bar.update(task, completed=d, total=n))
        out["events"] = ev.to_json()
    print(json_text(out, indent=2))
    return 0
