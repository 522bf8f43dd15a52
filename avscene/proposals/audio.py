"""Temporal segment proposals (TSPs): overlapping 0.96-s log-mel patches.

Patch ``i`` covers ``[i * hop_s, i * hop_s + patch_s)`` seconds, with
``patch_s = 0.96`` and ``hop_s = 0.48`` for the default config, so a clip of
duration ``D`` gives ``P = max(1, ceil((D - 0.96) / 0.48) + 1)`` patches
(10 s -> 20, 1.0 s -> 2, 0.96 s -> 1, 0.2 s -> 1).

To cover every sample, the *waveform* is zero-padded at the end before the
log-mel is computed, up to the length whose last complete STFT frame ends the
last patch: ``(F_needed - 1) * stft_hop + stft_window`` samples with
``F_needed = (P - 1) * patch_hop + patch_frames``. Padded frames read
``log(0 + 0.01)`` where no signal remains, exactly what VGGish gives silence.
(Frame ``f`` covers samples ``[f * hop, f * hop + window)``, so a patch spans
``0.96 s + (window - hop) / sr = 0.9775 s`` of signal; its nominal interval is
the 0.96 s of its frame starts.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from avscene.config import PreprocessConfig
from avscene.dsp.mel import as_mono_float32, log_mel
from avscene.errors import UsageError

if TYPE_CHECKING:
    import torch

# A patch belongs to the 1-s segment containing its centre; the epsilon keeps a
# centre that is an exact integer in decimal (0.48 * 25 = 12.0) from flooring
# down through binary rounding (11.999999999999998).
_SEGMENT_EPS_S = 1e-9


@dataclass(frozen=True)
class ProposalTimes:
    """Where each audio proposal lies in time: all that temporal outputs need of a bag."""

    times: np.ndarray  # (P, 2) float64 [start, end) seconds of each proposal
    component: np.ndarray | None = None  # (P,) int: NMF component of an NCP, -1 for a TSP; None: all TSPs

    def windows(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-proposal scores → per-time-window scores, for temporal outputs. (P, C) → (W, C), (W, 2).

        TSPs are their own windows. In an NCP-only bag the components of one window
        are summed (the window's share of the bag score), in the order they appear; in a
        mixed bag the TSPs are used. Windows come out in time order.
        """
        if self.component is None:
            return scores, self.times
        tsp = self.component < 0
        if tsp.any():
            return scores[tsp], self.times[tsp]
        starts, first, which = np.unique(self.times[:, 0], return_index=True, return_inverse=True)
        summed = np.zeros((len(starts), *scores.shape[1:]), dtype=scores.dtype)  # (W, C)
        np.add.at(summed, which, scores)  # row order: component 0 first, as in the bag
        return summed, self.times[first]


