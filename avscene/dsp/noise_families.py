"""The generators of the noise bank (:mod:`avscene.dsp.noise`) and their building blocks.

Each generator is ``(n, sr, rng) -> (n,) float64`` at any level (the bank normalises it) and
draws all its internal parameters from ``rng``. :data:`GENERATORS` lists them with their
texture and split; the mixture families, which read the registry, live in ``noise.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft
import scipy.signal

TOP_FRACTION = 0.45  # highest frequency any family places, as a fraction of sr (below Nyquist)
DB_PER_OCT_TO_EXPONENT = 1.0 / (40.0 * np.log10(2.0))  # power slope S dB/oct → amplitude ∝ f^(S·this)
TABLE_SIZE = 8192  # one period of a wavetable oscillator (harmonics up to a few hundred)
CONTROL_RATE = 200.0  # Hz: envelopes and pitch contours of the talkers are drawn at this rate



def unit_rms(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to RMS 1 (unchanged when silent)."""
    rms = float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0
    return x / rms if rms > 0 else x


def _logu(rng: np.random.Generator, lo: float, hi: float) -> float:
    lo = min(lo, hi)  # at a low sample rate a range's top can fall under its bottom: the top wins
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _top(sr: int) -> float:
    return TOP_FRACTION * sr


def _shape(x: np.ndarray, sr: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Filter ``x`` (n,) by the amplitude response ``gain(f)`` (zero phase, circular)."""
    spec = scipy.fft.rfft(x)
    f = scipy.fft.rfftfreq(len(x), 1.0 / sr)
    g = gain(np.maximum(f, 1e-3))
    g[0] = 0.0  # no DC
    return scipy.fft.irfft(spec * g, n=len(x))


def _band(f: np.ndarray, lo: float, hi: float, order: int = 2) -> np.ndarray:
    """Butterworth-like band-pass magnitude, edges ``lo`` and ``hi`` Hz."""
    return 1.0 / np.sqrt((1.0 + (lo / f) ** (2 * order)) * (1.0 + (f / hi) ** (2 * order)))


def _tilt(f: np.ndarray, slope_db_oct: float) -> np.ndarray:
    return (f / 1000.0) ** (slope_db_oct * DB_PER_OCT_TO_EXPONENT)


def _resonances(f: np.ndarray, centres, qs, gains) -> np.ndarray:
    """Sum of second-order resonance magnitudes: Σ g / sqrt(1 + Q²(f/fc − fc/f)²)."""
    out = np.zeros_like(f)
    for fc, q, g in zip(centres, qs, gains):
        out += g / np.sqrt(1.0 + q * q * (f / fc - fc / f) ** 2)
    return out


def _coloured(rng: np.random.Generator, n: int, sr: int, slope: float, lo: float, hi: float) -> np.ndarray:
    return _shape(rng.standard_normal(n), sr, lambda f: _tilt(f, slope) * _band(f, lo, min(hi, _top(sr))))


def _smooth(rng: np.random.Generator, n: int, sr: int, rate_hz: float) -> np.ndarray:
    """A smooth random curve (n,), ~N(0, 1) values at ``rate_hz`` control points per second."""
    k = int(np.ceil(n / sr * rate_hz)) + 2
    pts = rng.standard_normal(k)
    pos = np.arange(n) * ((k - 1) / max(n - 1, 1))
    i = np.minimum(pos.astype(np.int64), k - 2)
    w = 0.5 - 0.5 * np.cos(np.pi * (pos - i))  # cosine interpolation: no corners
    return pts[i] * (1.0 - w) + pts[i + 1] * w


def _events(n: int, positions: np.ndarray, amps: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Copies of ``kernel`` at ``positions`` (samples) scaled by ``amps``, cut to n samples."""
    train = np.bincount(positions, weights=np.broadcast_to(amps, positions.shape), minlength=n)
    return scipy.signal.oaconvolve(train, kernel)[:n]


def _burst(rng: np.random.Generator, sr: int, dur_s: float, lo: float, hi: float) -> np.ndarray:
    """A short band-limited noise burst with an exponential decay (a click, a drop, a key)."""
    m = max(8, int(dur_s * sr))
    x = _shape(rng.standard_normal(m), sr, lambda f: _band(f, lo, min(hi, _top(sr))))
    return x * np.exp(-np.arange(m) / (m / 4.0))


def _thud(rng: np.random.Generator, sr: int, f0: float, tau_s: float) -> np.ndarray:
    """A damped low sinusoid (a footstep, a knock on wood)."""
    t = np.arange(int(5 * tau_s * sr)) / sr
    return np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t / tau_s)


