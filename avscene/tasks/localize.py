"""``localize``: where each class is visible and when it is heard.

Everything comes from the localisation-weighted proposal scores of the
two-stream network, ``E = A ⊙ softmax(B)`` (per modality):

* visual: per class and sampled frame, the box of the class's evidence map (``box_mode
  "evidence"``: every window's positive classification score accumulated per pixel,
  thresholded at 0.2 of its range, the largest connected region, as class activation maps
  do; :mod:`avscene.proposals.evidence`); or that box grown by adversarial erasing (``"erase"``:
  its region hidden, the frame scored again by the visual stream, the next region added while
  the class keeps evidence there and the region touches the box, up to ``erase_rounds``
  regions); or the windows with the highest ``E`` (``"window"``; a model with OICR refinement
  branches ranks them by the branches' probabilities instead, ``visual_R``); optionally moved by
  a self-trained box regressor (``box_regressor``, from the box's RoI feature); snapped to the
  object's boundary by ``cv2.grabCut`` (``snap``). :func:`report_boxes` is the one rule, which
  ``evaluate`` scores too;
* audio: per class, ``E`` of every 0.96-s window, and the same min–max scaled to
  ``[0, 1]`` (``heat``);
* events: an event starts at a window whose ``E`` exceeds ``event_threshold`` (0, as in
  the paper: the sign of ``E`` is the sign of the classification stream ``A``) and goes
  on through the neighbouring windows whose ``A`` stays above ``event_low`` (hysteresis, as
  DCASE systems do; ``None``: no hysteresis); a model with an event head scores the windows,
  and ``audio``, by its logits instead (above 0 is probability 1/2; the hysteresis then runs on
  the same logits); each window stands for the central 0.48 s it shares with no neighbour,
  merged when adjacent (:func:`event_windows`, which also offers a clip-relative rule and a
  median filter); a checkpoint whose event rule was calibrated on splices of its training
  hold-out (``ModelConfig.event_*``, ``avscene calibrate --events``) has that rule applied instead
  (:func:`resolve_event_rule`, :class:`avscene.dsp.events.EventRule`);
* timing, the per-second parse: the intervals during which a class is heard (its
  events) and seen (frames whose best box has ``E`` above ``visible_threshold``,
  each frame standing for its 1-s segment), both (their intersection), and
  whether they overlap. The video-level decisions gate it (``ClassParse.heard`` /
  ``.seen``, thresholds calibrated on the training hold-out, and the fused
  ``predicted``): a class gets audio events when it is heard or predicted
  (``event_classes``; a predicted class's audio share shrinks on recordings unlike the
  training ones before its fused decision does), a heard class at least one (its best
  window, when no window's ``E`` clears ``event_threshold``); a class neither heard nor
  predicted has none. Frames: a class not seen has no seen interval, a seen one at least
  its best frame.

The classes reported are the ``--label`` ones, else the predicted ones followed by
any other class that is heard or seen; ``status`` says which of these each one is
(:data:`avscene.results.STATUSES`), so that a class only one modality reports is
never shown as a prediction. A class has a box only in the frames where it is seen,
and none where its visual evidence is degenerate (no window scores above 0, or all
score the same: the best window would be an arbitrary one; :func:`frame_boxes`, so that
``evaluate`` scores no box there either).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avscene.dsp.events import EventRule, grow_runs, median_filter
from avscene.errors import UsageError
from avscene.proposals.box_regression import BoxRegressor
from avscene.proposals.evidence import CAM_FRACTION, ERASE_ROUNDS, erasing_boxes, evidence_boxes, snap_box
from avscene.timing import segment_timestamps
from avscene.results import (
    HEARD_AND_SEEN_ONLY, HEARD_ONLY, PREDICTED, REQUESTED, SEEN_ONLY, AudioSegment, BoxDetection, ClassParse, Event,
    LocalizeResult, Timing,
)
from avscene.tasks._pipeline import Analysis, analyse, check_finite
from avscene.tasks.classify import ClassifyOptions, result_from_analysis

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel


BOX_MODES = ("evidence", "window", "erase")
EVIDENCE_WEIGHTS = ("A", "E", "loc")
EVENT_CLASSES = ("heard_or_predicted", "heard", "predicted")
# Hysteresis: an event started by a window with E > event_threshold (A > 0) goes on through the windows
# whose classification score A stays above -0.5: halfway between the decision boundary (0) and the
# margin (-1) under which the hinge loss pushes an absent class's scores. Chosen a priori (no
# timestamps exist to fit it; the training hold-out's absent-class windows exceed -0.65 in 5 % of cases).
EVENT_LOW = -0.5


@dataclass(frozen=True)
class LocalizeOptions:
    """Which classes to report and how scores become boxes and events."""

    labels: tuple[str, ...] = ()  # classes to report; empty: the predicted ones
    boxes: int = 1  # boxes reported per class and frame
    event_threshold: float = 0.0  # E above this marks a window as sounding
    visible_threshold: float = 0.0  # best-box E above this marks a frame as showing the class
    audio_all_classes: bool = False  # audio scores for every class (score TSVs), not just reported ones
    classify: ClassifyOptions = ClassifyOptions()
    box_mode: str = "evidence"  # "evidence": the box of the class's evidence map; "window": the top windows;
    # "erase": the evidence box grown by adversarial erasing (regions found once the earlier ones are hidden)
    erase_rounds: int = ERASE_ROUNDS  # "erase": regions per frame at most
    box_regressor: BoxRegressor | None = None  # moves each chosen box (before snapping); None: no regression
    evidence_weight: str = "A"  # what each window adds to the map: "A" (its positive class score), "E", "loc"
    evidence_fraction: float = CAM_FRACTION  # threshold of the evidence map, a fraction of its range
    snap: bool = True  # snap each box to the object's boundary (cv2.grabCut initialised with the box)
    event_classes: str = "heard_or_predicted"  # whose windows become events: "heard", "predicted", or either
    event_low: float | None = EVENT_LOW  # hysteresis: an event continues while the window's A is above this
    event_fraction: float | None = None  # clip-relative rule instead: windows with A >= this times the best A
    event_median: int = 1  # median filter over this many window decisions (odd; 1 = none)
    # the event rule in full; None: the checkpoint's calibrated one (ModelConfig.event_*) when it has one and
    # the four fields above keep their defaults, else those fields (resolve_event_rule)
    event_rule: EventRule | None = None

    def __post_init__(self) -> None:
        check_finite(event_threshold=self.event_threshold, visible_threshold=self.visible_threshold,
                     evidence_fraction=self.evidence_fraction,
                     **({} if self.event_low is None else {"event_low": self.event_low}),
                     **({} if self.event_fraction is None else {"event_fraction": self.event_fraction}))
        if self.event_classes not in EVENT_CLASSES:
            raise UsageError(f"event classes must be one of {EVENT_CLASSES}, got {self.event_classes!r}")
        if self.event_median < 1 or self.event_median % 2 == 0:
            raise UsageError(f"the event median filter needs an odd size >= 1, got {self.event_median}")
        if self.box_mode not in BOX_MODES:
            raise UsageError(f"box mode must be one of {BOX_MODES}, got {self.box_mode!r}")
        if self.evidence_weight not in EVIDENCE_WEIGHTS:
            raise UsageError(f"evidence weight must be one of {EVIDENCE_WEIGHTS}, got {self.evidence_weight!r}")
        if not 0.0 <= self.evidence_fraction <= 1.0:
            raise UsageError(f"the evidence fraction must lie in [0, 1], got {self.evidence_fraction}")
        if isinstance(self.erase_rounds, bool) or not isinstance(self.erase_rounds, int) or self.erase_rounds < 1:
            raise UsageError(f"erase rounds must be an integer >= 1, got {self.erase_rounds!r}")
        if self.box_mode == "erase" and self.evidence_weight != "A":
            raise UsageError(f"box mode 'erase' rescores the erased frames' windows by their class score A: it "
                             f"needs evidence weight 'A', got {self.evidence_weight!r}")


def window_spans(times: np.ndarray, duration: float) -> np.ndarray:
    """The non-overlapping part of the timeline each audio window stands for. (P, 2) → (P, 2).

    See ``avscene.timing.segment_timestamps`` (the same grid is written to score TSVs).
    """
    times = np.asarray(times, dtype=np.float64).reshape(-1, 2)
    b = segment_timestamps(times[:, 0], times[:, 1], duration)  # (P+1,)
    return np.stack([b[:-1], b[1:]], axis=1)[: len(times)]


def merge_active(active: Sequence[bool], spans: np.ndarray) -> list[tuple[float, float]]:
    """Merge runs of consecutive active spans into ``(onset, offset)`` intervals."""
    out: list[tuple[float, float]] = []
    for on, (s, e) in zip(active, spans):
        if not on or e <= s:
            continue
        if out and abs(out[-1][1] - s) < 1e-6:
            out[-1] = (out[-1][0], float(e))
        else:
            out.append((float(s), float(e)))
    return out


def heat(scores: np.ndarray) -> np.ndarray:
    """Min–max scale to [0, 1]; a constant sequence maps to zeros. (P,) → (P,)."""
    lo, hi = float(np.min(scores)), float(np.max(scores))
    return np.zeros_like(scores) if hi - lo < 1e-12 else (scores - lo) / (hi - lo)


def frame_spans(frame_times: np.ndarray, *, fps: float, duration: float) -> np.ndarray:
    """Each sampled frame stands for its segment ``[k/fps, (k+1)/fps)``, clipped to the clip."""
    k = np.floor(np.asarray(frame_times) * fps)
    return np.stack([k / fps, np.minimum((k + 1) / fps, duration)], axis=1)


def intervals_intersection(a: Sequence[tuple[float, float]],
                           b: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Intervals covered by both lists (each a union of disjoint intervals), sorted."""
    out = [(max(s1, s2), min(e1, e2)) for s1, e1 in a for s2, e2 in b if min(e1, e2) > max(s1, s2)]
    return sorted(out)


