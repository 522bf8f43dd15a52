"""Block-wise processing of long signals: chunking, cross-fades, overlap-add, streaming resampling.

Pure numpy/scipy, no I/O. Used by :mod:`avscene.separation.streaming` to separate
files of any length with memory bounded by one chunk.

**Chunks.** A signal of ``n`` samples is cut into chunks of at most ``size``
samples, consecutive chunks sharing exactly ``overlap`` samples
(:func:`ready_chunks`). A signal of at most ``size`` samples is one chunk.
Otherwise full chunks ``[i·hop, i·hop + size)`` (``hop = size - overlap``) are
laid down from the start as long as more than ``2·size - overlap`` samples
remain; the remaining ``r`` samples (``size < r <= 2·size - overlap``) are
split into two chunks of nearly equal length (each more than ``size / 2``), so
no chunk is ever a short sliver. Whether a chunk is full is decided from the
samples *before* it plus ``2·size - overlap`` after its start, so a stream can
lay chunks down as it reads (:func:`ready_chunks`): the bounds never depend on
how the stream was cut into blocks.

**Cross-fades.** Each chunk is weighted by ``1`` except over its overlaps:
``sin²(π/2 · (i + ½) / overlap)`` in, ``cos²`` out (:func:`fade_in`). The two
fades across an overlap sum to one sample by sample, so overlap-adding weighted
chunk outputs that each add up to their chunk reproduces the whole signal.

**Streaming resampling.** :class:`StreamResampler` gives, block by block, the
same samples as :func:`scipy.signal.resample_poly` (default Kaiser FIR) on the
whole signal: each output sample depends only on the inputs within the
filter's half-length, so outputs are computed once those inputs are known.
"""

from __future__ import annotations

import math

import numpy as np

from avscene.errors import UsageError

# scipy.signal.resample_poly designs its FIR with this many zero crossings per side:
# half_len = RESAMPLE_HALF_LEN_FACTOR * max(up, down) taps at the upsampled rate.
RESAMPLE_HALF_LEN_FACTOR = 10


# --------------------------------------------------------------------------- chunks


def _check_chunking(size: int, overlap: int) -> None:
    if size < 1 or not 0 <= overlap <= size // 4:
        raise UsageError(f"chunking needs size >= 1 and 0 <= overlap <= size // 4, got size {size}, "
                         f"overlap {overlap}; use a shorter cross-fade or longer chunks")


