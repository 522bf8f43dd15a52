"""The training data of the mask network (``avscene train-separator``): anchors and mixtures.

No clean stem, timestamp or box is used: the supervision is exactly the rest of
avscene's (a training clip's ``labels.csv`` row). Mix-and-separate (Zhao et al.,
*The Sound of Pixels*, 2018) with anchors chosen by the weak detector (Kong et al.,
2020); the loss and the loop are in :mod:`avscene.train.masknet`.

1. **Where each class sounds.** The checkpoint's audio MIL network scores every
   0.96-s window (50 % overlap) of every single-label training clip for its label.
   Per clip the scores are min–max scaled; windows at or above ``ACTIVE_LEVEL`` are
   where the class is active (*anchors*), windows at or below ``QUIET_LEVEL`` hold
   background only. A clip whose scores hardly vary (a silent event) gives neither.
   Only anchors estimated at least ``MIN_ANCHOR_SNR_DB`` over their own clip's
   background are kept (:func:`keep_clean_anchors`).
2. **Mixtures made on the fly.** A target segment (``segment_seconds``) is cut from an
   anchor of class ``c``; a background-only segment of *another* clip is added at a
   random target-to-background ratio, and with probability ``other_prob`` an anchor
   of a class that is not ``c``. Each source gets its own random speed (pitch and
   tempo) and equaliser curve first (:mod:`avscene.train.augment`), so the network
   hears other timbres than the training SoundFont's, and the whole mixture a random
   level.
3. **Handling the background inside the target.** The target segment still holds its
   own clip's background (SNR -5 to 15 dB in avbench). The added background is made
   louder than that on average (``snr_background`` reaches down to -10 dB), and the
   network cannot tell one background from another, so the cheapest answer it can
   learn is to suppress background-like energy wherever it is: the estimate of class
   ``c`` loses the background that came with its anchor too. ``MixOptions(
   background_prob=0)`` turns this off (plain mix-and-separate) for comparison.
   (Subtracting the anchor's own background spectrum from the target instead was
   measured worse: it over-suppresses the target; it was removed.)

4. **Two classes at once** (:class:`PairSampler`, ``MaskNetTrainOptions.pair_fraction``):
   mix-and-separate of two training clips with disjoint label sets (Zhao et al. 2018): a
   segment where clip A's class is active and one where clip B's is, at a random A-to-B
   ratio (``MixOptions.snr_pair``), with a background-only segment of a third clip at
   ``background_prob``. Both segments, as they are in the mixture, are targets: queried with
   A's class the network must return A's segment, with B's class B's. The segments come from
   every single-label clip the audio network hears (all anchors, not only the cleanest),
   since their own recordings are the targets.

5. **Co-separation** (Gao & Grauman, ICCV 2019; :class:`CoSeparationSampler`,
   ``MaskNetTrainOptions.objective = "coseparation"``): two training clips with disjoint label
   sets, *any* number of labels each (:class:`ClipPool`: the two-label clips too, which the
   anchors and the pairs leave out), a segment of each where one of its heard labels is active.
   Every heard class of both clips is queried; what the classes of one clip return must add up
   to that clip's segment (MixIT's assignment, Wisdom et al. 2020, known from the labels). How
   a two-label clip's segment divides between its classes is left to the network.

The hold-out is every ``HOLDOUT_EVERY``-th training clip (:func:`decode_manifest`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from avscene.errors import UsageError
from avscene.train.augment import random_eq

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel

SAMPLE_RATE = 16000
ACTIVE_LEVEL = 0.6  # scaled window score at or above which the clip's class is active
QUIET_LEVEL = 0.15  # at or below which the window holds background only
MIN_SCORE_RANGE = 0.5  # clips whose window scores vary less than this (score units) are skipped
MIN_ANCHOR_SNR_DB = 10.0  # anchors whose estimated event-to-background ratio is lower are not used ...
MIN_ANCHOR_SECONDS = 20.0  # ... unless a class would be left with less than this (its cleanest are kept)
HEARD_SCORE = 0.0  # a clip's label is heard when a window scores it above this (the hinge's decision)
HOLDOUT_EVERY = 10  # every 10th training clip (manifest order) is held out
EPS = 1e-8


# --------------------------------------------------------------------------- activity


@dataclass(frozen=True)
class Segment:
    """``[start, end)`` samples of clip ``clip`` in a :class:`TrainingPool`."""

    clip: int
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def activity_runs(scores: np.ndarray, times: np.ndarray, *, sr: int = SAMPLE_RATE,
                  active: float = ACTIVE_LEVEL, quiet: float = QUIET_LEVEL,
                  min_range: float = MIN_SCORE_RANGE) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Where a clip's class is active and where nothing is, from its window scores.

    Args:
        scores: ``(W,)`` the class's score on each window, in time order.
        times: ``(W, 2)`` ``[start, end)`` seconds of the windows.
        sr: sample rate of the returned bounds.
        active, quiet: levels of the min–max scaled scores (see the module docstring).
        min_range: below this spread of the raw scores the clip has no usable contrast.

    Returns:
        ``(active_runs, quiet_runs)``: merged ``[start, end)`` sample ranges, in time order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) != len(times):
        raise UsageError("activity_runs: scores (W,) and times (W, 2) must have the same length")
    if len(scores) == 0 or float(scores.max() - scores.min()) < min_range:
        return [], []
    scaled = (scores - scores.min()) / (scores.max() - scores.min())

    def runs(keep: np.ndarray) -> list[tuple[int, int]]:
        out: list[list[int]] = []
        for (a, b), k in zip(times, keep):
            if not k:
                continue
            a, b = int(round(a * sr)), int(round(b * sr))
            if out and a <= out[-1][1]:
                out[-1][1] = max(out[-1][1], b)
            else:
                out.append([a, b])
        return [(a, b) for a, b in out]

    return runs(scaled >= active), runs(scaled <= quiet)


def _clip_out(runs: list[tuple[int, int]], other: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``runs`` minus the samples covered by ``other`` (the overlap of adjacent windows)."""
    out = []
    for a, b in runs:
        pieces = [(a, b)]
        for c, d in other:
            pieces = [q for (x, y) in pieces for q in ((x, min(y, c)), (max(x, d), y)) if q[1] > q[0]]
        out.extend(pieces)
    return out


