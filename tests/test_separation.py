"""Tests of NMF component proposals and source enhancement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avscene.config import PreprocessConfig
from avscene.dsp.mel import log_mel
from avscene.dsp.stft import STFTOptions, istft, stft
from avscene.errors import UsageError
from avscene.proposals.nmf import (
    COMPONENT_GROUP,
    NMFOptions,
    component_masks,
    masked_spectra,
    ncp_patches,
    nmf_tracks,
)
from avscene.separation.ranking import (
    Enhancement,
    component_relevance,
    component_weights,
    reconstruct,
    scale_alpha,
)
from avscene.separation.methods import enhance_scored, score_with

SR = 16000
CFG = PreprocessConfig()


def enhance(mix, scorer, class_index: int, *, cfg: PreprocessConfig, opts: NMFOptions,
            threshold: float | None = None) -> Enhancement:
    """The NCP method on one stretch of audio, with any scorer: what ``separate --method ncp`` runs per chunk."""
    sc = score_with(mix, scorer, cfg=cfg, nmf=opts)
    return enhance_scored(sc, class_index, threshold=threshold, stft_opts=opts.stft_opts)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def _sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """Projection SDR: the part of ``est`` along ``ref`` is target, the rest is error."""
    target = (est @ ref) / (ref @ ref) * ref
    return float(10 * np.log10((target @ target) / ((est - target) @ (est - target))))


# ---------------------------------------------------------------- ranking maths


def test_component_relevance_is_max_over_time() -> None:
    beta = torch.tensor([[0.1, 0.9, 0.3], [0.2, 0.2, 0.2], [0.5, 0.0, 0.7]])
    torch.testing.assert_close(component_relevance(beta), torch.tensor([0.9, 0.2, 0.7]))


def test_scale_alpha_min_max() -> None:
    got = scale_alpha(torch.tensor([1.0, 3.0, 2.0, 1.5]))
    torch.testing.assert_close(got, torch.tensor([0.0, 1.0, 0.5, 0.25]))


@pytest.mark.parametrize("alpha", [[0.4, 0.4, 0.4], [2.0]])
def test_scale_alpha_constant_keeps_everything(alpha: list[float]) -> None:
    assert torch.equal(scale_alpha(torch.tensor(alpha)), torch.ones(len(alpha)))


def test_component_weights_soft_and_hard() -> None:
    a = torch.tensor([0.0, 0.1, 0.5, 1.0, 0.09])
    assert torch.equal(component_weights(a, threshold=None), a)
    assert torch.equal(component_weights(a, threshold=0.1), torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))
    assert torch.equal(component_weights(a, threshold=1.0), torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0]))
    with pytest.raises(UsageError, match=r"threshold must be in \[0, 1\]"):
        component_weights(a, threshold=1.5)


def test_ranking_rejects_bad_shapes() -> None:
    with pytest.raises(UsageError, match=r"\(K, P\)"):
        component_relevance(torch.zeros(3))
    with pytest.raises(UsageError, match="non-empty 1-D"):
        scale_alpha(torch.zeros(0))


# ---------------------------------------------------------------- reconstruction


def _random_factors(rng: np.random.Generator, n: int, k: int) -> tuple[torch.Tensor, ...]:
    x = torch.from_numpy(rng.uniform(-1, 1, n).astype(np.float32))
    X = stft(x)  # (513, T)
    W = torch.from_numpy(rng.uniform(0, 1, (X.shape[0], k)).astype(np.float32))
    H = torch.from_numpy(rng.uniform(0, 1, (k, X.shape[1])).astype(np.float32))
    return x, X, W, H


def test_source_plus_residual_is_mixture(rng: np.random.Generator) -> None:
    x, X, W, H = _random_factors(rng, 8000, 6)
    weights = torch.from_numpy(rng.uniform(0, 1, 6).astype(np.float32))
    source, residual = reconstruct(W, H, X, weights, length=8000)
    assert source.shape == residual.shape == (8000,)
    assert _rel_err(source + residual, x) < 1e-5
    assert _rel_err(source, x) > 0.05  # a genuine split, not the mixture


def test_all_or_nothing_weights(rng: np.random.Generator) -> None:
    x, X, W, H = _random_factors(rng, 5000, 3)
    source, residual = reconstruct(W, H, X, torch.ones(3), length=5000)
    assert _rel_err(source, x) < 1e-5 and float(residual.abs().max()) < 1e-5
    source, residual = reconstruct(W, H, X, torch.zeros(3), length=5000)
    assert float(source.abs().max()) < 1e-5 and _rel_err(residual, x) < 1e-5


def test_disjoint_components_give_binary_masks(rng: np.random.Generator) -> None:
    # Component 0 lives in bins < 100, component 1 in bins >= 100: keeping
    # component 0 must equal an ideal low-pass in the STFT domain.
    x, X, _, H = _random_factors(rng, 6000, 2)
    W = torch.zeros(X.shape[0], 2)
    W[:100, 0] = 1.0
    W[100:, 1] = 1.0
    source, residual = reconstruct(W, H, X, torch.tensor([1.0, 0.0]), length=6000)
    low = torch.zeros(X.shape[0], 1)
    low[:100] = 1.0
    torch.testing.assert_close(source, istft(X * low, length=6000), atol=1e-5, rtol=0)
    torch.testing.assert_close(residual, istft(X * (1 - low), length=6000), atol=1e-5, rtol=0)


def test_reconstruct_rejects_inconsistent_shapes(rng: np.random.Generator) -> None:
    _, X, W, H = _random_factors(rng, 4000, 3)
    with pytest.raises(UsageError, match="inconsistent shapes"):
        reconstruct(W, H, X, torch.ones(4), length=4000)
    with pytest.raises(UsageError, match=r"weights must lie in \[0, 1\]"):
        reconstruct(W, H, X, torch.tensor([0.5, 1.2, 0.0]), length=4000)


# ---------------------------------------------------------------- NCPs


def test_nmf_tracks_sum_to_mixture(rng: np.random.Generator) -> None:
    t = np.arange(2 * SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    dec = nmf_tracks(x, opts=NMFOptions(k=4, max_iter=30))
    assert dec.tracks.shape == (4, x.size) and dec.tracks.dtype == torch.float32
    assert dec.W.shape == (513, 4) and dec.H.shape == (4, dec.X.shape[1])
    assert _rel_err(dec.tracks.sum(dim=0), torch.from_numpy(x)) < 1e-5
    masks = component_masks(dec.W, dec.H)
    torch.testing.assert_close(masks.sum(dim=0), torch.ones(masks.shape[1:]))


def test_grouped_tracks_equal_the_masks_applied_one_by_one(rng: np.random.Generator) -> None:
    # K = 6 is not a multiple of the group size: the last group is partial.
    x = rng.uniform(-0.5, 0.5, SR).astype(np.float32)
    dec = nmf_tracks(x, opts=NMFOptions(k=COMPONENT_GROUP + 2, max_iter=10))
    masks = component_masks(dec.W, dec.H)  # (K, F, T), the unbatched oracle
    for k in range(dec.W.shape[1]):
        want = istft(masks[k] * dec.X, length=x.size)
        torch.testing.assert_close(dec.tracks[k], want, atol=1e-6, rtol=0)
    part = masked_spectra(dec.W, dec.H, dec.X, components=slice(2, 5))
    torch.testing.assert_close(part, masks[2:5] * dec.X, atol=1e-6, rtol=1e-5)


def test_nmf_options_spectrogram_power() -> None:
    assert NMFOptions().spectrogram_power == 1.0
    assert NMFOptions(divergence="is").spectrogram_power == 2.0
    assert NMFOptions(divergence="is", power=1.5).spectrogram_power == 1.5
    assert NMFOptions(n_fft=512, hop=128).stft_opts == STFTOptions(n_fft=512, hop=128)


def test_ncp_patch_count_and_times(rng: np.random.Generator) -> None:
    tracks = torch.from_numpy(rng.uniform(-0.5, 0.5, (5, 10 * SR)).astype(np.float32))
    patches, times = ncp_patches(tracks, cfg=CFG)
    assert patches.shape == (5, 11, 96, 64)  # ceil(10 / 0.96) = 11 windows per track
    np.testing.assert_allclose(times[:, 0], 0.96 * np.arange(11))
    np.testing.assert_allclose(times[:, 1] - times[:, 0], 0.96)
    # Content: the numpy VGGish log-mel of the zero-padded track, cut every 96 frames.
    padded = np.zeros((11 * 96 - 1) * 160 + 400, dtype=np.float32)
    padded[: 10 * SR] = tracks[3].numpy()
    want = log_mel(padded, cfg=CFG).reshape(11, 96, 64)
    np.testing.assert_allclose(patches[3].numpy(), want, atol=1e-4)
    # Frames starting at or after 10 s read pure padding: log(0 + 0.01).
    np.testing.assert_allclose(patches[:, 10, 40:].numpy(), np.log(0.01), atol=1e-6)


@pytest.mark.parametrize(("n", "p"), [(100, 1), (15360, 1), (15361, 2)])
def test_ncp_patch_count_edges(n: int, p: int) -> None:
    patches, times = ncp_patches(torch.zeros(2, n), cfg=CFG)
    assert patches.shape == (2, p, 96, 64) and times.shape == (p, 2)


# ---------------------------------------------------------------- enhancement


def _two_tones() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4 s: 440 Hz in [0, 2) s, 1500 Hz in [2, 4) s, with 10-ms fades."""
    n_half = 2 * SR
    t = np.arange(n_half) / SR
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    low = np.concatenate([0.5 * np.sin(2 * np.pi * 440 * t) * fade, np.zeros(n_half)])
    high = np.concatenate([np.zeros(n_half), 0.5 * np.sin(2 * np.pi * 1500 * t) * fade])
    return (low + high).astype(np.float32), low, high


