"""Preprocessing parameters that travel with a checkpoint.

All timing conventions of avscene are fixed here, in one place:

* Audio is decoded to mono ``sample_rate`` Hz (16 kHz) float32 in [-1, 1].
* Log-mel frames follow VGGish: 25 ms Hann window (400 samples), 10 ms hop
  (160 samples), 512-point FFT magnitude, 64 HTK mel bands 125–7500 Hz,
  ``log(mel + 0.01)``.
* Audio proposals (TSPs) are 96-frame (0.96 s) patches with a 48-frame (0.48 s)
  hop: patch ``i`` covers ``[0.48 i, 0.48 i + 0.96)`` s. The last patch is
  zero-padded (in the waveform) so that every sample of the clip is covered:
  a 10-s clip gives 20 patches.
* Video frames are sampled at ``fps`` (1 fps) at the instants
  ``t_k = (k + frame_offset) / fps`` with ``frame_offset = 0.5``: the middle of
  each 1-s segment ``[k, k+1)``. The decoded frame is the one *displayed* at
  ``t_k`` (the last frame whose presentation time is ≤ ``t_k``).
* Segment ``k`` (used by the synchronous variant and by the audio-visual timing
  summary) is the interval ``[k, k+1)`` s. Frame ``k`` belongs to segment ``k``;
  audio patch ``i`` belongs to the segment containing its centre
  ``0.48 i + 0.48``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


VISUAL_PROPOSAL_TYPES = ("edgeboxes", "dense")
AUDIO_PROPOSAL_TYPES = ("tsp", "ncp", "tsp+ncp")  # (proposals/bags.py builds them)

# Sane bounds of each number, inclusive (None: unbounded). A checkpoint's config.json is read
# from anywhere (a Hub repo): a value outside them is refused on load, naming the key, instead
# of failing inside each input (n_mels 1e9: MemoryError; fps 0: ZeroDivisionError).
_LIMITS: dict[str, tuple[type, float | None, float | None]] = {
    "sample_rate": (int, 1000, 384_000),  # Hz
    "stft_window": (int, 16, 384_000),  # samples, at most 1 s (checked against sample_rate below)
    "stft_hop": (int, 1, 384_000),
    "n_fft": (int, 16, 1 << 20),
    "n_mels": (int, 1, 1024),
    "fmin": (float, 0.0, None),
    "fmax": (float, 0.0, None),
    "log_offset": (float, 1e-12, None),
    "patch_frames": (int, 1, 10_000),  # STFT frames per audio proposal
    "patch_hop": (int, 1, 10_000),
    "fps": (float, 0.01, 120.0),  # frames per second sampled
    "frame_offset": (float, 0.0, 0.999_999),  # fraction of a sampling period
    "image_size": (int, 16, 4096),  # pixels
    "boxes_per_frame": (int, 1, 1000),
    "ncp_components": (int, 1, 1000),
}


@dataclass(frozen=True)
class PreprocessConfig:
    """How a file becomes network input. Serialised in ``config.json``."""

    sample_rate: int = 16000  # Hz, mono
    stft_window: int = 400  # samples: 25 ms at 16 kHz
    stft_hop: int = 160  # samples: 10 ms at 16 kHz
    n_fft: int = 512  # next power of two >= stft_window
    n_mels: int = 64  # mel bands
    fmin: float = 125.0  # Hz, VGGish lower edge
    fmax: float = 7500.0  # Hz, VGGish upper edge
    log_offset: float = 0.01  # log(mel + offset), VGGish
    patch_frames: int = 96  # 0.96 s of 10-ms frames per audio proposal
    patch_hop: int = 48  # 50 % overlap
    fps: float = 1.0  # visual sampling rate, frames per second
    frame_offset: float = 0.5  # sample at (k + offset) / fps: mid-segment
    image_size: int = 224  # shorter side of the frame fed to the visual CNN
    boxes_per_frame: int = 10  # M_img: EdgeBoxes proposals kept per frame
    audio_proposals: str = "tsp"  # audio bag: "tsp", "ncp" or "tsp+ncp" (avscene.proposals.bags)
    ncp_components: int = 20  # K: NMF components of an NCP bag
    visual_proposals: str = "edgeboxes"  # "edgeboxes" (boxes_per_frame per frame) or "dense" (proposals/dense.py)
    band_norm: bool = False  # subtract each mel band's mean over the input's TSPs from every audio proposal
    #                          (proposals/audio.band_offset): a recording's fixed EQ and gain cancel out

    def __post_init__(self) -> None:
        from avscene.errors import ConfigError

        for name, (kind, low, high) in _LIMITS.items():
            object.__setattr__(self, name, _number(name, getattr(self, name), kind, low, high))
        if self.visual_proposals not in VISUAL_PROPOSAL_TYPES:
            raise ConfigError(f"visual_proposals: {self.visual_proposals!r} is not one of "
                              f"{', '.join(VISUAL_PROPOSAL_TYPES)}")
        if self.audio_proposals not in AUDIO_PROPOSAL_TYPES:
            raise ConfigError(f"audio_proposals must be one of {AUDIO_PROPOSAL_TYPES}, got {self.audio_proposals!r}")
        if not isinstance(self.band_norm, bool):
            raise ConfigError(f"band_norm: {self.band_norm!r} must be true or false")
        for name, value, most, what in (("stft_window", self.stft_window, self.sample_rate, "sample_rate (1 s)"),
                                        ("stft_hop", self.stft_hop, self.stft_window, "stft_window"),
                                        ("stft_window", self.stft_window, self.n_fft, "n_fft"),
                                        ("n_mels", self.n_mels, self.n_fft // 2 + 1, "the n_fft // 2 + 1 FFT bins"),
                                        ("patch_hop", self.patch_hop, self.patch_frames, "patch_frames"),
                                        ("fmax", self.fmax, self.sample_rate / 2, "half the sample_rate (Nyquist)"),
                                        ("fmin", self.fmin, self.fmax, "fmax")):
            if value > most:
                raise ConfigError(f"{name}: {value!r} must be at most {what} ({most!r})")

    @property
    def patch_seconds(self) -> float:
        """Duration of one audio proposal in seconds (0.96)."""
        return self.patch_frames * self.stft_hop / self.sample_rate

    @property
    def patch_hop_seconds(self) -> float:
        """Hop between audio proposals in seconds (0.48)."""
        return self.patch_hop * self.stft_hop / self.sample_rate

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        from avscene.errors import ConfigError

        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            import warnings

            warnings.warn(f"ignoring unknown preprocessing keys: {sorted(unknown)}", stacklevel=2)
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except TypeError as e:  # pragma: no cover - only wrong types reach here
            raise ConfigError(f"invalid preprocessing config: {e}") from e


def _number(name: str, value: object, kind: type, low: float | None, high: float | None) -> int | float:
    """``value`` checked as a JSON number of ``kind`` within ``[low, high]`` (an int is a valid float,
    a float with a fraction or a bool is not a valid int); raises ConfigError naming ``name``."""
    from avscene.errors import ConfigError

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: {value!r} is not a number")
    if kind is int and not isinstance(value, int):
        raise ConfigError(f"{name}: {value!r} must be an integer")
    if value != value or (low is not None and value < low) or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"{name}: {value!r} must be {bounds}")
    return kind(value)

