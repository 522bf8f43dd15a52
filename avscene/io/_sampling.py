"""Stream-sampling helpers of :mod:`avscene.io.decode`: frame sampling at fixed instants,
audio accumulation on the video's clock, and problem bookkeeping. No torch here.

Both samplers keep what they produced in buffers that the chunked reader empties
from the front (``take_before`` / ``take``), so a long file never has to be held
whole; :func:`avscene.io.decode.decode` simply takes everything at the end."""

from __future__ import annotations

import math
from collections.abc import Iterator

import av
import numpy as np

TIME_EPS = 1e-6  # s: float slack when an instant and a frame time coincide
GAP_TOLERANCE_S = 0.05  # s: an audio timestamp jump above this is filled with silence
PADDING_TOLERANCE_S = 0.25  # s: decoded audio beyond the declared end trimmed as codec
#                             padding (AAC adds <= 1024 samples: 0.128 s at 8 kHz)
MAX_PREALLOC_S = 3600.0  # s: buffers are sized from the header up to an hour, then grow
TRUNCATION_WARN_S = 0.5  # s: warn when the header promises this much more than decodes


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


# A file of which fewer seconds than this decode, with at least as many undecodable packets as
# good ones, is not media: e.g. an MP3 frame header followed by random bytes, which the MP3
# demuxer (on the allowlist of avscene.io.formats, which refuses random bytes by the probed
# container) accepts and of which the decoder "decodes" a few ms. Real short clips decode
# without errors, and damaged real files still yield seconds of media, so neither is caught.
GARBAGE_MAX_S = 1.0


class _Problems:
    """Collects what went wrong while decoding, summarised as one line per kind."""

    def __init__(self) -> None:
        self._notes: list[str] = []
        self._errors: dict[str, tuple[int, str]] = {}  # what -> (count, first reason)
        self.decoded_packets = 0  # packets that decoded without an error
        self.refused_codecs: list[str] = []  # codecs of streams skipped by the allowlist

    def note(self, message: str) -> None:
        if message not in self._notes:
            self._notes.append(message)

    def error(self, what: str, exc: Exception) -> None:
        count, reason = self._errors.get(what, (0, _reason(exc)))
        self._errors[what] = (count + 1, reason)

    def check_truncation(self, decoded_s: float, header_s: float | None) -> None:
        """Note a file that decoded ``TRUNCATION_WARN_S`` less than its header declares."""
        if header_s is not None and header_s > decoded_s + TRUNCATION_WARN_S:
            self.note(f"decoded {decoded_s:.2f} s of the {header_s:.2f} s the header declares; "
                      "the file may be truncated")

    @property
    def failed_packets(self) -> int:
        return sum(n for n, _ in self._errors.values())

    def looks_like_noise(self, decoded_s: float) -> bool:
        """Whether what decoded is a decoder's accident rather than media (see ``GARBAGE_MAX_S``):
        under ``GARBAGE_MAX_S`` seconds decoded, and no more good packets than bad ones."""
        return decoded_s < GARBAGE_MAX_S and 0 < self.failed_packets >= self.decoded_packets

    def first_reason(self) -> str:
        return next(iter(self._errors.values()), (0, "no frames"))[1]

    def messages(self) -> tuple[str, ...]:
        errs = [f"{what}: {n} skipped ({reason})" for what, (n, reason) in self._errors.items()]
        return (*self._notes, *errs)


class _PacketReach:
    """How far (s on the clock) the packets of streams that are read but not decoded reach.

    Lets an audio-only reader judge truncation as :func:`avscene.io.decode.decode` does, by
    the furthest stream, without decoding the video (its packets are read anyway).
    """

    def __init__(self, streams: list[av.stream.Stream], origin: float) -> None:
        self.streams, self._origin = streams, origin
        self.indices = frozenset(st.index for st in streams)
        self.end = 0.0

    def see(self, packet: av.Packet) -> None:
        t = packet.pts if packet.pts is not None else packet.dts
        if t is not None and packet.time_base is not None:  # flush packets have neither
            end = float((t + (packet.duration or 0)) * packet.time_base) - self._origin
            self.end = max(self.end, end)


