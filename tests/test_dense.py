"""Dense proposals: multi-scale windows that cover the frame at every scale, deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from avscene.config import PreprocessConfig
from avscene.errors import ConfigError, UsageError
from avscene.proposals.dense import DENSE_SCALES, dense_windows
from avscene.proposals.visual import visual_proposals


@pytest.mark.parametrize(("height", "width"), [(224, 224), (97, 161), (720, 1280), (3, 5)])
def test_every_scale_covers_the_frame(height: int, width: int) -> None:
    wins = dense_windows(height, width)
    per_scale = [1, 9, 16, 49]  # 1x1, 3x3, 4x4, 7x7 grids: ceil((1 - s) / (s / 2)) + 1 per axis
    assert len(wins) == sum(per_scale)
    start = 0
    for s, n in zip(DENSE_SCALES, per_scale):
        part = wins[start : start + n]
        start += n
        assert np.allclose(part[:, 2] - part[:, 0], s * width) and np.allclose(part[:, 3] - part[:, 1], s * height)
        assert (part[:, :2] >= 0).all() and (part[:, 2] <= width + 1e-3).all() and (part[:, 3] <= height + 1e-3).all()
        # every pixel centre lies in a window of this scale (raster check)
        ys, xs = np.mgrid[0:height, 0:width] + 0.5
        covered = np.zeros((height, width), dtype=bool)
        for x0, y0, x1, y1 in part:
            covered |= (xs >= x0) & (xs < x1 + 1e-3) & (ys >= y0) & (ys < y1 + 1e-3)
        assert covered.all(), f"scale {s} leaves pixels uncovered"


def test_neighbours_overlap_by_half_a_window() -> None:
    wins = dense_windows(224, 224, scales=(0.25,))
    xs = np.unique(wins[:, 0])
    assert xs[0] == 0 and xs[-1] == pytest.approx(224 - 56)
    assert (np.diff(xs) <= 0.5 * 56 + 1e-4).all()  # step <= half of the 56-px side


def test_dense_proposals_are_deterministic_and_ignore_the_pixels(rng) -> None:
    cfg = PreprocessConfig(visual_proposals="dense")
    frames = rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    times = np.array([0.5, 1.5, 2.5])
    a = visual_proposals(frames, times, cfg=cfg)
    b = visual_proposals(np.zeros_like(frames), times, cfg=cfg)
    assert a.boxes.shape == (3, 75, 4) and np.array_equal(a.boxes, b.boxes)
    assert all(np.array_equal(a.boxes[t], dense_windows(48, 64)) for t in range(3))
    assert np.array_equal(a.times, times)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="visual_proposals"):
        PreprocessConfig(visual_proposals="selective")
    with pytest.raises(ConfigError, match="visual_proposals"):
        PreprocessConfig.from_dict({"visual_proposals": "grid"})
    with pytest.raises(UsageError, match="scales"):
        dense_windows(10, 10, scales=(1.5,))
    assert PreprocessConfig().visual_proposals == "edgeboxes"  # EdgeBoxes stays the default