def resolve_labels(requested: Sequence[str], predicted: Sequence[str], known: Sequence[str]) -> list[str]:
    bad = [x for x in requested if x not in known]
    if bad:
        raise UsageError(f"unknown label(s) {bad}; the model knows: {', '.join(known)}")
    return list(dict.fromkeys(requested)) if requested else list(predicted)


def localize_from_analysis(path: Path, a: Analysis, loaded: LoadedModel, opts: LocalizeOptions) -> LocalizeResult:
    """Turn one forward pass into the ``localize`` output contract."""
    from avscene.nn.model import event_scores

    cls = result_from_analysis(path, a, loaded, opts.classify)
    names = list(loaded.labels)
    parse = {p.label: p for p in cls.parse}
    present = [*cls.predicted, *(p.label for p in cls.parse if (p.heard or p.seen) and p.label not in cls.predicted)]
    report = resolve_labels(opts.labels, present, names)
    out, duration = a.output, a.info.duration
    visual: dict[str, tuple[BoxDetection, ...]] = {}
    audio: dict[str, tuple[AudioSegment, ...]] = {}
    events: list[Event] = []
    timing: dict[str, Timing] = {}
    sync = {} if out.segment_scores is not None else None
    if out.audio_E is not None and a.audio is not None:
        audio_E, audio_times = a.audio.windows(event_scores(out).numpy())  # (W, C), (W, 2)
        head_A = out.audio_A is not None and out.audio_event is None  # the MIL head's A continues events
        audio_A = a.audio.windows(out.audio_A.numpy())[0] if head_A else audio_E  # (W, C)
    rule = resolve_event_rule(opts, loaded.config)
    if opts.audio_all_classes and out.audio_E is not None and a.audio is not None:
        for c, lab in enumerate(names):
            audio[lab] = _audio_segments(audio_E[:, c], audio_times)
    chosen = report_boxes(path, a, [names.index(lab) for lab in report], loaded, opts) \
        if out.visual_E is not None and a.visual is not None else {}
    for lab in report:
        c = names.index(lab)
        heard: list[tuple[float, float]] = []
        seen: list[tuple[float, float]] = []
        if out.audio_E is not None and a.audio is not None:
            e = audio_E[:, c]  # (W,)
            audio[lab] = _audio_segments(e, audio_times)
            on = class_event_windows(e, audio_A[:, c], opts, heard=parse[lab].heard, predicted=lab in cls.predicted,
                                     rule=rule)
            if on is not None:
                heard = merge_active(on, window_spans(audio_times, duration))
            events.extend(Event(lab, on, off) for on, off in heard)
        if out.visual_E is not None and a.visual is not None:
            visual[lab], seen = _boxes_for_class(a, c, opts, loaded.preprocess.fps, chosen.get(c))
            seen = seen if parse[lab].seen else []
            visual[lab] = boxes_where_seen(visual[lab], seen)
        both = intervals_intersection(heard, seen)
        timing[lab] = Timing(heard=tuple(heard), seen=tuple(seen), overlap=bool(both), both=tuple(both))
        if sync is not None:
            both = (out.audio_segment_scores[:, c] > 0) & (out.visual_segment_scores[:, c] > 0)
            segs = np.arange(len(both), dtype=np.float64)
            spans = np.stack([segs, np.minimum(segs + 1, duration)], axis=1)
            sync[lab] = tuple(merge_active(both.numpy().tolist(), spans))
    events.sort(key=lambda ev: (ev.onset, ev.label))
    status = {lab: class_status(parse[lab], requested=lab in opts.labels) for lab in report}
    frame_times = () if a.visual is None else tuple(float(t) for t in a.visual.times)
    return LocalizeResult(classification=cls, visual=visual, audio=audio, events=tuple(events),
                          timing=timing, sync_segments=sync, status=status, event_threshold=opts.event_threshold,
                          frame_times=frame_times)


