"""Stream the audio of a media file block by block (PyAV): mono float32 in [-1, 1] at a fixed rate.

:class:`AudioReader` yields the same samples as
:func:`avscene.io.decode.read_audio`, concatenated, but holds only about one
block at a time, so an hour-long file costs no more memory than a short one.
It decodes with :mod:`avscene.io.decode`'s own pieces (the file opening, the
packet loop and the audio accumulator of :mod:`avscene.io._sampling`), so the
conventions are the same: sample ``i`` is at ``i / sample_rate`` s from the
container's start; a late start or a timestamp gap is filled with silence,
audio before the start is dropped, channels are averaged, and decoded audio
running at most ``PADDING_TOLERANCE_S`` past the declared end (codec padding)
is trimmed, for which the last ``PADDING_TOLERANCE_S`` are held back until the
end of the file. Damaged packets are skipped, and a file that ends well
before the duration its header declares is noted, in :attr:`AudioReader.warnings`.
No torch here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from types import TracebackType

import av
import numpy as np

from avscene.errors import DecodeError, UsageError
from avscene.io._sampling import PADDING_TOLERANCE_S, _AudioAccumulator, _PacketReach, _Problems
from avscene.io.decode import (
    _check_args,
    _declared_end,
    _decoded_frames,
    _no_stream,
    _open,
    _origin,
    _pick,
)

BLOCK_SECONDS = 4.0  # default block length handed out; PyAV frames are ~1024 samples


class AudioReader:
    """An open file whose audio is decoded on demand by :meth:`blocks`.

    Use as a context manager (or call :meth:`close`)::

        with AudioReader("talk.mp4", sample_rate=16000) as reader:
            for block in reader.blocks():   # (n,) float32 mono
                ...

    Attributes:
        path: the file.
        sample_rate: output rate in Hz.
        source_rate: the stream's own sample rate in Hz.
        channels: the stream's channel count (averaged to mono).
    """

    def __init__(self, path: str | os.PathLike, *, sample_rate: int = 16000,
                 any_format: bool = False) -> None:
        _check_args(1.0, 0.0, sample_rate)
        self.path, self.sample_rate = str(path), int(sample_rate)
        self._problems = _Problems()
        self._container = _open(path, any_format=any_format)
        stream = _pick(self._container.streams.audio, "audio", self._problems, any_format=any_format)
        if stream is None:
            self._container.close()
            raise _no_stream(self.path, self._problems, "no audio stream (a silent video?)")
        self._stream: av.audio.AudioStream = stream
        self.source_rate: int = stream.sample_rate
        self.channels: int = stream.channels
        self._origin = _origin(self._container)
        # What the header promises for the audio: its stream's own end where declared (mp4),
        # else the container's duration, which may be the video's (mkv): then how far the
        # video's packets reach (read, not decoded) counts as reached, as decode() counts it.
        self._end = _declared_end(stream, self._container, self._origin)  # s on the clock, or None
        video = None if stream.duration is not None else _pick(
            self._container.streams.video, "video", _Problems(), any_format=any_format)
        self._skim = [] if video is None else [video]

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the file."""
        self._container.close()

    @property
    def warnings(self) -> tuple[str, ...]:
        """What was skipped, repaired or found missing so far, one line per kind."""
        return self._problems.messages()

    def blocks(self, block_samples: int | None = None) -> Iterator[np.ndarray]:
        """Decode the file from the start, yielding ``(n,)`` float32 mono blocks.

        Every block but the last has exactly ``block_samples`` samples (default
        ``BLOCK_SECONDS``); their concatenation is :func:`~avscene.io.decode.read_audio`'s output.
        At the end, audio that ends ``TRUNCATION_WARN_S`` before the header's end for it
        (the stream's own duration, else the container's) is noted in :attr:`warnings` with
        :func:`~avscene.io.decode.decode`'s message.

        Raises:
            DecodeError: no audio could be decoded.
        """
        size = block_samples or round(BLOCK_SECONDS * self.sample_rate)
        if size < 1:
            raise UsageError(f"block_samples must be >= 1, got {block_samples}")
        # Samples kept back until the end, where codec padding past the declared end is trimmed.
        hold = math.ceil(PADDING_TOLERANCE_S * self.sample_rate)
        acc = _AudioAccumulator(self.sample_rate, self._origin, self._end, self._problems,
                                buffer_s=(size + hold) / self.sample_rate)
        reach = _PacketReach(self._skim, self._origin)
        for frame in _decoded_frames(self._container, [self._stream], self._problems, reach):
            acc.push(frame)
            while acc.n - acc.taken >= size + hold:
                yield acc.take(acc.taken + size)
        acc.close(self._end)
        if not acc.started:
            raise DecodeError(f"{self.path}: no audio could be decoded "
                              f"({self._problems.first_reason()})")
        if self._problems.looks_like_noise(acc.n / self.sample_rate):
            raise DecodeError(f"{self.path}: not a media file: {self._problems.failed_packets} undecodable "
                              f"packet(s) against {self._problems.decoded_packets} good ones, "
                              f"{acc.n / self.sample_rate:.2f} s decoded ({self._problems.first_reason()})")
        self._problems.check_truncation(max(acc.n / self.sample_rate, reach.end), self._end)
        while (block := acc.take(acc.taken + size)) is not None:
            yield block
