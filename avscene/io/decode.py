"""Decode a media file with PyAV: video frames sampled at ``fps``, audio mono at ``sample_rate``.

Timing follows :mod:`avscene.config`: frame ``k`` is the frame *displayed* at
``t_k = (k + offset) / fps`` (the last frame whose presentation time is ``<= t_k``,
or the first frame when ``t_k`` comes before it), for every ``t_k`` before the end of
the video stream. All times are seconds from the container's start time, and audio
sample ``i`` is at ``i / sample_rate`` on the same clock, so frames and audio stay in
sync even when a stream starts late (leading silence is inserted) or early (samples
before the start are dropped).

Timestamps come from each stream's ``time_base`` and the frames' ``pts``, never from a
nominal frame rate, so variable-frame-rate files work. :func:`iter_chunks` streams a
file in time windows with the same sampling (:func:`decode` is its one-window case),
so a long file never has to be held whole. Damaged input is decoded as far
as it goes: unreadable or undecodable packets are skipped and reported in
``MediaInfo.warnings``; :class:`~avscene.errors.DecodeError` is raised only when nothing
usable decodes. The one-pass reader itself (and ``MAX_SKEW_S``, ``MAX_READ_ERRORS``) lives in
:mod:`avscene.io.chunks`; its public names are importable from here. No torch here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np

from avscene.errors import DecodeError
from avscene.io._sampling import _AudioAccumulator, _FrameSampler, _Problems
# The one-pass reader lives in avscene.io.chunks; its public names are re-exported from here.
from avscene.io.chunks import (  # noqa: F401
    DEFAULT_CHUNK_SECONDS,
    ChunkReader,
    ClipChunk,
    MediaInfo,
    _check_args,
    _declared_end,
    _decoded_frames,
    _info,
    _no_stream,
    _open,
    _origin,
    _pick,
    _streams,
    header_info,
    iter_chunks,
)


@dataclass(frozen=True)
class Clip:
    """A decoded file: sampled frames, mono audio and what was found on the way."""

    info: MediaInfo
    frames: np.ndarray | None  # (T, H, W, 3) uint8 RGB at source resolution, None: no video
    frame_times: np.ndarray  # (T,) float64 seconds: the instant each frame was sampled for
    audio: np.ndarray | None  # (N,) float32 mono in [-1, 1] at sample_rate, None: no audio
    sample_rate: int  # Hz of ``audio``


def probe(path: str | os.PathLike, *, any_format: bool = False) -> MediaInfo:
    """Describe a file from its header, without decoding it (only one video frame, for rotation).

    ``duration`` is the header's; :func:`decode` reports the duration actually decoded.

    Raises:
        DecodeError: the file is missing, unreadable, in a container or codec outside
            :mod:`avscene.io.formats` (without ``any_format``), or has no decodable stream.
    """
    problems = _Problems()
    with _open(path, any_format=any_format) as container:
        video, audio = _streams(container, problems, any_format=any_format)
        origin = _origin(container)
        ends = [e for s in (video, audio) if s is not None
                and (e := _declared_end(s, container, origin)) is not None]
        hw = None
        if video is not None:
            hw = (video.height, video.width)
            frame = next(_decoded_frames(container, [video], problems), None)
            if frame is not None and round(getattr(frame, "rotation", 0) / 90) % 2:
                hw = (video.width, video.height)
                problems.note(f"video: rotation metadata {frame.rotation}°; decode() turns "
                              "frames upright")
        return _info(path, video, audio, max(ends, default=0.0), hw, video is not None,
                     audio is not None, problems)


def header(path: str | os.PathLike, *, any_format: bool = False) -> MediaInfo:
    """What a file's header says, decoding nothing (cheaper than :func:`probe`): the declared
    duration, the streams, the coded frame size (before rotation).

    Raises:
        DecodeError: as :func:`probe`.
    """
    problems = _Problems()
    with _open(path, any_format=any_format) as container:
        video, audio = _streams(container, problems, any_format=any_format)
        return header_info(path, container, video, audio)


def iter_frames(path: str | os.PathLike, *, fps: float = 1.0, offset: float = 0.5,
                any_format: bool = False) -> Iterator[tuple[float, np.ndarray]]:
    """Stream ``(t_k, frame)`` pairs, decoding sequentially; only one frame is held.

    Args:
        path: any file FFmpeg reads.
        fps: sampling rate in frames per second.
        offset: instants are ``(k + offset) / fps`` seconds.
        any_format: also decode containers and codecs outside :mod:`avscene.io.formats`.

    Yields:
        ``t_k`` in seconds and the frame displayed then, (H, W, 3) uint8 RGB, upright.

    Raises:
        DecodeError: the file cannot be opened, has no video stream, or no frame decodes.
    """
    _check_args(fps, offset, 1)
    container = _open(path, any_format=any_format)
    problems = _Problems()
    video = _pick(container.streams.video, "video", problems, any_format=any_format)
    if video is None:
        container.close()
        raise _no_stream(path, problems, "no video stream; use read_audio() for audio-only files")
    return _iter_frames(container, video, fps, offset, problems)


def _iter_frames(container: av.container.InputContainer, video: av.video.VideoStream,
                 fps: float, offset: float, problems: _Problems,
                 ) -> Iterator[tuple[float, np.ndarray]]:
    with container:
        sampler = _FrameSampler(fps, offset, _origin(container), video, problems)
        for frame in _decoded_frames(container, [video], problems):
            yield from sampler.push(frame)
        if sampler.seen == 0:
            raise DecodeError(f"{container.name}: no video frame could be decoded "
                              f"({problems.first_reason()})")
        yield from sampler.finish()


def read_audio(path: str | os.PathLike, *, sample_rate: int = 16000,
               any_format: bool = False) -> np.ndarray:
    """Decode all the audio of a file to mono float32 in [-1, 1] at ``sample_rate`` Hz.

    Channels are averaged; sample ``i`` is at ``i / sample_rate`` s from the container start.

    Returns:
        (N,) float32.

    Raises:
        DecodeError: the file cannot be opened, has no audio stream, or no audio decodes.
    """
    _check_args(1.0, 0.0, sample_rate)
    problems = _Problems()
    with _open(path, any_format=any_format) as container:
        audio = _pick(container.streams.audio, "audio", problems, any_format=any_format)
        if audio is None:
            raise _no_stream(path, problems, "no audio stream (a silent video?)")
        origin = _origin(container)
        end = _declared_end(audio, container, origin)
        acc = _AudioAccumulator(sample_rate, origin, end, problems)
        for frame in _decoded_frames(container, [audio], problems):
            acc.push(frame)
        out = acc.finish(end)
    if out is None:
        raise DecodeError(f"{path}: no audio could be decoded ({problems.first_reason()})")
    return out


def decode(path: str | os.PathLike, *, fps: float = 1.0, offset: float = 0.5,
           sample_rate: int = 16000, any_format: bool = False) -> Clip:
    """Decode frames at ``fps`` and mono audio at ``sample_rate`` in one pass over the file.

    Holds the whole file: use :func:`iter_chunks` for long ones.

    Args:
        path: any file FFmpeg reads; video-only and audio-only files work.
        fps: frame sampling rate; frames at ``(k + offset) / fps`` s.
        offset: see ``fps``; 0.5 samples the middle of each interval.
        sample_rate: audio output rate in Hz.
        any_format: also decode containers and codecs outside :mod:`avscene.io.formats`
            (by default, others are refused before anything is decoded).

    Returns:
        A :class:`Clip`; ``frames`` / ``audio`` is None for a missing modality.

    Raises:
        DecodeError: the file cannot be opened or nothing in it decodes.
        UsageError: ``fps``, ``offset`` or ``sample_rate`` is invalid.
    """
    reader = iter_chunks(path, chunk_seconds=math.inf, fps=fps, offset=offset,
                         sample_rate=sample_rate, any_format=any_format)
    chunks = list(reader)
    assert len(chunks) <= 1, "an infinite window cannot end before the file does"
    chunk = chunks[0] if chunks else None  # None: a stream decoded to nothing at all
    audio = None if chunk is None else chunk.audio
    if audio is None and reader.info.has_audio:  # the stream decoded, to zero samples
        audio = np.zeros(0, dtype=np.float32)
    return Clip(info=reader.info, frames=None if chunk is None else chunk.frames,
                frame_times=np.zeros(0) if chunk is None else chunk.frame_times,  # (T,) float64
                audio=audio, sample_rate=sample_rate)
