"""Tests of the segment-based SED metrics: hand-computed cases, a per-segment loop oracle."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from avscene.errors import UsageError
from avscene.evaluation.metrics.sed import segment_activity, segment_based_metrics

CLASSES = ["dog", "cat", "car"]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_segment_activity_follows_sed_eval_floor_ceil() -> None:
    events = [
        ("dog", 1.0, 2.0),  # exactly segment 1
        ("cat", 0.9, 1.1),  # segments 0 and 1
        ("car", 2.5, 2.5),  # zero length inside segment 2: marked, as in sed_eval
        ("car", 4.0, 4.0),  # zero length on a boundary: nothing
        ("dog", 4.2, 7.0),  # runs past the 5-s clip: clipped to segment 4
    ]
    roll = segment_activity([(on, off, lab) for lab, on, off in events], class_names=CLASSES, duration=5.0)
    want = np.zeros((5, 3), dtype=bool)
    want[1, 0] = want[4, 0] = True
    want[[0, 1], 1] = True
    want[2, 2] = True
    np.testing.assert_array_equal(roll, want)


def test_segment_activity_shape_uses_ceil_and_resolution() -> None:
    assert segment_activity([], class_names=CLASSES, duration=10.0).shape == (10, 3)
    assert segment_activity([], class_names=CLASSES, duration=9.2).shape == (10, 3)
    roll = segment_activity([(0.6, 1.2, "cat")], class_names=CLASSES, duration=2.0, resolution=0.5)
    np.testing.assert_array_equal(roll[:, 1], [False, True, True, False])


def test_segment_activity_equals_positive_overlap(rng: np.random.Generator) -> None:
    on = rng.uniform(0, 9.5, 40)
    off = on + rng.uniform(0.01, 3, 40)
    labels = rng.choice(CLASSES, 40)
    roll = segment_activity(list(zip(on, off, labels)), class_names=CLASSES, duration=10.0)
    want = np.zeros((10, 3), dtype=bool)
    for o, f, lab in zip(on, off, labels):
        for k in range(10):
            if min(f, k + 1) - max(o, k) > 0:  # overlaps segment [k, k+1) for a positive time
                want[k, CLASSES.index(lab)] = True
    np.testing.assert_array_equal(roll, want)


def test_segment_activity_rejects_bad_events() -> None:
    with pytest.raises(UsageError, match="not one of the class names"):
        segment_activity([(0.0, 1.0, "cow")], class_names=CLASSES, duration=2.0)
    with pytest.raises(UsageError, match="onset <= offset"):
        segment_activity([(1.5, 1.0, "dog")], class_names=CLASSES, duration=2.0)
    with pytest.raises(UsageError, match="resolution"):
        segment_activity([], class_names=CLASSES, duration=2.0, resolution=0.0)


def test_sed_eval_docstring_example_by_hand() -> None:
    # sed_eval's SegmentBasedMetrics example, 1-s segments. Reference car in segments
    # {0,1,2} U {2,3,4} U {6,...,9} = 9 segments; estimate in {1,2,3} U {7} = 4, all correct.
    ref = segment_activity([(0.0, 2.5, "car"), (2.8, 4.5, "car"), (6.0, 10.0, "car")], class_names=["car"], duration=10)
    est = segment_activity([(1.0, 3.5, "car"), (7.0, 8.0, "car")], class_names=["car"], duration=10)
    m = segment_based_metrics([ref], [est], class_names=["car"])
    assert (m.tp, m.fp, m.fn, m.n_ref, m.n_sys) == (4, 0, 5, 9, 4)
    assert m.precision == 1.0 and m.recall == pytest.approx(4 / 9)
    assert m.f1 == pytest.approx(8 / 13)
    assert (m.substitutions, m.deletions, m.insertions) == (0, 5, 0)
    assert m.error_rate == pytest.approx(5 / 9)


def test_substitutions_are_counted_per_segment() -> None:
    # seg 0: ref {dog}, est {cat}          -> S = 1
    # seg 1: ref {dog, car}, est {dog}     -> TP 1, D = 1
    # seg 2: ref {}, est {car, cat}        -> I = 2
    ref = segment_activity([(0.0, 2.0, "dog"), (1.1, 1.9, "car")], class_names=CLASSES, duration=3)
    est_events = [(0.2, 0.8, "cat"), (1.5, 2.0, "dog"), (2.0, 2.5, "car"), (2.5, 3.0, "cat")]
    est = segment_activity(est_events, class_names=CLASSES, duration=3)
    m = segment_based_metrics([ref], [est], class_names=CLASSES)
    assert (m.tp, m.fp, m.fn, m.n_ref) == (1, 3, 2, 3)
    assert (m.substitutions, m.deletions, m.insertions) == (1, 1, 2)
    assert m.error_rate == pytest.approx(4 / 3)  # not (FN + FP) / N = 5/3
    assert m.substitution_rate == pytest.approx(1 / 3)
    assert m.f1 == pytest.approx(2 / 7)  # P = 1/4, R = 1/3
    dog, cat, car = m.classes
    assert dog.f1 == pytest.approx(2 / 3) and dog.error_rate == pytest.approx(1 / 2)
    assert cat.n_ref == 0 and cat.precision == 0.0 and math.isnan(cat.f1) and math.isnan(cat.error_rate)
    assert car.f1 == 0.0 and car.error_rate == pytest.approx(2.0)  # FN 1 + FP 1 over 1
    assert m.macro_f1 == pytest.approx((2 / 3 + 0) / 2)  # cat (nan) drops out, as in sed_eval
    assert m.macro_error_rate == pytest.approx((1 / 2 + 2) / 2)
    js = m.to_json()
    assert js["classes"][1]["f1"] is None
    json.dumps(js, allow_nan=False)


def test_never_estimated_class_has_nan_f1_like_sed_eval() -> None:
    ref = np.array([[True], [False]])
    m = segment_based_metrics([ref], [np.zeros((2, 1), dtype=bool)])
    assert math.isnan(m.precision) and m.recall == 0.0 and math.isnan(m.f1)
    assert m.error_rate == pytest.approx(1.0) and m.classes[0].name == "0"


def _sed_eval_loop(refs: list[np.ndarray], ests: list[np.ndarray]) -> dict[str, float]:
    """Transcription of sed_eval's per-segment loop: one segment at a time, plain ints."""
    tot = dict.fromkeys(["tp", "nref", "nsys", "S", "D", "I"], 0)
    for ref, est in zip(refs, ests):
        for k in range(max(len(ref), len(est))):
            a = [bool(v) for v in ref[k]] if k < len(ref) else [False] * ref.shape[1]
            s = [bool(v) for v in est[k]] if k < len(est) else [False] * est.shape[1]
            tp = sum(1 for x, y in zip(a, s) if x and y)
            nref, nsys = sum(a), sum(s)
            for key, val in zip(tot, [tp, nref, nsys, min(nref, nsys) - tp, max(0, nref - nsys), max(0, nsys - nref)]):
                tot[key] += val
    return tot


