"""The report writer: one self-contained HTML page per input, and an index of a folder of them.

Takes a computed :class:`~avscene.results.ReportPage` (:mod:`avscene.tasks.report`) and
formats it; nothing here decides what is shown. Every piece of text from the input
(file names, class names, warnings, the command) goes through :func:`html.escape`.
Images are JPEG ``data:`` URIs; audio tracks are Ogg/Opus ``data:`` URIs, or, when the
page says not to embed them, Ogg files written beside the page and linked by a
relative URL. Style and scripts are inline (:mod:`avscene.io.report_assets`).
"""

from __future__ import annotations

import os
import re
from html import escape
from pathlib import Path
from urllib.parse import quote

import numpy as np

from avscene.io.draw import HEAT_BRIGHT_MIN, HEAT_DARK_MAX, heat_levels, inferno, is_prediction, shown_name
from avscene.io.report_assets import CSS, INDEX_JS, PAGE_JS, STATUS_JS
from avscene.io.web_media import data_uri, jpeg_bytes, opus_ogg_bytes
from avscene.io.writers import atomic_write_bytes, atomic_write_text
from avscene.results import STATUS_NOTES, AudioTrack, ReportPage, Thumbnail, printable
from avscene.timing import segment_timestamps

THUMB_PX = 120  # thumbnails' largest width in a row (the stored image is larger: shown full size on click)
THUMB_MIN_SLOT_PX = 72  # a row is at least this wide per thumbnail: a long row scrolls sideways
AXIS_TICKS = 10  # about this many time labels per row


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


PRESENCE_WORDS = {"heard": "heard", "seen": "seen", "heard_and_seen": "heard and seen", "neither": "neither"}
DECISION_WORDS = {"predicted": "predicted", "requested": "asked for (--label), not predicted"}


def heat_colour(level: float) -> str:
    """The inferno colour of a heat level in [0, 1] (:func:`avscene.io.draw.heat_levels`)."""
    return hex_colour(tuple(int(v) for v in inferno(np.array([level]))[0]))


def decision_word(status: str | None) -> str:
    """What the page says about a reported class's decision: "predicted", "seen only, not predicted", ..."""
    if status is None:
        return "no"
    note = STATUS_NOTES.get(status)
    return f"{note}, not predicted" if note and note != "not predicted" else note or DECISION_WORDS.get(status, status)


def thumb_uri(th: Thumbnail) -> str:
    return data_uri(jpeg_bytes(th.image), "image/jpeg")


def _fmt_t(t: float) -> str:
    m, s = divmod(t, 60)
    return f"{int(m)}:{s:04.1f}" if m else f"{s:.1f} s"


def write_report(page: ReportPage, path: str | Path, *, force: bool) -> list[Path]:
    """Write the page (and its tracks too long to embed, beside it); returns the files written, page first."""
    path = Path(path)
    written: list[Path] = []
    srcs = []
    for i, tr in enumerate(page.tracks):
        data = opus_ogg_bytes(tr.samples, tr.sample_rate)
        if tr.embed:
            srcs.append(data_uri(data, "audio/ogg"))
            continue
        name = f"{path.stem}.{_slug(tr.kind)}{'.' + _slug(tr.label) if tr.label else ''}.ogg"
        written.append(atomic_write_bytes(path.with_name(name), data, force=force))
        srcs.append(quote(name, errors="surrogateescape"))  # a name's bytes that are not UTF-8: %FF
    text = printable(page_html(page, srcs))  # and shown as \xff
    return [atomic_write_text(path, text, force=force), *written]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def page_html(page: ReportPage, audio_srcs: list[str]) -> str:
    """The whole HTML document of one report."""
    r = page.localization
    c = r.classification
    name = Path(c.file).name
    duration = max(c.duration, 1e-9)
    body = [
        f'<header><h1>{escape(name)}</h1><p class="meta">{_fmt_t(c.duration)} · analysed: '
        f'{escape(", ".join(c.modalities) or "nothing")} · {page.n_frames} sampled frame(s) · '
        f'{len(r.events)} sound event(s)</p></header><main>',
        _errors_block(), _scores(page), _timeline(page, duration), _audio(page, audio_srcs), _left_out(page),
        _about(page), '</main>', _viewer(),
    ]
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>avscene report: {escape(name)}</title><style>{CSS}</style>'
            f'<script>{STATUS_JS}</script></head>\n'
            f'<body data-duration="{c.duration:.3f}">\n' + "\n".join(body) + f'\n<script>{PAGE_JS}</script>'
            '</body></html>\n')


def _errors_block() -> str:
    return ('<div id="page-status" hidden data-errors="0"></div>'
            '<ul id="page-errors" aria-live="polite"></ul>')


