"""How each separation method separates one chunk of mono audio at the model's rate.

One strategy per method of :mod:`avscene.separation.registry`: :class:`NCPStrategy` (the
paper's: :func:`score_components` and :func:`enhance_scored`, one NMF and its ranking),
:class:`DictionaryStrategy` (supervised NMF), :class:`MaskStrategy` (the mask network) and
:class:`HybridStrategy` (the mean of the last two masks). Each maps a chunk to its source and
residual; :class:`avscene.separation.streaming.StreamingSeparation` runs one over a stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from avscene.config import PreprocessConfig
from avscene.dsp.stft import STFTOptions
from avscene.errors import UsageError
from avscene.proposals.audio import band_offset
from avscene.proposals.nmf import NMFOptions, NMFTracks, ncp_patches, nmf_tracks
from avscene.separation.dictionary import Dictionaries, dictionary_mask, separate_with_dictionaries
from avscene.separation.ranking import (
    KEPT_WEIGHT,
    Enhancement,
    component_relevance,
    component_weights,
    reconstruct,
    scale_alpha,
    separate_with_mask,
)

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel
    from avscene.nn.masknet import MaskNet

# NCP patches per network call: bounds the activation memory, not the result (the
# scores are bitwise the same). The bundled model's audio network takes ~0.35 MB of
# activations per patch: 512 patches peaked at +190 MB, 128 at ~+45 MB, at the same speed.
SCORE_BATCH = 128
# Torch intra-op threads for the NMF on a CPU. Its ops are small (513 x T x K) and many, so
# threads mostly add synchronisation: on a 2-core machine busy with another job, a 10-s
# clip took 0.47 s with 1 thread and 1.1-4.4 s with 2.
NMF_CPU_THREADS = 1


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
    return score_with(audio, loaded.model.score_audio_patches, cfg=loaded.preprocess, nmf=nmf, device=device)


def score_with(audio: np.ndarray | torch.Tensor, score_patches: Callable[[torch.Tensor], torch.Tensor], *,
               cfg: PreprocessConfig, nmf: NMFOptions, device: torch.device | str = "cpu") -> ScoredComponents:
    """:func:`score_components` with any scorer: float32 log-mel patches (n, 96, 64) on ``device``
    -> class scores (n, C), called on at most ``SCORE_BATCH`` patches at a time.

    Raises:
        UsageError: the scorer returns scores of another shape than (n, C).
    """
    device = torch.device(device)
    with _cpu_threads(device, NMF_CPU_THREADS):
        dec = nmf_tracks(audio, opts=nmf, device=device)
    patches, _ = ncp_patches(dec.tracks, cfg=cfg)  # (K, P, 96, 64)
    offset = band_offset(np.asarray(torch.as_tensor(audio).float().cpu()), cfg=cfg)  # the mixture's (band_norm)
    if offset is not None:
        patches = patches - torch.from_numpy(offset).to(patches.device, patches.dtype)
    n_comp, n_win = patches.shape[:2]
    flat = patches.reshape(n_comp * n_win, *patches.shape[2:]).float()  # (K*P, 96, 64)
    parts = []
    with torch.no_grad():
        for i in range(0, flat.shape[0], SCORE_BATCH):
            part = torch.as_tensor(score_patches(flat[i:i + SCORE_BATCH]))  # (b, C)
            if part.ndim != 2 or part.shape[0] != min(SCORE_BATCH, flat.shape[0] - i):
                raise UsageError(f"the scorer must return scores of shape (n, C) for n patches, got "
                                 f"{tuple(part.shape)} for {min(SCORE_BATCH, flat.shape[0] - i)}")
            parts.append(part)
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

    Relevance ``α_k = max_t β_{k,t}``, min–max scaling, soft or hard weights and the
    masked resynthesis (:mod:`avscene.separation.ranking`).

    Args:
        sc: decomposition and scores from :func:`score_components`.
        class_index: column of the target class.
        threshold: None for soft weights, else the hard threshold τ in [0, 1].
        stft_opts: the STFT of the decomposition (``NMFOptions.stft_opts``).
    """
    W, H, X = sc.dec.W, sc.dec.H, sc.dec.X
    if not -sc.scores.shape[2] <= class_index < sc.scores.shape[2]:
        raise UsageError(f"class_index {class_index} is out of range for {sc.scores.shape[2]} classes")
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


class ChunkStrategy(Protocol):
    """How one chunk of mono audio at the model's rate is separated: one of the methods."""

    method: str  # "ncp" | "dictionary" | "mask" | "hybrid"
    components: int | None  # NMF components per chunk; None for the mask network
    align: int  # chunks start at multiples of this (1: anywhere)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, Enhancement | None]:
        """``(2, n)`` float64 source and residual of ``x`` (n,), and the chunk's ranking (ncp only)."""


