"""Property tests (hypothesis) of the pure DSP functions: STFT/iSTFT, log-mel, NMF.

Each property is checked on random sizes and signals, including the awkward ones
(lengths shorter than one window, silence, full-scale noise, exact zeros). The
examples are derandomized so that a run is reproducible; ``AVSCENE_FUZZ_EXAMPLES``
raises their number for a longer local run.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.special
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from avscene.config import PreprocessConfig
from avscene.dsp.mel import log_mel, log_mel_torch, num_frames
from avscene.dsp.nmf import nmf
from avscene.dsp.stft import istft, stft

EXAMPLES = int(os.environ.get("AVSCENE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CFG = PreprocessConfig()
LOG_FLOOR = float(np.log(np.float32(CFG.log_offset)))  # log(0 + 0.01): the value of silence


@st.composite
def signals(draw, *, min_len: int = 1, max_len: int = 3000) -> np.ndarray:
    """A float64 signal of random length: white noise, a tone, silence, an impulse or clipped noise."""
    n = draw(st.integers(min_len, max_len))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["noise", "tone", "silence", "impulse", "clipped"]))
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return rng.uniform(-1, 1, n)
    if kind == "tone":
        f = rng.uniform(20, 7900) / CFG.sample_rate
        return 0.9 * np.sin(2 * np.pi * f * np.arange(n) + rng.uniform(0, 2 * np.pi))
    if kind == "silence":
        return np.zeros(n)
    if kind == "impulse":
        x = np.zeros(n)
        x[rng.integers(max(n, 1)):][:1] = 1.0  # no sample to set when n == 0
        return x
    return np.clip(3 * rng.standard_normal(n), -1, 1)


# ---- STFT / iSTFT ------------------------------------------------------------------------------


@st.composite
def stft_params(draw) -> tuple[int, int]:
    n_fft = draw(st.sampled_from([2, 4, 16, 64, 256, 1024]))
    hop = draw(st.integers(1, n_fft - 1))
    return n_fft, hop


def wola_sums(n: int, n_frames: int, *, n_fft: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: per sample, the sum of the Hann weights (and of their squares) of the frames
    covering it. Frame ``t`` covers samples ``t * hop - n_fft // 2 + m``, ``m < n_fft``."""
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    s1, s2 = np.zeros(n), np.zeros(n)
    starts = np.arange(n_frames) * hop - n_fft // 2  # (T,) first sample of each frame
    for m in range(n_fft):
        i = starts + m  # (T,) the sample at window offset m of every frame
        i = i[(i >= 0) & (i < n)]
        np.add.at(s1, i, w[m])
        np.add.at(s2, i, w[m] ** 2)
    return s1, s2


