"""WebVTT captions and Audacity label tracks of sound events, read back by real parsers."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from avscene.io.captions import audacity_text, vtt_timestamp, webvtt_text
from avscene.results import Event

webvtt = pytest.importorskip("webvtt", reason="webvtt-py (dev extra) reads the captions back")


def _parse_vtt(text: str) -> list[tuple[float, float, list[str]]]:
    cues = webvtt.from_buffer(io.StringIO(text))
    return [(_secs(c.start), _secs(c.end), c.text.splitlines()) for c in cues]


def _secs(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _events_from_cues(cues: list[tuple[float, float, list[str]]]) -> set[tuple[str, float, float]]:
    """Each class's intervals: the cues naming it, merged where they touch."""
    spans: dict[str, list[list[float]]] = {}
    for start, end, lines in cues:
        for line in lines:
            assert line.startswith("[") and line.endswith("]"), line
            merged = spans.setdefault(line[1:-1], [])
            if merged and abs(merged[-1][1] - start) < 1e-9:
                merged[-1][1] = end
            else:
                merged.append([start, end])
    return {(lab, round(a, 3), round(b, 3)) for lab, iv in spans.items() for a, b in iv}


EVENTS = (Event("violin", 0.0, 2.4), Event("drum", 1.44, 3.36), Event("violin", 5.0, 6.5),
          Event("car", 3661.25, 3662.0))


def test_webvtt_parses_and_gives_back_the_events() -> None:
    cues = _parse_vtt(webvtt_text(EVENTS))
    assert _events_from_cues(cues) == {(e.label, e.onset, e.offset) for e in EVENTS}
    # overlap: one cue with one line per sounding class
    assert (1.44, 2.4, ["[drum]", "[violin]"]) in cues
    assert [c[0] for c in cues] == sorted(c[0] for c in cues)
    assert vtt_timestamp(3661.25) == "01:01:01.250"


def test_webvtt_of_no_events_is_a_valid_empty_file() -> None:
    text = webvtt_text(())
    assert text.startswith("WEBVTT")
    assert list(webvtt.from_buffer(io.StringIO(text))) == []


def test_a_label_cannot_break_the_captions() -> None:
    cues = _parse_vtt(webvtt_text((Event("a --> b\nc", 0.0, 1.0),)))
    assert len(cues) == 1 and len(cues[0][2]) == 1 and "-->" not in cues[0][2][0]


def test_audacity_label_track() -> None:
    rows = list(csv.reader(io.StringIO(audacity_text(EVENTS)), delimiter="\t"))
    assert [(r[2], float(r[0]), float(r[1])) for r in rows] == sorted(
        ((e.label, e.onset, e.offset) for e in EVENTS), key=lambda x: (x[1], x[2]))
    assert all(len(r) == 3 for r in rows)


def test_cli_localize_writes_captions_matching_the_json(tiny_model_dir: Path, clips: dict, tmp_path: Path,
                                                        capsys) -> None:
    from avscene.cli.app import main

    code = main(["localize", str(clips["av"]), "-m", str(tiny_model_dir), "--label", "drum", "--label", "violin",
                 "--event-threshold", "-1e9", "--audio-threshold", "-1e9", "--json", "--vtt", str(tmp_path / "{name}.vtt"),
                 "--audacity", str(tmp_path / "{name}.txt")])
    out, err = capsys.readouterr()
    assert code == 0, err
    rec = json.loads(out)[0]
    want = {(e["label"], e["onset"], e["offset"]) for e in rec["events"]}
    assert want, "every window sounds at this threshold"
    vtt = (tmp_path / f"{clips['av'].stem}.vtt").read_text()
    assert _events_from_cues(_parse_vtt(vtt)) == want
    rows = (tmp_path / f"{clips['av'].stem}.txt").read_text().splitlines()
    assert {(r.split("\t")[2], float(r.split("\t")[0]), float(r.split("\t")[1])) for r in rows} == want


def test_a_class_that_is_not_a_prediction_is_marked_as_what_it_is() -> None:
    """Captions name classes as the overlay does: a heard-only class is "violin (heard only)", a predicted one
    plain, in both the WebVTT cues and the Audacity labels."""
    events = (Event("violin", 0.0, 1.0), Event("drum", 2.0, 3.0))
    status = {"violin": "heard_only", "drum": "predicted"}
    cues = _parse_vtt(webvtt_text(events, status))
    assert [c[2] for c in cues] == [["[violin (heard only)]"], ["[drum]"]]
    rows = list(csv.reader(io.StringIO(audacity_text(events, status)), delimiter="\t"))
    assert [r[2] for r in rows] == ["violin (heard only)", "drum"]
    assert [r[2] for r in csv.reader(io.StringIO(audacity_text(events)), delimiter="\t")] == ["violin", "drum"]


def test_localize_and_report_write_captions_with_the_statuses(tmp_path) -> None:
    """The writer of an input's caption files hands them the result's statuses."""
    from avscene.results import ClassifyResult, LocalizeResult, ModelRef
    from avscene.tasks.outputs import AUDACITY, VTT, WriteOptions, write_event_files

    cls = ClassifyResult(file="x.mp4", duration=3.0, modalities=("audio",), labels=(), predicted=("drum",),
                         threshold=0.0, model=ModelRef("test"))
    r = LocalizeResult(classification=cls, events=(Event("violin", 0.0, 1.0), Event("drum", 2.0, 3.0)),
                       status={"violin": "heard_only", "drum": "predicted"})
    opts = WriteOptions(None, {VTT: str(tmp_path / "{name}.vtt"), AUDACITY: str(tmp_path / "{name}.txt")})
    written: list = []
    write_event_files(r, Path("x.mp4"), opts, written)
    assert "[violin (heard only)]" in (tmp_path / "x.vtt").read_text()
    assert (tmp_path / "x.txt").read_text().splitlines()[0].endswith("\tviolin (heard only)")
