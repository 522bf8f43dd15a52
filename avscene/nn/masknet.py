"""A small class-conditioned mask network on the separation STFT (``separate --method mask``).

Input: the magnitude ``|X|`` (B, F, T) of the separation STFT (1024 / 256 at 16 kHz,
:mod:`avscene.dsp.stft`) and the index of the class to extract. Output: a mask in
[0, 1] of the same shape; the class's source is ``mask ⊙ X``.

Architecture (a temporal convolutional network over frames, every frequency bin a
channel, as in Open-Unmix's frame-wise layout with Conv-TasNet's dilated blocks):

    log(|X| + eps)  ->  1x1 conv F -> H  ->  N residual blocks  ->  1x1 conv H -> F  ->  sigmoid
    block(x) = x + conv_d(PReLU(FiLM_c(LN(x))))      d = 1, 2, 4, 8, 1, 2, 4, 8, ...

``LN`` normalises each frame over its channels (never over time), and the class enters
by FiLM (a per-class scale and shift of every block, Perez et al. 2018). Nothing
normalises over time, so the network is shift-equivariant with a finite receptive field
(:meth:`MaskNet.receptive_frames`): a long input cut into chunks that overlap by more
than that gives the unchunked masks away from the cuts. The weights are trained from
video-level labels only (``avscene train-separator``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from avscene.errors import ConfigError

LOG_EPS = 1e-5  # floor of the magnitudes before the log (a -100 dB floor for full-scale audio)
# Upper bounds of the config's fields, checked before anything is allocated (far above the
# bundled network: 16 classes, 1024 / 256, 256 channels, 8 blocks, kernel 3).
MAX_FIELD = {"num_classes": 10_000, "n_fft": 16_384, "hop": 16_384, "hidden": 4096, "blocks": 64, "kernel": 31}


@dataclass(frozen=True)
class MaskNetConfig:
    """Shape of a :class:`MaskNet`; stored under ``separation.mask`` in ``config.json``."""

    num_classes: int
    n_fft: int = 1024  # separation STFT (the mask's frequency axis has n_fft // 2 + 1 bins)
    hop: int = 256
    hidden: int = 256  # channels of the temporal blocks
    blocks: int = 8  # residual blocks; dilations cycle through 1, 2, 4, 8
    kernel: int = 3  # temporal kernel of each block

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"mask network config: {f.name} must be a positive integer, got {v!r}")
            if v > MAX_FIELD[f.name]:
                raise ConfigError(f"mask network config: {f.name} is {v}, at most {MAX_FIELD[f.name]}")
        if self.kernel % 2 == 0:
            raise ConfigError(f"mask network config: kernel must be odd, got {self.kernel}")

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MaskNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"format"})
        if unknown:
            raise ConfigError(f"mask network config: unknown key(s) {unknown}")
        return cls(**{k: v for k, v in d.items() if k in known})


def dilations(blocks: int) -> list[int]:
    """Dilation of each block: 1, 2, 4, 8, 1, 2, ..."""
    return [2 ** (i % 4) for i in range(blocks)]


class _FrameNorm(nn.Module):
    """Layer norm of each frame over its channels (B, C, T); no statistic crosses frames."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class _Block(nn.Module):
    """``x + conv_d(PReLU(FiLM(LN(x))))``: one dilated residual block."""

    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.norm = _FrameNorm(channels)
        self.act = nn.PReLU(channels)
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=dilation * (kernel // 2))

    def forward(self, x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        h = self.norm(x) * (1 + scale[:, :, None]) + shift[:, :, None]  # (B, C, T)
        return x + self.conv(self.act(h))


class MaskNet(nn.Module):
    """Class-conditioned mask estimator (see the module docstring)."""

    def __init__(self, cfg: MaskNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Conv1d(cfg.bins, cfg.hidden, 1)
        self.film = nn.Embedding(cfg.num_classes, 2 * cfg.hidden * cfg.blocks)
        nn.init.zeros_(self.film.weight)  # every class starts from the identity FiLM
        self.blocks = nn.ModuleList(_Block(cfg.hidden, cfg.kernel, d) for d in dilations(cfg.blocks))
        self.out_norm = _FrameNorm(cfg.hidden)
        self.out = nn.Conv1d(cfg.hidden, cfg.bins, 1)

    def receptive_frames(self) -> int:
        """Frames on each side of a frame that its mask depends on."""
        return sum(d * (self.cfg.kernel // 2) for d in dilations(self.cfg.blocks))

    def forward(self, magnitude: Tensor, class_index: Tensor) -> Tensor:
        """Masks (B, F, T) in [0, 1] for magnitudes (B, F, T) and class indices (B,)."""
        if magnitude.ndim != 3 or magnitude.shape[1] != self.cfg.bins:
            raise ValueError(f"MaskNet expects magnitudes (B, {self.cfg.bins}, T), got {tuple(magnitude.shape)}")
        x = self.inp(torch.log(magnitude + LOG_EPS))  # (B, H, T)
        film = self.film(class_index).view(-1, self.cfg.blocks, 2, self.cfg.hidden)  # (B, N, 2, H)
        for i, block in enumerate(self.blocks):
            x = block(x, film[:, i, 0], film[:, i, 1])
        return torch.sigmoid(self.out(self.out_norm(x)))  # (B, F, T)


def num_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


__all__ = ["LOG_EPS", "MaskNet", "MaskNetConfig", "dilations", "num_parameters"]