@dataclass
class TrainingPool:
    """Decoded training audio and where each class (or nothing) sounds in it."""

    audio: list[np.ndarray]  # (N,) float32 per clip
    names: list[str]  # clip file names, for the log
    anchors: dict[str, list[Segment]]  # class -> segments where it is active (single-label clips)
    background: list[Segment]  # segments where nothing of the clip's labels is active
    labels: list[tuple[str, ...]] = field(default_factory=list)  # each clip's labels (empty: unknown)
    heard: list[bool] = field(default_factory=list)  # whether the audio network hears each clip's label

    def heard_anchors(self) -> dict[str, list[Segment]]:
        """The anchors of the clips whose label the audio network hears (all of them when unknown)."""
        if not self.heard:
            return self.anchors
        out = {c: [s for s in segs if self.heard[s.clip]] for c, segs in self.anchors.items()}
        return {c: v for c, v in out.items() if v}

    def label_set(self, clip: int) -> frozenset[str]:
        """The labels of clip ``clip``: its own, else those of the anchors it holds."""
        if clip < len(self.labels):
            return frozenset(self.labels[clip])
        return frozenset(c for c, segs in self.anchors.items() if any(s.clip == clip for s in segs))

    def summary(self) -> dict[str, object]:
        sr = SAMPLE_RATE
        return {"clips": len(self.audio),
                "anchor_seconds": {c: round(sum(s.length for s in v) / sr, 1) for c, v in self.anchors.items()},
                "background_seconds": round(sum(s.length for s in self.background) / sr, 1)}


def anchor_snr_db(audio: np.ndarray, anchor: Segment, background: Sequence[Segment]) -> float:
    """Estimated event-to-background ratio (dB) of an anchor: its power less the mean power of its
    clip's background-only segments, over the latter (``-inf`` without background to compare)."""
    own = [audio[s.start:s.end] for s in background]
    if not own:
        return -math.inf
    p_bg = power(np.concatenate(own))
    p_event = power(audio[anchor.start:anchor.end]) - p_bg
    if p_bg <= 0:
        return math.inf if p_event > 0 else -math.inf
    return 10 * math.log10(p_event / p_bg) if p_event > 0 else -math.inf


