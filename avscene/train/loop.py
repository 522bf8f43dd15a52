"""The training loop: weak labels in, a Hub-format checkpoint out.

Runs unchanged on one process or under ``torchrun --nproc_per_node=N`` (DDP;
gloo on CPU, nccl on CUDA): each rank takes an interleaved share of every
batch, gradients are averaged by DDP, and only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avscene.config import PreprocessConfig
from avscene.errors import ConfigError, UsageError
from avscene.evaluation.metrics.classification import micro_prf
from avscene.nn.model import AVSceneNet, ModelConfig
from avscene.proposals.bags import AUDIO_PROPOSAL_TYPES
from avscene.results import json_text
from avscene.train import checkpointing
from avscene.train.augment import (
    AugmentOptions, audio_parts, background_negative, clip_tensors, collate, mix_bags, splice_bags,
)
from avscene.train.calibrate import calibrate_threshold
from avscene.train.data import (
    BalancedBatchSampler,
    CachedClip,
    ClipCache,
    class_names_of,
    read_manifest,
    shuffled_batches,
    split_examples,
    targets,
    warm_cache,
)

FREEZABLE = ("audio_backbone", "visual_backbone", "audio", "visual")
# ModelConfig fields a fine-tuning run (--init-model) may add, each with the prefix of the
# parameters of the part it adds (those start as built; every other weight comes from the checkpoint)
ADDABLE: dict[str, str] = {"audio_context": "audio_context.", "visual_refine": "visual_refiner.",
                           "event_head": "audio_event."}
# PreprocessConfig fields a fine-tuning run may change: a new input normalisation the network adapts to
ADDABLE_PRE = ("band_norm", "visual_proposals")

# Named architectures: ModelConfig and PreprocessConfig overrides. "small" trains from
# scratch on a 2-core CPU in well under an hour (the bundled model); "vggish" is the
# paper's layout (exact VGGish, so --init-audio VGGish weights load; ResNet-18 frames).
PRESETS: dict[str, dict[str, dict]] = {
    "small": {
        "model": {"audio_width": 0.125, "audio_fc": [256], "audio_norm": True,
                  "visual_channels": [24, 48, 96, 96], "visual_fc": [256, 256], "embed_dim": 128,
                  # ~2 sqrt(15): at sqrt(C) one modality alone meets the hinge margin only when
                  # every score is exactly +-1, and the audio/visual variants stall (README)
                  "score_scale": 7.75},
        "preprocess": {"image_size": 160},
    },
    "vggish": {
        "model": {"audio_width": 1.0, "audio_fc": [4096, 4096], "audio_norm": False,
                  "visual_backbone": "resnet18", "visual_fc": [1024, 1024], "embed_dim": 128},
        "preprocess": {"image_size": 224},
    },
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved in the checkpoint's config.json)."""

    manifest: str  # CSV: clip,labels
    output: str  # checkpoint folder
    val_manifest: str | None = None  # None: hold out `val_split` of the training manifest
    val_split: float = 0.1  # fraction of the manifest held out for model selection (per label set, rounded;
    #                         none held out: the last epoch is kept and no threshold calibrated)
    variant: str = "async"  # one of avscene.nn.model.VARIANTS
    audio_proposals: str = "tsp"  # tsp | ncp | tsp+ncp
    epochs: int = 30  # maximum epochs
    batches_per_epoch: int | None = None  # None: one pass worth (N / batch size)
    batch_size: int = 24  # the paper's batch size
    lr: float = 1e-3  # AdamW; models here start from scratch, so larger than the paper's 1e-5
    weight_decay: float = 1e-4
    patience: int = 6  # epochs without a better validation micro-F1 (ties: lower loss) before stopping
    select: str = "clean"  # what picks the epoch and the threshold (SELECTIONS): "clean" hold-out micro-F1,
    #                        or "robust": pooled over the hold-out clean, with training-family noise, pure noise
    keep_epochs: bool = False  # also save every epoch's checkpoint as <output>/epochs/NN (compare selections)
    freeze: tuple[str, ...] = ()  # parts kept fixed: audio_backbone, visual_backbone
    seed: int = 0
    balance: bool = True  # label-first balanced batches (the paper's sampler)
    augment: bool = True
    mix_prob: float = 0.0  # bag mixing: probability that a training bag gets a second clip (labels: union)
    aux_loss: float = 0.0  # weight of each modality's own loss beside the fused one (0: off)
    refine_labels: bool = False  # modality-aware targets for the aux loss (train/refine.py; needs aux_loss)
    oicr_weight: float = 1.0  # weight of the OICR branches' loss (models with visual_refine)
    visual_floor: float = 0.0  # weight of the floor under the visual stream's own evidence (mil.floor_loss; 0: off)
    splice_prob: float = 0.0  # temporal splice: probability that a bag is joined in time with a clip of other labels
    event_weight: float = 1.0  # weight of the event head's loss (models with event_head)
    augment_opts: dict = field(default_factory=dict)  # AugmentOptions overrides (field: value)
    cache_dir: str | None = None  # None: $AVSCENE_CACHE or ~/.cache/avscene
    workers: int = 2  # processes preparing the cache
    init_audio: str | None = None  # VGGish state dict (safetensors or .pth)
    init_visual: str | None = None  # torchvision ImageNet state dict of the visual CNN
    init_model: str | None = None  # avscene checkpoint to start from (fine-tuning): its architecture,
    #                                preprocessing and weights, loaded strictly; labels must match
    resume: bool = False  # continue from <output>/last
    calibrate: bool = True  # after training, set the decision threshold on the held-out clips
    device: str = "cpu"
    preset: str = "small"  # a PRESETS entry; `model`/`preprocess` override it key by key
    model: dict = field(default_factory=dict)  # ModelConfig overrides
    preprocess: dict = field(default_factory=dict)  # PreprocessConfig overrides

    def to_dict(self) -> dict:
        import dataclasses

        return dataclasses.asdict(self)

    def record(self) -> dict:
        """``to_dict()`` as a checkpoint stores it: file paths relative to the working directory,
        so that a published config.json names no directory of the machine it was trained on."""
        out = self.to_dict()
        for key in ("manifest", "output", "val_manifest", "cache_dir", "init_audio", "init_visual", "init_model"):
            if out[key]:
                out[key] = portable_path(out[key])
        return out


