"""Tests of the classification and localisation metrics: hand cases and brute-force oracles."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from avscene.errors import UsageError
from avscene.evaluation.metrics.classification import classification_metrics, top1_accuracy
from avscene.evaluation.metrics.localization import LocalizationScores, box_iou, corloc_hit, pointing_hit


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# Columns A, B, C by hand; D: no positives, never predicted; E: no positives, predicted once.
Y_TRUE = np.array([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=bool)
Y_PRED = np.array([[1, 0, 0, 0, 1], [0, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=bool)


def test_classification_metrics_by_hand() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, ["A", "B", "C", "D", "E"])
    # Pooled: TP = 2 (A) + 1 (B) = 3; FP = 1 (C) + 1 (E) = 2; FN = 1 (B) + 1 (C) = 2.
    assert m.micro_precision == pytest.approx(3 / 5)
    assert m.micro_recall == pytest.approx(3 / 5)
    assert m.micro_f1 == pytest.approx(6 / (6 + 2 + 2))
    # A: F1 1; B: P 1, R 1/2, F1 2/3; C: 0. D and E have no positives -> excluded.
    assert m.macro_f1 == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m.accuracy == pytest.approx(1 / 4)  # only the empty last row is predicted exactly
    a, b, c, d, e = m.classes
    assert (a.precision, a.recall, a.f1, a.support) == (1.0, 1.0, 1.0, 2)
    assert (b.precision, b.recall, b.support) == (1.0, 0.5, 2) and b.f1 == pytest.approx(2 / 3)
    assert (c.precision, c.recall, c.f1, c.support) == (0.0, 0.0, 0.0, 1)
    assert math.isnan(d.precision) and math.isnan(d.recall) and math.isnan(d.f1) and d.support == 0
    assert e.precision == 0.0 and math.isnan(e.recall) and e.f1 == 0.0
    js = m.to_json()
    assert js["classes"][3]["f1"] is None and js["accuracy"] == pytest.approx(0.25)
    json.dumps(js, allow_nan=False)  # plain, strict JSON


def test_classification_metrics_matches_loop_oracle(rng: np.random.Generator) -> None:
    y_true = rng.random((60, 6)) < 0.3
    y_pred = rng.random((60, 6)) < 0.3
    m = classification_metrics(y_true, y_pred, list("abcdef"))
    f1s = []
    for c in range(6):
        tp = sum(1 for i in range(60) if y_true[i, c] and y_pred[i, c])
        fp = sum(1 for i in range(60) if not y_true[i, c] and y_pred[i, c])
        fn = sum(1 for i in range(60) if y_true[i, c] and not y_pred[i, c])
        p, r = tp / (tp + fp), tp / (tp + fn)
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)  # harmonic-mean form
        assert m.classes[c].f1 == pytest.approx(f1s[-1])
    assert m.macro_f1 == pytest.approx(np.mean(f1s))
    exact = sum(1 for i in range(60) if list(y_true[i]) == list(y_pred[i]))
    assert m.accuracy == pytest.approx(exact / 60)


def test_classification_metrics_rejects_bad_input() -> None:
    with pytest.raises(UsageError, match="same"):
        classification_metrics(Y_TRUE, Y_PRED[:, :3], list("ABCDE"))
    with pytest.raises(UsageError, match="class names"):
        classification_metrics(Y_TRUE, Y_PRED, ["A"])
    with pytest.raises(UsageError, match="threshold scores first"):
        classification_metrics(Y_TRUE * 0.7, Y_PRED, list("ABCDE"))


def test_top1_accuracy_by_hand() -> None:
    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.2, 0.1], [0.3, 0.3, 0.4]])
    y_true = np.array([[0, 1, 0], [0, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=bool)
    # Hit, miss, miss (tie -> lowest index 0), hit (class 2 is one of the two labels).
    assert top1_accuracy(scores, y_true) == pytest.approx(2 / 4)
    with pytest.raises(UsageError, match="at least one true label"):
        top1_accuracy(scores, np.zeros((4, 3), dtype=bool))
    with pytest.raises(UsageError, match="nan or inf"):
        top1_accuracy(np.full((4, 3), np.nan), y_true)


def _raster_iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """IoU by counting pixels on a grid: pixel (x, y) is in a box if x0 <= x < x1, y0 <= y < y1."""
    grid = np.zeros((2, 20, 20), dtype=bool)
    for k, (x0, y0, x1, y1) in enumerate((a, b)):
        grid[k, y0:y1, x0:x1] = True
    union = (grid[0] | grid[1]).sum()
    return (grid[0] & grid[1]).sum() / union if union else 0.0


def test_box_iou_by_hand_and_raster(rng: np.random.Generator) -> None:
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1], [0, 0, 2, 2]], dtype=float)
    b = np.array([[1, 1, 3, 3], [1, 0, 2, 1], [0, 0, 2, 2]], dtype=float)
    iou = box_iou(a, b)
    assert iou.shape == (3, 3)
    assert iou[0, 0] == pytest.approx(1 / 7)  # overlap 1 px, union 4 + 4 - 1
    assert iou[1, 1] == 0.0  # touching edges do not overlap (x1 exclusive)
    assert iou[2, 2] == 1.0
    lo = rng.integers(0, 10, (30, 2))
    boxes = np.concatenate([lo, lo + rng.integers(0, 10, (30, 2))], axis=1)  # some zero-area
    got = box_iou(boxes[:15], boxes[15:])
    want = [[_raster_iou(tuple(p), tuple(q)) for q in boxes[15:]] for p in boxes[:15]]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_box_iou_rejects_malformed_boxes() -> None:
    with pytest.raises(UsageError, match="x1 >= x0"):
        box_iou(np.array([[2, 0, 1, 1]]), np.array([[0, 0, 1, 1]]))
    with pytest.raises(UsageError, match=r"\(K, 4\)"):
        box_iou(np.zeros((2, 3)), np.zeros((1, 4)))


def test_pointing_hit_uses_half_open_boxes() -> None:
    pred = np.array([0, 0, 4, 4])  # centre (2, 2)
    assert pointing_hit(pred, np.array([[2, 2, 5, 5]]))  # 2 <= 2
    assert not pointing_hit(pred, np.array([[0, 0, 2, 2]]))  # 2 < 2 fails
    assert pointing_hit(pred, np.array([[0, 0, 2, 2], [1, 1, 3, 3]]))  # any GT box
    assert not pointing_hit(pred, np.zeros((0, 4)))


def test_corloc_hit_threshold_is_inclusive() -> None:
    gt = np.array([[0, 0, 1, 1]])
    assert corloc_hit(np.array([0, 0, 2, 1]), gt)  # IoU exactly 1/2
    assert not corloc_hit(np.array([0, 0, 3, 1]), gt)  # IoU 1/3
    assert corloc_hit(np.array([0, 0, 3, 1]), gt, iou=0.3)
    assert not corloc_hit(np.array([0, 0, 1, 1]), np.zeros((0, 4)))
    with pytest.raises(UsageError, match=r"\(0, 1\]"):
        corloc_hit(np.array([0, 0, 1, 1]), gt, iou=0.0)


def test_localization_scores_accumulate() -> None:
    acc = LocalizationScores()
    assert math.isnan(acc.pointing_accuracy) and math.isnan(acc.corloc)
    acc.add(np.array([0, 0, 2, 1]), np.array([[0, 0, 1, 1]]))  # centre (1, .5) outside; IoU .5
    acc.add(np.array([1, 1, 3, 3]), np.array([[0, 0, 4, 4]]))  # centre inside; IoU 4/16
    acc.add(np.array([0, 0, 4, 4]), np.array([[9, 9, 10, 10], [0, 0, 4, 4]]))  # both hit
    assert (acc.n, acc.pointing_hits, acc.corloc_hits) == (3, 2, 2)
    assert acc.pointing_accuracy == pytest.approx(2 / 3) and acc.corloc == pytest.approx(2 / 3)
    with pytest.raises(UsageError, match="no ground-truth box"):
        acc.add(np.array([0, 0, 1, 1]), np.zeros((0, 4)))
    assert acc.to_json()["n"] == 3


def test_metrics_modules_do_not_import_torch() -> None:
    code = (
        "import sys, avscene.evaluation.metrics.classification, avscene.evaluation.metrics.localization, "
        "avscene.evaluation.metrics.sed, avscene.evaluation.metrics.separation, avscene.evaluation.metrics.avvp; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_micro_prf_pools_counts_and_says_what_undefined_is():
    import math

    from avscene.evaluation.metrics.classification import micro_prf

    y = np.array([[1, 0, 1], [0, 1, 0]], bool)
    p = np.array([[1, 1, 0], [0, 1, 0]], bool)  # TP 2, FP 1, FN 1
    assert micro_prf(y, p) == pytest.approx((2 / 3, 2 / 3, 4 / 6))
    none = np.zeros_like(y)
    prec, rec, f1 = micro_prf(y, none)  # nothing predicted: precision undefined, recall 0, F1 0
    assert math.isnan(prec) and rec == 0.0 and f1 == 0.0
    assert micro_prf(y, none, undefined=0.0) == (0.0, 0.0, 0.0)
    assert micro_prf(none, none, undefined=0.0) == (0.0, 0.0, 0.0)
    assert all(math.isnan(v) for v in micro_prf(none, none))


def test_recall_by_mode_counts_each_event_once_by_its_clip_detections() -> None:
    from avscene.evaluation.evaluate import recall_by_mode

    events = [("sync", "car", {"car", "drum"}), ("sync", "drum", {"car"}), ("silent", "violin", set()),
              ("async", "flute", {"flute"}), ("silent", "piano", {"piano"}), ("weird", "x", {"x"})]
    got = recall_by_mode(events)
    assert list(got) == ["sync", "async", "silent", "weird"]  # avbench's order, then others
    assert got["sync"] == {"recall": 0.5, "n": 2} and got["async"] == {"recall": 1.0, "n": 1}
    assert got["silent"] == {"recall": 0.5, "n": 2} and got["weird"]["n"] == 1


def test_localization_scores_per_class_iou_and_size_ratio() -> None:
    acc = LocalizationScores()
    # car: a box half the object's width (IoU 1/2, ratio 1/2: a part), then a box 4x the object (IoU 1/4)
    acc.add(np.array([0, 0, 2, 4]), np.array([[0, 0, 4, 4]]), "car")
    acc.add(np.array([0, 0, 8, 8]), np.array([[2, 2, 6, 6]]), "car")
    # bicycle: no box reported (a miss, IoU 0, no ratio); then a box that matches the second GT box
    acc.add(None, np.array([[0, 0, 4, 4]]), "bicycle")
    acc.add(np.array([10, 10, 12, 12]), np.array([[0, 0, 4, 4], [10, 10, 12, 13]]), "bicycle")
    car, bike = acc.classes["car"], acc.classes["bicycle"]
    assert (car.n, car.pointing_hits, car.corloc_hits) == (2, 2, 1)
    assert car.median_iou == pytest.approx((0.5 + 0.25) / 2) and car.median_size_ratio == pytest.approx((0.5 + 4) / 2)
    assert (bike.n, bike.pointing_hits, bike.corloc_hits) == (2, 1, 1)
    assert bike.median_iou == pytest.approx((0 + 4 / 6) / 2)
    assert bike.median_size_ratio == pytest.approx(4 / 6)  # the matched (second) GT box; the miss has none
    assert (acc.n, acc.pointing_hits, acc.corloc_hits) == (4, 3, 2)
    assert acc.median_iou == pytest.approx((0.25 + 0.5) / 2)  # of 0, 1/4, 1/2, 2/3
    js = acc.to_json()
    assert [c["name"] for c in js["classes"]] == ["bicycle", "car"]
    assert js["classes"][1]["corloc"] == pytest.approx(0.5) and js["median_size_ratio"] == pytest.approx(2 / 3)
    empty = LocalizationScores().to_json()
    assert empty["median_iou"] is None and empty["classes"] == []