def keep_clean_anchors(pool: TrainingPool, min_snr_db: float = MIN_ANCHOR_SNR_DB, *,
                       min_seconds: float = MIN_ANCHOR_SECONDS) -> TrainingPool:
    """The pool with only the anchors whose :func:`anchor_snr_db` is at least ``min_snr_db``.

    A target segment carries its own clip's background; the louder the event over it, the less
    background the network learns to keep. Only the clip's own audio is used to estimate it. A
    class whose clean anchors add up to less than ``min_seconds`` keeps its cleanest ones up to
    that (a class without anchors would never be trained).
    """
    by_clip: dict[int, list[Segment]] = {}
    for s in pool.background:
        by_clip.setdefault(s.clip, []).append(s)
    anchors: dict[str, list[Segment]] = {}
    for c, segs in pool.anchors.items():
        rated = sorted(((anchor_snr_db(pool.audio[a.clip], a, by_clip.get(a.clip, [])), a) for a in segs),
                       key=lambda r: -r[0])
        keep, seconds = [], 0.0
        for snr, a in rated:
            if snr == -math.inf or (snr < min_snr_db and seconds >= min_seconds):
                break
            keep.append(a)
            seconds += a.length / SAMPLE_RATE
        if keep:
            anchors[c] = sorted(keep, key=lambda a: (a.clip, a.start))
    return TrainingPool(audio=pool.audio, names=pool.names, anchors=anchors, background=pool.background,
                        labels=pool.labels, heard=pool.heard)


def window_scores(audio: np.ndarray, loaded: LoadedModel) -> tuple[np.ndarray, np.ndarray]:
    """The audio network's classification scores of every 0.96-s window: ``(W, C)`` and times ``(W, 2)``."""
    from avscene.proposals.audio import audio_proposals, band_offset, normalise_bands

    pre = loaded.preprocess
    props = audio_proposals(audio, cfg=pre)
    patches = normalise_bands(props.patches, band_offset(None, cfg=pre, patches=props.patches))
    device = next(loaded.model.parameters()).device
    with torch.no_grad():
        s = loaded.model.score_audio_patches(torch.from_numpy(patches).to(device)).float().cpu().numpy()
    return s, props.times


def build_pool(clips: Sequence[tuple[str, np.ndarray, tuple[str, ...]]], loaded: LoadedModel, *,
               min_snr_db: float | None = MIN_ANCHOR_SNR_DB,
               progress: Callable[[int, int], None] | None = None) -> TrainingPool:
    """Anchors and background segments of decoded clips ``(name, audio, labels)``, single-label ones.

    Clips with two labels are not used: which of the two is active in a window is what
    the weak detector is least sure of, and a wrong anchor teaches the wrong class.
    """
    pool = TrainingPool(audio=[], names=[], anchors={}, background=[], labels=[], heard=[])
    for i, (name, audio, labels) in enumerate(clips):
        if len(labels) == 1:
            s, times = window_scores(audio, loaded)
            act, quiet = activity_runs(s[:, loaded.labels.index(labels[0])], times)
            quiet = _clip_out(quiet, act)
            if act or quiet:
                k = len(pool.audio)
                pool.audio.append(audio.astype(np.float32))
                pool.names.append(name)
                pool.labels.append(tuple(labels))
                pool.heard.append(bool(s[:, loaded.labels.index(labels[0])].max() > HEARD_SCORE))
                pool.anchors.setdefault(labels[0], []).extend(Segment(k, a, min(b, len(audio))) for a, b in act)
                pool.background.extend(Segment(k, a, min(b, len(audio))) for a, b in quiet)
        if progress:
            progress(i + 1, len(clips))
    return pool if min_snr_db is None else keep_clean_anchors(pool, min_snr_db)


# --------------------------------------------------------------------------- mixing


