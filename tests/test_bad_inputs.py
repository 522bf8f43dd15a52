"""The bad-input matrix: every command on damaged, odd and missing inputs, run in-process.

For each of ``classify``, ``localize`` and ``separate``: the exit code (0 ok, 1 an
input failed, 2 usage error), exactly one stderr line per failing input naming it
and the problem, never a traceback, and for partly decodable inputs a result with
a warning saying what was skipped. Python warnings are counted as stderr lines, as
a user of the console script would see them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from avscene.cli.app import main
from avscene.testing.media import (
    corrupt_video_packets,
    overwrite_bytes,
    truncate_file,
    write_audio,
    write_video,
)

COMMANDS = ("classify", "localize", "separate")
CLIP = {"duration": 1.0, "fps": 8, "size": (64, 48), "box": (16, 8, 48, 40)}
SEPARATE_LABEL = "violin"  # one of conftest.TINY_LABELS: the random model predicts nothing reliably
HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
MANY_CHANNELS = 12  # 8 or more crashed PyAV 18 (planar frames built with a plane too many)


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # rich must not fold the one-line messages
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a typo'd --model must never reach the network
    monkeypatch.delenv("AVSCENE_DEBUG", raising=False)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every input of the matrix, written once."""
    root = tmp_path_factory.mktemp("bad_inputs")
    good = write_video(root / "good.mp4", pattern="index_noise", **CLIP)  # index at the end
    good_fs = write_video(root / "good_fs.mp4", pattern="index_noise", faststart=True, **{**CLIP, "duration": 2.0})
    (root / "text.mp4").write_text("this is a text file, not a video\n")
    (root / "zero.mp4").write_bytes(b"")
    empty_dir = root / "no_media"
    empty_dir.mkdir()
    (empty_dir / "notes.txt").write_text("not media\n")
    video_only = write_video(root / "_video_only.mp4", audio_codec=None, **CLIP)
    return {
        "good": good,
        "text": root / "text.mp4",
        "zero": root / "zero.mp4",
        "empty_dir": empty_dir,
        "truncated": truncate_file(good, root / "truncated.mp4"),
        # 2 s cut in half: about 1 s decodes, whatever the decoder threads (a 1-s clip cut in half decoded 0.5 s
        # with one thread, just at the warning's 0.5-s margin: only frame threads' losses made it warn)
        "truncated_fs": truncate_file(good_fs, root / "truncated_fs.mp4"),
        # 2 kB: smaller damage inside one H.264 slice can be concealed by FFmpeg without a trace
        "overwritten": overwrite_bytes(good, root / "overwritten.mp4", start=0.5, length=2048),
        "no_frames": corrupt_video_packets(good, root / "no_frames.mp4"),
        "no_frames_no_audio": corrupt_video_packets(video_only, root / "no_frames_no_audio.mp4"),
        "short": write_video(root / "short.mp4", **{**CLIP, "duration": 0.2}),
        "one_pixel": write_video(root / "one_pixel.mp4", **{**CLIP, "size": (1, 1), "box": None},
                                 pix_fmt="yuv444p"),
        "odd_size": write_video(root / "odd_size.mp4", **{**CLIP, "size": (17, 13), "box": None},
                                pix_fmt="yuv444p"),
        "rotated": write_video(root / "rotated.mp4", rotation=90, **CLIP),
        "vfr": write_video(root / "vfr.mp4", frame_times=[0.0, 0.05, 0.1, 0.4, 0.45, 0.9], **CLIP),
        "surround": write_video(root / "surround.mp4", channels=6, **CLIP),
        "audio_8k": write_video(root / "audio_8k.mp4", audio_rate=8000, **CLIP),
        "audio_96k": write_video(root / "audio_96k.mp4", audio_rate=96000, **CLIP),
    }


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err_lines: list[str]  # non-empty stderr lines, then visible Python warnings

    def lines_naming(self, path: Path | str) -> list[str]:
        return [line for line in self.err_lines if str(path) in line]

    def results(self) -> list[dict]:
        return json.loads(self.out)


