"""Long inputs in bounded memory: chunked decoding, streamed proposals, chunked inference.

The oracles are the whole-file paths: ``decode`` for the chunks, ``audio_proposals`` /
``audio_bag`` for the streamed proposals, and the pre-streaming pipeline (decode the whole
clip, build every proposal, one ``model(x)`` call), rebuilt here from its public pieces,
for ``analyse`` on all six variants.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from avscene.config import PreprocessConfig
from avscene.errors import DecodeError, UsageError
from avscene.io.decode import decode, iter_chunks
from avscene.proposals.audio import ProposalTimes, TSPStream, audio_proposals
from avscene.testing.media import write_video

SR = 16000
CLIP_S = 5.0  # not a multiple of the 2-s test chunk: the last chunk is short


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "clip.mp4"
    return write_video(path, duration=CLIP_S, fps=8, size=(96, 64), box=(20, 10, 60, 50),
                       box_color=(200, 30, 30))


@pytest.mark.parametrize("chunk_seconds", [0.7, 2.0, math.inf])
def test_chunks_partition_what_decode_returns(clip: Path, chunk_seconds: float) -> None:
    whole = decode(clip)
    reader = iter_chunks(clip, chunk_seconds=chunk_seconds)
    chunks = list(reader)
    assert reader.info == whole.info
    np.testing.assert_array_equal(np.concatenate([c.frames for c in chunks if c.frames is not None]),
                                  whole.frames)
    np.testing.assert_array_equal(np.concatenate([c.frame_times for c in chunks]), whole.frame_times)
    np.testing.assert_array_equal(np.concatenate([c.audio for c in chunks]), whole.audio)
    n_windows = math.ceil(CLIP_S / chunk_seconds) if math.isfinite(chunk_seconds) else 1
    assert [c.index for c in chunks] == list(range(n_windows))
    for c in chunks:  # a well-interleaved file: every chunk is exactly its window
        assert c.start == pytest.approx(c.index * chunk_seconds if c.index else 0.0)
        assert ((c.frame_times >= c.start) & (c.frame_times < c.end)).all()
        assert c.audio_start == round(c.start * SR) and len(c.audio) == round(c.end * SR) - c.audio_start
    assert chunks[-1].end == whole.info.duration == CLIP_S


def test_a_stream_that_ends_early_does_not_hold_the_other(tmp_path: Path, monkeypatch) -> None:
    """Audio stops at 2 s, video runs to 12 s: frames are handed out without waiting for audio."""
    import avscene.io.chunks as chunks_module

    path = write_video(tmp_path / "short_audio.mkv", duration=2.0, audio_codec="flac",
                       frame_times=[k / 8 for k in range(96)])  # 12 s of video at 8 fps
    whole = decode(path)
    assert len(whole.frame_times) == 12 and len(whole.audio) == 2 * SR
    monkeypatch.setattr(chunks_module, "MAX_SKEW_S", 2.0)
    chunks = list(iter_chunks(path, chunk_seconds=1.0))
    # without the skew rule the last chunk would hold the 10 frames after the audio's end
    assert max(len(c.frame_times) for c in chunks) <= 1 + 2 + 1  # a window, the skew, one early
    np.testing.assert_array_equal(np.concatenate([c.frames for c in chunks if c.frames is not None]),
                                  whole.frames)
    np.testing.assert_array_equal(np.concatenate([c.audio for c in chunks if c.audio is not None]),
                                  whole.audio)
    starts = [c.audio_start for c in chunks if c.audio is not None]
    ends = [c.audio_start + len(c.audio) for c in chunks if c.audio is not None]
    assert starts[0] == 0 and starts[1:] == ends[:-1]  # contiguous


def test_iter_chunks_refuses_bad_use(clip: Path, tmp_path: Path) -> None:
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(UsageError, match="chunk_seconds must be a positive number"):
            iter_chunks(clip, chunk_seconds=bad)
    with pytest.raises(DecodeError, match="no such file"):  # at once, not at the first chunk
        iter_chunks(tmp_path / "missing.mp4")
    with iter_chunks(clip, chunk_seconds=2.0) as reader:
        list(reader)
        with pytest.raises(UsageError, match="iterated only once"):
            iter(reader)


@pytest.mark.parametrize("n", [100, 15599, 23280, 112000])  # < 1 patch, just short of 1, 2 patches exactly
@pytest.mark.parametrize("piece", [1, 7680, 10**6])
def test_tsp_stream_is_audio_proposals_of_the_whole(n: int, piece: int, rng: np.random.Generator) -> None:
    cfg = PreprocessConfig()
    if piece == 1 and n > 20000:
        piece = 997  # one sample at a time is slow; a prime keeps pieces misaligned
    x = (0.3 * rng.standard_normal(n)).astype(np.float32)
    ref = audio_proposals(x, cfg=cfg)
    stream = TSPStream(cfg=cfg)
    outs = [stream.push(x[i:i + piece]) for i in range(0, n, piece)] + [stream.finish()]
    outs = [o for o in outs if o is not None]
    np.testing.assert_array_equal(np.concatenate([o.times for o in outs]), ref.times)
    np.testing.assert_allclose(np.concatenate([o.patches for o in outs]), ref.patches, atol=1e-6)


def test_ncp_stream_short_input_is_the_whole_bag(rng: np.random.Generator) -> None:
    from avscene.proposals.bags import AudioBagStream, audio_bag

    cfg = PreprocessConfig(audio_proposals="tsp+ncp", ncp_components=3)  # both kinds in one bag
    x = (0.1 * rng.standard_normal(3 * SR)).astype(np.float32)
    ref = audio_bag(x, cfg=cfg)
    stream = AudioBagStream(cfg=cfg)
    outs = [stream.push(x[i:i + 20000]) for i in range(0, len(x), 20000)] + [stream.finish()]
    outs = [o for o in outs if o is not None]
    np.testing.assert_array_equal(np.concatenate([o.component for o in outs]), ref.component)
    np.testing.assert_array_equal(np.concatenate([o.times for o in outs]), ref.times)
    np.testing.assert_allclose(np.concatenate([o.patches for o in outs]), ref.patches, atol=1e-5)


def test_ncp_stream_long_input_is_fitted_per_block(rng: np.random.Generator, monkeypatch) -> None:
    import avscene.proposals.bags as bags

    monkeypatch.setattr(bags, "NCP_BLOCK_WINDOWS", 2)  # blocks of 1.92 s
    cfg = PreprocessConfig(audio_proposals="ncp", ncp_components=3)
    x = (0.1 * rng.standard_normal(round(9.3 * SR))).astype(np.float32)
    stream = bags.AudioBagStream(cfg=cfg)
    outs = [stream.push(x[i:i + 7000]) for i in range(0, len(x), 7000)] + [stream.finish()]
    got = [o for o in outs if o is not None]
    times = np.concatenate([o.times for o in got])
    # ceil(9.3 / 0.96) = 10 windows, each made of K = 3 components, tiling [0, 9.6)
    starts, counts = np.unique(times[:, 0], return_counts=True)
    np.testing.assert_allclose(starts, 0.96 * np.arange(10))
    assert (counts == 3).all()
    # blocks: windows 0-1, 2-3, 4-5 while streaming; 3.54 s left (> 1.5 blocks): 6-7, then 8-9
    first = bags.ncp_proposals(x[: 2 * 15360], cfg=cfg)
    np.testing.assert_allclose(got[0].patches[: len(first.patches)], first.patches, atol=1e-5)
    last = bags.ncp_proposals(x[8 * 15360:], cfg=cfg, first_window=8)
    np.testing.assert_allclose(got[-1].patches[-len(last.patches):], last.patches, atol=1e-5)
    np.testing.assert_allclose(got[-1].times[-1], [8.64, 9.6])


def test_ncp_windows_sum_components_in_any_order(rng: np.random.Generator) -> None:
    K, P, C = 3, 4, 2
    starts = np.tile(0.96 * np.arange(P), K)  # component-major, as audio_bag lays it out
    times = np.stack([starts, starts + 0.96], axis=1)
    scores = rng.standard_normal((K * P, C)).astype(np.float32)
    expected = scores.reshape(K, P, C).sum(axis=0)  # (P, C)
    order = rng.permutation(K * P)  # a streamed bag comes block by block
    got, got_times = ProposalTimes(times[order], np.repeat(np.arange(K), P)[order]).windows(scores[order])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_array_equal(got_times[:, 0], 0.96 * np.arange(P))


def test_batched_resize_is_per_frame(rng: np.random.Generator) -> None:
    from avscene.nn.inputs import RESIZE_BATCH, frames_to_uint8_tensor

    frames = rng.integers(0, 256, size=(RESIZE_BATCH + 3, 36, 50, 3), dtype=np.uint8)
    x, scale = frames_to_uint8_tensor(frames, image_size=24)
    assert x.shape == (RESIZE_BATCH + 3, 3, 24, 33) and scale == pytest.approx(24 / 36)
    for t in (0, RESIZE_BATCH, RESIZE_BATCH + 2):
        one, _ = frames_to_uint8_tensor(frames[t:t + 1], image_size=24)
        assert (x[t] == one[0]).all()


# --------------------------------------------------------------------------- analyse


def _whole_file(path: Path, loaded):
    """The pre-streaming pipeline: everything decoded, one forward pass (the oracle)."""
    import torch

    from avscene.nn.inputs import single_input
    from avscene.proposals.bags import audio_bag
    from avscene.proposals.visual import visual_proposals

    pre, cfg = loaded.preprocess, loaded.config
    clip = decode(path, fps=pre.fps, offset=pre.frame_offset, sample_rate=pre.sample_rate)
    ap = audio_bag(clip.audio, cfg=pre) if cfg.uses_audio else None
    vp = visual_proposals(clip.frames, clip.frame_times, cfg=pre) if cfg.uses_visual else None
    x, _ = single_input(patches=None if ap is None else ap.patches, patch_times=None if ap is None else ap.times,
                        frames=None if vp is None else clip.frames, frame_times=None if vp is None else vp.times,
                        boxes=None if vp is None else vp.boxes, image_size=pre.image_size)
    with torch.inference_mode():
        out = loaded.model(x)
    return clip, ap, vp, type(out)(*[None if t is None else t[0].float() for t in out])


@pytest.mark.parametrize("variant", ["async", "sync", "audio", "visual", "onestream", "wsddn"])
def test_streamed_analyse_equals_the_whole_file_pass(variant: str, clip: Path, tmp_path: Path,
                                                     monkeypatch) -> None:
    from avscene.checkpoint.load import load_pretrained
    from avscene.nn.model import AVSceneNet
    from avscene.tasks._pipeline import Analysis, analyse
    from avscene.tasks.localize import LocalizeOptions, localize_from_analysis
    from avscene.testing.models import tiny_checkpoint

    loaded = load_pretrained(str(tiny_checkpoint(tmp_path / variant, labels=("a", "b", "c"),
                                                 variant=variant, seed=3)))
    clip_, ap, vp, ref = _whole_file(clip, loaded)
    calls = []
    forward_features = AVSceneNet.forward_features
    monkeypatch.setattr(AVSceneNet, "forward_features", lambda self, x: calls.append(1) or forward_features(self, x))
    a = analyse(clip, loaded, chunk_seconds=2.0)
    assert len(calls) >= 3  # 0-2 s, 2-4 s, 4-5 s (+ the last audio patches): it did stream
    for name, t in ref._asdict().items():
        got = getattr(a.output, name)
        assert (t is None) == (got is None), name
        if t is not None:
            np.testing.assert_allclose(got.numpy(), t.numpy(), atol=2e-5, err_msg=name)
    if vp is not None:
        np.testing.assert_array_equal(a.visual.boxes, vp.boxes)
        np.testing.assert_array_equal(a.visual.times, clip_.frame_times)
    if ap is not None:
        np.testing.assert_array_equal(a.audio.times, ap.times)
    assert a.info == clip_.info
    # localize reads the same boxes and windows from both
    opts = LocalizeOptions(labels=("a", "c"), boxes=2, event_threshold=-1e9, box_mode="window", snap=False)
    whole = Analysis(info=clip_.info, audio=None if ap is None else ap.timing, visual=vp, output=ref)
    big = localize_from_analysis(clip, whole, loaded, opts)
    small = localize_from_analysis(clip, a, loaded, opts)
    for lab in ("a", "c"):
        assert [d.box for d in small.visual.get(lab, ())] == [d.box for d in big.visual.get(lab, ())]
        np.testing.assert_allclose([d.score for d in small.visual.get(lab, ())],
                                   [d.score for d in big.visual.get(lab, ())], atol=2e-5)
        np.testing.assert_allclose([s.score for s in small.audio.get(lab, ())],
                                   [s.score for s in big.audio.get(lab, ())], atol=2e-5)
    assert small.events == big.events


def test_chunk_length_shrinks_for_large_frames() -> None:
    from avscene.io.decode import MediaInfo
    from avscene.tasks._pipeline import CHUNK_FRAME_BYTES, chunk_seconds_for

    def info(w: int | None, h: int | None) -> MediaInfo:
        return MediaInfo(path="x", duration=3600.0, width=w, height=h, fps=25.0, audio_rate=48000,
                         audio_channels=2, has_video=w is not None, has_audio=True, warnings=())

    assert chunk_seconds_for(info(1280, 720), fps=1.0) == 60.0  # 166 MB of frames a minute: fits
    assert chunk_seconds_for(info(1920, 1080), fps=1.0) == pytest.approx(CHUNK_FRAME_BYTES / 6_220_800)  # 33.7 s
    assert chunk_seconds_for(info(3840, 2160), fps=2.0) == pytest.approx(4.214, abs=1e-3)  # 24.9 MB x 2 a second
    assert chunk_seconds_for(info(7680, 4320), fps=1.0) == 4.0  # 2.1 s, raised to the minimum
    assert chunk_seconds_for(info(None, None), fps=1.0) == 60.0  # audio only