def _poisson_positions(rng: np.random.Generator, n: int, sr: int, rate_hz: float) -> np.ndarray:
    count = max(1, int(rng.poisson(rate_hz * n / sr)))  # at least one event in any stretch
    return rng.integers(0, n, count)




def _oscillator(phase_cycles: np.ndarray, amps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Harmonic complex Σ_k amps[k]·sin(2π(k+1)φ + θ_k) read from a wavetable at phase φ (cycles)."""
    u = np.arange(TABLE_SIZE) / TABLE_SIZE
    k = np.arange(1, len(amps) + 1)[:, None]
    table = (amps[:, None] * np.sin(2 * np.pi * k * u + rng.uniform(0, 2 * np.pi, (len(amps), 1)))).sum(0)
    return table[((phase_cycles % 1.0) * TABLE_SIZE).astype(np.int64) % TABLE_SIZE]


def _phase(f_hz: np.ndarray, sr: int) -> np.ndarray:
    return np.cumsum(f_hz) / sr


def _n_harmonics(f0_max: float, sr: int, cap: int) -> int:
    return int(max(1, min(cap, _top(sr) // f0_max)))



def _gated(rng: np.random.Generator, n: int, sr: int, rate_hz: float, on_fraction: float) -> np.ndarray:
    """A 0..1 gate that is on about ``on_fraction`` of the time, switching at about ``rate_hz``."""
    threshold = float(np.quantile(rng.standard_normal(256), 1.0 - on_fraction))
    return np.clip((_smooth(rng, n, sr, rate_hz) - threshold) * 4.0 + 0.5, 0.0, 1.0)


# --------------------------------------------------------------------------- stationary


def white(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """White noise with a random upper band edge (4 kHz to 0.45·sr)."""
    hi = rng.uniform(min(4000.0, _top(sr)), _top(sr))
    return _shape(rng.standard_normal(n), sr, lambda f: _band(f, 20.0, hi, order=4))


def coloured(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with a random spectral tilt (-4.5 to +3 dB/octave) and random band edges."""
    return _coloured(rng, n, sr, rng.uniform(-4.5, 3.0), _logu(rng, 20, 300), _logu(rng, 2000, _top(sr)))


def hum_fan(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum (50/60 Hz harmonics) + fan: low broadband noise and a blade-pass tone."""
    mains = float(rng.choice([50.0, 60.0]))
    k = np.arange(1, 11)
    amps = k ** -rng.uniform(0.5, 1.5) * np.where(k % 2 == 1, 1.0, rng.uniform(0.1, 1.0))
    hum = unit_rms(_oscillator(np.arange(n) * (mains / sr), amps, rng))
    fan = unit_rms(_coloured(rng, n, sr, rng.uniform(-6, -2), 30.0, rng.uniform(500, 3000)))
    blade_f = _logu(rng, 80, 400)
    blade = np.sin(2 * np.pi * blade_f * np.arange(n) / sr) * (1 + 0.2 * _smooth(rng, n, sr, 2.0))
    return _logu(rng, 0.1, 1.0) * hum + fan + _logu(rng, 0.05, 0.5) * unit_rms(blade)


def rain(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Dense drops (200-3000 /s, log-normal sizes) over a high-passed noise bed."""
    rate = _logu(rng, 200, 3000)
    drops = np.zeros(n)
    for _ in range(3):
        pos = _poisson_positions(rng, n, sr, rate / 3)
        kernel = _burst(rng, sr, rng.uniform(0.001, 0.005), _logu(rng, 1000, 3000), _top(sr))
        drops += _events(n, pos, rng.lognormal(0, 0.7, len(pos)), kernel)
    bed = _coloured(rng, n, sr, -3.0, 500.0, _top(sr))
    return unit_rms(drops) + rng.uniform(0.3, 1.0) * unit_rms(bed)


def resonant(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """(held out) Noise through 2-5 random resonances (Q 2-15) over a weak flat floor."""
    m = int(rng.integers(2, 6))
    centres = [_logu(rng, 100, 0.9 * _top(sr)) for _ in range(m)]
    qs, gains = rng.uniform(2, 15, m), rng.uniform(0.3, 1.0, m)
    return _shape(rng.standard_normal(n), sr, lambda f: 0.05 + _resonances(f, centres, qs, gains))


def brown(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """(held out) Steeper than any training tilt: -9 to -6 dB/octave, high-passed at 15-100 Hz."""
    return _coloured(rng, n, sr, rng.uniform(-9.0, -6.0), _logu(rng, 15, 100), _top(sr))


# --------------------------------------------------------------------------- impulsive


def clicks(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson clicks (0.5-30 /s) of three random band-limited kinds, 2-15 ms each."""
    rate, out = _logu(rng, 0.5, 30), np.zeros(n)
    for _ in range(3):
        pos = _poisson_positions(rng, n, sr, rate / 3)
        centre = _logu(rng, 500, min(6000, _top(sr) / 1.5))
        kernel = _burst(rng, sr, rng.uniform(0.002, 0.015), centre / 1.4, centre * 1.4)
        out += _events(n, pos, rng.lognormal(0, 0.5, len(pos)), kernel)
    return out


def footsteps(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Steps every 0.4-0.75 s with 10-25 % jitter: a low thud and a scuff, level ramping."""
    period, jitter = rng.uniform(0.4, 0.75), rng.uniform(0.1, 0.25)
    steps = np.cumsum(period * (1 + jitter * rng.standard_normal(int(n / sr / period) + 3)).clip(0.3, None))
    pos = ((steps - rng.uniform(0, period)) * sr).astype(np.int64)
    pos = pos[(pos >= 0) & (pos < n)]
    pos = pos if len(pos) else np.array([int(rng.integers(n))])
    ramp = np.linspace(rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0), len(pos)) * rng.lognormal(0, 0.2, len(pos))
    thud = _thud(rng, sr, _logu(rng, 50, 180), rng.uniform(0.015, 0.04))
    scuff = _burst(rng, sr, rng.uniform(0.02, 0.06), 1000.0, 4000.0)
    return _events(n, pos, ramp, unit_rms(thud)) + rng.uniform(0, 0.5) * _events(n, pos, ramp, unit_rms(scuff))


def typing(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """(held out) Key clicks in bursts: 80-250 ms between keys, 0.3-2 s pauses between words."""
    times, t = [], rng.uniform(0, 0.5)
    while t < n / sr:
        for _ in range(int(rng.integers(2, 9))):
            times.append(t)
            t += rng.gamma(4.0, rng.uniform(0.02, 0.06))
        t += rng.uniform(0.3, 2.0)
    pos = (np.array(times) * sr).astype(np.int64)
    pos = pos[pos < n] if np.any(pos < n) else np.array([int(rng.integers(n))])
    out = np.zeros(n)
    for kind in range(4):
        sel = pos[kind::4]
        centre = _logu(rng, 1500, min(6000, _top(sr) / 1.3))
        key = unit_rms(_burst(rng, sr, rng.uniform(0.002, 0.005), centre / 1.3, centre * 1.3))
        thock = unit_rms(_thud(rng, sr, _logu(rng, 200, 600), 0.004))
        kernel = np.zeros(max(len(key), len(thock)))
        kernel[:len(key)] += key
        kernel[:len(thock)] += rng.uniform(0.2, 0.8) * thock
        out += _events(n, sel, rng.lognormal(0, 0.4, len(sel)), kernel)
    return out


def crackle(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """(held out) Fire: dense micro-impulses (50-500 /s, Pareto sizes: rare loud pops) over a low roar."""
    pos = _poisson_positions(rng, n, sr, _logu(rng, 50, 500))
    kernel = _burst(rng, sr, rng.uniform(0.0005, 0.003), 300.0, _top(sr))
    pops = _events(n, pos, np.minimum(rng.pareto(2.0, len(pos)) + 0.1, 20.0) * rng.choice([-1, 1], len(pos)), kernel)
    roar = _coloured(rng, n, sr, -6.0, 30.0, _logu(rng, 150, 400))
    return unit_rms(pops) + rng.uniform(0.1, 0.6) * unit_rms(roar)


# --------------------------------------------------------------------------- tonal


def tones(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """1-4 steady sine tones (150 Hz to 8 kHz), each on for >= 1.5 s with soft edges."""
    dur, t, out = n / sr, np.arange(n) / sr, np.zeros(n)
    for _ in range(int(rng.integers(1, 5))):
        f = _logu(rng, 150, min(8000, _top(sr)))
        length = rng.uniform(min(1.5, dur), dur)
        start = rng.uniform(0, dur - length)
        fade = rng.uniform(0.05, 0.3)
        env = np.clip(np.minimum(t - start, start + length - t) / fade, 0, 1)
        out += 10 ** (rng.uniform(-12, 0) / 20) * env * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return out + 1e-3 * rng.standard_normal(n)  # a floor, so a cut between tones is not silent


def whine(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A high electrical whine (2-15 kHz) drifting by ±0.5 %, a weak 2nd harmonic, some hiss."""
    f = _logu(rng, 2000, min(15000, _top(sr))) * (1 + 0.005 * _smooth(rng, n, sr, 0.3))
    amps = np.array([1.0, 10 ** (-15 / 20) if 2 * f.max() < _top(sr) else 0.0])
    hiss = 10 ** (-rng.uniform(10, 30) / 20) * rng.standard_normal(n)
    return unit_rms(_oscillator(_phase(f, sr), amps, rng)) + hiss


def chirps(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """(held out) Bird-like chirps: 30-200 ms sweeps from 2-8 kHz in aperiodic bouts."""
    out, dur = 1e-3 * rng.standard_normal(n), n / sr
    bouts = rng.uniform(0, dur, max(1, int(rng.poisson(rng.uniform(0.2, 1.0) * dur))))
    for start in bouts:
        t0 = start
        for _ in range(int(rng.integers(2, 9))):
            length = rng.uniform(0.03, 0.2)
            f0 = _logu(rng, 2000, min(8000, _top(sr) / 2.3))
            ratio = 2 ** rng.uniform(-1.2, 1.2)
            m = int(length * sr)
            tt = np.arange(m) / sr
            f = f0 * ratio ** (tt / length)  # exponential sweep
            chirp = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.hanning(m) * rng.uniform(0.3, 1.0)
            i = int(t0 * sr)
            if i < n:
                out[i:i + m] += chirp[:n - i]
            t0 += length + rng.uniform(0.03, 0.2) * rng.uniform(0.5, 2.0)
    return out


# --------------------------------------------------------------------------- modulated


def am_noise(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Band noise under a periodic amplitude modulation (0.5-8 Hz, depth 0.3-1)."""
    lo = _logu(rng, 100, 1000)
    x = _coloured(rng, n, sr, rng.uniform(-4, 0), lo, lo * 2 ** rng.uniform(1, 5))
    rate, depth = _logu(rng, 0.5, 8), rng.uniform(0.3, 1.0)
    return x * (1 + depth * np.sin(2 * np.pi * rate * np.arange(n) / sr + rng.uniform(0, 2 * np.pi)))


def wind(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Gusts: low rumble under a random envelope, a whistling band rising with the gust."""
    gust = np.exp(rng.uniform(0.3, 0.9) * _smooth(rng, n, sr, rng.uniform(0.2, 1.0)))
    low = unit_rms(_coloured(rng, n, sr, -6.0, 20.0, rng.uniform(300, 800)))
    fc = _logu(rng, 300, 1500)
    whistle = unit_rms(_shape(rng.standard_normal(n), sr, lambda f: _resonances(f, [fc], [2.0], [1.0])))
    return gust * low + rng.uniform(0.1, 0.5) * gust ** 2 * whistle


def traffic(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """(held out) Vehicles passing by: Gaussian swells (σ 0.5-2.5 s) of rumble and tyre hiss."""
    dur = n / sr
    frames = np.arange(int(dur * CONTROL_RATE) + 2) / CONTROL_RATE
    count = max(1, int(rng.poisson(rng.uniform(0.1, 0.6) * dur)))
    centres, widths = rng.uniform(-1, dur + 1, count), rng.uniform(0.5, 2.5, count)
    peaks = rng.uniform(0.3, 1.0, count)
    env = rng.uniform(0.1, 0.3) + (peaks * np.exp(-0.5 * ((frames[:, None] - centres) / widths) ** 2)).sum(1)
    env = np.interp(np.arange(n) / sr, frames, env)
    rumble = unit_rms(_coloured(rng, n, sr, -5.0, 30.0, _logu(rng, 400, 1500)))
    hiss = unit_rms(_coloured(rng, n, sr, -2.0, 1000.0, 5000.0))
    return env * rumble + rng.uniform(0.1, 0.5) * env ** 1.5 * hiss


# --------------------------------------------------------------------------- harmonic


def harmonic(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A steady harmonic drone (f0 40-400 Hz, random roll-off and odd/even balance), slow envelope."""
    f0 = _logu(rng, 40, 400) * (1 + 0.005 * _smooth(rng, n, sr, 0.2))
    k = np.arange(1, _n_harmonics(float(f0.max()), sr, 30) + 1)
    amps = k ** -rng.uniform(0.5, 2.5) * np.where(k % 2 == 0, rng.uniform(0.2, 1.0), 1.0)
    amps = amps * 10 ** (rng.uniform(-6, 6, len(k)) / 20)
    env = np.exp(0.5 * _smooth(rng, n, sr, rng.uniform(0.1, 0.5)))
    bed = 10 ** (-rng.uniform(15, 30) / 20) * rng.standard_normal(n)
    return env * unit_rms(_oscillator(_phase(f0, sr), amps, rng)) + bed


def buzz(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Electrical buzz: a pulse wave (80-300 Hz, random duty), low-passed, switching on and off."""
    f0 = float(rng.choice([100.0, 120.0])) if rng.random() < 0.5 else _logu(rng, 80, 300)
    duty = rng.uniform(0.1, 0.5)
    k = np.arange(1, _n_harmonics(f0, sr, 60) + 1)
    wave = _oscillator(np.arange(n) * (f0 / sr), np.abs(np.sin(np.pi * k * duty)) / k, rng)
    wave = _shape(wave, sr, lambda f: _band(f, 40.0, rng.uniform(1000, 6000)))
    return unit_rms(wave) * _gated(rng, n, sr, rng.uniform(0.3, 2.0), rng.uniform(0.4, 0.9)) \
        + 1e-2 * rng.standard_normal(n)


def engine(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """(held out) An engine: firing harmonics (rpm 700-3000, 4/6/8 cylinders) pulsing a noise, rumble."""
    cylinders = int(rng.choice([4, 6, 8]))
    rpm = _logu(rng, 700, 3000) * np.exp(0.15 * _smooth(rng, n, sr, rng.uniform(0.1, 0.5)))
    fire = rpm / 60.0 * cylinders / 2.0
    phase = _phase(fire, sr)
    k = np.arange(1, _n_harmonics(float(fire.max()), sr, 24) + 1)
    body = _logu(rng, 200, 1200)  # one resonance of the engine body lifts the harmonics near it
    amps = k ** -rng.uniform(1.0, 2.0) * (1 + _resonances(k * float(fire.mean()), [body], [3.0], [2.0]))
    tone = unit_rms(_oscillator(phase, amps, rng))
    pulse = 1 + 0.8 * np.sin(2 * np.pi * phase)
    noise = unit_rms(_coloured(rng, n, sr, -3.0, 100.0, 2000.0)) * pulse
    rumble = unit_rms(_coloured(rng, n, sr, -6.0, 20.0, 200.0))
    return tone + rng.uniform(0.2, 0.8) * noise + rng.uniform(0.2, 0.6) * rumble


# --------------------------------------------------------------------------- speech-like

# (F1, F2, F3) Hz of five vowels (a, e, i, o, u), adult average (Peterson & Barney 1952, rounded)
VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
                  dtype=np.float64)


def _talkers(rng: np.random.Generator, n: int, sr: int, count: int, f0_range: tuple[float, float],
             whisper_prob: float) -> np.ndarray:
    """``count`` talkers: glottal pulse trains (or noise for whispers) through vowel formants.

    Each talker's pulses are shared out among the vowel channels by smooth random weights that
    change at the syllable rate, under a syllabic envelope (3-6 Hz) with phrase pauses; each
    vowel channel is then filtered once by its formants and a glottal -12 dB/octave roll-off.
    """
    dur = n / sr
    frames = np.arange(int(dur * CONTROL_RATE) + 2) / CONTROL_RATE
    channels = np.zeros((len(VOWELS), n))
    whisper_power = np.zeros((len(VOWELS), len(frames)))
    pulses: list[np.ndarray] = []
    pulse_weights: list[np.ndarray] = []
    for _ in range(count):
        whisper = rng.random() < whisper_prob
        f0 = _logu(rng, *f0_range) * np.exp(0.12 * _smooth(rng, len(frames), CONTROL_RATE, 2.0))
        rate = rng.uniform(3.0, 6.0)
        syll = 0.5 - 0.5 * np.cos(2 * np.pi * np.cumsum(rate * np.exp(0.2 * _smooth(rng, len(frames), CONTROL_RATE,
                                                                                    1.0))) / CONTROL_RATE)
        gate = _gated(rng, len(frames), CONTROL_RATE, 0.5, rng.uniform(0.5, 0.9))
        weights = np.exp(3.0 * np.stack([_smooth(rng, len(frames), CONTROL_RATE, rate) for _ in VOWELS]))
        weights *= syll * gate * 10 ** (rng.uniform(-6, 6) / 20) / weights.sum(0)
        if whisper:  # noise excitation: independent noises add in power, so pool the whisperers
            whisper_power += weights ** 2
            continue
        phase = np.cumsum(f0) / CONTROL_RATE
        pos = (np.interp(np.arange(np.ceil(phase[0]), np.floor(phase[-1])), phase, frames) * sr).astype(np.int64)
        pos = pos[pos < n]
        pulses.append(pos)
        pulse_weights.append(np.stack([np.interp(pos / sr, frames, w) for w in weights]))
    if pulses:  # one pass over n samples per vowel, whatever the number of talkers
        pos, w = np.concatenate(pulses), np.concatenate(pulse_weights, axis=1)
        for v in range(len(VOWELS)):
            channels[v] += np.bincount(pos, weights=w[v], minlength=n)
    if whisper_power.any():
        t = np.arange(n) / sr
        for v in range(len(VOWELS)):  # 0.15: a whisper is about 16 dB under a voiced talker
            channels[v] += 0.15 * rng.standard_normal(n) * np.interp(t, frames, np.sqrt(whisper_power[v]))
    scale = rng.uniform(0.9, 1.15)  # one vocal-tract length for the scene (shared formant filters)
    f = np.maximum(scipy.fft.rfftfreq(n, 1.0 / sr), 1e-3)
    glottal = 1.0 / np.sqrt(1 + (f / 300.0) ** 2)
    spec = np.zeros(len(f), dtype=np.complex128)
    for v, formants in enumerate(VOWELS * scale):  # filter each vowel channel, sum the spectra, one inverse FFT
        fc = np.minimum(formants, _top(sr))
        spec += scipy.fft.rfft(channels[v]) * _resonances(f, fc, fc / np.array([80.0, 100.0, 150.0]),
                                                          [1.0, 0.6, 0.3]) * glottal
    spec[0] = 0.0  # no DC
    return scipy.fft.irfft(spec, n=n)


def babble(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Close babble: 3-8 voiced talkers (f0 90-250 Hz)."""
    return _talkers(rng, n, sr, int(rng.integers(3, 9)), (90.0, 250.0), whisper_prob=0.0)


def crowd(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """(held out) Far crowd: 12-40 talkers (f0 80-350 Hz, a third whispering), low-passed and smeared."""
    x = _talkers(rng, n, sr, int(rng.integers(12, 41)), (80.0, 350.0), whisper_prob=0.33)
    x = _shape(x, sr, lambda f: _band(f, 80.0, rng.uniform(1000, 3000)))
    tail = int(rng.uniform(0.2, 0.6) * sr)
    room = rng.standard_normal(tail) * np.exp(-np.arange(tail) / (tail / 6.0))
    return scipy.signal.oaconvolve(x, room)[:n] + 0.3 * x


# name, texture, split, generator
GENERATORS: tuple[tuple[str, str, str, Callable[[int, int, np.random.Generator], np.ndarray]], ...] = (
    ("white", "stationary", "train", white),
    ("coloured", "stationary", "train", coloured),
    ("hum_fan", "stationary", "train", hum_fan),
    ("rain", "stationary", "train", rain),
    ("resonant", "stationary", "heldout", resonant),
    ("brown", "stationary", "heldout", brown),
    ("clicks", "impulsive", "train", clicks),
    ("footsteps", "impulsive", "train", footsteps),
    ("typing", "impulsive", "heldout", typing),
    ("crackle", "impulsive", "heldout", crackle),
    ("tones", "tonal", "train", tones),
    ("whine", "tonal", "train", whine),
    ("chirps", "tonal", "heldout", chirps),
    ("am_noise", "modulated", "train", am_noise),
    ("wind", "modulated", "train", wind),
    ("traffic", "modulated", "heldout", traffic),
    ("harmonic", "harmonic", "train", harmonic),
    ("buzz", "harmonic", "train", buzz),
    ("engine", "harmonic", "heldout", engine),
    ("babble", "speech", "train", babble),
    ("crowd", "speech", "heldout", crowd),
)
