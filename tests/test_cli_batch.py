"""Batch flags end to end: --shard, --jsonl FILE/--resume, --jobs, --verbose, and interruption by signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from avscene.cli.app import main
from avscene.testing.media import write_audio

SEP_FAST = ["--components", "4", "--device", "cpu", "--label", "drum"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
WAIT_S = 120.0  # upper bound for a subprocess step on a loaded box


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def records(path: Path) -> list[dict]:
    """Every line of a JSONL file, parsed (fails on a torn line)."""
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def media(clips, tmp_path) -> Path:
    """A folder with the three session clips (av.mp4, audio_only.wav, video_only.mp4)."""
    folder = tmp_path / "media"
    folder.mkdir()
    for p in clips.values():
        shutil.copyfile(p, folder / p.name)
    return folder


@pytest.fixture
def wavs(tmp_path) -> Path:
    folder = tmp_path / "wavs"
    folder.mkdir()
    for k in range(4):
        write_audio(folder / f"w{k}.wav", duration=1.0, freq=300.0 + 100 * k)
    return folder


# ---- shards, the log and resuming ----------------------------------------------------------------


def test_shards_cover_every_input_once(capsys, tiny_model_dir, media):
    files = []
    for i in (1, 2):
        code, out, err = run(capsys, "classify", media, "-m", tiny_model_dir, "--shard", f"{i}/2", "--jsonl", "-")
        assert code == 0, err
        files.append([r["file"] for r in map(json.loads, out.splitlines())])
    everything = sorted(str(p) for p in media.iterdir())  # sorted: audio_only, av, video_only
    assert files == [everything[0::2], everything[1::2]]
    code, out, err = run(capsys, "classify", media, "-m", tiny_model_dir, "--shard", "9/4")
    assert code == 2 and "--shard '9/4': write I/N" in err


def test_jsonl_file_resume_and_torn_line(capsys, tiny_model_dir, media, tmp_path):
    log = tmp_path / "out" / "r.jsonl"
    code, out, err = run(capsys, "classify", media, "-m", tiny_model_dir, "--jsonl", log)
    assert code == 0, err
    assert "av.mp4" in out  # stdout still shows the table
    first = records(log)
    assert sorted(r["file"] for r in first) == sorted(str(p) for p in media.iterdir())

    code, _, err = run(capsys, "classify", media, "-m", tiny_model_dir, "--jsonl", log)
    assert code == 2 and "already exists; pass --resume" in err
    code, _, err = run(capsys, "classify", media, "-m", tiny_model_dir, "--jsonl", log, "--resume")
    assert code == 0 and "skipping 3 input(s) already recorded" in err
    assert records(log) == first

    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:2]) + lines[2][:25])  # a hard kill mid-line
    code, _, err = run(capsys, "classify", media, "-m", tiny_model_dir, "--jsonl", log, "--resume")
    assert code == 0, err
    assert "cutting off an incomplete last line (25 bytes" in err and "skipping 2 input(s)" in err
    assert records(log) == first  # the third input was processed again; same record

    code, _, err = run(capsys, "classify", media, "-m", tiny_model_dir, "--jsonl", log, "--force")
    assert code == 0 and records(log) == first  # replaced, not appended


def test_failed_inputs_are_skipped_on_resume_unless_retried(capsys, tiny_model_dir, clips, tmp_path):
    log, broken = tmp_path / "r.jsonl", tmp_path / "broken.mp4"
    broken.write_text("not a video")
    argv = ["classify", clips["av"], broken, "-m", tiny_model_dir, "--jsonl", log]
    assert run(capsys, *argv)[0] == 1
    code, _, err = run(capsys, *argv, "--resume")
    assert code == 1 and "1 input(s) recorded as failed" in err and "--retry-failed" in err
    assert len(records(log)) == 2
    shutil.copyfile(clips["av"], broken)  # fixed
    code, _, err = run(capsys, *argv, "--resume", "--retry-failed")
    assert code == 0, err
    recs = records(log)
    assert [r["file"] for r in recs] == [str(clips["av"]), str(broken), str(broken)]
    assert "error" in recs[1] and "error" not in recs[2]


def test_localize_events_tsv_after_resume_covers_every_input(capsys, tiny_model_dir, media, tmp_path):
    argv = ["localize", media, "-m", tiny_model_dir, "--threshold", "-10", "--event-threshold", "-100",
            "--audio-threshold", "-10", "--visual-threshold", "-10"]  # every class heard and seen
    full, part, log = tmp_path / "full.tsv", tmp_path / "part.tsv", tmp_path / "l.jsonl"
    code, _, err = run(capsys, *argv, "--events-tsv", full, "--jsonl", log)
    assert code == 0, err
    first = log.read_text().splitlines(keepends=True)
    log.write_text(first[0])  # as if interrupted after the first input
    code, _, err = run(capsys, *argv, "--events-tsv", part, "--jsonl", log, "--resume")
    assert code == 0, err
    assert len(full.read_text().splitlines()) > 1  # events of several inputs (every window is "sounding")
    assert "\tvisual\n" in full.read_text() and "\taudio-visual\n" in full.read_text()
    assert part.read_text() == full.read_text()  # the recorded input's events come from the log


@pytest.mark.parametrize(("flags", "message"), [
    (["--resume"], "--resume continues a --jsonl FILE"),
    (["--jsonl", "-", "--resume"], "--resume continues a --jsonl FILE"),
    (["--retry-failed"], "--retry-failed only applies with --resume"),
    (["--jobs", "0"], "--jobs"),
    (["--timeout", "-1"], "--timeout"),
])
def test_bad_batch_flags_exit_2(capsys, tiny_model_dir, clips, flags, message):
    code, out, err = run(capsys, "classify", clips["av"], "-m", tiny_model_dir, *flags)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_separate_jobs_2_writes_the_same_files(capsys, tmp_path, tiny_model_dir, wavs):
    outs = {}
    for jobs in (1, 2):
        folder = tmp_path / f"out{jobs}"
        code, out, err = run(capsys, "separate", wavs, "-m", tiny_model_dir, *SEP_FAST, "--jobs", jobs,
                             "-o", folder / "{name}.{label}.wav", "--residual", folder / "{name}.rest.flac",
                             "--jsonl", "-")
        assert code == 0, err
        docs = [json.loads(line) for line in out.splitlines()]
        for d in docs:  # the paths name each run's folder; the rest must agree
            assert Path(d.pop("source_path")).parent == Path(d.pop("residual_path")).parent == folder
        # samples and format, not bytes: libsndfile stamps the time into a float WAV's PEAK chunk
        files = {p.name: (sf.info(p).subtype, sf.read(p, dtype="float32")[0].tobytes())
                 for p in sorted(folder.iterdir())}
        outs[jobs] = (docs, files)
    assert outs[2] == outs[1]
    assert [d["file"] for d in outs[1][0]] == [str(p) for p in sorted(wavs.iterdir())]
    assert len(outs[1][1]) == 8 and outs[1][1]["w3.drum.wav"][0] == "FLOAT"


# ---- --verbose -----------------------------------------------------------------------------------


def test_verbose_prints_tracebacks(capsys, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    code, _, err = run(capsys, "classify", broken, "-m", tiny_model_dir)
    assert code == 1 and "Traceback" not in err
    assert len([line for line in err.splitlines() if "failed:" in line]) == 1
    code, _, err = run(capsys, "--verbose", "classify", broken, "-m", tiny_model_dir)
    assert code == 1 and "Traceback (most recent call last)" in err and "DecodeError" in err
    code, _, err = run(capsys, "--verbose", "classify", broken, "-m", tmp_path / "missing")
    assert code == 2 and "Traceback" in err and "checkpoint error" in err
    code, _, err = run(capsys, "classify", broken, "-m", tmp_path / "missing")  # not sticky
    assert code == 2 and "Traceback" not in err


# ---- signals (real processes) --------------------------------------------------------------------


def workers_of(pid: int) -> list[int]:
    """The multiprocessing workers whose parent is ``pid`` (from /proc; not the resource tracker)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            out.append(int(stat.parent.name))
    return out


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start(argv: list, *, session: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "avscene", *map(str, argv)], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=session)