def _band_scorer(calls: list[int]):
    """Class 0 = energy of the mel bands near 440 Hz, class 1 = near 1500 Hz."""
    hz_to_mel = lambda f: 1127.0 * np.log1p(np.asarray(f) / 700.0)  # noqa: E731 (HTK mel)
    centres_mel = np.linspace(hz_to_mel(125.0), hz_to_mel(7500.0), 66)[1:-1]  # (64,)
    bands = [np.abs(centres_mel - hz_to_mel(f)).argsort()[:3] for f in (440.0, 1500.0)]

    def score(patches: torch.Tensor) -> torch.Tensor:
        calls.append(patches.shape[0])
        energy = patches.exp()  # (n, 96, 64) mel magnitudes (+ 0.01)
        return torch.stack([energy[:, :, b].mean(dim=(1, 2)) for b in bands], dim=1)  # (n, 2)

    return score


@pytest.mark.parametrize("threshold", [None, 0.5])
def test_enhance_separates_two_tones(threshold: float | None) -> None:
    mix, low, high = _two_tones()
    calls: list[int] = []
    opts = NMFOptions(k=4)
    out = enhance(mix, _band_scorer(calls), 0, cfg=CFG, opts=opts, threshold=threshold)
    n_win = 5  # ceil(4 / 0.96)
    assert calls == [opts.k * n_win]  # one batched call on all K * P patches
    assert out.beta.shape == (opts.k, n_win) and out.alpha.shape == (opts.k,)
    assert out.source.shape == out.residual.shape == mix.shape
    gain = _sdr(out.source.numpy(), low) - _sdr(mix, low)
    assert gain > 5.0
    assert _sdr(out.residual.numpy(), high) > 5.0
    mix_t = torch.from_numpy(mix)
    assert _rel_err(out.source + out.residual, mix_t) < 1e-5
    if threshold is not None:
        assert torch.equal(out.kept, out.alpha_scaled >= threshold)
        assert set(out.weights.tolist()) <= {0.0, 1.0}
    # The other class picks the other tone.
    other = enhance(mix, _band_scorer([]), 1, cfg=CFG, opts=opts, threshold=threshold)
    assert _sdr(other.source.numpy(), high) - _sdr(mix, high) > 5.0


