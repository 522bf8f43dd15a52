"""Training data: manifests, the on-disk proposal cache, and balanced batch sampling.

A training example is a *bag* of proposals with video-level labels only. Decoding
and EdgeBoxes are the slow part, so each clip is prepared once and cached on
disk (key: SHA-1 of the file's bytes + the preprocessing parameters + the cache
format), holding

* ``audio``: (N,) float32 mono waveform at 16 kHz — log-mel patches are
  recomputed from it on every epoch (a few ms), so the waveform can be augmented;
* ``frames``: (T, 3, h, w) uint8 frames already resized to the network's size;
* ``boxes``: (T, M, 4) float32 EdgeBoxes boxes in *resized* pixels;
* ``frame_times``: (T,) seconds.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avscene.config import PreprocessConfig
from avscene.errors import ConfigError, UsageError

CACHE_FORMAT = 1  # bump when the cached arrays change meaning
BAG_ONLY_PARAMS = ("audio_proposals", "ncp_components", "band_norm")  # computed at batch time: not part of what is cached


@dataclass(frozen=True)
class Example:
    """One manifest row: a media file and its video-level labels."""

    path: Path
    labels: tuple[str, ...]


def read_manifest(csv_path: str | Path, *, class_names: Sequence[str] | None = None) -> list[Example]:
    """Read a ``clip,labels`` CSV (labels ``;``-separated).

    ``clip`` is a path relative to the CSV, or a bare id resolved to
    ``clips/<id>.mp4`` next to the CSV (the avbench layout).

    Raises:
        UsageError: missing file/columns, unknown label (when ``class_names`` given).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise UsageError(f"manifest {csv_path} does not exist")
    root = csv_path.parent
    out: list[Example] = []
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"clip", "labels"} <= set(reader.fieldnames):
            raise UsageError(f"manifest {csv_path} needs the columns 'clip,labels'")
        for i, row in enumerate(reader, start=2):
            clip = row["clip"].strip()
            p = root / clip
            if not p.suffix:
                p = root / "clips" / f"{clip}.mp4"
            labels = tuple(x.strip() for x in (row["labels"] or "").split(";") if x.strip())
            if class_names is not None:
                bad = [x for x in labels if x not in class_names]
                if bad:
                    raise UsageError(f"{csv_path}:{i}: unknown label(s) {bad}; known: {list(class_names)}")
            out.append(Example(p, labels))
    if not out:
        raise UsageError(f"manifest {csv_path} has no rows")
    return out


def class_names_of(examples: Sequence[Example]) -> list[str]:
    """Sorted set of labels used by a manifest."""
    return sorted({x for e in examples for x in e.labels})


def targets(examples: Sequence[Example], class_names: Sequence[str]) -> np.ndarray:
    """(N, C) {0,1} float32 multi-hot label matrix."""
    idx = {c: i for i, c in enumerate(class_names)}
    y = np.zeros((len(examples), len(class_names)), np.float32)
    for n, e in enumerate(examples):
        for lab in e.labels:
            y[n, idx[lab]] = 1.0
    return y


