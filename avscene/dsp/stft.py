"""Complex STFT / inverse STFT for source separation (torch, CPU or GPU).

This is the *separation* transform, distinct from the VGGish analysis front end
in :mod:`avscene.dsp.mel` (25 ms / 10 ms). NMF factorises ``|X|`` of this STFT
and the separated sources are resynthesised from masked ``X`` with
:func:`istft`, so the pair must reconstruct perfectly.

Defaults for 16 kHz audio:

* ``n_fft = 1024`` (64 ms Hann window): bins are 16000 / 1024 = 15.6 Hz apart,
  so the partials of harmonic instruments are resolved down to fundamentals of
  about 60 Hz (a Hann main lobe spans 4 bins = 62.5 Hz), which is what lets one
  NMF component capture one note's harmonic comb. Longer windows would smear
  onsets (drums, plucked strings) further.
* ``hop = 256`` (16 ms, 75 % overlap): a periodic Hann window at 75 % overlap
  satisfies the constant-overlap-add condition, and 16 ms keeps onsets sharp.

Both functions follow the input tensor's device and dtype (float32 → complex64,
float64 → complex128). Frames are centred (``center=True``) with zero padding,
so frame ``t`` is centred on sample ``t * hop`` and there are ``1 + N // hop``
frames whenever ``hop <= n_fft // 2`` (the defaults). With a longer hop those
frames can end before the signal does, so :func:`num_frames` adds the one frame
that covers the tail (otherwise the last samples would not be analysed at all
and :func:`istft` would return zeros there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avscene.errors import UsageError

SAMPLE_RATE = 16000  # Hz, the rate these defaults are chosen for
SEPARATION_N_FFT = 1024  # 64 ms at 16 kHz: 15.6-Hz bins resolve harmonic partials
SEPARATION_HOP = 256  # 16 ms at 16 kHz: n_fft / 4, 75 % overlap (Hann COLA)
WINDOWS = ("hann",)  # supported analysis/synthesis windows


@dataclass(frozen=True)
class STFTOptions:
    """Parameters of the separation STFT (see the module docstring)."""

    n_fft: int = SEPARATION_N_FFT  # window length = FFT size, samples
    hop: int = SEPARATION_HOP  # frame hop, samples; must be < n_fft
    window: str = "hann"  # periodic Hann; the only window supported


def _check_params(n_fft: int, hop: int, window: str) -> None:
    if window not in WINDOWS:
        raise UsageError(f"unknown STFT window {window!r}: use one of {list(WINDOWS)}")
    if n_fft < 2:
        raise UsageError(f"n_fft must be >= 2, got {n_fft}")
    if not 1 <= hop < n_fft:
        # hop == n_fft leaves samples where every periodic-Hann frame is zero,
        # so the inverse STFT is undefined there (NOLA fails).
        raise UsageError(f"hop must be in [1, n_fft) = [1, {n_fft}), got {hop}")


def num_frames(n_samples: int, *, n_fft: int = SEPARATION_N_FFT, hop: int = SEPARATION_HOP) -> int:
    """Frames :func:`stft` returns for ``n_samples`` samples.

    ``1 + N // hop`` (torch's centred count), or one more when ``hop > n_fft // 2``
    and the last of those frames ends before sample ``N - 1``. Frame ``t`` covers
    samples ``[t * hop - n_fft // 2, t * hop - n_fft // 2 + n_fft)``.
    """
    pad = n_fft // 2
    centred = 1 + (n_samples + 2 * pad - n_fft) // hop  # torch.stft(center=True)
    reach = max(0, n_samples - n_fft + pad)  # the last frame must start at or after this
    return max(centred, 1 + -(-reach // hop))  # -(-a // b) == ceil(a / b)


def _window(n_fft: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.hann_window(n_fft, periodic=True, dtype=dtype, device=device)


def _as_signal(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.is_complex():
        raise UsageError("stft expects a real signal; got a complex tensor")
    if not x.is_floating_point():
        raise UsageError(
            f"stft expects a floating-point signal, got dtype {x.dtype}; "
            "convert int16 PCM with x.astype(np.float32) / 32768"
        )
    if x.ndim == 0 or x.shape[-1] == 0:
        raise UsageError(f"stft expects a non-empty signal of shape (..., N), got {tuple(x.shape)}")
    return x


def stft(
    x: np.ndarray | torch.Tensor,
    *,
    n_fft: int = SEPARATION_N_FFT,
    hop: int = SEPARATION_HOP,
    window: str = "hann",
) -> torch.Tensor:
    """Complex short-time Fourier transform.

    Args:
        x: real floating-point signal of shape ``(..., N)`` (numpy arrays are
            converted). The result lives on ``x``'s device.
        n_fft: window length and FFT size in samples.
        hop: hop between frames in samples (``1 <= hop < n_fft``).
        window: window name; only ``"hann"`` (periodic) is supported.

    Returns:
        Complex tensor of shape ``(..., n_fft // 2 + 1, num_frames(N))``
        (``1 + N // hop`` frames when ``hop <= n_fft // 2``).

    Raises:
        UsageError: on an unknown window, bad sizes, or an empty, complex or
            integer input.
    """
    _check_params(n_fft, hop, window)
    x = _as_signal(x)
    lead, n = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, n)  # (B, N)
    # Zero samples after the end make torch add the frame that covers the tail (hop > n_fft // 2).
    pad = n_fft // 2
    tail = (num_frames(n, n_fft=n_fft, hop=hop) - 1) * hop + n_fft - 2 * pad - n
    if tail > 0:
        flat = torch.nn.functional.pad(flat, (0, tail))  # (B, N + tail)
    spec = torch.stft(
        flat,
        n_fft=n_fft,
        hop_length=hop,
        window=_window(n_fft, x.dtype, x.device),
        center=True,
        pad_mode="constant",  # zero padding: works for signals shorter than n_fft // 2
        return_complex=True,
    )  # (B, F, T)
    return spec.reshape(*lead, *spec.shape[-2:])  # (..., F, T)


def istft(
    X: torch.Tensor,
    *,
    length: int,
    n_fft: int = SEPARATION_N_FFT,
    hop: int = SEPARATION_HOP,
    window: str = "hann",
) -> torch.Tensor:
    """Inverse of :func:`stft` (weighted overlap-add), trimmed/padded to ``length``.

    Args:
        X: complex STFT of shape ``(..., n_fft // 2 + 1, T)``.
        length: number of output samples ``N``.
        n_fft: window length used by :func:`stft`.
        hop: hop used by :func:`stft`.
        window: window used by :func:`stft`.

    Returns:
        Real tensor of shape ``(..., length)`` on ``X``'s device.

    Raises:
        UsageError: if ``X`` is not complex, its frequency axis does not match
            ``n_fft``, or ``length`` is not positive.
    """
    _check_params(n_fft, hop, window)
    if not torch.is_tensor(X) or not X.is_complex() or X.ndim < 2:
        raise UsageError("istft expects a complex tensor of shape (..., F, T) from stft()")
    n_freq = n_fft // 2 + 1
    if X.shape[-2] != n_freq:
        raise UsageError(
            f"istft: spectrogram has {X.shape[-2]} frequency bins but n_fft={n_fft} "
            f"implies {n_freq}; pass the n_fft used by stft()"
        )
    if length < 1:
        raise UsageError(f"istft: length must be >= 1, got {length}")
    lead, (n_f, n_t) = X.shape[:-2], X.shape[-2:]
    real_dtype = X.real.dtype
    y = torch.istft(
        X.reshape(-1, n_f, n_t),  # (B, F, T)
        n_fft=n_fft,
        hop_length=hop,
        window=_window(n_fft, real_dtype, X.device),
        center=True,
        length=length,
    )  # (B, length)
    return y.reshape(*lead, length)
