"""Timbre perturbations for training: pitch shift without tempo change and frequency-axis warps.

Another sample set of the same instrument differs from the training one in its exact pitch
range, its formants and its spectral envelope; these functions move a recording along those
axes while keeping its rhythm and note timing, which carry the class.

``pitch_shift`` uses torchaudio's phase vocoder (``torchaudio.functional.phase_vocoder``) to
stretch the time axis by the pitch ratio and then resamples back to the original length.
``torchaudio.functional.pitch_shift`` does the same, but resamples with a polyphase kernel
built from the exact rational ratio, which takes ~30-60 s for a 10-s clip at 16 kHz (measured
here) — too slow for on-line augmentation; the linear-interpolation resampling below takes
milliseconds and its aliasing (only when shifting up) stays far below the noise added anyway.
"""

from __future__ import annotations

import math

import numpy as np

PV_FFT = 512  # phase-vocoder frame: 32 ms at 16 kHz, the resolution of a note's partials
PV_HOP = PV_FFT // 4  # 75 % overlap, the phase vocoder's usual hop


def pitch_shift(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Shift the pitch by ``semitones`` keeping the duration. (N,) float32 → (N,) float32.

    ``semitones == 0`` returns the input unchanged.
    """
    import torch
    import torchaudio.functional as AF

    if semitones == 0 or len(audio) < PV_FFT:
        return audio
    rate = 2.0 ** (semitones / 12.0)  # > 1: higher pitch
    x = torch.from_numpy(np.ascontiguousarray(audio, np.float32))
    window = torch.hann_window(PV_FFT)
    spec = torch.stft(x, PV_FFT, PV_HOP, window=window, return_complex=True)  # (F, T)
    advance = torch.linspace(0, math.pi * PV_HOP, PV_FFT // 2 + 1)[:, None]  # (F, 1) expected phase step
    stretched = AF.phase_vocoder(spec, 1.0 / rate, advance)  # (F, T * rate): duration x rate
    y = torch.istft(stretched, PV_FFT, PV_HOP, window=window, length=int(round(len(x) * rate))).numpy()
    # read the stretched signal `rate` times faster: back to N samples, every frequency x rate
    return np.interp(np.arange(len(audio)) * rate, np.arange(len(y)), y).astype(np.float32)


def warp_points(n: int, shift: float) -> np.ndarray:
    """A monotone piecewise-linear map of ``[0, n-1]`` onto itself whose middle moves by
    ``shift`` (a fraction of ``n``, |shift| < 0.5): where output bin ``i`` reads the input. (n,)."""
    mid = (n - 1) / 2
    src_mid = float(np.clip(mid + shift * n, 1.0, n - 2.0))
    i = np.arange(n, dtype=np.float64)
    return np.where(i <= mid, i * src_mid / mid, src_mid + (i - mid) * (n - 1 - src_mid) / (n - 1 - mid))


def warp_frequency(spec: np.ndarray, shift: float) -> np.ndarray:
    """Warp the last (frequency) axis of ``spec`` by ``warp_points``: (..., F) → (..., F).

    A positive ``shift`` stretches the lower half and squeezes the upper one (formants and
    partials move up in the low band); ``shift == 0`` is the identity.
    """
    if shift == 0:
        return spec
    n = spec.shape[-1]
    src = warp_points(n, shift)  # (F,) fractional input bin of each output bin
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = (src - lo).astype(spec.dtype)
    return spec[..., lo] * (1 - frac) + spec[..., hi] * frac
