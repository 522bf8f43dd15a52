"""Evaluation metrics, pure numpy (no model, no I/O): training's hold-out figures use them too.

``classification`` (multi-label P/R/F1, top-1), ``localization`` (pointing game, CorLoc),
``sed`` (segment-based sound event detection), ``avvp`` (audio-visual video parsing) and
``separation`` (SDR, SI-SDR). Here: the two number helpers they all share.
"""

from __future__ import annotations

import math


def json_float(x: float) -> float | None:
    """A float for JSON: ``None`` (``null``) for nan and ±inf, which JSON cannot hold."""
    x = float(x)
    return x if math.isfinite(x) else None


def safe_ratio(num: float, den: float) -> float:
    """``num / den`` as a float, ``nan`` when ``den == 0`` (the ratio is undefined)."""
    return float(num) / float(den) if den != 0 else math.nan
