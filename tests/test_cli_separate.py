"""End-to-end tests of ``avscene separate`` through ``avscene.cli.app.main``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avscene.cli.app import main
from avscene.io.decode import read_audio
from avscene.testing.media import write_audio, write_video
from avscene.testing.models import tiny_checkpoint

FAST = ["--components", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    return str(tiny_checkpoint(tmp_path_factory.mktemp("ckpt")))


@pytest.fixture
def wav(tmp_path) -> Path:
    (tmp_path / "in").mkdir()
    return write_audio(tmp_path / "in" / "tone.wav", duration=1.5, freq=523.0)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_writes_source_and_residual_and_reports_json(ckpt, wav, tmp_path, capsys) -> None:
    src, rest = tmp_path / "out" / "src.wav", tmp_path / "out" / "rest.wav"
    code, out, err = run(capsys, "separate", wav, "--label", "b", "-o", src, "--residual", rest,
                         "--model", ckpt, "--json", *FAST)
    assert code == 0, err
    (doc,) = json.loads(out)
    assert doc["file"] == str(wav) and doc["label"] == "b" and doc["label_source"] == "given"
    assert doc["source_path"] == str(src) and doc["residual_path"] == str(rest)
    assert doc["k"] == 4 and len(doc["alpha"][0]) == 4 and doc["threshold"] is None
    s, rate = sf.read(src, dtype="float32")
    r, _ = sf.read(rest, dtype="float32")
    assert rate == 16000 and sf.info(src).subtype == "FLOAT"
    np.testing.assert_allclose(s + r, read_audio(wav), atol=1e-5)
    assert not list((tmp_path / "out").glob(".*tmp*"))  # no temporary file left behind


def test_existing_output_needs_force(ckpt, wav, tmp_path, capsys) -> None:
    dst = tmp_path / "src.wav"
    dst.write_bytes(b"keep me")
    code, _, err = run(capsys, "separate", wav, "-l", "a", "-o", dst, "--model", ckpt, *FAST)
    assert code == 1
    assert f"{dst} already exists; pass --force to overwrite it" in err
    assert dst.read_bytes() == b"keep me"
    code, _, err = run(capsys, "separate", wav, "-l", "a", "-o", dst, "--model", ckpt, "--force", *FAST)
    assert code == 0, err
    assert sf.info(dst).frames == len(read_audio(wav))


def test_directory_with_name_template(ckpt, tmp_path, capsys) -> None:
    folder = tmp_path / "media"
    folder.mkdir()
    write_audio(folder / "one.wav", duration=1.0, freq=440.0)
    write_video(folder / "two.mp4", duration=1.0, freq=880.0)
    code, out, err = run(capsys, "separate", folder, "--label", "c", "-o", tmp_path / "o" / "{name}.{label}.wav",
                         "--residual", tmp_path / "o" / "{name}.rest.flac", "--model", ckpt, "--jsonl", "-", *FAST)
    assert code == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    assert [Path(d["source_path"]).name for d in docs] == ["one.c.wav", "two.c.wav"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["one.c.wav", "one.rest.flac",
                                                                  "two.c.wav", "two.rest.flac"]
    assert sf.info(tmp_path / "o" / "two.rest.flac").subtype == "PCM_24"


def test_several_inputs_need_name_in_the_template(ckpt, tmp_path, capsys) -> None:
    a = write_audio(tmp_path / "a.wav", duration=1.0)
    b = write_audio(tmp_path / "b.wav", duration=1.0)
    code, _, err = run(capsys, "separate", a, b, "-l", "a", "-o", tmp_path / "out.wav", "--model", ckpt, *FAST)
    assert code == 2
    assert "with several inputs the output needs a {name} placeholder" in err
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["-l", "nope"], "unknown label 'nope'; the model knows: a, b, c"),
    (["-l", "a", "-o", "x.mp3"], "write .wav (32-bit float) or .flac (24-bit)"),
    (["-l", "a", "-o", "{stem}.wav"], "unknown placeholder(s) ['stem']"),
    (["-l", "a", "-o", "s.wav", "--residual", "s.wav"], "-o and --residual name the same file"),
    (["-l", "a", "--divergence", "euclid"], "unknown NMF divergence 'euclid'"),
])
def test_usage_errors_exit_2(ckpt, wav, tmp_path, capsys, monkeypatch, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "separate", wav, *args, "--model", ckpt, *FAST)
    assert code == 2 and out == ""
    assert message in err
    assert not list(tmp_path.glob("*.wav"))


def test_label_unknown_default_output_in_current_folder(ckpt, wav, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "separate", wav, "--model", ckpt, "--json", *FAST)
    assert code == 0, err
    (doc,) = json.loads(out)
    assert doc["label_source"] == "predicted" and doc["label"] in ("a", "b", "c")
    assert doc["source_path"] == f"tone.{doc['label']}.wav" and (tmp_path / doc["source_path"]).is_file()
    assert doc["residual_path"] is None


def test_silent_input_fails_alone(ckpt, wav, tmp_path, capsys) -> None:
    silent = write_video(tmp_path / "silent.mp4", duration=1.0, audio_codec=None)
    code, out, err = run(capsys, "separate", silent, wav, "-l", "a", "-o", tmp_path / "{name}.wav",
                         "--model", ckpt, "--json", *FAST)
    assert code == 1
    assert "no audio stream, so there is nothing to separate" in err
    docs = json.loads(out)
    assert docs[0] == {"file": str(silent), "error": docs[0]["error"]} and docs[1]["label"] == "a"
    assert (tmp_path / "tone.wav").is_file() and not (tmp_path / "silent.wav").exists()