def test_enhance_rejects_bad_scores_and_class() -> None:
    mix, _, _ = _two_tones()
    mix = mix[: SR // 2]
    opts = NMFOptions(k=2, max_iter=5)
    with pytest.raises(UsageError, match="out of range for 2 classes"):
        enhance(mix, _band_scorer([]), 2, cfg=CFG, opts=opts)
    with pytest.raises(UsageError, match=r"shape \(n, C\)"):
        enhance(mix, lambda p: torch.zeros(p.shape[0]), 0, cfg=CFG, opts=opts)
    with pytest.raises(UsageError, match="threshold must be in"):
        enhance(mix, _band_scorer([]), 0, cfg=CFG, opts=opts, threshold=-0.1)
    with pytest.raises(UsageError, match="mono audio"):
        enhance(np.zeros((2, 100), dtype=np.float32), _band_scorer([]), 0, cfg=CFG, opts=opts)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    mix, _, _ = _two_tones()
    x = torch.from_numpy(mix).double()
    opts = NMFOptions(k=4, max_iter=20, tol=0.0)
    cpu = nmf_tracks(x, opts=opts)
    gpu = nmf_tracks(x, opts=opts, device="cuda")
    assert gpu.tracks.device.type == "cuda"
    assert _rel_err(gpu.tracks.cpu(), cpu.tracks) < 1e-6  # same CPU-seeded init, float64


@pytest.mark.parametrize("divergence", ["kl", "is"])
def test_silent_input_gives_silent_finite_output(divergence: str) -> None:
    silent = np.zeros(SR, dtype=np.float32)
    opts = NMFOptions(k=3, max_iter=10, divergence=divergence)
    out = enhance(silent, _band_scorer([]), 0, cfg=CFG, opts=opts, threshold=0.1)
    assert bool(torch.isfinite(out.alpha).all())
    assert torch.equal(out.weights, torch.ones(3))  # equal scores: nothing to rank, keep all
    assert float(out.source.abs().max()) == 0.0 and float(out.residual.abs().max()) == 0.0
