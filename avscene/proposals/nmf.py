"""NMF component proposals (NCPs): the audio proposals used for separation.

The mixture's spectrogram ``V = |X| ** power`` is factorised as ``W H`` with
``K`` components (:func:`avscene.dsp.nmf.nmf`). Component ``k`` becomes a
time-domain *track* by soft (Wiener-like) masking of the complex mixture STFT::

    track_k = istft( m_k ⊙ X ),   m_k = (w_k h_k + eps / K) / (W H + eps)

The ``eps / K`` in the numerator makes the masks sum to exactly one over ``k``
(even where ``W H`` underflows), so ``Σ_k track_k`` is the mixture up to the
STFT round trip. Each track is then cut into *non-overlapping* 0.96-s log-mel
windows (the NCPs) that the audio network scores, as in Parekh et al. (2019),
Sec. III-D1.

Memory: the tracks are resynthesised (and their log-mel computed) in groups
of ``COMPONENT_GROUP`` components, so the peak is that many ``F x T`` complex
spectra and their inverse-STFT frames (30 s, 4 components, n_fft = 1024,
hop = 256: 4 x 513 x 1876 complex64 = 31 MB, ~120 MB with the transforms'
buffers) on top of the ``K x N`` tracks. The result is bitwise the same as
with all ``K`` at once. Long recordings are processed in chunks by the caller
(:mod:`avscene.tasks.separate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from avscene.config import PreprocessConfig
from avscene.dsp.mel import log_mel_torch
from avscene.dsp.nmf import nmf
from avscene.dsp.stft import SEPARATION_HOP, SEPARATION_N_FFT, STFTOptions, istft, stft
from avscene.errors import UsageError
from avscene.proposals.audio import frame_patches

MASK_EPS = 1e-10  # floor of W H in the masks; spread as eps / K over the components
# Components resynthesised together: bounds the masked spectra and transform buffers
# (all K = 20 at once: ~600 MB for a 30-s chunk; 4 at a time: ~150 MB), same results.
COMPONENT_GROUP = 4


@dataclass(frozen=True)
class NMFOptions:
    """How a mixture is decomposed into NMF components (see the module docstring)."""

    # Number of components K. On avbench val/sep (0 dB, 8 mixtures) an oracle
    # choice of components reaches 1.9 / 4.0 / 5.9 / 6.6 dB SDR (mixture: 0 dB)
    # at K = 5 / 10 / 20 / 40: 20 is the knee. The network scores
    # K x ceil(D / 0.96) patches, so the scoring cost grows linearly with K.
    k: int = 20
    # "kl" (generalised Kullback-Leibler on magnitudes, the usual choice for
    # music NMF) or "is" (Itakura-Saito on power spectra, Févotte et al. 2009).
    divergence: Literal["kl", "is"] = "kl"
    max_iter: int = 200  # maximum multiplicative-update iterations
    tol: float = 1e-4  # stop when the divergence decreases by less than this fraction
    seed: int = 0  # seed of the NMF initialisation: same seed, same components
    n_fft: int = SEPARATION_N_FFT  # separation STFT window/FFT size (64 ms at 16 kHz)
    hop: int = SEPARATION_HOP  # separation STFT hop (16 ms at 16 kHz)
    # Exponent of |X| that is factorised; None picks 1 (magnitude) for "kl" and
    # 2 (power, the IS-NMF generative model) for "is".
    power: float | None = None

    @property
    def stft_opts(self) -> STFTOptions:
        """The STFT these options imply."""
        return STFTOptions(n_fft=self.n_fft, hop=self.hop)

    @property
    def spectrogram_power(self) -> float:
        """The exponent actually used: ``power`` or its per-divergence default."""
        if self.power is not None:
            return self.power
        return 1.0 if self.divergence == "kl" else 2.0


@dataclass(frozen=True)
class NMFTracks:
    """NMF decomposition of one mixture and its component tracks."""

    W: torch.Tensor  # (F, K) spectral templates, columns sum to one
    H: torch.Tensor  # (K, T) activations
    X: torch.Tensor  # (F, T) complex mixture STFT
    tracks: torch.Tensor  # (K, N) time-domain component tracks; sum over K ≈ mixture
    n_iter: int  # NMF iterations run


def _as_mono(audio: np.ndarray | torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    x = torch.as_tensor(audio)
    if x.ndim != 1 or x.shape[0] == 0:
        raise UsageError(
            f"expected non-empty mono audio of shape (N,), got shape {tuple(x.shape)}; "
            "average the channels of multi-channel audio first"
        )
    if not x.is_floating_point():
        raise UsageError(
            f"audio must be floating point in [-1, 1], got dtype {x.dtype}; "
            "convert int16 PCM with x.astype(np.float32) / 32768"
        )
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x if device is None else x.to(device)


def component_masks(W: torch.Tensor, H: torch.Tensor, *, eps: float = MASK_EPS) -> torch.Tensor:
    """Soft masks ``(w_k h_k + eps/K) / (W H + eps)``, shape ``(K, F, T)``, summing to 1 over K."""
    K = W.shape[1]
    parts = W.T[:, :, None] * H[:, None, :]  # (K, F, T) = w_k h_k
    return (parts + eps / K) / (W @ H + eps)  # (K, F, T)


def masked_spectra(
    W: torch.Tensor,
    H: torch.Tensor,
    X: torch.Tensor,
    *,
    eps: float = MASK_EPS,
    components: slice = slice(None),
) -> torch.Tensor:
    """``component_masks(W, H)[components] * X``, complex ``(k, F, T)``, without a complex mask.

    ``components`` selects the masks to apply (default all ``K``); each mask
    still uses the whole model ``W H`` and ``eps / K`` with ``K = W.shape[1]``.
    """
    K = W.shape[1]
    ratio = torch.view_as_real(X / (W @ H + eps))  # (F, T, 2): X / (W H + eps)
    parts = W.T[components, :, None] * H[components, None, :] + eps / K  # (k, F, T)
    return torch.view_as_complex(parts[..., None] * ratio)  # (k, F, T) complex


def nmf_tracks(
    audio: np.ndarray | torch.Tensor,
    *,
    opts: NMFOptions = NMFOptions(),
    device: torch.device | str | None = None,
) -> NMFTracks:
    """Decompose a mono mixture into ``opts.k`` NMF component tracks.

    Args:
        audio: mono waveform ``(N,)``, float (numpy or torch).
        opts: NMF and STFT options.
        device: where to compute; ``None`` keeps the tensor's device (CPU for numpy).

    Returns:
        :class:`NMFTracks` whose ``tracks`` (K, N) sum to the mixture.

    Raises:
        UsageError: on non-mono, empty or integer audio, or invalid options.
    """
    x = _as_mono(audio, device)
    n = x.shape[0]
    so = opts.stft_opts
    X = stft(x, n_fft=so.n_fft, hop=so.hop, window=so.window)  # (F, T)
    V = X.abs() ** opts.spectrogram_power  # (F, T)
    res = nmf(
        V,
        k=opts.k,
        divergence=opts.divergence,
        max_iter=opts.max_iter,
        tol=opts.tol,
        seed=opts.seed,
    )
    tracks = torch.empty((opts.k, n), dtype=x.dtype, device=x.device)  # (K, N)
    for k0 in range(0, opts.k, COMPONENT_GROUP):
        group = slice(k0, k0 + COMPONENT_GROUP)
        masked = masked_spectra(res.W, res.H, X, components=group)  # (g, F, T) complex
        tracks[group] = istft(masked, length=n, n_fft=so.n_fft, hop=so.hop, window=so.window)  # (g, N)
    return NMFTracks(W=res.W, H=res.H, X=X, tracks=tracks, n_iter=res.n_iter)


def num_ncp_windows(n_samples: int, *, cfg: PreprocessConfig) -> int:
    """Non-overlapping 0.96-s windows covering ``n_samples``: ``max(1, ceil(N / 15360))``."""
    window_samples = cfg.patch_frames * cfg.stft_hop  # 96 * 160 = 15360 (0.96 s)
    return max(1, -(-n_samples // window_samples))  # -(-a // b) == ceil(a / b)


def ncp_patches(tracks: torch.Tensor, *, cfg: PreprocessConfig) -> tuple[torch.Tensor, np.ndarray]:
    """Log-mel NCP patches of each component track.

    Each track is zero-padded at the end to the length whose log-mel has exactly
    ``P * patch_frames`` frames, ``P = ceil(N / (0.96 s))``, and cut into ``P``
    non-overlapping windows: window ``p`` covers ``[0.96 p, 0.96 (p + 1))`` s.

    Args:
        tracks: ``(K, N)`` time-domain tracks (any device).
        cfg: preprocessing parameters (VGGish log-mel, patch size).

    Returns:
        ``(patches, times)``: ``patches`` (K, P, patch_frames, n_mels) on the
        tracks' device, ``times`` (P, 2) float64 ``[start, end)`` seconds.

    Raises:
        UsageError: if ``tracks`` is not a non-empty 2-D float tensor.
    """
    if (
        not torch.is_tensor(tracks)
        or tracks.ndim != 2
        or tracks.shape[1] == 0
        or not tracks.is_floating_point()
    ):
        raise UsageError("ncp_patches expects float tracks of shape (K, N) from nmf_tracks()")
    n_comp, n = tracks.shape
    n_win = num_ncp_windows(n, cfg=cfg)
    frames_needed = n_win * cfg.patch_frames
    target = (frames_needed - 1) * cfg.stft_hop + cfg.stft_window  # last frame ends here
    groups = []
    for k0 in range(0, n_comp, COMPONENT_GROUP):  # bounds the log-mel buffers; same values
        padded = torch.nn.functional.pad(tracks[k0:k0 + COMPONENT_GROUP], (0, target - n))  # (g, target)
        spec = log_mel_torch(padded, cfg=cfg)  # (g, frames_needed, n_mels)
        groups.append(frame_patches(
            spec, patch_frames=cfg.patch_frames, patch_hop=cfg.patch_frames, n_patches=n_win
        ))  # (g, P, patch_frames, n_mels)
    patches = torch.cat(groups)  # (K, P, patch_frames, n_mels)
    starts = np.arange(n_win, dtype=np.float64) * cfg.patch_seconds
    times = np.stack([starts, starts + cfg.patch_seconds], axis=1)  # (P, 2)
    return patches, times
