"""Tests of the ``separate`` task: label choice, chunking, output rate, failures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from chunking import chunk_bounds, chunk_weights
from avscene.errors import UsageError
from avscene.checkpoint.load import load_pretrained
from avscene.io.decode import read_audio
from avscene.proposals.nmf import NMFOptions
from avscene.tasks.classify import classify_file
from avscene.tasks.separate import SeparateOptions, check_options, separate_audio, separate_file
from avscene.testing.media import write_video
from avscene.testing.models import tiny_checkpoint

SR = 16000
FAST_NMF = NMFOptions(k=6, max_iter=40)  # enough structure for the tests, a fraction of the time


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_pretrained(str(tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))), device="cpu")


def _write_mix(path: Path, seconds: float, *, rate: int = SR, seed: int = 0, extra_hz: float | None = None) -> Path:
    """Two gated tones and a little noise (seeded), mono PCM-16 wav."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    x += 0.2 * np.sin(2 * np.pi * 1250 * t) + 0.01 * rng.standard_normal(len(t))
    if extra_hz is not None:
        x += 0.1 * np.sin(2 * np.pi * extra_hz * t)
    sf.write(path, x, rate, subtype="PCM_16")
    return path


# ----------------------------------------------------------------------------- chunking


def test_chunk_bounds_hand_example() -> None:
    # n=100, size=40, overlap=10: ceil(90/30)=3 chunks of ceil(120/3)=40, hop 30.
    assert chunk_bounds(100, size=40, overlap=10) == [(0, 40), (30, 70), (60, 100)]
    assert chunk_bounds(40, size=40, overlap=10) == [(0, 40)]
    # n=101, size=41: 101 > 2*41-10 = 72, so a full chunk [0, 41); the rest from 31 is
    # 70 <= 72 samples: two chunks of ceil((70+10)/2) = 40 and 70+10-40 = 40 samples.
    assert chunk_bounds(101, size=41, overlap=10) == [(0, 41), (31, 71), (61, 101)]
    # n=200, size=40, overlap=8: full chunks while the rest exceeds 72: [0,40) rest 200,
    # [32,72) rest 168, [64,104) rest 136, [96,136) rest 104, then from 128 the rest is 72:
    # ceil(80/2) = 40 -> [128,168), [160,200).
    assert chunk_bounds(200, size=40, overlap=8) == [(0, 40), (32, 72), (64, 104), (96, 136),
                                                     (128, 168), (160, 200)]


