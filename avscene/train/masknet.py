"""Training the mask network of ``separate --method mask`` (``avscene train-separator``): loss and loop.

The data (anchors chosen by the weak detector, mixtures drawn on the fly) is
:mod:`avscene.train.masknet_data`. **Loss**: magnitude-weighted L1 between the mask and the
ideal ratio mask ``min(|T| / |M|, 1)`` (:func:`mask_loss`), zero exactly at the ideal mask.
AdamW with a one-cycle schedule. **Self-training** (``MaskNetTrainOptions.self_train_steps``): a
second round starts from the first round's network, whose estimate of the target's class in
the target segment alone becomes the target, at a third of the learning rate and the next seed.

**Two classes at once** (``pair_fraction`` of each batch, :class:`~avscene.train.masknet_data.PairSampler`):
mix-and-separate of two clips with disjoint labels, each queried class's target its own clip's
segment; the same mask loss for both queries, plus

* the **classifier as assessor** (Pishdadian, Wichern & Le Roux, TASLP 2020;
  :func:`assessor_loss`, ``assessor_weight``): the checkpoint's audio network, frozen, scores
  the output of each query; the output for class ``a`` must score ``a`` above ``margin`` and
  the mixture's other class ``b`` below ``-margin`` (hinge, the network's max over its
  0.96-s windows, as its MIL does). Its gradient is about 100× the mask loss's on avbench
  pairs (and Adam follows the larger one), so its weight is small (0.01–0.02); with the
  assessor alone (weight 1 on a toy two-tone problem) nothing is learnt;
* **co-separation** (``objective="coseparation"``, Gao & Grauman, ICCV 2019;
  :func:`coseparation_loss`): the pairs are two clips with disjoint label sets, two-label clips
  included (:class:`~avscene.train.masknet_data.CoSeparationSampler`), and what the classes of
  one clip return must add up to that clip (no per-class target: MixIT's assignment, known from
  the labels); the mixture consistency below applies to all the queried classes;
* **bootstrapped remixing** (``objective="remix"``, RemixIT, Tzinis et al., IEEE JSTSP 2022;
  :mod:`avscene.train.remix`): *every* mixture of the batch, one-source and pairs, is a remix
  of a teacher's estimates (``s_A`` alone or ``s_A + s_B``, plus another clip's residual
  ``r_C``), each query's target its teacher estimate, so the background is in no target; the
  anchors are not used. The remixes of the held-out clips are logged as ``holdout_remix``
  (one source) and ``holdout_remix_pairs``;
* **mixture consistency** (:func:`overlap_loss`, ``overlap_weight``): the outputs of the two
  classes plus a residual sum to the mixture (:func:`separate_classes`, the residual what is
  left); the loss keeps the residual non-negative, i.e. the two masks from claiming more than
  the mixture holds: ``|X| · relu(m_a + m_b - 1)``.

``init`` starts from an existing network (fine-tuning). The hold-out (every
``HOLDOUT_EVERY``-th training clip, never trained on) gives fixed mixtures built the same way,
single-source and pairs; their SDR against the targets is logged (first before any step, so a
fine-tuned network is compared with where it started), never used to choose a step: the
weights saved are the last step's.
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
    ClipPool,
    CoSeparationSampler,
    MixOptions,
    MixtureSampler,
    PairMixture,
    PairSampler,
    TrainingMixture,
    TrainingPool,
    build_clip_pool,
    build_pool,
    decode_manifest,
    keep_clean_anchors,
    power,
)
from avscene.train.remix import RemixPool, RemixSampler

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel
    from avscene.nn.masknet import MaskNet

WARMUP_FRACTION = 0.05  # of the steps, rising to the peak learning rate (one-cycle schedule)
MIN_WARMUP_STEPS = 2  # OneCycleLR divides by (warm-up steps - 1): a warm-up of exactly one step fails
SELF_TRAIN_LR_DIVISOR = 3
# the pairs: each class its clip / each clip's classes sum to it / the teacher's estimates remixed (every mixture)
OBJECTIVES = ("mix-and-separate", "coseparation", "remix")
SCORER_RMS = 0.1  # outputs are scaled to this RMS (-20 dBFS, the training clips' level) before the assessor scores them  # the second round's peak learning rate is the first's over this

# --------------------------------------------------------------------------- loss


def ideal_mask(mix_mag: torch.Tensor, target_mag: torch.Tensor) -> torch.Tensor:
    """The ideal ratio mask ``min(|T| / |M|, 1)`` (0 where the mixture is silent)."""
    return torch.where(mix_mag > EPS, target_mag / mix_mag.clamp_min(EPS), torch.zeros_like(mix_mag)).clamp(0, 1)


def mask_loss(mask: torch.Tensor, mix_mag: torch.Tensor, target_mag: torch.Tensor) -> torch.Tensor:
    """Magnitude-weighted L1 between ``mask`` and :func:`ideal_mask`; zero exactly at the ideal mask."""
    return (mix_mag * (mask - ideal_mask(mix_mag, target_mag)).abs()).sum() / mix_mag.sum().clamp_min(EPS)


def overlap_loss(masks: torch.Tensor, mix_mag: torch.Tensor) -> torch.Tensor:
    """Mixture consistency of the masks (B, K, F, T) of K classes of one mixture (B, F, T): the
    magnitude-weighted excess ``relu(Σ_k m_k - 1)``; zero when the outputs leave a non-negative residual."""
    excess = torch.relu(masks.sum(dim=1) - 1)
    return (mix_mag * excess).sum() / mix_mag.sum().clamp_min(EPS)


def coseparation_loss(masks: torch.Tensor, queried: torch.Tensor, mix_mag: torch.Tensor,
                      clip_mags: torch.Tensor) -> torch.Tensor:
    """Co-separation (Gao & Grauman, ICCV 2019): the classes of one clip, separated from a mixture
    of two clips, must add up to that clip.

    Args:
        masks: (B, 2, K, F, T) the masks of up to K classes of each of the two clips.
        queried: (B, 2, K) bool, which of them were asked for (the others are ignored).
        mix_mag: (B, F, T) the mixture's magnitude.
        clip_mags: (B, 2, F, T) each clip's magnitude as it is in the mixture.

    Returns:
        :func:`mask_loss` between each clip's summed mask ``Σ_k m_k`` and its ideal ratio mask:
        zero when the masks of each clip's classes add up to it, whichever way they divide it.
    """
    sums = (masks * queried[..., None, None].to(masks.dtype)).sum(dim=2)  # (B, 2, F, T)
    return mask_loss(sums, mix_mag[:, None].expand_as(clip_mags), clip_mags)


def assessor_loss(scores: torch.Tensor, present: torch.Tensor, absent: torch.Tensor, *,
                  margin: float = 0.0) -> torch.Tensor:
    """The classifier as assessor: hinge on the classifier's scores of separated outputs.

    Args:
        scores: (B, C) the classifier's score of each output (max over its windows).
        present: (B,) the class each output was asked for: its score must exceed ``margin``.
        absent: (B,) the other class of the mixture: its score must stay below ``-margin``.

    Returns:
        ``mean(relu(margin - s_present) + relu(margin + s_absent))``: zero when every output is
        classified as its class and not as the other.
    """
    rows = torch.arange(scores.shape[0], device=scores.device)
    return (torch.relu(margin - scores[rows, present]) + torch.relu(margin + scores[rows, absent])).mean()


def audio_scorer(loaded: LoadedModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """Differentiable class scores of waveforms (B, L) by the checkpoint's audio network, frozen:
    log-mel (:func:`avscene.dsp.mel.log_mel_torch`), 0.96-s windows at 50 % overlap, the max over
    windows of each class's score (B, C)."""
    from avscene.dsp.mel import log_mel_torch

    cfg, model = loaded.preprocess, loaded.model
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()

    def score(x: torch.Tensor) -> torch.Tensor:
        mel = log_mel_torch(x.float(), cfg=cfg)  # (B, frames, mels)
        if mel.shape[1] < cfg.patch_frames:
            mel = torch.nn.functional.pad(mel, (0, 0, 0, cfg.patch_frames - mel.shape[1]), value=math.log(cfg.log_offset))
        patches = mel.unfold(1, cfg.patch_frames, cfg.patch_hop).transpose(2, 3)  # (B, P, 96, mels)
        if cfg.band_norm:
            patches = patches - patches.mean(dim=(1, 2), keepdim=True)
        B, P = patches.shape[:2]
        s = model.score_audio_patches(patches.reshape(B * P, *patches.shape[2:]))
        return s.reshape(B, P, -1).amax(dim=1)

    return score


