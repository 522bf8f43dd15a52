"""``report``: everything one page about a video shows, computed (the HTML writer only formats it).

One ``localize`` pass gives the classes, boxes, audio heat, events and timing. On
top of it this module decides what the page holds, within bounds that keep any
input's page small. The input is decoded once: the analysis hands every decoded
chunk to a :class:`Decoded` (the soundtrack, and small copies of an evenly spaced
subset of the sampled frames), which the thumbnails, the audio players and the
separation share (a long input, more than one chunk, decodes its frames a second
time, streaming, only to snap boxes, as ``localize`` does):

* **Thumbnails**: the sampled frames, at most ``max_thumbnails`` per class row
  (evenly spaced over the sampled instants; over ``2 * max_thumbnails`` instants,
  the nearest of the frames kept while decoding: every ``s``-th, ``s`` a power of
  two, at most ``2 * max_thumbnails + 1`` held at a time), scaled to ``thumb_width`` pixels, each
  with that class's boxes drawn by the overlay's own rule (:mod:`avscene.io.draw`:
  only where the class is seen, one opacity scale, dashed and named so when the class
  is not a prediction).
* **Audio**: the soundtrack (16 kHz mono, as the model hears it) and, with
  ``separate``, the separated source and residual of each predicted class
  (:func:`avscene.tasks.separate.separate_samples` of the soundtrack). A track
  longer than ``max_embed_seconds`` is marked to be written beside the page.
* **What was left out**, in words, for the page to state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from avscene.io.draw import BoxLayer, class_colours
from avscene.results import AudioTrack, LocalizeResult, ReportPage, SeparateResult, Thumbnail, Timing
from avscene.tasks._pipeline import analyse, chunk_seconds_for
from avscene.tasks.localize import LocalizeOptions, localize_from_analysis, needs_frames, resolve_labels

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel
    from avscene.io.decode import ClipChunk

MAX_THUMBNAILS = 24  # per class row: 24 x 320-px JPEGs is ~0.3 MB per class
THUMB_WIDTH = 320  # px: shown at ~100 px in the row, at this size when clicked
POSTER_WIDTH = 120  # px: the index's thumbnail
MAX_EMBED_SECONDS = 120.0  # longer audio goes beside the page (Opus at 24 kb/s: ~0.35 MB per minute)


@dataclass(frozen=True)
class ReportOptions:
    """What a report shows and the bounds that keep it small."""

    localize: LocalizeOptions = field(default_factory=LocalizeOptions)
    max_thumbnails: int = MAX_THUMBNAILS  # frames per class row, evenly spaced; 0: none
    thumb_width: int = THUMB_WIDTH  # px; smaller frames are kept at their size
    max_embed_seconds: float = MAX_EMBED_SECONDS  # audio up to this long is embedded in the page
    separate: bool = False  # also separate each predicted class (source and residual tracks)
    separate_method: str = "auto"  # the separation method (avscene.separation.registry.MethodName)
    command: str = ""  # the command line that made the report, shown on the page
    version: str = ""  # the avscene version that made it, shown on the page


def heard_seen(result: LocalizeResult, label: str) -> tuple[bool, bool]:
    """Whether ``label`` is heard and whether it is seen anywhere in the input.

    The classifier's per-modality video-level decisions (``ClassParse.heard`` / ``.seen``) when
    the result carries them; else read from ``timing``: heard = any heard interval, seen = any
    seen interval.
    """
    for p in result.classification.parse:
        if p.label == label:
            return p.heard, p.seen
    tm: Timing | None = result.timing.get(label)
    return (bool(tm.heard), bool(tm.seen)) if tm is not None else (False, False)


def presence_word(heard: bool, seen: bool) -> str:
    """Heard and seen *somewhere* in the input: "heard_and_seen" (at the same time is ``timing.both``)."""
    return "heard_and_seen" if heard and seen else "heard" if heard else "seen" if seen else "neither"


def even_subset(n: int, k: int) -> list[int]:
    """At most ``k`` of the indices ``0..n-1``, evenly spaced, first and last included."""
    if k <= 0 or n <= 0:
        return []
    if n <= k:
        return list(range(n))
    return sorted({int(i) for i in np.round(np.linspace(0, n - 1, k))})


class Decoded:
    """What a report keeps of one decoding pass over its input (a :class:`~avscene.tasks._pipeline.ChunkObserver`):
    the soundtrack at the model's rate, and small copies (``thumb_width`` px wide) of at most
    ``2 * max_thumbnails + 1`` of the sampled frames, evenly spaced (every ``stride``-th; the
    stride doubles whenever more would be held), the last one included."""

    def __init__(self, max_thumbnails: int, thumb_width: int = THUMB_WIDTH) -> None:
        self._k, self._width = max_thumbnails, thumb_width
        self._audio: list[np.ndarray] = []
        self.n_frames = 0  # sampled frames seen
        self.stride = 1
        self._kept: list[tuple[int, float, np.ndarray, float]] = []  # (index, t, small frame, scale)
        self._last: tuple[int, float, np.ndarray, float] | None = None
        self._audio_n = 0

    def opened(self, has_video: bool, has_audio: bool) -> None:
        pass

    def add(self, chunk: ClipChunk) -> None:
        if chunk.audio is not None:
            self._audio.append(np.array(chunk.audio, dtype=np.float32))
        if chunk.frames is None or self._k <= 0:
            return
        for t, frame in zip(chunk.frame_times.tolist(), chunk.frames):
            i, self.n_frames = self.n_frames, self.n_frames + 1
            if i % self.stride == 0:
                self._kept.append((i, t, *_small_copy(frame, self._width)))
                if len(self._kept) > 2 * self._k:
                    self.stride *= 2
                    self._kept = [x for x in self._kept if x[0] % self.stride == 0]
        if len(chunk.frames):  # the last frame so far (a small copy): always shown
            self._last = (self.n_frames - 1, float(chunk.frame_times[-1]), *_small_copy(chunk.frames[-1], self._width))

    def soundtrack(self) -> np.ndarray:
        """The whole audio, (N,) float32 mono at the model's rate (what ``read_audio`` decodes)."""
        if len(self._audio) != 1:
            self._audio = [np.concatenate(self._audio) if self._audio else np.zeros(0, dtype=np.float32)]
        return self._audio[0]

    def frames(self) -> list[tuple[float, np.ndarray, float]]:
        """The frames kept, ``(t, small frame, scale)``, in time order."""
        kept = list(self._kept)
        if self._last is not None and (not kept or kept[-1][0] < self._last[0]):
            kept.append(self._last)
        return [(t, img, scale) for _, t, img, scale in kept]

    @classmethod
    def of(cls, path: str | Path, loaded: LoadedModel, opts: ReportOptions) -> Decoded:
        """Decode ``path`` for its report alone (one pass; when no analysis shares it)."""
        from avscene.io.decode import iter_chunks

        pre = loaded.preprocess
        out = cls(opts.max_thumbnails, opts.thumb_width)
        seconds = lambda header: chunk_seconds_for(header, fps=pre.fps)  # noqa: E731 - as the analysis chunks
        with iter_chunks(path, chunk_seconds=seconds, fps=pre.fps, offset=pre.frame_offset,
                         sample_rate=pre.sample_rate, any_format=opts.localize.classify.any_format) as reader:
            for chunk in reader:
                out.add(chunk)
        return out