def _scores(page: ReportPage) -> str:
    c = page.localization.classification
    if not c.labels:
        return ""
    scores = [x.score for x in c.labels]
    lo, hi = min(*scores, c.threshold), max(*scores, c.threshold)
    span = max(hi - lo, 1e-9)
    pos = lambda v: 100 * (v - lo) / span  # noqa: E731
    shown = [x for x in c.labels if x.label in c.predicted or x.label in page.presence]
    others = [x for x in c.labels if x not in shown]
    table = lambda labels: (  # noqa: E731
        '<table class="scores"><colgroup><col class="c-name"><col class="c-bar"><col class="c-num"><col '
        'class="c-dec"><col class="c-hs"></colgroup><thead><tr><th scope="col">class</th><th scope="col">score'
        '</th><th scope="col" class="num">value</th><th scope="col">decision</th><th scope="col">heard / seen'
        '</th></tr></thead><tbody>' + "".join(_score_row(page, x, pos) for x in labels) + '</tbody></table>')
    more = (f'<details><summary>The other {len(others)} classes</summary>{table(others)}</details>'
            if others else "")
    return ('<section aria-labelledby="h-scores"><h2 id="h-scores">Classes</h2>'
            f'<p class="legend">Bars run from the threshold ({c.threshold:+.2f}, black mark) to the score; '
            'a class above it is predicted. Heard / seen: the audio and the visual decision over the whole '
            'input ("heard and seen": each somewhere in it, not necessarily at the same time). A class only '
            'one of them reports is listed, marked "seen only" or "heard only", but it is not a prediction.</p>'
            + (table(shown) if shown else "<p>No class is predicted.</p>") + more + '</section>')


def _score_row(page: ReportPage, lab, pos) -> str:
    c = page.localization.classification
    pred = lab.label in c.predicted
    colour = hex_colour(page.colours.get(lab.label, (150, 150, 150))) if pred else "#9a9a9a"
    word = page.presence.get(lab.label)
    badge = f'<span class="badge {word}">{PRESENCE_WORDS.get(word, word)}</span>' if word else "—"
    status = page.localization.status.get(lab.label) or ("predicted" if pred else None)
    a, b = sorted((pos(c.threshold), pos(lab.score)))
    return (f'<tr class="{"predicted" if pred else ""}"><td>{escape(lab.label)}</td>'
            f'<td class="bar"><div class="track" role="img" aria-label="score {lab.score:.2f}, threshold '
            f'{c.threshold:.2f}"><div class="fill" style="left:{a:.2f}%;width:{b - a:.2f}%;background:{colour}">'
            f'</div><div class="thr" style="left:{pos(c.threshold):.2f}%"></div></div></td>'
            f'<td class="num">{lab.score:+.2f}</td><td>{escape(decision_word(status))}</td><td>{badge}</td></tr>')


def _timeline(page: ReportPage, duration: float) -> str:
    if not page.classes:
        return ('<section aria-labelledby="h-time"><h2 id="h-time">Timeline</h2>'
                '<p>No class is predicted, so there is nothing to place in time.</p></section>')
    thr = page.localization.event_threshold
    key = lambda lo, hi: (f'<span class="heatkey" style="background:linear-gradient(90deg,'  # noqa: E731
                          f'{heat_colour(lo)},{heat_colour(hi)})"></span>')
    legend = ('<p class="legend"><span>audio per 0.96-s window, one scale for every class: '
              f'{key(0.0, HEAT_DARK_MAX)} dark: no sound event; {key(HEAT_BRIGHT_MIN, 1.0)} bright: a sound event, '
              f'its score E above the event threshold {thr:+.2f}</span><span>events: when the class sounds (its sound '
              'events); seen: when its boxes are seen; both: a sound event while it is seen</span><span>the badge: '
              'heard / seen, the decision over the whole input</span><span>dashed boxes: a class seen, but '
              'not predicted</span><span>click a frame to enlarge it</span></p>')
    rows = [_class_row(page, lab, duration) for lab in page.classes]
    return ('<section aria-labelledby="h-time"><h2 id="h-time">Timeline</h2>' + legend + "".join(rows)
            + '</section>')


