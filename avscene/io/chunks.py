"""The one-pass reader behind :mod:`avscene.io.decode`: open, demux, sample, cut into windows.

:func:`iter_chunks` decodes a file in consecutive time windows with the sampling rules of
:mod:`avscene.config` (see :mod:`avscene.io.decode` for the timing);
:func:`~avscene.io.decode.decode` is its one-window case. The container helpers here
(``_open``, ``_decoded_frames``, ...) are shared with :mod:`avscene.io.decode` and
:mod:`avscene.io.audio_stream`. Import the public names from :mod:`avscene.io.decode`,
which re-exports them. No torch here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from avscene.errors import DecodeError, UsageError
from avscene.io.formats import codec_allowed, codec_refusal, container_refusal
from avscene.io._sampling import (
    _AudioAccumulator,
    _Cutter,
    _FrameSampler,
    _PacketReach,
    _Problems,
    _reason,
)

MAX_READ_ERRORS = 32  # consecutive demuxer errors before the rest of a file is given up
# One 60-s chunk holds 60 frames (166 MB at 1280x720 RGB) and 60 s of audio (3.8 MB):
# long enough that per-chunk overheads vanish, short enough to bound memory on any length.
DEFAULT_CHUNK_SECONDS = 60.0
MAX_SKEW_S = 30.0  # s: a stream this far ahead of the other is handed out without waiting


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds; from :func:`decode` (decoded) or :func:`probe` (header)."""

    path: str
    duration: float  # seconds: max over streams of their decoded ends (probe: header)
    width: int | None  # display width of the video (after rotation), None without video
    height: int | None  # display height of the video (after rotation)
    fps: float | None  # average frame rate of the video stream, None without video
    audio_rate: int | None  # source sample rate in Hz, None without audio
    audio_channels: int | None  # source channel count, None without audio
    has_video: bool  # a video stream decoded (probe: a decodable one exists)
    has_audio: bool  # an audio stream decoded (probe: a decodable one exists)
    warnings: tuple[str, ...]  # what was skipped, repaired or rotated


def _open(path: str | os.PathLike, *, any_format: bool = False) -> av.container.InputContainer:
    """Open ``path`` for reading, turning every failure into a one-line DecodeError.

    Unless ``any_format``, a container outside :data:`avscene.io.formats.CONTAINERS` is refused.
    """
    name, p = str(path), Path(path)
    if not p.exists():
        raise DecodeError(f"{name}: no such file; check the path")
    if p.is_dir():
        raise DecodeError(f"{name}: is a folder, not a media file")
    if not os.access(p, os.R_OK):
        raise DecodeError(f"{name}: permission denied; make the file readable (chmod +r)")
    if p.stat().st_size == 0:
        raise DecodeError(f"{name}: empty file (0 bytes); re-export or re-download it")
    try:
        container = av.open(name, metadata_errors="replace")
    except av.error.PermissionError as e:
        raise DecodeError(f"{name}: permission denied; make the file readable (chmod +r)") from e
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise DecodeError(f"{name}: not a media file FFmpeg can read ({_reason(e)})") from e
    refusal = None if any_format else container_refusal(container.format.name)
    if refusal is not None:
        container.close()
        raise DecodeError(f"{name}: {refusal}")
    return container


def _pick(streams: tuple, kind: str, problems: _Problems, *,
          any_format: bool = False) -> av.stream.Stream | None:
    """The first decodable stream of a kind; cover art (attached pictures) is not video.

    Unless ``any_format``, a stream whose codec is not in :mod:`avscene.io.formats` is skipped
    (noted, and recorded in ``problems.refused_codecs`` for :func:`_no_stream`). The stream
    picked decodes on the thread budget (:func:`codec_threads`).
    """
    for s in streams:
        if s.disposition & av.stream.Disposition.attached_pic:
            continue
        if s.codec_context is None:
            problems.note(f"{kind}: stream {s.index} has no decoder in this FFmpeg; ignored")
            continue
        if not any_format and not codec_allowed(kind, s.codec_context.name):
            problems.note(f"{kind}: stream {s.index} has the unsupported codec "
                          f"'{s.codec_context.name}'; ignored")
            problems.refused_codecs.append(s.codec_context.name)
            continue
        codec_threads(s)
        return s
    return None