def build_page(path: str | Path, loaded: LoadedModel, opts: ReportOptions, *, version: str = "") -> ReportPage:
    """Localize one input and gather what its report shows, decoding it once; raises an ``AvsceneError``
    if it cannot."""
    loc = opts.localize
    resolve_labels(loc.labels, (), list(loaded.labels))  # fail early on an unknown --label
    decoded = Decoded(opts.max_thumbnails, opts.thumb_width)
    a = analyse(path, loaded, edge_model=loc.classify.edge_model, any_format=loc.classify.any_format,
                keep_frames=needs_frames(loc), observer=decoded)
    r = localize_from_analysis(Path(path), a, loaded, loc)
    del a  # its frames (kept for snapping) are not needed any more
    return page_from_localization(path, r, loaded, opts, version=version, decoded=decoded)


def page_from_localization(path: str | Path, r: LocalizeResult, loaded: LoadedModel, opts: ReportOptions, *,
                           version: str = "", decoded: Decoded | None = None) -> ReportPage:
    """What the report of ``path`` shows, given its localize result ``r`` and what was kept of decoding
    it (``decoded``; None: it is decoded now, once)."""
    classes = tuple(r.timing) or tuple(r.classification.predicted)
    colours = class_colours([*r.visual, *r.audio, *classes])
    presence = {c: presence_word(*heard_seen(r, c)) for c in classes}
    instants = sorted(r.frame_times or {d.t for dets in r.visual.values() for d in dets})
    if decoded is None:
        decoded = Decoded.of(path, loaded, opts)
    left_out: list[str] = []
    thumbs, poster = _thumbnails(r, instants, classes, colours, opts, decoded, left_out)
    tracks, seps = _tracks(Path(path), r, loaded, opts, decoded, left_out)
    if "visual" not in r.classification.modalities:
        left_out.append("frames: the input has no video stream (or the model no visual network)")
    if "audio" not in r.classification.modalities:
        left_out.append("audio: the input has no audio stream (or the model no audio network)")
    return ReportPage(localization=r, classes=classes, presence=presence, colours=colours, thumbnails=thumbs,
                      poster=poster, tracks=tracks, separations=seps, left_out=tuple(left_out),
                      n_frames=len(instants), command=opts.command, version=version)


