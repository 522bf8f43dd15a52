"""Tests of the separation metrics: SI-SDR by hand, SDR against the SNR, silence handling."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from avscene.errors import UsageError
from avscene.evaluation.metrics.separation import sdr, sdr_improvement, separation_scores, si_sdr

N = 32000  # 2 s at 16 kHz


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _orthogonal_noise(rng: np.random.Generator, s: np.ndarray, energy: float) -> np.ndarray:
    """Zero-mean noise orthogonal to the zero-mean signal s, with the given energy."""
    n = rng.standard_normal(len(s))
    n -= n.mean()
    n -= (n @ s) / (s @ s) * s
    return n * np.sqrt(energy / (n @ n))


def test_si_sdr_by_hand() -> None:
    s = np.array([1.0, -1.0, 1.0, -1.0])
    n = np.array([1.0, 1.0, -1.0, -1.0])  # zero mean, orthogonal to s
    # Target 2 s has energy 16, residual 0.5 n has energy 1: 10 log10(16).
    assert si_sdr(2 * s + 0.5 * n, s) == pytest.approx(10 * np.log10(16), abs=1e-12)
    # Scale- and offset-invariant: the estimate's gain and DC do not matter.
    assert si_sdr(-3 * (2 * s + 0.5 * n) + 7.0, s) == pytest.approx(10 * np.log10(16), abs=1e-12)


def test_si_sdr_with_known_orthogonal_noise(rng: np.random.Generator) -> None:
    s = rng.standard_normal(N)
    s -= s.mean()
    noise = _orthogonal_noise(rng, s, energy=(s @ s) / 100)  # 20 dB below the source
    assert si_sdr(0.5 * s + noise, s) == pytest.approx(20 - 20 * np.log10(2), abs=1e-9)


def test_sdr_of_white_noise_is_close_to_snr(rng: np.random.Generator) -> None:
    t = np.arange(N) / 16000
    s = np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 1234 * t) + 0.3 * rng.standard_normal(N)
    noise = rng.standard_normal(N) * np.sqrt(np.mean(s**2) / 10 ** (15 / 10))  # 15 dB SNR
    snr = 10 * np.log10((s @ s) / (noise @ noise))
    # The 512-tap filter explains about 512 / N of the noise as target: +0.07 dB here.
    assert sdr(s + noise, s) == pytest.approx(snr, abs=0.25)


def test_sdr_forgives_short_filtering_but_si_sdr_does_not(rng: np.random.Generator) -> None:
    s = rng.standard_normal(N)
    noise = rng.standard_normal(N) * 0.1  # 20 dB
    delayed = np.concatenate([np.zeros(10), s[:-10]])  # a 10-tap delay is within the 512-tap filter
    assert sdr(delayed + noise, s) == pytest.approx(20.0, abs=0.3)
    assert si_sdr(delayed + noise, s) < 0.0


def test_separation_scores_and_perfect_estimate(rng: np.random.Generator) -> None:
    s = rng.standard_normal(N)
    perfect = separation_scores(s, s)
    assert perfect.sdr == math.inf and perfect.note is None
    assert perfect.si_sdr > 100  # float rounding leaves a tiny residual
    assert perfect.to_json()["sdr"] is None
    scored = separation_scores(s + 0.1 * rng.standard_normal(N), s)
    assert 19 < scored.sdr < 21 and 19 < scored.si_sdr < 21


@pytest.mark.parametrize(
    ("which", "reason"),
    [("reference", "reference is silent"), ("estimate", "estimate is silent"), ("dc_reference", "reference is silent")],
)
def test_silent_signal_gives_nan_and_a_reason(rng: np.random.Generator, which: str, reason: str) -> None:
    x = rng.standard_normal(N)
    silent = np.full(N, 0.25) if which == "dc_reference" else np.zeros(N)
    est, ref = (x, silent) if which != "estimate" else (silent, x)
    res = separation_scores(est, ref)
    assert math.isnan(res.sdr) and math.isnan(res.si_sdr) and reason in res.note
    assert math.isnan(sdr(est, ref)) and math.isnan(si_sdr(est, ref))
    assert json.loads(json.dumps(res.to_json(), allow_nan=False))["sdr"] is None


def test_sdr_improvement_over_the_mixture(rng: np.random.Generator) -> None:
    s = rng.standard_normal(N)
    s -= s.mean()
    v = _orthogonal_noise(rng, s, energy=s @ s)  # 0 dB interference
    imp = sdr_improvement(s + 0.1 * v, s, s + v)
    assert imp.mixture.si_sdr == pytest.approx(0.0, abs=1e-9)
    assert imp.si_sdr_improvement == pytest.approx(20.0, abs=1e-9)  # interference 20 dB quieter
    assert imp.sdr_improvement == pytest.approx(20.0, abs=0.3)
    assert imp.to_json()["estimate"]["si_sdr"] == pytest.approx(20.0, abs=1e-9)


def test_separation_rejects_bad_signals(rng: np.random.Generator) -> None:
    x = rng.standard_normal(N)
    with pytest.raises(UsageError, match="differ in length"):
        separation_scores(x, x[:-1])
    with pytest.raises(UsageError, match="1-D mono"):
        separation_scores(np.stack([x, x]), np.stack([x, x]))
    with pytest.raises(UsageError, match="at least 512 samples"):
        separation_scores(x[:100], x[:100])
    with pytest.raises(UsageError, match="nan or inf"):
        si_sdr(np.full(N, np.nan), x)
