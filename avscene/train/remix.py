"""Bootstrapped remixing (``train-separator --objective remix``): pseudo-clean targets from weak labels.

RemixIT (Tzinis, Adi, Ithapu, Xu, Smaragdis & Kumar, IEEE JSTSP 2022), with the classes known
from the video-level labels. Mix-and-separate asks the network for a clip's *whole recording*,
its background included, so it learns to keep background; here the targets are a teacher's
estimates instead, and the background is what the teacher left over:

1. **Teacher pass** (:func:`teacher_pass`): a separator (the checkpoint's default method,
   ``hybrid`` for the bundled model) separates the label of every single-label training clip
   whose label the audio network hears (:func:`~avscene.train.masknet_data.build_pool`): a
   pseudo-clean source ``s`` and its residual ``r`` (``s + r`` is the clip). They are cached
   as float32 WAV files with a ``teacher.json`` (:class:`TeacherCache`), the held-out clips
   (every ``HOLDOUT_EVERY``-th) marked.
2. **Remixes** (:class:`RemixSampler`): a segment of ``s_A`` where A is active (the anchors),
   with one of ``s_B`` (another clip of another class) at a random A-to-B ratio for a pair, and
   the residual ``r_C`` of a third clip of a third class at a random sources-to-residual ratio
   (``MixOptions.snr_background``, at ``background_prob``), each piece with its own speed and
   equaliser. Queried with A's class the target is ``s_A`` as it is in the remix, with B's
   ``s_B``: nothing clean is used, the targets are the teacher's (self-training). The
   residual is in no target, so keeping background costs as much as keeping the other class.
3. **Hold-out**: the held-out clips' estimates remixed the same way, scored against the
   teacher's estimates (:func:`~avscene.evaluation.evaluate_pairs.remix_items`). It is biased
   towards the teacher (what the teacher left in ``s_A`` or put in ``r_A`` counts as right), but
   unlike the training hold-out it can tell separating from keeping background.

The student becomes a teacher by building a new cache with its own checkpoint (RemixIT's
continual update, one round at a time).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from avscene.errors import UsageError
from avscene.train.masknet_data import (
    EPS,
    SAMPLE_RATE,
    MixOptions,
    PairMixture,
    Segment,
    TrainingMixture,
    TrainingPool,
    crop,
    perturb,
    power,
)

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel

TEACHER_FILE = "teacher.json"
CACHE_VERSION = 1


# --------------------------------------------------------------------------- the teacher's estimates


@dataclass(frozen=True)
class TeacherClip:
    """One clip's estimates in a :class:`TeacherCache` (paths relative to the cache folder)."""

    name: str  # the clip's file name (as in the manifest)
    label: str
    holdout: bool  # a held-out training clip (never trained on)
    source: str  # the teacher's estimate of ``label``
    residual: str  # the clip minus that estimate
    active: tuple[tuple[int, int], ...]  # [start, end) samples where the audio network hears the label

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "holdout": self.holdout, "source": self.source,
                "residual": self.residual, "active": [list(r) for r in self.active]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TeacherClip:
        return cls(str(d["name"]), str(d["label"]), bool(d["holdout"]), str(d["source"]), str(d["residual"]),
                   tuple((int(a), int(b)) for a, b in d["active"]))


@dataclass(frozen=True)
class TeacherCache:
    """What :func:`teacher_pass` wrote: who the teacher was, and each clip's estimates."""

    model: str  # the teacher checkpoint, as given
    method: str  # its separation method
    manifest: str  # the training manifest's file name
    sample_rate: int
    clips: tuple[TeacherClip, ...]
    version: int = CACHE_VERSION

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "model": self.model, "method": self.method, "manifest": self.manifest,
                "sample_rate": self.sample_rate, "clips": [c.to_json() for c in self.clips]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TeacherCache:
        if d.get("version") != CACHE_VERSION:
            raise UsageError(f"teacher cache version {d.get('version')!r}, expected {CACHE_VERSION}: build it again")
        return cls(str(d["model"]), str(d["method"]), str(d["manifest"]), int(d["sample_rate"]),
                   tuple(TeacherClip.from_json(c) for c in d["clips"]))

    @classmethod
    def read(cls, folder: str | Path) -> TeacherCache:
        path = Path(folder) / TEACHER_FILE
        if not path.is_file():
            raise UsageError(f"{path} not found: {folder} is not a teacher cache (train-separator --objective "
                             "remix --teacher-cache DIR builds one)")
        return cls.from_json(json.loads(path.read_text()))


def _write_wav(path: Path, x: np.ndarray, sr: int) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(x, np.float32), sr, subtype="FLOAT")


def _read_wav(path: Path) -> np.ndarray:
    import soundfile as sf

    x, _ = sf.read(str(path), dtype="float32", always_2d=False)
    return np.asarray(x, np.float32)


