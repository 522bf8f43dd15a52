"""Noise stress: a model's scores with backgrounds it never heard added, and on pure noise.

For each requested condition (a family of :mod:`avscene.dsp.noise` at an SNR), every clip of
the evaluation is analysed again with that family's noise added to its audio, at ``snr_db``
over **the clip's own mixture power** (the mean square of its whole decoded audio). The noise
of a clip depends only on the clip id and the family (:func:`noise_seed`), so the 0-dB and
10-dB versions of a clip carry the same noise at two levels, and reruns are identical.

Per condition the report gives the micro-F1 and, per class, the **false-positive rate**: the
fraction of the clips *without* that class in their labels for which the class is predicted; on clips
with a ground truth, also ``localize``'s sound events on the noisy versions: DCASE segment F1 / error
rate and AVVP segment-level audio F1 and Type@AV (:meth:`NoiseStress.add_events`). The boxes need no
noisy version: they come from the visual stream alone, which the noise does not reach.

**Pure noise.** Per family, each clip (up to ``pure_noise_clips``) is also analysed with its
audio *replaced* by the same noise at the clip's RMS, and **without its frames**: the frames
show the clip's objects, which the model should report (a class seen but not heard is in the
labels), so pure noise is scored as an audio-only input. Every label predicted on it is a
false alarm; the report gives the fraction of such clips with any label.

The frames of a clip are decoded and embedded once for all its versions
(:func:`avscene.tasks._pipeline.analyse_variants`). Nothing is clipped: the proposals see the
sum as it is. A clip without an audio stream cannot be stressed and is reported as failed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avscene.dsp import noise as bank
from avscene.errors import UsageError
from avscene.tasks._pipeline import Analysis, AudioVariant, analyse_variants, input_threshold
from avscene.evaluation.metrics.classification import classification_metrics

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel

HELDOUT = "heldout"  # --add-noise alias: every held-out family
DEFAULT_SNR_DB = 0.0


@dataclass(frozen=True)
class NoiseCondition:
    """One noise family added at one SNR over the clip's mixture power."""

    family: str
    snr_db: float


def parse_noise_specs(specs: Sequence[str]) -> tuple[NoiseCondition, ...]:
    """``FAMILY[:SNR]`` strings → conditions (``heldout`` = every held-out family; SNR default 0 dB).

    Duplicates are dropped, the first occurrence keeps its place.

    Raises:
        UsageError: an unknown family or an SNR that is not a finite number.
    """
    out: dict[NoiseCondition, None] = {}
    for spec in specs:
        name, _, snr_text = spec.partition(":")
        try:
            snr = float(snr_text) if snr_text else DEFAULT_SNR_DB
        except ValueError:
            snr = float("nan")
        if not np.isfinite(snr):
            raise UsageError(f"--add-noise {spec!r}: the SNR after ':' must be a number of dB (e.g. heldout:10)")
        if name == HELDOUT:
            families = bank.HELDOUT_FAMILIES
        elif name in bank.FAMILIES:
            families = (name,)
        else:
            raise UsageError(f"--add-noise {spec!r}: unknown noise family {name!r}; use {HELDOUT!r} or one of "
                             f"{', '.join(bank.FAMILIES)}")
        out.update(dict.fromkeys(NoiseCondition(f, snr) for f in families))
    return tuple(out)


def noise_seed(clip_id: str, family: str) -> int:
    """The seed of ``family``'s noise for clip ``clip_id``: CRC-32 of ``"<family>/<clip_id>"``."""
    return zlib.crc32(f"{family}/{clip_id}".encode())


def _adder(background: np.ndarray, gain: float, *, keep_signal: bool):
    """An ``AudioVariant.edit`` that adds (or substitutes) ``gain·background`` sample by sample."""
    def edit(audio: np.ndarray, start: int) -> np.ndarray:
        idx = (start + np.arange(len(audio))) % len(background)  # wraps if the file has more samples
        noise = gain * background[idx]
        return (audio + noise if keep_signal else noise).astype(np.float32)
    return edit


def clip_variants(audio: np.ndarray, clip_id: str, conditions: Sequence[NoiseCondition], *, sr: int,
                  pure: bool) -> tuple[list[AudioVariant], list[str]]:
    """The noisy versions of one clip (one per condition), then its pure-noise ones (one per family).

    Args:
        audio: (n,) the clip's whole decoded audio (its power is the SNR reference).
        clip_id: names the clip in :func:`noise_seed`.
        conditions: the families and SNRs.
        sr: sample rate of ``audio``.
        pure: also the pure-noise versions (audio replaced, no frames).

    Returns:
        The variants and the families of the pure-noise ones, in order.
    """
    n = max(1, len(audio))
    power = float(np.mean(np.square(audio, dtype=np.float64))) if len(audio) else 0.0
    backgrounds: dict[str, np.ndarray] = {}
    for c in conditions:
        if c.family not in backgrounds:
            backgrounds[c.family] = bank.noise(c.family, n, sr=sr, rng=noise_seed(clip_id, c.family))
    variants = [AudioVariant(edit=_adder(backgrounds[c.family], bank.background_gain(power, 1.0, c.snr_db),
                                         keep_signal=True)) for c in conditions]
    families = list(backgrounds) if pure else []
    level = np.sqrt(power) if power > 0 else bank.SILENT_RMS  # the clip's RMS (unit-RMS noise)
    variants += [AudioVariant(edit=_adder(backgrounds[f], float(level), keep_signal=False), video=False)
                 for f in families]
    return variants, families


