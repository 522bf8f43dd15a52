"""Audio (TSP) and visual (EdgeBoxes) proposals."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from avscene.config import PreprocessConfig
from avscene.dsp.mel import log_mel
from avscene.errors import UsageError
from avscene.proposals.audio import audio_proposals, frame_patches, patch_segments
from avscene.testing.models import MINI_EDGE_MODEL_YAML as STUB_SED_MODEL
from avscene.proposals.edge_model import edge_model_problem, validate_edge_model
from avscene.proposals.visual import (
    edge_boxes,
    EdgeBoxesParams,
    edge_orientation,
    edges_nms,
    fallback_boxes,
    gradient_edges,
    visual_proposals,
)

CFG = PreprocessConfig()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(4321)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ---------------------------------------------------------------- audio


@pytest.mark.parametrize(("seconds", "count"), [(0.2, 1), (0.96, 1), (1.0, 2), (10.0, 20)])
def test_patch_count_shape_and_times(seconds: float, count: int, rng: np.random.Generator) -> None:
    audio = (0.1 * rng.standard_normal(round(seconds * 16000))).astype(np.float32)
    props = audio_proposals(audio, cfg=CFG)
    assert props.patches.shape == (count, 96, 64) and props.patches.dtype == np.float32
    starts = np.array([0.48 * i for i in range(count)])
    np.testing.assert_allclose(props.times, np.stack([starts, starts + 0.96], axis=1), atol=1e-12)
    assert props.times.dtype == np.float64


def test_patches_are_frames_of_zero_padded_waveform(rng: np.random.Generator) -> None:
    audio = rng.uniform(-0.5, 0.5, 16000).astype(np.float32)  # 1.0 s -> 2 patches
    props = audio_proposals(audio, cfg=CFG)
    # 2 patches need 48 + 96 = 144 frames = 143 * 160 + 400 = 23280 samples.
    spec = log_mel(np.concatenate([audio, np.zeros(23280 - 16000, np.float32)]), cfg=CFG)
    assert spec.shape[0] == 144
    np.testing.assert_array_equal(props.patches[0], spec[0:96])
    np.testing.assert_array_equal(props.patches[1], spec[48:144])
    # frames starting at or after the end of the signal (16000 / 160 = 100) hold silence
    np.testing.assert_allclose(props.patches[1][100 - 48 :], np.log(0.01), rtol=1e-6)


def test_patch_segments_of_a_10s_clip() -> None:
    times = audio_proposals(np.zeros(160000, np.float32), cfg=CFG).times
    expected = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]  # floor(0.48 (i + 1))
    np.testing.assert_array_equal(patch_segments(times), expected)


def test_patch_segment_of_integer_centre_is_not_rounded_down() -> None:
    start = 0.48 * 24  # centre 0.48 * 25 = 12.0 exactly in decimal
    assert patch_segments(np.array([[start, start + 0.96]]))[0] == 12


def test_frame_patches_numpy_and_torch(rng: np.random.Generator) -> None:
    spec = rng.standard_normal((3, 300, 64)).astype(np.float32)
    # non-overlapping windows, as the NCPs use
    got = frame_patches(spec, patch_frames=96, patch_hop=96, n_patches=3)
    assert got.shape == (3, 3, 96, 64) and got.flags["C_CONTIGUOUS"]
    for p in range(3):
        np.testing.assert_array_equal(got[:, p], spec[:, 96 * p : 96 * p + 96])
    tgot = frame_patches(torch.from_numpy(spec), patch_frames=96, patch_hop=48, n_patches=5)
    assert tuple(tgot.shape) == (3, 5, 96, 64)
    np.testing.assert_array_equal(tgot[1, 4].numpy(), spec[1, 192:288])


def test_frame_patches_needs_enough_frames() -> None:
    with pytest.raises(UsageError, match="need 144 log-mel frames, got 143"):
        frame_patches(np.zeros((143, 64), np.float32), patch_frames=96, patch_hop=48, n_patches=2)


def test_audio_proposals_rejects_bad_audio() -> None:
    with pytest.raises(UsageError, match="non-empty mono"):
        audio_proposals(np.zeros(0, np.float32), cfg=CFG)
    with pytest.raises(UsageError, match="average the channels"):
        audio_proposals(np.zeros((1000, 2), np.float32), cfg=CFG)
    with pytest.raises(UsageError, match="floating point"):
        audio_proposals(np.zeros(1000, np.int16), cfg=CFG)


# ---------------------------------------------------------------- visual


def rectangle_frame(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Flat grey frame with one dark rectangle covering pixels [x0, x1) x [y0, y1)."""
    frame = np.full((height, width, 3), 200, dtype=np.uint8)
    x0, y0, x1, y1 = box
    frame[y0:y1, x0:x1] = (30, 60, 90)
    return frame


