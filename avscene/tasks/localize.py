"""``localize``: where each class is visible and when it is heard.

Everything comes from the localisation-weighted proposal scores of the
two-stream network, ``E = A ⊙ softmax(B)`` (per modality):

* visual: per class and sampled frame, the boxes with the highest ``E`` (a model with
  OICR refinement branches ranks them by the branches' probabilities instead, ``visual_R``);
* audio: per class, ``E`` of every 0.96-s window, and the same min–max scaled to
  ``[0, 1]`` (``heat``);
* events: windows whose ``E`` exceeds ``event_threshold`` (0, as in the paper:
  the sign of ``E`` is the sign of the classification stream; a model with an event head
  scores the windows, and ``audio``, by its logits instead: above 0 is probability 1/2), where each window
  stands for the central 0.48 s it shares with no neighbour, merged when adjacent;
* timing, the per-second parse: the intervals during which a class is heard (its
  events) and seen (frames whose best box has ``E`` above ``visible_threshold``,
  each frame standing for its 1-s segment), both (their intersection), and
  whether they overlap. The video-level per-modality decisions gate it
  (``ClassParse.heard`` / ``.seen``, thresholds calibrated on the training
  hold-out): a class not heard has no audio event, and a heard class has at least
  one (its best window, when no window's ``E`` clears ``event_threshold``);
  likewise for seen and frames.

The classes reported are the ``--label`` ones, else the predicted ones followed by
any other class that is heard or seen; ``status`` says which of these each one is
(:data:`avscene.results.STATUSES`), so that a class only one modality reports is
never shown as a prediction. A class has a box only in the frames where it is seen,
and none where its visual evidence is degenerate (no window scores above 0, or all
score the same: the best window would be an arbitrary one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avscene.errors import UsageError
from avscene.timing import segment_timestamps
from avscene.results import (
    HEARD_AND_SEEN_ONLY, HEARD_ONLY, PREDICTED, REQUESTED, SEEN_ONLY, AudioSegment, BoxDetection, ClassParse, Event,
    LocalizeResult, Timing,
)
from avscene.tasks._pipeline import Analysis, analyse, check_finite
from avscene.tasks.classify import ClassifyOptions, result_from_analysis

if TYPE_CHECKING:
    from avscene.hub import LoadedModel


@dataclass(frozen=True)
class LocalizeOptions:
    """Which classes to report and how scores become boxes and events."""

    labels: tuple[str, ...] = ()  # classes to report; empty: the predicted ones
    boxes: int = 1  # boxes reported per class and frame
    event_threshold: float = 0.0  # E above this marks a window as sounding
    visible_threshold: float = 0.0  # best-box E above this marks a frame as showing the class
    audio_all_classes: bool = False  # audio scores for every class (score TSVs), not just reported ones
    classify: ClassifyOptions = ClassifyOptions()

    def __post_init__(self) -> None:
        check_finite(event_threshold=self.event_threshold, visible_threshold=self.visible_threshold)


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
    from avscene.nn.model import box_scores, event_scores

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
    if opts.audio_all_classes and out.audio_E is not None and a.audio is not None:
        for c, lab in enumerate(names):
            audio[lab] = _audio_segments(audio_E[:, c], audio_times)
    for lab in report:
        c = names.index(lab)
        heard: list[tuple[float, float]] = []
        seen: list[tuple[float, float]] = []
        if out.audio_E is not None and a.audio is not None:
            e = audio_E[:, c]  # (W,)
            audio[lab] = _audio_segments(e, audio_times)
            if parse[lab].heard:
                heard = merge_active(_active(e, opts.event_threshold), window_spans(audio_times, duration))
            events.extend(Event(lab, on, off) for on, off in heard)
        if out.visual_E is not None and a.visual is not None:
            visual[lab], seen = _boxes_for_class(out.visual_E[..., c].numpy(), box_scores(out)[..., c].numpy(), a,
                                                 opts, loaded.preprocess.fps)
            seen = seen if parse[lab].seen else []
            visual[lab] = boxes_where_seen(visual[lab], seen, out.visual_E[..., c].numpy(), a.visual.times)
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


def boxes_where_seen(dets: Sequence[BoxDetection], seen: Sequence[tuple[float, float]], E: np.ndarray,
                     times: np.ndarray) -> tuple[BoxDetection, ...]:
    """The boxes of the frames inside ``seen`` whose visual evidence is not degenerate.

    E: (T, M) the class's window scores at the sampled ``times`` (T,). A frame is degenerate when
    no window scores above 0 (the visual stream gives the class nothing there) or all score the
    same to float32 precision: its best window would be an arbitrary one (the first).
    """
    top = E.max(axis=1)  # (T,)
    spread = top - E.min(axis=1)  # (T,)
    informative = (top > 0) & (spread > DEGENERATE_SPREAD * np.abs(E).max(axis=1))  # (T,)
    ok = {round(float(t), 6) for t, keep in zip(times, informative) if keep}
    return tuple(d for d in dets if round(d.t, 6) in ok and any(s <= d.t < e for s, e in seen))


def _active(e: np.ndarray, threshold: float) -> np.ndarray:
    """Entries of ``e`` (N,) above ``threshold``; the best one alone when none is (N > 0)."""
    on = e > threshold
    if len(e) and not on.any():
        on[int(np.argmax(e))] = True
    return on


def _audio_segments(e: np.ndarray, times: np.ndarray) -> tuple[AudioSegment, ...]:
    return tuple(AudioSegment(float(s), float(t), float(v), float(h)) for (s, t), v, h in zip(times, e, heat(e)))


def _boxes_for_class(E: np.ndarray, rank: np.ndarray, a: Analysis, opts: LocalizeOptions, fps: float):
    """Top boxes per frame (by ``rank``) and the seen intervals (by the MIL scores ``E``) of one class.

    E, rank: (T, M); ``rank`` is ``E`` itself unless the model refines its boxes (OICR).
    """
    order = np.argsort(-rank, axis=1, kind="stable")[:, : opts.boxes]  # (T, k)
    dets = []
    for t, t_sec in enumerate(a.visual.times):
        for r, m in enumerate(order[t]):
            box = tuple(float(v) for v in a.visual.boxes[t, m])
            dets.append(BoxDetection(float(t_sec), box, float(E[t, m]), rank=r + 1 if opts.boxes > 1 else 0))
    visible = _active(E.max(axis=1), opts.visible_threshold)  # (T,)
    seen = merge_active(visible.tolist(), frame_spans(a.visual.times, fps=fps, duration=a.info.duration))
    return tuple(dets), seen


def localize_file(path: str | Path, loaded: LoadedModel, opts: LocalizeOptions | None = None) -> LocalizeResult:
    """Localize one file; raises an ``AvsceneError`` if it cannot be processed."""
    opts = opts or LocalizeOptions()
    resolve_labels(opts.labels, (), list(loaded.labels))  # fail early on an unknown --label
    a = analyse(path, loaded, edge_model=opts.classify.edge_model, any_format=opts.classify.any_format)
    return localize_from_analysis(Path(path), a, loaded, opts)