def teacher_pass(train: TrainingPool, held: TrainingPool, loaded: LoadedModel, folder: str | Path, *,
                 manifest: str, method: str = "auto",
                 progress: Callable[[int, int], None] | None = None) -> TeacherCache:
    """Separate each heard single-label clip of ``train`` and ``held`` (pools of
    :func:`~avscene.train.masknet_data.build_pool`, unfiltered) with ``loaded``'s ``method``
    (``separate``'s chunks and cross-fades) and cache source and residual in ``folder``.

    Only clips whose label the audio network hears and that have an anchor are kept (a remix
    crops where the class is active).
    """
    from avscene.separation.registry import parse_method
    from avscene.tasks.separate import SeparateOptions, method_for, separate_audio

    folder = Path(folder)
    opts = SeparateOptions(method=parse_method(method), check_label=False)
    chosen = method_for(opts, loaded)
    todo = [(pool, k, held_out) for pool, held_out in ((train, False), (held, True))
            for k in range(len(pool.audio)) if (not pool.heard or pool.heard[k])]
    clips = []
    for i, (pool, k, held_out) in enumerate(todo):
        label = pool.labels[k][0]
        active = tuple(sorted((s.start, s.end) for s in pool.anchors.get(label, []) if s.clip == k))
        if active:
            source, residual, _, _ = separate_audio(pool.audio[k], loaded, loaded.labels.index(label), opts)
            stem = Path(pool.names[k]).stem
            rel_s, rel_r = f"source/{stem}.wav", f"residual/{stem}.wav"
            _write_wav(folder / rel_s, source, SAMPLE_RATE)
            _write_wav(folder / rel_r, residual, SAMPLE_RATE)
            clips.append(TeacherClip(pool.names[k], label, held_out, rel_s, rel_r, active))
        if progress:
            progress(i + 1, len(todo))
    cache = TeacherCache(loaded.model_id, chosen.name.value, manifest, SAMPLE_RATE, tuple(clips))
    (folder / TEACHER_FILE).write_text(json.dumps(cache.to_json(), indent=1) + "\n")
    return cache


# --------------------------------------------------------------------------- remixes


@dataclass
class RemixPool:
    """The teacher's estimates of one part of a cache (training or held-out clips), in memory."""

    sources: list[np.ndarray]  # (N,) float32: the teacher's estimate of each clip's label
    residuals: list[np.ndarray]  # (N,) float32: the rest of each clip
    labels: list[str]
    active: list[tuple[tuple[int, int], ...]]
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sources)

    @classmethod
    def load(cls, folder: str | Path, *, holdout: bool) -> RemixPool:
        """The held-out (``holdout``) or the training clips of the cache in ``folder``."""
        folder = Path(folder)
        cache = TeacherCache.read(folder)
        pool = cls([], [], [], [], [])
        for c in cache.clips:
            if c.holdout == holdout:
                pool.sources.append(_read_wav(folder / c.source))
                pool.residuals.append(_read_wav(folder / c.residual))
                pool.labels.append(c.label)
                pool.active.append(c.active)
                pool.names.append(c.name)
        return pool


