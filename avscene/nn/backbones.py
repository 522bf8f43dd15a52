"""Proposal feature extractors: VGGish for audio patches, a CNN + RoI pooling for image regions.

::

    audio : (N, 96, 64) log-mel patch --VGGish--> (N, 128) --fc--> (N, d)
    visual: (N, 3, H, W) frame --CNN--> (N, c, H/s, W/s) --RoIAlign 6x6--> fc, fc --> (N, M, d)

Blocks come in dependency order (VGGish, AudioBranch, VisualBackbone, RoIHead,
VisualBranch); each is built from the one frozen ``ModelConfig``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from avscene.errors import CheckpointError, ConfigError
from avscene.nn.roi import roi_align

if TYPE_CHECKING:
    from avscene.nn.model import ModelConfig

PATCH_FRAMES = 96  # 0.96 s of 10-ms log-mel frames per audio proposal (avscene.config)
N_MELS = 64  # mel bands per frame
VGGISH_LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")  # conv widths, "M" = 2x2 max-pool
VGGISH_POOLS = VGGISH_LAYOUT.count("M")  # 4
VGGISH_OUT_HW = (PATCH_FRAMES >> VGGISH_POOLS, N_MELS >> VGGISH_POOLS)  # (6, 4) after four 2x pools
MIN_CHANNELS = 8  # narrowest conv a width multiplier may produce
SMALL_CNN_POOLS = 2  # max-pools after the first two blocks of the small CNN
SMALL_CNN_STRIDE = 2 * 2**SMALL_CNN_POOLS  # 8 = stride-2 first conv x two 2x max-pools
RESNET_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")  # torchvision names
RESNET_STRIDE = 16  # conv1 (2) x maxpool (2) x layer2 (2) x layer3 (2)
RESNET_CHANNELS = 256  # layer3 output width
RESNET_UNUSED = ("layer4.", "fc.")  # torchvision resnet18 keys the trunk has no place for
ROI_SAMPLING_RATIO = 2  # bilinear samples per RoI bin side
AUDIO_CHUNK = 256  # patches per VGGish call in eval mode (bounds memory on long files)
FRAME_CHUNK = 16  # frames per CNN call in eval mode


def scaled_width(channels: int, width: float) -> int:
    """Conv width after the multiplier: ``round(channels * width)``, at least ``MIN_CHANNELS``."""
    return max(MIN_CHANNELS, round(channels * width))


def chunked(fn: Callable[..., Tensor], *xs: Tensor, size: int, enabled: bool) -> Tensor:
    """``fn(*xs)``, or the same computed ``size`` rows at a time and concatenated when ``enabled``.

    Only used in eval mode: in training, BatchNorm statistics must see the whole batch.
    """
    if not enabled or xs[0].shape[0] <= size:
        return fn(*xs)
    parts = zip(*(x.split(size) for x in xs))
    return torch.cat([fn(*p) for p in parts])


class VGGish(nn.Module):
    """VGGish (Hershey et al. 2017) with the module names of the torchvggish port.

    At ``audio_width=1``, ``audio_fc=(4096, 4096)``, ``audio_embed=128`` and
    ``audio_norm=False`` the state dict keys and shapes are exactly torchvggish's
    (``features.{0,3,6,8,11,13}.*``, ``embeddings.{0,2,4}.*``; 72,141,184 parameters).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for v in VGGISH_LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            c = scaled_width(int(v), cfg.audio_width)
            # with BatchNorm the conv bias is redundant (BN's shift replaces it)
            layers.append(nn.Conv2d(c_in, c, kernel_size=3, padding=1, bias=not cfg.audio_norm))
            if cfg.audio_norm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.ReLU(inplace=True))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.num_features = c_in
        h, w = VGGISH_OUT_HW
        dims = (c_in * h * w, *cfg.audio_fc, cfg.audio_embed)
        fc: list[nn.Module] = []
        for n_in, n_out in zip(dims[:-1], dims[1:]):
            fc += [nn.Linear(n_in, n_out), nn.ReLU(inplace=True)]
        self.embeddings = nn.Sequential(*fc)

    def forward_features(self, patches: Tensor) -> Tensor:
        """(N, 96, 64) log-mel patches -> (N, c, 6, 4) conv maps."""
        N = patches.shape[0]
        x = patches.reshape(N, 1, PATCH_FRAMES, N_MELS)  # (N, 1, 96, 64)
        return self.features(x)  # (N, c, 6, 4)

    def forward_head(self, f: Tensor) -> Tensor:
        """(N, c, 6, 4) conv maps -> (N, audio_embed) embeddings."""
        N = f.shape[0]
        # TF VGGish flattens channels-last; torchvggish's two transposes give this same order
        x = f.permute(0, 2, 3, 1).reshape(N, -1)  # (N, 6 * 4 * c) in (h, w, c) order
        return self.embeddings(x)  # (N, audio_embed)

    def forward(self, patches: Tensor) -> Tensor:
        """(N, 96, 64) -> (N, audio_embed)."""
        return self.forward_head(self.forward_features(patches))


