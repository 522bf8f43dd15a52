"""A procedural bank of background noise: many families of every texture, deterministic by seed.

Pure numpy/scipy, no I/O. Each family is a generator of one kind of background sound whose
internal parameters (rates, bands, tilts, fundamental frequencies, envelopes …) are drawn from
the random generator on every call, so one family is a whole distribution of sounds.

**Textures.** Every family has one of :data:`TEXTURES`: ``stationary`` (coloured noise, hum,
rain), ``impulsive`` (clicks, steps, typing, crackle at random rates and densities), ``tonal``
(steady or gliding sinusoids), ``modulated`` (noise under a slow or periodic envelope: gusts,
swells, pass-bys), ``harmonic`` (harmonic complexes: drones, buzz, engines), ``speech``
(babble: formant-filtered glottal pulse trains under a syllabic envelope) and ``mixture``
(two or three families of the same split summed at random levels).

**Splits.** Each texture has families on both sides. :data:`TRAIN_FAMILIES` may be used by the
training code (:func:`training_noise` draws only from them); :data:`HELDOUT_FAMILIES` are for
evaluation only and are built by *other mechanisms or parameter ranges* than the training
families of the same texture (resonant peaks rather than a spectral tilt, a bursty renewal
process rather than Poisson clicks, fast high chirps rather than steady tones, pass-by swells
rather than gusts, engine firing harmonics rather than drones, a far-field crowd with whispers
rather than a close voiced babble), so they test generalisation, not memory.

**What the bank never makes.** The bank supplies label-free backgrounds and negatives for the
avbench classes, so it synthesises nothing that *is* one of them: no two-tone or wailing
sirens (no slow periodic pitch sweeps), no periodic beeps (tones last ≥ 1.5 s; chirps are
≥ 2 kHz, ≤ 200 ms and aperiodic), no bell rings (no decaying inharmonic partials), no horns
(no sustained two-tone or chord blasts) and no instrument notes (harmonic families are steady
drones or buzz without note onsets or melodies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from avscene.dsp import noise_families as fam
from avscene.errors import UsageError

TEXTURES = ("stationary", "impulsive", "tonal", "modulated", "harmonic", "speech", "mixture")
MIN_SAMPLE_RATE = 8000  # every family's bands are placed below 0.45·sr, which needs at least this
MIN_GEN_SAMPLES = 2048  # shorter requests are cut from a stretch this long (FFT shaping needs bins)
SILENT_RMS = 0.1  # mix_at_snr: level (-20 dBFS) of the background under a silent signal

GeneratorFn = Callable[[int, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class NoiseFamily:
    """One family of background sound."""

    name: str
    texture: str  # one of TEXTURES
    split: str  # "train" (training code may use it) or "heldout" (evaluation only)
    generator: GeneratorFn  # (n, sr, rng) -> (n,) float64, any level; noise() normalises it
    description: str


def _mixture(split: str) -> GeneratorFn:
    def generate(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        # read at call time, so the pool is exactly the split's families as registered now
        pool = [k for k, f in FAMILIES.items() if f.split == split and f.texture != "mixture"]
        picks = rng.choice(len(pool), size=int(rng.integers(2, 4)), replace=False)
        return sum(10 ** (rng.uniform(-10, 0) / 20) * fam.unit_rms(FAMILIES[pool[i]].generator(n, sr, rng))
                   for i in picks)
    return generate


def _registry() -> dict[str, NoiseFamily]:
    out = {name: NoiseFamily(name, texture, split, fn, (fn.__doc__ or "").strip().splitlines()[0])
           for name, texture, split, fn in fam.GENERATORS}
    out["mix_train"] = NoiseFamily("mix_train", "mixture", "train", _mixture("train"),
                                   "2-3 training families summed at random levels (0 to -10 dB)")
    out["mix_heldout"] = NoiseFamily("mix_heldout", "mixture", "heldout", _mixture("heldout"),
                                     "(held out) 2-3 held-out families summed at random levels (0 to -10 dB)")
    return out


FAMILIES: dict[str, NoiseFamily] = _registry()
TRAIN_FAMILIES: tuple[str, ...] = tuple(k for k, f in FAMILIES.items() if f.split == "train")
HELDOUT_FAMILIES: tuple[str, ...] = tuple(k for k, f in FAMILIES.items() if f.split == "heldout")


# --------------------------------------------------------------------------- public API


def _as_rng(rng: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def noise(family: str, n: int, *, sr: int, rng: np.random.Generator | int) -> np.ndarray:
    """``n`` samples of one noise family at unit RMS.

    Args:
        family: a key of :data:`FAMILIES`.
        n: samples, >= 1.
        sr: sample rate, Hz, >= ``MIN_SAMPLE_RATE``.
        rng: a generator (advanced) or an integer seed; the same seed gives the same samples.

    Returns:
        (n,) float32, finite, RMS 1.
    """
    if family not in FAMILIES:
        raise UsageError(f"unknown noise family {family!r}; known: {', '.join(FAMILIES)}")
    if n < 1:
        raise UsageError(f"noise needs at least one sample, got n={n}")
    if sr < MIN_SAMPLE_RATE:
        raise UsageError(f"noise needs a sample rate of at least {MIN_SAMPLE_RATE} Hz, got {sr}")
    x = np.asarray(FAMILIES[family].generator(max(n, MIN_GEN_SAMPLES), sr, _as_rng(rng)), dtype=np.float64)
    if not np.any(x[:n]):  # a short cut of a sparse family can miss every event: start at the loudest one
        x = np.roll(x, -int(np.argmax(np.abs(x))))
    out = fam.unit_rms(x[:n])
    assert np.all(np.isfinite(out)) and np.any(out), family  # internal invariant of every generator
    return out.astype(np.float32)


def training_noise(n: int, *, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise from a random family of :data:`TRAIN_FAMILIES` (never a held-out one).

    Returns:
        (n,) float32.
    """
    family = TRAIN_FAMILIES[int(rng.integers(len(TRAIN_FAMILIES)))]
    return noise(family, n, sr=sr, rng=rng)


