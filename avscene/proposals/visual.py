"""Visual region proposals: EdgeBoxes (Zitnick & Dollár, ECCV 2014) via ``cv2.ximgproc``.

Pipeline per frame: edge map -> edge orientation -> edge non-maximum suppression
-> ``cv2.ximgproc.EdgeBoxes``. With a Structured Edge Detection model file
(``model.yml.gz`` of opencv_extra) the edges come from the random forest, as in
the paper. Without one (the default, so nothing needs downloading) the edges are
the gradient magnitude of the smoothed colour frame normalised to [0, 1] (the
fallback of Dollár's ``edgeBoxes.m``), and the orientation and NMS are numpy
ports of ``StructuredEdgeDetection::computeOrientation`` / ``edgesNms`` (they
need a model instance in OpenCV).

Edges are computed on the frame scaled so its long side lies in
``[EDGE_MIN_SIDE, EDGE_MAX_SIDE]`` px (EdgeBoxes' step sizes and minimum box area
are in pixels, so a bounded working size lets one parameter set fit every input;
it also bounds the cost on 720p frames). Boxes are mapped back to frame pixels.
Every frame yields exactly ``max_boxes`` boxes: when EdgeBoxes finds fewer,
deterministic fallback boxes (the whole frame, then a 2x2 grid, a 3x3 grid, ...)
with score 0 fill the rest.

Measured (2-core shared CPU, model-free edges): ~30 ms per 224x224 frame and
~32 ms per 1280x720 frame (worked at 320x180). On 294 ground-truth boxes of 40
avbench val clips (frames at k + 0.5 s), 10 boxes per frame reach recall 0.79 at
IoU 0.5, and some box centre falls inside the object in 0.91 of the cases.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from avscene.config import PreprocessConfig
from avscene.errors import UsageError
from avscene.proposals.edge_model import validate_edge_model
from avscene.threads import budget

# EdgeBoxes runs on the frame resized so its long side lies in [EDGE_MIN_SIDE, EDGE_MAX_SIDE]:
# 224x224 stays as is, 1280x720 -> 320x180 (bounds the cost), 112x112 -> 224x224.
EDGE_MIN_SIDE = 224  # px: the visual CNN's input size; smaller frames are upscaled
MAX_PROPOSAL_THREADS = 8  # frames proposed at once, at most (bounded by the thread budget as well)
EDGE_MAX_SIDE = 320  # px: larger frames are downscaled
GRADIENT_SMOOTH_RADIUS = 4  # triangle radius before the gradient (Dollar's edgeBoxes.m fallback)
ORIENTATION_RADIUS = 4  # computeOrientation smoothing (SED gradientNormalizationRadius)
NMS_RADIUS = 2  # edgesNms r: compare with neighbours up to 2 px across the edge (OpenCV default)
NMS_MULTIPLIER = 1.0  # edgesNms m: no conservative suppression (OpenCV default)
_ORIENT_EPS = 1e-5  # computeOrientation's guard against a zero second derivative
# Smallest frame side EdgeBoxes takes: the gradient, orientation and NMS need 2x2 neighbourhoods.
MIN_FRAME_SIDE = 2  # px


@dataclass(frozen=True)
class EdgeBoxesParams:
    """``cv2.ximgproc.createEdgeBoxes`` parameters (box sizes in working-scale pixels)."""

    alpha: float = 0.65  # sliding-window step (IoU between neighbouring windows); OpenCV default
    beta: float = 0.6  # NMS IoU: stricter than 0.75 so 10 boxes spread over several objects
    eta: float = 1.0  # NMS threshold adaptation: off
    min_score: float = 0.01  # drop boxes scoring below this
    edge_min_mag: float = 0.1  # edge pixels weaker than this are ignored
    edge_merge_thr: float = 0.5  # orientation change that ends an edge group
    cluster_min_mag: float = 0.5  # edge groups weaker than this are merged into neighbours
    max_aspect_ratio: float = 3.0  # longest/shortest side of a box
    min_box_area: float = 1000.0  # px^2 at working scale: about 32x32 px (OpenCV default)
    gamma: float = 2.0  # affinity sensitivity between edge groups
    kappa: float = 1.5  # box-size normalisation exponent (favours larger boxes as it grows)


@dataclass(frozen=True)
class VisualProposals:
    """The EdgeBoxes proposals of the sampled frames of one clip."""

    boxes: np.ndarray  # (T, M, 4) float32 x0, y0, x1, y1 frame pixels, x1/y1 exclusive
    scores: np.ndarray  # (T, M) float32 EdgeBoxes objectness, 0 for fallback boxes
    times: np.ndarray  # (T,) float64 seconds of each frame


def triangle_smooth(image: np.ndarray, radius: int) -> np.ndarray:
    """Separable triangle filter of OpenCV's ``imsmooth`` / Dollár's ``convTri``.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` float32.
        radius: Filter radius; 0 returns the input, 1 uses the ``[1, p, 1]`` kernel.

    Returns:
        Array of the same shape (reflect-101 borders, OpenCV's default).
    """
    if radius == 0:
        return image
    if radius == 1:
        p = 12.0 / radius / (radius + 2) - 2
        kernel = np.array([1.0, p, 1.0], dtype=np.float32) / (p + 2)
    else:
        ramp = np.arange(1, radius + 2, dtype=np.float32)  # 1 .. r+1
        kernel = np.concatenate([ramp, ramp[-2::-1]]) / (radius + 1.0) ** 2  # (2r+1,) sums to 1
    return cv2.sepFilter2D(image, -1, kernel, kernel)


def gradient_edges(
    frame_rgb: np.ndarray, *, smooth_radius: int = GRADIENT_SMOOTH_RADIUS
) -> np.ndarray:
    """Model-free edge map: colour gradient magnitude normalised to [0, 1].

    The gradient of each channel of the triangle-smoothed frame (Sobel / 8, i.e.
    intensity change per pixel), the largest-magnitude channel per pixel, divided
    by the frame's maximum (a flat frame gives all zeros).

    Args:
        frame_rgb: ``(H, W, 3)`` uint8 RGB.
        smooth_radius: Triangle smoothing radius in pixels.

    Returns:
        ``(H, W)`` float32 edge strength in [0, 1].
    """
    image = triangle_smooth(frame_rgb.astype(np.float32) / 255.0, smooth_radius)
    dx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3) / 8.0  # (H, W, 3)
    dy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3) / 8.0  # (H, W, 3)
    magnitude = np.sqrt(dx * dx + dy * dy).max(axis=2)  # (H, W)
    peak = float(magnitude.max())
    # A gradient below 1/255 per pixel anywhere is quantisation noise: keep it zero.
    if peak < 1.0 / 255.0:
        return np.zeros(magnitude.shape, dtype=np.float32)
    return (magnitude / peak).astype(np.float32)


def edge_orientation(edges: np.ndarray, *, radius: int = ORIENTATION_RADIUS) -> np.ndarray:
    """Edge normal orientation in ``[0, pi)``, as ``StructuredEdgeDetection::computeOrientation``.

    ``atan(Oyy * sign(-Oxy) / (Oxx + 1e-5)) mod pi`` from the second derivatives
    of the triangle-smoothed edge map; the angle is measured from the +x (column)
    axis towards +y (rows), i.e. the direction across the edge.

    Args:
        edges: ``(H, W)`` float32 edge map.
        radius: Triangle smoothing radius (4 for the OpenCV models).

    Returns:
        ``(H, W)`` float32 orientation in radians.
    """
    smooth = triangle_smooth(np.ascontiguousarray(edges, dtype=np.float32), radius)
    oxx = cv2.Sobel(smooth, -1, 2, 0).astype(np.float64)
    oxy = cv2.Sobel(smooth, -1, 1, 1).astype(np.float64)
    oyy = cv2.Sobel(smooth, -1, 0, 2).astype(np.float64)
    angle = np.arctan(oyy * -np.sign(oxy) / (oxx + _ORIENT_EPS))  # (-pi/2, pi/2)
    return np.where(angle > 0, angle, angle + np.pi).astype(np.float32) % np.float32(np.pi)


def edges_nms(
    edges: np.ndarray,
    orientation: np.ndarray,
    *,
    radius: int = NMS_RADIUS,
    multiplier: float = NMS_MULTIPLIER,
    min_magnitude: float = 0.0,
) -> np.ndarray:
    """Edge non-maximum suppression, a vectorised port of ``StructuredEdgeDetection::edgesNms``.

    A pixel is zeroed when ``multiplier * e`` is below the bilinearly
    interpolated edge strength at any distance ``1..radius`` along its normal
    (``orientation``) on either side. No boundary suppression (``s = 0``).

    Args:
        edges: ``(H, W)`` float32 edge map.
        orientation: ``(H, W)`` float32 normal orientation in radians.
        radius: Suppression radius in pixels.
        multiplier: Conservative-suppression multiplier.
        min_magnitude: pixels of ``edges`` at or below this are zeroed without being compared
            (their neighbours still see their strength). EdgeBoxes ignores every pixel at or
            below its ``edgeMinMag``, so passing that value gives the same boxes for less work;
            0 is OpenCV's ``edgesNms`` exactly.

    Returns:
        ``(H, W)`` float32 thinned edges.
    """
    edges = np.ascontiguousarray(edges, dtype=np.float32)
    height, width = edges.shape
    # Only pixels still kept are compared again (keep is an AND over the distances), so each
    # distance costs in proportion to the survivors; the arithmetic per pixel is unchanged.
    idx = np.flatnonzero(edges > np.float32(min_magnitude))  # (n,) flat indices of candidate pixels
    rows, cols = (v.astype(np.float32) for v in np.divmod(idx, width))
    flat = edges.reshape(-1)
    cos_o = np.cos(orientation.reshape(-1)[idx])
    sin_o = np.sin(orientation.reshape(-1)[idx])
    scaled = flat[idx] * np.float32(multiplier)
    # nearest neighbours first: they suppress the most, so the farther ones see fewer pixels
    for d in (s * k for k in range(1, radius + 1) for s in (1, -1)):
        # The OpenCV code clamps to [0, size - 1.001] so x0 + 1 stays in bounds.
        c = np.clip(cols + np.float32(d) * cos_o, 0, np.float32(width - 1.001))
        r = np.clip(rows + np.float32(d) * sin_o, 0, np.float32(height - 1.001))
        c0, r0 = c.astype(np.intp), r.astype(np.intp)
        fc, fr = c - c0, r - r0
        at = r0 * width + c0
        neighbour = (
            flat[at] * (1 - fc) * (1 - fr)
            + flat[at + 1] * fc * (1 - fr)
            + flat[at + width] * (1 - fc) * fr
            + flat[at + width + 1] * fc * fr
        )
        survive = scaled >= neighbour
        idx, rows, cols = idx[survive], rows[survive], cols[survive]
        cos_o, sin_o, scaled = cos_o[survive], sin_o[survive], scaled[survive]
    out = np.zeros(height * width, dtype=np.float32)
    out[idx] = flat[idx]
    return out.reshape(height, width)


def edge_map(
    frame_rgb: np.ndarray, *, edge_model: str | None = None, min_magnitude: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """NMS-thinned edges and their orientation, the two inputs of EdgeBoxes.

    Args:
        frame_rgb: ``(H, W, 3)`` uint8 RGB.
        edge_model: Path of a Structured Edge Detection model, or None for
            gradient edges.
        min_magnitude: gradient edges at or below this come out zero (:func:`edges_nms`).

    Returns:
        ``(edges, orientation)``, both ``(H, W)`` float32.
    """
    if edge_model is None:
        edges = gradient_edges(frame_rgb)
        orientation = edge_orientation(edges)
        return edges_nms(edges, orientation, min_magnitude=min_magnitude), orientation
    detector = validate_edge_model(edge_model)
    edges = detector.detectEdges(frame_rgb.astype(np.float32) / 255.0)
    orientation = detector.computeOrientation(edges)
    thin = detector.edgesNms(edges, orientation, None, NMS_RADIUS, 0, NMS_MULTIPLIER, True)
    return thin, orientation


def fallback_boxes(height: int, width: int, count: int) -> np.ndarray:
    """Deterministic boxes: the whole frame, then the cells of 2x2, 3x3, ... grids.

    Args:
        height: Frame height in pixels.
        width: Frame width in pixels.
        count: Number of boxes to return.

    Returns:
        ``(count, 4)`` float32 x0, y0, x1, y1 (exclusive), cells in row-major order.
    """
    boxes: list[tuple[float, float, float, float]] = []
    n = 1
    while len(boxes) < count:
        xs = np.round(np.linspace(0, width, n + 1))
        ys = np.round(np.linspace(0, height, n + 1))
        boxes += [(xs[j], ys[i], xs[j + 1], ys[i + 1]) for i in range(n) for j in range(n)]
        n += 1
    return np.asarray(boxes[:count], dtype=np.float32).reshape(count, 4)


def _check_frame(frame_rgb: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame_rgb)
    is_rgb = frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    if not is_rgb or min(frame.shape[:2]) < MIN_FRAME_SIDE:
        raise UsageError(
            f"expected an RGB frame (H, W, 3) uint8 with H, W >= {MIN_FRAME_SIDE}, got shape {frame.shape} "
            f"dtype {frame.dtype}; decode frames with avscene.io.decode"
        )
    return np.ascontiguousarray(frame)


def _working_size(height: int, width: int) -> tuple[int, int]:
    """``(w, h)`` (cv2 order) with the long side clamped to [EDGE_MIN_SIDE, EDGE_MAX_SIDE]."""
    long_side = max(height, width)
    scale = min(max(long_side, EDGE_MIN_SIDE), EDGE_MAX_SIDE) / long_side
    return max(2, round(width * scale)), max(2, round(height * scale))


def _raw_edge_boxes(
    image: np.ndarray, *, max_boxes: int, edge_model: str | None, params: EdgeBoxesParams
) -> tuple[np.ndarray, np.ndarray]:
    """EdgeBoxes on ``image``: ``(n, 4)`` exclusive x0, y0, x1, y1 pixels, ``(n,)`` scores."""
    p = params
    # EdgeBoxes never reads a pixel at or below edge_min_mag: the NMS skips them (same boxes)
    edges, orientation = edge_map(image, edge_model=edge_model, min_magnitude=p.edge_min_mag)
    detector = cv2.ximgproc.createEdgeBoxes(
        alpha=p.alpha, beta=p.beta, eta=p.eta, minScore=p.min_score, maxBoxes=max_boxes,
        edgeMinMag=p.edge_min_mag, edgeMergeThr=p.edge_merge_thr, clusterMinMag=p.cluster_min_mag,
        maxAspectRatio=p.max_aspect_ratio, minBoxArea=p.min_box_area, gamma=p.gamma, kappa=p.kappa,
    )
    rects, scores = detector.getBoundingBoxes(edges, orientation)
    rects = np.asarray(rects, dtype=np.float32).reshape(-1, 4)  # (n, 4) bx, by, w, h
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)  # (n,)
    # OpenCV reports (bx, by, w, h) = (x + 1, y + 1, w, h) for a box covering pixels
    # x .. x + w inclusive (a 1-based legacy of the MATLAB code), i.e. the exclusive
    # 0-based corners (bx - 1, by - 1, bx + w, by + h).
    corners = np.concatenate([rects[:, :2] - 1, rects[:, :2] + rects[:, 2:]], axis=1)  # (n, 4)
    return corners, scores


def edge_boxes(
    frame_rgb: np.ndarray,
    *,
    max_boxes: int = 10,
    edge_model: str | None = None,
    params: EdgeBoxesParams | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """EdgeBoxes proposals of one frame, always exactly ``max_boxes`` of them.

    Args:
        frame_rgb: ``(H, W, 3)`` uint8 RGB frame, any size.
        max_boxes: Number of boxes M to return (>= 1).
        edge_model: Path of an OpenCV Structured Edge Detection model, or None
            for model-free gradient edges.
        params: EdgeBoxes parameters; None uses :class:`EdgeBoxesParams` defaults.

    Returns:
        ``boxes (M, 4)`` float32 x0, y0, x1, y1 in frame pixels (x1/y1 exclusive,
        clipped to the frame, x1 > x0, y1 > y0) sorted by decreasing score, and
        ``scores (M,)`` float32 (0 for fallback boxes).

    Raises:
        UsageError: for a malformed frame, ``max_boxes < 1``, or an ``edge_model`` that is
            not an OpenCV structured-edge model (:func:`validate_edge_model`).
    """
    frame = _check_frame(frame_rgb)
    if max_boxes < 1:
        raise UsageError(f"max_boxes must be >= 1, got {max_boxes}")
    height, width = frame.shape[:2]
    size = _working_size(height, width)
    if size != (width, height):
        # INTER_AREA averages when shrinking (no aliasing); bilinear when enlarging.
        method = cv2.INTER_AREA if size[0] < width else cv2.INTER_LINEAR
        frame = cv2.resize(frame, size, interpolation=method)
    corners, scores = _raw_edge_boxes(
        frame, max_boxes=max_boxes, edge_model=edge_model, params=params or EdgeBoxesParams()
    )
    corners *= np.array([width / size[0], height / size[1]] * 2, dtype=np.float32)
    corners = np.clip(corners, 0, np.array([width, height] * 2, dtype=np.float32))
    valid = (corners[:, 2] > corners[:, 0]) & (corners[:, 3] > corners[:, 1])
    boxes, scores = corners[valid][:max_boxes], scores[valid][:max_boxes]
    missing = max_boxes - len(boxes)
    if missing:
        boxes = np.concatenate([boxes, fallback_boxes(height, width, missing)])
        scores = np.concatenate([scores, np.zeros(missing, dtype=np.float32)])
    return boxes.astype(np.float32), scores.astype(np.float32)


def proposal_threads() -> int:
    """Threads for EdgeBoxes: the process's thread budget (:func:`avscene.threads.budget`: ``--threads``,
    a ``--jobs`` worker's share of it, ``OMP_NUM_THREADS``, else the free cores), at most
    ``MAX_PROPOSAL_THREADS``. (OpenCV releases the GIL inside its calls, so frames run truly
    in parallel.)"""
    return max(1, min(budget(), MAX_PROPOSAL_THREADS))


def visual_proposals(
    frames: np.ndarray, times: np.ndarray, *, cfg: PreprocessConfig, edge_model: str | None = None,
    threads: int | None = None,
) -> VisualProposals:
    """EdgeBoxes proposals of every sampled frame of a clip (or dense windows, ``cfg.visual_proposals``).

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB frames (``Clip.frames``).
        times: ``(T,)`` seconds of each frame (``Clip.frame_times``).
        cfg: Preprocessing parameters; ``cfg.boxes_per_frame`` is M for EdgeBoxes; with
            ``visual_proposals == "dense"`` M is the number of dense windows (75).
        edge_model: Optional Structured Edge Detection model path.
        threads: frames processed at once (None: :func:`proposal_threads`). Frames are
            independent, so the result is the same for any number.

    Returns:
        :class:`VisualProposals` with boxes ``(T, M, 4)`` and scores ``(T, M)``.

    Raises:
        UsageError: if the frames are not ``(T, H, W, 3)`` uint8 or ``times`` is not ``(T,)``.
    """
    frames = np.asarray(frames)
    times = np.asarray(times, dtype=np.float64)
    if frames.ndim != 4 or times.shape != frames.shape[:1]:
        raise UsageError(
            f"expected frames (T, H, W, 3) and times (T,), got shapes {frames.shape} and "
            f"{times.shape}; pass Clip.frames and Clip.frame_times"
        )
    if cfg.visual_proposals == "dense":  # the same windows in every frame; scores are all 1
        from avscene.proposals.dense import dense_windows

        win = dense_windows(frames.shape[1], frames.shape[2])  # (M, 4)
        boxes = np.broadcast_to(win, (len(frames), *win.shape)).copy()  # (T, M, 4)
        return VisualProposals(boxes=boxes, scores=np.ones(boxes.shape[:2], dtype=np.float32), times=times)
    m = cfg.boxes_per_frame
    boxes = np.zeros((len(frames), m, 4), dtype=np.float32)  # (T, M, 4)
    scores = np.zeros((len(frames), m), dtype=np.float32)  # (T, M)
    n = min(len(frames), threads or proposal_threads())

    def one(t: int) -> None:
        boxes[t], scores[t] = edge_boxes(frames[t], max_boxes=m, edge_model=edge_model)

    if n <= 1:
        for t in range(len(frames)):
            one(t)
    else:
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="edgeboxes") as pool:
            list(pool.map(one, range(len(frames))))  # list(): re-raises a frame's error here
    return VisualProposals(boxes=boxes, scores=scores, times=times)