def test_chunk_bounds_properties() -> None:
    rng = np.random.default_rng(1)
    for _ in range(300):
        size = int(rng.integers(8, 400))
        overlap = int(rng.integers(0, size // 4 + 1))
        n = int(rng.integers(1, 5000))
        b = chunk_bounds(n, size=size, overlap=overlap)
        assert b[0][0] == 0 and b[-1][1] == n
        assert all(0 < e - s <= size for s, e in b)
        if len(b) > 1:
            assert all(e - s >= size / 2 for s, e in b)  # no short sliver at the end
            assert all(b[i][1] - b[i + 1][0] == overlap for i in range(len(b) - 1))  # exact overlaps
            assert all(b[i + 2][0] >= b[i][1] for i in range(len(b) - 2))  # never three at once


def test_chunk_weights_sum_to_one_with_raised_cosine_ramps() -> None:
    bounds = [(0, 40), (30, 70), (60, 100)]
    total = np.zeros(100)
    for (a, b), w in zip(bounds, chunk_weights(bounds)):
        total[a:b] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    w1 = chunk_weights(bounds)[1]
    ramp = np.sin(0.5 * np.pi * (np.arange(10) + 0.5) / 10) ** 2  # hand formula
    np.testing.assert_allclose(w1[:10], ramp)
    np.testing.assert_allclose(w1[-10:], 1 - ramp)
    np.testing.assert_array_equal(w1[10:30], 1.0)


# ----------------------------------------------------------------------------- one file


def test_single_chunk_reports_its_ranking_and_adds_up(loaded, tmp_path) -> None:
    path = _write_mix(tmp_path / "mix.wav", 3.0)
    opts = SeparateOptions(label="b", threshold=0.3, nmf=FAST_NMF)
    sep = separate_file(path, loaded, opts)
    x = read_audio(path)
    np.testing.assert_allclose(sep.source + sep.residual, x, atol=1e-5)
    assert 0 < float(np.sum(sep.source**2)) < float(np.sum(x**2))
    r = sep.result
    assert (r.label, r.label_source, r.label_score, r.k, r.sample_rate) == ("b", "given", None, 6, SR)
    assert r.chunks == ((0.0, len(x) / SR),) and r.duration == pytest.approx(3.0)
    alpha = np.array(r.alpha[0])
    scaled = (alpha - alpha.min()) / (alpha.max() - alpha.min())  # min–max by hand
    np.testing.assert_allclose(r.alpha_scaled[0], scaled, atol=1e-5)
    assert list(r.kept[0]) == list(scaled >= 0.3)
    assert r.source_path is None and r.residual_path is None


def test_two_chunks_keep_length_and_add_up(loaded, tmp_path) -> None:
    path = _write_mix(tmp_path / "long.wav", 7.0, seed=3)
    opts = SeparateOptions(label="a", nmf=FAST_NMF, chunk_seconds=4.0, crossfade_seconds=1.0)
    sep = separate_file(path, loaded, opts)
    x = read_audio(path)
    assert len(sep.source) == len(sep.residual) == len(x)
    np.testing.assert_allclose(sep.source + sep.residual, x, atol=1e-5)
    # n = 112000 samples, 64000-sample chunks overlapping by 16000: ceil(96000/48000) = 2 chunks
    # of ceil(128000/2) = 64000 samples: [0, 4) s and [3, 7) s.
    assert sep.result.chunks == ((0.0, 4.0), (3.0, 7.0))
    assert len(sep.result.alpha) == len(sep.result.kept) == 2 and len(sep.result.alpha[1]) == 6
    # Outside the cross-fade, each chunk's output is the separation of that stretch on its own.
    one = SeparateOptions(label="a", nmf=FAST_NMF)
    first = separate_audio(x[:64000], loaded, 0, one)[0]
    second = separate_audio(x[48000:], loaded, 0, one)[0]
    np.testing.assert_allclose(sep.source[:48000], first[:48000], atol=1e-6)
    np.testing.assert_allclose(sep.source[64000:], second[16000:], atol=1e-6)


def test_label_unknown_uses_the_classifier_top_class(loaded, tmp_path) -> None:
    path = _write_mix(tmp_path / "mix.wav", 2.0, seed=5)
    sep = separate_file(path, loaded, SeparateOptions(nmf=FAST_NMF))
    top = classify_file(path, loaded).labels[0]
    assert sep.result.label == top.label and sep.result.label_source == "predicted"
    assert sep.result.label_score == pytest.approx(top.score)
    assert sep.result.to_json()["label_source"] == "predicted"


def test_a_given_label_that_is_not_predicted_is_warned_about(tmp_path) -> None:
    import torch

    from avscene.checkpoint.load import save_pretrained
    from avscene.testing.models import tiny_model, tiny_preprocess

    model = tiny_model(3, seed=0)
    with torch.no_grad():
        model.audio_head.cls.bias[:] = torch.tensor([-6.0, -6.0, 6.0])  # "c" sounds in anything, "a" in nothing
    biased = load_pretrained(str(save_pretrained(model, tmp_path / "m", labels=["a", "b", "c"],
                                                 preprocess=tiny_preprocess())), device="cpu")
    path = _write_mix(tmp_path / "mix.wav", 2.0, seed=5)
    assert classify_file(path, biased).predicted == ("c",)
    warned = separate_file(path, biased, SeparateOptions(label="a", nmf=FAST_NMF)).result
    assert [w for w in warned.warnings if "'a' is not predicted" in w] and warned.label_source == "given"
    assert not separate_file(path, biased, SeparateOptions(label="c", nmf=FAST_NMF)).result.warnings
    # a caller that already knows the decision (report) skips the check
    unchecked = separate_file(path, biased, SeparateOptions(label="a", nmf=FAST_NMF, check_label=False)).result
    assert not unchecked.warnings


def test_output_rate_input_puts_what_the_model_cannot_hear_in_the_residual(loaded, tmp_path) -> None:
    rate = 32000
    path = _write_mix(tmp_path / "hi.wav", 2.0, rate=rate, extra_hz=11000.0)  # 11 kHz > 8 kHz Nyquist
    sep = separate_file(path, loaded, SeparateOptions(label="c", nmf=FAST_NMF, output_rate="input"))
    native = read_audio(path, sample_rate=rate)
    assert sep.result.sample_rate == rate and len(sep.source) == len(native)
    np.testing.assert_allclose(sep.source + sep.residual, native, atol=1e-5)
    spec = np.abs(np.fft.rfft(sep.source * np.hanning(len(sep.source))))
    freqs = np.fft.rfftfreq(len(sep.source), 1 / rate)
    above = spec[freqs > 9000].max()
    assert above < 1e-3 * spec.max()  # the source was resynthesised at 16 kHz: nothing up there
    res = np.abs(np.fft.rfft(sep.residual * np.hanning(len(sep.residual))))
    assert freqs[np.argmax(np.where(freqs > 9000, res, 0))] == pytest.approx(11000, abs=2)


def test_unknown_label_lists_the_known_ones(loaded, tmp_path) -> None:
    path = _write_mix(tmp_path / "mix.wav", 1.0)
    with pytest.raises(UsageError, match=r"unknown label 'zzz'; the model knows: a, b, c"):
        separate_file(path, loaded, SeparateOptions(label="zzz"))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("threshold", 1.5, r"threshold must be in \[0, 1\]"),
    ("output_rate", "native", "unknown output rate"),
    ("chunk_seconds", 1.0, "chunk_seconds must be >= 2"),
    ("crossfade_seconds", 10.0, r"crossfade_seconds must be in \[0, chunk_seconds / 4\]"),
])
def test_bad_options_are_refused(loaded, field, value, message) -> None:
    opts = dataclasses.replace(SeparateOptions(label="a"), **{field: value})
    with pytest.raises(UsageError, match=message):
        check_options(opts, loaded)