class _Growable:
    """An array that grows along axis 0 without a final concatenate (peak memory ~1x)."""

    def __init__(self, capacity: int, tail: tuple[int, ...], dtype: type) -> None:
        self._a = np.empty((max(capacity, 1), *tail), dtype=dtype)
        self.n = 0

    def extend(self, x: np.ndarray) -> None:
        if self.n + len(x) > len(self._a):
            bigger = np.empty((max(self.n + len(x), len(self._a) * 3 // 2), *self._a.shape[1:]),
                              dtype=self._a.dtype)
            bigger[: self.n] = self._a[: self.n]
            self._a = bigger
        self._a[self.n : self.n + len(x)] = x
        self.n += len(x)

    def pop_front(self, k: int) -> np.ndarray:
        """Remove and return the first ``k`` rows, without copying them.

        The rows are handed over as a view of the buffer, and the rows after them (usually
        none or a few) are copied to a fresh buffer of the same capacity: pages of an
        ``np.empty`` buffer that are never written cost no memory.
        """
        out, rest = self._a[: min(k, self.n)], self._a[k : self.n]
        self._a = np.empty_like(self._a)
        self._a[: len(rest)] = rest
        self.n = len(rest)
        return out


class _FrameSampler:
    """Streams the frame displayed at each instant ``(k + offset) / fps``."""

    def __init__(self, fps: float, offset: float, origin: float, stream: av.video.VideoStream,
                 problems: _Problems, *, buffer_s: float = MAX_PREALLOC_S) -> None:
        self._fps, self._offset, self._origin, self._problems = fps, offset, origin, problems
        rate = stream.average_rate or stream.guessed_rate
        self._k = 0
        self._prev: av.VideoFrame | None = None
        self._prev_t, self._prev_dur = 0.0, (1.0 / float(rate) if rate else 0.0)
        self._first: tuple[float, av.VideoFrame] | None = None  # kept until an instant is due
        self._cache: tuple[av.VideoFrame, np.ndarray] | None = None
        self._size: tuple[int, int] | None = None  # (width, height) of the first decoded frame
        self._quarter = 0  # counter-clockwise quarter turns applied to every frame
        declared = float(stream.duration * stream.time_base) if (
            stream.duration and stream.time_base) else 0.0
        self._capacity = math.ceil(min(declared, buffer_s, MAX_PREALLOC_S) * fps) + 1  # for collect()
        self.stack: _Growable | None = None  # (T, H, W, 3) frames kept by collect()
        self.times: list[float] = []  # their instants
        self.seen = 0  # frames pushed
        self.end = 0.0  # s: end of the last frame seen (its time + its duration)

    def _instant(self) -> float:
        return (self._k + self._offset) / self._fps

    @property
    def next_instant(self) -> float:
        """The next instant to be emitted: every earlier one has been."""
        return self._instant()

    @property
    def frame_hw(self) -> tuple[int, int] | None:
        """(height, width) of the frames handed out (upright), None before the first."""
        if self._size is None:
            return None
        w, h = self._size
        return (w, h) if self._quarter % 2 else (h, w)

    @property
    def clock(self) -> float:
        """Time of the last frame pushed (s; 0 before the first)."""
        return self._prev_t

    def push(self, frame: av.VideoFrame) -> list[tuple[float, np.ndarray]]:
        """Take the next decoded frame; returns the instants it closes, with their frames."""
        t = frame.time
        if t is None:
            self._problems.note("video: frames without timestamps; their times were extrapolated")
            t = self._prev_t + self._prev_dur if self._prev is not None else 0.0
        else:
            t -= self._origin
        out = self._emit_until(t) if self._prev is not None else []
        if frame.duration and frame.time_base is not None:
            dur = float(frame.duration * frame.time_base)
        elif self._prev is not None and t > self._prev_t:
            dur = t - self._prev_t  # no duration in the file: assume the last interval again
        else:
            dur = self._prev_dur
        self._prev, self._prev_t, self._prev_dur = frame, t, dur
        if self.seen == 0:
            self._first = (t, frame)
        self.seen += 1
        self.end = max(self.end, t + dur)
        return out

    def finish(self) -> list[tuple[float, np.ndarray]]:
        """The instants left before the end of the video; at least one frame if any decoded."""
        if self.seen == 0:
            return []
        out = self._emit_until(self.end)
        if self._k == 0 and self._first is not None:  # shorter than t_0: take the t=0 frame
            t0, frame = self._first
            out.append((max(t0, 0.0), self._image(frame)))
            self._k = 1
        return out

    def _emit_until(self, t: float) -> list[tuple[float, np.ndarray]]:
        out = []
        while self._instant() < t - TIME_EPS:
            out.append((self._instant(), self._image(self._prev)))
            self._k, self._first = self._k + 1, None
        return out

    def _image(self, frame: av.VideoFrame) -> np.ndarray:
        """(H, W, 3) uint8 RGB, upright; one conversion per decoded frame."""
        if self._cache is not None and self._cache[0] is frame:
            return self._cache[1]
        if self._size is None:  # size and rotation of the first frame hold for the clip
            rotation = getattr(frame, "rotation", 0)  # absent in old PyAV
            self._size, self._quarter = (frame.width, frame.height), self._turns(rotation)
        elif self._size != (frame.width, frame.height):
            self._problems.note(f"video: resolution changed mid-stream to {frame.width}x"
                                f"{frame.height}; rescaled to {self._size[0]}x{self._size[1]}")
        img = frame.to_ndarray(format="rgb24", width=self._size[0], height=self._size[1])
        if self._quarter:
            img = np.ascontiguousarray(np.rot90(img, k=self._quarter))  # (W, H, 3) if odd
        self._cache = (frame, img)
        return img

    def _turns(self, rotation: int) -> int:
        """Quarter turns counter-clockwise that display the frame upright."""
        # The display matrix rotates the picture `rotation` degrees counter-clockwise
        # (av_display_rotation_get); ffmpeg's autorotate applies the same turn.
        quarter = round(rotation / 90)
        if abs(rotation - 90 * quarter) > 1:
            self._problems.note(f"video: display rotation {rotation}° is not a right angle; "
                                "frames left unrotated")
            return 0
        if quarter % 4:
            self._problems.note(f"video: frames rotated {90 * quarter}° counter-clockwise to "
                                "display upright (rotation metadata)")
        return quarter % 4

    def collect(self, pairs: list[tuple[float, np.ndarray]]) -> None:
        """Keep ``pairs`` in :attr:`stack` / :attr:`times` (for :func:`decode`)."""
        for t, img in pairs:
            if self.stack is None:
                self.stack = _Growable(self._capacity, img.shape, np.uint8)
            self.stack.extend(img[None])  # (1, H, W, 3)
            self.times.append(t)

    def take_before(self, end: float) -> tuple[np.ndarray | None, list[float]]:
        """Remove and return the collected frames whose instant is before ``end`` (s).

        Returns:
            ``(frames (T, H, W, 3) uint8 or None when there are none, their instants)``.
        """
        k = sum(1 for t in self.times if t < end)  # instants are increasing
        if k == 0:
            return None, []
        times, self.times = self.times[:k], self.times[k:]
        return self.stack.pop_front(k), times


def _resampler(frame: av.AudioFrame, sample_rate: int) -> av.AudioResampler:
    """A resampler from ``frame``'s format to packed float32 at ``sample_rate``, same channels.

    The channels are kept and averaged by :func:`_mono`: FFmpeg's own downmix weights
    them by 1/sqrt(2), not 1/C. Packed, not planar: PyAV 18 builds planar frames of 8 or
    more channels with a plane too many, and reading them crashes the interpreter.
    """
    return av.AudioResampler(format="flt", layout=frame.layout, rate=sample_rate)


def _mono(frame: av.AudioFrame) -> np.ndarray:
    """The channel mean of a packed float32 frame from :func:`_resampler`, (n,) float32."""
    channels = frame.layout.nb_channels
    x = frame.to_ndarray().reshape(-1, channels)  # (1, n * C) -> (n, C): packed, channel fastest
    if channels == 1:
        return x[:, 0]
    # Channel by channel, in order: bit for bit np.mean over the rows of planar (C, n) data, and
    # for stereo 6x faster than .mean(axis=1) over (n, C) (2.4 vs 14 us per 1024-sample frame).
    mono = x[:, 0].copy()  # (n,)
    for c in range(1, channels):
        mono += x[:, c]
    mono /= np.float32(channels)
    return mono


# The one policy for NaN / infinite samples (float PCM that is damaged or was written from a
# broken computation): like other damage, the input is processed as far as it is usable, and
# said so. A non-finite sample cannot be a level, so it becomes silence (after resampling: the
# resampler's taps spread it over a few ms, all of which are silenced); ±Inf is not taken for
# full scale, which would be a click the model hears.
NON_FINITE_NOTE = "audio: NaN or infinite samples (a damaged stream) were replaced by silence"


class _AudioAccumulator:
    """Resamples decoded audio to mono ``sample_rate`` float32, aligned to the clock."""

    def __init__(self, sample_rate: int, origin: float, expected_s: float | None,
                 problems: _Problems, *, buffer_s: float = MAX_PREALLOC_S) -> None:
        self._sr, self._origin, self._problems = sample_rate, origin, problems
        expected_s = min(max(expected_s or 0.0, 0.0), buffer_s, MAX_PREALLOC_S)
        self._buf = _Growable(round(expected_s * sample_rate) + sample_rate, (), np.float32)
        self.taken = 0  # samples already handed out by take(); the buffer holds the ones after
        self._resampler: av.AudioResampler | None = None
        self._key: tuple | None = None  # (format, layout, rate) the resampler was built for
        self._next_t: float | None = 0.0  # s: where the next frame should start
        self._drop = 0  # output samples still to drop (audio before the clock's zero)
        self._started = False  # a frame has been pushed

    @property
    def n(self) -> int:
        """Samples produced so far (handed out or buffered)."""
        return self.taken + self._buf.n

    def take(self, upto: int) -> np.ndarray | None:
        """Remove and return the samples before index ``upto`` not yet taken (None: none)."""
        k = min(upto, self.n) - self.taken
        if k <= 0:
            return None
        self.taken += k
        return self._buf.pop_front(k)

    def push(self, frame: av.AudioFrame) -> None:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        t = None if frame.time is None else frame.time - self._origin
        if t is not None and not self._started:
            self._pad_or_drop(t)  # align the first sample to the clock, however small the offset
        elif t is not None and self._next_t is not None and t - self._next_t > GAP_TOLERANCE_S:
            self._problems.note("audio: gaps in the audio timestamps were filled with silence")
            self._pad_or_drop(t)
        self._started = True
        if key != self._key:  # PyAV's resampler cannot change input format mid-stream
            self._drain()
            self._resampler = _resampler(frame, self._sr)
            self._key = key
        self._write(self._resampler.resample(frame))
        self._next_t = None if t is None else t + frame.samples / frame.sample_rate

    def _pad_or_drop(self, t: float) -> None:
        """Silence up to ``t`` (a late start or a gap); or drop the audio before the zero."""
        self._drain()
        target = round(t * self._sr)
        if target > self.n:
            self._buf.extend(np.zeros(target - self.n, dtype=np.float32))
        elif target < 0 and not self._started:
            self._drop = -target

    def _drain(self) -> None:
        if self._resampler is not None:
            self._write(self._resampler.resample(None))
            self._resampler, self._key = None, None

    def _write(self, frames: list[av.AudioFrame]) -> None:
        for f in frames:
            mono = _mono(f)  # (n,)
            if self._drop:
                cut = min(self._drop, len(mono))
                mono, self._drop = mono[cut:], self._drop - cut
            finite = np.isfinite(mono)
            if not finite.all():  # a damaged float stream: repaired, as other damage, with a warning
                self._problems.note(NON_FINITE_NOTE)
                mono = np.where(finite, mono, np.float32(0.0))
            self._buf.extend(np.clip(mono, -1.0, 1.0))  # resampling can overshoot full scale

    @property
    def started(self) -> bool:
        """Whether any audio frame was pushed."""
        return self._started

    def close(self, declared_end: float | None) -> None:
        """Flush the resampler and trim codec padding past the declared end.

        Codec padding is at most ``PADDING_TOLERANCE_S`` past the declared end; a caller of
        :meth:`take` keeps that many samples back until it has closed the accumulator, so
        the trim never reaches into samples already handed out.
        """
        self._drain()
        if self._started and declared_end is not None:
            excess = self.n - max(round(declared_end * self._sr), 0)
            if 0 < excess <= PADDING_TOLERANCE_S * self._sr:
                self._buf.n -= min(excess, self._buf.n)

    def finish(self, declared_end: float | None) -> np.ndarray | None:
        """:meth:`close`, then the samples not yet taken (all of them if none were); None: no audio."""
        self.close(declared_end)
        if not self._started:
            return None
        rest = self.take(self.n)
        return np.zeros(0, dtype=np.float32) if rest is None else rest


class _Cutter:
    """Cuts the sampled frames and the audio into the windows ``[i C, (i + 1) C)``.

    Yields ``(index, start, end, frames, frame_times, audio, audio_start)`` tuples for
    :class:`avscene.io.decode.ClipChunk`. A window is cut when both streams are past its end
    (audio by ``PADDING_TOLERANCE_S`` more, so the end trim never reaches a cut sample), or
    when the stream furthest ahead is ``max_skew_s`` past it: then the lagging stream's
    data for the window follows in a later chunk.
    """

    def __init__(self, sampler: _FrameSampler | None, acc: _AudioAccumulator | None, *,
                 chunk_s: float, sample_rate: int, max_skew_s: float) -> None:
        self.sampler, self.acc, self._c, self._sr = sampler, acc, chunk_s, sample_rate
        self._skew = max_skew_s
        self._hold = math.ceil(PADDING_TOLERANCE_S * sample_rate) + 1  # kept for the end trim
        self.index = 0
        self.frames_out = 0  # frames handed out

    def _sample(self, t: float) -> float:
        return round(t * self._sr) if math.isfinite(t) else math.inf

    def _lead(self) -> float:
        """How far (s) the stream furthest ahead has got."""
        v = self.sampler.clock if self.sampler is not None else 0.0
        return max(v, self.acc.n / self._sr if self.acc is not None else 0.0)

    def ready(self) -> Iterator[tuple]:
        """The windows both streams are past, or that the leading stream forces out."""
        while True:
            end = (self.index + 1) * self._c
            v_done = self.sampler is None or self.sampler.next_instant >= end
            a_done = self.acc is None or self.acc.n >= self._sample(end) + self._hold
            if not (v_done and a_done) and self._lead() < end + self._skew:
                return
            hold = math.inf if self.acc is None else self.acc.n - self._hold
            yield from self._cut(end, end, min(self._sample(end), hold))

    def rest(self, duration: float) -> Iterator[tuple]:
        """After the last packet: everything left, window by window."""
        while True:
            end = (self.index + 1) * self._c
            more = (self.sampler is not None and any(t >= end for t in self.sampler.times)) or (
                self.acc is not None and self.acc.n > self._sample(end))
            if not more:
                start = self.index * self._c if self.index else 0.0
                yield from self._cut(math.inf, max(min(end, duration), start), math.inf)
                return
            yield from self._cut(end, end, self._sample(end))

    def _cut(self, before: float, end: float, audio_upto: float) -> Iterator[tuple]:
        """Frames before ``before`` s and audio before sample ``audio_upto``, as one chunk."""
        frames, times = (None, []) if self.sampler is None else self.sampler.take_before(before)
        start_sample = 0 if self.acc is None else self.acc.taken
        audio = None if self.acc is None else self.acc.take(audio_upto)
        index, self.index = self.index, self.index + 1
        self.frames_out += len(times)
        if frames is not None or audio is not None:
            start = index * self._c if index else 0.0  # 0 * inf is NaN
            yield index, start, end, frames, times, audio, start_sample
