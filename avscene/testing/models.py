"""A tiny randomly initialised model and checkpoint, for tests (like Demucs' ``demucs_unittest``).

The tiny network has every layer of the real one at a fraction of the width, so it
runs in milliseconds on a CPU; its checkpoint is a few hundred kilobytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from avscene.config import PreprocessConfig

if TYPE_CHECKING:
    from avscene.nn.model import AVSceneNet, ModelConfig, ModelInput

TINY_LABELS = ("a", "b", "c")
TINY_IMAGE_SIZE = 64  # shorter frame side: 8x8 feature map after the small CNN's stride 8
TINY_BOXES = 4  # proposals per frame


def tiny_config(num_classes: int = 3, variant: str = "async") -> ModelConfig:
    """A ModelConfig with every branch of ``variant`` at toy widths (VGGish at 1/8 width)."""
    from avscene.nn.model import ModelConfig

    return ModelConfig(
        num_classes=num_classes,
        variant=variant,
        embed_dim=16,
        audio_width=0.125,
        audio_fc=(32,),
        audio_embed=32,
        audio_norm=True,
        visual_channels=(8, 16),
        visual_fc=(32, 32),
    )


def tiny_preprocess() -> PreprocessConfig:
    """Default preprocessing with small frames and few boxes."""
    return PreprocessConfig(image_size=TINY_IMAGE_SIZE, boxes_per_frame=TINY_BOXES)


def tiny_model(num_classes: int = 3, variant: str = "async", *, seed: int = 0) -> AVSceneNet:
    """A randomly initialised tiny AVSceneNet; the same ``seed`` gives the same weights.

    The global torch RNG is left as it was.
    """
    import torch

    from avscene.nn.model import AVSceneNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AVSceneNet(tiny_config(num_classes, variant))


def tiny_checkpoint(
    folder: str | Path, *, labels: tuple[str, ...] = TINY_LABELS, variant: str = "async", seed: int = 0
) -> Path:
    """Save a randomly initialised tiny model as a checkpoint folder; returns the folder."""
    from avscene.checkpoint.load import save_pretrained

    model = tiny_model(len(labels), variant, seed=seed)
    training = {"note": "random initialisation by avscene.testing.models.tiny_checkpoint, untrained"}
    return save_pretrained(model, folder, labels=list(labels), preprocess=tiny_preprocess(), training=training)


def record_default_method(folder: str | Path, method: str | None) -> None:
    """Write ``separation.default_method`` into ``folder/config.json`` (None: remove it), unchecked:
    loading the checkpoint checks it, as it checks a hand-edited one."""
    from avscene.checkpoint.format import read_config, write_config

    config = read_config(folder)
    sep = config.setdefault("separation", {})
    if method is None:
        sep.pop("default_method", None)
    else:
        sep["default_method"] = method
    write_config(folder, config)


def tiny_input(
    *, seed: int = 0, batch: int = 1, patches: int = 4, frames: int = 2, boxes: int = TINY_BOXES
) -> ModelInput:
    """A deterministic random ``ModelInput`` for the tiny model (1-s segments filled in for ``sync``).

    Shapes: audio (batch, patches, 96, 64); images (batch, frames, 3, 64, 64);
    boxes (batch, frames, boxes, 4) with x0 < x1 and y0 < y1 inside the frame.
    """
    import torch

    from avscene.nn.backbones import N_MELS, PATCH_FRAMES
    from avscene.nn.model import ModelInput

    g = torch.Generator().manual_seed(seed)
    size = TINY_IMAGE_SIZE
    corner = torch.rand(batch, frames, boxes, 2, generator=g) * (size / 2)  # (B, T, M, 2) x0, y0
    extent = 4 + torch.rand(batch, frames, boxes, 2, generator=g) * (size / 2 - 4)  # (B, T, M, 2) w, h >= 4
    return ModelInput(
        audio=torch.randn(batch, patches, PATCH_FRAMES, N_MELS, generator=g),
        audio_segment=(torch.arange(patches) // 2).expand(batch, patches),  # two patches per 1-s segment
        images=torch.randn(batch, frames, 3, size, size, generator=g),
        boxes=torch.cat([corner, corner + extent], dim=-1),  # (B, T, M, 4)
        frame_segment=torch.arange(frames).expand(batch, frames),
    )


# A minimal OpenCV structured-edge model file: every node OpenCV reads, one one-node tree.
# It loads and detects nothing: for tests of --edge-model handling without the real model.
MINI_EDGE_MODEL_YAML = """%YAML:1.0
---
options:
   stride: 2
   shrinkNumber: 2
   patchSize: 32
   patchInnerSize: 16
   numberOfGradientOrientations: 4
   gradientSmoothingRadius: 0
   regFeatureSmoothingRadius: 2
   ssFeatureSmoothingRadius: 8
   gradientNormalizationRadius: 4
   selfsimilarityGridSize: 5
   numberOfTrees: 1
   numberOfTreesToEvaluate: 1
childs:
   - [ 0 ]
featureIds:
   - [ 0 ]
thresholds:
   - [ 0. ]
edgeBoundaries:
   - [ 0, 0 ]
edgeBins:
   - [ 0 ]
"""