def background_gain(signal_power: float, background_power: float, snr_db: float, *,
                    silent_rms: float = SILENT_RMS) -> float:
    """The gain ``g`` that puts a background of power ``background_power`` at ``snr_db`` under a
    signal of power ``signal_power``: ``10·log10(signal_power / (g²·background_power)) = snr_db``.

    A silent signal (power 0) has no level to refer to: the background is then brought to RMS
    ``silent_rms`` (default -20 dBFS), so pure-noise inputs still have a realistic level.

    Raises:
        UsageError: the background's power is zero or not finite.
    """
    if not background_power > 0 or not np.isfinite(background_power):
        raise UsageError("mixing at an SNR needs a background with finite, non-zero power")
    target = signal_power / 10.0 ** (snr_db / 10.0) if signal_power > 0 else silent_rms ** 2
    return float(np.sqrt(target / background_power))


def mix_at_snr(signal: np.ndarray, background: np.ndarray, snr_db: float, *,
               silent_rms: float = SILENT_RMS) -> np.ndarray:
    """``signal + g·background`` with ``10·log10(P_signal / P(g·background)) = snr_db``.

    Powers are means of squares over the whole arrays; ``g`` is :func:`background_gain` (a
    silent signal gets the background at RMS ``silent_rms``).

    Args:
        signal: (n,) samples.
        background: (n,) samples, not all zero.
        snr_db: signal-to-background ratio, dB.

    Returns:
        (n,) float32.
    """
    s = np.asarray(signal, dtype=np.float64)
    b = np.asarray(background, dtype=np.float64)
    if s.shape != b.shape or s.ndim != 1:
        raise UsageError(f"mix_at_snr needs two 1-D arrays of one length, got {s.shape} and {b.shape}")
    p_b = float(np.mean(b * b)) if len(b) else 0.0
    g = background_gain(float(np.mean(s * s)) if len(s) else 0.0, p_b, snr_db, silent_rms=silent_rms)
    return (s + g * b).astype(np.float32)
