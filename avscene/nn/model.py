"""AVSceneNet: audio and visual proposals -> video-level class scores and proposal localisation.

Reads top to bottom: the config, the input/output tuples, then the network. The
feature extractors live in ``backbones.py`` and the scoring heads, fusion and
losses in ``mil.py``. The network splits into ``forward_features`` (proposals → Z)
and ``forward_head`` (Z → scores), as timm's models do.

Variants (``ModelConfig.variant``):

* ``async``: two-stream head per modality, l2-normalised modality scores summed (the paper's default).
* ``sync``: the localisation softmax runs jointly over both modalities within each 1-s segment;
  segment scores are pooled by log-sum-exp and l2-normalised.
* ``audio`` / ``visual``: one modality, two-stream head, l2-normalised score.
* ``onestream``: classification stream only, log-sum-exp pooling over proposals, l2 fusion.
* ``wsddn``: WSDDN heads (scores in [0, 1]), modality mean, trained with binary log-loss.
* ``avor``: two-stream head per modality; each modality's probability is the sigmoid of its
  scaled ℓ2-normalised score, fused by noisy-OR (``1 - (1 - p_a)(1 - p_v)``: heard OR seen),
  trained with binary log-loss.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from avscene.errors import ConfigError, UsageError
from avscene.nn.backbones import N_MELS, PATCH_FRAMES, AudioBranch, VisualBranch
from avscene.nn.context import TemporalContext
from avscene.nn.oicr import InstanceRefiner, refined_scores
from avscene.nn.mil import (
    EventHead, OneStreamHead, TwoStreamHead, WSDDNHead, l2_fuse, mean_fuse, noisy_or_fuse, smooth_max, sync_pool,
)

VARIANTS = ("async", "sync", "audio", "visual", "onestream", "wsddn", "avor")
VISUAL_BACKBONES = ("small", "resnet18")
SMALL_CNN_MIN_BLOCKS = 2  # the small CNN pools after its first two blocks (stride 8)
# Upper bounds of the size fields, checked before anything is allocated: a config.json asking for
# more is refused with a ConfigError (an embed_dim of 10^7 would otherwise try to allocate 40 GB).
# Each is far above any avscene model (the bundled one: 16 classes, widths <= 4096, 4 conv blocks).
MAX_SIZE = {
    "num_classes": 10_000,  # AudioSet has 527 classes
    "embed_dim": 8192, "audio_embed": 8192,
    "audio_fc": 8192, "visual_fc": 8192,  # each fc width (VGGish's are 4096)
    "visual_channels": 4096,  # each conv block width
    "roi_size": 32,
    "audio_width": 4.0,  # VGGish channel multiplier
    "lse_r": 1000.0,
    "visual_refine": 8,  # OICR uses 3 refinement branches
}
NON_NEGATIVE = ("visual_refine",)  # int fields where 0 means "none"
MAX_LAYERS = 16  # entries of audio_fc, visual_fc and visual_channels


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build an ``AVSceneNet``; saved as ``config.json["model"]``."""

    num_classes: int
    variant: str = "async"  # one of VARIANTS; "async" = audio-visual two-stream
    embed_dim: int = 128  # d: proposal feature size fed to the scoring heads (both modalities)
    dropout: float = 0.2  # after the audio adaptation fc and each visual fc
    audio_width: float = 1.0  # VGGish channel multiplier; 1.0 = exact VGGish (64, ..., 512)
    audio_fc: tuple[int, ...] = (4096, 4096)  # VGGish fc widths before the embedding
    audio_embed: int = 128  # VGGish embedding size
    audio_norm: bool = False  # BatchNorm after each VGGish conv (False keeps the VGGish layout)
    visual_backbone: str = "small"  # "small" (custom CNN, stride 8) or "resnet18" (to layer3, stride 16)
    visual_channels: tuple[int, ...] = (32, 64, 128, 128)  # "small" only: conv block widths
    roi_size: int = 6  # RoI pooling output roi_size x roi_size
    visual_fc: tuple[int, ...] = (512, 512)  # fc layers after RoI pooling
    lse_r: float = 5.0  # sharpness of log-sum-exp pooling (onestream, sync)
    embed_norm: bool = True  # BatchNorm in the proposal embedding layers (see backbones.embedding_layer)
    score_scale: float | None = None  # factor on the ℓ2-normalised scores; None: sqrt(num_classes)
    audio_threshold: float | None = None  # "heard": audio modality score above this; None: as `threshold`'s default
    visual_threshold: float | None = None  # "seen": visual modality score above this; None: likewise
    threshold: float | None = None  # decision threshold calibrated after training; None: 0 (hinge), 0.5 (wsddn)
    audio_context: tuple[int, ...] = ()  # dilations of the temporal context over audio windows (nn/context.py); () = none
    visual_refine: int = 0  # OICR refinement branches over the visual proposals (nn/oicr.py); 0 = none
    event_head: bool = False  # a sound-event head beside the audio two-stream head (mil.EventHead): events from it
    # The sound-event rule calibrated on temporal splices of the training hold-out (`avscene calibrate
    # --events`, dsp.events.EventRule); event_start None: not calibrated, localize's built-in rule.
    event_start: float | None = None  # an event starts where a window's A (centred: minus the clip's median) is above
    event_low: float | None = None  # and continues while it stays above this (None: no hysteresis)
    event_median: int = 1  # median filter over this many window decisions (odd)
    event_fraction: float | None = None  # predicted classes: also windows at this fraction of the clip's best
    event_centre: bool = False  # thresholds on A minus the clip's median over windows
    event_margin: float | None = None  # predicted classes: also windows within this of the clip's best
    event_scope: str = "predicted"  # whose windows fraction / margin add: "predicted", or "unheard" (predicted, not heard)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _checked(f.name, str(f.type), getattr(self, f.name)))
        _check_sizes(self)
        if self.variant not in VARIANTS:
            raise ConfigError(f"variant: {self.variant!r} is not one of {', '.join(VARIANTS)}")
        if self.visual_backbone not in VISUAL_BACKBONES:
            raise ConfigError(f"visual_backbone: {self.visual_backbone!r} is not one of {VISUAL_BACKBONES}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: {self.dropout} must be in [0, 1)")
        for name in ("audio_width", "lse_r"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: {getattr(self, name)} must be > 0")
        if len(self.visual_channels) < SMALL_CNN_MIN_BLOCKS:
            raise ConfigError(f"visual_channels: give at least {SMALL_CNN_MIN_BLOCKS} widths, e.g. [32, 64]")
        _check_event_rule(self)

    @property
    def uses_audio(self) -> bool:
        return self.variant != "visual"

    @property
    def uses_visual(self) -> bool:
        return self.variant != "audio"

    @property
    def loss(self) -> str:
        """"bce" for WSDDN and avor (scores are probabilities), "hinge" for every other variant."""
        return "bce" if self.variant in ("wsddn", "avor") else "hinge"

    @property
    def fused_scale(self) -> float:
        """Factor applied to the ℓ2-normalised fused scores of the hinge-trained variants.

        A unit vector over C classes has components of size ~1/sqrt(C), so with the
        paper's plain ℓ2 fusion the hinge margin of 1 is out of reach for all classes
        at once and the loss barely rewards telling classes apart (from scratch,
        training sits at the all-absent solution). Scaling by sqrt(C) makes the
        margin reachable; it changes neither the sign nor the ranking of the scores.
        ``score_scale: 1.0`` restores the paper's exact fusion.
        """
        if self.variant == "wsddn":
            return 1.0
        return math.sqrt(self.num_classes) if self.score_scale is None else float(self.score_scale)

    @property
    def decision_threshold(self) -> float:
        """Score above which a class is predicted: the calibrated ``threshold`` if set, else 0.5 for
        probabilities (WSDDN) and 0 for hinge-trained scores."""
        if self.threshold is not None:
            return self.threshold
        return 0.5 if self.loss == "bce" else 0.0

    def modality_threshold(self, modality: str) -> float:
        """Threshold of a modality's own score (``modality_scores``): the calibrated
        ``audio_threshold`` / ``visual_threshold`` if set, else 0.5 (WSDDN) or 0 (hinge: the sign
        of the modality's share of the fused score)."""
        t = {"audio": self.audio_threshold, "visual": self.visual_threshold}[modality]
        if t is not None:
            return t
        return 0.5 if self.loss == "bce" else 0.0

    def input_threshold(self, modalities: Sequence[str]) -> float:
        """Decision threshold for an input that has the streams ``modalities``.

        An input with every stream the model uses is decided by the fused :attr:`decision_threshold`.
        An input with one stream of a two-stream model (an audio file, a silent video, pure noise)
        is decided by that stream's own decision, heard or seen (:meth:`modality_threshold`): the
        fused threshold was chosen on sums of two streams, and with one stream the fused score *is*
        that stream's score (``modality_scores``: its share, or its probability). Measured on the
        bundled model's audio-only inputs (`docs/results/single_stream/`): fewer labels on pure noise
        and no lower micro-F1 on the soundtracks of ``val`` / ``val_shift``.
        """
        present = [m for m in ("audio", "visual") if m in modalities]
        if self.uses_audio and self.uses_visual and len(present) == 1:
            return self.modality_threshold(present[0])
        return self.decision_threshold

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``: unknown keys warn, a missing required key or bad value raises ConfigError."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            warnings.warn(f"ignoring unknown model config keys: {unknown}", stacklevel=2)
        for name, f in fields.items():
            if name not in d and f.default is dataclasses.MISSING:
                raise ConfigError(f"model config: missing required key {name!r}")
        return cls(**{k: v for k, v in d.items() if k in fields})


def _checked(name: str, type_name: str, value: Any) -> Any:
    """``value`` converted to the field's type (lists -> tuples, int -> float), else ConfigError."""
    bad = ConfigError(f"{name}: {value!r} is not a valid {type_name}")
    if type_name == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if type_name == "str":
        if not isinstance(value, str):
            raise bad
        return value
    if type_name == "float | None":
        return None if value is None else _checked(name, "float", value)
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if type_name == "int":
        low = 0 if name in NON_NEGATIVE else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name}: {value!r} must be a {'non-negative' if low == 0 else 'positive'} integer")
        return value
    # tuple[int, ...]: JSON gives lists (an empty list is allowed: "none")
    if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                                   for v in value):
        raise ConfigError(f"{name}: {value!r} must be a list of positive integers")
    return tuple(value)


