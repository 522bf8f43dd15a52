"""Drawing a ``localize`` result on pictures: boxes with readable labels, and the audio heat strip.

One rule for the overlay video (:mod:`avscene.io.render`) and the report's thumbnails
(:mod:`avscene.io.report_html` via :mod:`avscene.tasks.report`):

* **Only where seen.** A class's boxes of a sampled instant are drawn only when
  the result reports the class seen at that instant (``timing[label].seen``);
  elsewhere the picture shows nothing for it, so no faint box sits on the
  background before the object appears.
* **One opacity scale.** A box's opacity comes from its score on a scale shared by
  every frame and class (:func:`box_opacity`), never min–max per class, so one
  strong frame does not make the others faint.
* **Readable labels.** The class name is written on an opaque plate in the class
  colour (black or white ink, whichever contrasts more), whatever the box's opacity.
* **Not predicted looks different.** A class that only a modality's decision reports
  (``LocalizeResult.status`` ``seen_only``, ``heard_only``, ``heard_and_seen_only``) is
  drawn with a dashed outline and named "<class> (seen only)" (:func:`shown_name`); a
  predicted class, or one asked for with ``--label``, with a solid outline and its name.
* **Heat strip.** One inferno row per reported class, on one absolute scale anchored at
  the event threshold (:func:`heat_levels`): a window in a sound event of the class is
  bright, every other window dark, so bright means exactly what ``events`` says. The
  class names sit in a margin to the left of the cells, never over them, and a legend
  row above the cells states the threshold (where the rows are tall enough for text).

Colours: the Okabe–Ito palette (distinguishable with every common colour-vision
deficiency), black left out (invisible on dark pictures).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from avscene.results import (
    SHOWN_AS_PREDICTED, AudioSegment, BoxDetection, Event, LocalizeResult, marked_name,
)
from avscene.timing import segment_timestamps

# Okabe & Ito (2008), "Color Universal Design": orange, sky blue, bluish green, yellow,
# blue, vermillion, reddish purple (RGB). Class i gets PALETTE[i % 7].
PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
           (204, 121, 167))
ALPHA_MIN = 0.5  # opacity of the weakest box drawn: a seen box stays plainly visible on a busy picture
# A box's score E = A ⊙ softmax(L) is its share of the class's video score Σ E (the softmax runs
# over all T·M proposals of the video), so E·T is the video score the class would get if every
# frame looked like this one: on the hinge scale of the class score (present > 0, margin 1).
# E·T >= FULL_OPACITY_SCORE is drawn opaque. One scale for every frame, class and length.
FULL_OPACITY_SCORE = 1.0
# The same reasoning for audio windows: E·W (W windows) is the class's audio score if every window
# looked like this one. A window in an event is drawn from HEAT_BRIGHT_MIN (at the event threshold)
# to 1 (at the threshold + FULL_HEAT_SCORE / W); any other window from 0 (FULL_HEAT_SCORE / W below
# the threshold, or lower) to HEAT_DARK_MAX (at or above it): dark purple at most, never orange.
FULL_HEAT_SCORE = 1.0
HEAT_DARK_MAX = 0.25  # inferno level: dark purple
HEAT_BRIGHT_MIN = 0.6  # inferno level: orange
DASH_FRACTION = 1 / 12  # dash length per shorter box side (at least 3 outline widths)
STRIP_ROW_FRACTION = 1 / 24  # heatmap row height per class: 30 px at 720p, 9 px at 224 px
STRIP_MAX_FRACTION = 1 / 3  # the strip never covers more than a third of the frame
MIN_TEXT_ROW = 12  # px: rows lower than this get no class name (HERSHEY text below ~8 px is unreadable) ...
MIN_SWATCH_ROW = 6  # ... but rows from this height still get the class's colour swatch at their left
FONT = cv2.FONT_HERSHEY_SIMPLEX
LABEL_HEIGHT_FRACTION = 1 / 18  # label text height per picture height (12 px at 224 px) ...
MIN_LABEL_PX = 9  # ... but never below this


def class_colours(names: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """Each class's RGB colour, by its position in ``names``."""
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(dict.fromkeys(names))}


def is_prediction(result: LocalizeResult, label: str) -> bool:
    """Whether ``label`` is drawn as a prediction: predicted, asked for, or in a result without ``status``."""
    return result.status.get(label, SHOWN_AS_PREDICTED[0]) in SHOWN_AS_PREDICTED


