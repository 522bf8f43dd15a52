"""VGGish-compatible log-mel spectrogram (numpy and torch).

Matches ``mel_features.log_mel_spectrogram`` + ``vggish_input.waveform_to_examples``
of tensorflow/models ``research/audioset``:

* frames of ``stft_window`` samples every ``stft_hop`` samples, no centre
  padding (``1 + (N - window) // hop`` frames; the last incomplete frame is
  dropped), frame ``f`` covering samples ``[f * hop, f * hop + window)``;
* a *periodic* Hann window, ``n_fft``-point real FFT, magnitude (not power);
* an HTK-mel triangular filterbank whose DC row is zeroed (HTK ignores DC);
* ``log(mel + log_offset)``.

All parameters come from :class:`avscene.config.PreprocessConfig`, whose defaults are
VGGish's values.

Cost of one 10-s clip (998 frames) on a shared 2-core CPU: ``log_mel`` ~2.3 ms,
``log_mel_torch`` ~0.8 ms. Both agree with a float64 reference to ~2e-6.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import scipy.fft

from avscene.config import PreprocessConfig
from avscene.errors import ConfigError, UsageError

if TYPE_CHECKING:  # torch is imported lazily, inside log_mel_torch
    import torch

# HTK mel scale: mel(f) = 1127 ln(1 + f / 700)  (= 2595 log10(1 + f / 700)).
MEL_BREAK_HZ = 700.0
MEL_HIGH_Q = 1127.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Convert frequencies in Hz to the HTK mel scale (``1127 ln(1 + f/700)``)."""
    return MEL_HIGH_Q * np.log1p(np.asarray(hz, dtype=np.float64) / MEL_BREAK_HZ)