def _check_event_rule(cfg: ModelConfig) -> None:
    """Raise ConfigError for an event rule that ``dsp.events.EventRule`` would refuse."""
    if cfg.event_start is None:
        if (cfg.event_low is not None or cfg.event_fraction is not None or cfg.event_median != 1 or cfg.event_centre
                or cfg.event_margin is not None or cfg.event_scope != "predicted"):
            raise ConfigError("event_low, event_median, event_fraction, event_centre, event_margin and event_scope "
                              "need event_start")
        return
    if not math.isfinite(cfg.event_start) or (cfg.event_low is not None and not math.isfinite(cfg.event_low)):
        raise ConfigError(f"event_start / event_low: {cfg.event_start} / {cfg.event_low} must be finite")
    if cfg.event_low is not None and not cfg.event_low <= cfg.event_start:
        raise ConfigError(f"event_low: {cfg.event_low} must not exceed event_start {cfg.event_start}")
    if cfg.event_median % 2 == 0:
        raise ConfigError(f"event_median: {cfg.event_median} must be odd")
    if cfg.event_fraction is not None and not 0.0 <= cfg.event_fraction <= 1.0:
        raise ConfigError(f"event_fraction: {cfg.event_fraction} must be in [0, 1]")
    if cfg.event_margin is not None and not (math.isfinite(cfg.event_margin) and cfg.event_margin >= 0):
        raise ConfigError(f"event_margin: {cfg.event_margin} must be finite and >= 0")
    if cfg.event_scope not in ("predicted", "unheard"):  # dsp.events.RELATIVE_SCOPES
        raise ConfigError(f"event_scope: {cfg.event_scope!r} is not 'predicted' or 'unheard'")


