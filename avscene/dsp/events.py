"""Frame-level event decisions from score rows: hysteresis thresholding and median filtering
(pure numpy), the post-processing of DCASE sound event detection systems.

A row is a class's score over consecutive windows; a decision row is boolean, True where the
class is active. :class:`EventRule` is one rule made of these pieces (the one a checkpoint's event
calibration records, ``avscene.train.event_calibration``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from avscene.errors import UsageError

RELATIVE_SCOPES = ("predicted", "unheard")  # EventRule.scope


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


@dataclass(frozen=True)
class EventRule:
    """Which windows of one class sound, from its classification scores ``A`` over one clip.

    The row is first taken relative to the clip when ``centre`` (minus its median over the clip's
    windows: a gain or timbre change that lowers every window alike does not move it). An event
    starts at a score above ``start`` and continues while the scores stay above ``low``
    (hysteresis; None: ``start`` alone). For a class the clip-level decision predicts
    (``relative``), the windows scoring at least ``fraction`` of the clip's best are active too
    (none when the best is not positive), and those within ``margin`` of the clip's best (also when
    no window is positive: a class whose scores all shrank under a recording change keeps its
    loudest windows). ``scope`` says which classes are ``relative`` (the caller decides):
    ``"predicted"``, or ``"unheard"``, those predicted but not heard (the audio decision fails while
    the fused one holds: the case of scores that shrank). Last, a median filter of ``median`` decisions.
    """

    start: float = 0.0
    low: float | None = None
    median: int = 1
    fraction: float | None = None
    centre: bool = False
    margin: float | None = None
    scope: str = "predicted"

    def __post_init__(self) -> None:
        if not np.isfinite(self.start) or (self.low is not None and not np.isfinite(self.low)):
            raise UsageError(f"event thresholds must be finite, got start {self.start} and low {self.low}")
        if self.low is not None and not self.low <= self.start:
            raise UsageError(f"an event rule needs low <= start, got low {self.low} and start {self.start}")
        if isinstance(self.median, bool) or not isinstance(self.median, int) or self.median < 1 or self.median % 2 == 0:
            raise UsageError(f"the event median filter needs an odd size >= 1, got {self.median!r}")
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise UsageError(f"the event fraction must lie in [0, 1], got {self.fraction}")
        if self.margin is not None and not (np.isfinite(self.margin) and self.margin >= 0):
            raise UsageError(f"the event margin must be finite and >= 0, got {self.margin}")
        if self.scope not in RELATIVE_SCOPES:
            raise UsageError(f"the event rule's scope must be one of {RELATIVE_SCOPES}, got {self.scope!r}")

    def relative(self, *, predicted: bool, heard: bool) -> bool:
        """Whether a class gets the clip-relative parts (``fraction``, ``margin``)."""
        return predicted and (self.scope == "predicted" or not heard)

    def scores(self, row: np.ndarray) -> np.ndarray:
        """The row the thresholds apply to: (N,) → (N,) float64 (minus its median with ``centre``)."""
        s = np.asarray(row, dtype=np.float64).reshape(-1)
        return s - np.median(s) if self.centre and len(s) else s

    def active(self, row: np.ndarray, *, relative: bool) -> np.ndarray:
        """(N,) scores → (N,) bool decisions; ``relative``: also apply the clip-relative ``fraction``."""
        s = self.scores(row)
        on = hysteresis(s, self.start, self.start if self.low is None else self.low)
        if relative and self.fraction is not None and len(s) and s.max() > 0:
            on |= s >= self.fraction * s.max()
        if relative and self.margin is not None and len(s):
            on |= s >= s.max() - self.margin
        return median_filter(on, self.median)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EventRule:
        return cls(**d)