def remix(sources: Sequence[np.ndarray], residual: np.ndarray | None, *, source_db: Sequence[float],
          residual_db: float, level_db: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sources (and a residual) mixed at given ratios, the whole at a given level.

    Args:
        sources: K segments of one length; the first is the reference.
        residual: a segment of that length, or None (none added).
        source_db: K - 1 ratios (dB) of the first source over each other one.
        residual_db: the sources' sum over the residual (dB).
        level_db: RMS of the mixture (dBFS).

    Returns:
        ``(mixture (L,), sources (K, L), residual (L,))`` float32 as they are in the mixture
        (zeros for no residual): the sources plus the residual are the mixture.
    """
    if len(source_db) != len(sources) - 1:
        raise UsageError("remix: one ratio per source after the first")
    first = np.asarray(sources[0], np.float64)
    if power(first) <= 0:
        raise UsageError("remix: the first source is silent")
    scaled = [first]
    for x, db in zip(sources[1:], source_db):
        x = np.asarray(x, np.float64)
        scaled.append(x * math.sqrt(power(first) / (max(power(x), EPS) * 10 ** (db / 10))) if power(x) > 0 else x)
    s = np.stack(scaled)
    total = s.sum(axis=0)
    r = np.zeros_like(total)
    if residual is not None:
        x = np.asarray(residual, np.float64)
        if power(x) > 0:
            r = x * math.sqrt(power(total) / (power(x) * 10 ** (residual_db / 10)))
    g = math.sqrt(10 ** (level_db / 10) / max(power(total + r), EPS))
    s32, r32 = (s * g).astype(np.float32), (r * g).astype(np.float32)
    return s32.sum(axis=0) + r32, s32, r32


@dataclass(frozen=True)
class Remix:
    """A remix of teacher estimates: each source is the target of its class."""

    mixture: np.ndarray  # (L,) float32
    sources: np.ndarray  # (K, L) float32, K = 1 or 2: the teacher's estimates as they are in the mixture
    residual: np.ndarray  # (L,) float32: a third clip's residual (zeros when none was added)
    labels: tuple[str, ...]  # the class of each source (distinct)
    clips: tuple[int, ...]  # the clip of each source in the pool
    residual_clip: int | None  # the clip whose residual was added

    def as_training_mixture(self) -> TrainingMixture:
        """A one-source remix as the hold-out scorer of :mod:`avscene.train.masknet` takes it."""
        return TrainingMixture(self.mixture, self.sources[0], self.labels[0], ("residual",))

    def as_pair(self) -> PairMixture:
        """A two-source remix as :func:`~avscene.train.masknet.pair_holdout_score` takes it."""
        return PairMixture(self.mixture, self.sources, (self.labels[0], self.labels[1]),
                           (self.clips[0], self.clips[1]), self.residual_clip is not None)


class RemixSampler:
    """Draws :class:`Remix` es of one or two sources of different classes from a :class:`RemixPool`
    (see the module docstring, item 2); deterministic by the generator it is given."""

    def __init__(self, pool: RemixPool, labels: Sequence[str], opts: MixOptions = MixOptions()) -> None:
        self.pool, self.labels, self.opts = pool, list(labels), opts
        unknown = sorted(set(pool.labels) - set(self.labels))
        if unknown:
            raise UsageError(f"the teacher cache has classes the model does not know: {', '.join(unknown)}")
        self.by_class: dict[str, list[int]] = {}
        for k, c in enumerate(pool.labels):
            self.by_class.setdefault(c, []).append(k)
        self.classes = sorted(self.by_class)
        if not self.classes:
            raise UsageError("the teacher cache holds no clip to remix")
        self.length = int(round(opts.segment_seconds * SAMPLE_RATE))

    def _piece(self, x: np.ndarray, runs: Sequence[tuple[int, int]], rng: np.random.Generator) -> np.ndarray:
        a, b = runs[int(rng.integers(len(runs)))] if runs else (0, len(x))
        return perturb(crop(x, Segment(0, a, b), self.length, rng), rng, self.opts)

    def sample(self, rng: np.random.Generator, n_sources: int = 2) -> Remix:
        """A remix of ``n_sources`` (1 or 2) clips of different classes, with a third class's residual."""
        if n_sources not in (1, 2):
            raise UsageError(f"a remix has one or two sources, not {n_sources}")
        if len(self.classes) < n_sources:
            raise UsageError(f"a remix of {n_sources} sources needs clips of {n_sources} classes")
        o, p = self.opts, self.pool
        classes = [self.classes[int(i)] for i in rng.choice(len(self.classes), size=n_sources, replace=False)]
        clips = [self.by_class[c][int(rng.integers(len(self.by_class[c])))] for c in classes]
        pieces = [self._piece(p.sources[k], p.active[k], rng) for k in clips]
        if any(power(x) <= 0 for x in pieces):  # pragma: no cover - a digitally silent estimate
            return self.sample(rng, n_sources)
        source_db = [float(rng.uniform(*o.snr_pair)) for _ in pieces[1:]]
        residual, rc = None, None
        if o.background_prob > 0 and rng.random() < o.background_prob:
            others = [k for k in range(len(p)) if p.labels[k] not in classes]
            if others:
                rc = others[int(rng.integers(len(others)))]
                residual = self._piece(p.residuals[rc], (), rng)
        residual_db = float(rng.uniform(*o.snr_background))
        m, s, r = remix(pieces, residual, source_db=source_db, residual_db=residual_db,
                        level_db=float(rng.uniform(*o.level_db)))
        return Remix(m, s, r, tuple(classes), tuple(clips), rc if residual is not None else None)

    def batch(self, rng: np.random.Generator, n: int, n_sources: int,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` remixes: mixture (n, L), sources (n, n_sources, L), class indices (n, n_sources)."""
        items = [self.sample(rng, n_sources) for _ in range(n)]
        return (torch.from_numpy(np.stack([x.mixture for x in items])),
                torch.from_numpy(np.stack([x.sources for x in items])),
                torch.tensor([[self.labels.index(c) for c in x.labels] for x in items]))


__all__ = ["CACHE_VERSION", "TEACHER_FILE", "Remix", "RemixPool", "RemixSampler", "TeacherCache", "TeacherClip",
           "remix", "teacher_pass"]