def check_boxes(boxes: np.ndarray, scores: np.ndarray, height: int, width: int, m: int) -> None:
    assert boxes.shape == (m, 4) and boxes.dtype == np.float32
    assert scores.shape == (m,) and scores.dtype == np.float32
    assert np.all(boxes[:, :2] >= 0)
    assert np.all(boxes[:, 2] <= width) and np.all(boxes[:, 3] <= height)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert np.all(np.diff(scores) <= 0)  # sorted, fallback (score 0) last


@pytest.mark.parametrize(
    ("height", "width", "box"),
    [(224, 224, (60, 50, 150, 130)), (333, 517, (201, 97, 371, 231)), (90, 120, (20, 15, 70, 60))],
)
def test_top_box_finds_a_rectangle(height: int, width: int, box: tuple[int, int, int, int]) -> None:
    # 333x517 is downscaled (long side 320) and 90x120 upscaled: boxes come back in frame pixels.
    boxes, scores = edge_boxes(rectangle_frame(height, width, box), max_boxes=10)
    check_boxes(boxes, scores, height, width, 10)
    assert scores[0] > 0
    assert iou(boxes[0], np.array(box, np.float64)) > 0.5


@pytest.mark.parametrize("m", [1, 3, 25])
def test_exactly_m_boxes_inside_the_frame(m: int, rng: np.random.Generator) -> None:
    frame = np.full((161, 243, 3), 128, dtype=np.uint8)
    for _ in range(6):
        x0, y0 = rng.integers(0, 180), rng.integers(0, 110)
        h, w = rng.integers(20, 60, size=2)
        frame[y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 256, 3)
    boxes, scores = edge_boxes(frame, max_boxes=m)
    check_boxes(boxes, scores, 161, 243, m)


def test_flat_frame_gets_fallback_boxes() -> None:
    boxes, scores = edge_boxes(np.full((224, 224, 3), 128, dtype=np.uint8), max_boxes=6)
    expected = [[0, 0, 224, 224], [0, 0, 112, 112], [112, 0, 224, 112], [0, 112, 112, 224],
                [112, 112, 224, 224], [0, 0, 75, 75]]  # whole, 2x2 grid, then 3x3 (224/3 -> 75)
    np.testing.assert_array_equal(boxes, expected)
    np.testing.assert_array_equal(scores, np.zeros(6))


def test_fallback_boxes_of_odd_frame() -> None:
    np.testing.assert_array_equal(
        # 2x2 grid edges: round(4.5) = 4 (half to even), round(3.5) = 4
        fallback_boxes(7, 9, 3), [[0, 0, 9, 7], [0, 0, 4, 4], [4, 0, 9, 4]]
    )


def test_gradient_edges_range_and_flat_frame() -> None:
    edges = gradient_edges(rectangle_frame(64, 64, (16, 16, 48, 48)))
    assert edges.max() == pytest.approx(1.0) and edges.min() >= 0.0
    assert edges[32, 32] == 0.0 and edges[32, 16] > 0.5  # flat inside, strong on the border
    assert not gradient_edges(np.full((64, 64, 3), 77, np.uint8)).any()




