"""Audio-visual video parsing (AVVP) metrics of the LLP benchmark (pure numpy).

Tian, Li, Xu, "Unified multisensory perception: weakly-supervised audio-visual video
parsing", ECCV 2020; the numbers follow the reference evaluation
(``utils/eval_metrics.py`` and ``main_avvp.py: eval`` of YapengTian/AVVP-ECCV20):

* Every clip is a grid of 1-s segments. Per class and modality, a 0/1 row says in
  which segments the class is heard (audio), seen (visual), or both (audio-visual:
  the product of the two rows), for the ground truth and for the prediction.
* **Segment level**, per clip: for each class, TP / FP / FN counted over the
  segments; F1 = 2 TP / (2 TP + FP + FN) over the classes *involved* (TP + FP > 0
  or TP + FN > 0: present in the prediction or in the ground truth), averaged; a
  clip in which no class is involved scores 1.0 (all true negatives).
* **Event level**, per clip: events are maximal runs of positive segments; a
  predicted event is a TP when its IoU with some ground-truth event of the same
  class and modality is ≥ 0.5, else a FP; a ground-truth event that no predicted
  event matches is a FN. Then the same per-class F1 and average as above.
* **Event@AV**: audio and visual TP / FP / FN summed per class before the F1.
* Over a set of clips, each figure is the mean of the per-clip values, and
  **Type@AV** is the mean of the audio, visual and audio-visual means.

Intervals become segments by the rule of avscene's timing conventions
(:mod:`avscene.config`): segment ``k`` is ``[k, k+1)`` s and stands for its middle
instant ``k + 0.5`` (where frame ``k`` is sampled, and where the audio window
assigned to it is centred), so an interval ``[on, off)`` marks segment ``k``
when ``on <= k + 0.5 < off``. The same rule maps ground truth (avbench's
``audio`` and ``visual.interval``) and prediction (``localize``'s ``timing``
``heard`` / ``seen``) to segments. On whole-segment intervals (LLP's integer
annotations, ``seen`` intervals) it marks exactly the segments they span, as the
reference's ``GT[int(on):int(off)] = 1`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from avscene.errors import UsageError

SEGMENT_SECONDS = 1.0  # LLP's segment length
EVENT_IOU = 0.5  # a predicted event matches a ground-truth event at IoU >= 0.5 (reference's rule)
LEVELS = ("segment", "event")
FIELDS = ("audio", "visual", "audio_visual", "type_av", "event_av")


def n_segments(duration: float) -> int:
    """Number of 1-s segments of a clip: ``ceil(duration)`` (10 for avbench's and LLP's 10-s clips)."""
    if not duration >= 0 or not math.isfinite(duration):
        raise UsageError(f"duration must be a non-negative number of seconds, got {duration}")
    return math.ceil(duration / SEGMENT_SECONDS - 1e-9)


def interval_segments(intervals: Sequence[Sequence[float]], n: int) -> np.ndarray:
    """Segments whose middle ``k + 0.5`` lies in one of the ``[on, off)`` intervals. → (n,) bool."""
    mid = (np.arange(n) + 0.5) * SEGMENT_SECONDS  # (n,)
    row = np.zeros(n, dtype=bool)
    for on, off in intervals:
        if not on <= off:
            raise UsageError(f"an interval needs onset <= offset, got [{on}, {off}]")
        row |= (mid >= on) & (mid < off)
    return row


def extract_events(row: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of positive segments as ``(start, stop)`` segment indices (stop exclusive)."""
    x = np.concatenate([[0], np.asarray(row, dtype=np.int8), [0]])
    edges = np.flatnonzero(np.diff(x))  # run starts and stops alternate
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _iou_ok(a: tuple[int, int], b: tuple[int, int]) -> bool:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter >= EVENT_IOU * union


def event_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int]:
    """TP, FP, FN of the events of one class row, as the reference's ``event_wise_metric``."""
    ep, eg = extract_events(pred), extract_events(gt)
    tp = sum(any(_iou_ok(p, g) for g in eg) for p in ep)
    fn = sum(not any(_iou_ok(g, p) for p in ep) for g in eg)
    return tp, len(ep) - tp, fn


