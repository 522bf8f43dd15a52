"""``avscene train-dictionaries``: add supervised-NMF dictionaries to a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from avscene.cli._options import ThreadsOpt, uses_threads

EPILOG = """Examples:

  avscene train-dictionaries runs/av ../shared/avbench/train/labels.csv

  avscene separate clip.mp4 --model runs/av --method dictionary --label violin -o violin.wav
"""


@uses_threads
def train_dictionaries_cmd(
    model: Annotated[Path, typer.Argument(help="Checkpoint folder to add the dictionaries to.")],
    manifest: Annotated[Path, typer.Argument(help="Training labels.csv (clip,labels): video-level labels only.")],
    clips_per_class: Annotated[int, typer.Option(min=1, help="Single-label clips read per class.")] = 16,
    threads: ThreadsOpt = None,
) -> int:
    """Learn one NMF dictionary per class (and one of the background) from single-label training clips."""
    from rich.console import Console
    from rich.progress import Progress

    from avscene.train.dictionaries import train_dictionaries

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("reading clips", total=None)
        path = train_dictionaries(model, manifest, clips_per_class=clips_per_class,
                                  progress=lambda d, n: bar.update(task, completed=d, total=n))
    print(f"dictionaries → {path}")
    return 0