def test_orientation_and_nms_match_opencv(tmp_path: Path, rng: np.random.Generator) -> None:
    # A one-leaf forest is enough to build an OpenCV StructuredEdgeDetection, whose
    # computeOrientation / edgesNms (radius 4 smoothing; r=2, s=0, m=1) are the oracle.
    model = tmp_path / "stub.yml"
    model.write_text(STUB_SED_MODEL)
    sed = cv2.ximgproc.createStructuredEdgeDetection(str(model))
    edges = cv2.GaussianBlur(rng.random((57, 83)).astype(np.float32), (0, 0), 1.5)
    edges[edges < np.median(edges)] = 0
    expected_o = sed.computeOrientation(edges)
    np.testing.assert_allclose(edge_orientation(edges), expected_o, atol=1e-6)
    expected_nms = sed.edgesNms(edges, expected_o, None, 2, 0, 1.0, True)
    np.testing.assert_array_equal(edges_nms(edges, expected_o), expected_nms)


def test_nms_floor_only_drops_what_edgeboxes_ignores() -> None:
    """``min_magnitude`` zeroes the weak pixels and leaves every other output pixel as it was;
    the boxes of real frames are those of the full NMS."""
    from avscene.io.decode import decode

    clip = decode(Path(__file__).resolve().parent.parent / "examples" / "clips" / "car_ambulance_sync.mp4")
    params = EdgeBoxesParams()
    for frame in clip.frames[:4]:
        edges = gradient_edges(frame)
        orientation = edge_orientation(edges)
        full = edges_nms(edges, orientation)
        floor = edges_nms(edges, orientation, min_magnitude=params.edge_min_mag)
        strong = edges > params.edge_min_mag
        assert strong.any() and (full[~strong] > 0).any()  # the floor has something to drop
        np.testing.assert_array_equal(floor[strong], full[strong])
        assert not floor[~strong].any()
        # a fresh detector per call: OpenCV's keeps index lists from one call to the next
        def boxes(thin):
            detector = cv2.ximgproc.createEdgeBoxes(maxBoxes=10, beta=params.beta, edgeMinMag=params.edge_min_mag)
            return detector.getBoundingBoxes(thin, orientation)

        boxes_full, scores_full = boxes(full)
        boxes_floor, scores_floor = boxes(floor)
        assert len(boxes_full) > 0
        np.testing.assert_array_equal(np.asarray(boxes_floor), np.asarray(boxes_full))
        np.testing.assert_array_equal(np.asarray(scores_floor), np.asarray(scores_full))


def test_missing_edge_model_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yml.gz"
    with pytest.raises(UsageError, match=r"missing\.yml\.gz'?: no such file; pass the path of OpenCV's"):
        edge_boxes(np.zeros((32, 32, 3), np.uint8), edge_model=str(missing))
    assert edge_model_problem(missing) == "no such file"


def _without(node: str) -> str:
    """STUB_SED_MODEL less one top-level node (and its list item)."""
    lines = STUB_SED_MODEL.splitlines(keepends=True)
    i = lines.index(f"{node}:\n")
    return "".join(lines[:i] + lines[i + 2:])