def _check_sizes(cfg: ModelConfig) -> None:
    """Raise ConfigError for a size field above :data:`MAX_SIZE` (before any tensor is allocated)."""
    for name, limit in MAX_SIZE.items():
        value = getattr(cfg, name)
        values = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and len(value) > MAX_LAYERS:
            raise ConfigError(f"{name}: {len(value)} layers; at most {MAX_LAYERS}")
        if any(not v <= limit for v in values):  # `not <=` also refuses NaN
            raise ConfigError(f"{name}: {value!r} is too large; at most {limit:g}"
                              f"{' each' if isinstance(value, tuple) else ''}")


class ModelInput(NamedTuple):
    """A batch of bags. Either modality may be None (a file without audio or video)."""

    audio: Tensor | None = None  # (B, P, 96, 64) log-mel patches (TSPs or NCPs)
    audio_mask: Tensor | None = None  # (B, P) bool, True = real proposal; None = all real
    audio_segment: Tensor | None = None  # (B, P) long, 1-s segment of each audio proposal (sync)
    images: Tensor | None = None  # (B, T, 3, H, W) float, ImageNet-normalised frames
    boxes: Tensor | None = None  # (B, T, M, 4) float x0,y0,x1,y1 in `images` pixels
    frame_mask: Tensor | None = None  # (B, T) bool; None = all real
    frame_segment: Tensor | None = None  # (B, T) long (sync)