# --------------------------------------------------------------------------- scores


def false_positive_rates(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per class, the fraction of the clips without it that predict it.

    Args:
        y_true, y_pred: (N, C) bool.

    Returns:
        (C,) float; ``nan`` for a class that every clip has.
    """
    negatives = ~y_true.astype(bool)  # (N, C)
    count = negatives.sum(0)
    hits = (negatives & y_pred.astype(bool)).sum(0)
    return np.where(count > 0, hits / np.maximum(count, 1), np.nan)


def _opt(x: float) -> float | None:
    return None if x != x else float(x)


@dataclass(frozen=True)
class ConditionScores:
    """Scores of the clips under one condition (``family`` "clean": no noise added)."""

    family: str
    texture: str | None
    snr_db: float | None
    n_clips: int
    micro_f1: float
    fp_rate: dict[str, float | None]  # class -> fraction of the clips without it that predict it
    sed: Any = None  # evaluation.metrics.sed.SegmentMetrics of the events on the noisy versions (clips with ground truth)
    avvp: Any = None  # evaluation.metrics.avvp.AVVPMetrics of the same

    @property
    def max_fp_rate(self) -> float | None:
        vals = [v for v in self.fp_rate.values() if v is not None]
        return max(vals) if vals else None

    def worst_class(self) -> str | None:
        vals = {k: v for k, v in self.fp_rate.items() if v is not None}
        return max(vals, key=vals.get) if vals and max(vals.values()) > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "texture": self.texture, "snr_db": self.snr_db, "n_clips": self.n_clips,
                "micro_f1": _opt(self.micro_f1), "max_fp_rate": self.max_fp_rate,
                "worst_class": self.worst_class(), "fp_rate": self.fp_rate,
                **({} if self.sed is None else {"sed_f1": _opt(self.sed.f1), "sed_error_rate": _opt(self.sed.error_rate),
                                                "sed_classes": {c.name: _opt(c.f1) for c in self.sed.classes}}),
                **({} if self.avvp is None else {"avvp_segment": self.avvp.segment.to_json()})}


@dataclass(frozen=True)
class PureNoiseScores:
    """Predictions on pure noise: every label is a false alarm."""

    family: str
    texture: str
    n_clips: int
    any_label: float  # fraction of the clips with at least one label
    label_counts: dict[str, int]  # class -> clips that got it

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "texture": self.texture, "n_clips": self.n_clips,
                "any_label": self.any_label, "label_counts": self.label_counts}


@dataclass(frozen=True)
class NoiseStressReport:
    """The noise-stress section of an evaluation. JSON: see ``to_json``."""

    clean: ConditionScores
    conditions: tuple[ConditionScores, ...]  # one per family and SNR, then "all" pooled per SNR
    pure_noise: tuple[PureNoiseScores, ...]

    def to_json(self) -> dict[str, Any]:
        return {"snr_reference": "clip mixture power",
                "pure_noise_input": "audio only (noise at the clip's RMS, frames left out)",
                "seed": "crc32('<family>/<clip id>')",
                "clean": self.clean.to_json(),
                "conditions": [c.to_json() for c in self.conditions],
                "pure_noise": [p.to_json() for p in self.pure_noise]}


def condition_scores(family: str, snr_db: float | None, y_true: np.ndarray, y_pred: np.ndarray,
                     names: Sequence[str], *, events: tuple[Any, Any] = (None, None)) -> ConditionScores:
    """Micro-F1 and per-class false-positive rates of (N, C) bool predictions (and ``events``: the SED
    and AVVP metrics of the same clips' events)."""
    fp = false_positive_rates(y_true, y_pred)
    texture = bank.FAMILIES[family].texture if family in bank.FAMILIES else None
    return ConditionScores(family, texture, snr_db, len(y_true),
                           classification_metrics(y_true, y_pred, list(names)).micro_f1,
                           {n: _opt(v) for n, v in zip(names, fp)}, sed=events[0], avvp=events[1])


def pure_noise_scores(family: str, y_pred: np.ndarray, names: Sequence[str]) -> PureNoiseScores:
    """Fraction of (N, C) bool predictions on pure noise with any label, and counts per class."""
    y_pred = y_pred.astype(bool)
    return PureNoiseScores(family, bank.FAMILIES[family].texture, len(y_pred),
                           float(y_pred.any(1).mean()) if len(y_pred) else float("nan"),
                           {n: int(c) for n, c in zip(names, y_pred.sum(0)) if c})


@dataclass
class NoiseStress:
    """Runs the noisy and pure-noise versions of each clip and gathers their predictions."""

    conditions: tuple[NoiseCondition, ...]
    names: tuple[str, ...]
    threshold: float | None  # None: each input's (tasks._pipeline.input_threshold: one stream, its own)
    pure_noise_clips: int | None = None  # pure-noise versions of the first this many clips (None: all)
    _noisy: list[np.ndarray] = field(default_factory=list)  # per clip (K, C) bool
    _pure: dict[str, list[np.ndarray]] = field(default_factory=dict)  # family -> per clip (C,) bool
    _seen: int = 0
    _last: list[Analysis] = field(default_factory=list)  # the last clip's noisy versions, one per condition
    _events: dict[int, list[tuple]] = field(default_factory=dict)  # condition -> per clip (ref, est, gt, parse)

    def analyse(self, path: Path, clip_id: str, loaded: LoadedModel) -> Analysis:
        """The clean analysis of one clip; its noisy versions' predictions are kept for :meth:`report`."""
        from avscene.io.audio_stream import AudioReader

        sr = loaded.preprocess.sample_rate
        with AudioReader(path, sample_rate=sr) as reader:
            audio = np.concatenate([np.zeros(0, np.float32), *reader.blocks()])
        pure = self.pure_noise_clips is None or self._seen < self.pure_noise_clips
        variants, families = clip_variants(audio, clip_id, self.conditions, sr=sr, pure=pure)
        clean, *rest = analyse_variants(path, loaded, [AudioVariant(), *variants])
        pred = np.stack([a.output.scores.numpy() > input_threshold(a, loaded, self.threshold)
                         for a in rest]) if rest else None
        self._seen += 1
        self._last = rest[:len(self.conditions)]
        if pred is not None:  # recorded only now that every version of the clip went through
            self._noisy.append(pred[:len(self.conditions)])
            for f, p in zip(families, pred[len(self.conditions):]):
                self._pure.setdefault(f, []).append(p)
        return clean

    def add_events(self, path: Path, loaded: LoadedModel, opts, ref_roll: np.ndarray, gt_parse, *,
                   duration: float, to_parse: Callable) -> None:
        """Score ``localize``'s events (``opts``) on the last clip's noisy versions against its ground
        truth (``ref_roll``: SED roll, ``gt_parse``: AVVP rolls), for :meth:`report`. ``to_parse``: the
        AVVP rolls of a ``localize`` timing (``evaluation.evaluate.predicted_parse``)."""
        from avscene.tasks.localize import localize_from_analysis
        from avscene.evaluation.metrics.sed import segment_activity

        for k, a in enumerate(self._last):
            res = localize_from_analysis(path, a, loaded, opts)
            est = [(e.onset, min(e.offset, duration), e.label) for e in res.events]
            self._events.setdefault(k, []).append(
                (ref_roll, segment_activity(est, class_names=self.names, duration=duration), gt_parse,
                 to_parse(res.timing, list(self.names), duration=duration)))

    def _event_scores(self, ks: Sequence[int]) -> tuple[Any, Any]:
        from avscene.evaluation.metrics.avvp import avvp_metrics
        from avscene.evaluation.metrics.sed import segment_based_metrics

        rows = [r for k in ks for r in self._events.get(k, [])]
        if not rows:
            return None, None
        ref, est, gt, parse = zip(*rows)
        return segment_based_metrics(ref, est, class_names=self.names), avvp_metrics(parse, gt)

    def report(self, y_true: np.ndarray, clean_pred: np.ndarray) -> NoiseStressReport:
        """Scores from the clips' labels (N, C) and clean predictions (N, C), in the order analysed."""
        noisy = np.stack(self._noisy, axis=1) if self._noisy else np.zeros((0, 0, len(self.names)), bool)  # (K, N, C)
        rows = [condition_scores(c.family, c.snr_db, y_true, noisy[k], self.names, events=self._event_scores([k]))
                for k, c in enumerate(self.conditions)]
        for snr in dict.fromkeys(c.snr_db for c in self.conditions):
            ks = [k for k, c in enumerate(self.conditions) if c.snr_db == snr]
            if len(ks) > 1:  # every family at this SNR, pooled: one row over all their clips
                rows.append(condition_scores("all", snr, np.concatenate([y_true] * len(ks)),
                                             np.concatenate([noisy[k] for k in ks]), self.names,
                                             events=self._event_scores(ks)))
        return NoiseStressReport(
            clean=condition_scores("clean", None, y_true, clean_pred, self.names),
            conditions=tuple(rows),
            pure_noise=tuple(pure_noise_scores(f, np.stack(p), self.names) for f, p in self._pure.items()))
