"""Tests of avscene.io.writers: atomic files, the DCASE event TSV, the score TSV."""

from __future__ import annotations

import csv
import dataclasses
import math
import os

import numpy as np
import pytest

from avscene.errors import OutputError
from avscene.io.writers import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    scores_tsv_text,
    write_events_tsv,
)
from avscene.timing import segment_timestamps
from avscene.results import (
    AudioSegment,
    ClassifyResult,
    Event,
    FailedInput,
    Label,
    LocalizeResult,
    ModelRef,
    Timing,
)

WIN, HOP = 0.96, 0.48  # audio window and hop in seconds


def _classification(file: str, duration: float) -> ClassifyResult:
    return ClassifyResult(file=file, duration=duration, modalities=("audio", "visual"),
                          labels=(Label("dog", 0.5), Label("car", -0.2)), predicted=("dog",),
                          threshold=0.0, model=ModelRef("test"))


def _windows(duration: float) -> list[tuple[float, float]]:
    """0.96-s windows every 0.48 s until the clip is covered (the TSP convention)."""
    n = max(1, math.ceil((duration - WIN) / HOP - 1e-9) + 1)
    return [(HOP * i, HOP * i + WIN) for i in range(n)]


def _result(file: str = "/data/clips/a.mp4", duration: float = 10.0, *, scores: dict | None = None,
            events: tuple[Event, ...] = ()) -> LocalizeResult:
    audio = {}
    for lab, vals in (scores or {}).items():
        audio[lab] = tuple(AudioSegment(s, e, v, 0.0) for (s, e), v in zip(_windows(duration), vals))
    return LocalizeResult(classification=_classification(file, duration), audio=audio, events=events)


# --------------------------------------------------------------------------- atomic_write


def test_atomic_write_renames_into_place_keeping_the_extension(tmp_path):
    dest = tmp_path / "sub" / "out.mp4"  # missing parent folder is created
    with atomic_write(dest, force=False) as tmp:
        assert tmp.parent == dest.parent
        assert tmp.name.startswith(".out.tmp") and tmp.suffix == ".mp4"
        assert tmp.exists() and not dest.exists()
        tmp.write_bytes(b"abc")
    assert dest.read_bytes() == b"abc"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["out.mp4"]


def test_an_interrupt_while_the_temp_file_is_being_created_leaves_nothing(tmp_path, monkeypatch):
    """A signal raised as an exception can land after the temporary exists and before the writer
    holds it (SIGTERM during a batch left ``.w1.rest.tmp-...`` behind): it is removed all the same."""
    import avscene.io.writers as writers

    real_close, calls = writers.os.close, []

    def close_then_interrupt(fd):
        real_close(fd)
        if not calls:  # the first close is the temporary's, right after it was created
            calls.append(fd)
            raise KeyboardInterrupt

    monkeypatch.setattr(writers.os, "close", close_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "out.wav", force=False):
            pytest.fail("the writer was never handed the file")
    monkeypatch.undo()
    assert calls and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_write_removes_the_temp_file_on_any_exception(tmp_path, exc):
    dest = tmp_path / "out.tsv"
    dest.write_text("old")
    with pytest.raises(type(exc)):
        with atomic_write(dest, force=True) as tmp:
            tmp.write_text("half")
            raise exc
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tsv"]


def test_atomic_write_refuses_to_overwrite_without_force(tmp_path):
    dest = tmp_path / "out.txt"
    dest.write_text("old")
    with pytest.raises(OutputError, match="already exists.*--force"):
        atomic_write_text(dest, "new", force=False)
    assert dest.read_text() == "old"
    atomic_write_text(dest, "new", force=True)
    assert dest.read_text() == "new"


def test_atomic_write_names_a_folder_it_cannot_create(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=f"output folder {blocker}"):
        atomic_write_bytes(blocker / "out.bin", b"1", force=False)


def test_atomic_write_names_an_unwritable_folder(read_only_dir):
    with pytest.raises(OutputError, match=f"output folder {read_only_dir}"):
        atomic_write_bytes(read_only_dir / "out.bin", b"1", force=False)


def test_atomic_write_rejects_a_folder_as_destination(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        atomic_write_text(tmp_path, "x", force=True)


def test_atomic_write_files_get_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "p.txt", "x", force=False)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- events TSV


def test_events_tsv_exact_text(tmp_path):
    a = _result("/data/clips/a.mp4", events=(Event("dog", 0.24, 1.2), Event("car", 1.2, 10.0)))
    b = _result("b.mkv", events=(Event("dog", 3.0004, 4.9996),))
    none = _result("c.mp4")  # no events: no row
    out = write_events_tsv([a, FailedInput("x.mp4", "broken"), none, b], tmp_path / "ev.tsv", force=False)
    assert out.read_text() == (
        "filename\tonset\toffset\tevent_label\tmodality\n"
        "a.mp4\t0.240\t1.200\tdog\taudio\n"
        "a.mp4\t1.200\t10.000\tcar\taudio\n"
        "b.mkv\t3.000\t5.000\tdog\taudio\n"
    )


def test_events_tsv_modality_column_from_the_timing(tmp_path):
    timing = {"dog": Timing(heard=((1.0, 3.0),), seen=((2.0, 5.0),), overlap=True, both=((2.0, 3.0),)),
              "cat": Timing(heard=(), seen=((0.0, 1.0),), overlap=False)}
    r = dataclasses.replace(_result("a.mp4", events=(Event("dog", 1.0, 3.0),)), timing=timing)
    out = write_events_tsv([r], tmp_path / "ev.tsv", force=False)
    assert out.read_text().splitlines()[1:] == [
        "a.mp4\t0.000\t1.000\tcat\tvisual",
        "a.mp4\t1.000\t3.000\tdog\taudio",
        "a.mp4\t2.000\t5.000\tdog\tvisual",
        "a.mp4\t2.000\t3.000\tdog\taudio-visual",
    ]