def wait_for_records(proc: subprocess.Popen, log: Path, n: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while not (log.exists() and log.read_text().count("\n") >= n):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no record appeared"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_sigterm_stops_cleanly_and_resume_finishes(tmp_path, tiny_model_dir, wavs, jobs):
    out, log = tmp_path / "sep", tmp_path / "sep.jsonl"
    argv = ["separate", wavs, "-m", tiny_model_dir, *SEP_FAST, "-o", out / "{name}.{label}.wav",
            "--residual", out / "{name}.rest.wav", "--jsonl", log, "--jobs", jobs]
    proc = start(argv)
    wait_for_records(proc, log, 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 143, err
    done = records(log)
    assert 1 <= len(done) <= 4
    assert f"interrupted (SIGTERM) after {len(done)} of 4 input(s); rerun the same command with --resume" in err
    assert "Traceback" not in err
    # every output file belongs to a recorded input (so --resume will not trip over it); no temporary file
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(Path(p).name for r in done for p in (r["source_path"], r["residual_path"]))

    proc = start([*argv, "--resume"])
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    assert sorted(r["file"] for r in records(log)) == sorted(str(p) for p in wavs.iterdir())
    assert len(list(out.iterdir())) == 8


@pytest.mark.slow
def test_ctrl_c_with_workers(tmp_path, tiny_model_dir, clips):
    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(8):
        shutil.copyfile(clips["av"], folder / f"c{k:02d}.mp4")
    log = tmp_path / "c.jsonl"
    proc = start(["classify", folder, "-m", tiny_model_dir, "--device", "cpu", "--jobs", "2", "--jsonl", log],
                 session=True)
    wait_for_records(proc, log, 1)
    workers = workers_of(proc.pid)
    assert len(workers) == 2
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 130, err
    assert "interrupted (SIGINT)" in err and "Traceback" not in err
    assert 1 <= len(records(log)) < 8
    assert not [pid for pid in workers if running(pid)]


@pytest.mark.slow
def test_example_directory_script_records_each_file_once_and_resumes(media, tmp_path, tiny_model_dir):
    """examples/classify_dir.sh: one record per input; a rerun skips what is recorded (no duplicates)."""
    script = Path(__file__).resolve().parent.parent / "examples" / "classify_dir.sh"
    out = tmp_path / "labels.jsonl"
    env = {**ENV, "AVSCENE_MODEL": str(tiny_model_dir), "PATH": f"{Path(sys.executable).parent}:{ENV['PATH']}"}
    for run in range(2):
        proc = subprocess.run(["bash", str(script), str(media), str(out)], env=env, text=True,
                              capture_output=True, timeout=WAIT_S)
        assert proc.returncode == 0, proc.stderr
        assert len(records(out)) == 3  # av.mp4, audio_only.wav, video_only.mp4
        assert ("already recorded" in proc.stderr) == (run == 1)


@pytest.mark.parametrize("columns", ["20", "80", "300"])
def test_table_never_folds_a_long_path_when_piped(capsys, monkeypatch, tiny_model_dir, clips, tmp_path, columns):
    """The table's file cell holds the whole path on one line, whatever COLUMNS and the path length."""
    deep = tmp_path.joinpath(*["a_rather_long_folder_name"] * 6)
    deep.mkdir(parents=True)
    clip = deep / "some_clip_with_a_long_name.mp4"
    shutil.copyfile(clips["av"], clip)
    monkeypatch.setenv("COLUMNS", columns)
    code, out, err = run(capsys, "classify", clip, "-m", tiny_model_dir)
    assert code == 0, err
    assert any(str(clip) in line for line in out.splitlines())


def test_batch_flags_are_declared_once_and_every_batch_command_has_them() -> None:
    import typer

    from avscene.cli import _batch
    from avscene.cli.app import app

    click_app = typer.main.get_command(app)
    for name, classifier in (("classify", True), ("localize", True), ("separate", False)):
        params = {p.name for p in click_app.commands[name].params}  # type: ignore[attr-defined]
        assert set(_batch._COMMON_FLAGS) <= params, name
        assert ({"top_k", "edge_model"} <= params) == classifier, name
    # the aliases of the shared flags are used in cli/_batch.py alone (not repeated per command)
    cli = Path(_batch.__file__).parent
    aliases = {"JobsOpt", "JsonlOpt", "ResumeOpt", "RetryFailedOpt", "ShardOpt", "TimeoutOpt", "TopKOpt",
               "EdgeModelOpt"}
    users = {p.name for p in cli.glob("*.py") if p.name not in ("_options.py", "_batch.py")
             and aliases & set(p.read_text().replace("(", " ").replace(",", " ").split())}
    assert not users, users
