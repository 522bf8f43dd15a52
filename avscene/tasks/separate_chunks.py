"""The numerics of ``separate``: NMF components scored by the model, chunk by chunk.

:func:`score_components` and :func:`enhance_scored` separate one stretch of
audio (one NMF); :class:`ChunkedSeparator` feeds a stream of 16-kHz blocks
through them one chunk at a time (bounds and cross-fades from
:mod:`avscene.dsp.overlap`) and hands back the finished source and residual
samples as soon as no later chunk can touch them; :func:`pump_model_rate` and
:func:`pump_input_rate` run a stream of decoded blocks through it into a
:class:`SeparationSink` (at the model's rate, or at the file's own rate with
exact streamed resampling both ways). See :mod:`avscene.tasks.separate` for
the method and the file-level API.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from avscene.dictionary import Dictionaries, separate_with_dictionaries
from avscene.dsp.overlap import OverlapAdd, StreamResampler, chunk_weight, ready_chunks
from avscene.dsp.stft import STFTOptions
from avscene.proposals.nmf import NMFOptions, NMFTracks, ncp_patches, nmf_tracks
from avscene.separation import (
    KEPT_WEIGHT,
    Enhancement,
    component_relevance,
    component_weights,
    reconstruct,
    scale_alpha,
)
from avscene.tasks._memory import release_free_memory

if TYPE_CHECKING:
    from avscene.hub import LoadedModel

# NCP patches per network call: bounds the activation memory, not the result (the
# scores are bitwise the same). The bundled model's audio network takes ~0.35 MB of
# activations per patch: 512 patches peaked at +190 MB, 128 at ~+45 MB, at the same speed.
SCORE_BATCH = 128
# Torch intra-op threads for the NMF on a CPU. Its ops are small (513 x T x K) and many, so
# threads mostly add synchronisation: on a 2-core machine busy with another job, a 10-s
# clip took 0.47 s with 1 thread and 1.1-4.4 s with 2.
NMF_CPU_THREADS = 1


class SeparationSink(Protocol):
    """Where :func:`separate_stream` puts the separated signals, block by block."""

    def open(self, label: str, sample_rate: int) -> None:
        """Called once, before any ``write``, with the class separated and the output rate."""

    def write(self, source: np.ndarray, residual: np.ndarray) -> None:
        """The next ``(m,)`` float32 samples of both signals (consecutive, same length)."""


@dataclass(frozen=True)
class ScoredComponents:
    """NMF components of one mixture, with the network's score of every NCP window."""

    dec: NMFTracks  # W (F, K), H (K, T), X (F, T), tracks (K, N)
    scores: torch.Tensor  # (K, P, C): classification score of class c on window p of track k


def score_components(audio: np.ndarray | torch.Tensor, loaded: LoadedModel, nmf: NMFOptions) -> ScoredComponents:
    """NMF of a mono mixture at the model's rate and the scores of all its NCP windows.

    The scores of every class come out of one pass, so several classes or
    thresholds can be tried on one decomposition (:func:`enhance_scored`).
    Runs on the model's device.

    Args:
        audio: ``(N,)`` mono float mixture at ``loaded.preprocess.sample_rate``.
        loaded: the model; its ``score_audio_patches`` scores the NCPs.
        nmf: NMF options.

    Returns:
        The decomposition and ``scores`` (K, P, C).
    """
    device = next(loaded.model.parameters()).device
    with _cpu_threads(device, NMF_CPU_THREADS):
        dec = nmf_tracks(audio, opts=nmf, device=device)
    patches, _ = ncp_patches(dec.tracks, cfg=loaded.preprocess)  # (K, P, 96, 64)
    n_comp, n_win = patches.shape[:2]
    flat = patches.reshape(n_comp * n_win, *patches.shape[2:]).float()  # (K*P, 96, 64)
    with torch.no_grad():
        parts = [loaded.model.score_audio_patches(flat[i:i + SCORE_BATCH])  # (b, C)
                 for i in range(0, flat.shape[0], SCORE_BATCH)]
    scores = torch.cat(parts).float().reshape(n_comp, n_win, -1)  # (K, P, C)
    return ScoredComponents(dec=dec, scores=scores)