def _same_parameters(mcfg: ModelConfig, variant: str) -> bool:
    """Whether the ``variant`` network of ``mcfg`` has exactly the parameters (names and shapes)
    of ``mcfg``'s own: then a fine-tune may change the variant (a fusion change, e.g. async → avor)."""
    def shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in AVSceneNet(cfg).state_dict().items()}

    return shapes(mcfg) == shapes(dataclasses.replace(mcfg, variant=variant))


def portable_path(path: str) -> str:
    """``path`` relative to the working directory (``../data/labels.csv``), or as given if it
    has no relative form (another drive)."""
    try:
        return os.path.relpath(os.path.abspath(path))
    except ValueError:
        return path


@dataclass(frozen=True)
class TrainSummary:
    output: str
    best_epoch: int  # the epoch kept: best on the hold-out, or the last without one
    best_val_f1: float  # NaN without hold-out clips
    epochs_run: int
    seconds: float
    class_names: tuple[str, ...]
    holdout_clips: int = 0  # clips the epochs were validated on; 0: none, the last epoch was kept


def _dist() -> tuple[int, int, bool]:
    """(rank, world size, whether this call created the process group); initialises it under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    created = False
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        created = True
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world, created


def _from_rank0(obj: dict, world: int) -> dict:
    """Rank 0's ``obj`` on every rank, so that all ranks take the same decisions."""
    if world == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


# Model selection: the hold-out pool whose micro-F1 (ties: loss) picks the epoch and calibrates the
# threshold. A clean hold-out cannot see what robustness to unfamiliar sound buys (the 2026-12-05
# ablation); "robust" adds each hold-out clip under a training-family background at 0 dB and as pure
# noise (train/augment.holdout_backgrounds): every label predicted on pure noise is a false positive.
SELECTIONS: dict[str, tuple[str, ...]] = {"clean": ("clean",), "robust": ("clean", "noisy", "pure")}
HOLDOUT_SNR_DB = 0.0
SELECTION_TEXT = {"clean": "best validation micro-F1",
                  "robust": "best robust validation micro-F1 (hold-out clean, with training-family noise at "
                            "0 dB, and pure noise)"}

NO_HOLDOUT = ("no hold-out clips (--val-split 0, or too few clips per label set for the stratified "
              "split to hold any out; --val gives a validation manifest)")