def run(capsys: pytest.CaptureFixture, command: str, *args: str | Path, out_dir: Path | None = None) -> Run:
    """``avscene COMMAND ARGS --json`` in-process (separate writes into ``out_dir``)."""
    extra: list[str] = []
    if command == "separate" and out_dir is not None:
        extra = ["-o", str(out_dir / "{name}.{label}.wav")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main([command, *map(str, args), "--json", *extra])
    out, err = capsys.readouterr()
    shown = [f"{Path(w.filename).name}:{w.lineno}: {w.category.__name__}: {w.message}"
             for w in caught if not issubclass(w.category, HIDDEN_WARNINGS)]
    return Run(code, out, [line for line in err.splitlines() if line.strip()] + shown)


def label_args(command: str) -> list[str]:
    return ["--label", SEPARATE_LABEL] if command == "separate" else []


def check_failed_input(r: Run, path: Path | str, problem: str) -> None:
    """Exit 1, one stderr line that names the input and matches ``problem``, and a JSON error record."""
    assert r.code == 1, r
    assert len(r.err_lines) == 1, r.err_lines
    assert str(path) in r.err_lines[0] and re.search(problem, r.err_lines[0]), r.err_lines
    assert "Traceback" not in r.out
    (rec,) = r.results()
    assert rec["file"] == str(path) and re.search(problem, rec["error"])


def check_usage_error(r: Run, *needles: str) -> None:
    """Exit 2, nothing on stdout, one stderr line holding every needle."""
    assert r.code == 2, r
    assert r.out == ""
    assert len(r.err_lines) == 1, r.err_lines
    assert all(n in r.err_lines[0] for n in needles), r.err_lines
    assert "Traceback" not in r.err_lines[0]


def check_ok(r: Run, path: Path, *, warning: str | None = None) -> dict:
    """Exit 0, one result for ``path``; stderr holds only warning lines about it (matching ``warning``)."""
    assert r.code == 0, r
    (res,) = r.results()
    res = res.get("classification", res)  # localize nests the classify record
    assert res["file"] == str(path)
    # the tiny model predicts nothing, so `separate --label` warns that the label is not predicted: a
    # warning about the model's decision, not the input (tests/test_separate.py checks it)
    r = replace(r, err_lines=[line for line in r.err_lines if "is not predicted in this file" not in line])
    assert all(line.startswith(f"avscene: warning: {path}: ") for line in r.err_lines), r.err_lines
    assert len(set(r.err_lines)) == len(r.err_lines), f"repeated warning lines: {r.err_lines}"
    if warning is None:
        assert r.err_lines == [], r.err_lines
    else:
        assert any(re.search(warning, w) for w in res["warnings"]), res["warnings"]
        assert any(re.search(warning, line) for line in r.err_lines), r.err_lines
    return res


# ---- inputs that fail ------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name, problem", [
    ("missing", "no such file"),
    ("text", "not a media file"),
    ("zero", r"empty file \(0 bytes\)"),
    ("truncated", "not a media file|truncated"),  # index ('moov') at the end: cut off
])
def test_unreadable_input(capsys, tiny_model_dir, media, tmp_path, command, name, problem):
    path = tmp_path / "missing.mp4" if name == "missing" else media[name]
    r = run(capsys, command, path, "-m", tiny_model_dir, *label_args(command), out_dir=tmp_path)
    check_failed_input(r, path, problem)


@pytest.mark.parametrize("command", COMMANDS)
def test_nothing_decodable(capsys, tiny_model_dir, media, tmp_path, command):
    path = media["no_frames_no_audio"]
    r = run(capsys, command, path, "-m", tiny_model_dir, *label_args(command), out_dir=tmp_path)
    check_failed_input(r, path, "nothing could be decoded|no audio stream")


@pytest.mark.parametrize("command", COMMANDS)
def test_directory_without_media(capsys, tiny_model_dir, media, tmp_path, command):
    r = run(capsys, command, media["empty_dir"], "-m", tiny_model_dir, *label_args(command), out_dir=tmp_path)
    check_usage_error(r, str(media["empty_dir"]), "contains no media files")


@pytest.mark.parametrize("command", COMMANDS)
def test_unreadable_permissions(capsys, tiny_model_dir, media, tmp_path, command):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    path = tmp_path / "secret.mp4"
    shutil.copyfile(media["good"], path)
    path.chmod(0)
    try:
        r = run(capsys, command, path, "-m", tiny_model_dir, *label_args(command), out_dir=tmp_path)
    finally:
        path.chmod(0o600)
    check_failed_input(r, path, "permission denied")