def _class_row(page: ReportPage, label: str, duration: float) -> str:
    r = page.localization
    colour = hex_colour(page.colours[label])
    tm = r.timing.get(label)
    seen, both = (tm.seen, tm.both) if tm else ((), ())
    events = [e for e in r.events if e.label == label]  # when it sounds (timing.heard): a lane of its own,
    # named for what it is, not "heard": a predicted class has events even where the badge says not heard
    thumbs = page.thumbnails.get(label, ())
    width = f"max(100%, {len(thumbs) * THUMB_MIN_SLOT_PX + 64}px)"
    segs = r.audio.get(label, ())
    lanes = [_heat_lane(segs, heat_levels(segs, events, threshold=r.event_threshold, duration=duration),
                        duration)] if segs else []
    lanes += [_seg_lane(n, iv, duration, colour) for n, iv in
              (("events", [(e.onset, e.offset) for e in events]), ("seen", seen), ("both", both))]
    word = page.presence.get(label, "neither")
    status = r.status.get(label)
    note = "" if is_prediction(r, label) else (f' <span class="badge status {escape(status or "")}">'
                                               f'{escape(decision_word(status))}</span>')
    imgs = "".join(_thumb(th, shown_name(r, label), duration) for th in thumbs)
    thumb_div = ""
    if thumbs:  # N thumbnails share the row's width, up to THUMB_PX each: the row's height follows
        h, w = thumbs[0].image.shape[:2]
        n = len(thumbs)
        thumb_div = (f'<div class="thumbs" style="--n:{n};aspect-ratio:{n * w + 8 * n}/{h + 8};'
                     f'max-height:{THUMB_PX * h / w + 8:.0f}px">{imgs}</div>')
    kind = "" if is_prediction(r, label) else " not-predicted"
    return (f'<section class="timeline-row{kind}" data-label="{escape(label)}" data-status="{escape(status or "")}" '
            f'aria-label="{escape(label)} timeline"><h3><span class="swatch" style="background:{colour}"></span>'
            f'{escape(label)} <span class="badge {word}">{PRESENCE_WORDS.get(word, word)}</span>{note}</h3>'
            f'<div class="scroll"><div class="tl" '
            f'style="width:{width}"><div class="playhead" style="left:0"></div>{_axis(duration)}'
            + "".join(lanes) + thumb_div + '</div></div></section>')


def _heat_lane(segs, levels: np.ndarray, duration: float) -> str:
    ts = segment_timestamps([s.start for s in segs], [s.end for s in segs], duration)
    rects = "".join(f'<rect x="{a:.3f}" width="{max(b - a, 0):.3f}" height="1" fill="{heat_colour(v)}"/>'
                    for v, a, b in zip(levels, ts[:-1], ts[1:]))
    return (f'<div class="lane heat" data-name="heat"><svg viewBox="0 0 {duration:.3f} 1" '
            f'preserveAspectRatio="none" shape-rendering="crispEdges" role="img" aria-label="audio heat over time">{rects}</svg></div>')


def _seg_lane(name: str, intervals, duration: float, colour: str) -> str:
    spans = "".join(
        f'<span class="seg" style="left:{100 * a / duration:.3f}%;width:{100 * (b - a) / duration:.3f}%;'
        f'background:{colour}" title="{name} {a:.2f}–{b:.2f} s"></span>' for a, b in intervals)
    text = ", ".join(f"{a:.1f}–{b:.1f} s" for a, b in intervals) or "none"
    return f'<div class="lane" data-name="{name}" role="img" aria-label="{name}: {text}">{spans}</div>'


def _axis(duration: float) -> str:
    step = next((s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600) if duration / s <= AXIS_TICKS),
                3600 * 6)
    ticks = "".join(f'<span style="left:{100 * t / duration:.3f}%{";transform:translateX(-100%)" if t > duration - step / 2 else ""}">'
                    f'{_fmt_t(t)}</span>' for t in np.arange(0, duration + 1e-9, step))
    return f'<div class="axis" aria-hidden="true">{ticks}</div>'


def _thumb(th: Thumbnail, label: str, duration: float) -> str:
    alt = f"Frame at {th.t:.1f} s with the boxes of {label} where it is seen"
    return (f'<button type="button" class="thumb" style="left:{100 * th.t / duration:.3f}%" '
            f'aria-label="Enlarge: {escape(alt)}"><img src="{thumb_uri(th)}" alt="{escape(alt)}" '
            f'width="{th.image.shape[1]}" height="{th.image.shape[0]}" loading="eager"></button>')


def _audio(page: ReportPage, srcs: list[str]) -> str:
    if not page.tracks:
        return ('<section aria-labelledby="h-audio"><h2 id="h-audio">Audio</h2>'
                '<p>The input has no audio stream.</p></section>')
    figs = "".join(_player(tr, src) for tr, src in zip(page.tracks, srcs))
    return f'<section aria-labelledby="h-audio"><h2 id="h-audio">Audio</h2><div class="players">{figs}</div></section>'


