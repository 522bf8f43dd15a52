"""A class-specific box regressor self-trained from pseudo-boxes (weak → strong; pure numpy).

Weakly supervised detectors localise the most discriminative part; W2F (Zhang, Bai, Zhang, Tian,
Ghanem, Ni, "W2F: a weakly-supervised to fully-supervised framework for object detection", CVPR
2018) and Yang, Li, Dou ("Towards precise end-to-end weakly supervised object detection network",
ICCV 2019) train a box regressor on the confident boxes of the weak model itself. Here: on
training clips only, the box ``localize`` reports for a class the clip is labelled with and the
model predicts and sees is a pseudo-box; a ridge regression per class maps the RoI feature of a
starting box (the class's evidence box, and the dense windows that overlap the pseudo-box with IoU
≥ ``POSITIVE_IOU``) to the offsets that turn it into the pseudo-box, in the encoding of Fast R-CNN
(Girshick, ICCV 2015): centre shifts in units of the box's size, log size ratios.

Pure and deterministic: arrays in, arrays out; the training data come from
:mod:`avscene.train.box_regressor`, the file from :mod:`avscene.checkpoint.box_regressor`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from avscene.errors import UsageError

POSITIVE_IOU = 0.5  # windows that start a regression (Fast R-CNN's foreground overlap)
MAX_LOG_RATIO = math.log(1000.0 / 16)  # size ratios decoded at most exp(this) (Detectron's clip)
MIN_SAMPLES = 20  # a class with fewer training boxes gets no regressor (its boxes are left as they are)


def _centres(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    return b[:, 0] + 0.5 * w, b[:, 1] + 0.5 * h, w, h


def encode_boxes(boxes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The offsets that turn each box into its target: (N, 4) x0, y0, x1, y1 each → (N, 4)
    ``((gx - px) / pw, (gy - py) / ph, log(gw / pw), log(gh / ph))`` (centres, widths, heights)."""
    p, g = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(targets, np.float64).reshape(-1, 4)
    if len(p) != len(g):
        raise UsageError(f"got {len(p)} boxes and {len(g)} targets")
    px, py, pw, ph = _centres(p)
    gx, gy, gw, gh = _centres(g)
    if (pw <= 0).any() or (ph <= 0).any() or (gw <= 0).any() or (gh <= 0).any():
        raise UsageError("boxes to encode must have a positive width and height")
    return np.stack([(gx - px) / pw, (gy - py) / ph, np.log(gw / pw), np.log(gh / ph)], axis=1)


def decode_boxes(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The inverse of :func:`encode_boxes`: (N, 4) boxes and (N, 4) offsets → (N, 4) boxes (size
    ratios clipped at ``exp(MAX_LOG_RATIO)``)."""
    p, d = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(offsets, np.float64).reshape(-1, 4)
    px, py, pw, ph = _centres(p)
    gx, gy = px + d[:, 0] * pw, py + d[:, 1] * ph
    gw, gh = pw * np.exp(np.minimum(d[:, 2], MAX_LOG_RATIO)), ph * np.exp(np.minimum(d[:, 3], MAX_LOG_RATIO))
    return np.stack([gx - 0.5 * gw, gy - 0.5 * gh, gx + 0.5 * gw, gy + 0.5 * gh], axis=1)


def ridge_fit(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Least squares with an l2 penalty ``lam`` on the weights (not the bias): (N, d), (N, k) →
    (d + 1, k), the last row the bias."""
    if lam < 0:
        raise UsageError(f"the ridge penalty must be >= 0, got {lam}")
    X = np.concatenate([np.asarray(x, np.float64), np.ones((len(x), 1))], axis=1)  # (N, d+1)
    pen = lam * np.eye(X.shape[1])
    pen[-1, -1] = 0.0
    return np.linalg.solve(X.T @ X + pen, X.T @ np.asarray(y, np.float64))


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class BoxRegressor:
    """Per class, the linear map from a box's RoI feature to its offsets (:func:`encode_boxes`)."""

    labels: tuple[str, ...]
    weights: np.ndarray  # (C, d + 1, 4) float64, the last row of each the bias
    trained: np.ndarray  # (C,) bool: classes without a regressor leave their boxes as they are
    penalty: float = 1.0  # the ridge penalty it was fitted with
    teacher: str = ""  # which boxes were the pseudo-boxes

    def __post_init__(self) -> None:
        w, t = np.asarray(self.weights), np.asarray(self.trained)
        if w.ndim != 3 or w.shape[0] != len(self.labels) or w.shape[2] != 4 or t.shape != (len(self.labels),):
            raise UsageError(f"a box regressor of {len(self.labels)} classes needs weights (C, d + 1, 4) and "
                             f"trained (C,), got {w.shape} and {t.shape}")
        if not np.isfinite(w).all():
            raise UsageError("the box regressor's weights are not all finite")

    @property
    def feature_dim(self) -> int:
        return int(self.weights.shape[1] - 1)

    def refine(self, boxes: np.ndarray, features: np.ndarray, c: int) -> np.ndarray:
        """Boxes (N, 4) of class ``c`` moved by the offsets their features (N, d) give; unchanged for a
        class without a regressor."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        if not self.trained[c]:
            return b
        z = np.asarray(features, np.float64).reshape(len(b), -1)
        if z.shape[1] != self.feature_dim:
            raise UsageError(f"the box regressor takes {self.feature_dim}-d features, got {z.shape[1]}")
        return decode_boxes(b, z @ self.weights[c, :-1] + self.weights[c, -1])


def fit_box_regressor(labels: tuple[str, ...], samples: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]], *,
                      feature_dim: int, penalty: float, teacher: str = "") -> BoxRegressor:
    """Fit each class's regressor on its ``(features (N, d), starting boxes (N, 4), pseudo-boxes
    (N, 4))``; a class with fewer than ``MIN_SAMPLES`` gets none."""
    W = np.zeros((len(labels), feature_dim + 1, 4))
    trained = np.zeros(len(labels), dtype=bool)
    for c, (z, start, target) in samples.items():
        if len(z) >= MIN_SAMPLES:
            W[c] = ridge_fit(z, encode_boxes(start, target), penalty)
            trained[c] = True
    return BoxRegressor(tuple(labels), W, trained, penalty=penalty, teacher=teacher)
