"""Choose a checkpoint's decision threshold from held-out scores (pure functions; training
calls them at the end of a run, :func:`avscene.train.loop.calibrate_run`).

The hinge loss puts the ideal boundary at 0, but a model stopped before it
converges scores many present classes just below 0 (high precision, low recall).
After training, the single global threshold that maximises micro-F1 on the
*held-out training clips* (the split used for model selection; never the test or
validation set) is stored in the checkpoint as ``model.threshold``.
"""

from __future__ import annotations

import numpy as np

from avscene.evaluation.metrics.classification import micro_prf

THRESHOLD_GRID = np.round(np.arange(-2.0, 1.0 + 1e-9, 0.05), 2)  # hinge scores: margin ±1
PROBABILITY_GRID = np.round(np.arange(0.05, 0.95 + 1e-9, 0.05), 2)  # probabilities (wsddn, avor)


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
