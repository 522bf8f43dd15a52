"""Long batch runs: names that are not UTF-8, the outputs an interrupted run leaves, clashes across shards.

Each test states the defect it guards against (issue 29, "Long batch runs").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from avscene.cli.app import main
from avscene.testing.media import write_audio

BAD = os.fsdecode(b"bad\xff.wav")  # a legal Linux file name that is not UTF-8 (a lone surrogate in Python)
SEP_FAST = ["--components", "4", "--device", "cpu", "--label", "drum"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def lines(path: Path) -> list[dict]:
    """The records of a JSONL file; the file must be valid UTF-8 (strict decoding)."""
    return [json.loads(line) for line in path.read_bytes().decode("utf-8").splitlines()]


@pytest.fixture
def odd(tmp_path) -> Path:
    """A folder with ``good.wav`` and ``bad\\xff.wav``."""
    folder = tmp_path / "odd"
    folder.mkdir()
    write_audio(folder / "good.wav", duration=1.0, freq=400.0)
    write_audio(folder / BAD, duration=1.0, freq=600.0)
    return folder


@pytest.fixture
def two(tmp_path) -> Path:
    """A folder with ``a.wav`` and ``b.wav``."""
    folder = tmp_path / "two"
    folder.mkdir()
    for k, name in enumerate(("a.wav", "b.wav")):
        write_audio(folder / name, duration=1.0, freq=400.0 + 200 * k)
    return folder


# ---- 1. file names that are not UTF-8 --------------------------------------------------------------


def test_jsonl_records_a_non_utf8_name_losslessly_and_resume_recognises_it(capsys, tiny_model_dir, odd, tmp_path):
    """It used to abort with "internal error: UnicodeEncodeError" at the bad name, every time."""
    log = tmp_path / "r.jsonl"
    code, out, err = run(capsys, "classify", odd, "-m", tiny_model_dir, "--jsonl", log)
    assert code == 0, err
    recs = lines(log)
    assert sorted(os.fsencode(r["file"]) for r in recs) == sorted(os.fsencode(str(odd / n)) for n in ("good.wav", BAD))
    assert rb"\udcff" in log.read_bytes()  # the escaped form the README states
    assert "bad\\xff.wav" in out  # the table shows the byte escaped, readably
    assert len({len(line) for line in out.splitlines()}) == 1  # and its columns still line up
    code, _, err = run(capsys, "classify", odd, "-m", tiny_model_dir, "--jsonl", log, "--resume")
    assert code == 0 and "skipping 2 input(s) already recorded" in err, err
    assert len(lines(log)) == 2


@pytest.mark.parametrize("mode", [["--json"], ["--jsonl", "-"]])
def test_json_on_stdout_holds_a_non_utf8_name(capsys, tiny_model_dir, odd, mode):
    code, out, err = run(capsys, "classify", odd, "-m", tiny_model_dir, *mode)
    assert code == 0, err
    docs = json.loads(out) if mode == ["--json"] else [json.loads(x) for x in out.splitlines()]
    assert os.fsencode(str(odd / BAD)) in {os.fsencode(d["file"]) for d in docs}


def test_events_tsv_keeps_the_bytes_of_a_non_utf8_name(capsys, tiny_model_dir, odd, tmp_path):
    tsv = tmp_path / "ev.tsv"
    code, _, err = run(capsys, "localize", odd, "-m", tiny_model_dir, "--threshold", "-10", "--event-threshold",
                       "-100", "--audio-threshold", "-10", "--events-tsv", tsv)
    assert code == 0, err
    names = {row.split(b"\t")[0] for row in tsv.read_bytes().splitlines()[1:]}
    assert names == {b"good.wav", b"bad\xff.wav"}


def test_report_pages_and_index_of_a_non_utf8_name(capsys, tiny_model_dir, odd, tmp_path):
    out = tmp_path / "rep"
    code, _, err = run(capsys, "report", odd, "-m", tiny_model_dir, "-o", f"{out}/", "--max-embed-seconds", "0")
    assert code == 0, err
    page = out / os.fsdecode(b"bad\xff.html")
    assert page.exists()
    html = page.read_bytes().decode("utf-8")  # valid UTF-8
    assert "bad\\xff.wav" in html and "bad%FF." in html  # shown escaped; the Ogg file linked by its bytes
    index = (out / "index.html").read_bytes().decode("utf-8")
    assert 'href="bad%FF.html"' in index


def test_separate_writes_the_audio_of_a_non_utf8_name(capsys, tiny_model_dir, odd, tmp_path):
    """soundfile encodes a str path strictly: the .wav of such an input failed as an internal error."""
    code, out, err = run(capsys, "separate", odd, "-m", tiny_model_dir, *SEP_FAST, "-o", f"{tmp_path}/s/{{name}}.wav",
                         "--json")
    assert code == 0, err
    assert sorted(os.listdir(os.fsencode(tmp_path / "s"))) == [b"bad\xff.wav", b"good.wav"]
    assert {os.fsencode(r["source_path"]) for r in json.loads(out)} == {
        os.fsencode(str(tmp_path / "s" / n)) for n in (BAD, "good.wav")}


# ---- 2. what kill -9 leaves: outputs without a record ------------------------------------------------


def _drop_last_record(log: Path) -> dict:
    keep = log.read_text().splitlines(keepends=True)
    log.write_text("".join(keep[:-1]))
    return json.loads(keep[-1])


def test_resume_replaces_the_outputs_of_an_input_without_a_record(capsys, tiny_model_dir, two, tmp_path):
    """After kill -9 between an input's files and its record, --resume used to fail that input with
    "already exists" and record it as failed, so no later --resume could finish it."""
    out, log = tmp_path / "loc", tmp_path / "l.jsonl"
    argv = ["localize", two, "-m", tiny_model_dir, "--scores-tsv", out / "scores", "--vtt", f"{out}/{{name}}.vtt",
            "--audacity", f"{out}/{{name}}.txt", "--jsonl", log]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    lost = _drop_last_record(log)  # the crash state: its files are there, its record is not
    code, _, err = run(capsys, *argv, "--resume")
    assert code == 0, err
    recs = lines(log)
    assert [r["file"] for r in recs][-1] == lost["file"] and all("error" not in r for r in recs)
    code, _, err = run(capsys, *argv[:-2])  # without --resume (and without the log) nothing is replaced
    assert code == 1 and "already exists; pass --force" in err


def test_resume_replaces_report_ogg_files_and_separated_wavs(capsys, tiny_model_dir, two, tmp_path):
    log = tmp_path / "r.jsonl"
    argv = ["report", two, "-m", tiny_model_dir, "-o", f"{tmp_path}/rep/", "--max-embed-seconds", "0",
            "--jsonl", log]
    assert run(capsys, *argv)[0] == 0
    assert list((tmp_path / "rep").glob("*.ogg"))
    _drop_last_record(log)
    code, _, err = run(capsys, *argv, "--resume")
    assert code == 0 and "failed" not in err, err
    assert all("error" not in r for r in lines(log))

    log = tmp_path / "s.jsonl"
    argv = ["separate", two, "-m", tiny_model_dir, *SEP_FAST, "-o", f"{tmp_path}/sep/{{name}}.wav",
            "--residual", f"{tmp_path}/sep/{{name}}.rest.wav", "--jsonl", log]
    assert run(capsys, *argv)[0] == 0
    _drop_last_record(log)
    code, _, err = run(capsys, *argv, "--resume")
    assert code == 0 and "failed" not in err, err


def test_a_failed_input_leaves_none_of_its_outputs(capsys, tiny_model_dir, tmp_path):
    """An input whose second output cannot be written fails without leaving its first one."""
    write_audio(tmp_path / "a.wav", duration=1.0)
    (tmp_path / "out" / "a.vtt").mkdir(parents=True)  # --vtt cannot be written: a folder is in the way
    code, _, err = run(capsys, "localize", tmp_path / "a.wav", "-m", tiny_model_dir,
                       "--scores-tsv", tmp_path / "scores", "--vtt", tmp_path / "out" / "a.vtt")
    assert code == 1 and "is a folder" in err
    assert not (tmp_path / "scores" / "a.tsv").exists()


# ---- 3. clashes: across shards, through {label}, and {relpath} -----------------------------------------


@pytest.fixture
def cams(tmp_path) -> Path:
    """``cams/cam1/0001.wav`` and ``cams/cam2/0001.wav``: the normal case of a recursive listing."""
    for k, cam in enumerate(("cam1", "cam2")):
        (tmp_path / "cams" / cam).mkdir(parents=True)
        write_audio(tmp_path / "cams" / cam / "0001.wav", duration=1.0, freq=300.0 + 200 * k)
    return tmp_path / "cams"


def test_a_shard_refuses_a_clash_with_an_input_of_another_shard(capsys, tiny_model_dir, cams, tmp_path):
    """With --shard each shard checked only its own inputs: shard 2 --force replaced shard 1's files."""
    out = tmp_path / "out"
    for i in (1, 2):
        code, _, err = run(capsys, "localize", cams, "-m", tiny_model_dir, "--shard", f"{i}/2",
                           "--vtt", f"{out}/{{name}}.vtt", "--force")
        assert code == 2 and "would write the same file" in err, err
    assert not out.exists()


