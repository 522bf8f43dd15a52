"""Hysteresis thresholding and median filtering of score rows (avscene.dsp.events)."""

from __future__ import annotations

import numpy as np
import pytest

from avscene.dsp.events import grow_runs, hysteresis, median_filter
from avscene.errors import UsageError


def test_hysteresis_starts_high_and_continues_low() -> None:
    s = np.array([0.1, 0.3, 0.9, 0.4, 0.2, 0.05, 0.35, 0.45, 0.1, 0.8])
    got = hysteresis(s, high=0.5, low=0.15)
    # runs above 0.15: [1..4], [6..7], [9]; seeds above 0.5 at 2 and 9; run [6..7] has none
    assert got.tolist() == [False, True, True, True, True, False, False, False, False, True]
    # low == high is the plain threshold
    assert hysteresis(s, high=0.3, low=0.3).tolist() == (s > 0.3).tolist()
    # the run extends backwards from its seed too
    assert hysteresis(np.array([0.2, 0.2, 1.0]), high=0.5, low=0.1).tolist() == [True, True, True]


def test_hysteresis_edge_cases() -> None:
    assert hysteresis(np.array([]), high=1.0, low=0.0).tolist() == []
    assert not hysteresis(np.array([0.4, 0.4]), high=0.5, low=0.0).any()  # no seed, no event
    with pytest.raises(UsageError, match="low <= high"):
        hysteresis(np.zeros(3), high=0.0, low=1.0)


def test_median_filter_fills_gaps_and_removes_blips() -> None:
    a = np.array([1, 1, 0, 1, 1, 0, 0, 1, 0, 0], dtype=bool)
    # size 3: the single-window gap at 2 is filled, the blip at 7 removed, the gap [5, 6] stays
    assert median_filter(a, 3).astype(int).tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    # edges repeat: an event reaching the first window stays there
    assert median_filter(np.array([1, 1, 0, 0, 0], dtype=bool), 5).astype(int).tolist() == [1, 1, 0, 0, 0]
    assert median_filter(a, 1).tolist() == a.tolist()
    with pytest.raises(UsageError, match="odd"):
        median_filter(a, 4)


def test_grow_runs_keeps_the_runs_that_hold_a_seed() -> None:
    seed = np.array([0, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
    keep = np.array([0, 1, 0, 1, 0, 1, 1, 0], dtype=bool)  # a seed counts as kept
    assert grow_runs(seed, keep).astype(int).tolist() == [0, 1, 1, 1, 0, 0, 0, 0]
    assert grow_runs(np.zeros(3, bool), np.ones(3, bool)).tolist() == [False] * 3