def test_failing_input_does_not_stop_the_others(capsys, tiny_model_dir, media, tmp_path):
    r = run(capsys, "classify", media["text"], media["good"], media["zero"], "-m", tiny_model_dir)
    assert r.code == 1
    assert len(r.err_lines) == 2 and len(r.lines_naming(media["text"])) == len(r.lines_naming(media["zero"])) == 1
    assert [("error" in x) for x in r.results()] == [True, False, True]


# ---- inputs that partly decode: a result, with a warning saying what was skipped ------------

# What each command reports: separate reads only the audio, so damage to the video is no concern of it.
PARTLY_DECODABLE = [
    *[pytest.param(c, "truncated_fs", r"decoded [01]\.\d+ s of the 2\.00 s .*truncated", id=f"truncated-{c}")
      for c in COMMANDS],
    *[pytest.param(c, "overwritten", r"undecodable packets: \d+ skipped", id=f"overwritten-{c}")
      for c in COMMANDS],
    *[pytest.param(c, "no_frames", r"video: the stream is present but nothing in it decoded",
                   id=f"no_frames-{c}") for c in ("classify", "localize")],
    pytest.param("separate", "no_frames", None, id="no_frames-separate"),
]


@pytest.mark.parametrize("command, name, warning", PARTLY_DECODABLE)
def test_partly_decodable(capsys, tiny_model_dir, media, tmp_path, command, name, warning):
    path = media[name]
    r = run(capsys, command, path, "-m", tiny_model_dir, *label_args(command), out_dir=tmp_path)
    res = check_ok(r, path, warning=warning)
    assert res["duration"] > 0


# ---- odd but valid inputs: processed --------------------------------------------------------

ODD_INPUTS = {  # name -> warning expected from classify and localize (separate reads only the audio)
    "short": None,  # 0.2 s
    "odd_size": None,  # 17x13
    "rotated": r"rotated 90°",
    "vfr": None,
    "surround": None,  # 5.1
    "audio_8k": None,
    "audio_96k": None,
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", ODD_INPUTS)
def test_odd_input(capsys, tiny_model_dir, media, tmp_path, command, name):
    path = media[name]
    r = run(capsys, command, path, "-m", tiny_model_dir, *label_args(command), out_dir=tmp_path)
    res = check_ok(r, path, warning=None if command == "separate" else ODD_INPUTS[name])
    if command == "separate":  # the source file is written, at 16 kHz, as long as the input
        import soundfile as sf

        info = sf.info(res["source_path"])
        assert info.samplerate == 16000
        assert info.duration == pytest.approx(res["duration"], abs=1e-3)
        assert res["duration"] == pytest.approx(0.2 if name == "short" else 1.0, abs=0.05)


@pytest.mark.parametrize("command", COMMANDS)
def test_one_pixel_video(capsys, tiny_model_dir, media, tmp_path, command):
    # A 1x1 video is valid: the audio still gives a result, and the video is used or skipped with a
    # warning that says so.
    path = media["one_pixel"]
    r = run(capsys, command, path, "-m", tiny_model_dir, *label_args(command), out_dir=tmp_path)
    assert r.code == 0, r.err_lines
    (res,) = r.results()
    res = res.get("classification", res)
    assert res["file"] == str(path)
    if command != "separate":  # separate reads only the audio
        assert res["modalities"] == ["audio"]
        assert any(re.search(r"video skipped: its frames are 1x1 px", w) for w in res["warnings"]), res["warnings"]


@pytest.fixture(scope="module")
def visual_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from avscene.testing.models import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("tiny_visual") / "tiny", variant="visual", seed=0)


@pytest.mark.parametrize("command", ["classify", "localize"])
def test_one_pixel_video_with_a_visual_only_model(capsys, visual_model_dir, media, tmp_path, command):
    # Nothing the model uses is left: a per-input failure that says why, not a programmer's error.
    path = media["one_pixel"]
    r = run(capsys, command, path, "-m", visual_model_dir, out_dir=tmp_path)
    check_failed_input(r, path, r"uses video, and the video's frames are 1x1 px, smaller than the 2x2 px")


