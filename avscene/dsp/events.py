"""Frame-level event decisions from score rows: hysteresis thresholding and median filtering
(pure numpy), the post-processing of DCASE sound event detection systems.

A row is a class's score over consecutive windows; a decision row is boolean, True where the
class is active.
"""

from __future__ import annotations

import numpy as np

from avscene.errors import UsageError


def hysteresis(scores: np.ndarray, high: float, low: float) -> np.ndarray:
    """Active where a run of scores above ``low`` contains a score above ``high``.

    An event starts at a score above ``high`` and continues, forwards and backwards, while the
    scores stay above ``low`` (``low <= high``); with ``low == high`` it is the plain threshold.

    Args:
        scores: (N,) one score per window.

    Returns:
        (N,) bool.
    """
    if not low <= high:
        raise UsageError(f"hysteresis needs low <= high, got low {low} and high {high}")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    return grow_runs(s > high, s > low)


def grow_runs(seed: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The runs of ``keep | seed`` that hold a ``seed``: (N,) bool, (N,) bool → (N,) bool."""
    seed = np.asarray(seed, dtype=bool).reshape(-1)
    keep = np.asarray(keep, dtype=bool).reshape(-1) | seed
    starts = keep & ~np.r_[False, keep[:-1]]
    run = np.cumsum(starts) * keep  # (N,) run number, 0 outside runs
    hold = np.zeros(int(run.max(initial=0)) + 1, dtype=bool)
    hold[run[seed]] = True
    hold[0] = False
    return hold[run]


def median_filter(active: np.ndarray, size: int) -> np.ndarray:
    """Majority vote over a centred window of ``size`` decisions (odd; 1 = unchanged).

    The row is padded by repeating its end values, so an event reaching the edge stays there.

    Args:
        active: (N,) bool decisions.

    Returns:
        (N,) bool.
    """
    if size < 1 or size % 2 == 0:
        raise UsageError(f"the median filter needs an odd size >= 1, got {size}")
    a = np.asarray(active, dtype=bool).reshape(-1)
    if size == 1 or len(a) == 0:
        return a.copy()
    h = size // 2
    padded = np.pad(a.astype(np.int64), h, mode="edge")
    votes = np.convolve(padded, np.ones(size, dtype=np.int64), mode="valid")  # (N,)
    return votes > h
