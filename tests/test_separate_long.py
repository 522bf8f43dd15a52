"""Separation of long inputs: chunking, cross-fades, streaming decode/resample/write, bounded lag."""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from chunking import chunk_bounds, chunk_weights

from avscene.config import PreprocessConfig
from avscene.dsp.overlap import OverlapAdd, StreamResampler, fade_in, ready_chunks
from avscene.errors import DecodeError, OutputError, UsageError
from avscene.checkpoint.load import load_pretrained
from avscene.io.audio_stream import AudioReader
from avscene.io.decode import read_audio
from avscene.io.writers import SeparationFiles, atomic_audio_writer
from avscene.proposals.nmf import NMFOptions
from avscene.separation.methods import NCPStrategy
from avscene.checkpoint.parts import SeparationParts
from avscene.separation.streaming import StreamingSeparation, pump_model_rate
from avscene.tasks.separate import SeparateOptions, separate_audio, separate_file, separate_stream
from avscene.testing.media import truncate_file, write_video
from avscene.testing.models import tiny_checkpoint

SR = 16000
FAST_NMF = NMFOptions(k=6, max_iter=40)  # enough structure for the tests, a fraction of the time
LONG = SeparateOptions(label="a", nmf=FAST_NMF, chunk_seconds=8.0, crossfade_seconds=1.0)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_pretrained(str(tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))), device="cpu")


