"""Source enhancement by ranking NMF components (Parekh et al. 2019, Sec. III-D1).

Given a mixture, its NMF components ``w_k h_k`` and the audio network's score
``β_{k,t}`` of the target class on each NCP window ``t`` of track ``k``:

1. relevance ``α_k = max_t β_{k,t}``;
2. min–max scaling ``α'_k = (α_k - min α) / (max α - min α)`` to [0, 1];
3. weights: soft (``α'_k``) or hard (``1[α'_k >= τ]``);
4. source ``S = (Σ_k a_k w_k h_k / W H) ⊙ X``, residual ``N = X - S``
   (i.e. weights ``1 - a_k``), both inverted with the separation STFT.

Because the source and residual masks sum to one, ``source + residual`` is the
mixture up to the STFT round trip. Pure functions: no I/O, no model loading;
the network enters through the scores it gave (``avscene.separation.methods``
runs the NMF, scores the NCPs and calls these), or, for :func:`separate_with_mask`,
through a mask-predicting callable. Everything runs on the device of the input tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from avscene.dsp.stft import STFTOptions, istft, stft
from avscene.errors import UsageError
from avscene.proposals.nmf import MASK_EPS

KEPT_WEIGHT = 0.5  # a component counts as "kept" when its weight is at least this


@dataclass(frozen=True)
class Enhancement:
    """The NCP separation of one mixture for one target class: signals and ranking."""

    source: torch.Tensor  # (N,) enhanced target source
    residual: torch.Tensor  # (N,) everything else; source + residual ≈ mixture
    alpha: torch.Tensor  # (K,) relevance α_k = max_t β_{k,t}
    alpha_scaled: torch.Tensor  # (K,) α'_k, min–max scaled to [0, 1]
    weights: torch.Tensor  # (K,) mask weights a_k in [0, 1] (soft α' or hard 0/1)
    kept: torch.Tensor  # (K,) bool, weights >= 0.5 (exactly the thresholded set when hard)
    beta: torch.Tensor  # (K, P) target-class score of each NCP window


def component_relevance(beta: torch.Tensor) -> torch.Tensor:
    """Relevance of each component to the target class: ``α_k = max_t β_{k,t}``.

    Args:
        beta: ``(K, P)`` scores of the target class on the NCP windows.

    Returns:
        ``(K,)`` tensor.
    """
    if not torch.is_tensor(beta) or beta.ndim != 2 or 0 in beta.shape:
        raise UsageError("component_relevance expects non-empty scores of shape (K, P)")
    return beta.max(dim=1).values


def scale_alpha(alpha: torch.Tensor) -> torch.Tensor:
    """Min–max scale relevances to [0, 1].

    If all relevances are equal (including ``K = 1``) the ranking carries no
    information, and all ones is returned: every component is kept, so the
    "source" is the unchanged mixture rather than silence.

    Args:
        alpha: ``(K,)`` relevances.

    Returns:
        ``(K,)`` tensor in [0, 1] with min 0 and max 1 (or all ones).
    """
    if not torch.is_tensor(alpha) or alpha.ndim != 1 or alpha.numel() == 0:
        raise UsageError("scale_alpha expects a non-empty 1-D tensor of relevances (K,)")
    lo, hi = alpha.min(), alpha.max()
    if not bool(hi > lo):
        return torch.ones_like(alpha)
    return (alpha - lo) / (hi - lo)


def check_threshold(threshold: float | None, *, option: str = "threshold") -> None:
    """Raise UsageError unless ``threshold`` is None or a scaled relevance τ in [0, 1]."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"{option} must be in [0, 1] (scaled relevance), got {threshold}; e.g. 0.1")


