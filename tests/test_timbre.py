"""Timbre perturbations (dsp/timbre.py): pitch shift keeps tempo, frequency warps are monotone."""

from __future__ import annotations

import numpy as np
import pytest

from avscene.dsp.timbre import pitch_shift, warp_frequency, warp_points

SR = 16000


def peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(spec)])


def test_pitch_shift_by_zero_is_the_identity():
    x = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    np.testing.assert_array_equal(pitch_shift(x, 0.0), x)


@pytest.mark.parametrize("semitones", [12.0, -5.0, 2.5])
def test_pitch_shift_moves_a_tone_by_the_ratio_and_keeps_its_length(semitones):
    t = np.arange(2 * SR) / SR
    x = np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
    y = pitch_shift(x, semitones)
    assert y.shape == x.shape and y.dtype == np.float32
    expected = 440.0 * 2 ** (semitones / 12)
    assert abs(peak_hz(y[SR // 4 : -SR // 4]) - expected) < 0.01 * expected + 2.0  # within 1 % (+ a bin)


def test_pitch_shift_keeps_the_timing_of_a_note():
    """A tone burst from 0.5 to 1.0 s still starts and stops there (tempo unchanged)."""
    t = np.arange(2 * SR) / SR
    x = (np.sin(2 * np.pi * 660.0 * t) * ((t >= 0.5) & (t < 1.0))).astype(np.float32)
    y = pitch_shift(x, 4.0)
    env = np.convolve(np.abs(y), np.ones(160) / 160, mode="same")
    on = np.flatnonzero(env > 0.3 * env.max())
    assert abs(on[0] / SR - 0.5) < 0.04 and abs(on[-1] / SR - 1.0) < 0.04


def test_warp_by_zero_is_the_identity():
    spec = np.random.default_rng(1).standard_normal((3, 96, 64)).astype(np.float32)
    np.testing.assert_array_equal(warp_frequency(spec, 0.0), spec)


@pytest.mark.parametrize("shift", [-0.2, -0.05, 0.1, 0.3])
def test_warp_points_are_monotone_and_keep_the_ends(shift):
    src = warp_points(64, shift)
    assert src[0] == 0 and src[-1] == 63
    assert np.all(np.diff(src) > 0)


def test_warp_moves_a_low_band_peak_down_for_a_positive_shift():
    """Output bin i reads input bin src(i) > i in the lower half: a peak at input bin 20 lands below 20."""
    spec = np.zeros(64, np.float32)
    spec[20] = 1.0
    out = warp_frequency(spec, 0.15)
    assert np.argmax(out) < 20
    out_neg = warp_frequency(spec, -0.15)
    assert np.argmax(out_neg) > 20