class ModelOutput(NamedTuple):
    """Network outputs; a modality absent from the input (or the variant) gives None."""

    scores: Tensor  # (B, C) fused video-level class scores (what the loss sees)
    audio_scores: Tensor | None = None  # (B, C) audio modality score before fusion
    visual_scores: Tensor | None = None  # (B, C)
    audio_E: Tensor | None = None  # (B, P, C) localisation-weighted proposal scores A ⊙ softmax(L)
    visual_E: Tensor | None = None  # (B, T, M, C)
    audio_A: Tensor | None = None  # (B, P, C) classification-stream scores
    visual_A: Tensor | None = None  # (B, T, M, C)
    segment_scores: Tensor | None = None  # (B, S, C) sync: fused segment scores before pooling
    audio_segment_scores: Tensor | None = None  # (B, S, C) sync: audio share of segment_scores
    visual_segment_scores: Tensor | None = None  # (B, S, C) sync: visual share
    visual_refine: Tensor | None = None  # (B, T, M, K, C+1) OICR branches' logits (cfg.visual_refine > 0)
    visual_R: Tensor | None = None  # (B, T, M, C) their class probabilities averaged: what chooses boxes
    audio_event: Tensor | None = None  # (B, P, C) event-head logits per audio window (cfg.event_head)


def modality_scores(out: ModelOutput, cfg: ModelConfig) -> dict[str, Tensor]:
    """Each modality's own video-level score, on the scale of the fused one: (B, C) per modality.

    Hinge variants: the modality's ℓ2-normalised score times ``cfg.fused_scale`` (its share of
    the fused score; the per-modality training loss sees the same); WSDDN: its probability;
    avor: the sigmoid of the former (the probabilities its noisy-OR fuses).
    A modality absent from ``out`` is absent from the dict.
    """
    from avscene.nn.mil import l2_normalise

    raw = {"audio": out.audio_scores, "visual": out.visual_scores}
    if cfg.variant == "wsddn":
        return {m: s for m, s in raw.items() if s is not None}
    scaled = {m: l2_normalise(s) * cfg.fused_scale for m, s in raw.items() if s is not None}
    return {m: torch.sigmoid(s) for m, s in scaled.items()} if cfg.variant == "avor" else scaled


def box_scores(out: ModelOutput) -> Tensor | None:
    """What chooses a class's boxes: the OICR branches' probabilities if the model has them, else
    the MIL head's ``visual_E``; (B, T, M, C) or, for one clip's output, (T, M, C)."""
    return out.visual_R if out.visual_R is not None else out.visual_E


def event_scores(out: ModelOutput) -> Tensor | None:
    """What decides when a class sounds: the event head's window logits if the model has one
    (sounding above 0: probability 1/2), else the MIL head's ``audio_E`` (sounding above 0: the
    sign of the classification stream); (B, P, C) or, for one clip's output, (P, C)."""
    return out.audio_event if out.audio_event is not None else out.audio_E


