"""A separation method run chunk by chunk over a stream, into a sink, in bounded memory.

:class:`StreamingSeparation` feeds a stream of mono blocks at the model's rate through a
chunk strategy (:mod:`avscene.separation.methods`) one chunk at a time (bounds and
cross-fades from :mod:`avscene.dsp.overlap`) and hands back the finished source and
residual samples as soon as no later chunk can touch them; :func:`pump_model_rate` and
:func:`pump_input_rate` run a stream of decoded blocks through it into a
:class:`SeparationSink` (at the model's rate, or at the file's own rate with exact
streamed resampling both ways). ``separate`` and ``evaluate-separation`` both separate
through :func:`streaming_separation`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np

from avscene.dsp.overlap import OverlapAdd, StreamResampler, chunk_weight, ready_chunks
from avscene.io._memory import release_free_memory
from avscene.separation.ranking import Enhancement
from avscene.separation.registry import Method, StrategyInputs

if TYPE_CHECKING:
    from avscene.separation.methods import ChunkStrategy


class SeparationSink(Protocol):
    """Where :func:`separate_stream` puts the separated signals, block by block."""

    def open(self, label: str, sample_rate: int) -> None:
        """Called once, before any ``write``, with the class separated and the output rate."""

    def write(self, source: np.ndarray, residual: np.ndarray) -> None:
        """The next ``(m,)`` float32 samples of both signals (consecutive, same length)."""


class StreamingSeparation:
    """Separate one class from a stream of mono blocks at the model's rate, one chunk at a time.

    :meth:`push` the blocks in order, then call :meth:`finish`; each returns the
    ``(2, m)`` float32 samples (source, residual) that became final, so their
    concatenation has the length of the input and source + residual is the
    input. Each chunk is separated by ``strategy`` on its own and the chunks are
    cross-faded. Memory: at most ``2·size - overlap`` input samples and one
    chunk's separation at a time.

    Attributes:
        bounds: ``[start, end)`` samples of each chunk separated so far.
        rankings: each chunk's ranking (:class:`~avscene.separation.ranking.Enhancement` without
            signals); empty for the methods that rank nothing.
    """

    def __init__(self, strategy: ChunkStrategy, *, size: int, overlap: int) -> None:
        align = strategy.align  # size down, overlap up to multiples of it (at most size // 4)
        size = max(align, size // align * align)
        overlap = min(-(-overlap // align) * align, size // 4 // align * align)
        self._strategy = strategy
        self.method = strategy.method
        self.components = strategy.components
        self._size, self._overlap = size, overlap
        self._buf = np.zeros(0, dtype=np.float32)  # input samples [self._next, self._n)
        self._next = 0  # first sample of the next chunk
        self._n = 0  # samples received
        self._ola = OverlapAdd(2)  # source, residual
        self.bounds: list[tuple[int, int]] = []
        self.rankings: list[Enhancement] = []

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add the next input samples; returns the output samples they completed, (2, m)."""
        self._buf = np.concatenate([self._buf, np.asarray(block, dtype=np.float32)])
        self._n += len(block)
        return self._run(final=False)

    def finish(self) -> np.ndarray:
        """Separate the last chunk(s); returns the rest of the output, (2, m)."""
        return self._run(final=True)

    def _run(self, *, final: bool) -> np.ndarray:
        chunks = ready_chunks(self._next, self._n - self._next, size=self._size, overlap=self._overlap,
                              final=final, align=self._strategy.align)
        for i, (a, b) in enumerate(chunks):
            self._separate(a, b, last=final and i == len(chunks) - 1)
        if final:
            return self._ola.take(self._n)
        if chunks:  # the samples before the next chunk are final; drop the input before it
            self._next = chunks[-1][1] - self._overlap
            self._buf = self._buf[self._next - chunks[0][0]:]
        return self._ola.take(self._next if chunks else self._ola.start)

    def _separate(self, a: int, b: int, *, last: bool) -> None:
        x = self._buf[a - self._next:b - self._next]
        w = chunk_weight(b - a, fade_in_len=self._overlap if a > 0 else 0,
                         fade_out_len=0 if last else self._overlap)
        both, ranking = self._strategy(x)  # (2, b - a)
        if ranking is not None:
            self.rankings.append(ranking)
        self._ola.add(a, w * both)
        self.bounds.append((a, b))
        del both
        # Chunks' buffers of varying sizes fragment glibc's arenas: untrimmed, the RSS of a
        # 1-hour separation crept from 1.0 to 1.7 GB; trimmed, it stays flat.
        release_free_memory()