def test_file_without_audio_fails_clearly(loaded, tmp_path) -> None:
    silent = write_video(tmp_path / "silent.mp4", duration=1.0, audio_codec=None)
    with pytest.raises(UsageError, match="no audio stream, so there is nothing to separate"):
        separate_file(silent, loaded, SeparateOptions(label="a", nmf=FAST_NMF))


def test_video_input_is_separated(loaded, tmp_path) -> None:
    """A video's sound is read and separated, with a known answer: it is a 660-Hz tone, the class
    "a" of dictionaries learned here (beside a 90-Hz hum as background), so "a" takes nearly all
    of it (a zero source, or one from another file or time, would fail)."""
    from avscene.separation.dictionary import learn_dictionaries
    from avscene.checkpoint.parts import SeparationParts
    from avscene.evaluation.metrics.separation import sdr

    clip = write_video(tmp_path / "clip.mp4", duration=2.0, freq=660.0)
    t = np.arange(4 * SR) / SR
    gate, hum = (t >= 1) & (t < 3), 0.1 * np.sin(2 * np.pi * 90 * t)  # the class only in the middle

    def harmonic(f0: float) -> np.ndarray:
        return (0.3 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3)) * gate + hum).astype(np.float32)

    dicts = learn_dictionaries({"a": [harmonic(660.0)], "b": [harmonic(1300.0)]}, classes=["a", "b"],
                               class_atoms=4, background_atoms=2)
    with_dicts = dataclasses.replace(loaded, separation=SeparationParts(dictionaries=dicts))
    audio = read_audio(clip)
    a = separate_file(clip, with_dicts, SeparateOptions(label="a", method="dictionary"))
    np.testing.assert_allclose(a.source + a.residual, audio, atol=1e-5)
    assert sdr(a.source, audio) > 10.0  # the tone, nearly whole
    assert np.mean(a.residual**2) < 0.1 * np.mean(audio**2)