@pytest.mark.parametrize("command", ["classify", "separate"])
def test_many_channel_audio(tiny_model_dir, tmp_path, command):
    # In a subprocess: if decoding goes wrong, it kills the interpreter (SIGSEGV).
    path = write_audio(tmp_path / "many.wav", duration=1.0, channels=MANY_CHANNELS)
    args = [command, str(path), "-m", str(tiny_model_dir), "--json", *label_args(command)]
    if command == "separate":
        args += ["-o", str(tmp_path / "{name}.{label}.wav")]
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-m", "avscene", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-1500:]}"
    (res,) = json.loads(proc.stdout)
    assert res["file"] == str(path) and res["duration"] == pytest.approx(1.0, abs=0.05)


# ---- outputs that cannot be written -----------------------------------------------------------


@pytest.fixture
def a_file(tmp_path) -> Path:
    f = tmp_path / "a_file"
    f.write_text("a regular file: nothing can be created under it, not even by root\n")
    return f


@pytest.mark.parametrize("command, option, name", [
    ("separate", "-o", "{name}.{label}.wav"),
    ("localize", "--render", "{name}.mp4"),
])
def test_output_under_a_regular_file(capsys, tiny_model_dir, media, a_file, command, option, name):
    path = media["good"]
    args = [path, "-m", tiny_model_dir, *label_args(command), option, str(a_file / name)]
    r = run(capsys, command, *args)
    check_failed_input(r, path, re.escape(str(a_file)))


@pytest.mark.parametrize("command, option, name", [
    ("separate", "-o", "{name}.{label}.wav"),
    ("localize", "--render", "{name}.mp4"),
])
def test_output_in_read_only_folder(capsys, tiny_model_dir, media, read_only_dir, command, option, name):
    ro = read_only_dir
    r = run(capsys, command, media["good"], "-m", tiny_model_dir, *label_args(command), option, str(ro / name))
    check_failed_input(r, media["good"], re.escape(str(ro)))


# ---- usage errors: bad --label, bad --model ------------------------------------------------------


@pytest.mark.parametrize("command", ["localize", "separate"])
def test_unknown_label(capsys, tiny_model_dir, media, tmp_path, command):
    r = run(capsys, command, media["good"], "-m", tiny_model_dir, "--label", "unicorn", out_dir=tmp_path)
    check_usage_error(r, "unknown label", "unicorn", "violin, drum, car")


def test_classify_has_no_label_option(capsys, tiny_model_dir, media):
    code = main(["classify", str(media["good"]), "-m", str(tiny_model_dir), "--label", "violin"])
    _, err = capsys.readouterr()
    assert code == 2 and "--label" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def broken_models(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("broken_models")
    truncated = shutil.copytree(tiny_model_dir, root / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    mismatched = shutil.copytree(tiny_model_dir, root / "mismatched")
    config = json.loads((mismatched / "config.json").read_text())
    config["model"]["embed_dim"] *= 2  # the saved tensors no longer fit the network
    (mismatched / "config.json").write_text(json.dumps(config))
    return {"missing": root / "no_such_model", "truncated": truncated, "mismatched": mismatched}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind, problem", [
    ("missing", "neither an existing folder nor a Hugging Face repo id"),
    ("truncated", "truncated or corrupted"),
    ("mismatched", "does not match its config"),
])
def test_bad_checkpoint(capsys, broken_models, media, tmp_path, command, kind, problem):
    model = broken_models[kind]
    r = run(capsys, command, media["good"], "-m", model, *label_args(command), out_dir=tmp_path)
    check_usage_error(r, "checkpoint error", str(model), problem)


@pytest.mark.parametrize("command", ["classify", "separate"])
def test_a_stream_header_followed_by_random_bytes_is_not_media(capsys, tiny_model_dir, tmp_path, command):
    """FFmpeg takes the file for MP3 and 'decodes' a few ms from a frame or two among many
    bad packets: that is a per-input error (exit 1, one line), not confident labels."""
    import numpy as np

    from avscene.testing.media import write_audio

    path = write_audio(tmp_path / "x.mp3", duration=4.0)
    data = bytearray(path.read_bytes())
    data[400:] = np.random.default_rng(0).bytes(len(data) - 400)  # all but the first packets
    path.write_bytes(bytes(data))
    extra = ["-o", str(tmp_path / "{name}.{label}.wav"), "--label", "violin"] if command == "separate" else []
    code = main([command, str(path), "-m", str(tiny_model_dir), *extra])
    _, err = capsys.readouterr()
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("avscene: failed:")]
    assert len(lines) == 1 and "not a media file" in lines[0] and "Traceback" not in err
    assert not list(tmp_path.glob("*.wav"))