class ProposalFeatures(NamedTuple):
    """Proposal embeddings Z of a batch of bags: ``forward_features`` → ``forward_head``.

    Embedding is per proposal (in eval mode), so the features of a long file can be
    computed piece by piece and joined with :func:`cat_features` before the MIL head.
    """

    audio: Tensor | None = None  # (B, P, d) audio proposal features
    audio_mask: Tensor | None = None  # (B, P) bool, True = real proposal
    audio_segment: Tensor | None = None  # (B, P) long, 1-s segment (sync)
    visual: Tensor | None = None  # (B, T, M, d) box features
    frame_mask: Tensor | None = None  # (B, T) bool
    frame_segment: Tensor | None = None  # (B, T) long (sync)


def cat_features(parts: list[ProposalFeatures]) -> ProposalFeatures:
    """Join the features of consecutive pieces of the same bags along the proposal axis.

    A piece may lack a modality (no frame or no audio in it); a modality absent from every
    piece stays None. Masks/segments must be given for all pieces of a modality or none.
    """
    def cat(name: str) -> Tensor | None:
        ts = [getattr(f, name) for f in parts if getattr(f, name) is not None]
        return torch.cat(ts, dim=1) if ts else None  # (B, sum N_i, ...)

    return ProposalFeatures(*(cat(name) for name in ProposalFeatures._fields))


class _Bag(NamedTuple):
    z: Tensor  # (B, N, d) proposal features
    mask: Tensor  # (B, N) bool
    segment: Tensor | None  # (B, N) long


def _check_input(x: ModelInput, *, sync: bool) -> None:
    """Shape checks with messages that say what the tensor should be."""
    if x.audio is not None:
        if x.audio.dim() != 4 or tuple(x.audio.shape[2:]) != (PATCH_FRAMES, N_MELS):
            raise UsageError(f"audio must be (B, P, {PATCH_FRAMES}, {N_MELS}) log-mel patches, "
                             f"got {tuple(x.audio.shape)}")
        _check_aux(x.audio_mask, x.audio.shape[:2], "audio_mask")
        _check_aux(x.audio_segment, x.audio.shape[:2], "audio_segment", required=sync)
    if x.images is not None:
        if x.images.dim() != 5 or x.images.shape[2] != 3:
            raise UsageError(f"images must be (B, T, 3, H, W), got {tuple(x.images.shape)}")
        if x.boxes is None or x.boxes.dim() != 4 or x.boxes.shape[:2] != x.images.shape[:2] \
                or x.boxes.shape[3] != 4:
            got = None if x.boxes is None else tuple(x.boxes.shape)
            raise UsageError(f"boxes must be (B, T, M, 4) for images {tuple(x.images.shape)}, got {got}")
        _check_aux(x.frame_mask, x.images.shape[:2], "frame_mask")
        _check_aux(x.frame_segment, x.images.shape[:2], "frame_segment", required=sync)
    if x.audio is not None and x.images is not None and x.audio.shape[0] != x.images.shape[0]:
        raise UsageError(f"audio and images disagree on the batch size: {x.audio.shape[0]} vs {x.images.shape[0]}")


def _check_aux(t: Tensor | None, shape: torch.Size | None, name: str, *, required: bool = False) -> None:
    if t is None and required:
        raise UsageError(f"the sync variant needs {name} (the 1-s segment of each proposal)")
    if t is not None and shape is not None and t.shape != shape:
        raise UsageError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def _scatter_rows(rows: Tensor, mask: Tensor) -> Tensor:
    """Rows computed for the True entries of ``mask`` (K = mask.sum()) back into a zero-padded tensor."""
    if bool(mask.all()):
        return rows.view(*mask.shape, *rows.shape[1:])  # (B, L, ...)
    out = rows.new_zeros(*mask.shape, *rows.shape[1:])  # (B, L, ...)
    out[mask] = rows
    return out


def _make_head(cfg: ModelConfig) -> nn.Module:
    if cfg.variant == "onestream":
        return OneStreamHead(cfg.embed_dim, cfg.num_classes, cfg.lse_r)
    if cfg.variant == "wsddn":
        return WSDDNHead(cfg.embed_dim, cfg.num_classes)
    return TwoStreamHead(cfg.embed_dim, cfg.num_classes)


