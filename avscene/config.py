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
        if self.visual_proposals not in VISUAL_PROPOSAL_TYPES:
            from avscene.errors import ConfigError

            raise ConfigError(f"visual_proposals: {self.visual_proposals!r} is not one of "
                              f"{', '.join(VISUAL_PROPOSAL_TYPES)}")

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
