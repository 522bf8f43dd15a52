"""Temporal context over the audio proposals: what the paper names as its main missing piece.

Each 0.96-s window is embedded on its own (``backbones.AudioBranch``); rhythm, note onsets and
repetition — what tells an instrument from a noise texture of the same spectrum — only show
across windows. ``TemporalContext`` mixes every embedding with its neighbours in time by a stack
of dilated 1-D convolutions (kernel 3, dilations ``cfg.audio_context``: (1, 2, 4) sees ±7
windows = ±3.4 s) and adds the result to the embedding (a residual whose last layer starts at
zero, so a network fine-tuned from one without context starts from the same function).
It keeps the number and order of proposals: one embedding, hence one score, per window.

Proposals must be time-ordered windows (TSP bags); padded positions stay zero and never reach
a real one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from avscene.nn.model import ModelConfig

CONTEXT_KERNEL = 3  # each layer sees the previous, current and next window (times its dilation)


class TemporalContext(nn.Module):
    """Residual dilated convolutions over time-ordered proposal embeddings: (B, P, d) -> (B, P, d)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.embed_dim
        self.convs = nn.ModuleList(
            nn.Conv1d(d, d, CONTEXT_KERNEL, padding=dil, dilation=dil) for dil in cfg.audio_context
        )
        self.out = nn.Linear(d, d)
        nn.init.zeros_(self.out.weight)  # starts as the identity map of the residual
        nn.init.zeros_(self.out.bias)

    def forward(self, z: Tensor, mask: Tensor) -> Tensor:
        """``z`` (B, P, d) embeddings in time order, ``mask`` (B, P) bool -> (B, P, d)."""
        keep = mask[:, None, :].to(z.dtype)  # (B, 1, P)
        h = z.transpose(1, 2) * keep  # (B, d, P): padding zero before every convolution
        for conv in self.convs:
            h = F.relu(conv(h)) * keep  # (B, d, P)
        return z + self.out(h.transpose(1, 2)) * keep.transpose(1, 2)  # (B, P, d)