@pytest.mark.parametrize(("text", "problem"), [
    ("", "empty file (0 bytes)"),
    ("this is a video, honest", "not an OpenCV YAML/XML file"),
    (STUB_SED_MODEL.replace("numberOfTrees: 1", "numberOfTrees: 0"),
     "no options.numberOfTrees: not an OpenCV structured-edge model"),
    (_without("edgeBins"), "missing node(s) ['edgeBins']: not an OpenCV structured-edge model"),
])
def test_edge_model_problems(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "model.yml"
    path.write_text(text)
    assert (edge_model_problem(path) or "").startswith(problem)
    with pytest.raises(UsageError, match=re.escape(f"model.yml': {problem}")):
        validate_edge_model(path)


def test_edge_model_without_trees_fails_cleanly_instead_of_sigfpe(tmp_path: Path) -> None:
    # OpenCV divides by options.numberOfTrees: building this model kills the process (SIGFPE).
    # In a subprocess, so that a regression fails this test instead of the whole run.
    path = tmp_path / "model.yml"
    path.write_text("%YAML:1.0\n---\nfoo: 1\n")
    code = ("import sys, numpy as np; from avscene.errors import UsageError; "
            "from avscene.proposals.visual import edge_boxes\n"
            "try: edge_boxes(np.zeros((32, 32, 3), np.uint8), edge_model=sys.argv[1])\n"
            "except UsageError as e: print(e)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-500:]}"
    assert "no options.numberOfTrees: not an OpenCV structured-edge model" in proc.stdout


def test_valid_edge_model_is_used_and_reloaded_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "stub.yml"
    path.write_text(STUB_SED_MODEL)
    assert edge_model_problem(path) is None
    frame = rectangle_frame(60, 80, (20, 10, 60, 50))
    boxes, scores = edge_boxes(frame, max_boxes=4, edge_model=str(path))
    assert boxes.shape == (4, 4) and scores.shape == (4,)
    path.write_text(_without("childs"))  # same path, new content: not the cached detector
    with pytest.raises(UsageError, match=re.escape("missing node(s) ['childs']")):
        edge_boxes(frame, max_boxes=4, edge_model=str(path))


def test_visual_proposals_shapes() -> None:
    frames = np.stack(
        [rectangle_frame(120, 160, (30, 20, 100, 90)), np.full((120, 160, 3), 9, np.uint8)]
    )
    props = visual_proposals(frames, np.array([0.5, 1.5]), cfg=PreprocessConfig(boxes_per_frame=4))
    assert props.boxes.shape == (2, 4, 4) and props.scores.shape == (2, 4)
    np.testing.assert_array_equal(props.times, [0.5, 1.5])
    assert props.scores[0, 0] > 0 and not props.scores[1].any()  # the flat frame is all fallback


def test_visual_proposals_rejects_bad_input() -> None:
    with pytest.raises(UsageError, match=r"frames \(T, H, W, 3\)"):
        visual_proposals(np.zeros((2, 8, 8), np.uint8), np.zeros(2), cfg=CFG)
    with pytest.raises(UsageError, match="uint8"):
        edge_boxes(np.zeros((8, 8, 3), np.float32))


def test_visual_proposals_are_the_same_on_any_number_of_threads() -> None:
    """Frames run concurrently; each frame's boxes equal those of the one-thread loop, in order."""
    from avscene.io.decode import decode

    clip = decode(Path(__file__).resolve().parent.parent / "examples" / "clips" / "car_ambulance_sync.mp4")
    cfg = PreprocessConfig(boxes_per_frame=10)
    one = visual_proposals(clip.frames, clip.frame_times, cfg=cfg, threads=1)
    for n in (2, 4):
        many = visual_proposals(clip.frames, clip.frame_times, cfg=cfg, threads=n)
        np.testing.assert_array_equal(many.boxes, one.boxes)
        np.testing.assert_array_equal(many.scores, one.scores)
    expected = np.stack([edge_boxes(f, max_boxes=10)[0] for f in clip.frames])  # frame by frame
    np.testing.assert_array_equal(one.boxes, expected)
    assert len({tuple(b[0]) for b in one.boxes}) > 1  # real frames: not all the same boxes


def test_a_failing_frame_fails_the_threaded_call() -> None:
    frames = np.zeros((3, 40, 40, 3), np.uint8)
    cfg = PreprocessConfig()
    object.__setattr__(cfg, "boxes_per_frame", 0)  # past the config's own check (it refuses 0): every frame fails
    with pytest.raises(UsageError, match="max_boxes"):
        visual_proposals(frames, np.arange(3) + 0.5, cfg=cfg, threads=2)


def test_proposal_threads_follow_the_process_thread_budget(monkeypatch) -> None:
    from avscene.proposals.visual import MAX_PROPOSAL_THREADS, proposal_threads
    from avscene.threads import thread_budget

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what a --jobs worker on a small machine gets
    assert proposal_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1000")
    assert proposal_threads() == MAX_PROPOSAL_THREADS
    monkeypatch.delenv("OMP_NUM_THREADS")
    with thread_budget(2):  # --threads 2
        assert proposal_threads() == 2
