"""Calibration, one home: a checkpoint's decision thresholds chosen on its training hold-out.

The hinge loss puts the ideal boundary at 0, but a model stopped before it converges scores
many present classes just below 0 (high precision, low recall). So after training, the
thresholds are chosen on the *held-out training clips* (the split used for model selection;
never the test or validation set, nothing of ``val`` / ``val_shift``) and stored in the
checkpoint's ``config.json["model"]`` (:func:`store_thresholds`):

* ``threshold``, the fused decision: the grid value with the highest micro-F1
  (:func:`best_threshold`). Training calls :func:`calibrate_threshold` at the end of a run
  (``train.loop.fit``) with the hold-out pools that selected its epoch.
* ``audio_threshold`` / ``visual_threshold``, the heard / seen decisions: the grid pair whose
  "heard OR seen" best reproduces the video labels (:func:`best_modality_thresholds`).
  ``avscene calibrate MODEL`` (:func:`calibrate_modalities`) reproduces the hold-out of the run
  that trained MODEL (its ``config.json["training"]``: manifest, ``val_split`` and ``seed``, or
  ``val_manifest``; :func:`holdout_examples`) and scores it with the inference pipeline
  (``tasks._pipeline.analyse``, as ``classify`` does).

The choice is pure (arrays in, thresholds out); the grid and the value ties go to depend on
what the scores are (:func:`search_grid`: probabilities or hinge scores).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avscene.errors import UsageError
from avscene.evaluation.metrics.classification import micro_prf
from avscene.train.data import Example, read_manifest, split_examples, targets

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel
    from avscene.nn.model import ModelConfig


# ---- choosing (pure: scores in, thresholds out)


THRESHOLD_GRID = np.round(np.arange(-2.0, 1.0 + 1e-9, 0.05), 2)  # hinge scores: margin ±1
PROBABILITY_GRID = np.round(np.arange(0.05, 0.95 + 1e-9, 0.05), 2)  # probabilities (wsddn, avor)


def search_grid(cfg: ModelConfig) -> tuple[np.ndarray, float]:
    """The thresholds calibration tries for ``cfg``'s scores and the uncalibrated one ties go to:
    probabilities (``loss == "bce"``: WSDDN, noisy-OR) or hinge scores (margin ±1)."""
    return (PROBABILITY_GRID, 0.5) if cfg.loss == "bce" else (THRESHOLD_GRID, 0.0)


def micro_f1_at(scores: np.ndarray, y: np.ndarray, threshold: float) -> float:
    """Micro-F1 of ``scores > threshold`` against ``y`` (0 when undefined)."""
    return micro_prf(y, scores > threshold, undefined=0.0)[2]


def best_threshold(scores: np.ndarray, y: np.ndarray, *, default: float,
                   grid: np.ndarray = THRESHOLD_GRID) -> float:
    """The grid threshold with the highest micro-F1; ties go to the one closest to ``default``.

    Args:
        scores: (N, C) fused class scores.
        y: (N, C) bool labels.
        default: the model's uncalibrated threshold (0 for hinge scores).
    """
    f1 = np.array([micro_f1_at(scores, y, t) for t in grid])
    ties = grid[f1 >= f1.max() - 1e-12]
    return float(ties[np.argmin(np.abs(ties - default))])


def or_f1_at(audio: np.ndarray, visual: np.ndarray, y: np.ndarray, t_audio: float, t_visual: float, *,
             predicted: np.ndarray | None = None, base: float = 0.0) -> float:
    """Micro-F1 of "heard OR seen" (``avscene.tasks.classify.modality_decisions``) against ``y``.

    ``predicted``: (N, C) fused decisions (None: none predicted, the thresholds alone decide).
    """
    from avscene.tasks.classify import modality_decisions

    pred = np.zeros(y.shape, dtype=bool) if predicted is None else predicted
    heard, seen = modality_decisions(audio, visual, pred, t_audio=t_audio, t_visual=t_visual, base=base)
    return micro_prf(y, heard | seen, undefined=0.0)[2]


def best_modality_thresholds(audio: np.ndarray, visual: np.ndarray, y: np.ndarray, *, default: float,
                             grid: np.ndarray = THRESHOLD_GRID,
                             predicted: np.ndarray | None = None) -> tuple[float, float]:
    """The grid pair ``(t_audio, t_visual)`` whose "heard OR seen" best reproduces the video labels.

    The training clips carry video-level labels only, and a class is in a clip's label set
    when it is heard *or* seen; so the per-modality thresholds are chosen together, for the
    highest micro-F1 of the OR of the two decisions (``modality_decisions``, with the fused
    ``predicted`` decisions and ``base = default``). Ties go to the pair closest to
    ``(default, default)`` (L1), then to the lower audio threshold.

    Args:
        audio, visual: (N, C) per-modality scores (``avscene.nn.model.modality_scores``).
        y: (N, C) bool labels.
        default: the model's uncalibrated modality threshold (0 for hinge scores).
        predicted: (N, C) bool fused decisions, or None.
    """
    f1 = np.array([[or_f1_at(audio, visual, y, ta, tv, predicted=predicted, base=default) for tv in grid]
                   for ta in grid])  # (G, G)
    ia, iv = np.nonzero(f1 >= f1.max() - 1e-12)
    dist = np.abs(grid[ia] - default) + np.abs(grid[iv] - default)
    k = int(np.argmin(dist))  # first minimum: the lowest audio threshold among the closest
    return float(grid[ia[k]]), float(grid[iv[k]])


# ---- the hold-out of a training run


def recorded_path(training: dict, key: str, folder: str | Path | None = None) -> Path | None:
    """A file named by a checkpoint's training record, found from anywhere.

    The record's paths are relative to the folder training ran in (``TrainConfig.record``). That
    folder is the checkpoint's own path minus the recorded ``output`` (``/proj/runs/av`` trained
    as ``runs/av`` ran in ``/proj``); a checkpoint moved since is tried relative to itself, and
    last relative to the current folder. Returns the first candidate that exists (else the
    first candidate), None when the record has no such path.
    """
    value = training.get(key)
    if not value:
        return None
    path = Path(value)
    if path.is_absolute():
        return path
    candidates = []
    output = training.get("output")
    if folder is not None and output and not Path(output).is_absolute():
        here, tail = Path(folder).resolve().parts, Path(os.path.normpath(output)).parts
        if os.pardir not in tail and len(tail) < len(here) and here[-len(tail):] == tail:
            candidates.append(Path(*here[: -len(tail)]) / path)
    candidates += ([Path(folder) / path] if folder is not None else []) + [path]
    return next((c for c in candidates if c.is_file()), candidates[0])


def holdout_examples(training: dict, manifest: str | Path | None = None,
                     folder: str | Path | None = None) -> list[Example]:
    """The clips a run held out: ``val_manifest``'s, else its ``split_examples`` of the manifest.

    Args:
        training: ``config.json["training"]`` of the checkpoint.
        manifest: the training manifest, when its recorded path does not resolve.
        folder: the checkpoint folder: the record's paths are found from it (:func:`recorded_path`).
    """
    if training.get("val_manifest"):
        return read_manifest(recorded_path(training, "val_manifest", folder))
    missing = [k for k in ("val_split", "seed") if k not in training]
    if missing:
        raise UsageError(f"the checkpoint's training record lacks {', '.join(missing)}: its hold-out is unknown")
    path = manifest or recorded_path(training, "manifest", folder)
    if not path:
        raise UsageError("the checkpoint records no training manifest: pass it (avscene calibrate MODEL MANIFEST)")
    if not Path(path).is_file():
        raise UsageError(f"training manifest {path} not found: pass its path (avscene calibrate MODEL MANIFEST)")
    _, held = split_examples(read_manifest(path), float(training["val_split"]), int(training["seed"]))
    if not held:
        raise UsageError(f"the hold-out of {path} (val_split {training['val_split']}) is empty")
    return held


# ---- storing what was chosen


def store_thresholds(folder: str | Path, **thresholds: float) -> Path:
    """Set ``thresholds`` (``threshold``, ``audio_threshold``, ``visual_threshold``, the event rule's
    ``event_*``) in the
    ``config.json["model"]`` of the checkpoint ``folder``, atomically; returns the file."""
    from avscene.checkpoint.format import CONFIG_NAME, read_config, write_config

    folder = Path(folder)
    config = read_config(folder)
    config["model"].update(thresholds)
    write_config(folder, config)  # atomic, standard JSON (results.json_text)
    return folder / CONFIG_NAME


# ---- the fused threshold, at the end of training


def calibrate_threshold(folder: str | Path, scores: np.ndarray, y: np.ndarray, cfg: ModelConfig, *,
                        pools: str = "clean", log: Callable[[str], None] = print) -> float:
    """Choose the fused threshold of the checkpoint ``folder`` on its hold-out and store it.

    Args:
        scores: (N, C) fused scores of the hold-out clips by the saved model.
        y: (N, C) bool labels.
        cfg: the saved model's config, uncalibrated (what its scores are: :func:`search_grid`).
        pools: the hold-out pools the scores come from (``TrainConfig.select``), for the log.
    """
    grid, default = search_grid(cfg)
    t = best_threshold(scores, y, default=default, grid=grid)
    log(f"calibrated threshold {t:+.2f} on {len(y)} held-out inputs ({pools}): micro-F1 "
        f"{micro_f1_at(scores, y, default):.3f} at {default:+.2f} → {micro_f1_at(scores, y, t):.3f}")
    store_thresholds(folder, threshold=t)
    return t


# ---- the fused threshold of an existing checkpoint (avscene calibrate --threshold)

POOLS = {"clean": ("clean",), "robust": ("clean", "noisy", "pure")}  # as train.loop.SELECTIONS


@dataclass(frozen=True)
class FusedCalibration:
    """The fused decision threshold ``calibrate --threshold`` chose and the hold-out's micro-F1 at it."""

    threshold: float
    previous: float  # the checkpoint's threshold before
    pools: str
    n_inputs: int  # hold-out inputs scored (clean clips, their noisy and pure-noise versions)
    f1_before: float  # pooled micro-F1 at ``previous``
    f1_after: float
    written: str | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def holdout_pool_scores(loaded: LoadedModel, held: list[Example], *, pools: str = "robust", seed: int = 0,
                        progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fused scores (N, C) and labels (N, C) bool of the hold-out ``pools`` by the inference pipeline:
    each clip clean, and with ``robust`` also under a training-family background at 0 dB and as that
    background alone (frames left out, no label), the versions model selection uses
    (``train.augment.holdout_background``, clip ``i`` seeded by ``(seed, i)``). One decoding per clip.

    An input with one stream of a two-stream model (the background alone) is decided at that
    stream's own threshold whatever the fused one is (``ModelConfig.input_threshold``), so its
    scores enter as +inf where that decision predicts a class and -inf where not: every fused
    threshold the search tries sees the decision it will get."""
    from avscene.tasks._pipeline import AudioVariant, analyse_variants
    from avscene.train.augment import holdout_background

    if pools not in POOLS:
        raise UsageError(f"the threshold's hold-out pools must be one of {sorted(POOLS)}, got {pools!r}")
    names = list(loaded.labels)
    sr = loaded.preprocess.sample_rate
    y_all = targets(held, names) > 0
    scores, labels = [], []
    def background(i: int) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
        """Clip ``i``'s (noisy, pure) versions of a chunk, made once for both variants that use them."""
        made: dict[int, tuple[np.ndarray, np.ndarray]] = {}

        def versions(audio: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
            if start not in made:
                made.clear()
                made[start] = holdout_background(audio, i, seed=seed, sr=sr)
            return made[start]
        return versions

    for i, ex in enumerate(held):
        variants = [AudioVariant()]
        if pools == "robust" and loaded.config.uses_audio:
            versions = background(i)
            variants += [AudioVariant(edit=lambda a, s, v=versions: v(a, s)[0]),
                         AudioVariant(edit=lambda a, s, v=versions: v(a, s)[1], video=False)]
        for k, a in enumerate(analyse_variants(ex.path, loaded, variants)):
            s = a.output.scores.numpy()
            cfg = loaded.config
            if cfg.uses_audio and cfg.uses_visual and len(a.modalities) == 1:  # its stream's threshold decides
                s = np.where(s > cfg.input_threshold(a.modalities), np.inf, -np.inf)
            scores.append(s)
            labels.append(y_all[i] if k < 2 else np.zeros(len(names), bool))  # pure noise: no label
        if progress:
            progress(i + 1, len(held))
    return np.stack(scores), np.stack(labels)


def calibrate_fused(model: str | Path, manifest: str | Path | None = None, *, pools: str = "robust",
                    write: bool = True, device: str = "cpu",
                    progress: Callable[[int, int], None] | None = None) -> FusedCalibration:
    """Choose and (``write``) store a checkpoint folder's fused decision threshold on its training
    hold-out's ``pools`` (:func:`holdout_pool_scores`; the choice is :func:`best_threshold`, as at the
    end of training, whose ``--select`` names the same pools)."""
    import dataclasses

    model = Path(model)
    config, held, loaded = holdout_and_model(model, manifest, device)
    scores, y = holdout_pool_scores(loaded, held, pools=pools, seed=int(config["training"].get("seed", 0)),
                                    progress=progress)
    previous = loaded.config.decision_threshold
    grid, default = search_grid(dataclasses.replace(loaded.config, threshold=None))
    t = best_threshold(scores, y, default=default, grid=grid)
    written = str(store_thresholds(model, threshold=t)) if write else None
    return FusedCalibration(threshold=t, previous=previous, pools=pools, n_inputs=len(y),
                            f1_before=micro_f1_at(scores, y, previous), f1_after=micro_f1_at(scores, y, t),
                            written=written)


# ---- the per-modality pair of an existing checkpoint (avscene calibrate)


@dataclass(frozen=True)
class ModalityCalibration:
    """What ``calibrate`` chose and how the hold-out's "heard OR seen" micro-F1 moved."""

    audio_threshold: float
    visual_threshold: float
    n_clips: int
    f1_before: float  # at the thresholds the checkpoint had
    f1_after: float
    fused_f1: float  # the fused decision's micro-F1 on the same clips, for scale
    written: str | None  # the config.json updated, None with write=False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def holdout_modality_scores(loaded: LoadedModel, held: list[Example],
                            progress: Callable[[int, int], None] | None = None
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The audio, visual and fused scores (N, C) each of the clips ``held``, by the inference
    pipeline (``tasks._pipeline.analyse`` and ``nn.model.modality_scores``, as ``classify``)."""
    from avscene.nn.model import modality_scores
    from avscene.tasks._pipeline import analyse

    rows: dict[str, list[np.ndarray]] = {"audio": [], "visual": [], "fused": []}
    for i, ex in enumerate(held):
        out = analyse(ex.path, loaded).output
        per = modality_scores(out, loaded.config)
        for m in ("audio", "visual"):
            rows[m].append(per[m].numpy() if m in per else np.full(len(loaded.labels), -np.inf))
        rows["fused"].append(out.scores.numpy())
        if progress:
            progress(i + 1, len(held))
    a, v, s = (np.stack(rows[k]) for k in ("audio", "visual", "fused"))
    return a, v, s


def holdout_and_model(model: Path, manifest: str | Path | None, device: str):
    """A checkpoint folder's ``config.json``, the clips its training run held out and the model
    (for the per-modality calibration and the event calibration alike)."""
    from avscene.checkpoint.format import read_config
    from avscene.tasks.models import load_model

    config = read_config(model)
    if "training" not in config:
        raise UsageError(f"{model}: config.json has no training record, so its hold-out is unknown")
    held = holdout_examples(config["training"], manifest, model)
    return config, held, load_model(str(model), device=device, offline=True)


def calibrate_modalities(model: str | Path, manifest: str | Path | None = None, *, write: bool = True,
                         device: str = "cpu", decision_threshold: float | None = None,
                         progress: Callable[[int, int], None] | None = None) -> ModalityCalibration:
    """Choose and (``write``) store a checkpoint folder's per-modality thresholds.

    The choice is conditioned on the fused decisions at the checkpoint's decision threshold, or at
    ``decision_threshold`` when given (``calibrate --threshold --dry-run`` chose one and did not
    store it, so the checkpoint still has the old one)."""
    model = Path(model)
    config, held, loaded = holdout_and_model(model, manifest, device)
    cfg = loaded.config
    if not (cfg.uses_audio and cfg.uses_visual):
        raise UsageError(f"{model}: the {cfg.variant!r} variant has one modality; nothing to calibrate")
    a, v, s = holdout_modality_scores(loaded, held, progress)
    y = targets(held, list(loaded.labels)) > 0
    grid, default = search_grid(cfg)
    fused_t = cfg.decision_threshold if decision_threshold is None else decision_threshold
    pred = s > fused_t  # (N, C) the fused decisions
    ta, tv = best_modality_thresholds(a, v, y, default=default, grid=grid, predicted=pred)
    written = str(store_thresholds(model, audio_threshold=ta, visual_threshold=tv)) if write else None
    return ModalityCalibration(
        audio_threshold=ta, visual_threshold=tv, n_clips=len(held),
        f1_before=or_f1_at(a, v, y, cfg.modality_threshold("audio"), cfg.modality_threshold("visual"),
                           predicted=pred, base=default),
        f1_after=or_f1_at(a, v, y, ta, tv, predicted=pred, base=default),
        fused_f1=micro_prf(y, pred, undefined=0.0)[2], written=written)
