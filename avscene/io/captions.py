"""Sound events for the tools people already use: WebVTT captions and Audacity label tracks.

* **WebVTT** (:func:`webvtt_text`): what HTML5 ``<track>``, VLC, mpv and subtitle editors
  read. The timeline is cut at every event onset and offset; each stretch during which
  at least one event sounds is one cue, with one line per sounding class, in brackets
  as non-speech captions are written::

      WEBVTT

      00:00:03.600 --> 00:00:07.440
      [trumpet]

      00:00:07.440 --> 00:00:09.360
      [accordion]
      [trumpet]

* **Audacity label track** (:func:`audacity_text`, *File → Import → Labels…*): one
  event per line, ``start<TAB>end<TAB>label``, seconds with six decimals (Audacity's
  own export format). Overlapping events are separate labels; Audacity stacks them.

Both name a class as the overlay and the report do (:func:`avscene.results.marked_name`): a class
whose ``status`` is not a prediction is marked as what it is, ``[violin (heard only)]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from avscene.results import Event, marked_name
from avscene.io.writers import atomic_write_text

AUDACITY_DECIMALS = 6  # what Audacity writes when it exports labels


def vtt_timestamp(t: float) -> str:
    """Seconds → ``HH:MM:SS.mmm`` (WebVTT cue timing)."""
    ms = max(0, round(t * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _caption_name(label: str) -> str:
    """A class name that cannot end a cue or open a tag: no line breaks, no ``-->``, ``<`` or ``&``."""
    clean = " ".join(label.split()).replace("-->", "→").replace("&", "&amp;").replace("<", "&lt;")
    return f"[{clean}]"


def caption_cues(events: Sequence[Event]) -> list[tuple[float, float, tuple[str, ...]]]:
    """The cues of :func:`webvtt_text`: ``(start, end, labels sounding)`` per stretch, in time order."""
    cuts = sorted({round(t, 3) for ev in events for t in (ev.onset, ev.offset)})
    cues: list[tuple[float, float, tuple[str, ...]]] = []
    for a, b in zip(cuts, cuts[1:]):
        mid = (a + b) / 2
        active = tuple(sorted({ev.label for ev in events if ev.onset <= mid < ev.offset}))
        if not active:
            continue
        if cues and cues[-1][1] == a and cues[-1][2] == active:
            cues[-1] = (cues[-1][0], b, active)  # the same classes go on: one cue
        else:
            cues.append((a, b, active))
    return cues


def _named(events: Sequence[Event], status: Mapping[str, str]) -> list[Event]:
    """``events`` with each class named by the one naming rule (marked unless it is a prediction)."""
    return [Event(marked_name(ev.label, status.get(ev.label)), ev.onset, ev.offset) for ev in events]


def webvtt_text(events: Sequence[Event], status: Mapping[str, str] | None = None) -> str:
    """WebVTT captions of ``events`` (see the module docstring); just the header when there are none.
    ``status``: each class's ``LocalizeResult.status`` (a class not predicted is marked so)."""
    blocks = ["WEBVTT\n"]
    for start, end, labels in caption_cues(_named(events, status or {})):
        lines = "\n".join(_caption_name(lab) for lab in labels)
        blocks.append(f"{vtt_timestamp(start)} --> {vtt_timestamp(end)}\n{lines}\n")
    return "\n".join(blocks)


def audacity_text(events: Sequence[Event], status: Mapping[str, str] | None = None) -> str:
    """An Audacity label track of ``events``: ``start<TAB>end<TAB>label`` per event, by onset (``status``:
    as for :func:`webvtt_text`)."""
    rows = []
    for ev in sorted(_named(events, status or {}), key=lambda e: (e.onset, e.offset, e.label)):
        label = " ".join(ev.label.split())  # a tab or newline would split the row
        rows.append(f"{ev.onset:.{AUDACITY_DECIMALS}f}\t{ev.offset:.{AUDACITY_DECIMALS}f}\t{label}\n")
    return "".join(rows)


def write_webvtt(events: Sequence[Event], path: str | Path, *, force: bool,
                 status: Mapping[str, str] | None = None) -> Path:
    """Write :func:`webvtt_text` to ``path`` atomically (``.vtt``)."""
    return atomic_write_text(path, webvtt_text(events, status), force=force)


def write_audacity(events: Sequence[Event], path: str | Path, *, force: bool,
                   status: Mapping[str, str] | None = None) -> Path:
    """Write :func:`audacity_text` to ``path`` atomically (``.txt``, as Audacity names label files)."""
    return atomic_write_text(path, audacity_text(events, status), force=force)

