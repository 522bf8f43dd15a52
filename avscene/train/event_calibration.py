"""Calibrate a checkpoint's sound-event rule on temporal splices of its training hold-out.

The training clips carry video-level labels only: no timestamps. Joining two hold-out clips with
disjoint labels in time (``A`` then ``B``) gives a clip where every class of ``A`` is known to be
present in the first part and absent from the second, and the other way round; the splice point
is ours, not an annotation, so this is still weak supervision. On these splices (and, to make the
choice hold on recordings unlike the training ones, on copies whose audio went through the training
augmentation, and through a stronger pitch / EQ / gain change), :func:`best_event_rule` picks the
event rule (:class:`avscene.dsp.events.EventRule`: start / continue thresholds, median filter,
clip-centred scores, clip-relative fraction and margin for predicted classes) by one of three
criteria (:data:`CRITERIA`), and :func:`calibrate_events` records it in ``config.json["model"]``
(``event_*``), which ``localize`` and ``evaluate`` then apply
(:func:`avscene.tasks.localize.resolve_event_rule`). Nothing of ``val`` / ``val_shift`` is used.

A class of a clip sounds in part of that clip only (avbench: 2 to 8 s of 10), so the parts' labels
over-state the reference inside the part (the ``segment`` criterion rewards flooding it); what they
state exactly is the absence in the other part (``part``); ``consistency`` takes the events of
``localize``'s own rule on the clean splice as the reference for its perturbed versions.
"""
from __future__ import annotations

import dataclasses
import itertools
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from avscene.dsp.events import EventRule
from avscene.errors import UsageError
from avscene.train.data import Example

SPLICE_FPS = 8.0  # frames per second of the spliced video (avbench's rate)


@dataclass(frozen=True)
class Splice:
    """Two clips joined in time: ``first`` over ``[0, point)``, ``second`` over ``[point, duration)``."""

    first: str
    second: str
    first_labels: tuple[str, ...]
    second_labels: tuple[str, ...]
    point: float  # seconds: where the second clip starts
    duration: float  # seconds
    perturb: int | None = None  # seed of the audio perturbation; None: none
    variant: str = "clean"  # which perturbation (SPLICE_VARIANTS)

    def reference(self) -> list[tuple[float, float, str]]:
        """The parts' labels as events ``(onset, offset, class)``: each class over its whole part."""
        return ([(0.0, self.point, lab) for lab in self.first_labels]
                + [(self.point, self.duration, lab) for lab in self.second_labels])

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "first_labels": list(self.first_labels), "second_labels": list(self.second_labels)}