def codec_threads(stream: av.stream.Stream) -> None:
    """Give a stream's FFmpeg decoder or encoder the process's thread budget
    (:func:`avscene.threads.budget`, ``--threads``) before it is opened: FFmpeg's own default
    (0) would start a thread per core whatever else runs. Video codecs may use frame and slice
    threads (``AUTO``: ~2x decoding on 2 cores); audio codecs keep their single thread."""
    from avscene.threads import budget

    ctx = stream.codec_context
    ctx.thread_count = budget()
    if stream.type == "video":
        ctx.thread_type = "AUTO"


def _no_stream(path: str | os.PathLike, problems: _Problems, what: str) -> DecodeError:
    """The error for a file without a usable stream: its refused codecs if any, else ``what``."""
    if problems.refused_codecs:
        return DecodeError(f"{path}: {codec_refusal(problems.refused_codecs)}")
    return DecodeError(f"{path}: {what}")


def _origin(container: av.container.InputContainer) -> float:
    """The clock's zero: the container's start time in seconds (0 when unknown)."""
    start = container.start_time
    return start / av.time_base if start is not None else 0.0


def _declared_end(stream: av.stream.Stream, container: av.container.InputContainer,
                  origin: float) -> float | None:
    """End of ``stream`` on the clock per the header: its own duration, else the container's."""
    tb = stream.time_base
    if stream.duration is not None and tb is not None:
        return float(((stream.start_time or 0) + stream.duration) * tb) - origin
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _decoded_frames(container: av.container.InputContainer, streams: list, problems: _Problems,
                    skim: _PacketReach | None = None) -> Iterator[av.VideoFrame | av.AudioFrame]:
    """Every frame of ``streams`` in file order; bad packets are skipped and counted.

    The packets of ``skim.streams`` are read too, not decoded: ``skim`` notes how far they reach.
    """
    read = streams if skim is None else [*streams, *skim.streams]
    demuxer, failures = container.demux(read), 0
    while True:
        try:
            packet = next(demuxer)
        except StopIteration:
            return  # demux() ends with flush packets: the decoders are drained
        except av.error.FFmpegError as e:
            problems.error("unreadable data", e)
            failures += 1
            if failures > MAX_READ_ERRORS:
                break
            demuxer = container.demux(read)  # av_read_frame resumes after the bad spot
            continue
        failures = 0
        if skim is not None and packet.stream_index in skim.indices:
            skim.see(packet)
            continue
        try:
            frames = packet.decode()
        except (av.error.FFmpegError, ValueError) as e:
            problems.error(f"{packet.stream.type}: undecodable packets", e)
            continue
        if frames:
            problems.decoded_packets += 1
        yield from frames
    problems.note("gave up reading after repeated errors; the rest of the file is skipped")
    for s in streams:
        try:
            yield from s.codec_context.decode(None)
        except (av.error.FFmpegError, ValueError) as e:
            problems.error(f"{s.type}: undecodable packets", e)


def _check_args(fps: float, offset: float, sample_rate: int) -> None:
    if not (math.isfinite(fps) and fps > 0):
        raise UsageError(f"fps must be a positive number of frames per second, got {fps!r}")
    if not (math.isfinite(offset) and offset >= 0):
        raise UsageError(f"frame offset must be >= 0 (0.5 samples mid-interval), got {offset!r}")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise UsageError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")


def _streams(container: av.container.InputContainer, problems: _Problems, *, any_format: bool = False,
             ) -> tuple[av.video.VideoStream | None, av.audio.AudioStream | None]:
    video = _pick(container.streams.video, "video", problems, any_format=any_format)
    audio = _pick(container.streams.audio, "audio", problems, any_format=any_format)
    if video is None and audio is None:
        raise _no_stream(container.name, problems, "no audio or video stream FFmpeg can decode")
    return video, audio


@dataclass(frozen=True)
class ClipChunk:
    """One time window of a file, from :func:`iter_chunks`."""

    index: int  # window i = [i * chunk_seconds, (i + 1) * chunk_seconds)
    start: float  # s
    end: float  # s; the last chunk ends at the decoded duration
    frames: np.ndarray | None  # (T, H, W, 3) uint8 RGB, upright; None: no frame in this chunk
    frame_times: np.ndarray  # (T,) float64 s: the instant each frame was sampled for
    audio: np.ndarray | None  # (n,) float32 mono in [-1, 1]; None: no audio in this chunk
    audio_start: int  # index of audio[0] in the file's signal (chunks' audio is contiguous)
    sample_rate: int  # Hz of ``audio``