def class_status(p: ClassParse, *, requested: bool) -> str:
    """Why a reported class is reported (one of :data:`avscene.results.STATUSES`)."""
    if p.predicted:
        return PREDICTED
    if requested:
        return REQUESTED
    return HEARD_AND_SEEN_ONLY if p.heard and p.seen else HEARD_ONLY if p.heard else SEEN_ONLY


DEGENERATE_SPREAD = 1e-6  # a frame whose window scores differ by less than this share of the largest: all equal


def boxes_where_seen(dets: Sequence[BoxDetection], seen: Sequence[tuple[float, float]]) -> tuple[BoxDetection, ...]:
    """The boxes of the frames inside ``seen`` (frames without evidence have none: :func:`frame_boxes`)."""
    return tuple(d for d in dets if any(s <= d.t < e for s, e in seen))


def informative_frames(E: np.ndarray) -> np.ndarray:
    """Which frames give a class a box: (T, M) its window scores → (T,) bool.

    A frame is degenerate when no window scores above 0 (the visual stream gives the class nothing
    there) or all score the same to float32 precision: its best window would be an arbitrary one
    (the first). No evidence, no box: the one home of that rule (:func:`frame_boxes`).
    """
    top = E.max(axis=1)  # (T,)
    spread = top - E.min(axis=1)  # (T,)
    return (top > 0) & (spread > DEGENERATE_SPREAD * np.abs(E).max(axis=1))