def shown_name(result: LocalizeResult, label: str) -> str:
    """The name a picture gives ``label``: "<class> (seen only)" for a class that is not a prediction
    (:func:`avscene.results.marked_name`, the rule the captions follow too)."""
    return marked_name(label, result.status.get(label))


def reported(result: LocalizeResult) -> list[str]:
    """The reported classes, in the result's order."""
    return list(result.status or result.timing)


def heat_levels(segs: Sequence[AudioSegment], events: Sequence[Event], *, threshold: float,
                duration: float) -> np.ndarray:
    """Inferno level in [0, 1] of each window of one class (P,), on one scale for every class and clip.

    A window (standing for its central span, :func:`avscene.timing.segment_timestamps`) inside one
    of ``events`` (the class's) is bright: ``HEAT_BRIGHT_MIN`` at the event threshold, rising with
    ``(E - threshold)·W`` to 1 at ``FULL_HEAT_SCORE``; any other window dark: at most
    ``HEAT_DARK_MAX``, falling to 0 at ``-FULL_HEAT_SCORE``. So a class that is not heard (no
    event) has a dark row, whatever its scores.
    """
    if not segs:
        return np.zeros(0)
    e = np.array([s.score for s in segs], dtype=np.float64)  # (P,)
    x = (e - threshold) * len(segs) / FULL_HEAT_SCORE  # (P,) E·W above the threshold, in full-scale units
    ts = segment_timestamps([s.start for s in segs], [s.end for s in segs], duration)  # (P+1,)
    mid = (ts[:-1] + ts[1:]) / 2  # (P,)
    inside = np.array([any(ev.onset <= m < ev.offset for ev in events) for m in mid], dtype=bool)
    bright = HEAT_BRIGHT_MIN + (1 - HEAT_BRIGHT_MIN) * np.clip(x, 0, 1)
    dark = HEAT_DARK_MAX * np.clip(1 + x, 0, 1)
    return np.where(inside, bright, dark)


def inferno(levels: np.ndarray) -> np.ndarray:
    """Inferno colours (N, 3) uint8 RGB of levels (N,) in [0, 1]."""
    idx = np.round(np.clip(np.asarray(levels, dtype=np.float64), 0, 1) * 255).astype(np.uint8)[None, :]  # (1, N)
    return cv2.applyColorMap(idx, cv2.COLORMAP_INFERNO)[0, :, ::-1]  # (N, 3) BGR → RGB


def box_opacity(score: float, n_frames: int) -> float:
    """Opacity of a box of score ``score`` in a result of ``n_frames`` sampled frames: in [ALPHA_MIN, 1]."""
    level = float(np.clip(score * max(n_frames, 1) / FULL_OPACITY_SCORE, 0.0, 1.0))
    return ALPHA_MIN + (1.0 - ALPHA_MIN) * level


def seen_at(intervals: Sequence[tuple[float, float]], t: float) -> bool:
    """Whether ``t`` lies in one of the ``[start, end)`` intervals."""
    return any(s <= t < e for s, e in intervals)


class BoxTrack:
    """One class's boxes grouped by sampled instant, with their opacities; unseen instants are empty."""

    def __init__(self, dets: Sequence[BoxDetection], seen: Sequence[tuple[float, float]], *, n_frames: int,
                 box_hold: str = "hold", instants: Sequence[float] = ()):
        self.times = np.array(sorted({*instants, *(d.t for d in dets)}))  # (N,) every sampled instant
        self.groups: list[list[tuple[BoxDetection, float]]] = [[] for _ in self.times]
        for d in dets:
            if seen_at(seen, d.t):
                self.groups[int(np.searchsorted(self.times, d.t))].append((d, box_opacity(d.score, n_frames)))
        # "hold": switch at each instant; "nearest": switch halfway between instants.
        self.hold = box_hold == "hold"
        self.edges = self.times if self.hold else (self.times[:-1] + self.times[1:]) / 2

    def at(self, t: float) -> list[tuple[BoxDetection, float]]:
        if not len(self.times):
            return []
        i = int(np.searchsorted(self.edges, t, side="right"))
        return self.groups[max(i - 1, 0) if self.hold else i]


