"""Dense visual proposals: multi-scale sliding windows over the frame (no EdgeBoxes).

The network scores every window by RoI pooling on the frame's shared feature map, so the
proposals cost nothing to compute and the same windows serve every frame of a clip (the
direction the paper names for proposals). Pure and deterministic: the windows depend on the
frame size only.

At each scale ``s`` a window is ``s`` times the frame in each dimension (the frame's aspect),
and the windows are laid on a grid whose step is at most ``1 - DENSE_OVERLAP`` of a window,
the first flush with the top-left corner and the last with the bottom-right one, so each
scale's windows cover the whole frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from avscene.errors import UsageError

# Window sides as fractions of the frame's: avbench's objects are 40–120 px on 224-px frames
# (0.18–0.54), so three scales under 0.6 plus the whole frame; 1 + 9 + 16 + 49 = 75 windows.
DENSE_SCALES = (1.0, 0.6, 0.4, 0.25)
DENSE_OVERLAP = 0.5  # neighbouring windows share at least half their side


def _starts(extent: float, side: float, overlap: float) -> np.ndarray:
    """Window starts along one axis: evenly spaced from 0 to ``extent - side``, step <= ``(1 - overlap) side``."""
    if side >= extent:
        return np.zeros(1)
    n = math.ceil((extent - side) / (side * (1.0 - overlap)) - 1e-9) + 1
    return np.linspace(0.0, extent - side, n)


def dense_windows(height: int, width: int, *, scales: Sequence[float] = DENSE_SCALES,
                  overlap: float = DENSE_OVERLAP) -> np.ndarray:
    """Multi-scale windows of a ``height`` x ``width`` frame.

    Returns:
        ``(M, 4)`` float32 x0, y0, x1, y1 (x1/y1 exclusive) in frame pixels, scale by scale
        (largest first), row-major within a scale.

    Raises:
        UsageError: an empty frame, a scale outside ``(0, 1]`` or an overlap outside ``[0, 1)``.
    """
    if height < 1 or width < 1:
        raise UsageError(f"frame size must be positive, got {width}x{height}")
    if not 0.0 <= overlap < 1.0 or not scales or any(not 0.0 < s <= 1.0 for s in scales):
        raise UsageError(f"scales must lie in (0, 1] and overlap in [0, 1), got {tuple(scales)} and {overlap}")
    out = []
    for s in scales:
        w, h = s * width, s * height
        for y0 in _starts(height, h, overlap):
            for x0 in _starts(width, w, overlap):
                out.append((x0, y0, x0 + w, y0 + h))
    return np.asarray(out, dtype=np.float32).reshape(-1, 4)