def class_event_windows(E: np.ndarray, A: np.ndarray, opts: LocalizeOptions, *, heard: bool, predicted: bool,
                        rule: EventRule | None = None) -> np.ndarray | None:
    """The sounding windows of one class (:func:`event_windows`), None when it gets no events: it is
    not heard, predicted, or either (``opts.event_classes``). A heard class (any class, with
    ``"predicted"``) has at least its best window."""
    if not {"heard": heard, "predicted": predicted, "heard_or_predicted": heard or predicted}[opts.event_classes]:
        return None
    return event_windows(E, A, opts, fallback=heard or opts.event_classes == "predicted", rule=rule,
                         predicted=predicted if rule is None else rule.relative(predicted=predicted, heard=heard))


def resolve_event_rule(opts: LocalizeOptions, config) -> EventRule | None:
    """The event rule ``localize`` applies: ``opts.event_rule``; else the checkpoint's calibrated one
    (``ModelConfig.event_start`` set) unless ``opts`` asks for another (``event_threshold``, ``event_low``,
    ``event_fraction`` or ``event_median`` off their defaults); None: the rule of those fields
    (:func:`event_windows`)."""
    if opts.event_rule is not None:
        return opts.event_rule
    defaults = (opts.event_threshold == 0.0 and opts.event_low == EVENT_LOW and opts.event_fraction is None
                and opts.event_median == 1)
    if config is None or config.event_start is None or not defaults:
        return None
    return calibrated_rule(config)


