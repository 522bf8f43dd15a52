"""Visual localisation metrics (pure numpy).

Localisation follows the pointing game (Zhang et al., "Top-down neural attention by
excitation backprop", ECCV 2016) and CorLoc (Deselaers, Alexe, Ferrari, "Weakly supervised
localization and learning with generic knowledge", IJCV 2012), with boxes
``(x0, y0, x1, y1)``, ``x1``/``y1`` exclusive, as in ``avscene.proposals.visual``. Undefined
values (a ratio with a zero denominator) are ``nan`` in the dataclasses and ``null`` in
``to_json()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from avscene.errors import UsageError
from avscene.evaluation.metrics import json_float, safe_ratio

CORLOC_IOU = 0.5  # PASCAL VOC overlap criterion used by CorLoc


def _as_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    """Validate boxes: (4,) or (K, 4) finite x0, y0, x1, y1 with x1 >= x0, y1 >= y0 -> (K, 4) float64."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim == 1:
        b = b[None]  # (1, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise UsageError(f"{name} must have shape (K, 4) as (x0, y0, x1, y1), got {np.shape(boxes)}")
    if not np.isfinite(b).all():
        raise UsageError(f"{name} contain nan or inf coordinates")
    if (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
        raise UsageError(f"{name} must satisfy x1 >= x0 and y1 >= y0 (corner order x0, y0, x1, y1)")
    return b


def _area(b: np.ndarray) -> np.ndarray:
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every pair of boxes.

    Boxes are ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive, so a box's area
    is ``(x1 - x0) * (y1 - y0)`` (no "+1" pixel convention). Two boxes whose
    union has zero area (both degenerate) have IoU 0.

    Args:
        a: (N, 4) boxes.
        b: (M, 4) boxes.

    Returns:
        (N, M) float64 IoUs in [0, 1].

    Raises:
        UsageError: if a box is malformed (wrong shape, non-finite, x1 < x0 or y1 < y0).
    """
    a, b = _as_boxes(a, "boxes a"), _as_boxes(b, "boxes b")
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])  # (N, M)
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])  # (N, M)
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)  # (N, M)
    union = _area(a)[:, None] + _area(b)[None, :] - inter  # (N, M)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def pointing_hit(pred_box: np.ndarray, gt_boxes: np.ndarray) -> bool:
    """Pointing game: does the centre of the predicted box fall inside a ground-truth box?

    The centre is ``((x0 + x1) / 2, (y0 + y1) / 2)``; it is inside a GT box when
    ``x0 <= cx < x1`` and ``y0 <= cy < y1`` (half-open, matching the exclusive
    ``x1``/``y1``). Pass the GT boxes of the predicted class in that frame only.

    Args:
        pred_box: (4,) predicted box.
        gt_boxes: (K, 4) ground-truth boxes; K = 0 gives False.

    Returns:
        True on a hit.
    """
    p = _as_boxes(pred_box, "pred_box")[0]
    g = _as_boxes(np.reshape(gt_boxes, (-1, 4)), "gt_boxes")
    cx, cy = (p[0] + p[2]) / 2, (p[1] + p[3]) / 2
    inside = (g[:, 0] <= cx) & (cx < g[:, 2]) & (g[:, 1] <= cy) & (cy < g[:, 3])
    return bool(inside.any())


def corloc_hit(pred_box: np.ndarray, gt_boxes: np.ndarray, iou: float = CORLOC_IOU) -> bool:
    """CorLoc: does the predicted box overlap a ground-truth box with IoU >= ``iou``?

    ``>=`` as in the PASCAL VOC devkit (``VOCevaldet.m``); IoU as in :func:`box_iou`.

    Args:
        pred_box: (4,) predicted box.
        gt_boxes: (K, 4) ground-truth boxes of that class in that frame; K = 0 gives False.
        iou: the IoU threshold, in (0, 1].

    Returns:
        True on a hit.
    """
    if not 0.0 < iou <= 1.0:
        raise UsageError(f"the CorLoc IoU threshold must lie in (0, 1], got {iou}")
    g = np.reshape(gt_boxes, (-1, 4))
    if len(g) == 0:
        _as_boxes(pred_box, "pred_box")
        return False
    return bool((box_iou(np.reshape(pred_box, (1, 4)), g) >= iou).any())


@dataclass
class LocalizationClassScores:
    """Pointing, CorLoc, IoU and size ratio of the (frame, class) pairs of one class; see
    :class:`LocalizationScores`."""

    name: str
    n: int = 0  # scored (frame, class) pairs
    pointing_hits: int = 0
    corloc_hits: int = 0
    ious: list[float] = field(default_factory=list)  # best IoU with a GT box; 0 where no box was reported
    size_ratios: list[float] = field(default_factory=list)  # box area / area of that GT box; reported boxes only

    @property
    def pointing_accuracy(self) -> float:
        """Fraction of pointing-game hits (``nan`` before the first pair)."""
        return safe_ratio(self.pointing_hits, self.n)

    @property
    def corloc(self) -> float:
        """Fraction of CorLoc hits (``nan`` before the first pair)."""
        return safe_ratio(self.corloc_hits, self.n)

    @property
    def median_iou(self) -> float:
        """Median over pairs of the IoU with the best-overlapping GT box (``nan`` before the first pair)."""
        return float(np.median(self.ious)) if self.ious else math.nan

    @property
    def median_size_ratio(self) -> float:
        """Median of ``area(box) / area(GT box)`` (the best-overlapping one; ``nan`` with no box reported):
        below 1, the boxes are smaller than the objects (parts); above 1, larger."""
        return float(np.median(self.size_ratios)) if self.size_ratios else math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n": self.n,
            "pointing_hits": self.pointing_hits,
            "corloc_hits": self.corloc_hits,
            "pointing_accuracy": json_float(self.pointing_accuracy),
            "corloc": json_float(self.corloc),
            "median_iou": json_float(self.median_iou),
            "median_size_ratio": json_float(self.median_size_ratio),
        }


def _score_pair(acc: LocalizationClassScores, pred_box: np.ndarray | None, g: np.ndarray, iou: float) -> None:
    """Add one (frame, class) pair to ``acc``: a missing box (None) is a miss with IoU 0."""
    acc.n += 1
    if pred_box is None:
        acc.ious.append(0.0)
        return
    ious = box_iou(np.reshape(pred_box, (1, 4)), g)[0]  # (K,)
    best = int(np.argmax(ious))
    acc.pointing_hits += pointing_hit(pred_box, g)
    acc.corloc_hits += bool(ious[best] >= iou)
    acc.ious.append(float(ious[best]))
    gt_area = float(_area(g[best : best + 1])[0])
    if gt_area > 0:
        acc.size_ratios.append(float(_area(_as_boxes(pred_box, "pred_box"))[0]) / gt_area)


@dataclass
class LocalizationScores:
    """Accumulates pointing-game and CorLoc hits, IoUs and size ratios over (frame, class) pairs,
    overall and per class.

    Call :meth:`add` once per frame in which the class is annotated; frames
    without a ground-truth box of the class are not scored (``add`` refuses them).
    The IoU of a pair is that of the GT box the predicted box overlaps most (the one CorLoc
    matches), and its size ratio is the predicted box's area over that GT box's area.
    """

    iou_threshold: float = CORLOC_IOU
    total: LocalizationClassScores = field(default_factory=lambda: LocalizationClassScores("all"))
    classes: dict[str, LocalizationClassScores] = field(default_factory=dict)  # in order of first add

    def add(self, pred_box: np.ndarray | None, gt_boxes: np.ndarray, label: str | None = None) -> None:
        """Score one predicted box against the GT boxes of its class in its frame.

        ``pred_box`` None: no box was reported for the class in that frame (a miss, IoU 0).
        ``label``: the class, for the per-class scores (None: counted in the total only).

        Raises:
            UsageError: if there is no GT box (skip that frame instead) or a box is malformed.
        """
        g = _as_boxes(np.reshape(gt_boxes, (-1, 4)), "gt_boxes") if np.size(gt_boxes) else np.zeros((0, 4))
        if len(g) == 0:
            raise UsageError("no ground-truth box given: only frames where the class is annotated are scored")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise UsageError(f"the CorLoc IoU threshold must lie in (0, 1], got {self.iou_threshold}")
        _score_pair(self.total, pred_box, g, self.iou_threshold)
        if label is not None:
            _score_pair(self.classes.setdefault(label, LocalizationClassScores(label)), pred_box, g,
                        self.iou_threshold)

    @property
    def n(self) -> int:
        return self.total.n

    @property
    def pointing_hits(self) -> int:
        return self.total.pointing_hits

    @property
    def corloc_hits(self) -> int:
        return self.total.corloc_hits

    @property
    def pointing_accuracy(self) -> float:
        """Fraction of pointing-game hits (``nan`` before the first :meth:`add`)."""
        return self.total.pointing_accuracy

    @property
    def corloc(self) -> float:
        """Fraction of CorLoc hits (``nan`` before the first :meth:`add`)."""
        return self.total.corloc

    @property
    def median_iou(self) -> float:
        return self.total.median_iou

    @property
    def median_size_ratio(self) -> float:
        return self.total.median_size_ratio

    def to_json(self) -> dict[str, Any]:
        out = self.total.to_json()
        del out["name"]
        out["iou_threshold"] = self.iou_threshold
        out["classes"] = [c.to_json() for c in sorted(self.classes.values(), key=lambda c: c.name)]
        return out