def component_weights(alpha_scaled: torch.Tensor, *, threshold: float | None) -> torch.Tensor:
    """Mask weights of the components.

    Args:
        alpha_scaled: ``(K,)`` scaled relevances in [0, 1].
        threshold: ``None`` for soft weights (``α'`` itself); otherwise ``τ`` in
            [0, 1] for hard weights ``1[α'_k >= τ]`` (the paper uses τ = 0.1).
            The top component (``α' = 1``) is always kept.

    Returns:
        ``(K,)`` weights in [0, 1], same dtype as ``alpha_scaled``.

    Raises:
        UsageError: if ``threshold`` is outside [0, 1].
    """
    if threshold is None:
        return alpha_scaled.clone()
    check_threshold(threshold)
    return (alpha_scaled >= threshold).to(alpha_scaled.dtype)


def separate_with_mask(
    audio: np.ndarray | torch.Tensor,
    predict_mask: Callable[[torch.Tensor], torch.Tensor],
    *,
    stft_opts: STFTOptions = STFTOptions(),
) -> tuple[np.ndarray, np.ndarray]:
    """Source and residual of a mono signal with a mask predicted from its magnitude.

    ``source = istft(mask ⊙ X)`` and ``residual = audio - source``, so the two add up to
    the input exactly (in float32).

    Args:
        audio: ``(N,)`` mono signal.
        predict_mask: maps the magnitude ``|X|`` (F, T) to a mask in [0, 1] of the same shape
            (``separate --method mask``: the checkpoint's mask network for one class).
        stft_opts: the separation STFT the mask is defined on.

    Returns:
        ``(source, residual)``, each ``(N,)`` float32.
    """
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    so = stft_opts
    X = stft(x, n_fft=so.n_fft, hop=so.hop, window=so.window)  # (F, T)
    with torch.no_grad():
        mask = torch.as_tensor(predict_mask(X.abs())).to(X.device)
    if mask.shape != X.shape:
        raise UsageError(f"predict_mask returned shape {tuple(mask.shape)} for a magnitude of shape {tuple(X.shape)}")
    source = istft(mask.clamp(0, 1) * X, length=x.shape[0], n_fft=so.n_fft, hop=so.hop, window=so.window)
    source = source.cpu().numpy().astype(np.float32)
    return source, (x.cpu().numpy() - source).astype(np.float32)


def reconstruct(
    W: torch.Tensor,
    H: torch.Tensor,
    X: torch.Tensor,
    weights: torch.Tensor,
    *,
    length: int,
    stft_opts: STFTOptions = STFTOptions(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resynthesise the weighted components and their complement.

    Args:
        W: ``(F, K)`` templates.
        H: ``(K, T)`` activations.
        X: ``(F, T)`` complex mixture STFT.
        weights: ``(K,)`` component weights ``a_k`` in [0, 1].
        length: output length ``N`` in samples (the mixture's).
        stft_opts: the STFT that produced ``X``.

    Returns:
        ``(source, residual)``, each ``(N,)``; source uses mask
        ``Σ a_k w_k h_k / (W H + eps)``, the residual the complement ``1 - mask``.

    Raises:
        UsageError: on inconsistent shapes.
    """
    n_f, n_k = W.shape
    if H.shape[0] != n_k or X.shape != (n_f, H.shape[1]) or weights.shape != (n_k,):
        raise UsageError(
            f"reconstruct: inconsistent shapes W {tuple(W.shape)}, H {tuple(H.shape)}, "
            f"X {tuple(X.shape)}, weights {tuple(weights.shape)}; "
            "expected (F, K), (K, T), (F, T), (K,)"
        )
    if bool((weights < 0).any()) or bool((weights > 1).any()):
        raise UsageError("reconstruct: weights must lie in [0, 1]; use component_weights()")
    weights = weights.to(dtype=W.dtype, device=W.device)
    source_part = (W * weights) @ H  # (F, T) = Σ a_k w_k h_k
    mask = source_part / (W @ H + MASK_EPS)  # (F, T) in [0, 1]
    spec = torch.stack([mask * X, (1 - mask) * X])  # (2, F, T): source, residual
    so = stft_opts
    out = istft(spec, length=length, n_fft=so.n_fft, hop=so.hop, window=so.window)  # (2, N)
    return out[0], out[1]  # (N,), (N,)