@contextmanager
def _cpu_threads(device: torch.device, n: int) -> Iterator[None]:
    """At most ``n`` torch intra-op threads inside the block when computing on the CPU (restored after)."""
    before = torch.get_num_threads()
    if device.type != "cpu" or before <= n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def enhance_scored(sc: ScoredComponents, class_index: int, *, threshold: float | None,
                   stft_opts: STFTOptions = STFTOptions()) -> Enhancement:
    """Rank the components of ``sc`` for one class and resynthesise source and residual.

    The same steps as :func:`avscene.separation.enhance`, from precomputed scores.

    Args:
        sc: decomposition and scores from :func:`score_components`.
        class_index: column of the target class.
        threshold: None for soft weights, else the hard threshold τ in [0, 1].
        stft_opts: the STFT of the decomposition (``NMFOptions.stft_opts``).
    """
    W, H, X = sc.dec.W, sc.dec.H, sc.dec.X
    beta = sc.scores[:, :, class_index].to(dtype=W.dtype, device=W.device)  # (K, P)
    alpha = component_relevance(beta)  # (K,)
    alpha_scaled = scale_alpha(alpha)
    weights = component_weights(alpha_scaled, threshold=threshold)
    source, residual = reconstruct(W, H, X, weights, length=sc.dec.tracks.shape[1], stft_opts=stft_opts)
    return Enhancement(source=source, residual=residual, alpha=alpha, alpha_scaled=alpha_scaled,
                       weights=weights, kept=weights >= KEPT_WEIGHT, beta=beta)


def _drop_signals(e: Enhancement) -> Enhancement:
    """The ranking of a chunk without its signals (they are already added up), on the CPU."""
    empty = torch.empty(0)
    return Enhancement(source=empty, residual=empty, alpha=e.alpha.cpu(), alpha_scaled=e.alpha_scaled.cpu(),
                       weights=e.weights.cpu(), kept=e.kept.cpu(), beta=e.beta.cpu())


class ChunkedSeparator:
    """Separate one class from a stream of mono blocks at the model's rate, one NMF per chunk.

    :meth:`push` the blocks in order, then call :meth:`finish`; each returns the
    ``(2, m)`` float32 samples (source, residual) that became final, so their
    concatenation has the length of the input and source + residual is the
    input. Memory: at most ``2·size - overlap`` input samples and one chunk's
    decomposition at a time.

    Attributes:
        bounds: ``[start, end)`` samples of each chunk separated so far.
        rankings: each chunk's ranking (:class:`~avscene.separation.Enhancement` without signals).
    """

    def __init__(self, loaded: LoadedModel, class_index: int, *, nmf: NMFOptions, threshold: float | None,
                 size: int, overlap: int, dictionaries: Dictionaries | None = None) -> None:
        self._loaded, self._class, self._nmf, self._threshold = loaded, class_index, nmf, threshold
        self._dicts = dictionaries  # given: supervised NMF with them, instead of ranking NCPs
        self.method = "ncp" if dictionaries is None else "dictionary"
        # NMF components per chunk: K, or the label's and the background's atoms
        self.components = nmf.k if dictionaries is None else (
            dictionaries.classes[loaded.labels[class_index]].shape[1] + dictionaries.background.shape[1])
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
                              final=final)
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
        if self._dicts is not None:
            source, residual = separate_with_dictionaries(x, self._dicts, self._loaded.labels[self._class])
            both = np.stack([source, residual]).astype(np.float64)  # (2, b - a)
        else:
            sc = score_components(x, self._loaded, self._nmf)
            e = enhance_scored(sc, self._class, threshold=self._threshold, stft_opts=self._nmf.stft_opts)
            both = torch.stack([e.source, e.residual]).double().cpu().numpy()  # (2, b - a)
            self.rankings.append(_drop_signals(e))
            del sc, e
        self._ola.add(a, w * both)
        self.bounds.append((a, b))
        del both
        # Chunks' buffers of varying sizes fragment glibc's arenas: untrimmed, the RSS of a
        # 1-hour separation crept from 1.0 to 1.7 GB; trimmed, it stays flat.
        release_free_memory()


# --------------------------------------------------------------------------- streams


def pump_model_rate(blocks: Iterator[np.ndarray], sep: ChunkedSeparator, sink: SeparationSink) -> int:
    """Separate 16-kHz blocks into the sink; returns the samples written."""
    n = 0
    for out in _chain(blocks, sep):
        if out.shape[1]:
            sink.write(out[0], out[1])
            n += out.shape[1]
    return n


def _chain(blocks: Iterator[np.ndarray], sep: ChunkedSeparator) -> Iterator[np.ndarray]:
    """``sep``'s outputs (2, m) for each block, then for the end of the stream."""
    for block in blocks:
        yield sep.push(block)
    yield sep.finish()


def pump_input_rate(blocks: Iterator[np.ndarray], sep: ChunkedSeparator, rate: int, model_rate: int,
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