class AVSceneNet(nn.Module):
    """Audio-visual MIL network: ``audio``/``visual`` feature branches + one scoring head per modality.

    ``forward(x) == forward_head(forward_features(x))``. In eval mode every proposal is
    embedded on its own, so inference on a long file embeds it piece by piece
    (``forward_features``), joins the pieces (:func:`cat_features`) and scores the bag once
    (``forward_head``). In training mode BatchNorm sees the whole batch: use ``forward``.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.audio = AudioBranch(cfg) if cfg.uses_audio else None
        self.visual = VisualBranch(cfg) if cfg.uses_visual else None
        self.audio_context = TemporalContext(cfg) if cfg.uses_audio and cfg.audio_context else None
        self.audio_head = _make_head(cfg) if cfg.uses_audio else None
        self.visual_head = _make_head(cfg) if cfg.uses_visual else None
        self.visual_refiner = InstanceRefiner(cfg.embed_dim, cfg.num_classes, cfg.visual_refine) \
            if cfg.uses_visual and cfg.visual_refine else None
        self.audio_event = EventHead(cfg.embed_dim, cfg.num_classes) if cfg.uses_audio and cfg.event_head else None

    def forward_audio_features(self, patches: Tensor) -> Tensor:
        """(N, 96, 64) log-mel patches -> (N, embed_dim)."""
        if self.audio is None:
            raise ConfigError(f"the {self.cfg.variant!r} variant has no audio branch")
        return self.audio(patches)

    def forward_visual_features(self, images: Tensor, boxes: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        """(B, T, 3, H, W) frames and (B, T, M, 4) boxes -> (B, T, M, embed_dim); masked frames give 0."""
        if self.visual is None:
            raise ConfigError(f"the {self.cfg.variant!r} variant has no visual branch")
        B, T = images.shape[:2]
        mask = torch.ones(B, T, dtype=torch.bool, device=images.device) if frame_mask is None else frame_mask.bool()
        if not bool(mask.any()):
            return images.new_zeros(B, T, boxes.shape[2], self.cfg.embed_dim)
        if bool(mask.all()):
            z = self.visual(images.flatten(0, 1), boxes.flatten(0, 1))  # (B*T, M, d)
        else:
            z = self.visual(images[mask], boxes[mask])  # (K, M, d) for the K real frames
        return _scatter_rows(z, mask)  # (B, T, M, d)

    def score_audio_patches(self, patches: Tensor) -> Tensor:
        """Classification-stream scores A of isolated patches (used to score NCPs): (N, 96, 64) -> (N, C)."""
        return self.audio_head.classify(self.forward_audio_features(patches))  # (N, C)

    def forward_features(self, x: ModelInput) -> ProposalFeatures:
        """Embed every proposal of ``x``: the per-proposal part of ``forward``.

        A modality the input or the variant lacks gives None; masks are always filled in.
        """
        _check_input(x, sync=False)
        out: dict[str, Tensor | None] = {}
        if self.audio is not None and x.audio is not None:
            B, P = x.audio.shape[:2]
            mask = torch.ones(B, P, dtype=torch.bool, device=x.audio.device) if x.audio_mask is None \
                else x.audio_mask.bool()
            if bool(mask.all()):
                z = self.forward_audio_features(x.audio.flatten(0, 1)).view(B, P, -1)  # (B, P, d)
            elif bool(mask.any()):
                z = _scatter_rows(self.forward_audio_features(x.audio[mask]), mask)  # (B, P, d)
            else:
                z = x.audio.new_zeros(B, P, self.cfg.embed_dim)
            out.update(audio=z, audio_mask=mask, audio_segment=x.audio_segment)
        if self.visual is not None and x.images is not None:
            B, T = x.images.shape[:2]
            fm = torch.ones(B, T, dtype=torch.bool, device=x.images.device) if x.frame_mask is None \
                else x.frame_mask.bool()
            z = self.forward_visual_features(x.images, x.boxes, fm)  # (B, T, M, d)
            out.update(visual=z, frame_mask=fm, frame_segment=x.frame_segment)
        return ProposalFeatures(**out)

    def forward_head(self, f: ProposalFeatures) -> ModelOutput:
        """Score bags of proposal features (MIL heads, fusion, OICR box scores, event head): the
        bag-level part of ``forward``."""
        if f.audio is not None and self.audio_context is not None:
            f = f._replace(audio=self.audio_context(f.audio, f.audio_mask))  # (B, P, d)
        out = self._scored(f)
        if self.audio_event is not None and f.audio is not None:
            out = out._replace(audio_event=self.audio_event(f.audio))  # (B, P, C)
        if self.visual_refiner is None or out.visual_E is None:
            return out
        logits = self.visual_refiner(f.visual)  # (B, T, M, K, C+1)
        return out._replace(visual_refine=logits, visual_R=refined_scores(logits))

    def _scored(self, f: ProposalFeatures) -> ModelOutput:
        """The MIL heads and the fusion of ``forward_head`` (the audio features already in context)."""
        cfg = self.cfg
        a = v = None
        if f.audio is not None and self.audio_head is not None:
            a = _Bag(f.audio, f.audio_mask, f.audio_segment)
        if f.visual is not None and self.visual_head is not None:
            B, T, M = f.visual.shape[:3]
            mask = f.frame_mask[:, :, None].expand(B, T, M).reshape(B, T * M)  # (B, T*M)
            seg = None if f.frame_segment is None else \
                f.frame_segment[:, :, None].expand(B, T, M).reshape(B, T * M)  # (B, T*M)
            v = _Bag(f.visual.reshape(B, T * M, -1), mask, seg)  # (B, T*M, d)
        if a is None and v is None:
            need = " and/or ".join(m for m, u in (("audio", cfg.uses_audio), ("images+boxes", cfg.uses_visual)) if u)
            raise ConfigError(f"the {cfg.variant!r} variant needs {need} in ModelInput, but none was given")
        vshape = None if v is None else f.visual.shape[:3]  # (B, T, M)
        if cfg.variant == "sync":
            for bag, name in ((a, "audio_segment"), (v, "frame_segment")):
                _check_aux(None if bag is None else bag.segment, None, name, required=bag is not None)
            return self._forward_sync(a, v, vshape)
        out: dict[str, Tensor] = {}
        if a is not None:
            out["audio_scores"], out["audio_E"], out["audio_A"] = self.audio_head(a.z, a.mask)
        if v is not None:
            s, E, A = self.visual_head(v.z, v.mask)
            out.update(visual_scores=s, visual_E=E.view(*vshape, -1), visual_A=A.view(*vshape, -1))  # (B, T, M, C)
        if cfg.variant == "avor":  # heard OR seen
            probs = modality_scores(ModelOutput(scores=None, **out), cfg)
            return ModelOutput(scores=noisy_or_fuse(list(probs.values())), **out)
        fuse = mean_fuse if cfg.variant == "wsddn" else l2_fuse
        scores = fuse([out[k] for k in ("audio_scores", "visual_scores") if k in out]) * cfg.fused_scale
        return ModelOutput(scores=scores, **out)

    def forward(self, x: ModelInput) -> ModelOutput:
        """Score a batch of bags; see ``ModelInput`` / ``ModelOutput`` for the shapes."""
        _check_input(x, sync=self.cfg.variant == "sync")
        return self.forward_head(self.forward_features(x))

    def _forward_sync(self, a: _Bag | None, v: _Bag | None, vshape: torch.Size | None) -> ModelOutput:
        parts = [(name, bag, head) for name, bag, head in
                 (("audio", a, self.audio_head), ("visual", v, self.visual_head)) if bag is not None]
        streams = [head.streams(bag.z) for _, bag, head in parts]  # per modality (A, L), (B, N_i, C)
        pooled = sync_pool([s[0] for s in streams], [s[1] for s in streams], [b.segment for _, b, _ in parts],
                           [b.mask for _, b, _ in parts], r=self.cfg.lse_r)
        out: dict[str, Tensor] = {}
        for i, (name, _, _) in enumerate(parts):
            shape = (*vshape, -1) if name == "visual" else pooled.E[i].shape  # visual: (B, T, M, C)
            out[f"{name}_E"] = pooled.E[i].reshape(shape)
            out[f"{name}_A"] = streams[i][0].reshape(shape)
            out[f"{name}_segment_scores"] = pooled.shares[i]  # (B, S, C)
            # modality score: its shares pooled over the same segments, not normalised
            out[f"{name}_scores"] = smooth_max(pooled.shares[i], pooled.exists, self.cfg.lse_r)
        return ModelOutput(scores=pooled.scores * self.cfg.fused_scale, segment_scores=pooled.segment_scores,
                           **out)