def _mix(n: int, *, seed: int = 0) -> np.ndarray:
    """Gated 440 Hz + steady 1250 Hz + a little noise, float32 (n,)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    x += 0.2 * np.sin(2 * np.pi * 1250 * t) + 0.01 * rng.standard_normal(n)
    return x.astype(np.float32)


def _sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """Projection SDR: the part of ``est`` along ``ref`` is target, the rest is error."""
    target = (est @ ref) / (ref @ ref) * ref
    return float(10 * np.log10((target @ target) / ((est - target) @ (est - target))))


# ----------------------------------------------------------------------------- chunking maths


def test_chunk_bounds_of_25_s_by_hand() -> None:
    # size 8 s, overlap 1 s: full chunks while more than 2*8-1 = 15 s remain: [0, 8) (25 s left),
    # [7, 15) (18 s left); from 14 s, 11 s remain: two chunks of ceil((11+1)/2) = 6 s: [14, 20), [19, 25).
    assert chunk_bounds(25 * SR, size=8 * SR, overlap=SR) == [
        (0, 8 * SR), (7 * SR, 15 * SR), (14 * SR, 20 * SR), (19 * SR, 25 * SR)]


def test_streamed_chunks_do_not_depend_on_the_blocks(rng: np.random.Generator) -> None:
    for _ in range(200):
        size = int(rng.integers(8, 300))
        overlap = int(rng.integers(0, size // 4 + 1))
        n = int(rng.integers(1, 4000))
        got, start, known = [], 0, 0
        while known < n:  # the stream reveals the signal in random blocks
            known = min(n, known + int(rng.integers(1, 500)))
            ready = ready_chunks(start, known - start, size=size, overlap=overlap, final=known == n)
            got += ready
            if ready and known < n:
                start = ready[-1][1] - overlap
        assert got == chunk_bounds(n, size=size, overlap=overlap)


def test_crossfade_weights_sum_to_one(rng: np.random.Generator) -> None:
    for size, overlap, n in [(40, 10, 300), (41, 7, 1001), (50, 0, 333), (16, 4, 16), (16, 4, 17)]:
        bounds = chunk_bounds(n, size=size, overlap=overlap)
        total = np.zeros(n)
        for (a, b), w in zip(bounds, chunk_weights(bounds)):
            total[a:b] += w
        np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-15)
    # The ramp by hand: sin^2(pi/2 (i + 1/2) / 2) for i = 0, 1 is sin^2(pi/8), sin^2(3 pi/8).
    np.testing.assert_allclose(fade_in(2), [0.1464466094067262, 0.8535533905932737], rtol=1e-15)
    ramp = fade_in(9)
    np.testing.assert_allclose(ramp + ramp[::-1], 1.0, atol=1e-15)  # sin^2 + cos^2


def test_overlap_add_hands_out_finished_samples() -> None:
    ola = OverlapAdd(1)
    ola.add(0, np.array([[1.0, 2.0, 3.0]]))
    ola.add(2, np.array([[10.0, 20.0]]))
    np.testing.assert_array_equal(ola.take(2), [[1.0, 2.0]])
    np.testing.assert_array_equal(ola.take(4), [[13.0, 20.0]])
    with pytest.raises(UsageError, match="starts before 4"):
        ola.add(3, np.ones((1, 2)))


@pytest.mark.parametrize(("rate_in", "rate_out"), [(44100, 16000), (16000, 44100), (22050, 16000),
                                                   (16000, 16000), (8000, 16000)])
def test_stream_resampler_equals_resample_poly(rng: np.random.Generator, rate_in: int, rate_out: int) -> None:
    x = rng.uniform(-1, 1, 54321).astype(np.float32)
    g = np.gcd(rate_in, rate_out)
    want = resample_poly(x.astype(np.float64), rate_out // g, rate_in // g)  # scipy on the whole signal
    r = StreamResampler(rate_in, rate_out)
    cuts = np.sort(rng.integers(0, len(x), 12))
    got = np.concatenate([r.push(part) for part in np.split(x, cuts)] + [r.finish()])
    assert len(got) == -(-len(x) * rate_out // rate_in)  # ceil(N up / down)
    np.testing.assert_array_equal(got, want[:len(got)].astype(np.float32))


# ----------------------------------------------------------------------------- streaming decode / write


def test_audio_reader_blocks_equal_read_audio(tmp_path: Path) -> None:
    files = [write_video(tmp_path / "av.mp4", duration=2.3, audio_start=0.3, faststart=True),  # late audio
             write_video(tmp_path / "st.mp4", duration=1.5, channels=2, audio_rate=44100)]
    files.append(truncate_file(files[0], tmp_path / "cut.mp4", fraction=0.6))  # damaged at the end
    for path in files:
        for rate in (16000, 22050):
            want = read_audio(path, sample_rate=rate)  # the whole-file decoder is the oracle
            with AudioReader(path, sample_rate=rate) as reader:
                blocks = list(reader.blocks(5000))
            assert all(len(b) == 5000 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= 5000
            np.testing.assert_array_equal(np.concatenate(blocks), want)
    with pytest.raises(DecodeError, match="no audio stream"):
        AudioReader(write_video(tmp_path / "silent.mp4", duration=1.0, audio_codec=None))
    with pytest.raises(DecodeError, match="no such file"):
        AudioReader(tmp_path / "missing.wav")


def test_atomic_audio_writer_streams_and_cleans_up(tmp_path: Path, rng: np.random.Generator) -> None:
    x = rng.uniform(-1.5, 1.5, 3000).astype(np.float32)
    with atomic_audio_writer(tmp_path / "o.wav", sample_rate=SR, force=False) as w:
        for part in np.split(x, [1000, 2500]):
            w.write(part)
        assert not (tmp_path / "o.wav").exists()  # only the hidden temp file exists meanwhile
    back, rate = sf.read(tmp_path / "o.wav", dtype="float32")
    np.testing.assert_array_equal(back, x)  # float WAV: nothing clipped
    assert rate == SR and w.peak == pytest.approx(np.abs(x).max()) and not w.clipped
    with atomic_audio_writer(tmp_path / "o.flac", sample_rate=SR, force=False) as w:
        w.write(x)
    assert w.clipped and np.abs(sf.read(tmp_path / "o.flac")[0]).max() <= 1.0
    with pytest.raises(KeyboardInterrupt), atomic_audio_writer(tmp_path / "p.wav", sample_rate=SR, force=False) as w:
        w.write(x)
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.flac", "o.wav"]  # no partial file, no temp
    with pytest.raises(OutputError, match="already exists; pass --force"):
        with atomic_audio_writer(tmp_path / "o.wav", sample_rate=SR, force=False):
            pass
    with pytest.raises(OutputError, match=r"\.wav \(32-bit float\) or \.flac"):
        with atomic_audio_writer(tmp_path / "o.mp3", sample_rate=SR, force=False):
            pass


# ----------------------------------------------------------------------------- chunked separation


def test_multi_chunk_adds_up_and_keeps_the_length(loaded) -> None:
    x = _mix(25 * SR + 1, seed=2)  # odd length, 4 chunks
    source, residual, bounds, ranks = separate_audio(x, loaded, 1, LONG)
    assert len(source) == len(residual) == len(x) and source.dtype == np.float32
    assert len(bounds) == len(ranks) == 4 and bounds[-1][1] == len(x)
    np.testing.assert_allclose(source + residual, x, atol=1e-5)
    # Away from the cross-fades, the output is that chunk's own separation.
    a, b = bounds[1]
    own = separate_audio(x[a:b], loaded, 1, LONG)[0]  # that stretch alone: one chunk
    inner = slice(bounds[0][1] - a, bounds[2][0] - a)  # [8 s, 14 s) of the file
    np.testing.assert_allclose(source[a:b][inner], own[inner], atol=1e-6)


def test_output_does_not_depend_on_the_block_sizes(loaded, rng: np.random.Generator) -> None:
    x = _mix(19 * SR + 3, seed=4)
    whole, _, bounds, _ = separate_audio(x, loaded, 2, LONG)
    sep = StreamingSeparation(NCPStrategy(loaded, 2, nmf=FAST_NMF, threshold=None), size=8 * SR, overlap=SR)
    cuts = np.sort(rng.integers(0, len(x), 9))
    parts = [sep.push(p) for p in np.split(x, cuts)] + [sep.finish()]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1)[0], whole)
    assert sep.bounds == bounds


def test_streaming_output_lags_the_input_by_at_most_two_chunks(loaded) -> None:
    x = _mix(28 * SR, seed=5)  # 4 chunks
    block, size, overlap = SR, 8 * SR, SR
    written: list[int] = []
    pulled = [0]

    class Sink:
        def open(self, label: str, sample_rate: int) -> None: ...

        def write(self, source: np.ndarray, residual: np.ndarray) -> None:
            written.append(len(source))
            assert pulled[0] - sum(written) <= 2 * size - overlap + block  # bounded pending input

    def blocks():
        for i in range(0, len(x), block):
            pulled[0] += len(x[i:i + block])
            yield x[i:i + block]

    sep = StreamingSeparation(NCPStrategy(loaded, 0, nmf=FAST_NMF, threshold=None), size=size, overlap=overlap)
    assert pump_model_rate(blocks(), sep, Sink()) == len(x)
    assert len(written) >= 3  # written as it went (after each full chunk), not all at the end


def test_two_tones_over_many_chunks_are_separated() -> None:
    # Low and high tones alternate every second for 20 s: every 6-s chunk holds both.
    n = 20 * SR
    t = np.arange(n) / SR
    gate = (np.floor(t) % 2 == 0).astype(np.float64)
    low, high = 0.5 * np.sin(2 * np.pi * 440 * t) * gate, 0.5 * np.sin(2 * np.pi * 1500 * t) * (1 - gate)
    mix = (low + high).astype(np.float32)
    opts = SeparateOptions(nmf=NMFOptions(k=4), chunk_seconds=6.0, crossfade_seconds=1.0)
    source, residual, bounds, _ = separate_audio(mix, _band_model(), 0, opts)
    assert len(bounds) == 4
    assert _sdr(source, low) - _sdr(mix, low) > 5.0
    assert _sdr(residual, high) - _sdr(mix, high) > 5.0


def _band_model() -> SimpleNamespace:
    """A stand-in model: class 0 = energy of the mel bands near 440 Hz, class 1 = near 1500 Hz."""
    hz_to_mel = lambda f: 1127.0 * np.log1p(np.asarray(f) / 700.0)  # noqa: E731 (HTK mel)
    centres = np.linspace(hz_to_mel(125.0), hz_to_mel(7500.0), 66)[1:-1]  # (64,)
    bands = [np.abs(centres - hz_to_mel(f)).argsort()[:3] for f in (440.0, 1500.0)]

    class Bands(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device

        def score_audio_patches(self, patches: torch.Tensor) -> torch.Tensor:
            energy = patches.exp()  # (n, 96, 64)
            return torch.stack([energy[:, :, b].mean(dim=(1, 2)) for b in bands], dim=1)  # (n, 2)

    return SimpleNamespace(model=Bands(), preprocess=PreprocessConfig(), separation=SeparationParts(), model_id="bands")


# ----------------------------------------------------------------------------- files


def test_file_streamed_to_files_equals_the_in_memory_result(loaded, tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, _mix(21 * SR + 5, seed=6), SR, subtype="PCM_16")
    mem = separate_file(path, loaded, LONG)
    with ExitStack() as stack:
        files = SeparationFiles(stack, lambda label: (tmp_path / f"{label}.wav", tmp_path / "rest.wav"),
                                force=False)
        result = separate_stream(path, loaded, LONG, files)
    source, rate = sf.read(tmp_path / "a.wav", dtype="float32")
    residual, _ = sf.read(tmp_path / "rest.wav", dtype="float32")
    assert rate == SR and result == mem.result and len(result.chunks) == 3
    np.testing.assert_array_equal(source, mem.source)
    np.testing.assert_array_equal(residual, mem.residual)
    np.testing.assert_allclose(source + residual, read_audio(path), atol=1e-5)


def test_failure_midway_leaves_no_file(loaded, tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, _mix(20 * SR, seed=7), SR, subtype="PCM_16")
    out = tmp_path / "out"

    class Failing(SeparationFiles):
        def write(self, source: np.ndarray, residual: np.ndarray) -> None:
            super().write(source, residual)
            raise KeyboardInterrupt  # e.g. Ctrl-C after the first block

    with pytest.raises(KeyboardInterrupt), ExitStack() as stack:
        separate_stream(path, loaded, LONG, Failing(stack, lambda label: (out / "s.wav", None), force=False))
    assert list(out.iterdir()) == []


def test_input_rate_long_file_keeps_length_and_adds_up(loaded, tmp_path: Path) -> None:
    rate = 22050
    n = 17 * rate + 1  # odd, 3 chunks
    t = np.arange(n) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 10000 * t)  # 10 kHz: above 8 kHz
    sf.write(tmp_path / "hi.wav", x, rate, subtype="FLOAT")
    opts = SeparateOptions(label="b", nmf=FAST_NMF, chunk_seconds=8.0, crossfade_seconds=1.0)
    sep = separate_file(tmp_path / "hi.wav", loaded, dataclasses.replace(opts, output_rate="input"))
    native = read_audio(tmp_path / "hi.wav", sample_rate=rate)
    assert sep.result.sample_rate == rate and len(sep.source) == len(sep.residual) == len(native) == n
    assert len(sep.result.chunks) == 3
    np.testing.assert_allclose(sep.source + sep.residual, native, atol=1e-6)
    # The source is the 16-kHz separation resampled back (scipy resample_poly as the oracle).
    model_rate = resample_poly(native.astype(np.float64), 320, 441).astype(np.float32)
    src16, _, _, _ = separate_audio(model_rate, loaded, 1, opts)
    want = resample_poly(src16.astype(np.float64), 441, 320)[:n].astype(np.float32)
    np.testing.assert_allclose(sep.source, want, atol=1e-6)


def test_silent_stretches_give_one_merged_warning(loaded, tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(20 * SR, dtype=np.float32), SR, subtype="PCM_16")
    r = separate_file(path, loaded, dataclasses.replace(LONG, check_label=False)).result  # only the NMF's warning
    assert len(r.chunks) == 3
    assert r.warnings == ("0.0-20.0 s: every NMF component scored the same for this class, so the "
                          "source there is the unchanged mixture",)
