"""Calibrate a checkpoint's decision threshold on the training run's held-out clips.

The hinge loss puts the ideal boundary at 0, but a model stopped before it
converges scores many present classes just below 0 (high precision, low recall).
After training, the single global threshold that maximises micro-F1 on the
*held-out training clips* (the split used for model selection; never the test or
validation set) is stored in the checkpoint as ``model.threshold``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from avscene.train.metrics import micro_prf

THRESHOLD_GRID = np.round(np.arange(-2.0, 1.0 + 1e-9, 0.05), 2)  # hinge scores: margin ±1


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


def calibrate_run(run: str | Path, *, log: Callable[[str], None] = print) -> float:
    """Recompute the run's held-out split, score it with the saved best model, store the threshold."""
    from avscene.hub import CONFIG_NAME, load_pretrained, read_config
    from avscene.train.loop import TrainConfig, Trainer

    run = Path(run)
    config = read_config(run)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    tcfg = TrainConfig(**{k: v for k, v in config.get("training", {}).items() if k in names})
    tr = Trainer(dataclasses.replace(tcfg, resume=False, init_audio=None, init_visual=None), log=log)
    tr.val_clips = [tr.cache.get(e.path) for e in tr.val_ex]
    loaded = load_pretrained(str(run), device=tcfg.device)
    tr.model, tr.mcfg = loaded.model, dataclasses.replace(loaded.config, threshold=None)
    scores, y = tr.holdout_scores()
    default = tr.mcfg.decision_threshold
    t = best_threshold(scores.numpy(), y > 0, default=default)
    log(f"calibrated threshold {t:+.2f} on {len(y)} held-out clips: micro-F1 "
        f"{micro_f1_at(scores.numpy(), y > 0, default):.3f} at {default:+.2f} → "
        f"{micro_f1_at(scores.numpy(), y > 0, t):.3f}")
    config["model"]["threshold"] = t
    tmp = run / f".{CONFIG_NAME}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, run / CONFIG_NAME)
    return t
