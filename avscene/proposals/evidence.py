"""Boxes from a class's evidence map over the visual proposals (CAM style; pure numpy + OpenCV).

The score of every proposal window of a frame is accumulated per pixel (each pixel gets the sum
of the weights of the windows that contain it), the map is min–max normalised, thresholded at
``fraction`` of its range and the box of the largest connected region (8-connectivity) is the
object's box: the procedure of class activation maps (Zhou, Khosla, Lapedriza, Oliva, Torralba,
"Learning deep features for discriminative localization", CVPR 2016: 0.2 of the maximum), with
the window scores in place of the CAM. A map without positive evidence (its maximum ≤ 0) or
without contrast (flat) gives no box.

Adversarial erasing at inference (:func:`erasing_boxes`, Wei et al., CVPR 2017, with a trained
scorer): the region found is hidden, the frame scored again, and the next region added while the
class keeps evidence and the region touches the box; :func:`snap_box` snaps a box to the object's
boundary (grabCut).

Pure and deterministic: arrays in, arrays out; no model (erasing calls the scorer it is given), no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from avscene.errors import UsageError

CAM_FRACTION = 0.2  # Zhou et al. 2016's threshold, the literature default (a priori: no box is used to choose it)
MAP_SIDE = 256  # the map's longer side at most, in cells; larger frames are accumulated on a coarser grid


def evidence_map(boxes: np.ndarray, weights: np.ndarray, *, height: int, width: int,
                 cell: int = 1) -> np.ndarray:
    """Sum of the weights of the windows covering each cell of the frame.

    Args:
        boxes: (M, 4) x0, y0, x1, y1 in frame pixels (x1/y1 exclusive).
        weights: (M,) one score per window (any sign).
        height, width: the frame's size in pixels.
        cell: side of a map cell in pixels (a window covers the cells its rounded corners span).

    Returns:
        (ceil(height / cell), ceil(width / cell)) float64 map.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(b) != len(w):
        raise UsageError(f"got {len(b)} boxes and {len(w)} weights")
    if height < 1 or width < 1 or cell < 1:
        raise UsageError(f"frame size and cell must be positive, got {width}x{height}, cell {cell}")
    H, W = math.ceil(height / cell), math.ceil(width / cell)
    x0 = np.clip(np.round(b[:, 0] / cell), 0, W).astype(np.int64)
    y0 = np.clip(np.round(b[:, 1] / cell), 0, H).astype(np.int64)
    x1 = np.clip(np.round(b[:, 2] / cell), 0, W).astype(np.int64)
    y1 = np.clip(np.round(b[:, 3] / cell), 0, H).astype(np.int64)
    ok = (x1 > x0) & (y1 > y0) & np.isfinite(w)
    diff = np.zeros((H + 1, W + 1))  # 2-D difference array: +w at (y0, x0), (y1, x1); -w at the other corners
    for ys, xs, sign in ((y0, x0, 1), (y1, x1, 1), (y0, x1, -1), (y1, x0, -1)):
        np.add.at(diff, (ys[ok], xs[ok]), sign * w[ok])
    return np.cumsum(np.cumsum(diff, axis=0), axis=1)[:H, :W]


def map_cell(height: int, width: int, side: int = MAP_SIDE) -> int:
    """The cell size that keeps a map's longer side within ``side`` cells."""
    return max(1, math.ceil(max(height, width) / side))


def region_boxes(mask: np.ndarray, *, k: int = 1) -> np.ndarray:
    """Bounding boxes of the ``k`` largest 8-connected regions of a boolean mask, largest first.

    Returns:
        (K, 4) float64 x0, y0, x1, y1 in cells (x1/y1 exclusive), K <= k; ties in area go to the
        region met first in row-major order.
    """
    import cv2

    m = np.ascontiguousarray(np.asarray(mask, dtype=np.uint8))
    if m.ndim != 2:
        raise UsageError(f"the mask must be 2-D, got shape {m.shape}")
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    st = stats[1:]  # label 0 is the background
    order = np.argsort(-st[:, cv2.CC_STAT_AREA], kind="stable")[:k]
    x, y = st[order, cv2.CC_STAT_LEFT], st[order, cv2.CC_STAT_TOP]
    return np.stack([x, y, x + st[order, cv2.CC_STAT_WIDTH], y + st[order, cv2.CC_STAT_HEIGHT]],
                    axis=1).astype(np.float64).reshape(-1, 4)