def _split_tail(start: int, rest: int, *, size: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """The last one or two chunks of ``rest <= 2·size - overlap`` samples from ``start``."""
    if rest <= size:
        return [(start, start + rest)]
    first = math.ceil((rest + overlap) / 2)  # <= size since rest + overlap <= 2 size
    first = min(size, math.ceil(first / align) * align)  # size and overlap are multiples of align
    return [(start, start + first), (start + first - overlap, start + rest)]


def ready_chunks(start: int, available: int, *, size: int, overlap: int,
                 final: bool, align: int = 1) -> list[tuple[int, int]]:
    """Chunks that are decided once ``available`` samples from ``start`` are known.

    Args:
        start: first sample of the next chunk (0, or the previous chunk's end minus ``overlap``).
        available: samples known from ``start`` on.
        size: longest chunk, samples.
        overlap: samples shared by consecutive chunks, ``<= size // 4``.
        final: the signal ends after ``available`` samples (lay down the last chunks too).
        align: every chunk starts at a multiple of this from 0 (an STFT hop, so a chunk's frames
            fall on the whole signal's frame grid); ``size`` and ``overlap`` must be multiples of it.

    Returns:
        ``[start, end)`` sample bounds; when not ``final``, the next chunk starts at
        the last one's end minus ``overlap`` (or at ``start`` if none is ready).
    """
    _check_chunking(size, overlap)
    if align < 1 or size % align or overlap % align or start % align:
        raise UsageError(f"chunk alignment {align} must divide the size {size}, the overlap {overlap} "
                         f"and the start {start}")
    hop = size - overlap
    out = []
    while available > 2 * size - overlap:  # what follows this chunk is more than one chunk
        out.append((start, start + size))
        start, available = start + hop, available - hop
    if final and available > 0:
        out += _split_tail(start, available, size=size, overlap=overlap, align=align)
    return out


def fade_in(length: int) -> np.ndarray:
    """Raised-cosine ramp ``sin²(π/2 · (i + ½) / length)``, float64 ``(length,)``; ``1 - ramp`` fades out."""
    t = (np.arange(length) + 0.5) / length
    return np.sin(0.5 * np.pi * t) ** 2


def chunk_weight(length: int, *, fade_in_len: int, fade_out_len: int) -> np.ndarray:
    """Overlap-add weight of one chunk, float64 ``(length,)``: fade in, ones, fade out."""
    w = np.ones(length)
    if fade_in_len:
        w[:fade_in_len] = fade_in(fade_in_len)
    if fade_out_len:
        w[length - fade_out_len:] = 1.0 - fade_in(fade_out_len)
    return w


class OverlapAdd:
    """Streaming overlap-add of multi-channel blocks placed at absolute sample positions.

    Blocks are added in float64; :meth:`take` hands out (and forgets) the samples
    before a position that no later block will touch.
    """

    def __init__(self, channels: int) -> None:
        self._acc = np.zeros((channels, 0))  # (C, L) float64, covers [self.start, self.start + L)
        self.start = 0  # absolute index of the first sample not handed out yet

    def add(self, position: int, block: np.ndarray) -> None:
        """Add ``block`` (C, m) at samples ``[position, position + m)``; ``position >= start``."""
        if position < self.start:
            raise UsageError(f"OverlapAdd: block at {position} starts before {self.start}, "
                             "which was already taken out")
        end = position + block.shape[1] - self.start
        if end > self._acc.shape[1]:
            self._acc = np.pad(self._acc, ((0, 0), (0, end - self._acc.shape[1])))
        self._acc[:, position - self.start:end] += block

    def take(self, until: int) -> np.ndarray:
        """The finished samples ``[start, until)``, float32 ``(C, until - start)``."""
        n = until - self.start
        if n < 0 or n > self._acc.shape[1]:
            raise UsageError(f"OverlapAdd: cannot take up to {until}; holding [{self.start}, "
                             f"{self.start + self._acc.shape[1]})")
        out = self._acc[:, :n].astype(np.float32)
        self._acc, self.start = self._acc[:, n:], until
        return out


# --------------------------------------------------------------------------- resampling


def resample(x: np.ndarray, rate_in: int, rate_out: int, *, length: int | None = None) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``) to ``rate_out``; float32 ``(length,)``.

    ``length`` (default ``ceil(N · rate_out / rate_in)``) trims or zero-pads the result.
    """
    from scipy.signal import resample_poly

    g = math.gcd(rate_in, rate_out)
    n_out = math.ceil(len(x) * rate_out / rate_in) if length is None else length
    y = x if rate_in == rate_out else resample_poly(np.asarray(x, np.float64), rate_out // g, rate_in // g)
    y = np.asarray(y[:n_out], dtype=np.float32)
    return np.pad(y, (0, n_out - len(y)))


class StreamResampler:
    """Block-by-block :func:`resample` of one signal: the concatenated outputs equal it on the whole.

    Output ``j`` of ``resample_poly`` weighs the inputs ``i`` with
    ``|i·up - j·down| <= half_len`` (``half_len = 10·max(up, down)``), so it is
    final once those inputs are known; the inputs are re-read from a
    segment starting at a multiple of ``down`` (output ``j`` then lies on the
    same filter phase as in the whole signal). Memory: one block plus the
    filter's reach.
    """

    def __init__(self, rate_in: int, rate_out: int) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise UsageError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
        g = math.gcd(rate_in, rate_out)
        self.up, self.down = rate_out // g, rate_in // g
        self._half = RESAMPLE_HALF_LEN_FACTOR * max(self.up, self.down)
        self._buf = np.zeros(0)  # float64 inputs [self._buf_start, self._n_in)
        self._buf_start = 0  # a multiple of self.down
        self._n_in = 0  # inputs received
        self._n_out = 0  # outputs handed out

    def push(self, x: np.ndarray) -> np.ndarray:
        """Feed the next input samples; returns the outputs they complete (float32)."""
        self._buf = np.concatenate([self._buf, np.asarray(x, np.float64)])
        self._n_in += len(x)
        # Last output whose reach ends before the inputs received: j·down + half < n_in·up.
        return self._emit(max((self._n_in * self.up - self._half - 1) // self.down + 1, 0))

    def finish(self) -> np.ndarray:
        """The remaining outputs, up to ``ceil(n_in · up / down)`` in all (zeros past the end)."""
        return self._emit(-(-self._n_in * self.up // self.down))

    def _emit(self, j_end: int) -> np.ndarray:
        from scipy.signal import resample_poly

        j_end = min(j_end, -(-self._n_in * self.up // self.down))
        if j_end <= self._n_out:
            return np.zeros(0, dtype=np.float32)
        if self.up == self.down:
            y = self._buf[self._n_out - self._buf_start:j_end - self._buf_start]
        else:
            offset = self._buf_start * self.up // self.down  # output index of the segment's first output
            y = resample_poly(self._buf, self.up, self.down)[self._n_out - offset:j_end - offset]
        self._n_out = j_end
        # Inputs that output j_end (the next one) still reaches, from a multiple of `down`.
        keep_from = max((j_end * self.down - self._half) // self.up, 0) // self.down * self.down
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start:]
            self._buf_start = keep_from
        return y.astype(np.float32)
