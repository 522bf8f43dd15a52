"""``evaluate``: a model against a manifest with ground truth (the paper's measurements).

* classification: micro/macro F1, precision, recall, class-wise F1, subset accuracy
  and (single-label sets) top-1 accuracy, from the video-level predictions;
* sound event detection: DCASE 2017 segment-based F1 and error rate on 1-s
  segments, overall and per class, from the events ``localize`` reports (audio stream);
* visual localisation: pointing game, CorLoc@0.5, median IoU and median ratio of box area to
  object area of the box ``localize`` reports first for each ground-truth class (whether
  predicted or not), on the sampled frames where that object is visible; overall and per class;
* audio-visual video parsing (the LLP protocol, :mod:`avscene.evaluation.metrics.avvp`):
  segment- and event-level F1 of audio, visual and audio-visual events, Type@AV and
  Event@AV, from ``localize``'s ``timing`` (``heard`` / ``seen`` of the predicted
  classes) against the ground truth's per-event ``audio`` and ``visual.interval``.
* noise stress (on request): false-positive rates and micro-F1 with noise families added,
  and false alarms on pure noise (:mod:`avscene.evaluation.noise_stress`).

Ground truth is ``ground_truth.jsonl`` beside the manifest (avbench format).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avscene.errors import UsageError
from avscene.tasks._pipeline import analyse, input_threshold
from avscene.tasks.classify import ClassifyOptions
from avscene.tasks.localize import (
    LocalizeOptions, check_box_regressor, localize_from_analysis, needs_frames, report_boxes,
)
from avscene.train.data import read_manifest, targets
from avscene.evaluation.metrics.classification import ClassificationMetrics, classification_metrics, top1_accuracy
from avscene.evaluation.metrics.localization import LocalizationScores
from avscene.evaluation.metrics.avvp import AVVPMetrics, ClipParse, avvp_metrics, clip_parse
from avscene.evaluation.metrics.sed import SegmentMetrics, segment_activity, segment_based_metrics
from avscene.evaluation.noise_stress import NoiseCondition, NoiseStress, NoiseStressReport

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel

MODES = ("sync", "async", "offscreen", "silent")


@dataclass(frozen=True)
class EvaluationReport:
    """Scores of one model on one manifest. JSON: see ``to_json``."""

    model: dict[str, Any]
    manifest: str
    mode: str | None
    n_clips: int
    classification: ClassificationMetrics
    top1_accuracy: float | None
    sed: SegmentMetrics | None
    localization: LocalizationScores | None
    failed: tuple[tuple[str, str], ...] = ()
    # event mode -> {"recall": fraction of its events whose class is detected in the clip, "n": events}
    recall_by_mode: dict[str, dict[str, float | int]] | None = None
    avvp: AVVPMetrics | None = None  # LLP protocol on the clips with ground truth
    # as recall_by_mode, an event found when its class is heard or seen (the per-modality decisions)
    recall_by_mode_parse: dict[str, dict[str, float | int]] | None = None
    noise_stress: NoiseStressReport | None = None  # with --add-noise

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "manifest": self.manifest,
            "mode": self.mode,
            "n_clips": self.n_clips,
            "classification": self.classification.to_json(),
            "top1_accuracy": self.top1_accuracy,
            "sed": None if self.sed is None else self.sed.to_json(),
            "localization": None if self.localization is None else self.localization.to_json(),
            "recall_by_mode": self.recall_by_mode,
            "avvp": None if self.avvp is None else self.avvp.to_json(),
            "recall_by_mode_parse": self.recall_by_mode_parse,
            "failed": [{"file": f, "error": e} for f, e in self.failed],
            "noise_stress": None if self.noise_stress is None else self.noise_stress.to_json(),
        }


def read_ground_truth(path: Path) -> dict[str, dict]:
    """``clip id → record`` from an avbench ``ground_truth.jsonl``."""
    if not path.is_file():
        return {}
    with path.open() as f:
        return {str(rec["clip"]): rec for rec in map(json.loads, filter(str.strip, f))}


def recall_by_mode(events: list[tuple[str, str, set[str]]]) -> dict[str, dict[str, float | int]]:
    """Recall per event mode from ``(mode, class, classes detected in its clip)`` per ground-truth event.

    An event counts as found when its class is among the clip's detected classes (what
    ``classify`` answers), whatever its mode: a ``silent`` event is found by vision alone.
    Modes come out in avbench's order, then any other in sorted order.
    """
    hits: dict[str, list[bool]] = {}
    for mode, cls, detected in events:
        hits.setdefault(mode, []).append(cls in detected)
    order = [m for m in MODES if m in hits] + sorted(set(hits) - set(MODES))
    return {m: {"recall": float(np.mean(hits[m])), "n": len(hits[m])} for m in order}


def ground_truth_parse(rec: dict, names: list[str], *, duration: float) -> ClipParse:
    """Heard / seen rolls of an avbench record: each event's ``audio`` and ``visual.interval``."""
    heard: dict[int, list] = {}
    seen: dict[int, list] = {}
    for ev in rec["events"]:
        c = names.index(ev["class"])
        if ev.get("audio"):
            heard.setdefault(c, []).append(ev["audio"])
        if ev.get("visual"):
            seen.setdefault(c, []).append(ev["visual"]["interval"])
    return clip_parse(heard, seen, num_classes=len(names), duration=duration)


