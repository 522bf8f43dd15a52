"""Timing conventions that more than one stage shares (see :mod:`avscene.config` for the
grid itself: 0.96-s audio windows with a 0.48-s hop, frames at the middle of each second).

Pure numpy: imported by the tasks (events) and the writers (score tables, overlays) alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def segment_timestamps(starts: Sequence[float], ends: Sequence[float], duration: float) -> np.ndarray:
    """Boundaries of the non-overlapping spans that overlapping windows stand for. (P,) → (P+1,).

    Window ``i`` of ``[s_i, e_i)`` with hop ``h = s_1 - s_0`` stands for its
    middle ``[s_i + (e_i - s_i - h)/2, … + h)`` (the central 0.48 s of a
    0.96-s window with a 0.48-s hop); the first span starts at 0 and the last
    ends at ``duration``, so span ``i`` is ``[ts[i], ts[i+1])`` and the spans
    tile ``[0, duration]``. This is the convention of ``avscene.tasks.localize``
    for events. Boundaries are clipped to ``[0, duration]`` and kept
    non-decreasing, so a span can be empty (zero length) but never negative.

    Args:
        starts: (P,) window start times in seconds, increasing.
        ends: (P,) window end times in seconds.
        duration: clip duration in seconds.

    Returns:
        (P+1,) float64 boundaries; ``ts[0] == 0`` and ``ts[-1] == duration``.
    """
    s = np.asarray(starts, dtype=np.float64)
    e = np.asarray(ends, dtype=np.float64)
    if len(s) == 0:
        return np.array([0.0, max(duration, 0.0)])
    hop = s[1] - s[0] if len(s) > 1 else e[0] - s[0]
    lead = (e[0] - s[0] - hop) / 2  # 0.24 s for 0.96-s windows, 0.48-s hop
    ts = np.concatenate([[0.0], s[1:] + lead, [duration]])  # (P+1,)
    ts = np.clip(ts, 0.0, max(duration, 0.0))
    return np.maximum.accumulate(ts)


__all__ = ["segment_timestamps"]
