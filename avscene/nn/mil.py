"""Multiple-instance scoring: proposal features -> video-level class scores, fusion and losses.

Notation (Parekh et al. 2019): a bag of ``P`` proposal features ``Z`` (B, P, d);
classification stream ``A = Z W_cls`` and localisation stream ``L = Z W_loc``,
both (B, P, C); ``E = A ⊙ softmax_P(L)``; the video score is ``Σ_P E``.

Masks are (B, P) bool, True for a real proposal. Masked proposals never change a
score, and a bag with no real proposal scores 0 (never NaN).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avscene.errors import UsageError

if TYPE_CHECKING:
    from avscene.nn.model import ModelConfig

L2_EPS = 1e-8  # floor of the l2 norm in fusion (a zero score vector stays zero)
BCE_EPS = 1e-7  # probabilities are clamped to [eps, 1 - eps] before the log


def _all_valid(x: Tensor, mask: Tensor | None) -> Tensor:
    B, P = x.shape[:2]
    return torch.ones(B, P, dtype=torch.bool, device=x.device) if mask is None else mask


def masked_softmax(logits: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over proposals (dim 1) of (B, P, C) logits; masked proposals get weight 0.

    A finite fill (not -inf) keeps all-masked rows finite: they give all-zero weights.
    """
    m = _all_valid(logits, mask)[..., None]  # (B, P, 1)
    filled = logits.masked_fill(~m, torch.finfo(logits.dtype).min)
    return F.softmax(filled, dim=1) * m  # (B, P, C)


def smooth_max(x: Tensor, mask: Tensor | None, r: float) -> Tensor:
    """Log-sum-exp pooling over dim 1: (1/r) log mean_{valid p} exp(r x_p); (B, P, C) -> (B, C).

    Rows without a valid entry give 0.
    """
    m = _all_valid(x, mask)  # (B, P)
    filled = (r * x).masked_fill(~m[..., None], torch.finfo(x.dtype).min)
    n = m.sum(dim=1, keepdim=True)  # (B, 1)
    lse = torch.logsumexp(filled, dim=1) - torch.log(n.clamp(min=1).to(x.dtype))  # (B, C)
    return torch.where(n > 0, lse / r, torch.zeros_like(lse))


def l2_normalise(s: Tensor) -> Tensor:
    """(B, C) scores divided by their l2 norm over classes (floored at ``L2_EPS``)."""
    return F.normalize(s, p=2.0, dim=-1, eps=L2_EPS)


def l2_fuse(scores: Sequence[Tensor]) -> Tensor:
    """Sum of the l2-normalised (B, C) score vectors of each modality; one modality -> range [-1, 1]."""
    return torch.stack([l2_normalise(s) for s in scores]).sum(dim=0)


def noisy_or_fuse(probs: Sequence[Tensor]) -> Tensor:
    """``1 - Π_m (1 - p_m)`` of the modalities' (B, C) probabilities: "heard OR seen" (range [0, 1])."""
    return 1.0 - torch.stack([1.0 - p for p in probs]).prod(dim=0)


def mean_fuse(scores: Sequence[Tensor]) -> Tensor:
    """Mean of the modalities' (B, C) scores (WSDDN: keeps the range [0, 1])."""
    return torch.stack(list(scores)).mean(dim=0)