def threshold_map(emap: np.ndarray, fraction: float) -> np.ndarray | None:
    """Cells at ``fraction`` of the min–max normalised map or above; None without evidence (max ≤ 0)
    or contrast (a flat map)."""
    if not 0.0 <= fraction <= 1.0:
        raise UsageError(f"the evidence fraction must lie in [0, 1], got {fraction}")
    lo, hi = float(np.min(emap)), float(np.max(emap))
    if not hi > 0 or hi - lo <= 1e-9 * max(abs(hi), abs(lo)):
        return None
    return emap >= lo + fraction * (hi - lo)


def evidence_boxes(boxes: np.ndarray, weights: np.ndarray, *, height: int, width: int,
                   fraction: float = CAM_FRACTION, k: int = 1) -> np.ndarray:
    """Boxes of the ``k`` largest regions of the thresholded evidence map of one frame and class.

    Args:
        boxes: (M, 4) the frame's windows, in frame pixels.
        weights: (M,) the class's score of each window.
        height, width: the frame's size.
        fraction: the threshold, a fraction of the min–max normalised map (CAM: 0.2).
        k: how many regions (largest first).

    Returns:
        (K, 4) float64 x0, y0, x1, y1 in frame pixels, clipped to the frame; K = 0 when the map has
        no positive evidence or is flat.
    """
    cell = map_cell(height, width)
    mask = threshold_map(evidence_map(boxes, weights, height=height, width=width, cell=cell), fraction)
    if mask is None:
        return np.zeros((0, 4))
    out = region_boxes(mask, k=k) * cell
    out[:, [0, 2]] = np.minimum(out[:, [0, 2]], width)
    out[:, [1, 3]] = np.minimum(out[:, [1, 3]], height)
    return out


ERASE_ROUNDS = 3  # regions mined per frame at most: Wei et al. (CVPR 2017) erase three times (a priori)


def boxes_touch(a: np.ndarray, b: np.ndarray) -> bool:
    """Do two boxes (4,) x0, y0, x1, y1 overlap or share a border?"""
    return bool(a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3])


def erase_region(frame: np.ndarray, box: np.ndarray, fill: np.ndarray) -> None:
    """Fill the pixels of ``box`` (x0, y0, x1, y1, frame pixels, rounded outwards) of ``frame`` (H, W, 3)
    with ``fill`` (3,), in place."""
    H, W = frame.shape[:2]
    x0, y0 = int(max(0, math.floor(box[0]))), int(max(0, math.floor(box[1])))
    x1, y1 = int(min(W, math.ceil(box[2]))), int(min(H, math.ceil(box[3])))
    frame[y0:y1, x0:x1] = fill


def erasing_boxes(frames: np.ndarray, windows: np.ndarray, weights: np.ndarray,
                  score: Callable[[np.ndarray, np.ndarray], np.ndarray], *, fill: np.ndarray,
                  fraction: float = CAM_FRACTION, rounds: int = ERASE_ROUNDS) -> list[np.ndarray]:
    """Boxes grown by adversarial erasing at inference (Wei, Feng, Liang, Cheng, Zhao, Yan, "Object
    region mining with adversarial erasing", CVPR 2017, applied to a trained scorer).

    Per frame: the box of the evidence map's largest region (:func:`evidence_boxes`); then, up to
    ``rounds - 1`` times, the regions found so far are filled with ``fill``, the frame is scored again
    (``score``) and the largest region of the new map is added when there is one (the class still has
    positive evidence once the regions are hidden) and it touches the box so far (a region apart is
    another instance or clutter, not more of this object). The box covers the union of the regions.
    The frames still growing are scored together, one ``score`` call per round.

    Args:
        frames: (T, H, W, 3) uint8 frames (not modified).
        windows: (T, M, 4) each frame's windows, frame pixels.
        weights: (T, M) the class's weight of each window on the frames as they are.
        score: (frames (N, H, W, 3) uint8, their indices (N,) into ``frames``) -> (N, M) the weights of
            the same windows on those frames.
        fill: (3,) the colour hidden regions take.
        fraction: the evidence map's threshold (:func:`threshold_map`).
        rounds: regions per frame at most (1: the evidence box alone).

    Returns:
        Per frame a (K, 4) float64 array, K = 1 (the box) or 0 (no evidence on the frame as it is).
    """
    if rounds < 1:
        raise UsageError(f"erasing needs at least 1 round, got {rounds}")
    T = len(frames)
    H, W = frames.shape[1:3]
    kw = dict(height=H, width=W, fraction=fraction, k=1)
    found = [evidence_boxes(windows[t], weights[t], **kw) for t in range(T)]
    union = [f[0].copy() if len(f) else None for f in found]
    live = [t for t in range(T) if union[t] is not None]
    erased = {t: frames[t].copy() for t in live}
    last = {t: found[t][0] for t in live}
    for _ in range(rounds - 1):
        if not live:
            break
        for t in live:
            erase_region(erased[t], last[t], fill)
        w = np.asarray(score(np.stack([erased[t] for t in live]), np.asarray(live)), dtype=np.float64)  # (N, M)
        keep = []
        for t, wt in zip(live, w):
            new = evidence_boxes(windows[t], wt, **kw)
            if len(new) and boxes_touch(new[0], union[t]):
                union[t] = np.concatenate([np.minimum(union[t][:2], new[0][:2]), np.maximum(union[t][2:], new[0][2:])])
                last[t] = new[0]
                keep.append(t)
        live = keep
    return [np.zeros((0, 4)) if u is None else u.reshape(1, 4) for u in union]