def test_relpath_keeps_inputs_of_different_folders_apart(capsys, tiny_model_dir, cams, tmp_path):
    out = tmp_path / "out"
    code, _, err = run(capsys, "localize", cams, "-m", tiny_model_dir, "--vtt", f"{out}/{{relpath}}/{{name}}.vtt",
                       "--json")
    assert code == 0, err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.vtt")) == ["cam1/0001.vtt", "cam2/0001.vtt"]
    code, _, err = run(capsys, "separate", cams, "-m", tiny_model_dir, *SEP_FAST, "-o",
                       f"{out}/{{relpath}}/{{name}}.{{label}}.wav")
    assert code == 0, err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav")) == ["cam1/0001.drum.wav",
                                                                                 "cam2/0001.drum.wav"]


def test_separate_refuses_names_that_a_label_can_make_collide(capsys, tmp_path):
    """``-o 'out/{name}_{label}.wav'``: ``a`` separated as ``y_x`` and ``a_y`` as ``x`` are one file;
    one input's output was overwritten, exit 0. Refused before any input, exit 2."""
    from avscene.testing.models import tiny_checkpoint

    model = tiny_checkpoint(tmp_path / "m", labels=("x", "y_x", "z"))
    (tmp_path / "in").mkdir()
    for name in ("a.wav", "a_y.wav"):
        write_audio(tmp_path / "in" / name, duration=1.0)
    code, _, err = run(capsys, "separate", tmp_path / "in", "-m", model, "--components", "4", "--device", "cpu",
                       "-o", f"{tmp_path}/out/{{name}}_{{label}}.wav")
    assert code == 2 and "a_y_x.wav" in err and "a.wav" in err and "a_y.wav" in err, err
    assert not (tmp_path / "out").exists()


def test_relpath_is_documented_in_help_and_readme(capsys):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "{relpath}" in readme
    for cmd in ("localize", "separate", "report"):
        code, out, _ = run(capsys, cmd, "--help")
        assert code == 0 and "{relpath}" in out, cmd

