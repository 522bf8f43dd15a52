"""``avscene train``: a checkpoint from a CSV of weakly labelled videos."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from avscene.cli._options import ThreadsOpt, uses_threads

EPILOG = """Examples:

  avscene train ../shared/avbench/train/labels.csv -o runs/av

  avscene train labels.csv -o runs/audio --variant audio --epochs 20

  torchrun --nproc_per_node=2 -m avscene train labels.csv -o runs/ddp

An existing OUTPUT folder is refused: --resume continues its run, --force starts afresh (its
weights, card, training log, resume state and separation parts are replaced).
"""

# what a training run writes into OUTPUT besides the checkpoint's files (hub.HUB_FILES): --force
# removes these (and nothing else) before it starts
RUN_FILES = ("train_log.jsonl", "refined_targets.npz")
RUN_FOLDERS = ("last", "epochs")


def _check_output(output: Path, *, force: bool, resume: bool) -> None:
    """Refuse an existing checkpoint folder without --force / --resume; with --force, remove what an
    earlier run wrote there (so no old log, card or part outlives its weights). Rank 0 only
    (torchrun stops the other ranks when it fails)."""
    import shutil

    from avscene.errors import OutputError
    from avscene.checkpoint.format import HUB_FILES

    if resume or os.environ.get("RANK", "0") != "0" or not output.exists():
        return
    if output.is_dir() and not any(output.iterdir()):
        return
    if not force:
        raise OutputError(f"{output} already exists; pass --resume to continue its training or --force to "
                          "replace it")
    if not output.is_dir():
        raise OutputError(f"{output} is a file: give a folder for -o")
    for name in (*HUB_FILES, *RUN_FILES):
        (output / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        shutil.rmtree(output / name, ignore_errors=True)


def _parse_overrides(items: list[str] | None, what: str) -> dict:
    from avscene.errors import UsageError

    out = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--{what} takes KEY=VALUE (got {item!r})")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


@uses_threads
def train_cmd(
    manifest: Annotated[Path, typer.Argument(help="CSV with columns clip,labels (labels ';'-separated).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint folder to write.")],
    val: Annotated[Optional[Path], typer.Option("--val", help="Validation manifest (default: hold out "
                                                "--val-split of the training manifest).")] = None,
    val_split: Annotated[float, typer.Option(min=0.0, max=0.5, help="Fraction of each label set held out "
                                             "(without --val) to choose the best epoch and calibrate the "
                                             "threshold. 0, or too few clips to hold any out: the last "
                                             "epoch is kept, uncalibrated.")] = 0.1,
    variant: Annotated[str, typer.Option(help="async, sync, audio, visual, onestream, wsddn or avor "
                                         "(noisy-OR of the modalities: heard or seen).")] = "async",
    preset: Annotated[str, typer.Option(help="Architecture: small (CPU-trainable, the bundled "
                                        "model's) or vggish (the paper's VGGish + ResNet-18).")] = "small",
    audio_proposals: Annotated[str, typer.Option(help="tsp, ncp or tsp+ncp.")] = "tsp",
    epochs: Annotated[int, typer.Option(min=1, help="Most epochs (fewer with early stopping, see --patience).")] = 30,
    batches_per_epoch: Annotated[Optional[int], typer.Option(min=1, help="Batches per epoch (default: one "
                                                             "pass over the clips).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Bags per batch (the paper: 24).")] = 24,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 1e-4,
    patience: Annotated[int, typer.Option(min=1, help="Early stopping after this many epochs "
                                          "without a better validation micro-F1.")] = 6,
    select: Annotated[str, typer.Option(help="What chooses the epoch and calibrates the threshold: clean "
                                        "(hold-out micro-F1) or robust (micro-F1 pooled over the hold-out "
                                        "clips clean, with a training-family background at 0 dB, and as pure "
                                        "noise; held-out noise families are never used).")] = "clean",
    keep_epochs: Annotated[bool, typer.Option("--keep-epochs", help="Also save every epoch as a checkpoint "
                                              "OUTPUT/epochs/NN (uncalibrated), to compare selections.")] = False,
    freeze: Annotated[Optional[list[str]], typer.Option(metavar="PART", help="Keep fixed: audio_backbone, "
                                                        "visual_backbone, audio, visual.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, the initialisation, the batches and the "
                                      "augmentation: the same seed, the same weights.")] = 0,
    balance: Annotated[bool, typer.Option(help="Label-first balanced batches.")] = True,
    augment: Annotated[bool, typer.Option(help="Audio/visual augmentation.")] = True,
    mix_prob: Annotated[float, typer.Option(help="Bag mixing: probability of adding a second clip to a bag (labels: union).")] = 0.0,
    aux_loss: Annotated[float, typer.Option(help="Weight of each modality's own loss beside the fused one.")] = 0.0,
    refine_labels: Annotated[bool, typer.Option("--refine-labels", help="Modality-aware targets for each "
                                                "modality's own loss: a label is kept in the stream that still "
                                                "finds it beside an unrelated clip's other track (MA; scored by "
                                                "the starting model: use with --init-model; mixed bags get "
                                                "the union of both clips' targets).")] = False,
    oicr_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the OICR branches' loss (a model "
                                               "with --model-opt visual_refine=K).")] = 1.0,
    visual_floor: Annotated[float, typer.Option(min=0.0, help="Weight of a floor under the visual stream's "
                                                "own evidence: each labelled class's best box must score above "
                                                "+1, an absent class's below -1 (keeps a class that the audio "
                                                "finds easily from going dead in the visual stream; 0: off).")] = 0.0,
    splice_prob: Annotated[float, typer.Option(min=0.0, max=1.0, help="Temporal splice: probability that a "
                                               "training bag is joined in time with a clip that shares none of "
                                               "its labels (labels: the union; an event head learns each half's "
                                               "own).")] = 0.0,
    event_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the event head's loss (a model with "
                                                "--model-opt event_head=true: per-window sound events, "
                                                "linear-softmax pooled).")] = 1.0,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Proposal cache (default ~/.cache/avscene).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes preparing the cache.")] = 2,
    init_audio: Annotated[Optional[Path], typer.Option(help="VGGish weights (.safetensors or .pth).")] = None,
    init_visual: Annotated[Optional[Path], typer.Option(help="torchvision ImageNet weights of the CNN.")] = None,
    init_model: Annotated[Optional[Path], typer.Option(help="Fine-tune: start from this avscene checkpoint "
                                                       "folder (its architecture, preprocessing and weights); --model-opt may "
                                                       "add audio_context, visual_refine (OICR) or event_head to it, --pre-opt "
                                                       "may set band_norm or visual_proposals, --variant may "
                                                       "change the fusion where the weights are the same "
                                                       "(e.g. async → avor).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUTPUT/last.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing OUTPUT checkpoint (without it, "
                                        "and without --resume, an existing OUTPUT is refused).")] = False,
    calibrate: Annotated[bool, typer.Option(help="After training, set the decision threshold that "
                                            "maximises micro-F1 on the held-out clips.")] = True,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, mps or auto.")] = "auto",
    threads: ThreadsOpt = None,
    model_opt: Annotated[Optional[list[str]], typer.Option("--model-opt", metavar="KEY=VALUE", help="ModelConfig override "
                                                           "KEY=VALUE (JSON values), repeatable.")] = None,
    pre_opt: Annotated[Optional[list[str]], typer.Option("--pre-opt", metavar="KEY=VALUE", help="PreprocessConfig override "
                                                         "KEY=VALUE, repeatable.")] = None,
    aug_opt: Annotated[Optional[list[str]], typer.Option("--aug-opt", metavar="KEY=VALUE", help="Augmentation setting "
                                                         "KEY=VALUE (an AugmentOptions field, e.g. "
                                                         "eq_db=12), repeatable.")] = None,
) -> int:
    """Train a model from video-level labels only; writes a Hub-format checkpoint folder."""
    from rich.console import Console

    from avscene.tasks.models import resolve_device
    from avscene.train.loop import TrainConfig, fit

    _check_output(output, force=force, resume=resume)
    cfg = TrainConfig(
        manifest=str(manifest), output=str(output), val_manifest=None if val is None else str(val),
        val_split=val_split, variant=variant, audio_proposals=audio_proposals, epochs=epochs,
        batches_per_epoch=batches_per_epoch, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        patience=patience, select=select, keep_epochs=keep_epochs, freeze=tuple(freeze or ()), seed=seed, balance=balance, augment=augment, mix_prob=mix_prob, aux_loss=aux_loss,
        refine_labels=refine_labels, oicr_weight=oicr_weight, visual_floor=visual_floor,
        splice_prob=splice_prob, event_weight=event_weight,
        cache_dir=None if cache_dir is None else str(cache_dir), workers=workers,
        init_audio=None if init_audio is None else str(init_audio),
        init_visual=None if init_visual is None else str(init_visual),
        init_model=None if init_model is None else str(init_model), resume=resume, calibrate=calibrate,
        device=resolve_device(device), preset=preset, model=_parse_overrides(model_opt, "model-opt"),
        preprocess=_parse_overrides(pre_opt, "pre-opt"), augment_opts=_parse_overrides(aug_opt, "aug-opt"),
    )
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    err = Console(stderr=True)
    quiet = os.environ.get("RANK", "0") != "0"  # torchrun: bars from rank 0 only
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=err, transient=True, disable=quiet)
    tasks: dict[str, int] = {}

    def on_prepare(done: int, total: int) -> None:
        tasks.setdefault("prep", bar.add_task("preparing clips", total=total))
        bar.update(tasks["prep"], completed=done)

    def on_step(epoch: int, step: int, total: int) -> None:
        key = f"epoch{epoch}"
        if key not in tasks:
            for old in [k for k in tasks if k != key]:
                bar.remove_task(tasks.pop(old))
            tasks[key] = bar.add_task(f"epoch {epoch}", total=total)
        bar.update(tasks[key], completed=step)

    with bar:
        summary = fit(cfg, log=lambda m: bar.console.print(m, markup=False, highlight=False),
                      on_step=on_step, on_prepare=on_prepare)
    if os.environ.get("RANK", "0") != "0":  # torchrun: one summary, from rank 0
        return 0
    kept = (f"best validation micro-F1 {summary.best_val_f1:.3f} at epoch {summary.best_epoch}"
            if summary.holdout_clips else f"no hold-out clips: kept the last epoch ({summary.best_epoch}), "
            "threshold not calibrated")
    err.print(f"{kept}; {summary.epochs_run} epochs in {summary.seconds / 60:.1f} min → {summary.output}",
              markup=False, highlight=False)
    return 0