def _chosen_frames(instants: Sequence[float], frames: Sequence[tuple[float, np.ndarray, float]],
                   k: int) -> list[tuple[float, np.ndarray, float]]:
    """At most ``k`` of ``frames`` (those at one of ``instants``): the nearest to each of ``k`` instants
    evenly spaced (:func:`even_subset`), each once, in time order."""
    frames = [f for f in frames if any(abs(f[0] - t) <= 1e-3 for t in instants)]
    if not frames:
        return []
    times = np.array([f[0] for f in frames])
    picked = sorted({int(np.argmin(np.abs(times - instants[i]))) for i in even_subset(len(instants), k)})
    return [frames[i] for i in picked]


def _thumbnails(r: LocalizeResult, instants: Sequence[float], classes: Sequence[str],
                colours: dict[str, tuple[int, int, int]], opts: ReportOptions, decoded: Decoded,
                left_out: list[str]) -> tuple[dict[str, tuple[Thumbnail, ...]], Thumbnail | None]:
    """Each class row's frames with its boxes, and the index's poster (the middle shown frame)."""
    keep = _chosen_frames(instants, decoded.frames(), opts.max_thumbnails) if instants else []
    if len(keep) < len(instants):
        left_out.append(f"thumbnails: {len(keep)} of the {len(instants)} sampled frames are shown per class "
                        f"(evenly spaced; --max-thumbnails {opts.max_thumbnails})")
    if not keep:
        return {c: () for c in classes}, None
    _, first, scale = keep[0]
    layer = BoxLayer(r, (first.shape[1], first.shape[0]), scale=scale, colours=colours)  # one size per input
    rows: dict[str, list[Thumbnail]] = {c: [] for c in classes}
    for t, small, _ in keep:
        for c in classes:
            img = small.copy()
            layer.draw(img, t, labels=(c,))
            rows[c].append(Thumbnail(t, c, img))
    t, small, _ = keep[len(keep) // 2]
    return {c: tuple(v) for c, v in rows.items()}, Thumbnail(t, None, _shrink(small, POSTER_WIDTH)[0])


def _small_copy(frame: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """:func:`_shrink` that never returns a view of ``frame`` (which would keep its whole chunk alive)."""
    img, scale = _shrink(frame, width)
    return (img.copy() if np.shares_memory(img, frame) else img), scale


def _shrink(frame: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """(H, W, 3) → at most ``width`` px wide, aspect kept; and the scale applied."""
    h, w = frame.shape[:2]
    if w <= width:
        return np.ascontiguousarray(frame), 1.0
    scale = width / w
    size = (width, max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), scale


def _tracks(path: Path, r: LocalizeResult, loaded: LoadedModel, opts: ReportOptions, decoded: Decoded,
            left_out: list[str]) -> tuple[tuple[AudioTrack, ...], tuple[SeparateResult, ...]]:
    """The soundtrack and, with ``opts.separate``, each predicted class's source and residual, all
    from the decoded soundtrack."""
    if "audio" not in r.classification.modalities:
        if opts.separate:
            left_out.append("separation: the input has no audio to separate")
        return (), ()
    rate = loaded.preprocess.sample_rate
    audio = decoded.soundtrack()
    embed = len(audio) / rate <= opts.max_embed_seconds
    tracks = [AudioTrack("Original soundtrack (16 kHz mono, as the model hears it)", "original", None, audio,
                         rate, embed)]
    seps: list[SeparateResult] = []
    if opts.separate:
        from avscene.separation.registry import parse_method
        from avscene.tasks.separate import SeparateOptions, separate_samples

        sep_opts = SeparateOptions(method=parse_method(opts.separate_method),
                                   any_format=opts.localize.classify.any_format, check_label=False)
        for label in r.classification.predicted:
            s = separate_samples(path, audio, loaded, label, sep_opts)
            seps.append(s.result)
            how = s.result.method
            tracks.append(AudioTrack(f"{label}: separated source ({how})", "source", label, s.source,
                                     s.result.sample_rate, embed))
            tracks.append(AudioTrack(f"{label}: residual, everything else ({how})", "residual", label, s.residual,
                                     s.result.sample_rate, embed))
        if not r.classification.predicted:
            left_out.append("separation: no class is predicted, so nothing was separated")
    if not embed:
        left_out.append(f"audio: {len(audio) / rate:.0f} s is longer than --max-embed-seconds "
                        f"{opts.max_embed_seconds:g}: the tracks are written beside the page and linked")
    return tuple(tracks), tuple(seps)
