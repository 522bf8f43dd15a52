"""Training the mask network of ``separate --method mask`` (``avscene train-separator``): loss and loop.

The data (anchors chosen by the weak detector, mixtures drawn on the fly) is
:mod:`avscene.train.masknet_data`. **Loss**: magnitude-weighted L1 between the mask and the
ideal ratio mask ``min(|T| / |M|, 1)`` (:func:`mask_loss`), zero exactly at the ideal mask.
AdamW with a one-cycle schedule. **Self-training** (``MaskNetTrainOptions.self_train_steps``): a
second round starts from the first round's network, whose estimate of the target's class in
the target segment alone becomes the target, at a third of the learning rate and the next seed.

The hold-out (every ``HOLDOUT_EVERY``-th training clip, never trained on) gives fixed
mixtures built the same way; their SDR against the target is logged, never used to choose
a step: the weights saved are the last step's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from avscene.errors import UsageError
from avscene.train.masknet_data import (
    EPS,
    MIN_ANCHOR_SNR_DB,
    MixOptions,
    MixtureSampler,
    TrainingMixture,
    TrainingPool,
    build_pool,
    decode_manifest,
    power,
)

if TYPE_CHECKING:
    from avscene.nn.masknet import MaskNet

WARMUP_FRACTION = 0.05  # of the steps, rising to the peak learning rate (one-cycle schedule)
MIN_WARMUP_STEPS = 2  # OneCycleLR divides by (warm-up steps - 1): a warm-up of exactly one step fails
SELF_TRAIN_LR_DIVISOR = 3  # the second round's peak learning rate is the first's over this

# --------------------------------------------------------------------------- loss


def ideal_mask(mix_mag: torch.Tensor, target_mag: torch.Tensor) -> torch.Tensor:
    """The ideal ratio mask ``min(|T| / |M|, 1)`` (0 where the mixture is silent)."""
    return torch.where(mix_mag > EPS, target_mag / mix_mag.clamp_min(EPS), torch.zeros_like(mix_mag)).clamp(0, 1)


def mask_loss(mask: torch.Tensor, mix_mag: torch.Tensor, target_mag: torch.Tensor) -> torch.Tensor:
    """Magnitude-weighted L1 between ``mask`` and :func:`ideal_mask`; zero exactly at the ideal mask."""
    return (mix_mag * (mask - ideal_mask(mix_mag, target_mag)).abs()).sum() / mix_mag.sum().clamp_min(EPS)


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    """``10 log10(|r|² / |r - e|²)``: the SDR of a plain (unprojected) estimate, dB."""
    err = power(np.asarray(reference, np.float64) - np.asarray(estimate, np.float64))
    return 10 * math.log10(max(power(reference), EPS) / max(err, EPS))


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class MaskNetTrainOptions:
    """The recipe of ``avscene train-separator`` (every default is the bundled network's)."""

    steps: int = 6000  # optimiser steps of the first round
    batch: int = 16  # mixtures per step
    lr: float = 1e-3  # peak learning rate (one-cycle schedule)
    hidden: int = 256  # channels of the network's temporal blocks
    blocks: int = 8  # residual blocks
    seed: int = 0  # initialisation and mixtures
    holdout_mixtures: int = 96  # fixed hold-out mixtures whose SDR is logged
    log_every: int = 50  # steps between log records
    eval_every: int = 1000  # steps between hold-out scores
    mix: MixOptions = field(default_factory=MixOptions)
    self_train_steps: int = 0  # steps of a second, self-trained round (0: none); see second_round
    min_anchor_snr_db: float | None = MIN_ANCHOR_SNR_DB  # anchors' least estimated SNR (None: keep all)

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "hidden", "blocks", "log_every", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        if self.self_train_steps < 0 or self.holdout_mixtures < 0:
            raise UsageError("self_train_steps and holdout_mixtures must be >= 0")
        if not (math.isfinite(self.lr) and self.lr >= 0):
            raise UsageError(f"the learning rate must be finite and >= 0, got {self.lr}")

    def second_round(self) -> MaskNetTrainOptions | None:
        """The self-training round's options: ``self_train_steps`` steps at a third of the peak
        learning rate, with the next seed (None without self-training)."""
        if not self.self_train_steps:
            return None
        return dataclasses.replace(self, steps=self.self_train_steps, lr=self.lr / SELF_TRAIN_LR_DIVISOR,
                                   seed=self.seed + 1, self_train_steps=0)


def warmup_fraction(steps: int) -> float:
    """The one-cycle schedule's warm-up fraction for a run of ``steps`` steps: ``WARMUP_FRACTION``,
    or ``MIN_WARMUP_STEPS / steps`` when that would be shorter than ``MIN_WARMUP_STEPS`` (with
    exactly one warm-up step, ``--steps 20``, OneCycleLR divided by zero)."""
    if steps * WARMUP_FRACTION >= MIN_WARMUP_STEPS or steps <= MIN_WARMUP_STEPS:
        return WARMUP_FRACTION
    return MIN_WARMUP_STEPS / steps


def _stft_mag(x: torch.Tensor, n_fft: int, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    from avscene.dsp.stft import stft

    X = stft(x, n_fft=n_fft, hop=hop)  # (B, F, T) complex
    return X, X.abs()


def apply_mask(net: MaskNet, mixture: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
    """The class sources (B, L) that ``net`` extracts from mixtures (B, L)."""
    from avscene.dsp.stft import istft

    X, mag = _stft_mag(mixture, net.cfg.n_fft, net.cfg.hop)
    return istft(net(mag, class_index) * X, length=mixture.shape[-1], n_fft=net.cfg.n_fft, hop=net.cfg.hop)


def holdout_score(net: MaskNet, mixtures: Sequence[TrainingMixture], labels: Sequence[str]) -> dict[str, float]:
    """Mean SDR (dB) of the network's estimates and of the mixture itself against the targets."""
    was = net.training
    net.eval()
    est, base = [], []
    with torch.no_grad():
        for i in range(0, len(mixtures), 16):
            part = mixtures[i:i + 16]
            m = torch.from_numpy(np.stack([x.mixture for x in part]))
            c = torch.tensor([list(labels).index(x.label) for x in part])
            out = apply_mask(net, m, c).numpy()
            est += [snr_db(o, x.target) for o, x in zip(out, part)]
            base += [snr_db(x.mixture, x.target) for x in part]
    net.train(was)
    return {"sdr": float(np.mean(est)), "mixture_sdr": float(np.mean(base)), "n": len(est)}


def train_mask_net(pool: TrainingPool, holdout: TrainingPool | None, labels: Sequence[str],
                    opts: MaskNetTrainOptions = MaskNetTrainOptions(), *, log_path: Path | None = None,
                    teacher: MaskNet | None = None,
                    progress: Callable[[int, int, float], None] | None = None) -> tuple[MaskNet, dict]:
    """Train a :class:`~avscene.nn.masknet.MaskNet` on mixtures drawn from ``pool`` (one round).

    With a ``teacher`` (self-training, a second round): the network starts from the teacher's
    weights, and each target segment is first cleaned by the teacher (its estimate of the
    target's class in the target segment alone), so the anchor's own background that the
    teacher removes is no longer asked for.

    Returns:
        The network (eval mode, last step's weights) and a summary for ``config.json``:
        options, pool sizes, time, and the hold-out SDR at the end.
    """
    from avscene.nn.masknet import MaskNet, MaskNetConfig, num_parameters

    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    net = MaskNet(MaskNetConfig(num_classes=len(labels), hidden=opts.hidden, blocks=opts.blocks))
    if teacher is not None:
        if teacher.cfg != net.cfg:
            raise UsageError(f"the teacher's shape {teacher.cfg} differs from the options' {net.cfg}")
        net.load_state_dict(teacher.state_dict())
        teacher.eval()
    sampler = MixtureSampler(pool, labels, opts.mix)
    fixed: list[TrainingMixture] = []
    if holdout is not None and holdout.anchors:
        hs = MixtureSampler(holdout, labels, opts.mix)
        hrng = np.random.default_rng(10_000 + opts.seed)
        fixed = [hs.sample(hrng) for _ in range(opts.holdout_mixtures)]
    optim = torch.optim.AdamW(net.parameters(), lr=opts.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=opts.lr, total_steps=opts.steps,
                                                pct_start=warmup_fraction(opts.steps))
    log = log_path.open("a") if log_path else None
    started, running, history = time.monotonic(), 0.0, []

    def record(entry: dict) -> None:
        history.append(entry)
        if log:
            log.write(json.dumps(entry) + "\n")
            log.flush()

    record({"event": "start", "parameters": num_parameters(net), "pool": pool.summary(),
            "options": asdict(opts)})
    net.train()
    try:
        for step in range(1, opts.steps + 1):
            m, t, c = sampler.batch(rng, opts.batch)
            if teacher is not None:
                with torch.no_grad():
                    t = apply_mask(teacher, t, c)
            X, mag = _stft_mag(m, net.cfg.n_fft, net.cfg.hop)
            _, tmag = _stft_mag(t, net.cfg.n_fft, net.cfg.hop)
            loss = mask_loss(net(mag, c), mag, tmag)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optim.step()
            sched.step()
            value = loss.item()
            running = 0.98 * running + 0.02 * value if step > 1 else value
            if step % opts.log_every == 0 or step == opts.steps:
                record({"step": step, "loss": round(running, 5), "lr": sched.get_last_lr()[0],
                        "elapsed_s": round(time.monotonic() - started, 1)})
            if fixed and (step % opts.eval_every == 0 or step == opts.steps):
                record({"step": step, "holdout": holdout_score(net, fixed, labels)})
            if progress:
                progress(step, opts.steps, running)
    finally:
        if log:
            log.close()
    net.eval()
    final = next((h["holdout"] for h in reversed(history) if "holdout" in h), None)
    summary = {"rounds": 1 if teacher is None else 2, "steps": opts.steps, "batch": opts.batch, "lr": opts.lr, "seed": opts.seed,
               "mix": asdict(opts.mix), "train_seconds": round(time.monotonic() - started, 1),
               "pool": pool.summary(), "holdout": final}
    return net, summary


def train_mask_net_for(model_folder: str | Path, manifest: str | Path, opts: MaskNetTrainOptions = MaskNetTrainOptions(),
                       *, log_path: Path | None = None, device: str = "cpu",
                       progress: Callable[[str, int, int], None] | None = None) -> tuple[Path, dict]:
    """Train a mask network for the checkpoint in ``model_folder`` on the clips of ``manifest`` and store
    it there as its separator.

    The checkpoint's audio network chooses the anchors (those estimated at least
    ``opts.min_anchor_snr_db`` over their clip's background); with ``opts.self_train_steps``, a
    second round (:meth:`MaskNetTrainOptions.second_round`) follows, the first round's network as
    its teacher. The network
    goes to ``separator.safetensors`` with its shape and this training's summary under
    ``separation.mask`` in ``config.json`` (:func:`avscene.separation.checkpoint.save_mask_net`).

    Returns:
        The weights' path and the training summary.
    """
    from avscene.hub import load_pretrained
    from avscene.separation.checkpoint import save_mask_net

    min_snr_db, self_train = opts.min_anchor_snr_db, opts.second_round()
    if not Path(manifest).is_file():
        raise UsageError(f"training manifest {manifest} not found")
    loaded = load_pretrained(str(model_folder), device=device)
    if not loaded.config.uses_audio:
        raise UsageError(f"the model {model_folder} has no audio network to choose the anchors with")
    step = (lambda what: (lambda d, n: progress(what, d, n))) if progress else (lambda what: None)  # noqa: E731
    train, held = decode_manifest(manifest, progress=step("decoding"))
    pool = build_pool(train, loaded, min_snr_db=min_snr_db, progress=step("anchors"))
    holdout = build_pool(held, loaded, min_snr_db=min_snr_db, progress=step("hold-out anchors"))
    bar = (lambda what: (lambda d, n, _loss: progress(what, d, n))) if progress else (lambda what: None)  # noqa: E731
    net, summary = train_mask_net(pool, holdout, loaded.labels, opts, log_path=log_path, progress=bar("training"))
    if self_train is not None:
        net, second = train_mask_net(pool, holdout, loaded.labels, self_train, log_path=log_path, teacher=net,
                                      progress=bar("self-training"))
        summary = {**second, "first_round": summary,
                   "train_seconds": round(summary["train_seconds"] + second["train_seconds"], 1)}
    summary = {**summary, "manifest": Path(manifest).name, "min_anchor_snr_db": min_snr_db,
               "anchors_from": "the checkpoint's audio network"}
    return save_mask_net(model_folder, net, summary), summary


__all__ = ["MaskNetTrainOptions", "apply_mask", "holdout_score", "ideal_mask", "mask_loss", "snr_db",
           "train_mask_net", "train_mask_net_for", "warmup_fraction"]