def iter_chunks(path: str | os.PathLike, *, chunk_seconds: float | Callable[[MediaInfo], float] = DEFAULT_CHUNK_SECONDS,
                fps: float = 1.0, offset: float = 0.5, sample_rate: int = 16000,
                any_format: bool = False) -> ChunkReader:
    """Decode a file in consecutive time windows, in one pass, holding about one window at a time.

    Chunk ``i`` covers ``[i * chunk_seconds, (i + 1) * chunk_seconds)``: the frames of the
    instants ``(k + offset) / fps`` inside it and the audio samples ``[start * sr, end * sr)``,
    sampled exactly as :func:`decode` samples the whole file (the chunks concatenated are
    :func:`decode`'s frames and audio). The last chunk ends at the decoded duration; windows
    without data are skipped. A stream more than ``MAX_SKEW_S`` ahead of the other (one that
    ended early, a long gap, a badly interleaved file) is handed out without waiting, and the
    lagging stream's data follows in later chunks: frames stay in order of instant, and each
    chunk's audio starts where the previous one's ended (``ClipChunk.audio_start``).

    Args:
        path: any file FFmpeg reads; video-only and audio-only files work.
        chunk_seconds: window length in seconds (``math.inf``: the whole file as one chunk), or a
            function of the file's header (:attr:`ChunkReader.header`) giving it, chosen once the
            file is open (frame size sets it: the file is not opened twice).
        fps, offset, sample_rate: as for :func:`decode`.
        any_format: also decode containers and codecs outside :mod:`avscene.io.formats`.

    Returns:
        A :class:`ChunkReader`, to iterate once; its ``info`` is set at the last chunk.

    Raises:
        DecodeError: the file cannot be opened, is in a container or codec outside
            :mod:`avscene.io.formats` (without ``any_format``) or has no decodable stream (at
            once), or nothing in it decodes (while iterating).
        UsageError: an argument is invalid.
    """
    return ChunkReader(path, chunk_seconds=chunk_seconds, fps=fps, offset=offset,
                       sample_rate=sample_rate, any_format=any_format)


class ChunkReader:
    """The :class:`ClipChunk` s of one file, from one demux pass; see :func:`iter_chunks`.

    Iterate it once. ``has_video`` / ``has_audio`` tell which streams the file has and ``header``
    what its header says (size before rotation, declared duration), known when it is opened;
    ``info`` is the decoded :class:`MediaInfo`, set at the last chunk.
    Closing it (``close()``, a ``with`` block, or finishing the iteration) closes the file.
    """

    def __init__(self, path: str | os.PathLike, *, chunk_seconds: float | Callable[[MediaInfo], float],
                 fps: float, offset: float, sample_rate: int, any_format: bool = False) -> None:
        _check_args(fps, offset, sample_rate)
        if not callable(chunk_seconds):
            _check_chunk_seconds(chunk_seconds)
        self.path = path
        self._fps, self._offset, self._sr = fps, offset, sample_rate
        self._problems = _Problems()
        self._container = _open(path, any_format=any_format)
        try:
            self._video, self._audio = _streams(self._container, self._problems, any_format=any_format)
            self.header = self._header()
            if callable(chunk_seconds):
                chunk_seconds = chunk_seconds(self.header)
                _check_chunk_seconds(chunk_seconds)
        except (DecodeError, UsageError):
            self._container.close()
            raise
        self.chunk_seconds = float(chunk_seconds)
        self.has_video, self.has_audio = self._video is not None, self._audio is not None
        self.info: MediaInfo | None = None
        self._iterated = False

    def _header(self) -> MediaInfo:
        return header_info(self.path, self._container, self._video, self._audio)

    def __iter__(self) -> Iterator[ClipChunk]:
        if self._iterated:
            raise UsageError("a ChunkReader can be iterated only once; call iter_chunks() again")
        self._iterated = True
        return self._chunks()

    def close(self) -> None:
        """Close the file (also done when the iteration ends)."""
        self._container.close()

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _chunks(self) -> Iterator[ClipChunk]:
        with self._container as container:
            origin, video, audio = _origin(container), self._video, self._audio
            buffer_s = self.chunk_seconds + MAX_SKEW_S  # what the buffers hold at most, normally
            sampler = None if video is None else _FrameSampler(
                self._fps, self._offset, origin, video, self._problems, buffer_s=buffer_s)
            a_end = None if audio is None else _declared_end(audio, container, origin)
            acc = None if audio is None else _AudioAccumulator(
                self._sr, origin, a_end, self._problems, buffer_s=buffer_s)
            cut = _Cutter(sampler, acc, chunk_s=self.chunk_seconds, sample_rate=self._sr,
                          max_skew_s=MAX_SKEW_S)
            streams = [s for s in (video, audio) if s is not None]
            for frame in _decoded_frames(container, streams, self._problems):
                if isinstance(frame, av.AudioFrame):
                    acc.push(frame)
                else:
                    sampler.collect(sampler.push(frame))
                yield from map(self._chunk, cut.ready())
            if sampler is not None:
                sampler.collect(sampler.finish())
            if acc is not None:
                acc.close(a_end)
            self.info = self._final_info(container, sampler, acc, cut)
            yield from map(self._chunk, cut.rest(self.info.duration))

    def _chunk(self, part: tuple) -> ClipChunk:
        index, start, end, frames, times, audio, audio_start = part
        return ClipChunk(index=index, start=start, end=end, frames=frames,
                         frame_times=np.asarray(times, dtype=np.float64), audio=audio,
                         audio_start=audio_start, sample_rate=self._sr)

    def _final_info(self, container: av.container.InputContainer, sampler: _FrameSampler | None,
                    acc: _AudioAccumulator | None, cut: _Cutter) -> MediaInfo:
        got_video = sampler is not None and (cut.frames_out > 0 or bool(sampler.times))
        got_audio = acc is not None and acc.started
        if not (got_video or got_audio):
            raise DecodeError(f"{self.path}: nothing could be decoded "
                              f"({self._problems.first_reason()})")
        ends = [sampler.end if got_video else 0.0, acc.n / self._sr if got_audio else 0.0]
        if self._problems.looks_like_noise(max(ends)):
            raise DecodeError(f"{self.path}: not a media file: {self._problems.failed_packets} undecodable "
                              f"packet(s) against {self._problems.decoded_packets} good ones, "
                              f"{max(ends):.2f} s decoded ({self._problems.first_reason()})")
        streams = {"video": (self._video, got_video), "audio": (self._audio, got_audio)}
        header_s = None if container.duration is None else container.duration / av.time_base
        duration = _check_duration(max(ends), header_s, streams, self._problems)
        return _info(self.path, self._video, self._audio, duration,
                     sampler.frame_hw if got_video else None, got_video, got_audio,
                     self._problems)