@dataclass(frozen=True)
class MixOptions:
    """How training mixtures are drawn (see the module docstring)."""

    segment_seconds: float = 2.0
    background_prob: float = 1.0  # probability of adding a background-only segment of another clip
    snr_background: tuple[float, float] = (-10.0, 5.0)  # target-to-background ratio, dB
    other_prob: float = 0.5  # probability of adding an anchor of another class
    snr_other: tuple[float, float] = (-5.0, 10.0)  # target-to-other-class ratio, dB
    level_db: tuple[float, float] = (-30.0, -10.0)  # RMS of the mixture, dBFS
    speed: float = 0.06  # per-source resampling factor in [1 - speed, 1 + speed]
    eq_db: float = 9.0  # per-source random equaliser within ±eq_db (0: off)
    snr_pair: tuple[float, float] = (-6.0, 6.0)  # pairs: clip A's segment over clip B's, dB


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def mix(target: np.ndarray, interferers: Sequence[tuple[np.ndarray, float]], *, level_db: float,
        ) -> tuple[np.ndarray, np.ndarray]:
    """Mix ``target`` with interferers, each scaled to its target-to-interferer ratio (dB).

    Powers are means over the whole segment. The sum is then scaled to an RMS of
    ``level_db`` dBFS, target and mixture alike.

    Returns:
        ``(mixture, target)``, float32, both the target's length.
    """
    t = np.asarray(target, dtype=np.float64)
    p_t = power(t)
    if p_t <= 0:
        raise UsageError("mix: the target segment is silent")
    m = t.copy()
    for x, ratio_db in interferers:
        x = np.asarray(x, dtype=np.float64)[: len(t)]
        p_x = power(x)
        if p_x > 0:
            m[: len(x)] += x * math.sqrt(p_t / (p_x * 10 ** (ratio_db / 10)))
    g = math.sqrt(10 ** (level_db / 10) / max(power(m), EPS))
    return (m * g).astype(np.float32), (t * g).astype(np.float32)


def crop(audio: np.ndarray, seg: Segment, length: int, rng: np.random.Generator) -> np.ndarray:
    """A ``length``-sample piece of ``audio`` inside ``seg`` (centred on it, with the rest of the
    clip around it, when the segment is shorter)."""
    if seg.length >= length:
        a = seg.start + int(rng.integers(0, seg.length - length + 1))
    else:
        a = seg.start - (length - seg.length) // 2
    a = int(np.clip(a, 0, max(0, len(audio) - length)))
    out = audio[a:a + length]
    return np.pad(out, (0, length - len(out)))


def perturb(x: np.ndarray, rng: np.random.Generator, opts: MixOptions) -> np.ndarray:
    """``x`` at a random speed (pitch and tempo, same length) and through a random equaliser
    (``opts.speed``, ``opts.eq_db``): each source of a training mixture gets its own."""
    if opts.speed > 0:  # linear-interpolation resampling to the same length (pitch and tempo)
        f = rng.uniform(1 - opts.speed, 1 + opts.speed)
        pos = np.arange(len(x)) * f
        x = np.interp(pos, np.arange(len(x)), x, right=0.0).astype(np.float32)
    if opts.eq_db > 0:
        x = random_eq(x, rng, max_db=opts.eq_db, points=6, sr=SAMPLE_RATE)
    return x


@dataclass(frozen=True)
class TrainingMixture:
    mixture: np.ndarray  # (L,) float32
    target: np.ndarray  # (L,) float32: the anchor's segment, as it is in the mixture
    label: str
    parts: tuple[str, ...]  # what was mixed in besides the target: "background" and/or a class