@dataclass(frozen=True)
class AudioProposals:
    """The audio proposals of one clip (TSPs here; NCP bags in ``avscene.proposals.bags``)."""

    patches: np.ndarray  # (P, patch_frames, n_mels) float32 log-mel, e.g. (20, 96, 64)
    times: np.ndarray  # (P, 2) float64 [start, end) seconds of each patch
    component: np.ndarray | None = None  # (P,) int: NMF component of an NCP, -1 for a TSP; None: all TSPs

    @property
    def timing(self) -> ProposalTimes:
        """The proposals' times without their patches."""
        return ProposalTimes(self.times, self.component)

    def windows(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`ProposalTimes.windows`. (P, C) → (W, C), (W, 2)."""
        return self.timing.windows(scores)


def num_patches(n_samples: int, *, cfg: PreprocessConfig) -> int:
    """Number of TSPs of a clip of ``n_samples`` samples (at least 1).

    Integer form of ``max(1, ceil((D - patch_s) / hop_s) + 1)`` with
    ``D = n_samples / sample_rate``, so no float rounding can add a patch.
    """
    patch_samples = cfg.patch_frames * cfg.stft_hop  # 96 * 160 = 15360 (0.96 s)
    hop_samples = cfg.patch_hop * cfg.stft_hop  # 48 * 160 = 7680 (0.48 s)
    extra = n_samples - patch_samples
    return max(1, -(-extra // hop_samples) + 1)  # -(-a // b) == ceil(a / b)


def patch_times(n_patches: int, *, cfg: PreprocessConfig, first: int = 0) -> np.ndarray:
    """``(P, 2)`` float64 ``[start, end)`` seconds of patches ``i = first .. first + P - 1``:
    ``[i * hop_s, i * hop_s + patch_s)``."""
    starts = np.arange(first, first + n_patches, dtype=np.float64) * cfg.patch_hop_seconds
    return np.stack([starts, starts + cfg.patch_seconds], axis=1)  # (P, 2)


def patch_segments(times: np.ndarray) -> np.ndarray:
    """1-s segment index of each patch: ``floor(centre)``, centre = midpoint of ``times``.

    Args:
        times: ``(P, 2)`` ``[start, end)`` seconds, as in :class:`AudioProposals`.

    Returns:
        ``(P,)`` int64 segment indices (patch ``i`` of the default config: ``floor(0.48 (i + 1))``).
    """
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 2 or times.shape[1] != 2:
        raise UsageError(f"times must have shape (P, 2) [start, end], got {times.shape}")
    centres = times.mean(axis=1)  # (P,)
    return np.floor(centres + _SEGMENT_EPS_S).astype(np.int64)


def frame_patches(
    logmel: np.ndarray | torch.Tensor, *, patch_frames: int, patch_hop: int, n_patches: int
) -> np.ndarray | torch.Tensor:
    """Cut a log-mel spectrogram into fixed-size patches along time.

    Args:
        logmel: ``(..., F, n_mels)`` numpy array or torch tensor (leading batch
            dims, e.g. NMF tracks, are kept).
        patch_frames: Frames per patch (96).
        patch_hop: Frames between patch starts (48 for TSPs, 96 for the
            non-overlapping NCP windows).
        n_patches: Number of patches to return; needs
            ``F >= (n_patches - 1) * patch_hop + patch_frames``.

    Returns:
        ``(..., n_patches, patch_frames, n_mels)``, same type as ``logmel``
        (a contiguous copy for numpy).

    Raises:
        UsageError: if ``logmel`` has too few frames or the sizes are not positive.
    """
    if min(patch_frames, patch_hop, n_patches) <= 0 or logmel.ndim < 2:
        raise UsageError(
            f"need patch_frames, patch_hop, n_patches > 0 and logmel (..., F, n_mels), got "
            f"{patch_frames}, {patch_hop}, {n_patches} and shape {tuple(logmel.shape)}"
        )
    needed = (n_patches - 1) * patch_hop + patch_frames
    n_frames = logmel.shape[-2]
    if n_frames < needed:
        raise UsageError(
            f"{n_patches} patches of {patch_frames} frames every {patch_hop} need {needed} "
            f"log-mel frames, got {n_frames}; zero-pad the waveform before log_mel "
            "(audio_proposals does this)"
        )
    cut = logmel[..., :needed, :]
    if isinstance(cut, np.ndarray):
        views = np.lib.stride_tricks.sliding_window_view(cut, patch_frames, axis=-2)
        # (..., needed - patch_frames + 1, n_mels, patch_frames) -> every patch_hop-th window
        windows = views[..., ::patch_hop, :, :]  # (..., n_patches, n_mels, patch_frames)
        patches = np.swapaxes(windows, -1, -2)  # (..., n_patches, patch_frames, n_mels)
        return patches.copy()  # a writable C-contiguous array (one patch would be a read-only view)
    windows = cut.unfold(-2, patch_frames, patch_hop)  # (..., n_patches, n_mels, patch_frames)
    return windows.transpose(-1, -2)  # (..., n_patches, patch_frames, n_mels)


def padded_length(n_patches: int, *, cfg: PreprocessConfig) -> int:
    """Samples needed for ``n_patches`` TSPs: the end of the last patch's last STFT frame."""
    frames_needed = (n_patches - 1) * cfg.patch_hop + cfg.patch_frames  # 1008 for 20 patches
    return (frames_needed - 1) * cfg.stft_hop + cfg.stft_window  # 161520 for 20 patches


def audio_proposals(audio: np.ndarray | torch.Tensor, *, cfg: PreprocessConfig) -> AudioProposals:
    """Temporal segment proposals of a mono clip.

    Args:
        audio: Mono waveform ``(N,)`` float in [-1, 1] at ``cfg.sample_rate``
            (numpy array or torch tensor), ``N >= 1``.
        cfg: Preprocessing parameters (mel and patch sizes).

    Returns:
        :class:`AudioProposals` with ``P = num_patches(N)`` patches
        ``(P, patch_frames, n_mels)`` and their ``(P, 2)`` times. The waveform
        is zero-padded at the end (see the module docstring) so the last patch
        is complete.

    Raises:
        UsageError: if the audio is empty, not 1-D, or not floating point.
    """
    x = as_mono_float32(audio, caller="audio_proposals", allow_empty=False)
    n_patches = num_patches(x.shape[0], cfg=cfg)
    target = padded_length(n_patches, cfg=cfg)
    # num_patches guarantees target > N: the last patch always reaches past the end.
    padded = np.zeros(target, dtype=np.float32)
    padded[: x.shape[0]] = x
    spec = log_mel(padded, cfg=cfg)  # (F_needed, n_mels)
    patches = frame_patches(
        spec, patch_frames=cfg.patch_frames, patch_hop=cfg.patch_hop, n_patches=n_patches
    )
    return AudioProposals(patches=patches, times=patch_times(n_patches, cfg=cfg))


def band_means(patches: np.ndarray) -> np.ndarray:
    """Mean log-mel of each band over patches ``(P, F, n_mels)`` → ``(n_mels,)`` float32."""
    return np.asarray(patches, dtype=np.float64).mean(axis=(0, 1)).astype(np.float32)


class BandMeans:
    """:func:`band_means` of patches that arrive in pieces (:meth:`push`), equal to that of them all."""

    def __init__(self) -> None:
        self._sum: np.ndarray | None = None  # (n_mels,) float64
        self._count = 0  # frames summed

    def push(self, patches: np.ndarray | None) -> None:
        if patches is None or not len(patches):
            return
        x = np.asarray(patches, dtype=np.float64)  # (P, F, n_mels)
        part = x.sum(axis=(0, 1))
        self._sum = part if self._sum is None else self._sum + part
        self._count += x.shape[0] * x.shape[1]

    def value(self) -> np.ndarray | None:
        """The means so far (``(n_mels,)`` float32), None before any patch."""
        return None if self._sum is None else (self._sum / self._count).astype(np.float32)


def band_offset(audio: np.ndarray | None, *, cfg: PreprocessConfig,
                patches: np.ndarray | None = None) -> np.ndarray | None:
    """What ``cfg.band_norm`` subtracts from every audio proposal of ``audio``: the mean log-mel of
    each band over its TSPs, ``(n_mels,)`` float32; None when ``cfg.band_norm`` is off.

    A fixed equaliser or gain of the recording adds a constant per band to the log-mel; after
    the subtraction it is gone, so two recordings of one event that differ by their channel
    give the same input. Inference on a file takes the means of the whole file (a first pass
    over its audio), training those of the clip, separation those of the chunk it works on.
    ``patches``: the TSPs of ``audio`` when the caller has them already (``audio`` may then be None).
    """
    if not cfg.band_norm:
        return None
    return band_means(audio_proposals(audio, cfg=cfg).patches if patches is None else patches)


def normalise_bands(patches: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
    """``patches (..., F, n_mels) - offset (n_mels,)`` as float32; the patches themselves when ``offset`` is None."""
    if offset is None:
        return patches
    return (np.asarray(patches, dtype=np.float32) - np.asarray(offset, dtype=np.float32)).astype(np.float32)


class TSPStream:
    """:func:`audio_proposals` of a waveform that arrives in consecutive pieces.

    :meth:`push` returns the patches that the samples so far complete, :meth:`finish` the
    rest (zero-padded as :func:`audio_proposals` pads). Together they are exactly
    ``audio_proposals`` of the whole waveform: patch ``i`` starts at sample
    ``i * patch_hop * stft_hop``, a whole number of STFT hops, so its log-mel frames are
    computed from the same samples. Only the samples of unfinished patches are kept
    (< 1.5 patches).
    """

    def __init__(self, *, cfg: PreprocessConfig) -> None:
        self._cfg = cfg
        self._hop = cfg.patch_hop * cfg.stft_hop  # 7680 samples between patch starts
        self._span = (cfg.patch_frames - 1) * cfg.stft_hop + cfg.stft_window  # 15600 samples a patch reads
        self._tail = np.zeros(0, dtype=np.float32)  # samples from patch `_next` on
        self._next = 0  # index of the first patch not yet returned
        self._seen = 0  # samples pushed

    def push(self, audio: np.ndarray) -> AudioProposals | None:
        """Add the next ``(n,)`` samples; the patches they complete, or None."""
        new = as_mono_float32(audio, caller="audio_proposals", allow_empty=False)  # (n,)
        x = np.concatenate([self._tail, new])  # (m,): unfinished patches, then the new samples
        self._seen += len(new)
        count = (len(x) - self._span) // self._hop + 1 if len(x) >= self._span else 0
        if count == 0:
            self._tail = x
            return None
        used = (count - 1) * self._hop + self._span
        spec = log_mel(x[:used], cfg=self._cfg)  # ((count - 1) * 48 + 96, n_mels)
        patches = frame_patches(spec, patch_frames=self._cfg.patch_frames,
                                patch_hop=self._cfg.patch_hop, n_patches=count)
        out = AudioProposals(patches=patches, times=patch_times(count, cfg=self._cfg, first=self._next))
        self._tail, self._next = x[count * self._hop:].copy(), self._next + count
        return out

    def finish(self) -> AudioProposals | None:
        """The remaining patches (at least one); None if no sample was pushed."""
        if self._seen == 0:
            return None
        # num_patches(seen) > _next: push() only returns patches whose samples all exist
        rest = num_patches(self._seen, cfg=self._cfg) - self._next
        padded = np.zeros(padded_length(rest, cfg=self._cfg), dtype=np.float32)
        padded[: len(self._tail)] = self._tail
        spec = log_mel(padded, cfg=self._cfg)
        patches = frame_patches(spec, patch_frames=self._cfg.patch_frames,
                                patch_hop=self._cfg.patch_hop, n_patches=rest)
        self._tail = np.zeros(0, dtype=np.float32)
        return AudioProposals(patches=patches, times=patch_times(rest, cfg=self._cfg, first=self._next))