def _player(tr: AudioTrack, src: str) -> str:
    link = "" if src.startswith("data:") else f' (<a href="{escape(src)}">file beside this page</a>)'
    return (f'<figure><figcaption>{escape(tr.title)}{link}</figcaption><audio controls preload="metadata" '
            f'data-kind="{tr.kind}" aria-label="{escape(tr.title)}" src="{escape(src)}"></audio></figure>')


def _left_out(page: ReportPage) -> str:
    if not page.left_out:
        return ""
    items = "".join(f"<li>{escape(x)}</li>" for x in page.left_out)
    return (f'<section aria-labelledby="h-left"><h2 id="h-left">Not shown</h2><div class="note"><ul>{items}'
            '</ul></div></section>')


def _about(page: ReportPage) -> str:
    c = page.localization.classification
    warnings = "".join(f"<li>{escape(w)}</li>" for w in c.warnings) or "<li>none</li>"
    seps = "".join(f"<li>{escape(s.label)}: {escape(s.method)}</li>" for s in page.separations)
    rows = [("file", escape(c.file)), ("model", escape(c.model.id)),
            ("revision", escape(c.model.revision or "—")), ("avscene", escape(page.version or "—")),
            ("threshold", f"{c.threshold:+.3f}")]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    sep_block = f"<h3>Separation</h3><ul>{seps}</ul>" if seps else ""
    return ('<section aria-labelledby="h-about"><h2 id="h-about">How this was made</h2>'
            f'<dl>{dl}</dl>{sep_block}<h3>Warnings</h3><ul>{warnings}</ul><h3>Command</h3>'
            f'<pre><code>{escape(page.command or "(called from Python)")}</code></pre></section>')


def _viewer() -> str:
    return ('<dialog id="viewer" aria-label="Enlarged frame"><img id="viewer-img" alt="">'
            '<p id="viewer-cap"></p><button type="button" class="close" id="viewer-close">Close</button></dialog>')


# --------------------------------------------------------------------------- index


def index_html(records: list[dict], folder: str | Path) -> str:
    """The index of a folder of reports: one row per input (``ReportResult.to_json()`` records)."""
    folder = Path(folder)
    classes = sorted({lab for rec in records for lab, word in rec["report"]["presence"].items() if word != "neither"})
    rows = []
    for rec in records:
        rep = rec["report"]
        pres = rep["presence"]
        heard = [k for k, v in pres.items() if v in ("heard", "heard_and_seen", "both")]  # "both": older records
        seen = [k for k, v in pres.items() if v in ("seen", "heard_and_seen", "both")]
        href = quote(os.path.relpath(rep["page"], folder), errors="surrogateescape")
        name = Path(rec["file"]).name
        img = (f'<img src="{rep["poster"]}" alt="A frame of {escape(name)}" width="96">' if rep.get("poster")
               else '<span aria-label="no video">—</span>')
        rows.append(
            f'<tr data-name="{escape(name.lower())}" data-duration="{rec["duration"]}" '
            f'data-heard="{escape(" ".join(heard))}" data-seen="{escape(" ".join(seen))}" '
            f'data-classes="{escape(" ".join(sorted({*heard, *seen})))}"><td>{img}</td><td><a href="{escape(href)}">{escape(name)}</a>'
            f'</td><td class="num">{_fmt_t(rec["duration"])}</td><td>{escape(", ".join(heard) or "—")}</td>'
            f'<td>{escape(", ".join(seen) or "—")}</td></tr>')
    options = "".join(f'<option value="{escape(c)}">{escape(c)}</option>' for c in classes)
    head = "".join(f'<th scope="col"><button type="button" data-key="{k}">{t}</button></th>'
                   for k, t in (("name", "video"), ("duration", "duration"), ("heard", "heard"), ("seen", "seen")))
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><title>avscene reports</title>'
            f'<style>{CSS}</style><script>{STATUS_JS}</script></head><body><header><h1>avscene reports</h1>'
            f'<p class="meta">{len(records)} video(s) · <span id="shown"></span></p></header><main>'
            + _errors_block().replace('id="page-status" hidden', 'id="page-status" hidden data-rows="%d"' % len(rows))
            + '<p><label for="filter">Show videos with the class </label><select id="filter"><option value="">'
            f'(any)</option>{options}</select></p><div class="scroll"><table id="videos"><thead><tr>'
            f'<th scope="col">frame</th>{head}</tr></thead><tbody>' + "".join(rows) + '</tbody></table></div>'
            f'</main><script>{INDEX_JS}</script></body></html>\n')


def write_index(records: list[dict], path: str | Path) -> Path:
    """Write :func:`index_html` (always replaced: it describes the folder as it is now)."""
    return atomic_write_text(path, printable(index_html(records, Path(path).parent)), force=True)

