"""Segment-based sound event detection metrics (DCASE 2017, pure numpy).

Definitions: Mesaros, Heittola, Virtanen, "Metrics for polyphonic sound event
detection", Applied Sciences 6(6):162, 2016, Sec. 3.1 (segment-based F-score
and error rate), as implemented by ``sed_eval.sound_event.SegmentBasedMetrics``
(``time_resolution=1.0`` in DCASE 2017 task 4). The numbers match sed_eval's
``results()`` except where sed_eval divides by ``Nref + eps`` with ``Nref = 0``
(it then reports ``0`` or ``~1e16``); here that error rate is ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from avscene.errors import UsageError
from avscene.evaluation.metrics import json_float, safe_ratio

SEGMENT_SECONDS = 1.0  # DCASE 2017 task 4 segment length (sed_eval time_resolution)


def segment_activity(
    events: Sequence[tuple[float, float, str]],
    *,
    class_names: Sequence[str],
    duration: float,
    resolution: float = SEGMENT_SECONDS,
) -> np.ndarray:
    """Event list -> segment activity roll, as ``sed_eval.util.event_list_to_event_roll``.

    Segment ``k`` is ``[k r, (k+1) r)`` with ``r = resolution``. An event
    ``(onset, offset, label)`` activates segments ``floor(onset / r)`` up to
    ``ceil(offset / r) - 1`` (sed_eval's rule). For an event of positive
    duration this is exactly "the event overlaps the segment for a positive
    duration"; a zero-length event strictly inside a segment still marks it, as
    in sed_eval. Activity beyond the clip (``offset > duration``, e.g. from
    padded audio proposals) is dropped: the roll always has
    ``S = ceil(duration / r)`` rows (sed_eval instead sizes the roll by the
    latest offset, which only adds inactive rows or out-of-clip activity).

    Args:
        events: ``(onset, offset, label)`` triples in seconds, any order, may overlap.
        class_names: the C labels, in column order.
        duration: clip length in seconds.
        resolution: segment length in seconds.

    Returns:
        (S, C) bool activity.

    Raises:
        UsageError: on an unknown label, ``onset < 0``, ``offset < onset`` or a bad duration/resolution.
    """
    if not resolution > 0 or not math.isfinite(resolution):
        raise UsageError(f"resolution must be a positive number of seconds, got {resolution}")
    if not duration >= 0 or not math.isfinite(duration):
        raise UsageError(f"duration must be a non-negative number of seconds, got {duration}")
    index = {str(name): c for c, name in enumerate(class_names)}
    roll = np.zeros((math.ceil(duration / resolution), len(index)), dtype=bool)  # (S, C)
    for onset, offset, label in events:
        if label not in index:
            raise UsageError(f"event label {label!r} is not one of the class names {sorted(index)}")
        if not 0 <= onset <= offset:
            raise UsageError(f"event {label!r} needs 0 <= onset <= offset, got onset {onset} and offset {offset}")
        first, stop = math.floor(onset / resolution), math.ceil(offset / resolution)
        roll[first:stop, index[label]] = True
    return roll


@dataclass(frozen=True)
class SegmentClassScores:
    """Segment-based scores of one class. ER here has no substitutions: ``(FN + FP) / Nref``."""

    name: str
    tp: int
    fp: int
    fn: int
    n_ref: int  # active reference segments
    n_sys: int  # active estimated segments
    precision: float  # tp / n_sys (nan if n_sys == 0)
    recall: float  # tp / n_ref (nan if n_ref == 0)
    f1: float  # sed_eval f_measure(precision, recall)
    error_rate: float  # (fn + fp) / n_ref (nan if n_ref == 0)
    deletion_rate: float  # fn / n_ref
    insertion_rate: float  # fp / n_ref

    def to_json(self) -> dict[str, Any]:
        return {k: (json_float(v) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class SegmentMetrics:
    """Overall (micro) and class-wise segment-based SED scores; see :func:`segment_based_metrics`."""

    tp: int
    fp: int
    fn: int
    n_ref: int  # N: active reference (segment, class) pairs
    n_sys: int
    substitutions: int
    deletions: int
    insertions: int
    precision: float
    recall: float
    f1: float
    error_rate: float  # (S + D + I) / N
    substitution_rate: float
    deletion_rate: float
    insertion_rate: float
    macro_f1: float  # nan-mean of the class F1 (sed_eval class_wise_average)
    macro_error_rate: float  # nan-mean of the class ER
    n_segments: int
    n_files: int
    classes: tuple[SegmentClassScores, ...]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: (json_float(v) if isinstance(v, float) else v) for k, v in self.__dict__.items() if k != "classes"
        }
        out["classes"] = [c.to_json() for c in self.classes]
        return out


def f_measure(precision: float, recall: float) -> float:
    """sed_eval's ``metric.f_measure``: 0 if both are 0, else the harmonic mean (nan propagates)."""
    if precision == 0 and recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _stack_rolls(
    reference_rolls: Sequence[np.ndarray], estimated_rolls: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Validate per-file rolls, zero-pad each pair to the longer one (sed_eval) and concatenate."""
    if len(reference_rolls) != len(estimated_rolls):
        raise UsageError(f"got {len(reference_rolls)} reference and {len(estimated_rolls)} estimated rolls")
    if not reference_rolls:
        raise UsageError("no files to score: pass at least one (reference, estimate) pair")
    refs, ests = [], []
    for i, (r, e) in enumerate(zip(reference_rolls, estimated_rolls)):
        r, e = np.asarray(r, dtype=bool), np.asarray(e, dtype=bool)
        if r.ndim != 2 or e.ndim != 2 or r.shape[1] != e.shape[1]:
            raise UsageError(f"file {i}: rolls must be (S, C) with the same C, got {r.shape} and {e.shape}")
        n = max(len(r), len(e))
        refs.append(np.pad(r, ((0, n - len(r)), (0, 0))))
        ests.append(np.pad(e, ((0, n - len(e)), (0, 0))))
    n_classes = {x.shape[1] for x in refs}
    if len(n_classes) != 1:
        raise UsageError(f"all rolls must have the same number of classes, got {sorted(n_classes)}")
    return np.concatenate(refs), np.concatenate(ests)  # (S_total, C) each


def _class_scores(name: str, ref: np.ndarray, est: np.ndarray) -> SegmentClassScores:
    """Scores of one class from its (S,) reference and estimated activity."""
    tp, fp, fn = int((ref & est).sum()), int((~ref & est).sum()), int((ref & ~est).sum())
    n_ref, n_sys = tp + fn, tp + fp
    precision, recall = safe_ratio(tp, n_sys), safe_ratio(tp, n_ref)
    return SegmentClassScores(
        name=name,
        tp=tp,
        fp=fp,
        fn=fn,
        n_ref=n_ref,
        n_sys=n_sys,
        precision=precision,
        recall=recall,
        f1=f_measure(precision, recall),
        error_rate=safe_ratio(fn + fp, n_ref),
        deletion_rate=safe_ratio(fn, n_ref),
        insertion_rate=safe_ratio(fp, n_ref),
    )


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def segment_based_metrics(
    reference_rolls: Sequence[np.ndarray],
    estimated_rolls: Sequence[np.ndarray],
    *,
    class_names: Sequence[str] | None = None,
) -> SegmentMetrics:
    """Segment-based F-score and error rate accumulated over files (Mesaros et al. 2016).

    Per segment k, with ``TP_k`` the classes active in both rolls and
    ``N_ref,k`` / ``N_sys,k`` the active reference / estimated classes:
    substitutions ``S_k = min(N_ref,k, N_sys,k) - TP_k`` (= min(FN_k, FP_k)),
    deletions ``D_k = max(0, N_ref,k - N_sys,k)``, insertions
    ``I_k = max(0, N_sys,k - N_ref,k)``. Overall: ``ER = (ΣS + ΣD + ΣI) / N``
    with ``N = Σ N_ref,k``; precision ``ΣTP / ΣN_sys``, recall ``ΣTP / N``,
    F the harmonic mean. Class-wise ER counts no substitutions:
    ``(FN_c + FP_c) / N_ref,c``. As in sed_eval, an undefined precision or
    recall is ``nan`` and F is ``nan`` whenever either is (so a class that is
    never estimated has F = nan and, like sed_eval's class-wise average, drops
    out of ``macro_f1``); F is 0 when both are 0. Rates with ``N = 0`` are
    ``nan`` (sed_eval: ``x / eps``).

    Args:
        reference_rolls: per file, (S, C) bool reference activity (:func:`segment_activity`).
        estimated_rolls: per file, (S', C) bool estimated activity; the shorter
            roll of a pair is zero-padded, as in sed_eval.
        class_names: C names for the class-wise scores (default ``"0"``, ``"1"``, ...).

    Returns:
        The accumulated scores.

    Raises:
        UsageError: if the lists differ in length, are empty, or the rolls disagree in C.
    """
    ref, est = _stack_rolls(reference_rolls, estimated_rolls)  # (S_total, C)
    n_classes = ref.shape[1]
    names = [str(c) for c in range(n_classes)] if class_names is None else [str(n) for n in class_names]
    if len(names) != n_classes:
        raise UsageError(f"got {len(names)} class names for rolls with {n_classes} classes")
    tp_k = (ref & est).sum(axis=1)  # (S_total,)
    nref_k, nsys_k = ref.sum(axis=1), est.sum(axis=1)  # (S_total,) each
    tp, n_ref, n_sys = int(tp_k.sum()), int(nref_k.sum()), int(nsys_k.sum())
    subs = int((np.minimum(nref_k, nsys_k) - tp_k).sum())
    dels = int(np.clip(nref_k - nsys_k, 0, None).sum())
    ins = int(np.clip(nsys_k - nref_k, 0, None).sum())
    precision, recall = safe_ratio(tp, n_sys), safe_ratio(tp, n_ref)
    classes = tuple(_class_scores(name, ref[:, c], est[:, c]) for c, name in enumerate(names))
    return SegmentMetrics(
        tp=tp,
        fp=n_sys - tp,
        fn=n_ref - tp,
        n_ref=n_ref,
        n_sys=n_sys,
        substitutions=subs,
        deletions=dels,
        insertions=ins,
        precision=precision,
        recall=recall,
        f1=f_measure(precision, recall),
        error_rate=safe_ratio(subs + dels + ins, n_ref),
        substitution_rate=safe_ratio(subs, n_ref),
        deletion_rate=safe_ratio(dels, n_ref),
        insertion_rate=safe_ratio(ins, n_ref),
        macro_f1=_nanmean([c.f1 for c in classes]),
        macro_error_rate=_nanmean([c.error_rate for c in classes]),
        n_segments=len(ref),
        n_files=len(reference_rolls),
        classes=classes,
    )
