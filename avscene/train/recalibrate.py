"""Calibrate an existing checkpoint's per-modality thresholds on its training hold-out.

``avscene calibrate MODEL`` reproduces the hold-out of the run that trained MODEL (its
``config.json["training"]``: manifest, ``val_split`` and ``seed``, or ``val_manifest``),
scores those clips with the inference pipeline (``tasks._pipeline.analyse``, as
``classify`` does), picks ``audio_threshold`` / ``visual_threshold``
(:func:`avscene.train.calibrate.best_modality_thresholds`) and stores them in
``config.json["model"]``. Nothing of ``val`` / ``val_shift`` is used.
"""

from __future__ import annotations

from collections.abc import Callable
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avscene.errors import UsageError
from avscene.train.calibrate import PROBABILITY_GRID, THRESHOLD_GRID, best_modality_thresholds, or_f1_at
from avscene.train.data import Example, read_manifest, targets


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
    from avscene.train.loop import split_examples

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


def holdout_and_model(model: Path, manifest: str | Path | None, device: str):
    """A checkpoint folder's ``config.json``, the clips its training run held out and the model."""
    from avscene.hub import read_config
    from avscene.tasks.models import load_model

    config = read_config(model)
    if "training" not in config:
        raise UsageError(f"{model}: config.json has no training record, so its hold-out is unknown")
    held = holdout_examples(config["training"], manifest, model)
    return config, held, load_model(str(model), device=device, offline=True)


def calibrate_modalities(model: str | Path, manifest: str | Path | None = None, *, write: bool = True,
                         device: str = "cpu",
                         progress: Callable[[int, int], None] | None = None) -> ModalityCalibration:
    """Choose and (``write``) store a checkpoint folder's per-modality thresholds."""
    from avscene.hub import CONFIG_NAME, write_config
    from avscene.nn.model import modality_scores
    from avscene.tasks._pipeline import analyse

    model = Path(model)
    config, held, loaded = holdout_and_model(model, manifest, device)
    if not (loaded.config.uses_audio and loaded.config.uses_visual):
        raise UsageError(f"{model}: the {loaded.config.variant!r} variant has one modality; nothing to calibrate")
    names = list(loaded.labels)
    rows: dict[str, list[np.ndarray]] = {"audio": [], "visual": [], "fused": []}
    for i, ex in enumerate(held):
        out = analyse(ex.path, loaded).output
        per = modality_scores(out, loaded.config)
        for m in ("audio", "visual"):
            rows[m].append(per[m].numpy() if m in per else np.full(len(names), -np.inf))
        rows["fused"].append(out.scores.numpy())
        if progress:
            progress(i + 1, len(held))
    a, v, s = (np.stack(rows[k]) for k in ("audio", "visual", "fused"))  # (N, C) each
    y = targets(held, names) > 0
    cfg = loaded.config
    default = 0.5 if cfg.loss == "bce" else 0.0
    grid = PROBABILITY_GRID if cfg.loss == "bce" else THRESHOLD_GRID
    pred = s > cfg.decision_threshold  # (N, C) the fused decisions
    ta, tv = best_modality_thresholds(a, v, y, default=default, grid=grid, predicted=pred)
    written = None
    if write:
        config["model"].update(audio_threshold=ta, visual_threshold=tv)
        write_config(model, config)  # atomic, standard JSON (results.json_text)
        written = str(model / CONFIG_NAME)
    from avscene.train.metrics import micro_prf

    return ModalityCalibration(
        audio_threshold=ta, visual_threshold=tv, n_clips=len(held),
        f1_before=or_f1_at(a, v, y, cfg.modality_threshold("audio"), cfg.modality_threshold("visual"),
                           predicted=pred, base=default),
        f1_after=or_f1_at(a, v, y, ta, tv, predicted=pred, base=default),
        fused_f1=micro_prf(y, pred, undefined=0.0)[2], written=written)
