"""``avscene train-separator``: add a mask network for ``separate --method mask`` to a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from avscene.cli._options import ThreadsOpt, uses_threads

EPILOG = """Examples:

  avscene train-separator models/avscene-av-small ../shared/avbench/train/labels.csv --log runs/sep/log.jsonl

  avscene train-separator runs/remix/model ../shared/avbench/train/labels.csv --fine-tune --objective remix \
      --teacher-cache runs/remix/teacher --pair-fraction 0.5 --overlap-weight 1 --lr 3e-4 --steps 800

  avscene separate clip.mp4 --model models/avscene-av-small --method mask --label violin -o violin.wav

Only the video-level labels of the manifest are used: the checkpoint's audio network
chooses where each class sounds in its single-label clips (the anchors) and where
nothing does (background), and the network learns from mixtures made of them.
Every 10th clip is held out; its mixtures' SDR is logged, never used to pick a step.
"""


@uses_threads
def train_separator_cmd(
    model: Annotated[Path, typer.Argument(help="Checkpoint folder to add the separator to (its audio "
                                          "network chooses the anchors).")],
    manifest: Annotated[Path, typer.Argument(help="Training labels.csv (clip,labels): video-level labels only.")],
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = 6000,
    batch: Annotated[int, typer.Option(min=1, help="Mixtures per step (2-s segments).")] = 16,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate (one-cycle schedule).")] = 1e-3,
    hidden: Annotated[int, typer.Option(min=8, help="Channels of the network's temporal blocks.")] = 256,
    blocks: Annotated[int, typer.Option(min=1, help="Residual blocks (dilations 1, 2, 4, 8, ...).")] = 8,
    background_prob: Annotated[float, typer.Option(min=0.0, max=1.0, help="Probability of adding a "
                                                   "background-only segment to each mixture (0: plain "
                                                   "mix-and-separate).")] = 1.0,
    other_prob: Annotated[float, typer.Option(min=0.0, max=1.0, help="Probability of adding another "
                                              "class's anchor.")] = 0.5,
    min_anchor_snr: Annotated[float, typer.Option(help="Use only anchors estimated at least this many dB "
                                                  "over their own clip's background (a class keeps at "
                                                  "least 20 s of its cleanest).")] = 10.0,
    self_train_steps: Annotated[int, typer.Option(min=0, help="Steps of a second round whose targets are "
                                                  "first cleaned by the first round's network, at a third "
                                                  "of --lr and seed + 1 (0: none).")] = 0,
    pair_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of each batch that mixes two "
                                                 "clips with disjoint labels, both classes queried, each "
                                                 "clip's segment its target (0: none).")] = 0.0,
    assessor_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the classifier-as-assessor loss "
                                                   "on the pairs (the checkpoint's audio network, frozen).")] = 0.0,
    overlap_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the mixture-consistency loss on the "
                                                  "pairs (the two masks claim no more than the mixture).")] = 0.0,
    objective: Annotated[str, typer.Option(help="What the pairs (--pair-fraction) ask for: 'mix-and-separate' "
                                           "(each queried class returns its own clip) or 'coseparation' (two "
                                           "clips with disjoint labels, two-label clips too; the classes of "
                                           "each clip must add up to it) or 'remix' (every mixture a remix of a "
                                           "teacher's estimates, --teacher-cache; the pairs' share has two "
                                           "sources).")] = "mix-and-separate",
    teacher_cache: Annotated[Optional[Path], typer.Option(help="With --objective remix: the folder of the "
                                                          "teacher's estimates of the training clips (built "
                                                          "there with the checkpoint's default separation "
                                                          "method when it holds none).")] = None,
    fine_tune: Annotated[bool, typer.Option("--fine-tune", help="Start from the checkpoint's mask network.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the initialisation and of the mixtures.")] = 0,
    log: Annotated[Optional[Path], typer.Option(help="Append the training log (JSON lines) here.")] = None,
    threads: ThreadsOpt = None,
) -> int:
    """Train the separation network from weak labels (mix-and-separate on anchors of the weak detector)."""
    from rich.console import Console
    from rich.progress import Progress

    from avscene.train.masknet import MaskNetTrainOptions, train_mask_net_for
    from avscene.train.masknet_data import MixOptions

    opts = MaskNetTrainOptions(steps=steps, batch=batch, lr=lr, hidden=hidden, blocks=blocks, seed=seed,
                               mix=MixOptions(background_prob=background_prob, other_prob=other_prob),
                               self_train_steps=self_train_steps, min_anchor_snr_db=min_anchor_snr,
                               pair_fraction=pair_fraction, assessor_weight=assessor_weight,
                               overlap_weight=overlap_weight, fine_tune=fine_tune, objective=objective)
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        path, summary = train_mask_net_for(model, manifest, opts, log_path=log, teacher_cache=teacher_cache,
                                           progress=progress)
    held = summary.get("holdout")
    if held:
        print(f"hold-out mixtures: SDR {held['sdr']:+.2f} dB (mixture {held['mixture_sdr']:+.2f} dB, "
              f"{held['n']} mixtures)")
    pairs = summary.get("holdout_pairs")
    if pairs:
        print(f"hold-out pairs: SDR {pairs['sdr']:+.2f} dB (mixture {pairs['mixture_sdr']:+.2f} dB, "
              f"{pairs['n']} outputs)")
    for key, what in (("holdout_remix", "hold-out remixes, one source"), ("holdout_remix_pairs", "hold-out remixes, two sources")):
        if summary.get(key):
            r = summary[key]
            print(f"{what}: SDR {r['sdr']:+.2f} dB against the teacher (mixture {r['mixture_sdr']:+.2f} dB, {r['n']} outputs)")
    print(f"separator → {path} ({summary['train_seconds'] / 60:.1f} min)")
    return 0
