"""Tests of the separation baselines and of the separation evaluation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from avscene.checkpoint.load import load_pretrained
from avscene.proposals.nmf import NMFOptions, nmf_tracks
from avscene.separation.ranking import reconstruct
from avscene.testing.media import write_video
from avscene.testing.models import tiny_checkpoint
from avscene.separation import dictionary as sd
from avscene.evaluation import separation_baselines as sb
from avscene.evaluation.evaluate_sep import METHODS, ORACLE, evaluate_separation, read_sep_manifest
from avscene.evaluation.metrics.separation import sdr, si_sdr

SR = 16000
DUR = 4.0
N = int(DUR * SR)


def harmonic(f0: float, amps: tuple[float, ...], rng: np.random.Generator, n: int = N) -> np.ndarray:
    t = np.arange(n) / SR
    return sum(a * np.sin(2 * np.pi * f0 * (i + 1) * t + rng.uniform(0, 2 * np.pi)) for i, a in enumerate(amps))


def gate(start: float, end: float, n: int = N) -> np.ndarray:
    g = np.zeros(n)
    g[int(start * SR):int(end * SR)] = 1.0
    return g


def tone_a(rng):  # the "class": a 440-Hz harmonic tone
    return 0.1 * harmonic(440.0, (1.0, 0.5, 0.3, 0.2), rng)


def tone_b(rng):  # the steady "background": a 1250-Hz tone with one overtone
    return 0.05 * harmonic(1250.0, (1.0, 0.6), rng)


@pytest.fixture
def toy(rng):
    """Weakly labelled training clips (class sound part of the time over a steady background) and a test mix."""
    train = {"a": [tone_a(rng) * gate(1, 3) + tone_b(rng), tone_a(rng) * gate(0.5, 2.5) + tone_b(rng)],
             "other": [0.1 * harmonic(300.0, (1.0, 0.4), rng) * gate(1, 3) + tone_b(rng)]}
    source = tone_a(rng) * gate(0.5, 3.5)
    mixture = (source + tone_b(rng)).astype(np.float32)
    return train, source, mixture


# ----------------------------------------------------------------------------- building blocks


def test_kl_nmf_keeps_fixed_atoms_and_fits_exact_data(rng) -> None:
    W_true = torch.as_tensor(rng.random((30, 3)) * (rng.random((30, 3)) > 0.5) + 1e-3)
    W_true = W_true / W_true.sum(dim=0)
    V = W_true @ torch.as_tensor(rng.random((3, 50)) * 5)  # exactly rank 3
    W, H = sd.kl_nmf(V, k_free=1, W_fixed=W_true[:, 1:], n_iter=400)
    assert torch.equal(W[:, 1:], W_true[:, 1:])  # fixed atoms untouched, after the free one
    torch.testing.assert_close(W[:, 0].sum(), torch.tensor(1.0, dtype=W.dtype))
    assert float(torch.linalg.norm(W @ H - V) / torch.linalg.norm(V)) < 0.02


def test_quiet_frames_picks_the_lowest_energy_frames() -> None:
    spec = torch.tensor([[3.0, 0.1, 2.0, 0.2, 5.0], [0.0, 0.1, 0.0, 0.0, 0.0]])  # energies 9, .02, 4, .04, 25
    torch.testing.assert_close(sd.quiet_frames(spec, quantile=0.4), spec[:, [1, 3]])


def test_basis_mfcc_ignores_the_level(rng) -> None:
    W = rng.random((513, 4)) + 0.01
    np.testing.assert_allclose(sb.basis_mfcc(W), sb.basis_mfcc(3.0 * W), atol=1e-9)  # a level is c0 only
    assert sb.basis_mfcc(W).shape == (4, 13)


def test_activation_variability_by_hand() -> None:
    H = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 0.0, 2.0]])
    np.testing.assert_allclose(sb.activation_variability(H), [0.0, 1.0])  # std / mean


def test_oracle_weights_on_exact_sources(rng) -> None:
    s, n = rng.standard_normal(1000), rng.standard_normal(1000)
    tracks = np.stack([0.7 * s, n, 0.3 * s])  # components that are pure parts of one source
    np.testing.assert_array_equal(sb.oracle_weights(tracks, s, s + n), [1.0, 0.0, 1.0])


# ----------------------------------------------------------------------------- methods on the toy


def test_background_dictionary_comes_from_the_quiet_frames(toy) -> None:
    train, _, _ = toy
    d = sd.learn_dictionaries(train, classes=["a"], class_atoms=4, background_atoms=4)
    bin_of = lambda hz: round(hz / (SR / 1024))  # noqa: E731
    bg = d.background.sum(axis=1)  # (F,)
    assert bg[bin_of(1250)] > 20 * bg[bin_of(440)]  # the steady tone, not the class tone
    cls = d.classes["a"].sum(axis=1)
    assert cls[bin_of(440)] > 20 * cls[bin_of(1250)]
    np.testing.assert_allclose(d.classes["a"].sum(axis=0), 1.0, atol=1e-5)


def test_supervised_nmf_separates_the_toy(toy) -> None:
    train, source, mixture = toy
    d = sd.learn_dictionaries(train, classes=["a"], class_atoms=4, background_atoms=4)
    est = sd.supervised_nmf(mixture, d, "a")
    assert sdr(est, source) - sdr(mixture, source) > 5.0


def test_oracle_beats_the_other_choices_of_components(toy) -> None:
    _, source, mixture = toy
    dec = nmf_tracks(mixture, opts=NMFOptions(k=6))
    oracle = sdr(sb.oracle_estimate(dec, source, mixture), source)
    clusters, _ = sb.mel_clustering(dec)
    others = [sdr(c, source) for c in clusters] + [sdr(sb.mixture_estimate(mixture), source)]
    assert all(oracle >= o - 1e-6 for o in others)
    oracle_si = si_sdr(sb.oracle_estimate(dec, source, mixture), source)
    best = -math.inf  # brute force over every non-empty choice of components of the same NMF
    for bits in itertools.product([0.0, 1.0], repeat=6):
        if any(bits):
            est, _ = reconstruct(dec.W, dec.H, dec.X, torch.tensor(bits), length=N)
            best = max(best, si_sdr(est.numpy(), source))
    assert best - 2.0 <= oracle_si <= best + 1e-6  # the correlation rule is near the best choice


def test_mel_clustering_activity_rule_picks_the_intermittent_source(rng) -> None:
    source = tone_a(rng) * gate(0.5, 1.5) + tone_a(rng) * gate(2.5, 3.5)
    mixture = (source + 0.02 * rng.standard_normal(N)).astype(np.float32)  # steady noise
    clusters, active = sb.mel_clustering(nmf_tracks(mixture, opts=NMFOptions(k=6)))
    scores = [sdr(c, source) for c in clusters]
    assert active == int(np.argmax(scores)) and scores[active] > sdr(mixture, source)


# ----------------------------------------------------------------------------- evaluation


def _sep_set(root, rng):
    """Two mixtures in the avbench val/sep layout: the mp4 audio is the stem plus a quiet tone."""
    (root / "clips").mkdir(parents=True)
    rows = ["mixture,label,snr_db,group"]
    for i, (label, snr) in enumerate([("a", -5), ("b", 5)]):
        write_video(root / "clips" / f"{i:05d}.mp4", duration=1.0, freq=300.0 + 200 * i, amplitude=0.3,
                    audio_codec="aac")
        (root / "stems" / f"{i:05d}").mkdir(parents=True)
        stem = 0.3 * np.sin(2 * np.pi * (300.0 + 200 * i) * np.arange(SR) / SR)
        sf.write(root / "stems" / f"{i:05d}" / f"{label}.flac", stem, SR)
        rows.append(f"{i:05d},{label},{snr},{i:03d}")
    (root / "sep.csv").write_text("\n".join(rows) + "\n")


def test_evaluate_separation_on_a_tiny_set(tmp_path, rng) -> None:
    _sep_set(tmp_path / "sep", rng)
    loaded = load_pretrained(str(tiny_checkpoint(tmp_path / "ckpt")), device="cpu")
    assert [it.label for it in read_sep_manifest(tmp_path / "sep")] == ["a", "b"]
    rep = evaluate_separation(loaded, tmp_path / "sep", nmf=NMFOptions(k=4, max_iter=30))
    assert rep.failed == () and rep.n_mixtures == 2 and rep.snrs == (-5.0, 5.0)
    assert "supervised NMF" not in rep.methods and set(rep.methods) <= set(METHODS)
    summary = rep.summary()
    per = [m.scores[ORACLE].sdr for m in rep.mixtures]
    assert summary[ORACLE]["all"]["sdr"] == pytest.approx(np.mean(per))  # mean over mixtures
    assert summary[ORACLE]["-5.0"]["sdr"] == pytest.approx(per[0]) and summary[ORACLE]["all"]["n"] == 2
    doc = rep.to_json()
    assert doc["n_mixtures"] == 2 and doc["mixtures"][1]["label"] == "b"
