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
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from avscene.results import Event
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


def webvtt_text(events: Sequence[Event]) -> str:
    """WebVTT captions of ``events`` (see the module docstring); just the header when there are none."""
    blocks = ["WEBVTT\n"]
    for start, end, labels in caption_cues(events):
        lines = "\n".join(_caption_name(lab) for lab in labels)
        blocks.append(f"{vtt_timestamp(start)} --> {vtt_timestamp(end)}\n{lines}\n")
    return "\n".join(blocks)


def audacity_text(events: Sequence[Event]) -> str:
    """An Audacity label track of ``events``: ``start<TAB>end<TAB>label`` per event, by onset."""
    rows = []
    for ev in sorted(events, key=lambda e: (e.onset, e.offset, e.label)):
        label = " ".join(ev.label.split())  # a tab or newline would split the row
        rows.append(f"{ev.onset:.{AUDACITY_DECIMALS}f}\t{ev.offset:.{AUDACITY_DECIMALS}f}\t{label}\n")
    return "".join(rows)


def write_webvtt(events: Sequence[Event], path: str | Path, *, force: bool) -> Path:
    """Write :func:`webvtt_text` to ``path`` atomically (``.vtt``)."""
    return atomic_write_text(path, webvtt_text(events), force=force)


def write_audacity(events: Sequence[Event], path: str | Path, *, force: bool) -> Path:
    """Write :func:`audacity_text` to ``path`` atomically (``.txt``, as Audacity names label files)."""
    return atomic_write_text(path, audacity_text(events), force=force)