class MixtureSampler:
    """Draws :class:`TrainingMixture` s from a pool (classes uniformly, then segments)."""

    def __init__(self, pool: TrainingPool, labels: Sequence[str], opts: MixOptions = MixOptions()) -> None:
        self.pool, self.labels, self.opts = pool, list(labels), opts
        self.classes = [c for c in self.labels if pool.anchors.get(c)]
        if not self.classes:
            raise UsageError("no training clip gave an anchor: nothing to train the separator on")
        if opts.background_prob > 0 and not pool.background:
            raise UsageError("no background-only segment found in the training clips")
        self.length = int(round(opts.segment_seconds * SAMPLE_RATE))

    def _piece(self, seg: Segment, rng: np.random.Generator) -> np.ndarray:
        return perturb(crop(self.pool.audio[seg.clip], seg, self.length, rng), rng, self.opts)

    def sample(self, rng: np.random.Generator) -> TrainingMixture:
        o = self.opts
        label = self.classes[int(rng.integers(len(self.classes)))]
        anchors = self.pool.anchors[label]
        seg = anchors[int(rng.integers(len(anchors)))]
        seed = int(rng.integers(2**32))  # the target's perturbation
        target = perturb(crop(self.pool.audio[seg.clip], seg, self.length, rng), np.random.default_rng(seed), o)
        while power(target) <= 0:  # pragma: no cover - a digitally silent anchor
            seg = anchors[int(rng.integers(len(anchors)))]
            target = self._piece(seg, rng)
        interferers, parts = [], []
        if rng.random() < o.background_prob:
            bgs = [s for s in self.pool.background if s.clip != seg.clip] or self.pool.background
            interferers.append((self._piece(bgs[int(rng.integers(len(bgs)))], rng), rng.uniform(*o.snr_background)))
            parts.append("background")
        others = [c for c in self.classes if c != label]
        if others and rng.random() < o.other_prob:
            other = others[int(rng.integers(len(others)))]
            segs = self.pool.anchors[other]
            interferers.append((self._piece(segs[int(rng.integers(len(segs)))], rng), rng.uniform(*o.snr_other)))
            parts.append(other)
        m, t = mix(target, interferers, level_db=rng.uniform(*o.level_db))
        return TrainingMixture(m, t, label, tuple(parts))

    def batch(self, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` mixtures: mixture (n, L), target (n, L) and class index (n,)."""
        items = [self.sample(rng) for _ in range(n)]
        return (torch.from_numpy(np.stack([x.mixture for x in items])),
                torch.from_numpy(np.stack([x.target for x in items])),
                torch.tensor([self.labels.index(x.label) for x in items]))


def mix_two(xa: np.ndarray, xb: np.ndarray, rng: np.random.Generator, opts: MixOptions,
            background: Callable[[], np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Two segments at a random A-to-B ratio (``opts.snr_pair``), with a background-only segment
    (drawn by ``background``) at ``opts.background_prob``, the whole scaled to a random level.

    Returns:
        ``(mixture (L,), sources (2, L), whether a background was added)``, float32: the sources as
        they are in the mixture (the background in neither).
    """
    o = opts
    gb = math.sqrt(power(xa) / (power(xb) * 10 ** (rng.uniform(*o.snr_pair) / 10)))
    sources = np.stack([xa, xb * gb]).astype(np.float64)
    m = sources.sum(axis=0)
    added = bool(background is not None and o.background_prob > 0 and rng.random() < o.background_prob)
    if added:
        bg = background().astype(np.float64)
        if power(bg) > 0:
            m = m + bg * math.sqrt(power(m) / (power(bg) * 10 ** (rng.uniform(*o.snr_background) / 10)))
    g = math.sqrt(10 ** (rng.uniform(*o.level_db) / 10) / max(power(m), EPS))
    return (m * g).astype(np.float32), (sources * g).astype(np.float32), added


@dataclass(frozen=True)
class PairMixture:
    """Two clips' segments mixed (and a background): each segment is the target of its class."""

    mixture: np.ndarray  # (L,) float32
    sources: np.ndarray  # (2, L) float32: clip A's and clip B's segments as they are in the mixture
    labels: tuple[str, str]  # the class of each
    clips: tuple[int, int]  # their clips in the pool
    background: bool  # whether a background-only segment was added (it is in neither target)


class PairSampler:
    """Draws :class:`PairMixture` s: two classes, then an active segment of each from clips with
    disjoint label sets (see the module docstring, item 4)."""

    def __init__(self, pool: TrainingPool, labels: Sequence[str], opts: MixOptions = MixOptions()) -> None:
        self.pool, self.labels, self.opts = pool, list(labels), opts
        self.anchors = pool.heard_anchors()
        self.classes = [c for c in self.labels if self.anchors.get(c)]
        if len(self.classes) < 2:
            raise UsageError("mix-and-separate of two clips needs anchors of at least two classes")
        self.length = int(round(opts.segment_seconds * SAMPLE_RATE))

    def _piece(self, seg: Segment, rng: np.random.Generator) -> np.ndarray:
        return perturb(crop(self.pool.audio[seg.clip], seg, self.length, rng), rng, self.opts)

    def _segment(self, label: str, rng: np.random.Generator, avoid: frozenset[str] = frozenset(),
                 ) -> Segment | None:
        segs = [s for s in self.anchors[label] if not (self.pool.label_set(s.clip) & avoid)] if avoid \
            else self.anchors[label]
        return segs[int(rng.integers(len(segs)))] if segs else None

    def sample(self, rng: np.random.Generator) -> PairMixture:
        o = self.opts
        while True:
            a, b = (self.classes[int(i)] for i in rng.choice(len(self.classes), size=2, replace=False))
            sa = self._segment(a, rng)
            assert sa is not None
            sb = self._segment(b, rng, avoid=self.pool.label_set(sa.clip) | {a})
            if sb is not None:
                break
        xa, xb = self._piece(sa, rng), self._piece(sb, rng)
        if power(xa) <= 0 or power(xb) <= 0:  # pragma: no cover - a digitally silent anchor
            return self.sample(rng)
        def background() -> np.ndarray:
            bgs = [s for s in self.pool.background if s.clip not in (sa.clip, sb.clip)] or self.pool.background
            return self._piece(bgs[int(rng.integers(len(bgs)))], rng)

        m, sources, added = mix_two(xa, xb, rng, o, background if self.pool.background else None)
        return PairMixture(m, sources, (a, b), (sa.clip, sb.clip), added)

    def batch(self, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` pairs: mixture (n, L), sources (n, 2, L) and their class indices (n, 2)."""
        items = [self.sample(rng) for _ in range(n)]
        return (torch.from_numpy(np.stack([x.mixture for x in items])),
                torch.from_numpy(np.stack([x.sources for x in items])),
                torch.tensor([[self.labels.index(c) for c in x.labels] for x in items]))


MAX_CLIP_CLASSES = 2  # co-separation: at most this many heard classes of a clip are queried


@dataclass
class ClipPool:
    """Every training clip whose labels the audio network hears, single- and multi-label alike
    (co-separation's clips; see the module docstring, item 5)."""

    audio: list[np.ndarray]  # (N,) float32 per clip
    labels: list[tuple[str, ...]]  # each clip's labels (two clips are mixed only when these are disjoint)
    heard: list[tuple[str, ...]]  # the labels the audio network hears in it (the ones queried)
    active: list[list[tuple[int, int]]]  # [start, end) samples where one of the heard labels is active

    def __len__(self) -> int:
        return len(self.audio)


def build_clip_pool(clips: Sequence[tuple[str, np.ndarray, tuple[str, ...]]], loaded: LoadedModel, *,
                    progress: Callable[[int, int], None] | None = None) -> ClipPool:
    """The clips of ``clips`` with at least one heard label (a window scoring it above
    ``HEARD_SCORE``), each with where its heard labels are active (:func:`activity_runs`, the
    whole clip when the scores hardly vary)."""
    pool = ClipPool(audio=[], labels=[], heard=[], active=[])
    for i, (_name, audio, labels) in enumerate(clips):
        s, times = window_scores(audio, loaded)
        columns = {c: s[:, loaded.labels.index(c)] for c in labels if c in loaded.labels}
        heard = tuple(sorted((c for c, v in columns.items() if v.max() > HEARD_SCORE),
                             key=lambda c: -float(columns[c].max())))[:MAX_CLIP_CLASSES]
        if heard:
            runs = sorted(r for c in heard for r in activity_runs(columns[c], times)[0])
            pool.audio.append(audio.astype(np.float32))
            pool.labels.append(tuple(labels))
            pool.heard.append(heard)
            pool.active.append([(a, min(b, len(audio))) for a, b in runs] or [(0, len(audio))])
        if progress:
            progress(i + 1, len(clips))
    return pool


@dataclass(frozen=True)
class CoSeparationMixture:
    """Two clips' segments mixed (and a background): the classes of each clip must add up to it."""

    mixture: np.ndarray  # (L,) float32
    sources: np.ndarray  # (2, L) float32: clip A's and clip B's segments as they are in the mixture
    classes: tuple[tuple[str, ...], tuple[str, ...]]  # the heard classes of each clip (the queries)
    clips: tuple[int, int]  # their clips in the pool


class CoSeparationSampler:
    """Draws :class:`CoSeparationMixture` s: two clips with disjoint label sets (any number of
    labels each), a segment of each where one of its heard classes is active, mixed at a random
    A-to-B ratio (``MixOptions.snr_pair``), with a background-only segment of ``background`` at
    ``background_prob`` (in neither target)."""

    def __init__(self, pool: ClipPool, labels: Sequence[str], opts: MixOptions = MixOptions(),
                 background: TrainingPool | None = None) -> None:
        self.pool, self.labels, self.opts, self.background = pool, list(labels), opts, background
        sets = sorted({frozenset(x) for x in pool.labels}, key=sorted)
        if not any(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1:]):
            raise UsageError("co-separation needs two clips with disjoint labels")
        self.length = int(round(opts.segment_seconds * SAMPLE_RATE))

    def _piece(self, clip: int, rng: np.random.Generator) -> np.ndarray:
        runs = self.pool.active[clip]
        a, b = runs[int(rng.integers(len(runs)))]
        return perturb(crop(self.pool.audio[clip], Segment(clip, a, b), self.length, rng), rng, self.opts)

    def sample(self, rng: np.random.Generator) -> CoSeparationMixture:
        o, n = self.opts, len(self.pool)
        while True:
            i, j = (int(k) for k in rng.choice(n, size=2, replace=False))
            if not set(self.pool.labels[i]) & set(self.pool.labels[j]):
                break
        xa, xb = self._piece(i, rng), self._piece(j, rng)
        if power(xa) <= 0 or power(xb) <= 0:  # pragma: no cover - a digitally silent crop
            return self.sample(rng)
        bgs = self.background.background if self.background is not None else []

        def background() -> np.ndarray:
            seg = bgs[int(rng.integers(len(bgs)))]
            return perturb(crop(self.background.audio[seg.clip], seg, self.length, rng), rng, o)

        m, sources, _ = mix_two(xa, xb, rng, o, background if bgs else None)
        return CoSeparationMixture(m, sources, (self.pool.heard[i], self.pool.heard[j]), (i, j))

    def batch(self, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` mixtures: mixture (n, L), sources (n, 2, L) and the class indices queried for each
        clip (n, 2, ``MAX_CLIP_CLASSES``), -1 where a clip has fewer classes."""
        items = [self.sample(rng) for _ in range(n)]
        classes = torch.full((n, 2, MAX_CLIP_CLASSES), -1, dtype=torch.long)
        for k, x in enumerate(items):
            for side, names in enumerate(x.classes):
                for q, c in enumerate(names):
                    classes[k, side, q] = self.labels.index(c)
        return (torch.from_numpy(np.stack([x.mixture for x in items])),
                torch.from_numpy(np.stack([x.sources for x in items])), classes)


def decode_manifest(manifest: str | Path, *, progress: Callable[[int, int], None] | None = None,
                    ) -> tuple[list[tuple[str, np.ndarray, tuple[str, ...]]], list[tuple[str, np.ndarray, tuple[str, ...]]]]:
    """The clips of a training ``labels.csv``, decoded (16 kHz mono): ``(train, holdout)``."""
    from avscene.io.decode import read_audio
    from avscene.train.data import read_manifest

    examples = read_manifest(manifest)
    train, held = [], []
    for i, ex in enumerate(examples):
        item = (ex.path.name, read_audio(ex.path, sample_rate=SAMPLE_RATE), tuple(ex.labels))
        (held if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1 else train).append(item)
        if progress:
            progress(i + 1, len(examples))
    return train, held


__all__ = ["ACTIVE_LEVEL", "HOLDOUT_EVERY", "MAX_CLIP_CLASSES", "MIN_ANCHOR_SNR_DB", "ClipPool", "CoSeparationMixture",
           "CoSeparationSampler", "MixOptions", "MixtureSampler", "PairMixture",
           "PairSampler", "QUIET_LEVEL",
           "SAMPLE_RATE", "Segment", "TrainingMixture", "TrainingPool", "activity_runs", "anchor_snr_db", "build_clip_pool", "build_pool",
           "crop", "decode_manifest", "keep_clean_anchors", "mix", "mix_two", "perturb", "power", "window_scores"]