def header_info(path: str | os.PathLike, container: av.container.InputContainer,
                video: av.video.VideoStream | None, audio: av.audio.AudioStream | None) -> MediaInfo:
    """What an open file's header says, nothing decoded: declared duration, and the coded size
    (before any rotation, which only a decoded frame tells)."""
    origin = _origin(container)
    ends = [e for s in (video, audio) if s is not None and (e := _declared_end(s, container, origin)) is not None]
    hw = None if video is None else (video.height, video.width)
    return _info(path, video, audio, max(ends, default=0.0), hw, video is not None, audio is not None, _Problems())


def _check_chunk_seconds(chunk_seconds: float) -> None:
    if not chunk_seconds > 0:  # NaN fails too; inf is one chunk
        raise UsageError(f"chunk_seconds must be a positive number of seconds (e.g. "
                         f"{DEFAULT_CHUNK_SECONDS:g}), got {chunk_seconds!r}")


def _check_duration(decoded: float, header_s: float | None,
                    streams: dict[str, tuple[av.stream.Stream | None, bool]],
                    problems: _Problems) -> float:
    """The decoded duration (header's if nothing had a time); notes what looks truncated.

    ``streams`` maps "video" / "audio" to the stream (or None) and whether anything decoded.
    """
    for kind, (stream, got) in streams.items():
        if stream is not None and not got:
            problems.note(f"{kind}: the stream is present but nothing in it decoded")
    problems.check_truncation(decoded, header_s)
    return decoded if decoded > 0 or not header_s else header_s


def _info(path: str | os.PathLike, video: av.video.VideoStream | None,
          audio: av.audio.AudioStream | None, duration: float, hw: tuple[int, int] | None,
          has_video: bool, has_audio: bool, problems: _Problems) -> MediaInfo:
    rate = None if video is None else (video.average_rate or video.guessed_rate)
    return MediaInfo(
        path=str(path), duration=duration,
        width=None if hw is None else hw[1], height=None if hw is None else hw[0],
        fps=float(rate) if rate else None,
        audio_rate=audio.sample_rate if audio else None,
        audio_channels=audio.channels if audio else None,
        has_video=has_video, has_audio=has_audio, warnings=problems.messages(),
    )
