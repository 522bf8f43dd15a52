"""Multi-label classification metrics (pure numpy).

Definitions used (each function's docstring repeats its own): multi-label classification counts ``TP``/``FP``/``FN`` over the cells of an
  ``(N, C)`` label matrix. Precision ``TP / (TP + FP)``, recall
  ``TP / (TP + FN)``, F1 ``2 TP / (2 TP + FP + FN)`` (the harmonic mean of
  precision and recall wherever both exist). *Micro* averages pool the counts of
  all classes; *macro* F1 is the unweighted mean of the class F1 over the
  classes with at least one positive example (see :func:`classification_metrics`).

Undefined values (a ratio with a zero denominator) are ``nan`` in the dataclasses and
``null`` in ``to_json()``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from avscene.errors import UsageError
from avscene.evaluation.metrics import json_float, safe_ratio


def _as_label_matrix(y: np.ndarray, name: str) -> np.ndarray:
    """Validate an (N, C) 0/1 or bool matrix and return it as bool."""
    y = np.asarray(y)
    if y.ndim != 2:
        raise UsageError(f"{name} must be a 2-D (N, C) array, got shape {y.shape}")
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise UsageError(f"{name} must hold only 0/1 or True/False; threshold scores first")
        y = y.astype(bool)
    return y


def _as_scores(scores: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != shape:
        raise UsageError(f"scores have shape {s.shape} but the labels have shape {shape}; pass one score per label")
    if not np.isfinite(s).all():
        raise UsageError("scores contain nan or inf; fix the model outputs before scoring")
    return s


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall and F1 of one class (``nan`` where undefined)."""

    name: str
    precision: float  # TP / (TP + FP); nan if the class is never predicted
    recall: float  # TP / (TP + FN); nan if the class has no positive example
    f1: float  # 2 TP / (2 TP + FP + FN); nan if TP + FP + FN == 0
    support: int  # number of positive examples (TP + FN)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "precision": json_float(self.precision),
            "recall": json_float(self.recall),
            "f1": json_float(self.f1),
            "support": self.support,
        }


@dataclass(frozen=True)
class ClassificationMetrics:
    """Multi-label classification scores of a data set; see :func:`classification_metrics`."""

    micro_precision: float
    micro_recall: float
    micro_f1: float
    macro_f1: float  # mean class F1 over the classes with support > 0
    accuracy: float  # exact-match subset accuracy: the fraction of rows predicted exactly
    n_samples: int
    classes: tuple[ClassScores, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "micro_precision": json_float(self.micro_precision),
            "micro_recall": json_float(self.micro_recall),
            "micro_f1": json_float(self.micro_f1),
            "macro_f1": json_float(self.macro_f1),
            "accuracy": json_float(self.accuracy),
            "n_samples": self.n_samples,
            "classes": [c.to_json() for c in self.classes],
        }


def micro_prf(y_true: np.ndarray, y_pred: np.ndarray, *, undefined: float = math.nan) -> tuple[float, float, float]:
    """Micro precision, recall and F1 of (N, C) 0/1 labels and predictions (the definitions of
    :func:`classification_metrics`). An undefined ratio (nothing predicted, nothing present) is
    ``undefined``: ``nan`` for reports, ``0.0`` for model selection and threshold search, where
    "predicts nothing" must compare as the worst score rather than not at all."""
    t, p = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    TP, FP, FN = int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())

    def ratio(num: int, den: int) -> float:
        return float(num) / den if den else undefined

    return ratio(TP, TP + FP), ratio(TP, TP + FN), ratio(2 * TP, 2 * TP + FP + FN)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> ClassificationMetrics:
    """Micro/macro precision, recall and F1 and subset accuracy of multi-label predictions.

    Definitions (as in scikit-learn's ``precision_recall_fscore_support``,
    except for the zero-division convention): with per-class counts ``TP``,
    ``FP``, ``FN``, precision ``TP / (TP + FP)``, recall ``TP / (TP + FN)``,
    F1 ``2 TP / (2 TP + FP + FN)``. Micro scores pool the counts of all classes.
    An undefined ratio is ``nan`` (scikit-learn returns 0 with a warning).

    A class without positive examples has ``recall = nan`` and an F1 of 0 (if
    it was predicted) or ``nan`` (if not); either way it is *excluded from the
    macro F1*, which is the mean F1 over the classes with ``support > 0``
    (``nan`` if there are none). ``accuracy`` is the exact-match (subset)
    accuracy: the fraction of rows whose whole label set is predicted exactly.

    Args:
        y_true: (N, C) bool (or 0/1) ground-truth labels.
        y_pred: (N, C) bool (or 0/1) predicted labels.
        class_names: C class names, in column order.

    Returns:
        The scores, with one :class:`ClassScores` per class.

    Raises:
        UsageError: if the shapes disagree or an array is not 0/1.
    """
    y_true = _as_label_matrix(y_true, "y_true")
    y_pred = _as_label_matrix(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise UsageError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must have the same (N, C) shape")
    if len(class_names) != y_true.shape[1]:
        raise UsageError(f"got {len(class_names)} class names for {y_true.shape[1]} label columns")
    tp = (y_true & y_pred).sum(axis=0)  # (C,)
    fp = (~y_true & y_pred).sum(axis=0)  # (C,)
    fn = (y_true & ~y_pred).sum(axis=0)  # (C,)
    classes = tuple(
        ClassScores(
            name=str(name),
            precision=safe_ratio(tp[c], tp[c] + fp[c]),
            recall=safe_ratio(tp[c], tp[c] + fn[c]),
            f1=safe_ratio(2 * tp[c], 2 * tp[c] + fp[c] + fn[c]),
            support=int(tp[c] + fn[c]),
        )
        for c, name in enumerate(class_names)
    )
    scored = [c.f1 for c in classes if c.support > 0]
    micro_p, micro_r, micro_f = micro_prf(y_true, y_pred)
    n = y_true.shape[0]
    return ClassificationMetrics(
        micro_precision=micro_p,
        micro_recall=micro_r,
        micro_f1=micro_f,
        macro_f1=float(np.mean(scored)) if scored else math.nan,
        accuracy=safe_ratio(int((y_true == y_pred).all(axis=1).sum()), n),
        n_samples=n,
        classes=classes,
    )


def top1_accuracy(scores: np.ndarray, y_true: np.ndarray) -> float:
    """Fraction of rows whose best-scoring class is one of their true labels.

    For single-label data (one positive per row) this is the usual top-1
    accuracy. Ties go to the lowest class index (``np.argmax``).

    Args:
        scores: (N, C) real class scores.
        y_true: (N, C) bool (or 0/1) labels; every row needs at least one positive.

    Returns:
        The accuracy in [0, 1] (``nan`` for N = 0).

    Raises:
        UsageError: on a shape mismatch, non-finite scores, or a row without labels.
    """
    y_true = _as_label_matrix(y_true, "y_true")
    s = _as_scores(scores, y_true.shape)
    if not y_true.any(axis=1).all():
        raise UsageError("top-1 accuracy needs at least one true label per row; drop the unlabelled rows")
    best = s.argmax(axis=1)  # (N,)
    hits = y_true[np.arange(len(best)), best]  # (N,)
    return safe_ratio(int(hits.sum()), len(hits))
