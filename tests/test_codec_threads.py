"""Every FFmpeg decoder and encoder avscene opens takes its thread count from the thread budget
(``--threads``, :func:`avscene.threads.budget`), not FFmpeg's default of one thread per core."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from avscene.threads import thread_budget
from avscene.testing.media import write_video


class _Spy:
    """A PyAV container that notes each stream's (type, thread_count) when it is closed."""

    def __init__(self, container, log: list[tuple[str, str, int]]) -> None:
        self._c, self._log = container, log

    def _note(self) -> None:
        mode = "w" if isinstance(self._c, av.container.OutputContainer) else "r"
        self._log.extend((mode, s.type, s.codec_context.thread_count) for s in self._c.streams
                         if s.type in ("video", "audio"))

    def close(self) -> None:
        self._note()
        self._c.close()

    def __enter__(self):
        self._c.__enter__()
        return self

    def __exit__(self, *exc):
        self._note()
        return self._c.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._c, name)


@pytest.fixture
def opened(monkeypatch) -> list[tuple[str, str, int]]:
    log: list[tuple[str, str, int]] = []
    real = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: _Spy(real(*a, **k), log))
    return log


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("media") / "clip.mp4", duration=1.0)


def _readers():
    from avscene.io.audio_stream import AudioReader
    from avscene.io.decode import decode, iter_frames, probe, read_audio

    def blocks(path):
        with AudioReader(path) as reader:
            list(reader.blocks())

    # each reader, and the streams it decodes
    return [(probe, {"video", "audio"}), (decode, {"video", "audio"}), (lambda p: list(iter_frames(p)), {"video"}),
            (read_audio, {"audio"}), (blocks, {"audio"})]


@pytest.mark.parametrize("n", [1, 3])
def test_every_decoder_follows_the_budget(clip, opened, n) -> None:
    for read, kinds in _readers():
        opened.clear()
        with thread_budget(n):
            read(clip)
        counts = {kind: count for _, kind, count in opened if kind in kinds}
        assert set(counts) == kinds, (read, opened)
        # video: exactly the budget; audio: within it (FFmpeg sets an audio decoder without threads to 1 on opening)
        assert counts.get("video", n) == n and 1 <= counts.get("audio", 1) <= n, (read, opened)


@pytest.mark.parametrize("n", [1, 2])
def test_the_overlay_and_the_report_audio_encode_within_the_budget(clip, opened, tmp_path, n) -> None:
    from avscene.io.render import render_overlay
    from avscene.io.web_media import opus_ogg_bytes
    from avscene.results import ClassifyResult, LocalizeResult, ModelRef

    cls = ClassifyResult(file=str(clip), duration=1.0, modalities=("audio", "visual"), labels=(), predicted=(),
                         threshold=0.0, model=ModelRef("test"))
    r = LocalizeResult(classification=cls)
    with thread_budget(n):
        render_overlay(clip, r, tmp_path / "o.mp4")
        opus_ogg_bytes(np.zeros(16000, dtype=np.float32), 16000)
    encoders = sorted((kind, count) for mode, kind, count in opened if mode == "w")
    decoders = [(kind, count) for mode, kind, count in opened if mode == "r"]
    assert [kind for kind, _ in encoders] == ["audio", "audio", "video"], opened  # AAC, Opus, H.264
    assert encoders[2][1] == n and all(1 <= count <= n for _, count in encoders[:2]), opened
    assert ("video", n) in decoders, opened  # the overlay's input
