"""Source separation metrics: SDR (BSS Eval, via fast_bss_eval) and SI-SDR (numpy).

* SDR: Vincent, Gribonval, Févotte, "Performance measurement in blind audio
  source separation", IEEE TASLP 2006, with the time-invariant 512-tap
  distortion filter of BSS Eval v4 (museval), computed by
  ``fast_bss_eval.sdr_loss`` (Scheibler, ICASSP 2022) over the whole signal —
  not museval's median over 1-s windows — without mean removal.
* SI-SDR: Le Roux, Wisdom, Erdogan, Hershey, "SDR – half-baked or well done?",
  ICASSP 2019, Eq. 1–2, on zero-mean signals:
  ``α = <ŝ, s> / ||s||²``, ``SI-SDR = 10 log10(||α s||² / ||α s - ŝ||²)``.

``fast_bss_eval`` imports torch, so it is imported inside :func:`sdr` only:
importing this module stays torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from avscene.errors import UsageError
from avscene.evaluation.metrics import json_float

SDR_FILTER_TAPS = 512  # BSS Eval v4 / fast_bss_eval default distortion filter length
SILENCE_POWER = 1e-10  # zero-mean mean square below this (-100 dB re full scale) counts as silent

_SILENT = "{} is silent (variance < 1e-10): SDR and SI-SDR are undefined"


@dataclass(frozen=True)
class SeparationScores:
    """SDR and SI-SDR of one estimate, in dB.

    ``nan`` when undefined, with ``note`` saying why; ``inf`` for a perfect
    estimate. ``to_json()`` writes both as ``null``.
    """

    sdr: float
    si_sdr: float
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"sdr": json_float(self.sdr), "si_sdr": json_float(self.si_sdr), "note": self.note}


@dataclass(frozen=True)
class SeparationImprovement:
    """Improvement of an estimate over the unprocessed mixture, in dB (SDRi, SI-SDRi)."""

    sdr_improvement: float
    si_sdr_improvement: float
    estimate: SeparationScores
    mixture: SeparationScores

    def to_json(self) -> dict[str, Any]:
        return {
            "sdr_improvement": json_float(self.sdr_improvement),
            "si_sdr_improvement": json_float(self.si_sdr_improvement),
            "estimate": self.estimate.to_json(),
            "mixture": self.mixture.to_json(),
        }


def _as_signal_pair(estimate: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if est.ndim != 1 or ref.ndim != 1:
        raise UsageError(f"estimate and reference must be 1-D mono signals, got {est.shape} and {ref.shape}")
    if est.shape != ref.shape:
        raise UsageError(
            f"estimate ({len(est)} samples) and reference ({len(ref)} samples) differ in length; trim or pad one"
        )
    if not (np.isfinite(est).all() and np.isfinite(ref).all()):
        raise UsageError("estimate or reference contains nan or inf samples")
    return est, ref


def _silence_note(est: np.ndarray, ref: np.ndarray) -> str | None:
    """Why the scores are undefined (a silent signal; DC offsets do not count as sound), or None."""
    if np.var(ref) < SILENCE_POWER:
        return _SILENT.format("reference")
    if np.var(est) < SILENCE_POWER:
        return _SILENT.format("estimate")
    return None


def _check_length(n: int) -> None:
    if n < SDR_FILTER_TAPS:
        raise UsageError(f"SDR needs at least {SDR_FILTER_TAPS} samples (the distortion filter), got {n}")


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), on zero-mean signals.

    Args:
        estimate: (N,) estimated source.
        reference: (N,) true source.

    Returns:
        SI-SDR in dB: ``inf`` if the estimate is a scaled copy of the
        reference, ``nan`` if either signal is silent (variance < 1e-10).

    Raises:
        UsageError: if the signals are not 1-D, differ in length or are not finite.
    """
    est, ref = _as_signal_pair(estimate, reference)
    est, ref = est - est.mean(), ref - ref.mean()
    if _silence_note(est, ref) is not None:
        return math.nan
    target = (est @ ref) / (ref @ ref) * ref  # α s, (N,)
    residual = est - target
    with np.errstate(divide="ignore"):
        return float(10 * np.log10((target @ target) / (residual @ residual)))


def sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """BSS Eval SDR in dB with a 512-tap distortion filter (``fast_bss_eval.sdr_loss``).

    Args:
        estimate: (N,) estimated source, N >= 512.
        reference: (N,) true source.

    Returns:
        SDR in dB (``inf`` for a perfect estimate, ``nan`` if either signal is
        silent, variance < 1e-10).

    Raises:
        UsageError: on malformed signals or fewer than 512 samples.
    """
    est, ref = _as_signal_pair(estimate, reference)
    _check_length(len(ref))
    if _silence_note(est, ref) is not None:
        return math.nan
    import fast_bss_eval  # lazy: it imports torch

    with np.errstate(divide="ignore"):
        neg = fast_bss_eval.sdr_loss(est, ref, filter_length=SDR_FILTER_TAPS)  # est first, ref second
    return float(-neg)


def separation_scores(estimate: np.ndarray, reference: np.ndarray) -> SeparationScores:
    """SDR and SI-SDR of one estimated source against its reference.

    A silent reference (or estimate) has no defined SDR: both scores are
    ``nan`` and ``note`` says which signal was silent, so an evaluation loop can
    skip or report the file instead of crashing (fast_bss_eval itself raises a
    singular-matrix error there).

    Args:
        estimate: (N,) estimated source (float, any scale).
        reference: (N,) true source, same length and sample rate.

    Returns:
        The scores in dB.

    Raises:
        UsageError: on malformed signals or fewer than 512 samples.
    """
    est, ref = _as_signal_pair(estimate, reference)
    _check_length(len(ref))
    note = _silence_note(est, ref)
    if note is not None:
        return SeparationScores(sdr=math.nan, si_sdr=math.nan, note=note)
    return SeparationScores(sdr=sdr(est, ref), si_sdr=si_sdr(est, ref))


def sdr_improvement(estimate: np.ndarray, reference: np.ndarray, mixture: np.ndarray) -> SeparationImprovement:
    """SDRi and SI-SDRi: the scores of the estimate minus those of the mixture itself.

    Args:
        estimate: (N,) estimated source.
        reference: (N,) true source.
        mixture: (N,) the input mixture the estimate was separated from.

    Returns:
        The improvements in dB and both underlying scores.

    Raises:
        UsageError: on malformed signals or fewer than 512 samples.
    """
    est_scores = separation_scores(estimate, reference)
    mix_scores = separation_scores(mixture, reference)
    return SeparationImprovement(
        sdr_improvement=est_scores.sdr - mix_scores.sdr,
        si_sdr_improvement=est_scores.si_sdr - mix_scores.si_sdr,
        estimate=est_scores,
        mixture=mix_scores,
    )