class BoxLayer:
    """The boxes of a result, ready to draw on pictures of ``size`` (w, h) at ``scale`` × result pixels."""

    def __init__(self, result: LocalizeResult, size: tuple[int, int], *, scale: float = 1.0,
                 box_hold: str = "hold", colours: dict[str, tuple[int, int, int]] | None = None):
        self.colours = colours or class_colours([*result.visual, *result.audio])
        n_frames = len(result.frame_times) or len({d.t for dets in result.visual.values() for d in dets})
        self.tracks = {c: BoxTrack(dets, result.timing[c].seen if c in result.timing else (), n_frames=n_frames,
                                   box_hold=box_hold, instants=result.frame_times)
                       for c, dets in result.visual.items() if dets}
        self.names = {c: shown_name(result, c) for c in self.tracks}
        self.dashed = {c for c in self.tracks if not is_prediction(result, c)}
        w, h = size
        self.scale = scale
        self.thickness = max(2, round(min(w, h) / 150))
        text_px = max(MIN_LABEL_PX, round(h * LABEL_HEIGHT_FRACTION))
        self.font_scale = cv2.getFontScaleFromHeight(FONT, text_px, 1)
        self.font_weight = 1 if text_px < 20 else 2

    def draw(self, img: np.ndarray, t: float, labels: Sequence[str] | None = None) -> None:
        """Draw in place the boxes in effect at ``t`` of ``labels`` (None: every class)."""
        for name, track in self.tracks.items():
            if labels is None or name in labels:
                for det, alpha in track.at(t):
                    self._box(img, tuple(v * self.scale for v in det.box), name, alpha)

    def _box(self, img: np.ndarray, box: tuple[float, ...], name: str, alpha: float) -> None:
        h, w = img.shape[:2]
        x0, y0 = max(0, round(box[0])), max(0, round(box[1]))
        x1, y1 = min(w, round(box[2])), min(h, round(box[3]))  # exclusive
        if x1 <= x0 or y1 <= y0:
            return
        colour = self.colours.get(name, PALETTE[0])
        patch = img[y0:y1, x0:x1]
        drawn = patch.copy()
        if name in self.dashed:
            _dashed_rectangle(drawn, colour, self.thickness)
        else:
            cv2.rectangle(drawn, (0, 0), (x1 - x0 - 1, y1 - y0 - 1), colour, self.thickness)
        cv2.addWeighted(drawn, alpha, patch, 1.0 - alpha, 0.0, dst=patch)
        _label(img, self.names.get(name, name), (x0, y0), colour, self.font_scale, self.font_weight)