def predicted_parse(timing: dict, names: list[str], *, duration: float) -> ClipParse:
    """Heard / seen rolls of ``localize``'s ``timing`` (label → ``Timing``)."""
    heard = {names.index(lab): t.heard for lab, t in timing.items()}
    seen = {names.index(lab): t.seen for lab, t in timing.items()}
    return clip_parse(heard, seen, num_classes=len(names), duration=duration)


def _clip_id(p: Path) -> str:
    return p.stem


def evaluate(
    loaded: LoadedModel,
    manifest: str | Path,
    *,
    ground_truth: str | Path | None = None,
    mode: str | None = None,
    threshold: float | None = None,
    audio_threshold: float | None = None,
    visual_threshold: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    noise: Sequence[NoiseCondition] = (),
    pure_noise_clips: int | None = None,
    localize: LocalizeOptions | None = None,
) -> EvaluationReport:
    """Evaluate ``loaded`` on every clip of ``manifest`` (restricted to ``mode`` if given).

    ``threshold`` overrides the model's decision threshold (e.g. 0, the paper's, for a
    checkpoint whose threshold was calibrated); ``audio_threshold`` / ``visual_threshold``
    the heard / seen ones. ``noise``: the noise-stress conditions
    (:func:`avscene.evaluation.noise_stress.parse_noise_specs`), each clip then also analysed with
    each one, and with pure noise of each family for the first ``pure_noise_clips`` clips
    (None: all; 0: none). ``localize``: how boxes and events are chosen (default: ``localize``'s
    defaults; its classify thresholds are replaced by the ones above); the boxes scored are those
    ``localize`` reports first (:func:`avscene.tasks.localize.report_boxes`).
    """
    if mode is not None and mode not in MODES:
        raise UsageError(f"--mode must be one of {MODES}")
    if pure_noise_clips is not None and not noise:
        raise UsageError("--pure-noise-clips scores the noise families of --add-noise: give --add-noise too")
    names = list(loaded.labels)
    if localize is not None and localize.box_regressor is not None:
        check_box_regressor(localize.box_regressor, loaded)
    examples = read_manifest(manifest, class_names=names)
    gt = read_ground_truth(Path(ground_truth) if ground_truth else Path(manifest).parent / "ground_truth.jsonl")
    if mode is not None:
        if not gt:
            raise UsageError("--mode needs ground_truth.jsonl beside the manifest (or --ground-truth)")
        examples = [e for e in examples
                    if any(ev["mode"] == mode for ev in gt.get(_clip_id(e.path), {}).get("events", []))]
        if not examples:
            raise UsageError(f"no clip of mode {mode!r} in {manifest}")
    override, threshold = threshold, loaded.config.decision_threshold if threshold is None else threshold
    loc_opts = dataclasses.replace(localize or LocalizeOptions(), classify=ClassifyOptions(
        threshold=override, audio_threshold=audio_threshold, visual_threshold=visual_threshold))
    timing_opts = dataclasses.replace(loc_opts, snap=False)  # its boxes are not scored: the timing needs no snapping
    scores, keep, failed = [], [], []
    ref_rolls, est_rolls = [], []
    gt_parse: list[ClipParse] = []
    est_parse: list[ClipParse] = []
    mode_events: list[tuple[str, str, set[str]]] = []
    parse_events: list[tuple[str, str, set[str]]] = []
    loc = LocalizationScores()
    stress = NoiseStress(tuple(noise), tuple(names), override, pure_noise_clips) if noise else None
    thresholds = []  # per clip: the decision threshold of its streams (tasks._pipeline.input_threshold)
    for i, ex in enumerate(examples):
        try:
            if stress is None:
                a = analyse(ex.path, loaded, keep_frames=needs_frames(loc_opts))
            else:  # the clean analysis, and the noisy versions' predictions kept by ``stress``
                a = stress.analyse(ex.path, _clip_id(ex.path), loaded)
        except Exception as e:  # noqa: BLE001 - reported in the evaluation, not fatal
            failed.append((str(ex.path), str(e)))
            continue
        scores.append(a.output.scores.numpy())
        thresholds.append(input_threshold(a, loaded, override))
        keep.append(ex)
        rec = gt.get(_clip_id(ex.path))
        if rec is not None:
            detected = {names[c] for c in np.flatnonzero(scores[-1] > thresholds[-1])}
            mode_events += [(ev["mode"], ev["class"], detected) for ev in rec["events"]]
            res = localize_from_analysis(ex.path, a, loaded, timing_opts)
            parsed = {p.label for p in res.classification.parse if p.heard or p.seen}
            parse_events += [(ev["mode"], ev["class"], parsed) for ev in rec["events"]]
            duration = float(rec.get("duration", a.info.duration))
            ref = [(ev["audio"][0], ev["audio"][1], ev["class"]) for ev in rec["events"] if ev["audio"]]
            est = [(e.onset, min(e.offset, duration), e.label) for e in res.events]
            if a.output.audio_E is not None:
                ref_rolls.append(segment_activity(ref, class_names=names, duration=duration))
                est_rolls.append(segment_activity(est, class_names=names, duration=duration))
                if stress is not None:  # the same events on the clip's noisy versions
                    stress.add_events(ex.path, loaded, timing_opts, ref_rolls[-1],
                                      ground_truth_parse(rec, names, duration=duration), duration=duration,
                                      to_parse=predicted_parse)
            score_boxes(ex.path, a, rec, names, loc, loc_opts, loaded)
            gt_parse.append(ground_truth_parse(rec, names, duration=duration))
            est_parse.append(predicted_parse(res.timing, names, duration=duration))
        if progress:
            progress(i + 1, len(examples))
    if not keep:
        raise UsageError(f"no clip of {manifest} could be processed")
    s = np.stack(scores)  # (N, C)
    decided = s > np.array(thresholds)[:, None]  # (N, C)
    y = targets(keep, names) > 0
    single = bool((y.sum(axis=1) == 1).all())
    return EvaluationReport(
        model={"id": loaded.model_id, "revision": loaded.revision, "variant": loaded.config.variant,
               "threshold": threshold},
        manifest=str(manifest),
        mode=mode,
        n_clips=len(keep),
        classification=classification_metrics(y, decided, names),
        top1_accuracy=top1_accuracy(s, y) if single else None,
        sed=segment_based_metrics(ref_rolls, est_rolls, class_names=names) if ref_rolls else None,
        localization=loc if loc.n else None,
        failed=tuple(failed),
        recall_by_mode=recall_by_mode(mode_events) if mode_events else None,
        avvp=avvp_metrics(est_parse, gt_parse) if gt_parse else None,
        recall_by_mode_parse=recall_by_mode(parse_events) if parse_events else None,
        noise_stress=None if stress is None else stress.report(y, decided),
    )


def score_boxes(path: Path, a, rec: dict, names: list[str], loc: LocalizationScores, opts: LocalizeOptions,
                 loaded: LoadedModel) -> None:
    """Pointing game / CorLoc / IoU of the box ``localize`` reports first (:func:`report_boxes`) for each GT
    class at each sampled frame where it is visible."""
    if a.output.visual_E is None or a.visual is None:
        return
    shown = [ev for ev in rec["events"] if ev.get("visual")]
    chosen = report_boxes(path, a, [names.index(ev["class"]) for ev in shown], loaded, opts)
    for ev in shown:
        c = names.index(ev["class"])
        gt_frames = {round(fr["t"], 3): fr["box"] for fr in ev["visual"]["frames"]}
        for t, t_sec in enumerate(a.visual.times):
            box = gt_frames.get(round(float(t_sec), 3))
            if box is None:
                continue
            best = chosen[c][t]
            loc.add(best[0][0] if best else None, np.asarray(box, dtype=np.float64), ev["class"])