def test_events_tsv_overwrite_protection(tmp_path):
    path = tmp_path / "ev.tsv"
    write_events_tsv([], path, force=False)
    assert path.read_text() == "filename\tonset\toffset\tevent_label\tmodality\n"
    with pytest.raises(OutputError, match="--force"):
        write_events_tsv([_result(events=(Event("dog", 0, 1),))], path, force=False)
    assert path.read_text() == "filename\tonset\toffset\tevent_label\tmodality\n"


def test_events_tsv_rejects_a_tab_in_a_file_name(tmp_path):
    with pytest.raises(OutputError, match="tab"):
        write_events_tsv([_result("a\tb.mp4", events=(Event("dog", 0, 1),))], tmp_path / "e.tsv", force=False)
    assert not (tmp_path / "e.tsv").exists()


# --------------------------------------------------------------------------- score spans


@pytest.mark.parametrize("duration", [10.0, 9.5, 9.62, 3.3, 0.96, 0.5])
def test_segment_timestamps_tile_the_clip(duration):
    wins = _windows(duration)
    ts = segment_timestamps([s for s, _ in wins], [e for _, e in wins], duration)
    assert len(ts) == len(wins) + 1
    assert ts[0] == 0.0 and ts[-1] == duration
    assert np.all(np.diff(ts) > 0)  # contiguous, non-overlapping, no empty span
    # Each inner boundary is the start of window i plus a quarter window: the
    # central 0.48 s of window i is [0.48 i + 0.24, 0.48 i + 0.72).
    for i in range(1, len(wins)):
        assert ts[i] == pytest.approx(HOP * i + 0.24)


def test_segment_timestamps_single_window_spans_the_clip():
    assert segment_timestamps([0.0], [0.96], 0.7).tolist() == [0.0, 0.7]


# --------------------------------------------------------------------------- scores TSV


def test_scores_tsv_exact_text():
    # 2.0-s clip: windows [0, .96), [.48, 1.44), [.96, 1.92), [1.44, 2.4)
    r = _result("/x/clip one.mp4", duration=2.0, scores={"dog": [0.5, -0.25, 1e-7, 2.0]})
    assert scores_tsv_text(r, class_names=["car", "dog"]) == (
        "onset\toffset\tcar\tdog\n"
        "0.000\t0.720\t-inf\t0.5\n"
        "0.720\t1.200\t-inf\t-0.25\n"
        "1.200\t1.680\t-inf\t1e-07\n"
        "1.680\t2.000\t-inf\t2\n"
    )


def test_scores_tsv_reads_back_with_contiguous_rows():
    rng = np.random.default_rng(0)
    dur = 10.0
    vals = {c: rng.normal(size=len(_windows(dur))) for c in ("a", "b", "c")}
    text = scores_tsv_text(_result(duration=dur, scores=vals), class_names=["a", "b", "c"])
    rows = list(csv.reader(text.splitlines(), delimiter="\t"))
    assert rows[0] == ["onset", "offset", "a", "b", "c"]
    body = rows[1:]
    assert len(body) == 20
    assert body[0][0] == "0.000" and body[-1][1] == "10.000"
    # sed_scores_eval.validate_score_dataframe: offset of row i == onset of row i+1, no empty row
    for prev, nxt in zip(body, body[1:]):
        assert prev[1] == nxt[0]
    assert all(float(r[1]) > float(r[0]) for r in body)
    got = np.array([[float(x) for x in r[2:]] for r in body])  # (P, 3)
    want = np.stack([vals["a"], vals["b"], vals["c"]], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_scores_tsv_without_audio_is_one_minus_inf_row():
    assert scores_tsv_text(_result(duration=4.0), class_names=["dog"]) == "onset\toffset\tdog\n0.000\t4.000\t-inf\n"


def test_scores_tsv_bad_class_names():
    r = _result(duration=2.0, scores={"dog": [1, 2, 3, 4]})
    with pytest.raises(OutputError, match="duplicate"):
        scores_tsv_text(r, class_names=["dog", "dog"])
    with pytest.raises(OutputError, match="at least one class"):
        scores_tsv_text(r, class_names=[])
    with pytest.raises(OutputError, match="tab"):
        scores_tsv_text(r, class_names=["a\tb"])


def _dead_pid() -> int:
    """The PID of a child that has exited and been reaped (so no process has it now)."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_rerun_removes_stale_temporaries_of_its_output_and_nothing_else(tmp_path):
    import os

    from avscene.io.writers import atomic_write_bytes

    dest = tmp_path / "violin.wav"
    stale = tmp_path / f".violin.tmp-{_dead_pid()}-0123abcd.wav"  # left by a killed writer
    live = tmp_path / f".violin.tmp-{os.getppid()}-89abcdef.wav"  # a writer still running
    other = tmp_path / f".flute.tmp-{_dead_pid()}-0123abcd.wav"  # another output's
    mine = tmp_path / ".violin.tmp-keep.wav"  # a user's file that only looks similar
    for f in (stale, live, other, mine):
        f.write_bytes(b"x")
    atomic_write_bytes(dest, b"data", force=False)
    assert dest.read_bytes() == b"data"
    assert not stale.exists()
    assert live.exists() and other.exists() and mine.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (dest, live, other, mine))