def embedding_layer(n_in: int, cfg: ModelConfig) -> nn.Sequential:
    """The learnt fc layer giving each proposal its d-dim feature: Linear (+BatchNorm) + ReLU + Dropout.

    With ``embed_norm`` the features are batch-normalised over the proposals: from a
    random start the proposals of different clips otherwise look almost alike
    (features vary ~30x less across clips than their mean), and the ℓ2-normalised
    hinge loss barely rewards telling them apart, so training stalls at the
    all-classes-absent solution.
    """
    layers: list[nn.Module] = [nn.Linear(n_in, cfg.embed_dim)]
    if cfg.embed_norm:
        layers.append(nn.BatchNorm1d(cfg.embed_dim))
    layers += [nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
    return nn.Sequential(*layers)


class AudioBranch(nn.Module):
    """VGGish embedding followed by the learnt adaptation layer: (N, 96, 64) -> (N, d)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.vggish = VGGish(cfg)
        self.adapt = embedding_layer(cfg.audio_embed, cfg)

    def _embed(self, patches: Tensor) -> Tensor:
        return self.adapt(self.vggish(patches))  # (n, d)

    def forward(self, patches: Tensor) -> Tensor:
        """(N, 96, 64) -> (N, embed_dim)."""
        return chunked(self._embed, patches, size=AUDIO_CHUNK, enabled=not self.training)


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _small_cnn(channels: tuple[int, ...]) -> nn.Sequential:
    """Conv3x3+BN+ReLU blocks; the first has stride 2 and the first two are followed by a 2x2
    max-pool, so the output stride is ``SMALL_CNN_STRIDE`` = 8 (224 px -> 28 cells)."""
    layers: list[nn.Module] = []
    c_in = 3
    for i, c in enumerate(channels):
        layers.append(_conv_bn_relu(c_in, c, stride=2 if i == 0 else 1))
        if i < SMALL_CNN_POOLS:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        c_in = c
    return nn.Sequential(*layers)


def _resnet18_trunk() -> nn.Sequential:
    """torchvision resnet18 from conv1 to layer3, keeping torchvision's submodule names."""
    from torchvision.models import resnet18  # deferred: torchvision.models is slow to import

    net = resnet18(weights=None)
    return nn.Sequential(OrderedDict((name, getattr(net, name)) for name in RESNET_TRUNK))


class VisualBackbone(nn.Module):
    """Frame CNN: "small" (stride 8, ``visual_channels[-1]`` maps) or "resnet18" (stride 16, 256).

    ``spatial_scale = 1 / stride`` maps frame pixels to feature-map cells for RoI pooling.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.kind = cfg.visual_backbone
        if self.kind == "resnet18":
            self.trunk = _resnet18_trunk()
            self.stride, self.num_features = RESNET_STRIDE, RESNET_CHANNELS
        else:
            self.trunk = _small_cnn(cfg.visual_channels)
            self.stride, self.num_features = SMALL_CNN_STRIDE, cfg.visual_channels[-1]

    @property
    def spatial_scale(self) -> float:
        """Feature-map cells per frame pixel (1/8 or 1/16)."""
        return 1.0 / self.stride

    def forward_features(self, images: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, c, ~H/stride, ~W/stride)."""
        return self.trunk(images)

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_features(images)

    def load_torchvision_state_dict(self, sd: dict[str, Tensor]) -> None:
        """Copy a torchvision ``resnet18`` state dict into the trunk (layer4/fc keys are ignored).

        Raises:
            ConfigError: the backbone is not "resnet18".
            CheckpointError: a needed key is missing, unexpected, or has the wrong shape.
        """
        if self.kind != "resnet18":
            raise ConfigError(
                f"torchvision weights need visual_backbone='resnet18' (this model has {self.kind!r})"
            )
        own = self.trunk.state_dict()
        sd = {k: v for k, v in sd.items() if not k.startswith(RESNET_UNUSED)}
        # very old torchvision checkpoints lack BatchNorm's num_batches_tracked counters
        missing = sorted(k for k in own if k not in sd and not k.endswith("num_batches_tracked"))
        unexpected = sorted(set(sd) - set(own))
        shapes = [f"{k}: {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
                  for k in sorted(set(sd) & set(own)) if sd[k].shape != own[k].shape]
        if missing or unexpected or shapes:
            raise CheckpointError(
                "not a torchvision resnet18 state dict: "
                f"missing {missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}), "
                f"shape mismatches {shapes[:3]}; pass the weights of torchvision.models.resnet18"
            )
        self.trunk.load_state_dict(sd, strict=False)


class RoIHead(nn.Module):
    """RoIAlign over each frame's boxes, then the ``visual_fc`` layers and a linear to ``embed_dim``."""

    def __init__(self, cfg: ModelConfig, in_channels: int, spatial_scale: float):
        super().__init__()
        self.roi_size = cfg.roi_size
        self.spatial_scale = spatial_scale
        dims = (in_channels * cfg.roi_size**2, *cfg.visual_fc)
        layers: list[nn.Module] = []
        for n_in, n_out in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
        self.fc = nn.Sequential(*layers)
        self.proj = embedding_layer(dims[-1], cfg)

    def forward(self, fmap: Tensor, boxes: Tensor) -> Tensor:
        """(N, c, h, w) maps and (N, M, 4) x0,y0,x1,y1 frame-pixel boxes -> (N, M, d)."""
        N, M, _ = boxes.shape
        frame = torch.arange(N, device=boxes.device).repeat_interleave(M)  # (N * M,)
        rois = torch.cat([frame[:, None].to(fmap.dtype), boxes.reshape(N * M, 4).to(fmap.dtype)], 1)  # (N*M, 5)
        if self.training:  # torchvision's kernel: ~6x faster backward; its import (~1 s) is no matter here
            from torchvision.ops import roi_align as tv_roi_align

            r = tv_roi_align(fmap, rois, output_size=self.roi_size, spatial_scale=self.spatial_scale,
                             sampling_ratio=ROI_SAMPLING_RATIO, aligned=True)  # (N * M, c, k, k)
        else:  # the same op in plain torch (avscene.nn.roi): keeps torchvision out of inference
            r = roi_align(fmap, rois, output_size=self.roi_size, spatial_scale=self.spatial_scale,
                          sampling_ratio=ROI_SAMPLING_RATIO)  # (N * M, c, k, k)
        z = self.proj(self.fc(r.flatten(1)))  # (N * M, d)
        return z.view(N, M, -1)  # (N, M, d)


class VisualBranch(nn.Module):
    """Frames and their boxes -> one ``embed_dim`` feature per box: (N, 3, H, W), (N, M, 4) -> (N, M, d)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.backbone = VisualBackbone(cfg)
        self.roi = RoIHead(cfg, self.backbone.num_features, self.backbone.spatial_scale)

    def _embed(self, images: Tensor, boxes: Tensor) -> Tensor:
        return self.roi(self.backbone(images), boxes)  # (n, M, d)

    def forward(self, images: Tensor, boxes: Tensor) -> Tensor:
        return chunked(self._embed, images, boxes, size=FRAME_CHUNK, enabled=not self.training)