# --------------------------------------------------------------------------- streams


class ModelRateFeed:
    """Separate 16-kHz blocks pushed one at a time into the sink (for a caller that is handed the
    audio, such as a decoding pass shared with the classifier); :func:`pump_model_rate` pulls them."""

    def __init__(self, sep: StreamingSeparation, sink: SeparationSink) -> None:
        self.sep, self.sink, self.n = sep, sink, 0

    def push(self, block: np.ndarray) -> None:
        self._write(self.sep.push(block))

    def finish(self) -> int:
        """The end of the stream; returns the samples written."""
        self._write(self.sep.finish())
        return self.n

    def _write(self, out: np.ndarray) -> None:
        if out.shape[1]:
            self.sink.write(out[0], out[1])
            self.n += out.shape[1]


def pump_model_rate(blocks: Iterator[np.ndarray], sep: StreamingSeparation, sink: SeparationSink) -> int:
    """Separate 16-kHz blocks into the sink; returns the samples written."""
    feed = ModelRateFeed(sep, sink)
    for block in blocks:
        feed.push(block)
    return feed.finish()


def pump_input_rate(blocks: Iterator[np.ndarray], sep: StreamingSeparation, rate: int, model_rate: int,
                     sink: SeparationSink) -> int:
    """Separate native-rate blocks into the sink at the native rate; returns the samples written.

    The model hears a ``resample_poly`` copy at ``model_rate``; the source is
    resampled back and the residual is the native input minus it.
    """
    down, up = StreamResampler(rate, model_rate), StreamResampler(model_rate, rate)
    native = np.zeros(0, dtype=np.float32)  # input not yet matched by source samples
    source = np.zeros(0, dtype=np.float32)  # source samples not yet written
    n_in = n_out = 0
    for block in _native_blocks(blocks):
        if block is None:  # end of the input: flush the resamplers and the last chunks
            src = up.push(np.concatenate([sep.push(down.finish())[0], sep.finish()[0]]))
            src = np.concatenate([src, up.finish()])
        else:
            native, n_in = np.concatenate([native, block]), n_in + len(block)
            src = up.push(sep.push(down.push(block))[0])
        source = np.concatenate([source, src])[:n_in - n_out]  # never past the input's length
        m = min(len(source), len(native))
        if m:
            sink.write(source[:m], native[:m] - source[:m])
            source, native, n_out = source[m:], native[m:], n_out + m
    return n_out


def _native_blocks(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray | None]:
    """The blocks, then None for the end of the stream."""
    yield from blocks
    yield None


def streaming_separation(method: Method, inputs: StrategyInputs, *, size: int, overlap: int) -> StreamingSeparation:
    """``method`` built from ``inputs`` and run in chunks of ``size`` samples overlapping by ``overlap``
    (at most ``size // 4``)."""
    return StreamingSeparation(method.build(inputs), size=size, overlap=min(overlap, size // 4))


def separate_array(sep: StreamingSeparation, audio: np.ndarray) -> np.ndarray:
    """Run ``sep`` over a whole signal ``audio`` (N,): the ``(2, N)`` float32 source and residual."""
    return np.concatenate([sep.push(np.asarray(audio, dtype=np.float32)), sep.finish()], axis=1)
