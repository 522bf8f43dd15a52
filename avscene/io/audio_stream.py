"""Stream the audio of a media file block by block (PyAV): mono float32 in [-1, 1] at a fixed rate.

:class:`AudioReader` yields the same samples as
:func:`avscene.io.decode.read_audio`, concatenated, but holds only about one
block at a time, so an hour-long file costs no more memory than a short one.
The timing conventions are those of :mod:`avscene.io.decode`: sample ``i`` is at
``i / sample_rate`` s from the container's start; a late start or a timestamp
gap longer than ``GAP_TOLERANCE_S`` is filled with silence, audio before the
start is dropped, channels are averaged, and decoded audio running at most
``PADDING_TOLERANCE_S`` past the declared end (codec padding) is trimmed, for
which the last ``PADDING_TOLERANCE_S`` are held back until the end of the file.
Damaged packets are skipped and reported in :attr:`AudioReader.warnings`.
No torch here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from avscene.errors import DecodeError, UsageError

BLOCK_SECONDS = 4.0  # default block length handed out; PyAV frames are ~1024 samples
GAP_TOLERANCE_S = 0.05  # s: a timestamp jump above this is filled with silence (as decode.py)
PADDING_TOLERANCE_S = 0.25  # s: decoded audio past the declared end trimmed as codec padding
MAX_READ_ERRORS = 32  # consecutive demuxer errors before the rest of the file is given up


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class _Pending:
    """Mono samples decoded but not handed out yet, as a list of arrays."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.n = 0

    def add(self, x: np.ndarray) -> None:
        if len(x):
            self.parts.append(x)
            self.n += len(x)

    def pop(self, count: int) -> np.ndarray:
        """The first ``count`` samples (float32)."""
        joined = np.concatenate(self.parts) if len(self.parts) != 1 else self.parts[0]
        out, rest = joined[:count], joined[count:]
        self.parts, self.n = ([rest] if len(rest) else []), len(rest)
        return out

    def truncate(self, count: int) -> None:
        """Keep only the first ``count`` samples."""
        self.parts = [self.pop(count)] if count > 0 else []
        self.n = max(count, 0)