class NCPStrategy:
    """The paper's method: NMF of the chunk, its components ranked by the audio network."""

    method = "ncp"
    align = 1

    def __init__(self, loaded: LoadedModel, class_index: int, *, nmf: NMFOptions, threshold: float | None,
                 score: Callable[[np.ndarray], ScoredComponents] | None = None) -> None:
        self._loaded, self._class, self._nmf, self._threshold = loaded, class_index, nmf, threshold
        self._score = score or (lambda x: score_components(x, loaded, nmf))  # the chunk's NMF and scores
        self.components: int | None = nmf.k

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, Enhancement | None]:
        sc = self._score(x)
        e = enhance_scored(sc, self._class, threshold=self._threshold, stft_opts=self._nmf.stft_opts)
        both = torch.stack([e.source, e.residual]).double().cpu().numpy()  # (2, n)
        return both, _drop_signals(e)


class DictionaryStrategy:
    """Supervised NMF with the checkpoint's class and background dictionaries."""

    method = "dictionary"
    align = 1

    def __init__(self, dicts: Dictionaries, label: str) -> None:
        self._dicts, self._label = dicts, label
        self.components: int | None = dicts.classes[label].shape[1] + dicts.background.shape[1]

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, Enhancement | None]:
        with _cpu_threads(torch.device("cpu"), NMF_CPU_THREADS):  # the NMF's small ops, as the ncp method's
            source, residual = separate_with_dictionaries(x, self._dicts, self._label)
        return np.stack([source, residual]).astype(np.float64), None


class MaskStrategy:
    """The checkpoint's mask network (:mod:`avscene.nn.masknet`), conditioned on the class."""

    method = "mask"
    components: int | None = None

    def __init__(self, net: MaskNet, class_index: int) -> None:
        self._net, self._class = net, class_index
        self.stft_opts = STFTOptions(n_fft=net.cfg.n_fft, hop=net.cfg.hop)  # the STFT the masks are on
        # Chunks on the STFT's frame grid: with a finite receptive field (MaskNet.receptive_frames)
        # a chunk's masks then equal the unchunked ones away from its cross-faded edges.
        self.align = net.cfg.hop

    def mask(self, magnitude: torch.Tensor) -> torch.Tensor:
        """The network's mask (F, T) of the class for a magnitude ``|X|`` (F, T)."""
        device = next(self._net.parameters()).device
        index = torch.tensor([self._class], device=device)
        return self._net(magnitude.to(device)[None], index)[0]  # (F, T)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, Enhancement | None]:
        source, residual = separate_with_mask(x, self.mask, stft_opts=self.stft_opts)
        return np.stack([source, residual]).astype(np.float64), None


class HybridStrategy:
    """The mask network's and supervised NMF's masks of the class, averaged (``--method hybrid``).

    Two estimators learnt from the same weak labels by different routes (a network trained by
    mix-and-separate; spectral dictionaries of single-label clips) make different errors; the
    mean of their masks is the source's mask. On avbench it beats each of them at every SNR
    (model card).
    """

    method = "hybrid"

    def __init__(self, net: MaskNet, dicts: Dictionaries, class_index: int, label: str) -> None:
        if (net.cfg.n_fft, net.cfg.hop) != (dicts.n_fft, dicts.hop):
            raise UsageError(f"--method hybrid needs the separator and the dictionaries on one STFT; the "
                             f"checkpoint has {net.cfg.n_fft}/{net.cfg.hop} and {dicts.n_fft}/{dicts.hop}")
        self._net, self._dicts, self._label = MaskStrategy(net, class_index), dicts, label
        self.components: int | None = dicts.classes[label].shape[1] + dicts.background.shape[1]
        self.align = self._net.align

    def mask(self, magnitude: torch.Tensor) -> torch.Tensor:
        """The mean of the two masks (F, T) for a magnitude ``|X|`` (F, T)."""
        net = self._net.mask(magnitude)
        with _cpu_threads(magnitude.device, NMF_CPU_THREADS):  # the NMF's small ops, as the ncp method's
            dict_mask = dictionary_mask(magnitude, self._dicts, self._label)
        return 0.5 * (net + dict_mask.to(net.device))

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, Enhancement | None]:
        source, residual = separate_with_mask(x, self.mask, stft_opts=self._net.stft_opts)
        return np.stack([source, residual]).astype(np.float64), None