def calibrated_rule(config) -> EventRule:
    """The event rule a checkpoint's ``config.json["model"]`` records (``event_start`` set)."""
    return EventRule(start=config.event_start, low=config.event_low, median=config.event_median,
                     fraction=config.event_fraction, centre=config.event_centre, margin=config.event_margin,
                     scope=config.event_scope)


def event_windows(E: np.ndarray, A: np.ndarray, opts: LocalizeOptions, *, fallback: bool,
                  rule: EventRule | None = None, predicted: bool = False) -> np.ndarray:
    """The sounding windows of one class: (W,) ``E`` and classification scores ``A`` → (W,) bool.

    ``rule``: :meth:`avscene.dsp.events.EventRule.active` on ``A`` (its clip-relative part when
    ``predicted``: the class is in the rule's scope), in place of the rule of ``opts`` below. Otherwise: hysteresis
    (:func:`avscene.dsp.events.grow_runs`): an event starts at a window with
    ``E > event_threshold`` and goes on through its neighbours while ``A > event_low`` (``None``: the
    threshold alone). ``event_fraction``: instead, the windows with ``A`` at least that fraction of the
    clip's best ``A`` (none when no ``A`` is positive). Then a median filter of ``event_median``
    decisions. ``fallback``: the best window alone when no window is active (a class reported heard
    has at least one event).
    """
    if rule is not None:
        on = rule.active(A, relative=predicted)
    else:
        if opts.event_fraction is not None:
            best = float(A.max()) if len(A) else 0.0
            on = A >= opts.event_fraction * best if best > 0 else np.zeros(len(A), dtype=bool)
        else:
            seed = E > opts.event_threshold
            on = seed if opts.event_low is None else grow_runs(seed, A > opts.event_low)
        on = median_filter(on, opts.event_median)
    if fallback and len(E) and not on.any():
        on[int(np.argmax(E))] = True
    return on


def _active(e: np.ndarray, threshold: float) -> np.ndarray:
    """Entries of ``e`` (N,) above ``threshold``; the best one alone when none is (N > 0)."""
    on = e > threshold
    if len(e) and not on.any():
        on[int(np.argmax(e))] = True
    return on


def _audio_segments(e: np.ndarray, times: np.ndarray) -> tuple[AudioSegment, ...]:
    return tuple(AudioSegment(float(s), float(t), float(v), float(h)) for (s, t), v, h in zip(times, e, heat(e)))


def frame_boxes(a: Analysis, c: int, opts: LocalizeOptions) -> list[list[tuple[np.ndarray, float]]]:
    """The boxes reported for class ``c`` in each sampled frame, best first: ``[(box (4,), score)]``.

    The one box rule of ``localize`` and ``evaluate``. ``"window"``: the ``opts.boxes`` windows
    ranked highest by ``box_scores`` (``E``, or the OICR branches'), each with its ``E``.
    ``"evidence"`` (and ``"erase"``, which :func:`erase_boxes` grows afterwards): the boxes of the
    ``opts.boxes`` largest regions of the class's evidence map
    (:func:`avscene.proposals.evidence.evidence_boxes`; each window weighted by its positive
    classification score ``max(A, 0)`` (``"A"``, the class evidence a CAM accumulates), its box score
    (``"E"``) or its localisation weight ``softmax(L) = E / A`` (``"loc"``)), scored with the frame's
    best ``E``, then the top windows up to ``opts.boxes``. A frame without evidence for the class (no
    window with ``E`` above 0, or all alike: :func:`informative_frames`) has no box, in ``localize``
    and ``evaluate`` alike. Erasing, regression and snapping need the frames: :func:`report_boxes`.
    """
    from avscene.nn.model import box_scores

    E = a.output.visual_E[..., c].numpy()  # (T, M)
    rank = box_scores(a.output)[..., c].numpy()  # (T, M)
    order = np.argsort(-rank, axis=1, kind="stable")  # (T, M)
    evident = informative_frames(E)  # (T,)
    if opts.box_mode == "window":
        return [[(a.visual.boxes[t, m], float(E[t, m])) for m in order[t, : opts.boxes]] if evident[t] else []
                for t in range(len(E))]
    A = E if a.output.visual_A is None else a.output.visual_A[..., c].numpy()  # (T, M)
    loc = np.divide(E, A, out=np.zeros_like(E), where=np.abs(A) > 1e-12)  # softmax(L), (T, M)
    weight = {"A": np.clip(A, 0, None), "E": rank, "loc": loc}[opts.evidence_weight]
    h, w = a.info.height, a.info.width
    if not (h and w):  # size unknown: the windows' extent
        h, w = (int(math.ceil(float(a.visual.boxes[..., i].max()))) for i in (3, 2))
    out = []
    for t in range(len(E)):
        if not evident[t]:
            out.append([])
            continue
        found = evidence_boxes(a.visual.boxes[t], weight[t], height=h, width=w,
                               fraction=opts.evidence_fraction, k=opts.boxes)
        best = float(E[t].max())
        fill = [(a.visual.boxes[t, m], float(E[t, m])) for m in order[t, : opts.boxes - len(found)]]
        out.append([(b, best) for b in found] + fill)  # the regions, then the top windows up to opts.boxes
    return out