def separate_classes(net: MaskNet, mixture: torch.Tensor, class_indices: Sequence[int],
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The outputs (K, L) of ``net`` for each class of ``class_indices`` in ``mixture`` (L,) and the
    residual (L,) ``mixture - Σ outputs``: outputs plus residual are the mixture."""
    idx = torch.as_tensor(list(class_indices))
    outputs = apply_mask(net, mixture[None].expand(len(idx), -1), idx)
    return outputs, mixture - outputs.sum(dim=0)


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
    pair_fraction: float = 0.0  # share of each batch that is two-clip pairs (both classes queried)
    assessor_weight: float = 0.0  # weight of the classifier-as-assessor loss on the pairs
    overlap_weight: float = 0.0  # weight of the mixture-consistency loss on the pairs
    assessor_margin: float = 0.0  # the assessor's hinge margin
    fine_tune: bool = False  # start from the checkpoint's mask network (train_mask_net_for)
    objective: str = "mix-and-separate"  # what the pairs ask for: one of OBJECTIVES

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "hidden", "blocks", "log_every", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        if self.self_train_steps < 0 or self.holdout_mixtures < 0:
            raise UsageError("self_train_steps and holdout_mixtures must be >= 0")
        if not (math.isfinite(self.lr) and self.lr >= 0):
            raise UsageError(f"the learning rate must be finite and >= 0, got {self.lr}")
        if not 0.0 <= self.pair_fraction <= 1.0:
            raise UsageError(f"pair_fraction must be in [0, 1], got {self.pair_fraction}")
        if min(self.assessor_weight, self.overlap_weight) < 0:
            raise UsageError("assessor_weight and overlap_weight must be >= 0")
        if self.objective not in OBJECTIVES:
            raise UsageError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.objective == "coseparation" and (self.pairs_per_batch == 0 or self.assessor_weight > 0):
            raise UsageError("the coseparation objective needs pair_fraction > 0 (a share of each batch of "
                             "at least one mixture) and no assessor (assessor_weight 0)")
        if self.objective == "remix" and (self.assessor_weight > 0 or self.self_train_steps > 0):
            raise UsageError("the remix objective takes no assessor (assessor_weight 0) and no second round "
                             "(self_train_steps 0): the student becomes a teacher by building a new teacher "
                             "cache from its checkpoint")

    @property
    def pairs_per_batch(self) -> int:
        """Two-clip pairs in each batch (each is two queries); the rest are single-source mixtures."""
        return int(round(self.batch * self.pair_fraction))

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


def pair_holdout_score(net: MaskNet, pairs: Sequence[PairMixture], labels: Sequence[str]) -> dict[str, float]:
    """Mean SDR (dB) of the network's output for each class of each pair against its clip's segment,
    and of the mixture itself."""
    was = net.training
    net.eval()
    est, base = [], []
    with torch.no_grad():
        for x in pairs:
            out, _ = separate_classes(net, torch.from_numpy(x.mixture), [list(labels).index(c) for c in x.labels])
            est += [snr_db(o, t) for o, t in zip(out.numpy(), x.sources)]
            base += [snr_db(x.mixture, t) for t in x.sources]
    net.train(was)
    return {"sdr": float(np.mean(est)), "mixture_sdr": float(np.mean(base)), "n": len(est)}


def _pair_losses(net: MaskNet, mixture: torch.Tensor, sources: torch.Tensor, classes: torch.Tensor,
                 scorer: Callable[[torch.Tensor], torch.Tensor] | None, opts: MaskNetTrainOptions,
                 ) -> dict[str, torch.Tensor]:
    """The losses of a batch of pairs: mixture (P, L), sources (P, 2, L), classes (P, 2)."""
    from avscene.dsp.stft import istft

    P, L = mixture.shape
    X, mag = _stft_mag(mixture, net.cfg.n_fft, net.cfg.hop)  # (P, F, T)
    F, T = mag.shape[1:]
    idx = classes.reshape(2 * P)
    masks = net(mag[:, None].expand(P, 2, F, T).reshape(2 * P, F, T), idx)  # (2P, F, T)
    _, tmag = _stft_mag(sources.reshape(2 * P, L), net.cfg.n_fft, net.cfg.hop)
    out = {"mask": mask_loss(masks, mag.repeat_interleave(2, dim=0), tmag),
           "overlap": overlap_loss(masks.reshape(P, 2, F, T), mag)}
    if scorer is not None and opts.assessor_weight > 0:
        est = istft(masks * X.repeat_interleave(2, dim=0), length=L, n_fft=net.cfg.n_fft, hop=net.cfg.hop)
        est = est / est.pow(2).mean(dim=1, keepdim=True).clamp_min(EPS).sqrt() * SCORER_RMS  # the clips' level
        out["assessor"] = assessor_loss(scorer(est), idx, classes.flip(1).reshape(2 * P), margin=opts.assessor_margin)
    return out


def _coseparation_losses(net: MaskNet, mixture: torch.Tensor, sources: torch.Tensor, classes: torch.Tensor,
                         ) -> dict[str, torch.Tensor]:
    """The losses of a batch of co-separation mixtures: mixture (P, L), sources (P, 2, L), classes
    (P, 2, K) with -1 where a clip has fewer classes: ``mask`` (:func:`coseparation_loss`) and
    ``overlap`` (:func:`overlap_loss` over every queried class of the mixture)."""
    P, L = mixture.shape
    K = classes.shape[2]
    X, mag = _stft_mag(mixture, net.cfg.n_fft, net.cfg.hop)  # (P, F, T)
    F, T = mag.shape[1:]
    queried = classes >= 0
    rows = queried.reshape(P, 2 * K).nonzero()  # (Q, 2): mixture, query
    masks = torch.zeros(P, 2 * K, F, T, dtype=mag.dtype)
    masks[rows[:, 0], rows[:, 1]] = net(mag[rows[:, 0]], classes.reshape(P, 2 * K)[rows[:, 0], rows[:, 1]])
    _, cmag = _stft_mag(sources.reshape(2 * P, L), net.cfg.n_fft, net.cfg.hop)
    return {"mask": coseparation_loss(masks.reshape(P, 2, K, F, T), queried, mag, cmag.reshape(P, 2, F, T)),
            "overlap": overlap_loss(masks, mag)}


class _RemixBatches:
    """Batches of remixes of ``n_sources`` as the loop takes them: one source as the anchors'
    ``(mixture, target, class)``, two as the pairs' ``(mixture, sources, classes)``."""

    def __init__(self, sampler: RemixSampler, n_sources: int = 1) -> None:
        self.sampler, self.n_sources = sampler, n_sources

    def batch(self, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m, s, c = self.sampler.batch(rng, n, self.n_sources)
        return (m, s[:, 0], c[:, 0]) if self.n_sources == 1 else (m, s, c)


def train_mask_net(pool: TrainingPool, holdout: TrainingPool | None, labels: Sequence[str],
                    opts: MaskNetTrainOptions = MaskNetTrainOptions(), *, log_path: Path | None = None,
                    teacher: MaskNet | None = None, init: MaskNet | None = None,
                    pair_pool: TrainingPool | None = None, pair_holdout: TrainingPool | None = None,
                    scorer: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    clip_pool: ClipPool | None = None,
                    remix_pool: RemixPool | None = None, remix_holdout: RemixPool | None = None,
                    progress: Callable[[int, int, float], None] | None = None) -> tuple[MaskNet, dict]:
    """Train a :class:`~avscene.nn.masknet.MaskNet` on mixtures drawn from ``pool`` (one round).

    With a ``teacher`` (self-training, a second round): the network starts from the teacher's
    weights, and each target segment is first cleaned by the teacher (its estimate of the
    target's class in the target segment alone), so the anchor's own background that the
    teacher removes is no longer asked for. With ``init`` it starts from those weights.

    With ``opts.pair_fraction``, that share of each batch is pairs of two clips drawn from
    ``pair_pool`` (default ``pool``; hold-out pairs from ``pair_holdout``, default ``holdout``),
    scored by ``scorer`` (:func:`audio_scorer`) for the assessor loss. With ``opts.objective ==
    "coseparation"`` the pairs are two clips of ``clip_pool`` (any number of labels each) and
    the loss is :func:`coseparation_loss`; the hold-out pairs are still ``pair_holdout``'s. With
    ``opts.objective == "remix"`` every mixture is a remix of ``remix_pool`` (one source, or two
    for the pairs' share) and ``remix_holdout``'s fixed remixes are logged besides the anchors'.

    Returns:
        The network (eval mode, last step's weights) and a summary for ``config.json``:
        options, pool sizes, time, and the hold-out SDR at the end.
    """
    from avscene.nn.masknet import MaskNet, MaskNetConfig, num_parameters

    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    net = MaskNet(MaskNetConfig(num_classes=len(labels), hidden=opts.hidden, blocks=opts.blocks))
    for what, start in (("teacher", teacher), ("starting network", init)):
        if start is not None:
            if start.cfg != net.cfg:
                raise UsageError(f"the {what}'s shape {start.cfg} differs from the options' {net.cfg}")
            net.load_state_dict(start.state_dict())
    if teacher is not None:
        teacher.eval()
    n_pair = opts.pairs_per_batch
    n_single = opts.batch - n_pair
    cosep, remixing = opts.objective == "coseparation", opts.objective == "remix"
    if cosep and clip_pool is None:
        raise UsageError("the coseparation objective needs the training clips (clip_pool)")
    if remixing and remix_pool is None:
        raise UsageError("the remix objective needs the teacher's estimates (remix_pool)")
    sampler: MixtureSampler | _RemixBatches | None = None
    if n_single:
        sampler = _RemixBatches(RemixSampler(remix_pool, labels, opts.mix)) if remixing \
            else MixtureSampler(pool, labels, opts.mix)
    pairs: PairSampler | CoSeparationSampler | _RemixBatches | None = None
    if n_pair:
        if remixing:
            pairs = _RemixBatches(RemixSampler(remix_pool, labels, opts.mix), n_sources=2)
        else:
            pairs = CoSeparationSampler(clip_pool, labels, opts.mix, background=pair_pool or pool) if cosep \
                else PairSampler(pair_pool or pool, labels, opts.mix)
    fixed: list[TrainingMixture] = []
    fixed_pairs: list[PairMixture] = []
    if holdout is not None and holdout.anchors:
        hs = MixtureSampler(holdout, labels, opts.mix)
        hrng = np.random.default_rng(10_000 + opts.seed)
        fixed = [hs.sample(hrng) for _ in range(opts.holdout_mixtures)]
    held_pairs = pair_holdout or holdout
    if n_pair and held_pairs is not None and len(held_pairs.heard_anchors()) >= 2:
        hp = PairSampler(held_pairs, labels, opts.mix)
        hrng = np.random.default_rng(20_000 + opts.seed)
        fixed_pairs = [hp.sample(hrng) for _ in range(opts.holdout_mixtures // 2)]
    fixed_remix: list[TrainingMixture] = []
    fixed_remix_pairs: list[PairMixture] = []
    if remixing and remix_holdout is not None and len(remix_holdout):
        rs = RemixSampler(remix_holdout, labels, opts.mix)
        hrng = np.random.default_rng(30_000 + opts.seed)
        fixed_remix = [rs.sample(hrng, 1).as_training_mixture() for _ in range(opts.holdout_mixtures)]
        if len(rs.classes) >= 2:
            fixed_remix_pairs = [rs.sample(hrng, 2).as_pair() for _ in range(opts.holdout_mixtures // 2)]
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

    def evaluate(step: int) -> None:
        if fixed:
            record({"step": step, "holdout": holdout_score(net, fixed, labels)})
        if fixed_pairs:
            record({"step": step, "holdout_pairs": pair_holdout_score(net, fixed_pairs, labels)})
        if fixed_remix:
            record({"step": step, "holdout_remix": holdout_score(net, fixed_remix, labels)})
        if fixed_remix_pairs:
            record({"step": step, "holdout_remix_pairs": pair_holdout_score(net, fixed_remix_pairs, labels)})

    if init is not None:
        evaluate(0)  # where a fine-tuning starts from, on the same mixtures
    net.train()
    try:
        for step in range(1, opts.steps + 1):
            parts: dict[str, torch.Tensor] = {}
            if sampler is not None:
                m, t, c = sampler.batch(rng, n_single)
                if teacher is not None:
                    with torch.no_grad():
                        t = apply_mask(teacher, t, c)
                X, mag = _stft_mag(m, net.cfg.n_fft, net.cfg.hop)
                _, tmag = _stft_mag(t, net.cfg.n_fft, net.cfg.hop)
                parts["single"] = mask_loss(net(mag, c), mag, tmag)
            if pairs is not None:
                pm, ps, pc = pairs.batch(rng, n_pair)
                losses = _coseparation_losses(net, pm, ps, pc) if cosep else _pair_losses(net, pm, ps, pc, scorer, opts)
                for k, v in losses.items():
                    parts["pair_" + k] = v
            loss = (n_single * parts.get("single", 0.0) + n_pair * parts.get("pair_mask", 0.0)) / opts.batch \
                + opts.overlap_weight * parts.get("pair_overlap", 0.0) + opts.assessor_weight * parts.get("pair_assessor", 0.0)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optim.step()
            sched.step()
            value = loss.item()
            running = 0.98 * running + 0.02 * value if step > 1 else value
            if step % opts.log_every == 0 or step == opts.steps:
                record({"step": step, "loss": round(running, 5), "lr": sched.get_last_lr()[0],
                        **{k: round(v.item(), 5) for k, v in parts.items()},
                        "elapsed_s": round(time.monotonic() - started, 1)})
            if step % opts.eval_every == 0 or step == opts.steps:
                evaluate(step)
            if progress:
                progress(step, opts.steps, running)
    finally:
        if log:
            log.close()
    net.eval()
    final = next((h["holdout"] for h in reversed(history) if "holdout" in h), None)
    final_pairs = next((h["holdout_pairs"] for h in reversed(history) if "holdout_pairs" in h), None)
    finals = {k: next((h[k] for h in reversed(history) if k in h), None) for k in ("holdout_remix", "holdout_remix_pairs")}
    summary = {"rounds": 1 if teacher is None else 2, "steps": opts.steps, "batch": opts.batch, "lr": opts.lr, "seed": opts.seed,
               "mix": asdict(opts.mix), "train_seconds": round(time.monotonic() - started, 1),
               "pool": pool.summary(), "holdout": final}
    if n_pair:
        summary.update(pairs={"objective": opts.objective, "fraction": opts.pair_fraction,
                              "assessor_weight": opts.assessor_weight,
                              "overlap_weight": opts.overlap_weight, "assessor_margin": opts.assessor_margin},
                       holdout_pairs=final_pairs)
    if remixing:
        summary.update(remix={"fraction_pairs": opts.pair_fraction, "overlap_weight": opts.overlap_weight,
                              "train_clips": len(remix_pool), "holdout_clips": len(remix_holdout or ())},
                       **{k: v for k, v in finals.items() if v is not None})
    if init is not None:
        summary["fine_tuned_from"] = "the checkpoint's mask network"
    return net, summary


def train_mask_net_for(model_folder: str | Path, manifest: str | Path, opts: MaskNetTrainOptions = MaskNetTrainOptions(),
                       *, log_path: Path | None = None, device: str = "cpu", teacher_cache: str | Path | None = None,
                       progress: Callable[[str, int, int], None] | None = None) -> tuple[Path, dict]:
    """Train a mask network for the checkpoint in ``model_folder`` on the clips of ``manifest`` and store
    it there as its separator.

    The checkpoint's audio network chooses the anchors (those estimated at least
    ``opts.min_anchor_snr_db`` over their clip's background); with ``opts.self_train_steps``, a
    second round (:meth:`MaskNetTrainOptions.second_round`) follows, the first round's network as
    its teacher. With ``opts.objective == "remix"`` the training clips' teacher estimates are read
    from ``teacher_cache`` (:class:`~avscene.train.remix.TeacherCache`), which is first built with
    this checkpoint's default separation method when the folder holds none
    (:func:`~avscene.train.remix.teacher_pass`). The network
    goes to ``separator.safetensors`` with its shape and this training's summary under
    ``separation.mask`` in ``config.json`` (:func:`avscene.checkpoint.parts.save_mask_net`).

    Returns:
        The weights' path and the training summary.
    """
    from avscene.checkpoint.load import load_pretrained
    from avscene.checkpoint.parts import save_mask_net

    from avscene.train.remix import TEACHER_FILE, TeacherCache, teacher_pass

    min_snr_db, self_train = opts.min_anchor_snr_db, opts.second_round()
    if not Path(manifest).is_file():
        raise UsageError(f"training manifest {manifest} not found")
    remixing = opts.objective == "remix"
    if remixing != (teacher_cache is not None):
        raise UsageError("--objective remix needs --teacher-cache DIR (the teacher's estimates, built there "
                         "when DIR holds none)" if remixing else "--teacher-cache is only for --objective remix")
    if remixing and (Path(teacher_cache) / TEACHER_FILE).is_file():
        cache = TeacherCache.read(teacher_cache)  # checked before hours of decoding
        if cache.manifest != Path(manifest).name:
            raise UsageError(f"the teacher cache {teacher_cache} was built from {cache.manifest}, not "
                             f"{Path(manifest).name}: use another --teacher-cache folder")
    loaded = load_pretrained(str(model_folder), device=device)
    if not loaded.config.uses_audio:
        raise UsageError(f"the model {model_folder} has no audio network to choose the anchors with")
    step = (lambda what: (lambda d, n: progress(what, d, n))) if progress else (lambda what: None)  # noqa: E731
    train, held = decode_manifest(manifest, progress=step("decoding"))
    raw = build_pool(train, loaded, min_snr_db=None, progress=step("anchors"))
    raw_held = build_pool(held, loaded, min_snr_db=None, progress=step("hold-out anchors"))
    pool, holdout = (raw, raw_held) if min_snr_db is None else \
        (keep_clean_anchors(raw, min_snr_db), keep_clean_anchors(raw_held, min_snr_db))
    init = None
    if opts.fine_tune:
        init = loaded.separation.mask_net  # read with the classifier
        if init is None:
            raise UsageError(f"--fine-tune: the model {model_folder} has no mask network to start from")
    scorer = audio_scorer(loaded) if opts.pairs_per_batch and opts.assessor_weight > 0 else None
    clips = build_clip_pool(train, loaded, progress=step("co-separation clips")) \
        if opts.objective == "coseparation" else None
    remix_pool = remix_held = None
    if remixing:
        if not (Path(teacher_cache) / TEACHER_FILE).is_file():
            teacher_pass(raw, raw_held, loaded, teacher_cache, manifest=Path(manifest).name, progress=step("teacher"))
        names = set(raw.names) | set(raw_held.names)
        stray = [c.name for c in TeacherCache.read(teacher_cache).clips if c.name not in names]
        if stray:
            raise UsageError(f"the teacher cache {teacher_cache} holds clips that are not single-label clips of "
                             f"{manifest}: {', '.join(stray[:3])}")
        remix_pool, remix_held = RemixPool.load(teacher_cache, holdout=False), RemixPool.load(teacher_cache, holdout=True)
    bar = (lambda what: (lambda d, n, _loss: progress(what, d, n))) if progress else (lambda what: None)  # noqa: E731
    net, summary = train_mask_net(pool, holdout, loaded.labels, opts, log_path=log_path, init=init, pair_pool=raw,
                                  pair_holdout=raw_held, scorer=scorer, clip_pool=clips, remix_pool=remix_pool,
                                  remix_holdout=remix_held, progress=bar("training"))
    if remixing:
        cache = TeacherCache.read(teacher_cache)
        summary["remix"] = {**summary["remix"], "teacher": cache.model, "teacher_method": cache.method}
    if self_train is not None:
        net, second = train_mask_net(pool, holdout, loaded.labels, self_train, log_path=log_path, teacher=net,
                                      pair_pool=raw, pair_holdout=raw_held, scorer=scorer, clip_pool=clips,
                                      progress=bar("self-training"))
        summary = {**second, "first_round": summary,
                   "train_seconds": round(summary["train_seconds"] + second["train_seconds"], 1)}
    summary = {**summary, "manifest": Path(manifest).name, "min_anchor_snr_db": min_snr_db,
               "anchors_from": "the checkpoint's audio network"}
    return save_mask_net(model_folder, net, summary), summary


__all__ = ["OBJECTIVES", "MaskNetTrainOptions", "apply_mask", "assessor_loss", "audio_scorer", "coseparation_loss", "holdout_score", "ideal_mask",
           "mask_loss", "overlap_loss", "pair_holdout_score", "separate_classes", "snr_db", "train_mask_net",
           "train_mask_net_for", "warmup_fraction"]