SNAP_PAD = 0.15  # grabCut's rectangle: the box grown by this share of its size each way (it must enclose the object)
SNAP_SIDE = 96  # the snapped crop's longer side at most, in pixels (grabCut's cost grows with the pixels)
SNAP_ITERATIONS = 2
SNAP_SEED = 0  # OpenCV RNG seed set before each grabCut (its k-means initialisation draws from it)


def snap_box(frame: np.ndarray, box: np.ndarray, *, pad: float = SNAP_PAD, side: int = SNAP_SIDE,
             iterations: int = SNAP_ITERATIONS) -> np.ndarray:
    """The box snapped to the object's boundary: ``cv2.grabCut`` initialised with the box grown by
    ``pad``, on a crop around it scaled to at most ``side`` pixels, and the bounding box of the
    foreground's largest 8-connected region.

    Returns the box unchanged where grabCut cannot run (the grown box covers the whole frame, so
    there is no background to learn from) or finds no foreground.

    Args:
        frame: (H, W, 3) uint8 RGB frame.
        box: (4,) x0, y0, x1, y1 in frame pixels.

    Returns:
        (4,) float64 x0, y0, x1, y1 in frame pixels.
    """
    import cv2

    H, W = frame.shape[:2]
    b = np.asarray(box, dtype=np.float64).reshape(4)
    w, h = b[2] - b[0], b[3] - b[1]
    if w < 1 or h < 1:
        return b
    rect = np.array([b[0] - pad * w, b[1] - pad * h, b[2] + pad * w, b[3] + pad * h])
    crop = np.array([rect[0] - 0.5 * w, rect[1] - 0.5 * h, rect[2] + 0.5 * w, rect[3] + 0.5 * h])
    cx0, cy0 = int(max(0, np.floor(crop[0]))), int(max(0, np.floor(crop[1])))
    cx1, cy1 = int(min(W, np.ceil(crop[2]))), int(min(H, np.ceil(crop[3])))
    scale = min(1.0, side / max(cx1 - cx0, cy1 - cy0))
    sub = np.ascontiguousarray(frame[cy0:cy1, cx0:cx1, ::-1])  # BGR, as OpenCV's models expect
    if scale < 1.0:
        sub = cv2.resize(sub, (max(1, round((cx1 - cx0) * scale)), max(1, round((cy1 - cy0) * scale))),
                         interpolation=cv2.INTER_AREA)
    sh, sw = sub.shape[:2]
    rx0, ry0 = int(max(0, round((rect[0] - cx0) * scale))), int(max(0, round((rect[1] - cy0) * scale)))
    rx1, ry1 = int(min(sw, round((rect[2] - cx0) * scale))), int(min(sh, round((rect[3] - cy0) * scale)))
    if rx1 - rx0 < 2 or ry1 - ry0 < 2 or (rx0 == 0 and ry0 == 0 and rx1 == sw and ry1 == sh):
        return b
    mask = np.zeros((sh, sw), np.uint8)
    cv2.setRNGSeed(SNAP_SEED)  # grabCut's GMMs start from k-means on OpenCV's RNG: the same box every run
    try:
        cv2.grabCut(sub, mask, (rx0, ry0, rx1 - rx0, ry1 - ry0), np.zeros((1, 65)), np.zeros((1, 65)),
                    iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error:  # a GMM without samples (e.g. a uniform crop)
        return b
    found = region_boxes((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD), k=1)
    if not len(found) or (found[0, 2] - found[0, 0]) * (found[0, 3] - found[0, 1]) < 4:
        return b
    x0, y0, x1, y1 = found[0]
    return np.array([cx0 + x0 / scale, cy0 + y0 / scale, min(W, cx0 + x1 / scale), min(H, cy0 + y1 / scale)])
