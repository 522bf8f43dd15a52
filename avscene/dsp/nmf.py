"""Nonnegative matrix factorisation by multiplicative updates (torch).

``V ≈ W H`` with ``V`` (F, T) >= 0, ``W`` (F, K) >= 0, ``H`` (K, T) >= 0.

* ``"kl"``: generalised Kullback-Leibler divergence, Lee & Seung (2001)
  updates. These are majorise-minimise steps, so the divergence never
  increases.
* ``"is"``: Itakura-Saito divergence (beta = 0), the multiplicative updates of
  Févotte, Bertin & Durrieu (2009, Neural Computation). Not proven monotone,
  but non-increasing in practice (and in our tests). IS is scale-invariant and
  ill-posed on exact zeros (they are floored at ``eps``): on data with many
  exact zeros (e.g. a rank-deficient synthetic matrix) it can stall in poor
  local minima, so KL is the default for separation.

The initialisation is drawn from a CPU ``torch.Generator`` seeded with ``seed``
and then moved to ``V``'s device, so a seed gives the same start everywhere.
After every iteration the columns of ``W`` are rescaled to sum to one (the
scale moves into ``H``; ``W H`` is unchanged): each ``w_k`` is then a spectral
shape and ``h_k`` carries the component's energy, which fixes the scale
ambiguity of NMF.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from avscene.errors import UsageError

Divergence = Literal["kl", "is"]
DIVERGENCES = ("kl", "is")
INIT_FLOOR = 1e-2  # added to U[0, 1) init draws so no entry starts at (or near) 0


@dataclass(frozen=True)
class NMFResult:
    """Output of :func:`nmf`."""

    W: torch.Tensor  # (F, K) nonnegative, columns sum to 1
    H: torch.Tensor  # (K, T) nonnegative activations
    divergences: list[float]  # divergence at init, then after each iteration: n_iter + 1 values
    n_iter: int  # iterations run (<= max_iter)


def divergence(
    V: torch.Tensor, WH: torch.Tensor, kind: Divergence = "kl", *, eps: float = 1e-10
) -> float:
    """Total divergence ``D(V | WH)`` summed over all entries.

    ``"kl"``: ``sum(V log(V / WH) - V + WH)``, with ``0 log 0 = 0``.
    ``"is"``: ``sum(V / WH - log(V / WH) - 1)``. ``eps`` is added to ``WH``
    (both kinds) and to ``V`` (IS only, where ``V = 0`` would be infinite),
    exactly as in :func:`nmf`'s updates. Accumulated in float64.

    Args:
        V: data, any shape, nonnegative.
        WH: model, same shape as ``V``, nonnegative.
        kind: ``"kl"`` or ``"is"``.
        eps: flooring constant.

    Returns:
        The divergence as a Python float.
    """
    _check_kind(kind)
    Y = WH + eps
    if kind == "kl":
        terms = torch.xlogy(V, V) - torch.xlogy(V, Y) - V + Y
    else:
        ratio = (V + eps) / Y
        terms = ratio - torch.log(ratio) - 1
    return float(terms.sum(dtype=torch.float64))


def _data_term(V: torch.Tensor, kind: str, eps: float) -> float:
    """The part of the divergence that depends on V only (computed once)."""
    if kind == "kl":
        return float((torch.xlogy(V, V) - V).sum(dtype=torch.float64))
    return float(-torch.log(V + eps).sum(dtype=torch.float64)) - V.numel()


def _model_term(V: torch.Tensor, WH: torch.Tensor, kind: str, eps: float) -> float:
    """The rest: KL ``sum(Y - V log Y)``, IS ``sum((V + eps) / Y + log Y)``, ``Y = WH + eps``."""
    Y = WH + eps
    if kind == "kl":
        total = Y.sum(dtype=torch.float64) - (V * torch.log(Y)).sum(dtype=torch.float64)
    else:
        total = ((V + eps) / Y).sum(dtype=torch.float64) + torch.log(Y).sum(dtype=torch.float64)
    return float(total)


def _check_kind(kind: str) -> None:
    if kind not in DIVERGENCES:
        raise UsageError(f"unknown NMF divergence {kind!r}: use one of {list(DIVERGENCES)}")


def _check_input(V: torch.Tensor, k: int, max_iter: int, tol: float) -> None:
    if not torch.is_tensor(V) or V.ndim != 2 or not V.is_floating_point():
        raise UsageError(
            "nmf expects V as a 2-D floating-point tensor (F, T); "
            "convert with torch.as_tensor(v, dtype=torch.float32)"
        )
    if V.numel() == 0:
        raise UsageError(f"nmf: V is empty, shape {tuple(V.shape)}")
    if not bool(torch.isfinite(V).all()) or bool((V < 0).any()):
        raise UsageError(
            "nmf: V must be finite and nonnegative (use a magnitude or power spectrogram)"
        )
    if k < 1:
        raise UsageError(f"nmf: k must be >= 1, got {k}")
    if max_iter < 1:
        raise UsageError(f"nmf: max_iter must be >= 1, got {max_iter}")
    if tol < 0 or math.isnan(tol):
        raise UsageError(f"nmf: tol must be >= 0, got {tol}")


def _init(V: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded uniform init, scaled so that mean(W H) ~ mean(V)."""
    n_f, n_t = V.shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    W = torch.rand(n_f, k, generator=gen, dtype=V.dtype) + INIT_FLOOR  # (F, K)
    H = torch.rand(k, n_t, generator=gen, dtype=V.dtype) + INIT_FLOOR  # (K, T)
    # E[(W H)_ft] ~ k * E[w] * E[h]; match it to mean(V).
    mean_wh = k * float(W.mean()) * float(H.mean())
    scale = math.sqrt(max(float(V.mean()), 1e-30) / mean_wh)
    return (W * scale).to(V.device), (H * scale).to(V.device)


