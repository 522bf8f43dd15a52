"""``report``: everything one page about a video shows, computed (the HTML writer only formats it).

One ``localize`` pass gives the classes, boxes, audio heat, events and timing. On
top of it this module decides what the page holds, within bounds that keep any
input's page small:

* **Thumbnails**: the sampled frames, at most ``max_thumbnails`` per class row
  (evenly spaced over the sampled instants), scaled to ``thumb_width`` pixels, each
  with that class's boxes drawn by the overlay's own rule (:mod:`avscene.io.draw`:
  only where the class is seen, one opacity scale, dashed and named so when the class
  is not a prediction).
* **Audio**: the soundtrack (16 kHz mono, as the model hears it) and, with
  ``separate``, the separated source and residual of each predicted class. A track
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

from avscene.io.decode import iter_frames, read_audio
from avscene.io.draw import BoxLayer, class_colours
from avscene.results import AudioTrack, LocalizeResult, ReportPage, SeparateResult, Thumbnail, Timing
from avscene.tasks.localize import LocalizeOptions, localize_file

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel

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


def build_page(path: str | Path, loaded: LoadedModel, opts: ReportOptions, *, version: str = "") -> ReportPage:
    """Localize one input and gather what its report shows; raises an ``AvsceneError`` if it cannot."""
    return page_from_localization(path, localize_file(path, loaded, opts.localize), loaded, opts, version=version)


def page_from_localization(path: str | Path, r: LocalizeResult, loaded: LoadedModel, opts: ReportOptions, *,
                           version: str = "") -> ReportPage:
    """What the report of ``path`` shows, given its localize result ``r``."""
    classes = tuple(r.timing) or tuple(r.classification.predicted)
    colours = class_colours([*r.visual, *r.audio, *classes])
    presence = {c: presence_word(*heard_seen(r, c)) for c in classes}
    instants = sorted(r.frame_times or {d.t for dets in r.visual.values() for d in dets})
    left_out: list[str] = []
    thumbs, poster = _thumbnails(Path(path), r, instants, classes, colours, opts, loaded.preprocess, left_out)
    tracks, seps = _tracks(Path(path), r, loaded, opts, left_out)
    if "visual" not in r.classification.modalities:
        left_out.append("frames: the input has no video stream (or the model no visual network)")
    if "audio" not in r.classification.modalities:
        left_out.append("audio: the input has no audio stream (or the model no audio network)")
    return ReportPage(localization=r, classes=classes, presence=presence, colours=colours, thumbnails=thumbs,
                      poster=poster, tracks=tracks, separations=seps, left_out=tuple(left_out),
                      n_frames=len(instants), command=opts.command, version=version)


def _thumbnails(path: Path, r: LocalizeResult, instants: Sequence[float], classes: Sequence[str],
                colours: dict[str, tuple[int, int, int]], opts: ReportOptions, pre,
                left_out: list[str]) -> tuple[dict[str, tuple[Thumbnail, ...]], Thumbnail | None]:
    """Each class row's frames with its boxes, and the index's poster (the middle shown frame)."""
    if not instants:
        return {c: () for c in classes}, None
    keep = [instants[i] for i in even_subset(len(instants), opts.max_thumbnails)]
    if len(keep) < len(instants):
        left_out.append(f"thumbnails: {len(keep)} of the {len(instants)} sampled frames are shown per class "
                        f"(evenly spaced; --max-thumbnails {opts.max_thumbnails})")
    rows: dict[str, list[Thumbnail]] = {c: [] for c in classes}
    poster = None
    wanted, layer = iter(keep), None
    want = next(wanted, None)
    for t, frame in iter_frames(path, fps=pre.fps, offset=pre.frame_offset,
                                   any_format=opts.localize.classify.any_format):
        if want is None:
            break
        if abs(t - want) > 1e-3:
            continue
        small, scale = _shrink(frame, opts.thumb_width)
        if layer is None:  # one size for every frame of an input
            layer = BoxLayer(r, (small.shape[1], small.shape[0]), scale=scale, colours=colours)
        for c in classes:
            img = small.copy()
            layer.draw(img, t, labels=(c,))
            rows[c].append(Thumbnail(t, c, img))
        if poster is None and t >= keep[len(keep) // 2] - 1e-3:
            poster = Thumbnail(t, None, _shrink(frame, POSTER_WIDTH)[0])
        want = next(wanted, None)
    return {c: tuple(v) for c, v in rows.items()}, poster


def _shrink(frame: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """(H, W, 3) → at most ``width`` px wide, aspect kept; and the scale applied."""
    h, w = frame.shape[:2]
    if w <= width:
        return np.ascontiguousarray(frame), 1.0
    scale = width / w
    size = (width, max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), scale


def _tracks(path: Path, r: LocalizeResult, loaded: LoadedModel, opts: ReportOptions,
            left_out: list[str]) -> tuple[tuple[AudioTrack, ...], tuple[SeparateResult, ...]]:
    """The soundtrack and, with ``opts.separate``, each predicted class's source and residual."""
    if "audio" not in r.classification.modalities:
        if opts.separate:
            left_out.append("separation: the input has no audio to separate")
        return (), ()
    rate = loaded.preprocess.sample_rate
    audio = read_audio(path, sample_rate=rate, any_format=opts.localize.classify.any_format)
    embed = len(audio) / rate <= opts.max_embed_seconds
    tracks = [AudioTrack("Original soundtrack (16 kHz mono, as the model hears it)", "original", None, audio,
                         rate, embed)]
    seps: list[SeparateResult] = []
    if opts.separate:
        from avscene.separation.registry import parse_method
        from avscene.tasks.separate import SeparateOptions, separate_file

        for label in r.classification.predicted:
            sep_opts = SeparateOptions(label=label, method=parse_method(opts.separate_method),
                                       any_format=opts.localize.classify.any_format, check_label=False)
            s = separate_file(path, loaded, sep_opts)
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
