"""``avscene train-events``: fit a sound-event head onto a trained checkpoint (its embeddings frozen)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from avscene.cli._options import ThreadsOpt, uses_threads

EPILOG = """Examples:

  avscene train-events models/avscene-av-small ../shared/avbench/train/labels.csv -o runs/av-events

  avscene train-events runs/av -o runs/av-events --pooling auto_pool --steps 6000

  avscene train-events runs/av -o runs/av-events-last --steps 4000 --eval-every 4000 --threshold 0

  avscene localize clip.mp4 --model runs/av-events --json

Writes a copy of the checkpoint with an event head (config event_head: true); the checkpoint itself
is left as it is. Its video-level decisions are unchanged: only when a class sounds is read from the
new head. Steps and the event threshold are chosen on the checkpoint's training hold-out.
"""


@uses_threads
def train_events_cmd(
    model: Annotated[Path, typer.Argument(help="Trained checkpoint folder (with a training record).")],
    manifest: Annotated[Optional[Path], typer.Argument(help="The training labels.csv it was trained on "
                                                       "(default: the path its training record gives).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the copy with the event head.")] = ...,
    pooling: Annotated[str, typer.Option(help="How the head's window probabilities are pooled into a part's "
                                         "probability in training: max, mean, linear_softmax, exp_softmax, "
                                         "attention or auto_pool (the default: best on the bundled model's hold-out, "
                                         "docs/results/event_pooling).")] = "auto_pool",
    steps: Annotated[int, typer.Option(min=1, help="Training steps (32 bags each).")] = 4000,
    draws: Annotated[int, typer.Option(min=0, help="Augmented draws of each training clip beside the clean "
                                       "one (the run's own augmentation).")] = 8,
    eval_every: Annotated[int, typer.Option(min=1, help="Check the hold-out every this many steps; the best "
                                            "check is kept (--eval-every equal to --steps: the last step).")] = 200,
    threshold: Annotated[Optional[float], typer.Option(help="Install this event threshold on the head's logits "
                                                       "instead of the one chosen on the hold-out (0: probability "
                                                       "1/2).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the draws, splices and initialisation.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, mps (embedding the clips).")] = "cpu",
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output folder.")] = False,
    threads: ThreadsOpt = None,
) -> int:
    """Fit a sound-event head onto a checkpoint's frozen audio window embeddings: training clips
    spliced in time with clips of disjoint labels, each part pooled and taught its clip's labels."""
    from rich.console import Console
    from rich.progress import Progress

    from avscene.errors import UsageError
    from avscene.nn.mil import POOLINGS
    from avscene.results import json_text
    from avscene.train.event_head import EventHeadOptions, train_event_head

    if pooling not in POOLINGS:
        raise UsageError(f"--pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    opts = EventHeadOptions(pooling=pooling, steps=steps, draws=draws, eval_every=eval_every, seed=seed,
                            threshold=threshold)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("reading the checkpoint", total=None)
        out, fit = train_event_head(model, manifest, output, opts, force=force, device=device,
                                    progress=lambda phase, d, n: bar.update(task, description=phase, completed=d,
                                                                            total=n))
    print(json_text({"output": str(out), **fit.to_json()}, indent=2))
    return 0