def periodic_hann(length: int) -> np.ndarray:
    """Periodic Hann window ``0.5 - 0.5 cos(2 pi n / length)``, ``n = 0..length-1``.

    This is the "periodic" (DFT-even) form VGGish uses, not the symmetric
    ``np.hanning``. Returns a float64 array of shape ``(length,)``.
    """
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def _check_mel_params(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> None:
    nyquist = sample_rate / 2.0
    if not 0.0 <= fmin < fmax <= nyquist:
        raise ConfigError(
            f"mel band edges must satisfy 0 <= fmin < fmax <= sample_rate/2 = {nyquist:g} Hz, "
            f"got fmin={fmin:g}, fmax={fmax:g}; fix fmin/fmax in the preprocessing config"
        )
    if n_fft < 2 or n_mels <= 0:
        raise ConfigError(
            f"need n_fft >= 2 and n_mels > 0, got n_fft={n_fft}, n_mels={n_mels}; "
            "fix the preprocessing config"
        )


def _check_config(cfg: PreprocessConfig) -> None:
    _check_mel_params(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    if not 0 < cfg.stft_window <= cfg.n_fft or cfg.stft_hop <= 0:
        raise ConfigError(
            f"need 0 < stft_window <= n_fft and stft_hop > 0, got stft_window={cfg.stft_window}, "
            f"n_fft={cfg.n_fft}, stft_hop={cfg.stft_hop}; fix the preprocessing config"
        )


@lru_cache(maxsize=8)
def _cached_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    n_freqs = n_fft // 2 + 1
    bins_mel = hz_to_mel(np.linspace(0.0, sample_rate / 2.0, n_freqs))  # (n_freqs,)
    edges = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)  # (n_mels + 2,)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]  # (n_mels,) each
    # Triangles are linear in the mel domain (not in Hz), peak 1 at the centre.
    rising = (bins_mel[:, None] - lower) / (centre - lower)  # (n_freqs, n_mels)
    falling = (upper - bins_mel[:, None]) / (upper - centre)  # (n_freqs, n_mels)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # HTK excludes the DC bin
    weights.setflags(write=False)
    return weights


def mel_filterbank(
    *, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """HTK mel filterbank with ``mel_features.spectrogram_to_mel_matrix`` semantics.

    Args:
        sample_rate: Sampling rate of the audio in Hz.
        n_fft: FFT size; the spectrogram has ``n_fft // 2 + 1`` bins spanning
            ``[0, sample_rate / 2]``.
        n_mels: Number of triangular bands.
        fmin: Lower edge of the first band in Hz.
        fmax: Upper edge of the last band in Hz (at most Nyquist).

    Returns:
        Read-only float64 matrix ``(n_fft // 2 + 1, n_mels)`` that right-multiplies
        a magnitude spectrogram ``(F, n_fft // 2 + 1)``. Row 0 (DC) is zero.

    Raises:
        ConfigError: if the band edges or sizes are inconsistent.
    """
    _check_mel_params(sample_rate, n_fft, n_mels, fmin, fmax)
    return _cached_filterbank(int(sample_rate), int(n_fft), int(n_mels), float(fmin), float(fmax))


def _filterbank_of(cfg: PreprocessConfig) -> np.ndarray:
    return mel_filterbank(
        sample_rate=cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
    )


def num_frames(n_samples: int, *, cfg: PreprocessConfig) -> int:
    """Number of log-mel frames of ``n_samples`` samples: ``1 + (N - window) // hop``, or 0."""
    if n_samples < cfg.stft_window:
        return 0
    return 1 + (n_samples - cfg.stft_window) // cfg.stft_hop


def as_mono_float32(audio: np.ndarray | torch.Tensor, *, caller: str = "log_mel",
                    allow_empty: bool = True) -> np.ndarray:
    """``audio`` as a (N,) float32 numpy array, or a UsageError naming ``caller`` and the fix.

    Accepts numpy arrays and torch tensors (converted without importing torch).
    """
    if hasattr(audio, "detach"):  # a torch.Tensor, converted without importing torch
        audio = audio.detach().cpu().numpy()
    x = np.asarray(audio)
    if x.ndim != 1 or (x.shape[0] == 0 and not allow_empty):
        raise UsageError(
            f"{caller} needs {'' if allow_empty else 'non-empty '}mono audio of shape (N,), got shape "
            f"{x.shape}; average the channels of multi-channel audio"
            + ("" if allow_empty else ", and skip clips without audio")
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise UsageError(
            f"audio must be floating point in [-1, 1], got dtype {x.dtype}; "
            "convert int16 PCM with x.astype(np.float32) / 32768"
        )
    return x.astype(np.float32, copy=False)


def log_mel(audio: np.ndarray | torch.Tensor, *, cfg: PreprocessConfig) -> np.ndarray:
    """VGGish log-mel spectrogram of a mono waveform.

    Args:
        audio: Mono waveform ``(N,)``, float in [-1, 1] at ``cfg.sample_rate``;
            a numpy array or a torch tensor (moved to CPU).
        cfg: Preprocessing parameters (window, hop, FFT size, mel bands, offset).

    Returns:
        float32 array ``(F, cfg.n_mels)`` with ``F = 1 + (N - window) // hop``
        (``F = 0`` when ``N < window``: no complete frame).

    Raises:
        UsageError: if the audio is not 1-D floating point.
        ConfigError: if ``cfg`` is inconsistent.
    """
    _check_config(cfg)
    x = as_mono_float32(audio)
    n_frames = num_frames(x.shape[0], cfg=cfg)
    if n_frames == 0:
        return np.zeros((0, cfg.n_mels), dtype=np.float32)
    # Read n_fft samples per frame and zero the tail with a zero-padded window:
    # identical to zero-padding each windowed frame, but one multiply builds the
    # contiguous FFT input. The signal is padded so the last frame stays in bounds.
    tail = cfg.n_fft - cfg.stft_window
    x = np.concatenate([x, np.zeros(tail, dtype=np.float32)]) if tail else x
    frames = np.lib.stride_tricks.as_strided(
        x,
        shape=(n_frames, cfg.n_fft),  # (F, n_fft), a view: no copy
        strides=(x.strides[0] * cfg.stft_hop, x.strides[0]),
        writeable=False,
    )
    window = np.zeros(cfg.n_fft, dtype=np.float32)
    window[: cfg.stft_window] = periodic_hann(cfg.stft_window)
    # scipy.fft keeps float32 (complex64) and is ~10x faster than np.fft here.
    spectrum = np.abs(scipy.fft.rfft(frames * window, axis=-1))  # (F, n_fft//2+1)
    fb = _filterbank_of(cfg).astype(np.float32)
    mel = spectrum @ fb  # (F, n_mels)
    return np.log(mel + np.float32(cfg.log_offset)).astype(np.float32, copy=False)


def log_mel_torch(audio: torch.Tensor | np.ndarray, *, cfg: PreprocessConfig) -> torch.Tensor:
    """Batched torch version of :func:`log_mel` (same numbers, any device).

    Args:
        audio: Waveforms ``(..., N)`` (e.g. ``(K, N)`` NMF tracks), float, on any
            device; a numpy array is converted to a CPU tensor.
        cfg: Preprocessing parameters.

    Returns:
        Tensor ``(..., F, cfg.n_mels)`` on ``audio``'s device, float32 (float64
        input stays float64), ``F = 1 + (N - window) // hop`` (0 if ``N < window``).

    Raises:
        UsageError: if the audio is not floating point or is 0-dimensional.
        ConfigError: if ``cfg`` is inconsistent.
    """
    import torch

    _check_config(cfg)
    x = torch.as_tensor(audio)
    if x.ndim == 0 or not x.is_floating_point():
        raise UsageError(
            f"log_mel_torch expects floating-point audio of shape (..., N), got dtype {x.dtype} "
            f"and shape {tuple(x.shape)}; convert int16 PCM with x.float() / 32768"
        )
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    n_frames = num_frames(x.shape[-1], cfg=cfg)
    if n_frames == 0:
        return x.new_zeros((*x.shape[:-1], 0, cfg.n_mels))
    frames = x.unfold(-1, cfg.stft_window, cfg.stft_hop)  # (..., F, window), a view
    window = torch.as_tensor(periodic_hann(cfg.stft_window), dtype=x.dtype, device=x.device)
    spectrum = torch.fft.rfft(frames * window, n=cfg.n_fft, dim=-1).abs()  # (..., F, n_fft//2+1)
    fb = _filterbank_of(cfg)
    mel = spectrum @ torch.tensor(fb, dtype=x.dtype, device=x.device)  # (..., F, n_mels)
    return torch.log(mel + cfg.log_offset)