def mean_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    """Mean F1 over the classes involved (tp + fp > 0 or tp + fn > 0); 1.0 when none is."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    involved = (tp + fp > 0) | (tp + fn > 0)
    if not involved.any():
        return 1.0  # all true negatives
    return float(np.mean(2 * tp[involved] / (2 * tp[involved] + fp[involved] + fn[involved])))


def _segment_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, ...]:
    p, g = pred.astype(bool), gt.astype(bool)
    return (p & g).sum(axis=1), (p & ~g).sum(axis=1), (~p & g).sum(axis=1)  # per class (C,)


def _event_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, ...]:
    counts = np.array([event_counts(p, g) for p, g in zip(pred, gt)], dtype=np.int64).reshape(-1, 3)
    return counts[:, 0], counts[:, 1], counts[:, 2]


def clip_scores(pred_a: np.ndarray, pred_v: np.ndarray, gt_a: np.ndarray, gt_v: np.ndarray,
                *, level: str) -> dict[str, float]:
    """Audio, visual, audio-visual and Event@AV F1 of one clip at one level.

    Args:
        pred_a, pred_v, gt_a, gt_v: (C, S) 0/1 or bool rows per class (predicted / true,
            heard / seen).
        level: "segment" or "event".

    Returns:
        ``{"audio", "visual", "audio_visual", "event_av"}`` per-clip values.
    """
    if level not in LEVELS:
        raise UsageError(f"level must be one of {LEVELS}, got {level!r}")
    rows = [np.asarray(r).astype(bool) for r in (pred_a, pred_v, gt_a, gt_v)]
    if len({r.shape for r in rows}) != 1 or rows[0].ndim != 2:
        raise UsageError(f"the four rolls must share one (C, S) shape, got {[r.shape for r in rows]}")
    pa, pv, ga, gv = rows
    count = _segment_counts if level == "segment" else _event_counts
    a, v, av = count(pa, ga), count(pv, gv), count(pa & pv, ga & gv)
    pooled = [x + y for x, y in zip(a, v)]  # Event@AV: audio and visual counts summed per class
    return {"audio": mean_f1(*a), "visual": mean_f1(*v), "audio_visual": mean_f1(*av),
            "event_av": mean_f1(*pooled)}


@dataclass(frozen=True)
class AVVPScores:
    """The five LLP figures at one level (segment or event), means over clips."""

    audio: float
    visual: float
    audio_visual: float
    type_av: float  # mean of audio, visual, audio_visual
    event_av: float  # audio and visual counts pooled per class

    def to_json(self) -> dict[str, float]:
        return {k: round(float(getattr(self, k)), 6) for k in FIELDS}


@dataclass(frozen=True)
class AVVPMetrics:
    """Segment- and event-level AVVP scores over ``n_clips`` clips. JSON: ``{"segment": {...},
    "event": {...}, "n_clips": int, "rule": str}`` with the keys of :class:`AVVPScores`."""

    segment: AVVPScores
    event: AVVPScores
    n_clips: int

    def to_json(self) -> dict[str, Any]:
        return {"segment": self.segment.to_json(), "event": self.event.to_json(), "n_clips": self.n_clips,
                "rule": "segment k = [k, k+1) s is on when an interval contains k + 0.5"}


@dataclass(frozen=True)
class ClipParse:
    """Heard and seen rolls of one clip: (C, S) bool each."""

    audio: np.ndarray
    visual: np.ndarray


def clip_parse(heard: dict[int, Sequence[Sequence[float]]], seen: dict[int, Sequence[Sequence[float]]],
               *, num_classes: int, duration: float) -> ClipParse:
    """Rolls of one clip from per-class interval lists (class index → ``[[on, off], ...]``)."""
    n = n_segments(duration)
    a = np.zeros((num_classes, n), dtype=bool)
    v = np.zeros((num_classes, n), dtype=bool)
    for c, ivs in heard.items():
        a[c] |= interval_segments(ivs, n)
    for c, ivs in seen.items():
        v[c] |= interval_segments(ivs, n)
    return ClipParse(a, v)


def avvp_metrics(pred: Sequence[ClipParse], gt: Sequence[ClipParse]) -> AVVPMetrics:
    """Mean of the per-clip AVVP figures over clips (``main_avvp.py: eval``)."""
    if len(pred) != len(gt) or not pred:
        raise UsageError(f"need as many predicted as true clips (at least one), got {len(pred)} and {len(gt)}")
    levels = {}
    for level in LEVELS:
        per_clip = [clip_scores(p.audio, p.visual, g.audio, g.visual, level=level) for p, g in zip(pred, gt)]
        m = {k: float(np.mean([s[k] for s in per_clip])) for k in per_clip[0]}
        levels[level] = AVVPScores(audio=m["audio"], visual=m["visual"], audio_visual=m["audio_visual"],
                                   type_av=(m["audio"] + m["visual"] + m["audio_visual"]) / 3,
                                   event_av=m["event_av"])
    return AVVPMetrics(segment=levels["segment"], event=levels["event"], n_clips=len(pred))