def pair_clips(examples: Sequence[Example], *, seed: int = 0) -> list[tuple[Example, Example]]:
    """Each clip once as the first part, with a clip of disjoint labels drawn at random as the second
    (clips without such a partner are left out). Deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    pairs = []
    for ex in examples:
        partners = [o for o in examples if o is not ex and o.labels and not set(o.labels) & set(ex.labels)]
        if ex.labels and partners:
            pairs.append((ex, partners[int(rng.integers(len(partners)))]))
    return pairs


def build_splice(first: Example, second: Example, out: str | Path, *, sample_rate: int,
                 perturb: int | None = None, augment: Any = None) -> Splice:
    """Write ``first`` then ``second`` (video and audio) to ``out`` (MP4: H.264, AAC) and describe it.

    Each clip is decoded at :data:`SPLICE_FPS` and its audio cut or padded to its frames' duration, so
    both streams change clip at ``point``. ``perturb``: the audio of each part goes through
    ``augment`` (``train.augment.AugmentOptions``) with this seed, its length kept.
    """
    from avscene.io.decode import decode
    from avscene.train.augment import augment_audio

    parts = []
    for k, ex in enumerate((first, second)):
        clip = decode(ex.path, fps=SPLICE_FPS, offset=0.0, sample_rate=sample_rate)
        if clip.frames is None or clip.audio is None:
            raise UsageError(f"{ex.path}: a splice needs video and audio")
        n = int(round(len(clip.frames) / SPLICE_FPS * sample_rate))
        audio = clip.audio
        if perturb is not None:
            audio = augment_audio(audio, np.random.default_rng([perturb, k]), augment, sr=sample_rate)
        parts.append((clip.frames, _fit(audio, n)))
    shape = parts[0][0].shape[1:]
    if parts[1][0].shape[1:] != shape:
        raise UsageError(f"cannot splice frames of {parts[0][0].shape[1:]} and {parts[1][0].shape[1:]}")
    write_clip(out, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
               fps=SPLICE_FPS, sample_rate=sample_rate)
    point = len(parts[0][0]) / SPLICE_FPS
    return Splice(first=str(first.path), second=str(second.path), first_labels=tuple(first.labels),
                  second_labels=tuple(second.labels), point=point,
                  duration=point + len(parts[1][0]) / SPLICE_FPS, perturb=perturb)


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    """(N,) → (n,): cut, or padded with silence."""
    return audio[:n] if len(audio) >= n else np.pad(audio, (0, n - len(audio)))


def write_clip(path: str | Path, frames: np.ndarray, audio: np.ndarray, *, fps: float, sample_rate: int) -> None:
    """Frames (T, H, W, 3) uint8 and mono audio (N,) float32 to an MP4 (H.264 yuv420p, AAC)."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        h, w = frames.shape[1:3]
        video.width, video.height, video.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        sound = container.add_stream("aac", rate=sample_rate, layout="mono")
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[: h - h % 2, : w - w % 2]), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        size = sound.codec_context.frame_size or 1024
        resampler = av.AudioResampler(format=sound.codec_context.format, layout="mono", rate=sample_rate,
                                      frame_size=size)
        frame = av.AudioFrame.from_ndarray(np.asarray(audio, dtype=np.float32).reshape(1, -1), format="flt",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, 0, Fraction(1, sample_rate)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(sound.encode(piece))
        container.mux(sound.encode(None))


@dataclass(frozen=True)
class ClipEventScores:
    """What the event rule reads of one analysed clip, and the clip's reference events."""

    E: np.ndarray  # (W, C) the windows' event scores (model.event_scores)
    A: np.ndarray  # (W, C) their classification scores (what the hysteresis continues on)
    spans: np.ndarray  # (W, 2) seconds each window stands for
    heard: np.ndarray  # (C,) bool: the calibrated heard decision
    predicted: np.ndarray  # (C,) bool: the fused decision
    duration: float
    reference: tuple[tuple[float, float, str], ...]


def clip_event_scores(path: str | Path, loaded, reference: Sequence[tuple[float, float, str]] = (),
                      duration: float | None = None, analysis=None) -> ClipEventScores:
    """Analyse ``path`` (or take its ``analysis``) and keep what :func:`clip_events` needs."""
    from avscene.nn.model import event_scores
    from avscene.tasks._pipeline import analyse
    from avscene.tasks.classify import ClassifyOptions, result_from_analysis
    from avscene.tasks.localize import window_spans

    a = analysis if analysis is not None else analyse(path, loaded)
    out = a.output
    if out.audio_E is None or a.audio is None:
        raise UsageError(f"{path}: the model gives no audio window scores: no events to calibrate")
    E, times = a.audio.windows(event_scores(out).numpy())  # (W, C), (W, 2)
    head_A = out.audio_A is not None and out.audio_event is None
    A = a.audio.windows(out.audio_A.numpy())[0] if head_A else E
    cls = result_from_analysis(Path(path), a, loaded, ClassifyOptions())
    names = list(loaded.labels)
    heard = np.array([p.heard for p in sorted(cls.parse, key=lambda p: names.index(p.label))])
    predicted = np.array([lab in cls.predicted for lab in names])
    duration = float(a.info.duration if duration is None else duration)
    return ClipEventScores(E=E, A=A, spans=window_spans(times, duration), heard=heard, predicted=predicted,
                           duration=duration, reference=tuple(reference))


def clip_events(s: ClipEventScores, rule: EventRule | None, names: Sequence[str], opts=None
                ) -> list[tuple[float, float, str]]:
    """The events ``localize`` reports for the clip under ``rule`` (None: ``opts``' own rule):
    :func:`avscene.tasks.localize.class_event_windows` per class."""
    from avscene.tasks.localize import LocalizeOptions, class_event_windows, merge_active

    opts = opts or LocalizeOptions()
    events = []
    for c, lab in enumerate(names):
        on = class_event_windows(s.E[:, c], s.A[:, c], opts, heard=bool(s.heard[c]), predicted=bool(s.predicted[c]),
                                 rule=rule)
        if on is not None:
            events += [(a, min(b, s.duration), lab) for a, b in merge_active(on, s.spans)]
    return events


def rule_metrics(scores: Sequence[ClipEventScores], rule: EventRule | None, names: Sequence[str], opts=None, *,
                 refs: Sequence[np.ndarray] | None = None):
    """DCASE segment-based metrics of ``rule`` on the clips (``evaluation.metrics.sed.SegmentMetrics``);
    ``refs``: the clips' reference rolls, when already computed (:func:`reference_rolls`)."""
    from avscene.evaluation.metrics.sed import segment_activity, segment_based_metrics

    ref = reference_rolls(scores, names) if refs is None else refs
    est = [segment_activity(clip_events(s, rule, names, opts), class_names=names, duration=s.duration)
           for s in scores]
    return segment_based_metrics(ref, est, class_names=names)


def reference_rolls(scores: Sequence[ClipEventScores], names: Sequence[str]) -> list[np.ndarray]:
    """Each clip's reference as a 1-s segment roll (S, C)."""
    from avscene.evaluation.metrics.sed import segment_activity

    return [segment_activity(s.reference, class_names=names, duration=s.duration) for s in scores]


# The rules tried: start on A (or A minus the clip's median), continue `gap` below it (None: no
# hysteresis), median filter, clip-relative fraction and margin for predicted classes.
STARTS = (0.0, 0.25, 0.5)
GAPS = (None, 0.5, 1.0)
MEDIANS = (1, 3)
FRACTIONS = (None, 0.5)
MARGINS = (None, 0.25, 0.5)
SCOPES = ("predicted", "unheard")
DEFAULT_RULE = EventRule(start=0.0, low=-0.5)  # localize's built-in rule (E > 0 is A > 0), as a rule
CRITERIA = ("segment", "part", "consistency")


def rule_grid(starts: Sequence[float] = STARTS, gaps: Sequence[float | None] = GAPS,
              medians: Sequence[int] = MEDIANS, fractions: Sequence[float | None] = FRACTIONS,
              centres: Sequence[bool] = (False, True), margins: Sequence[float | None] = MARGINS,
              scopes: Sequence[str] = SCOPES) -> list[EventRule]:
    """Every combination of the parameters, as rules (a scope only where a fraction or margin uses it)."""
    rules = [EventRule(start=s, low=None if g is None else s - g, median=m, fraction=f, centre=c, margin=mg, scope=sc)
             for c, s, g, m, f, mg, sc in itertools.product(centres, starts, gaps, medians, fractions, margins, scopes)]
    return list(dict.fromkeys(r for r in rules if r.scope == SCOPES[0] or r.fraction is not None or r.margin is not None))


def rule_distance(rule: EventRule, default: EventRule = DEFAULT_RULE) -> float:
    """How far a rule is from ``default`` (ties of the F1 go to the closest)."""
    low = rule.start if rule.low is None else rule.low
    dlow = default.start if default.low is None else default.low
    return (abs(rule.start - default.start) + abs(low - dlow) + (rule.median - default.median) / 2
            + abs((rule.fraction or 0.0) - (default.fraction or 0.0)) + float(rule.centre != default.centre)
            + float(rule.margin is not None) + (rule.margin or 0.0) + float(rule.scope != default.scope))


def part_scores(scores: Sequence[ClipEventScores], parts: Sequence[float], rule: EventRule | None,
                names: Sequence[str], opts=None) -> tuple[float, float]:
    """Part-level F1 of ``rule`` on splices, and its false-alarm rate in absent parts.

    Each (part, class) is one decision: detected when any 1-s segment of that part is active; the
    reference is exact (the part's clip labels). The rate is the share of 1-s segments of parts
    *without* the class where the class is active (exact negatives). ``parts``: each splice's point.
    """
    from avscene.evaluation.metrics.sed import segment_activity

    tp = fp = fn = alarms = negatives = 0
    for s, point in zip(scores, parts):
        est = segment_activity(clip_events(s, rule, names, opts), class_names=names, duration=s.duration)  # (S, C)
        ref = segment_activity(s.reference, class_names=names, duration=s.duration)  # (S, C)
        k = int(round(point))
        for seg in (slice(0, k), slice(k, None)):
            present, hit = ref[seg].any(axis=0), est[seg].any(axis=0)  # (C,) each
            tp, fp, fn = tp + int((hit & present).sum()), fp + int((hit & ~present).sum()), fn + int((~hit & present).sum())
            alarms += int(est[seg][:, ~present].sum())
            negatives += int(est[seg].shape[0] * (~present).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return f1, alarms / max(negatives, 1)


def consistency_scores(splices: Sequence[Splice], scores: Sequence[ClipEventScores], names: Sequence[str],
                       opts=None) -> list[ClipEventScores]:
    """``scores`` with each splice's reference replaced by a pseudo-reference: the events ``localize``'s
    rule (``opts``, default its defaults) finds on the *clean* splice of the same two clips, less those
    in the wrong part (exact: the parts' labels). A rule that reproduces them on the perturbed
    versions holds under a recording change; on the clean version the reference rule itself is best.
    Splices without a clean version are left out."""
    clean = {(sp.first, sp.second): s for sp, s in zip(splices, scores) if sp.variant == "clean"}
    pseudo = {}
    for (first, second), s in clean.items():
        sp = next(x for x in splices if (x.first, x.second, x.variant) == (first, second, "clean"))
        labels = (set(sp.first_labels), set(sp.second_labels))
        pseudo[first, second] = tuple(
            (max(on, lo), min(off, hi), lab) for on, off, lab in clip_events(s, None, names, opts)
            for k, (lo, hi) in enumerate(((0.0, sp.point), (sp.point, sp.duration)))
            if lab in labels[k] and min(off, hi) > max(on, lo))
    return [dataclasses.replace(s, reference=pseudo[sp.first, sp.second])
            for sp, s in zip(splices, scores) if (sp.first, sp.second) in pseudo]


def best_event_rule(scores: Sequence[ClipEventScores], names: Sequence[str],
                    grid: Sequence[EventRule] | None = None, *, criterion: str = "segment",
                    splices: Sequence[Splice] | None = None) -> tuple[EventRule, float]:
    """The rule of ``grid`` with the best figure on ``scores``, and that figure.

    ``criterion``: ``"segment"``, the DCASE segment F1 against the parts' labels (each class over its
    whole part: it over-states the reference, so it favours long events); ``"part"``, the part-level
    F1 of :func:`part_scores` (exact, but blind to an event's extent inside its part), ties to the
    lower false-alarm rate in absent parts; ``"consistency"``, the segment F1 against
    :func:`consistency_scores`' pseudo-references (every variant). ``splices``: what each of
    ``scores`` is (needed by the last two). Remaining ties: the rule closest to :data:`DEFAULT_RULE`.
    """
    if criterion not in CRITERIA:
        raise UsageError(f"the event calibration criterion must be one of {CRITERIA}, got {criterion!r}")
    grid = rule_grid() if grid is None else list(grid)
    if not grid or not scores:
        raise UsageError("event calibration needs at least one rule and one clip")
    if criterion != "segment" and (splices is None or len(splices) != len(scores)):
        raise UsageError(f"the {criterion} criterion needs the splice of each clip")
    if criterion == "consistency":
        scores = consistency_scores(splices, scores, names)
    if criterion == "part":
        parts = [sp.point for sp in splices]
        figures = [part_scores(scores, parts, r, names) for r in grid]
        keys = [(-f, rate, rule_distance(r)) for r, (f, rate) in zip(grid, figures)]
        best = min(range(len(grid)), key=lambda i: keys[i])
        return grid[best], figures[best][0]
    refs = reference_rolls(scores, names)
    f1 = np.array([_f1(rule_metrics(scores, r, names, refs=refs).f1) for r in grid])
    ties = [r for r, f in zip(grid, f1) if f >= f1.max() - 1e-12]
    return min(ties, key=rule_distance), float(f1.max())


def _f1(x: float) -> float:
    return 0.0 if x != x else float(x)


@dataclass(frozen=True)
class EventCalibration:
    """What ``calibrate --events`` chose and its splice-set figures."""

    rule: EventRule
    criterion: str  # what was maximised (CRITERIA)
    n_splices: int
    figure_default: float  # that figure on the splice set for localize's built-in rule (LocalizeOptions())
    figure_after: float
    written: str | None

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule.to_json(), "criterion": self.criterion, "n_splices": self.n_splices,
                "figure_default": self.figure_default, "figure_after": self.figure_after, "written": self.written}


SPLICE_VARIANTS = ("clean", "augmented", "shifted")


def shifted_options(augment: Any) -> Any:
    """A recording change stronger than training's augmentation, for the ``shifted`` splices: every
    clip pitch-shifted by up to 4 semitones (another rendering of the same instrument), EQ within
    ±12 dB, gain within ±10 dB; the rest as ``augment``."""
    return dataclasses.replace(augment, pitch_semitones=4.0, pitch_prob=1.0, eq_db=12.0, gain_db=10.0)


def splice_set(held: Sequence[Example], folder: str | Path, *, sample_rate: int, seed: int = 0,
               augment: Any = None, variants: Sequence[str] = SPLICE_VARIANTS) -> list[tuple[Path, Splice]]:
    """The splice files of a hold-out in ``folder``: each clip with a partner of disjoint labels
    (:func:`pair_clips`), once per variant: ``clean``, ``augmented`` (the audio through ``augment``,
    the training augmentation) and ``shifted`` (:func:`shifted_options`); the last two need ``augment``."""
    bad = [v for v in variants if v not in SPLICE_VARIANTS or (v != "clean" and augment is None)]
    if bad:
        raise UsageError(f"unknown splice variant(s) or no augmentation given for {bad}")
    opts = {"clean": None, "augmented": augment, "shifted": None if augment is None else shifted_options(augment)}
    out = []
    for k, (a, b) in enumerate(pair_clips(held, seed=seed)):
        for j, variant in enumerate(variants):
            path = Path(folder) / f"splice{k:04d}_{variant}.mp4"
            perturb = None if variant == "clean" else k * len(SPLICE_VARIANTS) + j
            sp = build_splice(a, b, path, sample_rate=sample_rate, perturb=perturb, augment=opts[variant])
            out.append((path, dataclasses.replace(sp, variant=variant)))
    return out


def calibrate_events(model: str | Path, manifest: str | Path | None = None, *, write: bool = True,
                     device: str = "cpu", seed: int = 0, augment: bool = True, criterion: str = "consistency",
                     workdir: str | Path | None = None,
                     progress: Callable[[int, int], None] | None = None) -> EventCalibration:
    """Choose and (``write``) store a checkpoint folder's event rule on splices of its hold-out
    (:func:`splice_set`: clean, and with ``augment`` the ``augmented`` and ``shifted`` variants;
    :func:`best_event_rule` by ``criterion``)."""
    from avscene.train.augment import AugmentOptions
    from avscene.train.calibrate import holdout_and_model, store_thresholds

    model = Path(model)
    config, held, loaded = holdout_and_model(model, manifest, device)
    if not loaded.config.uses_audio:
        raise UsageError(f"{model}: the {loaded.config.variant!r} variant hears nothing; no events to calibrate")
    if criterion not in CRITERIA:
        raise UsageError(f"the event calibration criterion must be one of {CRITERIA}, got {criterion!r}")
    opts = AugmentOptions.from_dict(config["training"].get("augment_opts") or {}) if augment else None
    names = list(loaded.labels)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        splices = splice_set(held, tmp, sample_rate=loaded.preprocess.sample_rate, seed=seed, augment=opts,
                             variants=SPLICE_VARIANTS if augment else ("clean",))
        scores = []
        for i, (path, sp) in enumerate(splices):
            scores.append(clip_event_scores(path, loaded, sp.reference(), sp.duration))
            if progress:
                progress(i + 1, len(splices))
    rule, figure = best_event_rule(scores, names, criterion=criterion, splices=[sp for _, sp in splices])
    written = None
    if write:
        written = str(store_thresholds(model, event_start=rule.start, event_low=rule.low, event_median=rule.median,
                                       event_fraction=rule.fraction, event_centre=rule.centre,
                                       event_margin=rule.margin, event_scope=rule.scope))
    sps = [sp for _, sp in splices]
    default = (part_scores(scores, [sp.point for sp in sps], None, names)[0] if criterion == "part" else
               _f1(rule_metrics(consistency_scores(sps, scores, names) if criterion == "consistency" else scores,
                                None, names).f1))
    return EventCalibration(rule=rule, criterion=criterion, n_splices=len(scores), figure_default=default,
                            figure_after=figure, written=written)