class TwoStreamHead(nn.Module):
    """Classification and localisation streams: Z (B, P, d) -> score (B, C), E and A (B, P, C)."""

    def __init__(self, embed_dim: int, num_classes: int):
        super().__init__()
        self.cls = nn.Linear(embed_dim, num_classes)
        self.loc = nn.Linear(embed_dim, num_classes)

    def streams(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(..., d) -> classification scores A and localisation logits L, each (..., C)."""
        return self.cls(z), self.loc(z)

    def classify(self, z: Tensor) -> Tensor:
        """Classification-stream scores A of isolated proposals: (N, d) -> (N, C)."""
        return self.cls(z)

    def forward(self, z: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        A, L = self.streams(z)  # (B, P, C) each
        E = A * masked_softmax(L, mask)  # (B, P, C)
        return E.sum(dim=1), E, A


class OneStreamHead(nn.Module):
    """Classification stream only, pooled by log-sum-exp: score = (1/r) log mean_P exp(r A); E := A."""

    def __init__(self, embed_dim: int, num_classes: int, r: float):
        super().__init__()
        self.cls = nn.Linear(embed_dim, num_classes)
        self.r = r

    def classify(self, z: Tensor) -> Tensor:
        return self.cls(z)

    def forward(self, z: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        A = self.cls(z)  # (B, P, C)
        E = A * _all_valid(A, mask)[..., None]  # masked proposals localise nothing
        return smooth_max(A, mask, self.r), E, A


class WSDDNHead(nn.Module):
    """WSDDN (Bilen & Vedaldi 2016): softmax over classes x softmax over proposals, summed -> [0, 1].

    A is the class-softmax (probabilities of each proposal), E the product.
    """

    def __init__(self, embed_dim: int, num_classes: int):
        super().__init__()
        self.cls = nn.Linear(embed_dim, num_classes)
        self.loc = nn.Linear(embed_dim, num_classes)

    def classify(self, z: Tensor) -> Tensor:
        return F.softmax(self.cls(z), dim=-1)  # (..., C)

    def forward(self, z: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        A = self.classify(z)  # (B, P, C)
        E = A * masked_softmax(self.loc(z), mask)  # (B, P, C)
        return E.sum(dim=1), E, A


class SyncPooled(NamedTuple):
    """What ``sync_pool`` returns (S = number of 1-s segments, N_i = proposals of modality i)."""

    scores: Tensor  # (B, C) l2-normalised video scores
    segment_scores: Tensor  # (B, S, C) sum over each segment's proposals of A ⊙ softmax_s(L)
    shares: list[Tensor]  # per modality (B, S, C): its part of segment_scores
    E: list[Tensor]  # per modality (B, N_i, C): A ⊙ softmax_s(L)
    exists: Tensor  # (B, S) bool: the segment has at least one real proposal


def _segment_softmax(L: Tensor, idx: Tensor, valid: Tensor, n_buckets: int) -> Tensor:
    """Softmax of (K, C) logits within each bucket ``idx`` (K,); invalid rows get weight 0."""
    K, C = L.shape
    where = idx[:, None].expand(K, C)  # (K, C)
    # the shift only stabilises exp: softmax is shift-invariant, so it carries no gradient
    peak = L.new_full((n_buckets, C), torch.finfo(L.dtype).min)
    peak = peak.scatter_reduce(0, where, L.detach(), reduce="amax")  # (n_buckets, C)
    ex = torch.where(valid[:, None], torch.exp(L - peak[idx]), torch.zeros_like(L))  # (K, C)
    denom = L.new_zeros(n_buckets, C).index_add(0, idx, ex)  # (n_buckets, C), >= 1 where used
    return ex / denom[idx].clamp(min=torch.finfo(L.dtype).tiny)  # (K, C)


def sync_pool(
    A: Sequence[Tensor], L: Sequence[Tensor], segments: Sequence[Tensor], masks: Sequence[Tensor | None],
    *, r: float,
) -> SyncPooled:
    """Synchronous pooling: localisation softmax jointly over all modalities within each 1-s segment.

    Args:
        A, L: per modality (B, N_i, C) classification scores and localisation logits.
        segments: per modality (B, N_i) long, the segment of each proposal (>= 0).
        masks: per modality (B, N_i) bool or None (all real).
        r: sharpness of the log-sum-exp pooling over segments.

    Returns:
        ``SyncPooled``; video score = l2-normalise((1/r) log mean_{existing s} exp(r * segment score)).
    """
    B, _, C = A[0].shape
    Ns = [a.shape[1] for a in A]
    valid = torch.cat([_all_valid(a, m) for a, m in zip(A, masks)], dim=1)  # (B, N)
    seg = torch.cat(list(segments), dim=1).long()  # (B, N)
    if bool((seg[valid] < 0).any()):
        raise UsageError("segment ids must be >= 0 (segment k is the second [k, k+1))")
    S = int(seg[valid].max()) + 1 if bool(valid.any()) else 1
    base = torch.arange(B, device=seg.device)[:, None] * S  # (B, 1)
    dummy = B * S  # bucket for padding, dropped below
    idx = torch.where(valid, base + seg, torch.full_like(seg, dummy)).reshape(-1)  # (B * N,)
    A_all = torch.cat(list(A), dim=1).reshape(-1, C)  # (B * N, C)
    L_all = torch.cat(list(L), dim=1).reshape(-1, C)  # (B * N, C)
    w = _segment_softmax(L_all, idx, valid.reshape(-1), dummy + 1)  # (B * N, C)
    E_all = (A_all * w).view(B, -1, C)  # (B, N, C)
    E = list(E_all.split(Ns, dim=1))  # per modality (B, N_i, C)
    idx_i = idx.view(B, -1).split(Ns, dim=1)  # per modality (B, N_i)
    shares = [
        E_all.new_zeros(dummy + 1, C).index_add(0, i.reshape(-1), e.reshape(-1, C))[:dummy].view(B, S, C)
        for e, i in zip(E, idx_i)
    ]
    segment_scores = torch.stack(shares).sum(dim=0)  # (B, S, C)
    count = torch.zeros(dummy + 1, device=seg.device).index_add(0, idx, valid.reshape(-1).float())
    exists = count[:dummy].view(B, S) > 0  # (B, S)
    scores = l2_normalise(smooth_max(segment_scores, exists, r))  # (B, C)
    return SyncPooled(scores, segment_scores, shares, E, exists)


def linear_softmax(p: Tensor, mask: Tensor | None) -> Tensor:
    """Linear-softmax pooling of per-window probabilities (Wang, Li & Metze, ICASSP 2019):
    ``y = Σ_i y_i² / Σ_i y_i`` over the real windows, (B, P, C) in [0, 1] -> (B, C).

    Each window weighs itself by its own probability, so the clip probability follows its
    confident windows (a class that sounds for a few seconds is not diluted by the silent rest)
    and, unlike max pooling, every window gets a gradient: the pooling of the five that paper
    compares that localises best. A bag with no real window, or all windows at 0, gives 0.
    """
    keep = _all_valid(p, mask)[..., None].to(p.dtype)  # (B, P, 1)
    q = p * keep
    return (q * q).sum(dim=1) / q.sum(dim=1).clamp(min=torch.finfo(p.dtype).tiny)


def mean_pool(p: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of the real windows' (B, P, C) probabilities -> (B, C); a bag without one gives 0."""
    keep = _all_valid(p, mask)[..., None].to(p.dtype)  # (B, P, 1)
    return (p * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


def attention_pool(p: Tensor, weights: Tensor, mask: Tensor | None) -> Tensor:
    """Attention pooling: ``Σ_i softmax_i(w_i) y_i`` over the real windows, with (B, P, C)
    probabilities ``p`` and attention logits ``weights`` (another output of the windows) -> (B, C)."""
    return (masked_softmax(weights, mask) * p).sum(dim=1)


def auto_pool(p: Tensor, alpha: Tensor, mask: Tensor | None) -> Tensor:
    """Auto-pool (McFee, Salamon & Bello, 2018): ``Σ_i softmax_i(α_c y_i) y_i`` per class, with
    (B, P, C) probabilities and (C,) ``alpha``: α = 0 is the mean, α → ∞ the max, α < 0 tends to
    the min; exp-softmax pooling (Wang et al. 2019) is α = 1. -> (B, C)."""
    return attention_pool(p, alpha * p, mask)


def exp_softmax(p: Tensor, mask: Tensor | None) -> Tensor:
    """Exp-softmax pooling (Wang, Li & Metze, ICASSP 2019): ``Σ_i y_i e^{y_i} / Σ_i e^{y_i}``: (B, P, C) -> (B, C)."""
    return auto_pool(p, p.new_ones(p.shape[-1]), mask)


POOLINGS = ("max", "mean", "linear_softmax", "exp_softmax", "attention", "auto_pool")


class EventPooling(nn.Module):
    """One of :data:`POOLINGS` over an event head's window probabilities, with the parameters
    the pooling learns: attention, a linear layer of the window features giving each window's
    weight per class; auto-pool, one α per class (from 0: the mean). Used in training only: the
    events are the windows' own probabilities (``EventHead``)."""

    def __init__(self, kind: str, embed_dim: int, num_classes: int):
        super().__init__()
        if kind not in POOLINGS:
            raise UsageError(f"pooling must be one of {', '.join(POOLINGS)}, got {kind!r}")
        self.kind = kind
        self.att = nn.Linear(embed_dim, num_classes) if kind == "attention" else None
        self.alpha = nn.Parameter(torch.zeros(num_classes)) if kind == "auto_pool" else None

    def forward(self, p: Tensor, z: Tensor, mask: Tensor | None) -> Tensor:
        """(B, P, C) probabilities of windows with (B, P, d) features -> (B, C)."""
        if self.kind == "max":
            return masked_max(p, mask)
        if self.kind == "attention":
            return attention_pool(p, self.att(z), mask)
        if self.kind == "auto_pool":
            return auto_pool(p, self.alpha, mask)
        return {"mean": mean_pool, "linear_softmax": linear_softmax, "exp_softmax": exp_softmax}[self.kind](p, mask)


class EventHead(nn.Module):
    """Sound-event head beside the two-stream one: one logit per audio window and class,
    (B, P, d) -> (B, P, C); trained through :func:`linear_softmax` of its sigmoid (:func:`event_loss`)
    in ``avscene train``, or through any of :data:`POOLINGS` on frozen embeddings
    (``avscene train-events``)."""

    def __init__(self, embed_dim: int, num_classes: int):
        super().__init__()
        self.lin = nn.Linear(embed_dim, num_classes)

    def forward(self, z: Tensor) -> Tensor:
        return self.lin(z)


Pool = Callable[[Tensor, Tensor], Tensor]  # (B, P, C) probabilities, (B, P) mask -> (B, C)


def event_loss(logits: Tensor, mask: Tensor | None, part: Tensor | None, part_targets: Tensor,
               pool: Pool = linear_softmax) -> Tensor:
    """Binary log-loss of the pooled event probabilities of each *part* of each bag.

    A bag is one clip (every window in part 0) or two clips spliced in time (windows of the
    second clip in part 1): each part is pooled on its own and taught its own clip's labels, so
    the head learns that a label holds for part of a bag. Parts without a real window are left out.

    Args:
        logits: (B, P, C) event-head logits of the windows.
        mask: (B, P) bool real windows, or None.
        part: (B, P) long part of each window (0 or 1), or None (all 0).
        part_targets: (B, K, C) {0, 1} labels of each part.
        pool: the pooling of a part's window probabilities (default :func:`linear_softmax`).
    """
    valid = _all_valid(logits, mask)  # (B, P)
    part = torch.zeros_like(valid, dtype=torch.long) if part is None else part.long()
    probs = torch.sigmoid(logits)
    pooled, wanted = [], []
    for k in range(part_targets.shape[1]):
        in_k = valid & (part == k)  # (B, P)
        has = in_k.any(dim=1)  # (B,)
        if bool(has.any()):
            pooled.append(pool(probs, in_k)[has])
            wanted.append(part_targets[:, k][has])
    if not pooled:
        return logits.sum() * 0.0
    return bce_loss(torch.cat(pooled), torch.cat(wanted))


def _check_targets(scores: Tensor, targets: Tensor) -> None:
    if scores.shape != targets.shape:
        raise UsageError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must both be (B, C)")


def hinge_loss(scores: Tensor, targets: Tensor) -> Tensor:
    """Multi-label hinge: mean over B and C of max(0, 1 - y s) with y = 2t - 1, t in {0, 1}."""
    _check_targets(scores, targets)
    y = 2.0 * targets.to(scores.dtype) - 1.0  # (B, C) in {-1, +1}
    return F.relu(1.0 - y * scores).mean()


def bce_loss(probs: Tensor, targets: Tensor) -> Tensor:
    """Binary log-loss of [0, 1] scores (clamped to [eps, 1 - eps]), mean over B and C."""
    _check_targets(probs, targets)
    p = probs.clamp(BCE_EPS, 1.0 - BCE_EPS)
    t = targets.to(probs.dtype)
    return -(t * torch.log(p) + (1.0 - t) * torch.log1p(-p)).mean()


def masked_max(x: Tensor, mask: Tensor | None) -> Tensor:
    """Max over proposals (dim 1) of (B, P, C) scores, masked proposals left out; a bag with no
    real proposal gives 0. (B, P, C) -> (B, C)."""
    m = _all_valid(x, mask)  # (B, P)
    best = x.masked_fill(~m[..., None], torch.finfo(x.dtype).min).amax(dim=1)  # (B, C)
    return torch.where(m.any(dim=1, keepdim=True), best, torch.zeros_like(best))


def floor_loss(A: Tensor, mask: Tensor | None, targets: Tensor, *, margin: float = 1.0) -> Tensor:
    """A floor under one modality's own evidence (mi-SVM-style max-pooled hinge on the
    classification stream A): a labelled class's best proposal must score at least ``margin``,
    an absent class's best at most ``-margin``. Positives and negatives are averaged apart
    (a bag holds one or two of C classes), so each labelled class pulls as hard as all the
    absent ones. The gradient reaches the best proposal alone, so a class whose stream is flat
    (every proposal alike, as when the other modality already meets the fused margin) gets a
    proposal to grow from, not a push on the mean of the bag.

    A: (B, P, C); mask: (B, P) bool or None; targets: (B, C) in {0, 1}. Returns a scalar."""
    best = masked_max(A, mask)  # (B, C)
    _check_targets(best, targets)
    has = _all_valid(A, mask).any(dim=1, keepdim=True).expand_as(best)  # (B, C): bags with proposals
    pos = (targets > 0) & has
    neg = (targets <= 0) & has
    terms = [F.relu(margin - best[pos]).mean() if bool(pos.any()) else None,
             F.relu(margin + best[neg]).mean() if bool(neg.any()) else None]
    kept = [t for t in terms if t is not None]
    return torch.stack(kept).sum() if kept else A.sum() * 0.0


def loss_fn(cfg: ModelConfig) -> Callable[[Tensor, Tensor], Tensor]:
    """The training loss of a variant: ``bce_loss`` for "wsddn", ``hinge_loss`` otherwise."""
    return bce_loss if cfg.loss == "bce" else hinge_loss


__all__ = [
    "EventHead", "EventPooling", "OneStreamHead", "POOLINGS", "Pool", "SyncPooled", "TwoStreamHead",
    "WSDDNHead", "attention_pool", "auto_pool", "bce_loss", "event_loss", "exp_softmax", "floor_loss",
    "hinge_loss", "l2_fuse", "l2_normalise", "linear_softmax", "loss_fn", "masked_max", "masked_softmax",
    "mean_fuse", "mean_pool", "noisy_or_fuse", "smooth_max", "sync_pool",
]