def split_examples(examples: list[Example], frac: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Deterministic hold-out split, stratified by label set so every class is validated."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, e in enumerate(examples):
        groups.setdefault(e.labels, []).append(i)
    held: set[int] = set()
    for key in sorted(groups):
        idx = rng.permutation(groups[key])
        held.update(idx[: int(round(len(idx) * frac))].tolist())
    train = [e for i, e in enumerate(examples) if i not in held]
    val = [e for i, e in enumerate(examples) if i in held]
    return train, val


@dataclass(frozen=True)
class CachedClip:
    """The prepared arrays of one clip (see the module docstring)."""

    audio: np.ndarray | None  # (N,) float32
    frames: np.ndarray | None  # (T, 3, h, w) uint8
    boxes: np.ndarray | None  # (T, M, 4) float32, resized pixels
    frame_times: np.ndarray | None  # (T,) float64


def file_digest(path: Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha1()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_key(path: Path, pre: PreprocessConfig, edge_model: str | None) -> str:
    """Content + parameters key: the same bytes with the same preprocessing hit the cache.

    Only the parameters the cached arrays depend on count: the audio bag type is
    computed from the cached waveform at batch time, so changing it reuses the entry.
    """
    relevant = {k: v for k, v in pre.to_dict().items() if k not in BAG_ONLY_PARAMS}
    params = json.dumps({"pre": relevant, "edge_model": edge_model, "format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha1((file_digest(path) + params).encode()).hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get("AVSCENE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "avscene")
    return Path(base) / "clips"


def prepare_clip(path: Path, pre: PreprocessConfig, *, edge_model: str | None = None) -> CachedClip:
    """Decode one file and compute its visual proposals (the expensive, cacheable part)."""
    from avscene.io.decode import decode
    from avscene.nn.inputs import frames_to_uint8_tensor
    from avscene.proposals.visual import visual_proposals

    clip = decode(path, fps=pre.fps, offset=pre.frame_offset, sample_rate=pre.sample_rate)
    frames = boxes = times = None
    if clip.frames is not None:
        vp = visual_proposals(clip.frames, clip.frame_times, cfg=pre, edge_model=edge_model)
        x, scale = frames_to_uint8_tensor(clip.frames, image_size=pre.image_size)
        frames, boxes, times = x.numpy(), (vp.boxes * scale).astype(np.float32), np.asarray(vp.times)
    audio = None if clip.audio is None else clip.audio.astype(np.float32)
    return CachedClip(audio=audio, frames=frames, boxes=boxes, frame_times=times)


class ClipCache:
    """Prepared clips on disk, one ``.npz`` per (file content, preprocessing)."""

    def __init__(self, root: Path | None, pre: PreprocessConfig, *, edge_model: str | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.pre = pre
        self.edge_model = edge_model
        self.hits = 0
        self.misses = 0

    def path_for(self, media: Path) -> Path:
        return self.root / f"{cache_key(media, self.pre, self.edge_model)}.npz"

    def get(self, media: Path) -> CachedClip:
        """The cached arrays of ``media``, preparing and storing them on a miss."""
        target = self.path_for(media)
        if target.is_file():
            try:
                with np.load(target) as z:
                    self.hits += 1
                    return CachedClip(**{f.name: (z[f.name] if f.name in z.files else None)
                                         for f in dataclasses.fields(CachedClip)})
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # damaged: rebuilt, not trusted
                target.unlink(missing_ok=True)
        self.misses += 1
        clip = prepare_clip(media, self.pre, edge_model=self.edge_model)
        self._store(target, clip)
        return clip

    def _store(self, target: Path, clip: CachedClip) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in dataclasses.asdict(clip).items() if v is not None}
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp.npz")
        os.close(fd)
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, target)  # atomic: readers never see a half-written entry
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _prepare_one(args: tuple[Path, Path | None, PreprocessConfig, str | None]) -> str:
    media, root, pre, edge_model = args
    import torch

    torch.set_num_threads(1)
    ClipCache(root, pre, edge_model=edge_model).get(media)
    return str(media)


def warm_cache(cache: ClipCache, paths: Sequence[Path], *, workers: int = 1) -> Iterator[str]:
    """Prepare every clip that is not cached yet, in ``workers`` processes; yields paths done."""
    todo = [p for p in paths if not cache.path_for(p).is_file()]
    for p in paths:
        if p not in todo:
            yield str(p)
    if workers <= 1:
        for p in todo:
            cache.get(p)
            yield str(p)
        return
    import multiprocessing as mp

    from avscene.threads import budget, child_thread_budget, share

    ctx = mp.get_context("spawn")
    with child_thread_budget(share(budget(), workers)), ctx.Pool(workers) as pool:
        args = [(p, cache.root, cache.pre, cache.edge_model) for p in todo]
        yield from pool.imap_unordered(_prepare_one, args)


class BalancedBatchSampler:
    """Batches drawn label-first, as in the paper: pick a class uniformly, then an example of it.

    This gives every class the same expected number of positive bags per batch
    whatever the class frequencies of the training set.
    """

    def __init__(self, y: np.ndarray, *, batch_size: int, batches_per_epoch: int, seed: int):
        if batch_size < 1:
            raise ConfigError("batch size must be >= 1")
        self.by_class = [np.flatnonzero(y[:, c] > 0) for c in range(y.shape[1])]
        self.classes = np.array([c for c, ix in enumerate(self.by_class) if len(ix)])
        if len(self.classes) == 0:
            raise ConfigError("no class has a positive example")
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The batches of one epoch (deterministic in seed and epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        out = []
        for _ in range(self.batches_per_epoch):
            cls = rng.choice(self.classes, size=self.batch_size)
            out.append(np.array([rng.choice(self.by_class[c]) for c in cls]))
        return out


def shuffled_batches(n: int, *, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Plain shuffled batches (``--no-balance``)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]