def _init_with_fixed(V: torch.Tensor, k: int, seed: int, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded init of ``k`` free atoms (columns summing to one) before the fixed ones (F, J), and of
    all activations, scaled so that mean(W H) ~ mean(V) for atoms that sum to one."""
    n_f, n_t = V.shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    free = torch.rand(n_f, k, generator=gen, dtype=V.dtype).to(V.device) + INIT_FLOOR  # (F, K)
    free = free / free.sum(dim=0)
    n = k + fixed.shape[1]
    H = torch.rand(n, n_t, generator=gen, dtype=V.dtype).to(V.device) + INIT_FLOOR  # (K + J, T)
    H = H * float(V.mean()) * n_f / (n * float(H.mean()))
    return torch.cat([free, fixed.to(V)], dim=1), H


def _normalise(W: torch.Tensor, H: torch.Tensor, eps: float, n_free: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns of W (the first ``n_free`` of them; None: all) rescaled to sum to one, the scale into H."""
    if n_free is None:
        norms = W.sum(dim=0).clamp_min(eps)  # (K,)
        return W / norms, H * norms[:, None]
    norms = W[:, :n_free].sum(dim=0).clamp_min(eps)  # (K_free,)
    return (torch.cat([W[:, :n_free] / norms, W[:, n_free:]], dim=1),
            torch.cat([H[:n_free] * norms[:, None], H[n_free:]]))


def _update(
    V: torch.Tensor, W: torch.Tensor, H: torch.Tensor, WH: torch.Tensor, kind: str, eps: float,
    n_free: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One multiplicative update of H then W (its first ``n_free`` columns; None: all); returns
    (W, H, W @ H) with the learnt columns of W normalised."""
    if kind == "kl":
        H = H * (W.T @ (V / (WH + eps))) / (W.sum(dim=0)[:, None] + eps)  # (K, T)
        WH = W @ H
        if n_free is None:
            W = W * ((V / (WH + eps)) @ H.T) / (H.sum(dim=1)[None, :] + eps)  # (F, K)
        elif n_free:
            Hf = H[:n_free]
            Wf = W[:, :n_free] * ((V / (WH + eps)) @ Hf.T) / (Hf.sum(dim=1)[None, :] + eps)  # (F, K_free)
            W = torch.cat([Wf, W[:, n_free:]], dim=1)
    else:
        Ve = V + eps
        Yinv = (WH + eps).reciprocal()  # (F, T)
        H = H * (W.T @ (Ve * Yinv * Yinv)) / (W.T @ Yinv + eps)  # (K, T)
        Yinv = (W @ H + eps).reciprocal()
        if n_free is None:
            W = W * ((Ve * Yinv * Yinv) @ H.T) / (Yinv @ H.T + eps)  # (F, K)
        elif n_free:
            Hf = H[:n_free]
            Wf = W[:, :n_free] * ((Ve * Yinv * Yinv) @ Hf.T) / (Yinv @ Hf.T + eps)  # (F, K_free)
            W = torch.cat([Wf, W[:, n_free:]], dim=1)
    if n_free is None or n_free:
        W, H = _normalise(W, H, eps, n_free)
    return W, H, W @ H


def nmf(
    V: torch.Tensor,
    *,
    k: int,
    divergence: Divergence = "kl",
    max_iter: int = 200,
    tol: float = 1e-4,
    seed: int = 0,
    eps: float = 1e-10,
    W_fixed: torch.Tensor | None = None,
) -> NMFResult:
    """Factorise ``V ≈ W H`` with multiplicative updates.

    With ``W_fixed`` (F, J) the dictionary is ``W = [W_free, W_fixed]``: only the ``k``
    free atoms and all activations are learnt (supervised NMF; ``k = 0`` fits the
    activations of a fixed dictionary).

    Stops after ``max_iter`` iterations or as soon as the relative decrease of
    the divergence, ``(D_prev - D) / D_prev``, falls below ``tol`` (``tol=0``
    runs until ``max_iter`` unless the divergence stops decreasing at all).
    Runs on ``V``'s device and in ``V``'s dtype.

    Args:
        V: nonnegative data of shape ``(F, T)``, float32 or float64.
        k: number of components ``K`` to learn (0 allowed with ``W_fixed``).
        divergence: ``"kl"`` (generalised KL) or ``"is"`` (Itakura-Saito).
        max_iter: maximum number of iterations.
        tol: relative-decrease stopping threshold.
        seed: seed of the random initialisation.
        eps: floor added to denominators (and to ``V`` for IS).

    Returns:
        :class:`NMFResult` with ``W`` (F, K [+ J]), its learnt columns summing to one
        (the fixed ones follow, as given), ``H`` (K [+ J], T), the divergence trace and
        the iteration count.

    Raises:
        UsageError: if ``V`` is not a finite nonnegative 2-D float tensor or an
            option is out of range.
    """
    _check_kind(divergence)
    _check_input(V, k if W_fixed is None else max(k, 1), max_iter, tol)
    if W_fixed is not None and (W_fixed.ndim != 2 or W_fixed.shape[0] != V.shape[0] or bool((W_fixed < 0).any())):
        raise UsageError(f"nmf: W_fixed must be nonnegative (F, J) = ({V.shape[0]}, J), got {tuple(W_fixed.shape)}")
    if W_fixed is None:
        W, H = _normalise(*_init(V, k, seed), eps)
        n_free = None  # every column is learnt (the unchanged path of the NCP method)
    else:
        W, H = _init_with_fixed(V, k, seed, W_fixed)
        n_free = k
    WH = W @ H  # (F, T)
    # D = data term (constant) + model term: only the latter is recomputed per iteration.
    const = _data_term(V, divergence, eps)
    trace = [const + _model_term(V, WH, divergence, eps)]
    n_iter = 0
    while n_iter < max_iter:
        W, H, WH = _update(V, W, H, WH, divergence, eps, n_free)
        n_iter += 1
        trace.append(const + _model_term(V, WH, divergence, eps))
        prev, cur = trace[-2], trace[-1]
        if prev <= 0 or (prev - cur) / prev < tol:
            break
    return NMFResult(W=W, H=H, divergences=trace, n_iter=n_iter)