@FUZZ
@given(x=signals(max_len=4000), params=stft_params(), dtype=st.sampled_from([torch.float32, torch.float64]))
@example(x=np.linspace(-1, 1, 33), params=(64, 34), dtype=torch.float64)  # hop > n_fft / 2: the tail
def test_stft_round_trip(x, params, dtype):
    n_fft, hop = params
    signal = torch.from_numpy(x).to(dtype)
    X = stft(signal, n_fft=n_fft, hop=hop)
    n_bins, n_frames = X.shape
    assert n_bins == n_fft // 2 + 1
    if hop <= n_fft // 2:
        assert n_frames == 1 + len(x) // hop  # torch's centred count
    else:  # ... plus one frame if that one ends before the signal does (then the tail is lost)
        last_sample_covered = (1 + len(x) // hop - 1) * hop - n_fft // 2 + n_fft - 1
        assert n_frames == 1 + len(x) // hop + (last_sample_covered < len(x) - 1)
    assert X.dtype == (torch.complex64 if dtype == torch.float32 else torch.complex128)
    s1, s2 = wola_sums(len(x), n_frames, n_fft=n_fft, hop=hop)
    assert (s2 > 0).all(), "a sample is in no frame (or only at the window's zero): it cannot come back"
    y = istft(X, length=len(x), n_fft=n_fft, hop=hop)
    assert y.shape == signal.shape and y.dtype == dtype
    # Overlap-add divides by s2: a frame's rounding error e comes back as e * s1 / s2, large where
    # only a window's tail covers a sample (the last ones).
    eps = 1e-6 if dtype == torch.float32 else 1e-14
    tol = eps * max(1.0, float(np.abs(x).max(initial=0))) * np.sqrt(n_fft) * s1 / s2
    err = np.abs(y.double().numpy() - signal.double().numpy())
    assert (err <= tol).all(), f"max error {err.max():.3g} at sample {err.argmax()} of {len(x)}"


@FUZZ
@given(x=signals(max_len=2000), params=stft_params(), rows=st.integers(1, 3))
def test_stft_batch_equals_rows(x, params, rows):
    n_fft, hop = params
    batch = torch.from_numpy(np.stack([x * (r + 1) for r in range(rows)]))  # (R, N)
    X = stft(batch, n_fft=n_fft, hop=hop)  # (R, F, T)
    for r in range(rows):
        np.testing.assert_allclose(X[r].numpy(), stft(batch[r], n_fft=n_fft, hop=hop).numpy(), atol=1e-12)


# ---- log-mel -----------------------------------------------------------------------------------


@FUZZ
@given(x=signals(min_len=0, max_len=3000))
def test_log_mel_shape_and_range(x):
    L = log_mel(x.astype(np.float32), cfg=CFG)
    n_frames = 0 if len(x) < 400 else 1 + (len(x) - 400) // 160  # by hand: 25-ms frames, 10-ms hop
    assert L.shape == (n_frames, 64) and L.dtype == np.float32
    assert num_frames(len(x), cfg=CFG) == n_frames
    assert np.isfinite(L).all()
    assert (L >= LOG_FLOOR - 1e-6).all()  # mel >= 0, so log(mel + 0.01) >= log(0.01)
    # the loudest possible frame: |X| <= sum(window) = 200 per bin, and each band's weights sum to < 3
    assert (L <= np.log(200 * 3 + CFG.log_offset)).all()
    if not x.any():
        np.testing.assert_allclose(L, LOG_FLOOR, atol=1e-6)  # silence is the floor, exactly


@FUZZ
@given(x=signals(min_len=400, max_len=3000), gains=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2))
def test_log_mel_monotonic_in_gain(x, gains):
    lo, hi = sorted(gains)
    quiet = log_mel((lo * x).astype(np.float32), cfg=CFG)
    loud = log_mel((hi * x).astype(np.float32), cfg=CFG)
    # |FFT| and the filterbank are non-negative and linear in the gain: mel(g x) = g mel(x). Compared
    # as mel energies, with float32 FFT noise ~1e-6 of the loudest band (the log hides nothing).
    mel_quiet, mel_loud = np.exp(quiet) - CFG.log_offset, np.exp(loud) - CFG.log_offset
    noise = 1e-5 * max(1.0, float(mel_loud.max()))
    assert (mel_loud >= mel_quiet - noise).all()
    np.testing.assert_allclose(lo * mel_loud, hi * mel_quiet, atol=noise)


@FUZZ
@given(x=signals(min_len=0, max_len=3000))
def test_log_mel_numpy_and_torch_agree(x):
    a = log_mel(x.astype(np.float32), cfg=CFG)
    b = log_mel_torch(torch.from_numpy(x.astype(np.float32)), cfg=CFG).numpy()
    assert a.shape == b.shape
    # Compared as mel energies: two float32 FFTs differ by ~1e-6 of the loudest band, which is
    # up to 1e-3 in log units next to the floor, where log(mel + 0.01) magnifies it 100-fold.
    mel_a, mel_b = np.exp(a) - CFG.log_offset, np.exp(b) - CFG.log_offset
    np.testing.assert_allclose(mel_a, mel_b, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(mel_b).max(initial=0))))


# ---- NMF ---------------------------------------------------------------------------------------


@st.composite
def nonnegative_matrices(draw) -> np.ndarray:
    shape = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    values = st.one_of(st.just(0.0), st.floats(1e-6, 1e3))
    return draw(arrays(np.float64, shape, elements=values))


@pytest.mark.parametrize("kind", ["kl", "is"])
@FUZZ
@given(V=nonnegative_matrices(), k=st.integers(1, 4), seed=st.integers(0, 1000))
def test_nmf_properties(kind, V, k, seed):
    if kind == "is" and not V.all():
        V = V + 1e-3  # IS is ill-posed on exact zeros (see avscene.dsp.nmf): keep the data positive
    res = nmf(torch.from_numpy(V), k=k, divergence=kind, max_iter=25, tol=0.0, seed=seed)
    W, H = res.W.numpy(), res.H.numpy()
    assert W.shape == (V.shape[0], k) and H.shape == (k, V.shape[1])
    assert (W >= 0).all() and (H >= 0).all()
    assert np.isfinite(W).all() and np.isfinite(H).all()
    if V.any():  # all-zero V: the updates drive W to 0 (reported; nothing to factorise anyway)
        np.testing.assert_allclose(W.sum(axis=0), 1.0, atol=1e-9)
    trace = np.asarray(res.divergences)
    assert len(trace) == res.n_iter + 1 and np.isfinite(trace).all()
    slack = 1e-9 * np.abs(trace[:-1]) + 1e-9  # float64 summation noise
    assert (np.diff(trace) <= slack).all(), f"{kind} divergence increased: {trace}"
    if kind == "kl":  # the last value is the KL divergence of the returned factors (scipy oracle)
        want = scipy.special.kl_div(V, W @ H + 1e-10).sum()
        assert trace[-1] == pytest.approx(want, rel=1e-6, abs=1e-6)
