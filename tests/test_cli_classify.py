"""End-to-end tests of ``avscene classify`` (in-process via ``main`` and as a real console script)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import avscene
from avscene.cli.app import main

CONTRACT_KEYS = {"file", "duration", "modalities", "labels", "predicted", "threshold", "model", "warnings"}
NONE_MARKER = "—"  # what the table shows when no class is predicted
ENV = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}  # wide table, one thread


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # rich folds long cells at the default 80 columns; tests look for whole file names
    monkeypatch.setenv("COLUMNS", "200")


def run(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str, str]:
    """``avscene classify ARGS`` in-process: (exit code, stdout, stderr)."""
    code = main(["classify", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def labels_of(model_dir: Path) -> list[str]:
    return json.loads((model_dir / "config.json").read_text())["labels"]


def check_contract(r: dict, *, model_dir: Path, threshold: float) -> None:
    """Every field of the classify JSON contract, and ``predicted`` consistent with ``labels``."""
    assert CONTRACT_KEYS <= set(r)
    assert sorted(x["label"] for x in r["labels"]) == sorted(labels_of(model_dir))  # every class once
    scores = [x["score"] for x in r["labels"]]
    assert scores == sorted(scores, reverse=True)
    assert r["threshold"] == threshold
    assert r["predicted"] == [x["label"] for x in r["labels"] if x["score"] > threshold]
    assert r["model"] == {"id": str(model_dir), "revision": None}
    assert r["duration"] == pytest.approx(2.0, abs=0.15)


def test_table_names_file_and_marks_no_prediction(capsys, tiny_model_dir, clips, monkeypatch):
    monkeypatch.chdir(clips["av"].parent)
    code, out, _ = run(capsys, "av.mp4", "-m", tiny_model_dir, "--threshold", "10")
    assert code == 0
    row = next(line for line in out.splitlines() if "av.mp4" in line)
    assert NONE_MARKER in row

    code, out_json, _ = run(capsys, "av.mp4", "-m", tiny_model_dir, "--threshold", "-10", "--json")
    ranked = [x["label"] for x in json.loads(out_json)[0]["labels"]]
    code, out, _ = run(capsys, "av.mp4", "-m", tiny_model_dir, "--threshold", "-10")
    row = next(line for line in out.splitlines() if "av.mp4" in line)
    assert NONE_MARKER not in row
    assert ", ".join(ranked) in row  # the predicted column: every class, best first


def test_json_contract(capsys, tiny_model_dir, clips):
    code, out, err = run(capsys, clips["av"], "-m", tiny_model_dir, "--json")
    assert code == 0, err
    results = json.loads(out)
    assert isinstance(results, list) and len(results) == 1
    r = results[0]
    assert r["file"] == str(clips["av"])
    assert r["modalities"] == ["audio", "visual"]
    assert r["warnings"] == []
    check_contract(r, model_dir=tiny_model_dir, threshold=0.0)  # hinge variant: threshold 0


def test_cli_matches_library_api(capsys, tiny_model_dir, clips):
    # the CLI is a thin wrapper: it must report exactly what the Python API computes
    code, out, _ = run(capsys, clips["av"], "-m", tiny_model_dir, "--json")
    expected = avscene.classify(clips["av"], model=avscene.load_model(tiny_model_dir, device="cpu"))
    assert json.loads(out) == [json.loads(json.dumps(expected.to_json()))]


def test_jsonl_one_line_per_input(capsys, tiny_model_dir, clips):
    code, out, _ = run(capsys, clips["av"], clips["audio_only"], "-m", tiny_model_dir, "--jsonl", "-")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    rows = [json.loads(line) for line in lines]
    assert [r["file"] for r in rows] == [str(clips["av"]), str(clips["audio_only"])]
    for r in rows:
        check_contract(r, model_dir=tiny_model_dir, threshold=0.0)


def test_broken_file_in_directory(capsys, tiny_model_dir, clips, tmp_path):
    shutil.copyfile(clips["av"], tmp_path / "good.mp4")
    (tmp_path / "broken.mp4").write_text("this is a text file, not a video\n")
    (tmp_path / "notes.txt").write_text("not media: skipped by the directory walk\n")
    code, out, err = run(capsys, tmp_path, "-m", tiny_model_dir, "--json")
    assert code == 1
    failed = [line for line in err.splitlines() if "broken.mp4" in line]
    assert len(failed) == 1
    assert re.search(r"failed: .*broken\.mp4.*not a media file", failed[0])
    results = json.loads(out)
    assert [Path(r["file"]).name for r in results] == ["broken.mp4", "good.mp4"]
    broken, good = results
    assert set(broken) == {"file", "error"} and "broken.mp4" in broken["error"]
    check_contract(good, model_dir=tiny_model_dir, threshold=0.0)


def test_json_and_jsonl_on_stdout_are_exclusive(capsys, tiny_model_dir, clips):
    code, out, err = run(capsys, clips["av"], "-m", tiny_model_dir, "--json", "--jsonl", "-")
    assert code == 2
    assert out == ""
    assert re.search(r"--json and --jsonl - are exclusive", err)


def test_jsonl_needs_a_value(capsys, tiny_model_dir, clips):
    code, out, err = run(capsys, clips["av"], "-m", tiny_model_dir, "--jsonl")
    assert code == 2 and out == ""
    assert "--jsonl" in err and "Traceback" not in err


def test_missing_model_is_a_usage_error(capsys, clips, tmp_path):
    missing = tmp_path / "no_such_model"
    code, out, err = run(capsys, clips["av"], "-m", missing, "--json")
    assert code == 2
    assert out == ""
    assert re.search(rf"checkpoint error: .*{re.escape(str(missing))}", err)
    assert "Traceback" not in err


def test_bad_option_value_is_a_usage_error(capsys, tiny_model_dir, clips):
    code = main(["classify", str(clips["av"]), "-m", str(tiny_model_dir), "--top-k", "0"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "--top-k" in err and "Traceback" not in err


def test_top_k_and_threshold(capsys, tiny_model_dir, clips):
    code, out, _ = run(capsys, clips["av"], "-m", tiny_model_dir, "--top-k", "1", "--threshold", "-10", "--json")
    r = json.loads(out)[0]
    assert r["predicted"] == [r["labels"][0]["label"]]  # all pass -10; the best one is kept

    code, out, _ = run(capsys, clips["av"], clips["video_only"], "-m", tiny_model_dir, "--threshold", "10",
                       "--json")
    assert [r["predicted"] for r in json.loads(out)] == [[], []]  # scores of one file lie in [-2, 2]

    # a threshold between the best and the second score predicts exactly the best class
    r = json.loads(out)[0]
    between = (r["labels"][0]["score"] + r["labels"][1]["score"]) / 2
    code, out, _ = run(capsys, clips["av"], "-m", tiny_model_dir, "--threshold", f"{between:.6f}", "--json")
    r2 = json.loads(out)[0]
    assert r2["predicted"] == [r["labels"][0]["label"]]
    assert r2["threshold"] == pytest.approx(between, abs=1e-6)
    check_contract(r2, model_dir=tiny_model_dir, threshold=r2["threshold"])


def test_video_only_input(capsys, tiny_model_dir, clips):
    code, out, err = run(capsys, clips["video_only"], "-m", tiny_model_dir, "--json")
    assert code == 0
    r = json.loads(out)[0]
    assert r["modalities"] == ["visual"]
    assert any("no audio stream" in w for w in r["warnings"])
    assert re.search(r"warning: .*video_only\.mp4: no audio stream", err)
    check_contract(r, model_dir=tiny_model_dir, threshold=0.0)


def test_audio_only_input(capsys, tiny_model_dir, clips):
    code, out, err = run(capsys, clips["audio_only"], "-m", tiny_model_dir, "--json")
    assert code == 0
    r = json.loads(out)[0]
    assert r["modalities"] == ["audio"]
    assert any("no video stream" in w for w in r["warnings"])
    check_contract(r, model_dir=tiny_model_dir, threshold=0.0)


def test_an_input_with_one_stream_is_decided_by_that_streams_threshold(capsys, tiny_model_dir, clips, tmp_path):
    """The fused threshold decides inputs with both streams; an audio file by the heard threshold, a
    silent video by the seen one (the fused score of one stream is that stream's share); ``--threshold``
    still decides every input."""
    from avscene.train.calibrate import store_thresholds

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    store_thresholds(model, threshold=-100.0, audio_threshold=100.0, visual_threshold=-100.0)
    code, out, _ = run(capsys, clips["av"], clips["audio_only"], clips["video_only"], "-m", model, "--json")
    assert code == 0
    av, audio, video = json.loads(out)
    everything = sorted(labels_of(model))
    assert (av["threshold"], sorted(av["predicted"])) == (-100.0, everything)
    assert (audio["threshold"], audio["predicted"]) == (100.0, [])
    assert (video["threshold"], sorted(video["predicted"])) == (-100.0, everything)
    code, out, _ = run(capsys, clips["audio_only"], "-m", model, "--json", "--threshold", "-100")
    assert sorted(json.loads(out)[0]["predicted"]) == everything


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"avscene {avscene.__version__}"


# ---- real processes ---------------------------------------------------------------------------


def console_script() -> str:
    script = Path(sys.executable).parent / "avscene"
    if not script.is_file():
        pytest.skip("the avscene console script is not installed next to this Python")
    return str(script)


@pytest.mark.parametrize("args", [["--help"], ["classify", "--help"]])
def test_help_runs_from_the_console_script(args):
    """(How fast it is lives in bench/; that it never imports torch is tested below.)"""
    proc = subprocess.run([console_script(), *args], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout


@pytest.mark.parametrize("code", [
    "import sys, avscene.cli.app; print('torch' in sys.modules)",
    "import sys\nfrom avscene.cli.app import main\nmain(['classify', '--help'])\nprint('torch' in sys.modules)",
])
def test_help_does_not_import_torch(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_console_script_and_module_entry_points(tiny_model_dir, clips):
    proc = subprocess.run([console_script(), "classify", str(clips["av"]), "-m", str(tiny_model_dir), "--jsonl", "-"],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    check_contract(json.loads(line), model_dir=tiny_model_dir, threshold=0.0)

    proc = subprocess.run([sys.executable, "-m", "avscene", "classify", str(clips["av"]), "--json", "--jsonl", "-"],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 2
    assert "exclusive" in proc.stderr


def test_bad_edge_model_file_is_one_usage_error_before_any_input(tiny_model_dir, clips, tmp_path, capsys) -> None:
    """A YAML file that is not a structured-edge model is refused up front (exit 2), not per input."""
    from avscene.cli.app import main

    bad = tmp_path / "model.yml"
    bad.write_text("%YAML:1.0\n---\nfoo: 1\n")
    code = main(["classify", str(clips["av"]), str(clips["av"]), "-m", str(tiny_model_dir),
                 "--edge-model", str(bad), "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "numberOfTrees" in err and str(bad) in err and "Traceback" not in err