def test_accumulation_over_files_matches_loop_oracle(rng: np.random.Generator) -> None:
    refs = [rng.random((n, 4)) < 0.3 for n in (10, 7, 12)]
    ests = [rng.random((n, 4)) < 0.3 for n in (10, 9, 12)]  # file 1: the estimate is longer
    m = segment_based_metrics(refs, ests)
    want = _sed_eval_loop(refs, ests)
    assert (m.tp, m.n_ref, m.n_sys) == (want["tp"], want["nref"], want["nsys"])
    assert (m.substitutions, m.deletions, m.insertions) == (want["S"], want["D"], want["I"])
    assert m.error_rate == pytest.approx((want["S"] + want["D"] + want["I"]) / want["nref"])
    assert m.n_segments == 10 + 9 + 12 and m.n_files == 3


def test_segment_based_metrics_rejects_bad_input() -> None:
    roll = np.zeros((3, 2), dtype=bool)
    with pytest.raises(UsageError, match="1 reference and 2 estimated"):
        segment_based_metrics([roll], [roll, roll])
    with pytest.raises(UsageError, match="same C"):
        segment_based_metrics([roll], [np.zeros((3, 3), dtype=bool)])
    with pytest.raises(UsageError, match="at least one"):
        segment_based_metrics([], [])
    with pytest.raises(UsageError, match="class names"):
        segment_based_metrics([roll], [roll], class_names=["a"])