def _dashed_rectangle(patch: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    """A dashed outline along the edges of ``patch`` (h, w, 3), in place: dashes and gaps of equal length."""
    h, w = patch.shape[:2]
    dash = max(3 * thickness, round(min(h, w) * DASH_FRACTION))
    on = (np.arange(max(h, w)) // dash) % 2 == 0  # (L,) a dash, then a gap of the same length
    t = min(thickness, h, w)
    patch[:t, on[:w]] = colour
    patch[h - t:, on[:w]] = colour
    patch[on[:h], :t] = colour
    patch[on[:h], w - t:] = colour


def _label(img: np.ndarray, text: str, at: tuple[int, int], colour: tuple[int, int, int], scale: float,
           weight: int) -> None:
    """``text`` on an opaque plate in ``colour``, above ``at`` (x, y), else just inside it."""
    h, w = img.shape[:2]
    (tw, th), base = cv2.getTextSize(text, FONT, scale, weight)
    pad = max(1, th // 4)
    ph, pw = th + base + 2 * pad, tw + 2 * pad
    x, y = at
    y_top = y - ph if y >= ph else y  # above the box, else inside its top
    x = min(max(0, x), max(0, w - pw))
    cv2.rectangle(img, (x, y_top), (min(w, x + pw) - 1, min(h, y_top + ph) - 1), colour, cv2.FILLED)
    cv2.putText(img, text, (x + pad, y_top + pad + th), FONT, scale, ink(colour), weight, cv2.LINE_AA)


def ink(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``colour`` (relative luminance, WCAG)."""
    lin = [(c / 255) / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in colour]
    lum = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return (0, 0, 0) if (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) else (255, 255, 255)


def heat_strip(result: LocalizeResult, colours: dict[str, tuple[int, int, int]], size: tuple[int, int],
               duration: float) -> tuple[np.ndarray, int] | None:
    """The static part of the heatmap strip and where its cells start: ((rows·row, W, 3) RGB, x0).

    One row per reported class with audio scores, coloured by :func:`heat_levels` (bright:
    the class's sound events; dark: everything else). With rows of at least
    :data:`MIN_TEXT_ROW` px a black margin of width ``x0`` on the left holds each row's
    colour swatch and name (:func:`shown_name`; a class that is not a prediction gets a
    hollow swatch), the cells span ``[x0, W)``, and a legend row on top states the event
    threshold; rows of at least :data:`MIN_SWATCH_ROW` px get the swatch alone; lower rows
    neither, and ``x0 = 0``.
    """
    tracks = [(c, result.audio[c]) for c in reported(result) if result.audio.get(c)]
    if not tracks:
        return None
    w, h = size
    k = len(tracks)
    row, named = _strip_rows(h, k)
    swatch = row >= MIN_SWATCH_ROW
    scale = cv2.getFontScaleFromHeight(FONT, max(1, int(row * 0.7)), 1)
    names = {c: shown_name(result, c) for c, _ in tracks}
    x0 = row if swatch else 0
    if named:
        width = lambda ns: max(cv2.getTextSize(ns[c], FONT, scale, 1)[0][0] for c, _ in tracks)  # noqa: E731
        if row + 8 + width(names) > w // 3:  # no room for "(seen only)": the hollow swatch alone says it
            names = {c: c for c, _ in tracks}
        x0 = min(row + 4 + width(names) + 4, w // 3)
    legend = row if named else 0
    strip = np.zeros((legend + k * row, w, 3), np.uint8)
    cells = w - x0
    t_cols = (np.arange(cells) + 0.5) * duration / cells  # (cells,) time at each column centre
    for r, (name, segs) in enumerate(tracks):
        ts = segment_timestamps([a.start for a in segs], [a.end for a in segs], duration)  # (P+1,)
        idx = np.clip(np.searchsorted(ts, t_cols, side="right") - 1, 0, len(segs) - 1)  # (cells,)
        events = [e for e in result.events if e.label == name]
        levels = heat_levels(segs, events, threshold=result.event_threshold, duration=duration)[idx]  # (cells,)
        band = strip[legend + r * row:legend + (r + 1) * row]
        band[:, x0:] = inferno(levels)
        if swatch:
            colour = colours.get(name, PALETTE[0])
            band[1:row - 1, 1:row - 1] = colour
            if not is_prediction(result, name) and row >= 8:
                band[3:row - 3, 3:row - 3] = 0  # hollow (a 2-px outline): not a prediction
        if named:
            _margin_text(band, x0, names[name], (row + 2, row), scale)
    if named:
        _legend(strip[:legend], x0, result.event_threshold, scale)
    return strip[-h:], x0


def _strip_rows(h: int, k: int) -> tuple[int, bool]:
    """Row height of a strip of ``k`` classes on a picture ``h`` px high, and whether rows are named.

    Named rows (and a legend row) take at least :data:`MIN_TEXT_ROW` px where that fits in
    :data:`STRIP_MAX_FRACTION` of the picture; else rows of ``h·STRIP_ROW_FRACTION`` without text.
    """
    row = max(round(h * STRIP_ROW_FRACTION), MIN_TEXT_ROW)
    if row * (k + 1) <= h * STRIP_MAX_FRACTION:
        return row, True
    return max(1, min(round(h * STRIP_ROW_FRACTION), int(h * STRIP_MAX_FRACTION) // k)), False


def _margin_text(band: np.ndarray, x0: int, text: str, at: tuple[int, int], scale: float) -> None:
    """White ``text`` in the margin ``band[:, :x0]`` at ``at`` = (x, row height), clipped to the margin."""
    row = at[1]
    (_, th), _ = cv2.getTextSize(text, FONT, scale, 1)
    margin = np.ascontiguousarray(band[:, :x0])  # text stays inside the margin
    cv2.putText(margin, text, (at[0], (row + th) // 2), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    band[:, :x0] = margin


def _legend(band: np.ndarray, x0: int, threshold: float, scale: float) -> None:
    """The strip's legend row: a bright cell "event: E > thr" and a dark cell "none", over the cells."""
    row, w = band.shape[:2]
    x = x0
    for level, text in ((1.0, f"sound event: E > {threshold:+.2f}"), (HEAT_DARK_MAX, "none")):
        if x + row >= w:
            return
        band[2:row - 2, x:x + row] = inferno(np.array([level]))[0]
        x += row + 3
        (tw, th), _ = cv2.getTextSize(text, FONT, scale, 1)
        part = np.ascontiguousarray(band[:, x:w])
        cv2.putText(part, text, (0, (row + th) // 2), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
        band[:, x:w] = part
        x += tw + row