class Trainer:
    """Holds the data, model and optimiser of one run; ``fit`` runs it."""

    def __init__(self, cfg: TrainConfig, *, log: Callable[[str], None] = print):
        if cfg.audio_proposals not in AUDIO_PROPOSAL_TYPES:
            raise ConfigError(f"--audio-proposals must be one of {AUDIO_PROPOSAL_TYPES}")
        bad = [f for f in cfg.freeze if f not in FREEZABLE]
        if bad:
            raise ConfigError(f"--freeze: unknown part(s) {bad}; choose from {FREEZABLE}")
        self.cfg, self.log = cfg, log
        self.rank, self.world, self.owns_group = _dist()
        if cfg.batch_size < self.world:
            raise ConfigError(f"--batch-size {cfg.batch_size} is smaller than the {self.world} processes: "
                              f"use at least {self.world} bags per batch")
        torch.manual_seed(cfg.seed)
        if cfg.select not in SELECTIONS:
            raise ConfigError(f"--select must be one of {sorted(SELECTIONS)}")
        if cfg.preset not in PRESETS:
            raise ConfigError(f"--preset must be one of {sorted(PRESETS)}")
        preset = PRESETS[cfg.preset]
        self.pre = PreprocessConfig.from_dict({**PreprocessConfig().to_dict(), **preset["preprocess"],
                                               "audio_proposals": cfg.audio_proposals, **cfg.preprocess})
        examples = read_manifest(cfg.manifest)
        self.class_names = class_names_of(examples)
        if cfg.val_manifest:
            self.train_ex, self.val_ex = examples, read_manifest(cfg.val_manifest, class_names=self.class_names)
        else:
            self.train_ex, self.val_ex = split_examples(examples, cfg.val_split, cfg.seed)
        self.augment_options = AugmentOptions.from_dict(cfg.augment_opts)
        if cfg.refine_labels and cfg.aux_loss <= 0:
            raise ConfigError("--refine-labels trains each modality's own loss: give --aux-loss > 0")
        if cfg.oicr_weight < 0:
            raise ConfigError(f"--oicr-weight must be >= 0, not {cfg.oicr_weight}")
        if cfg.visual_floor < 0:
            raise ConfigError(f"--visual-floor must be >= 0, not {cfg.visual_floor}")
        if not 0 <= cfg.splice_prob <= 1 or cfg.event_weight < 0:
            raise ConfigError(f"--splice-prob must be in [0, 1] and --event-weight >= 0, not {cfg.splice_prob}, "
                              f"{cfg.event_weight}")
        self.modal_targets: tuple[np.ndarray, np.ndarray] | None = None  # refined (y_audio, y_visual)
        if cfg.init_model:
            self.model, self.mcfg, self.pre = self._start_from(cfg)
        else:
            self.mcfg = ModelConfig.from_dict({**preset["model"], "num_classes": len(self.class_names),
                                               "variant": cfg.variant, **cfg.model})
            self.model = AVSceneNet(self.mcfg).to(cfg.device)
        if cfg.visual_floor > 0 and (self.mcfg.variant == "wsddn" or not self.mcfg.uses_visual):
            raise ConfigError("--visual-floor needs a visual classification stream of scores (not the "
                              f"{self.mcfg.variant} variant)")
        checkpointing.initialise(self.model, audio=cfg.init_audio, visual=cfg.init_visual)
        checkpointing.freeze(self.model, cfg.freeze)
        if self.mcfg.audio_context and self.pre.audio_proposals != "tsp":
            raise ConfigError("audio_context needs time-ordered audio windows: use --audio-proposals tsp")
        self.cache = ClipCache(Path(cfg.cache_dir) if cfg.cache_dir else None, self.pre)
        self._holdout: dict[str, tuple[list[CachedClip], np.ndarray]] | None = None  # holdout_sets()

    def load_clips(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Prepare (or read from the cache) every clip of both splits into memory."""
        paths = [e.path for e in self.train_ex + self.val_ex]
        if self.rank == 0:  # the other ranks wait, then read what rank 0 wrote
            for i, _ in enumerate(warm_cache(self.cache, paths, workers=self.cfg.workers)):
                if progress:
                    progress(i + 1, len(paths))
        if self.world > 1:
            torch.distributed.barrier()
        self.train_clips = [self.cache.get(e.path) for e in self.train_ex]
        self.val_clips = [self.cache.get(e.path) for e in self.val_ex]
        self._holdout = None

    def _start_from(self, cfg: TrainConfig) -> tuple[AVSceneNet, ModelConfig, PreprocessConfig]:
        """Fine-tuning: the network, model config and preprocessing of the checkpoint
        ``cfg.init_model`` (weights loaded strictly), its calibrated threshold dropped."""
        from avscene.checkpoint.load import load_pretrained

        added = {k: v for k, v in cfg.model.items() if k in ADDABLE}
        if set(cfg.model) - set(ADDABLE) or set(cfg.preprocess) - set(ADDABLE_PRE) or cfg.init_audio \
                or cfg.init_visual:
            raise ConfigError("--init-model takes the architecture and preprocessing of that checkpoint: "
                              "drop --init-audio, --init-visual, every --model-opt but "
                              f"{', '.join(ADDABLE)} (a part added to it) and every --pre-opt but "
                              f"{', '.join(ADDABLE_PRE)}")
        loaded = load_pretrained(cfg.init_model, offline=True, device=cfg.device)
        if tuple(loaded.labels) != tuple(self.class_names):
            raise ConfigError(f"--init-model {cfg.init_model} has the labels {list(loaded.labels)}, the "
                              f"manifest {list(self.class_names)}")
        if loaded.config.variant != cfg.variant and not _same_parameters(loaded.config, cfg.variant):
            raise ConfigError(f"--init-model {cfg.init_model} is the {loaded.config.variant} variant, whose "
                              f"weights the {cfg.variant} variant does not have; pass --variant "
                              f"{loaded.config.variant}")
        if loaded.preprocess.audio_proposals != cfg.audio_proposals:
            raise ConfigError(f"--init-model {cfg.init_model} uses --audio-proposals "
                              f"{loaded.preprocess.audio_proposals}")
        mcfg = dataclasses.replace(loaded.config, threshold=None, variant=cfg.variant, **added)
        model = loaded.model
        if mcfg.variant != loaded.config.variant and not added:  # a fusion change: the same weights
            model = AVSceneNet(mcfg)
            model.load_state_dict(loaded.model.state_dict(), strict=True)
        if added:  # the checkpoint's weights in a network that has the added part, which starts as built
            model = AVSceneNet(mcfg)
            missing, unexpected = model.load_state_dict(loaded.model.state_dict(), strict=False)
            prefixes = tuple(ADDABLE[k] for k in added)
            if unexpected or any(not k.startswith(prefixes) for k in missing):
                raise ConfigError(f"--init-model: weights do not fit the network with {sorted(added)}: "
                                  f"missing {missing}, unexpected {unexpected}")
        model = model.to(cfg.device)
        model.cfg = mcfg  # saved with the fine-tuned weights; the threshold is calibrated again
        return model, mcfg, dataclasses.replace(loaded.preprocess, **cfg.preprocess)

    def _batches(self, epoch: int) -> list[np.ndarray]:
        y = targets(self.train_ex, self.class_names)
        n_batches = self.cfg.batches_per_epoch or math.ceil(len(self.train_ex) / self.cfg.batch_size)
        if self.cfg.balance:
            return BalancedBatchSampler(y, batch_size=self.cfg.batch_size, batches_per_epoch=n_batches,
                                        seed=self.cfg.seed).epoch(epoch)
        batches = shuffled_batches(len(self.train_ex), batch_size=self.cfg.batch_size, seed=self.cfg.seed,
                                   epoch=epoch)
        # every rank needs a bag of each batch (a short last batch would leave one without)
        return [b for b in batches if len(b) >= self.world][:n_batches]

    def _input(self, clips: list[CachedClip], rng: np.random.Generator | None):
        return self._input_parts([(c,) for c in clips], rng)[0]

    def _input_parts(self, bags: list[tuple[CachedClip, ...]], rng: np.random.Generator | None):
        """The ``ModelInput`` of bags of one clip or two spliced in time (``splice_bags``), and the
        (B, P) part of each audio window (0: the first clip, 1: the second), or None without audio."""
        opts = self.augment_options if rng is not None else None
        tensors = []
        for parts in bags:
            t = [clip_tensors(c, self.pre, rng, opts) for c in parts]
            tensors.append(t[0] if len(t) == 1 else splice_bags(*t))
        x = collate(tensors, use_audio=self.mcfg.uses_audio, use_visual=self.mcfg.uses_visual)
        part = None if x.audio is None else audio_parts(tensors).to(self.cfg.device)
        return type(x)(*[None if t is None else t.to(self.cfg.device) for t in x]), part

    def _targets(self) -> torch.Tensor:
        """(S, N, C) targets of the training clips: the video labels, then, with
        ``--refine-labels``, the refined audio and visual targets."""
        ys = [targets(self.train_ex, self.class_names)] + list(self.modal_targets or ())
        return torch.from_numpy(np.stack([np.asarray(t, dtype=np.float32) for t in ys]))

    def _mixed(self, clips: list[CachedClip], y: torch.Tensor,
               rng: np.random.Generator | None) -> tuple[list[CachedClip], torch.Tensor]:
        """Bag mixing: each bag, with probability ``mix_prob``, gets a random second training
        clip; each of its targets ``y`` (S, B, C) becomes the union of both clips' (the mixed
        audio holds both soundtracks, the frames both clips' frames)."""
        if rng is None or self.cfg.mix_prob <= 0:
            return clips, y
        y_all = self._targets()
        clips, y = list(clips), y.clone()
        for i in range(len(clips)):
            if rng.random() < self.cfg.mix_prob:
                j = int(rng.integers(len(self.train_clips)))
                clips[i] = mix_bags(clips[i], self.train_clips[j], rng)
                y[:, i] = torch.maximum(y[:, i], y_all[:, j].to(y.dtype))
        return clips, y

    def _negatives(self, clips: list[CachedClip], y: torch.Tensor,
                   rng: np.random.Generator | None) -> tuple[list[CachedClip], torch.Tensor]:
        """Background-only negatives: each bag, with probability ``negative_prob``, becomes
        ``augment.background_negative`` of itself, with no label in any target of ``y`` (S, B, C)."""
        p = self.augment_options.negative_prob
        if rng is None or p <= 0:
            return clips, y
        clips, y = list(clips), y.clone()
        for i in range(len(clips)):
            if rng.random() < p:
                clips[i] = background_negative(clips[i], rng, sr=self.pre.sample_rate)
                y[:, i] = 0
        return clips, y

    def _spliced(self, clips: list[CachedClip], y: torch.Tensor, rng: np.random.Generator | None
                 ) -> tuple[list[tuple[CachedClip, ...]], torch.Tensor, torch.Tensor]:
        """Temporal splice: each bag, with probability ``splice_prob``, is joined in time with a
        random training clip that shares none of its labels (and its frame size), before or after
        it. Returns the bags (one clip or two), the targets ``y`` (S, B, C), of a spliced bag the
        union of both clips', and the audio targets of each part (B, 2, C) (the refined audio
        targets with ``--refine-labels``, else the video labels; the second part of an unspliced bag
        is empty)."""
        heard = 1 if y.shape[0] == 3 else 0  # the row of y that says what is heard
        parts = torch.zeros(y.shape[1], 2, y.shape[2], dtype=y.dtype)
        parts[:, 0] = y[heard]
        bags: list[tuple[CachedClip, ...]] = [(c,) for c in clips]
        if rng is None or self.cfg.splice_prob <= 0:
            return bags, y, parts
        y_all = self._targets()  # (S, N, C)
        labels = y_all[0].numpy() > 0  # (N, C)
        y = y.clone()
        for i, clip in enumerate(clips):
            if rng.random() >= self.cfg.splice_prob:
                continue
            own = y[0, i].numpy() > 0
            ok = ~(labels & own).any(axis=1)
            if clip.frames is not None:
                ok &= np.array([c.frames is not None and c.frames.shape[1:] == clip.frames.shape[1:]
                                and c.boxes.shape[1:] == clip.boxes.shape[1:] for c in self.train_clips])
            cand = np.flatnonzero(ok)
            if not len(cand):
                continue
            j = int(cand[rng.integers(len(cand))])
            y[:, i] = torch.maximum(y[:, i], y_all[:, j].to(y.dtype))
            pair = [(clip, parts[i, 0].clone()), (self.train_clips[j], y_all[heard, j].to(y.dtype))]
            if rng.random() < 0.5:
                pair.reverse()
            bags[i] = (pair[0][0], pair[1][0])
            parts[i, 0], parts[i, 1] = pair[0][1], pair[1][1]
        return bags, y, parts

    def train_epoch(self, epoch: int, net, opt, loss_fn, step: Callable[[], None] | None = None) -> float:
        net.train()
        checkpointing.eval_frozen(self.model, self.cfg.freeze)
        # Dropout draws from torch's global RNG: seeding it per epoch (and rank) makes a resumed
        # run continue exactly as an uninterrupted one would.
        torch.manual_seed(int(np.random.SeedSequence([self.cfg.seed, epoch, self.rank]).generate_state(1)[0]))
        y_all = self._targets()  # (S, N, C): video labels [, refined audio, visual]
        losses = []
        for b, batch in enumerate(self._batches(epoch)):
            mine = batch[self.rank :: self.world]
            rng = np.random.default_rng([self.cfg.seed, epoch, b, self.rank]) if self.cfg.augment else None
            clips, ys = self._mixed([self.train_clips[i] for i in mine], y_all[:, mine], rng)
            clips, ys = self._negatives(clips, ys, rng)
            bags, ys, part_y = self._spliced(clips, ys, rng)
            x, part = self._input_parts(bags, rng)
            ys = ys.to(self.cfg.device)
            modal = (ys[1], ys[2]) if len(ys) == 3 else None
            loss = training_loss(net(x), ys[0], loss_fn, scale=self.mcfg.fused_scale,
                                 aux=self.cfg.aux_loss, wsddn=self.mcfg.variant == "wsddn",
                                 sigmoid=self.mcfg.variant == "avor", modality_targets=modal, x=x,
                                 oicr_weight=self.cfg.oicr_weight, visual_floor=self.cfg.visual_floor,
                                 events=(self.cfg.event_weight, part, part_y.to(self.cfg.device)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if step:
                step()
        return float(np.mean(losses)) if losses else float("nan")

    @torch.no_grad()
    def modality_targets(self, *, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Refined (y_audio, y_visual) of the training clips, scored by the current model with each
        clip's audio (then frames) beside an unrelated clip's other track (``train/refine.py``)."""
        from avscene.train.refine import keep_modality, refine_targets, unrelated_partners

        self.model.eval()
        y = targets(self.train_ex, self.class_names) > 0
        partners = unrelated_partners(y, np.random.default_rng([self.cfg.seed, 1]))
        kept = {}
        for keep in ("audio", "visual"):
            clips = [keep_modality(c, self.train_clips[j], keep) if j >= 0 else c
                     for c, j in zip(self.train_clips, partners)]
            kept[keep] = torch.cat([self.model(self._input(clips[i : i + batch], None)).scores.float().cpu()
                                    for i in range(0, len(clips), batch)]).numpy()
        return refine_targets(y, kept["audio"], kept["visual"], partners, threshold=self.mcfg.decision_threshold)

    def holdout_sets(self) -> dict[str, tuple[list[CachedClip], np.ndarray]]:
        """The hold-out pools (clips, labels (N, C)): ``clean``, ``noisy`` (a training-family
        background at ``HOLDOUT_SNR_DB``) and ``pure`` (the backgrounds alone, no label)."""
        if self._holdout is None:
            from avscene.train.augment import holdout_backgrounds

            y = targets(self.val_ex, self.class_names)
            noisy, pure = holdout_backgrounds(self.val_clips, seed=self.cfg.seed, sr=self.pre.sample_rate,
                                              snr_db=HOLDOUT_SNR_DB)
            pure = pure if self.mcfg.uses_audio else []  # pure noise is an audio-only input
            self._holdout = {"clean": (self.val_clips, y), "noisy": (noisy, y),
                             "pure": (pure, np.zeros((len(pure), y.shape[1]), y.dtype))}
        return self._holdout

    @torch.no_grad()
    def holdout_scores(self, *, pools: tuple[str, ...] = ("clean",), batch: int = 16,
                       model: AVSceneNet | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Fused scores (N, C) of the validation clips of ``pools`` (no augmentation) by ``model``
        (default: the one training) and their labels (N, C).

        Raises:
            UsageError: there are no validation clips.
        """
        if not self.val_ex:
            raise UsageError(NO_HOLDOUT)
        net = self.model if model is None else model
        net.eval()
        scores, labels = [], []
        for name in pools:
            clips, y = self.holdout_sets()[name]
            scores += [net(self._input(clips[i : i + batch], None)).scores.float().cpu()
                       for i in range(0, len(clips), batch)]  # a pool's bags share their modalities
            labels.append(y)
        return torch.cat(scores), np.concatenate(labels)

    def saved_holdout_scores(self, folder: Path) -> tuple[np.ndarray, np.ndarray, ModelConfig]:
        """The checkpoint saved in ``folder`` (the run's best epoch) on the hold-out pools that chose
        it (``SELECTIONS[cfg.select]``): its fused scores (N, C), the labels (N, C) bool and its
        config (uncalibrated), for :func:`avscene.train.calibrate.calibrate_threshold`."""
        from avscene.checkpoint.load import load_pretrained

        loaded = load_pretrained(str(folder), device=self.cfg.device)
        scores, y = self.holdout_scores(pools=SELECTIONS[self.cfg.select], model=loaded.model)
        return scores.numpy(), y > 0, dataclasses.replace(loaded.config, threshold=None)

    def validate(self, loss_fn, *, batch: int = 16) -> dict[str, float]:
        """Hold-out figures: ``val_*`` on the clean clips, ``noisy_micro_f1`` under training-family
        noise, ``pure_alarm`` (share of pure-noise inputs given a label) and the ``robust_*`` figures
        of the three pooled (what ``select == "robust"`` chooses by). Every run logs both, so the
        epochs of one run (``keep_epochs``) can be compared under either selection."""
        t = self.mcfg.decision_threshold
        s, y = self.holdout_scores(batch=batch)
        p, r, f1 = micro_prf(y > 0, s.numpy() > t, undefined=0.0)
        out = {"val_loss": float(loss_fn(s, torch.from_numpy(y))), "val_micro_f1": f1,
               "val_precision": p, "val_recall": r}
        sn, yn = self.holdout_scores(pools=("noisy",), batch=batch)
        sp, yp = self.holdout_scores(pools=("pure",), batch=batch) if self.holdout_sets()["pure"][0] \
            else (s[:0], y[:0])
        s_all, y_all = torch.cat([s, sn, sp]), np.concatenate([y, yn, yp])
        out.update(noisy_micro_f1=micro_prf(yn > 0, sn.numpy() > t, undefined=0.0)[2],
                   pure_alarm=float((sp.numpy() > t).any(axis=1).mean()) if len(sp) else 0.0,
                   robust_loss=float(loss_fn(s_all, torch.from_numpy(y_all))),
                   robust_micro_f1=micro_prf(y_all > 0, s_all.numpy() > t, undefined=0.0)[2])
        return out


def fit(cfg: TrainConfig, *, log: Callable[[str], None] = print,
        on_step: Callable[[int, int, int], None] | None = None,
        on_prepare: Callable[[int, int], None] | None = None) -> TrainSummary:
    """Train a model as configured; writes ``cfg.output`` (best checkpoint, log, resume state).

    Args:
        cfg: the run's configuration.
        log: where one-line progress messages go.
        on_step: called after every optimisation step with (epoch, step, steps per epoch).
        on_prepare: called while the cache is prepared with (done, total).
    """
    from torch.nn.parallel import DistributedDataParallel

    from avscene.nn.mil import loss_fn as make_loss

    t_start = time.perf_counter()
    tr = Trainer(cfg, log=log)
    if tr.rank != 0:
        log = lambda m: None  # noqa: E731 - one copy of each message
    out = Path(cfg.output)
    tr.load_clips(on_prepare)
    if cfg.refine_labels:
        tr.modal_targets = _refined_targets(tr, out, resume=cfg.resume, log=log)
    params = [p for p in tr.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1), eta_min=cfg.lr * 0.02)
    start_epoch, best, best_epoch, best_loss = 0, -1.0, -1, float("inf")
    if cfg.resume and (out / "last" / "state.json").is_file():
        state = checkpointing.load_resume(out / "last", tr.model, opt, sched)
        start_epoch, best, best_epoch = state["epoch"] + 1, state["best"], state["best_epoch"]
        best_loss = state.get("best_loss", float("inf"))
        log(f"resumed from {out / 'last'} after epoch {state['epoch']}")
    net = DistributedDataParallel(tr.model) if tr.world > 1 else tr.model
    loss_fn = make_loss(tr.mcfg)
    holdout = len(tr.val_ex)
    if not holdout:
        log(f"{NO_HOLDOUT}: training without validation; every epoch is saved, so the last one is "
            "kept, with no early stopping and no threshold calibration")
    n_steps = len(tr._batches(0))
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        step_cb = None
        if on_step:
            counter = iter(range(1, n_steps + 1))
            step_cb = lambda e=epoch: on_step(e, next(counter), n_steps)  # noqa: E731
        train_loss = tr.train_epoch(epoch, net, opt, loss_fn, step_cb)
        sched.step()
        record = {"epoch": epoch, "train_loss": train_loss, **(tr.validate(loss_fn) if holdout else {}),
                  "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        # BatchNorm statistics differ between ranks after training: rank 0's model is the one
        # saved, so its validation decides (identically on every rank) what happens next.
        record = _from_rank0(record, tr.world)
        # better micro-F1, or the same (e.g. still 0 early on) with a lower validation loss;
        # without a hold-out every epoch counts as the best so far: the last one is kept
        f1_key, loss_key = ("robust_micro_f1", "robust_loss") if cfg.select == "robust" else ("val_micro_f1", "val_loss")
        improved = not holdout or record[f1_key] > best or (record[f1_key] == best and record[loss_key] < best_loss)
        if improved and not holdout:
            best_epoch = epoch
        elif improved:
            best, best_epoch, best_loss = record[f1_key], epoch, record[loss_key]
        if tr.rank == 0:
            _append_jsonl(out / "train_log.jsonl", record)
            training = {**cfg.record(), "best_epoch": epoch, "val_micro_f1": best if holdout else None,
                        "holdout_clips": holdout, "processes": tr.world,
                        "selection": SELECTION_TEXT[cfg.select] if holdout else "last epoch (no hold-out clips)"}
            if improved:
                checkpointing.save_model(tr.model, out, class_names=tr.class_names, pre=tr.pre, training=training)
            if cfg.keep_epochs:  # each epoch as a checkpoint of its own (uncalibrated), to compare selections
                checkpointing.save_model(tr.model, out / "epochs" / f"{epoch:02d}", class_names=tr.class_names,
                                         pre=tr.pre, training={**training, "val_micro_f1": record.get(f1_key)})
            checkpointing.save_resume(out / "last", tr.model, opt, sched,
                                      {"epoch": epoch, "best": best, "best_epoch": best_epoch,
                                       "best_loss": best_loss})
        robust = (f"  noisy {record['noisy_micro_f1']:.3f}  pure-noise alarms {record['pure_alarm']:.2f}"
                  f"  robust micro-F1 {record['robust_micro_f1']:.3f}") if holdout else ""
        val = (f"  val loss {record['val_loss']:.4f}  val micro-F1 {record['val_micro_f1']:.3f}{robust}"
               f"{'  *' if improved else ''}") if holdout else ""
        log(f"epoch {epoch}: loss {train_loss:.4f}{val}  ({record['seconds']:.0f}s)")
        if holdout and epoch - best_epoch >= cfg.patience:
            log(f"stopping: no better validation micro-F1 for {cfg.patience} epochs")
            break
    if tr.rank == 0 and cfg.calibrate and best_epoch >= 0 and holdout:
        scores, y, saved = tr.saved_holdout_scores(out)
        calibrate_threshold(out, scores, y, saved, pools=cfg.select, log=log)
    if tr.world > 1:
        torch.distributed.barrier()
    if tr.owns_group:
        torch.distributed.destroy_process_group()
    return TrainSummary(output=str(out), best_epoch=best_epoch,
                        best_val_f1=float(best) if holdout else float("nan"),
                        epochs_run=epoch + 1 - start_epoch, seconds=time.perf_counter() - t_start,
                        class_names=tuple(tr.class_names), holdout_clips=holdout)


def _refined_targets(tr: Trainer, out: Path, *, resume: bool,
                     log: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray]:
    """The run's refined targets: computed once by the starting model, kept in the run folder
    (a resumed run reuses them, so it continues as the uninterrupted one would)."""
    path = out / "refined_targets.npz"
    if resume and path.is_file():
        with np.load(path) as f:
            return f["audio"], f["visual"]
    ya, yv = tr.modality_targets()
    if tr.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        np.savez(path, audio=ya, visual=yv)
    y = targets(tr.train_ex, tr.class_names) > 0
    log(f"refined labels: {int(y.sum() - ya.sum())} audio and {int(y.sum() - yv.sum())} visual targets "
        f"dropped of {int(y.sum())}")
    return ya, yv


def training_loss(out, y: torch.Tensor, loss_fn, *, scale: float, aux: float = 0.0,
                  wsddn: bool = False, sigmoid: bool = False,
                  modality_targets: tuple[torch.Tensor, torch.Tensor] | None = None,
                  x=None, oicr_weight: float = 1.0, visual_floor: float = 0.0,
                  events: tuple[float, torch.Tensor | None, torch.Tensor] | None = None) -> torch.Tensor:
    """The fused loss, plus ``aux`` times the mean of each modality's own loss (its scores
    ℓ2-normalised and scaled as in the fusion, through a sigmoid for avor; WSDDN's
    probabilities as they are), so that neither stream can lean on the other; plus, for a
    model with OICR branches (``out.visual_refine``), ``oicr_weight`` times their loss on the
    proposals of ``x`` (the ``ModelInput``), taught by the visual targets; plus ``visual_floor``
    times the floor under the visual stream's own evidence (``mil.floor_loss`` of ``visual_A``
    on the real frames of ``x``, visual targets): a class the audio finds easily still has to be
    found in some box, so its visual stream cannot go dead; plus, for a model with an event head
    (``out.audio_event``), ``events = (weight, part, part_targets)`` gives the weight of its loss
    (``mil.event_loss``: each part of a spliced bag taught its own clip's labels; ``part`` (B, P)
    or None, ``part_targets`` (B, K, C); without ``events``, weight 1 and the whole bag ``y``)."""
    from avscene.nn.mil import event_loss, floor_loss, l2_normalise
    from avscene.nn.oicr import oicr_loss

    loss = loss_fn(out.scores, y)
    if out.audio_event is not None:
        weight, part, part_y = events if events is not None else (1.0, None, y[:, None])
        mask = x.audio_mask if x is not None else None
        loss = loss + weight * event_loss(out.audio_event, mask, part, part_y)
    if visual_floor > 0 and out.visual_A is not None:
        B, T, M, C = out.visual_A.shape
        fm = x.frame_mask if x is not None and x.frame_mask is not None else \
            torch.ones(B, T, dtype=torch.bool, device=out.visual_A.device)
        mask = fm.bool()[:, :, None].expand(B, T, M).reshape(B, T * M)  # (B, T*M)
        yv = y if modality_targets is None else modality_targets[1]
        loss = loss + visual_floor * floor_loss(out.visual_A.reshape(B, T * M, C), mask, yv)
    if out.visual_refine is not None:
        if x is None:
            raise UsageError("training_loss: a model with OICR branches needs the ModelInput (x=) for its boxes")
        fm = x.frame_mask if x.frame_mask is not None else torch.ones(x.boxes.shape[:2], dtype=torch.bool,
                                                                       device=x.boxes.device)
        yv = y if modality_targets is None else modality_targets[1]
        loss = loss + oicr_weight * oicr_loss(out.visual_refine, out.visual_E, x.boxes, yv, fm.bool())
    if aux <= 0:
        return loss
    ty = (y, y) if modality_targets is None else modality_targets  # (audio, visual) targets
    own = [(s if wsddn else l2_normalise(s) * scale, t)
           for s, t in zip((out.audio_scores, out.visual_scores), ty) if s is not None]
    own = [(torch.sigmoid(s), t) for s, t in own] if sigmoid else own
    if len(own) < 2:  # one modality: its own loss is the fused one
        return loss
    return loss + aux * torch.stack([loss_fn(s, t) for s, t in own]).mean()


def _append_jsonl(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json_text(record) + "\n")
        f.flush()
        os.fsync(f.fileno())