class _Mixdown:
    """Decoded frames → mono float32 at ``sample_rate``, aligned to the clock (as decode.py)."""

    def __init__(self, sample_rate: int, origin: float, note: Callable[[str], None]) -> None:
        self._sr, self._origin, self._note = sample_rate, origin, note
        self.pending = _Pending()
        self.written = 0  # samples produced so far, silence included
        self.started = False  # a frame has been pushed
        self._resampler: av.AudioResampler | None = None
        self._key: tuple | None = None  # (format, layout, rate) the resampler was built for
        self._next_t: float | None = 0.0  # s: where the next frame should start
        self._drop = 0  # output samples still to drop (audio before the clock's zero)

    def push(self, frame: av.AudioFrame) -> None:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        t = None if frame.time is None else frame.time - self._origin
        if t is not None and not self.started:
            self._pad_or_drop(t)  # align the first sample to the clock
        elif t is not None and self._next_t is not None and t - self._next_t > GAP_TOLERANCE_S:
            self._note("audio: gaps in the audio timestamps were filled with silence")
            self._pad_or_drop(t)
        self.started = True
        if key != self._key:  # PyAV's resampler cannot change input format mid-stream
            self.drain()
            # Channels kept through the resampler and averaged here (FFmpeg's downmix is not 1/C).
            self._resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=self._sr)
            self._key = key
        self._write(self._resampler.resample(frame))
        self._next_t = None if t is None else t + frame.samples / frame.sample_rate

    def _pad_or_drop(self, t: float) -> None:
        """Silence up to ``t`` (a late start or a gap); or drop the audio before the zero."""
        self.drain()
        target = round(t * self._sr)
        if target > self.written:
            self._add(np.zeros(target - self.written, dtype=np.float32))
        elif target < 0 and not self.started:
            self._drop = -target

    def drain(self) -> None:
        """Flush the resampler (at a format change and at the end)."""
        if self._resampler is not None:
            self._write(self._resampler.resample(None))
            self._resampler, self._key = None, None

    def _write(self, frames: list[av.AudioFrame]) -> None:
        for f in frames:
            x = f.to_ndarray()  # (C, n) float32 planar
            mono = x.mean(axis=0, dtype=np.float32) if x.shape[0] > 1 else x[0]  # (n,)
            if self._drop:
                cut = min(self._drop, len(mono))
                mono, self._drop = mono[cut:], self._drop - cut
            self._add(np.clip(mono, -1.0, 1.0))  # resampling can overshoot full scale

    def _add(self, x: np.ndarray) -> None:
        self.pending.add(x)
        self.written += len(x)


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

    def __init__(self, path: str | os.PathLike, *, sample_rate: int = 16000) -> None:
        if int(sample_rate) != sample_rate or sample_rate <= 0:
            raise UsageError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
        self.path, self.sample_rate = str(path), int(sample_rate)
        self._notes: list[str] = []
        self._errors: dict[str, tuple[int, str]] = {}  # what -> (count, first reason)
        self._container = _open(path)
        self._stream = self._pick()
        self.source_rate: int = self._stream.sample_rate
        self.channels: int = self._stream.channels
        start = self._container.start_time
        self._origin = start / av.time_base if start is not None else 0.0
        self._end = self._declared_end()  # s on the clock, or None

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
        """What was skipped or repaired so far, one line per kind."""
        errs = [f"{what}: {n} skipped ({reason})" for what, (n, reason) in self._errors.items()]
        return (*self._notes, *errs)

    def _note(self, message: str) -> None:
        if message not in self._notes:
            self._notes.append(message)

    def _error(self, what: str, exc: Exception) -> None:
        count, reason = self._errors.get(what, (0, _reason(exc)))
        self._errors[what] = (count + 1, reason)

    def _pick(self) -> av.audio.AudioStream:
        for s in self._container.streams.audio:
            if s.codec_context is None:
                self._note(f"audio: stream {s.index} has no decoder in this FFmpeg; ignored")
                continue
            return s
        self._container.close()
        raise DecodeError(f"{self.path}: no audio stream (a silent video?)")

    def _declared_end(self) -> float | None:
        s, tb = self._stream, self._stream.time_base
        if s.duration is not None and tb is not None:
            return float(((s.start_time or 0) + s.duration) * tb) - self._origin
        if self._container.duration is not None:
            return self._container.duration / av.time_base
        return None

    def blocks(self, block_samples: int | None = None) -> Iterator[np.ndarray]:
        """Decode the file from the start, yielding ``(n,)`` float32 mono blocks.

        Every block but the last has exactly ``block_samples`` samples (default
        ``BLOCK_SECONDS``); their concatenation is :func:`~avscene.io.decode.read_audio`'s output.

        Raises:
            DecodeError: no audio could be decoded.
        """
        size = block_samples or round(BLOCK_SECONDS * self.sample_rate)
        if size < 1:
            raise UsageError(f"block_samples must be >= 1, got {block_samples}")
        holdback = round(PADDING_TOLERANCE_S * self.sample_rate)  # maybe trimmed at the end
        acc = _Mixdown(self.sample_rate, self._origin, self._note)
        for frame in self._frames():
            acc.push(frame)
            while acc.pending.n >= size + holdback:
                yield acc.pending.pop(size)
        acc.drain()
        if not acc.started:
            raise DecodeError(f"{self.path}: no audio could be decoded ({self._first_reason()})")
        if self._end is not None:
            excess = acc.written - max(round(self._end * self.sample_rate), 0)
            if 0 < excess <= holdback:  # codec padding past the declared end: all still pending
                acc.pending.truncate(acc.pending.n - excess)
        while acc.pending.n:
            yield acc.pending.pop(min(size, acc.pending.n))

    def _first_reason(self) -> str:
        return next(iter(self._errors.values()), (0, "no frames"))[1]

    def _frames(self) -> Iterator[av.AudioFrame]:
        """Every decoded frame of the audio stream; bad packets are skipped and counted."""
        demuxer, failures = self._container.demux([self._stream]), 0
        while True:
            try:
                packet = next(demuxer)
            except StopIteration:
                return  # demux() ends with flush packets: the decoder is drained
            except av.error.FFmpegError as e:
                self._error("unreadable data", e)
                failures += 1
                if failures > MAX_READ_ERRORS:
                    break
                demuxer = self._container.demux([self._stream])  # resumes after the bad spot
                continue
            failures = 0
            try:
                yield from packet.decode()
            except (av.error.FFmpegError, ValueError) as e:
                self._error("audio: undecodable packets", e)
        self._note("gave up reading after repeated errors; the rest of the file is skipped")
        try:
            yield from self._stream.codec_context.decode(None)
        except (av.error.FFmpegError, ValueError) as e:
            self._error("audio: undecodable packets", e)


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    """Open ``path``, turning every failure into a one-line DecodeError."""
    name, p = str(path), Path(path)
    if not p.is_file():
        raise DecodeError(f"{name}: no such file; check the path")
    try:
        return av.open(name, metadata_errors="replace")
    except av.error.PermissionError as e:
        raise DecodeError(f"{name}: permission denied; make the file readable (chmod +r)") from e
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise DecodeError(f"{name}: not a media file FFmpeg can read ({_reason(e)})") from e