def snap_boxes(path: str | Path, times: np.ndarray, chosen: dict[int, list[list[tuple[np.ndarray, float]]]],
               *, fps: float, offset: float, any_format: bool = False,
               frames: Iterable[tuple[float, np.ndarray]] | None = None) -> dict[int, list[list[tuple[np.ndarray, float]]]]:
    """``chosen`` (class → per frame ``[(box, score)]``, as :func:`frame_boxes` gives) with every box
    snapped to the object's boundary (:func:`avscene.proposals.evidence.snap_box`). On the sampled
    ``frames`` the analysis kept, else decoded again, one at a time."""
    out = {c: [list(f) for f in per] for c, per in chosen.items()}
    for i, frame in sampled_frames(path, times, fps=fps, offset=offset, any_format=any_format, frames=frames):
        for per in out.values():
            per[i] = [(snap_box(frame, box), score) for box, score in per[i]]
    return out


def sampled_frames(path: str | Path, times: np.ndarray, *, fps: float, offset: float, any_format: bool = False,
                   frames: Iterable[tuple[float, np.ndarray]] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(index into ``times``, frame) of each sampled frame: from ``frames`` (what the analysis kept), else
    decoded again, streaming; frames at other instants are skipped."""
    from avscene.io.decode import iter_frames

    index = {round(float(t), 3): i for i, t in enumerate(times)}
    if frames is None:
        frames = iter_frames(path, fps=fps, offset=offset, any_format=any_format)
    for t_sec, frame in frames:
        i = index.get(round(float(t_sec), 3))
        if i is not None:
            yield i, frame


def frame_batches(path: str | Path, a: Analysis, loaded: LoadedModel, opts: LocalizeOptions,
                  frames: Iterable[tuple[float, np.ndarray]] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The analysis's sampled frames, ``EMBED_FRAMES`` at a time: (their indices (N,), the frames
    (N, H, W, 3) uint8); from ``frames`` (what the analysis kept), else decoded again."""
    from avscene.tasks._pipeline import EMBED_FRAMES

    pre = loaded.preprocess
    batch: list[tuple[int, np.ndarray]] = []
    for i, frame in sampled_frames(path, a.visual.times, fps=pre.fps, offset=pre.frame_offset,
                                   any_format=opts.classify.any_format, frames=frames):
        batch.append((i, frame))
        if len(batch) == EMBED_FRAMES:
            yield np.array([i for i, _ in batch]), np.stack([f for _, f in batch])
            batch = []
    if batch:
        yield np.array([i for i, _ in batch]), np.stack([f for _, f in batch])


def erase_boxes(path: str | Path, a: Analysis, chosen: dict[int, list[list[tuple[np.ndarray, float]]]],
                loaded: LoadedModel, opts: LocalizeOptions,
                frames: Iterable[tuple[float, np.ndarray]] | None = None) -> dict[int, list[list[tuple[np.ndarray, float]]]]:
    """``chosen`` (class → per frame ``[(box, score)]``, as :func:`frame_boxes` gives) with each frame's
    first box grown by adversarial erasing (:func:`avscene.proposals.evidence.erasing_boxes`): its
    regions hidden with the colour hide-and-seek training hides cells with (the ImageNet mean), the
    frame's windows scored again by the visual stream (class score ``A``, positive part, as the
    evidence map weighs them) and the next region added, up to ``opts.erase_rounds`` regions. A frame
    without a box keeps none (:func:`frame_batches` gives the frames)."""
    from avscene.nn.inputs import IMAGENET_MEAN

    A = a.output.visual_E if a.output.visual_A is None else a.output.visual_A  # (T, M, C)
    fill = np.round(np.asarray(IMAGENET_MEAN) * 255).astype(np.uint8)  # (3,)
    out = {c: [list(f) for f in per] for c, per in chosen.items()}
    for idx, imgs in frame_batches(path, a, loaded, opts, frames):
        windows = a.visual.boxes[idx]  # (N, M, 4)
        for c, per in out.items():
            need = [k for k, i in enumerate(idx) if per[i]]
            if not need:
                continue
            weights = np.clip(A[idx[need], :, c].numpy(), 0, None)  # (N', M)

            def score(erased: np.ndarray, which: np.ndarray, c: int = c, need: list[int] = need) -> np.ndarray:
                rows = np.asarray(need)[which]
                z = visual_features(loaded, erased, windows[rows])  # (n, M, d)
                return np.clip(_classify(loaded, z)[..., c], 0, None)  # (n, M)

            grown = erasing_boxes(imgs[need], windows[need], weights, score, fill=fill,
                                  fraction=opts.evidence_fraction, rounds=opts.erase_rounds)
            for k, g in zip(need, grown):
                if len(g):
                    per[idx[k]][0] = (g[0], per[idx[k]][0][1])
    return out


def regress_boxes(path: str | Path, a: Analysis, chosen: dict[int, list[list[tuple[np.ndarray, float]]]],
                  loaded: LoadedModel, opts: LocalizeOptions,
                  frames: Iterable[tuple[float, np.ndarray]] | None = None) -> dict[int, list[list[tuple[np.ndarray, float]]]]:
    """``chosen`` with each frame's first box moved by the class's box regressor (``opts.box_regressor``,
    :class:`avscene.proposals.box_regression.BoxRegressor`) from the box's RoI feature, clipped to the
    frame; all classes' boxes of a frame are embedded together (:func:`frame_batches` gives the frames)."""
    reg = opts.box_regressor
    check_box_regressor(reg, loaded)
    out = {c: [list(f) for f in per] for c, per in chosen.items()}
    classes = [c for c in out if reg.trained[c]]
    if not classes:
        return out
    for idx, imgs in frame_batches(path, a, loaded, opts, frames):
        H, W = imgs.shape[1:3]
        whole = np.array([0.0, 0.0, W, H])
        boxes = np.stack([[np.asarray(out[c][i][0][0], np.float64) if out[c][i] else whole for c in classes]
                          for i in idx])  # (N, K, 4)
        z = visual_features(loaded, imgs, boxes)  # (N, K, d)
        for k, c in enumerate(classes):
            moved = reg.refine(boxes[:, k], z[:, k], c)  # (N, 4)
            moved[:, [0, 2]] = np.clip(moved[:, [0, 2]], 0, W)
            moved[:, [1, 3]] = np.clip(moved[:, [1, 3]], 0, H)
            for n, i in enumerate(idx):
                if out[c][i] and moved[n, 2] > moved[n, 0] and moved[n, 3] > moved[n, 1]:
                    out[c][i][0] = (moved[n], out[c][i][0][1])
    return out


def check_box_regressor(reg: BoxRegressor, loaded: LoadedModel) -> None:
    """A box regressor fits the model: the same classes, its feature size."""
    if tuple(reg.labels) != tuple(loaded.labels):
        raise UsageError(f"the box regressor was trained for classes {list(reg.labels)}, the model has "
                         f"{list(loaded.labels)}")
    if reg.feature_dim != loaded.config.embed_dim:
        raise UsageError(f"the box regressor takes {reg.feature_dim}-d features, the model gives "
                         f"{loaded.config.embed_dim}-d ones")


def visual_features(loaded: LoadedModel, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The visual RoI features of ``boxes`` (N, K, 4) on ``frames`` (N, H, W, 3) uint8: (N, K, d);
    each box's feature depends only on its frame."""
    import torch

    from avscene.nn.inputs import single_input

    model = loaded.model
    with torch.inference_mode():
        x, _ = single_input(patches=None, patch_times=None, frames=frames, frame_times=np.zeros(len(frames)),
                            boxes=boxes, image_size=loaded.preprocess.image_size,
                            device=next(model.parameters()).device)
        return model.forward_visual_features(x.images, x.boxes)[0].float().cpu().numpy()


def _classify(loaded: LoadedModel, z: np.ndarray) -> np.ndarray:
    """The visual classification stream ``A`` of features (..., d): (..., C)."""
    import torch

    model = loaded.model
    with torch.inference_mode():
        return model.visual_head.classify(torch.from_numpy(z).to(next(model.parameters()).device)).float().cpu().numpy()


def report_boxes(path: str | Path, a: Analysis, classes: Sequence[int], loaded: LoadedModel,
                 opts: LocalizeOptions) -> dict[int, list[list[tuple[np.ndarray, float]]]]:
    """The boxes ``localize`` reports and ``evaluate`` scores for ``classes``: per class and sampled
    frame ``[(box, score)]``, :func:`frame_boxes`, grown by erasing (``box_mode "erase"``,
    :func:`erase_boxes`), moved by a self-trained box regressor (``opts.box_regressor``,
    :func:`regress_boxes`) and snapped (``opts.snap``, :func:`snap_boxes`), on the frames the analysis
    kept (``Analysis.frames``), else decoded again."""
    chosen = {c: frame_boxes(a, c, opts) for c in dict.fromkeys(classes)}
    if not chosen:
        return chosen
    if opts.box_mode == "erase":
        chosen = erase_boxes(path, a, chosen, loaded, opts, frames=a.frames)
    if opts.box_regressor is not None:
        chosen = regress_boxes(path, a, chosen, loaded, opts, frames=a.frames)
    if opts.snap:
        chosen = snap_boxes(path, a.visual.times, chosen, fps=loaded.preprocess.fps,
                            offset=loaded.preprocess.frame_offset, any_format=opts.classify.any_format,
                            frames=a.frames)
    return chosen


def _boxes_for_class(a: Analysis, c: int, opts: LocalizeOptions, fps: float, chosen=None):
    """Boxes per frame (``chosen``, else :func:`frame_boxes`) and the seen intervals (by the MIL scores
    ``E``) of class ``c``."""
    dets = []
    for t_sec, per in zip(a.visual.times, chosen if chosen is not None else frame_boxes(a, c, opts)):
        for r, (box, score) in enumerate(per):
            dets.append(BoxDetection(float(t_sec), tuple(float(v) for v in box), score,
                                     rank=r + 1 if opts.boxes > 1 else 0))
    E = a.output.visual_E[..., c].numpy()  # (T, M)
    visible = _active(E.max(axis=1), opts.visible_threshold)  # (T,)
    seen = merge_active(visible.tolist(), frame_spans(a.visual.times, fps=fps, duration=a.info.duration))
    return tuple(dets), seen


def needs_frames(opts: LocalizeOptions) -> bool:
    """Whether the boxes need the sampled frames (snapping, erasing, regression)."""
    return opts.snap or opts.box_mode == "erase" or opts.box_regressor is not None


def localize_file(path: str | Path, loaded: LoadedModel, opts: LocalizeOptions | None = None) -> LocalizeResult:
    """Localize one file; raises an ``AvsceneError`` if it cannot be processed."""
    opts = opts or LocalizeOptions()
    resolve_labels(opts.labels, (), list(loaded.labels))  # fail early on an unknown --label
    if opts.box_regressor is not None:
        check_box_regressor(opts.box_regressor, loaded)
    a = analyse(path, loaded, edge_model=opts.classify.edge_model, any_format=opts.classify.any_format,
                keep_frames=needs_frames(opts))  # the frames snapping and erasing need, without decoding them again
    return localize_from_analysis(Path(path), a, loaded, opts)

