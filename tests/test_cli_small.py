"""The smaller defects of issue 29's "Long batch runs", one test each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avscene.cli.app import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_scores_tsv_only_adds_the_tsv(capsys, tiny_model_dir, clips, tmp_path):
    """--scores-tsv used to give the JSON ``audio`` every class, not only the reported ones."""
    argv = ["localize", clips["av"], "-m", tiny_model_dir, "--label", "drum", "--json"]
    code, plain, err = run(capsys, *argv)
    assert code == 0, err
    code, with_tsv, err = run(capsys, *argv, "--scores-tsv", tmp_path / "s")
    assert code == 0, err
    assert json.loads(with_tsv) == json.loads(plain)
    header = (tmp_path / "s" / "av.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["onset", "offset", "violin", "drum", "car"]  # the TSV still has every class


def test_train_refuses_an_existing_checkpoint_without_force(capsys, clips, tmp_path):
    """``train -o`` on a checkpoint used to replace its weights, append to its log and keep its card."""
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"old weights")
    manifest = tmp_path / "labels.csv"
    manifest.write_text(f"clip,labels\n{clips['av']},violin\n")
    code, _, err = run(capsys, "train", manifest, "-o", out)
    assert code == 2 and "already exists" in err and "--force" in err and "--resume" in err, err
    assert (out / "model.safetensors").read_bytes() == b"old weights"


def test_evaluate_checks_json_out_before_any_work(capsys, tmp_path):
    """An unwritable --json-out used to be found after the whole evaluation (then nothing printed)."""
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    code, _, err = run(capsys, "evaluate", tmp_path / "labels.csv", "--model", tmp_path / "no-such-model",
                       "--json-out", blocker / "report.json")
    assert code == 2 and "output error" in err and str(blocker) in err, err  # not the model's error: checked first


@pytest.mark.parametrize("name", ["x.wav", "x.html", "x"])
def test_render_refuses_a_name_that_is_not_a_video(capsys, tiny_model_dir, clips, tmp_path, name):
    """``--render x.wav`` used to write an MP4 under that name."""
    code, _, err = run(capsys, "localize", clips["av"], "-m", tiny_model_dir, "--render", tmp_path / name)
    assert code == 2 and "--render" in err and ".mp4" in err, err
    assert not (tmp_path / name).exists()


def test_upload_of_a_missing_folder_never_tries_the_hub(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # were the Hub tried, the error would name it
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)  # "runs/avv" (a mistyped runs/av) reads as a Hub repo id too
    code, _, err = run(capsys, "upload", "runs/avv", "org/name", "--hub-timeout", "1")
    assert code == 2 and "no such folder" in err and "Hub" not in err and "127.0.0.1" not in err, err


def test_doctor_checks_the_model_named_by_option_or_environment(capsys, monkeypatch, tiny_model_dir):
    code, out, _ = run(capsys, "doctor", "--json", "--model", tiny_model_dir)
    model = next(c for c in json.loads(out)["checks"] if c["name"] == "model")
    assert model["ok"] and str(tiny_model_dir) in model["detail"] and "3 classes" in model["detail"]
    monkeypatch.setenv("AVSCENE_MODEL_ID", str(tiny_model_dir))
    code, out, _ = run(capsys, "doctor", "--json")
    model = next(c for c in json.loads(out)["checks"] if c["name"] == "model")
    assert str(tiny_model_dir) in model["detail"]


def test_calibrate_finds_the_recorded_manifest_from_another_folder(capsys, monkeypatch, clips, tmp_path):
    """The record's paths are relative to the folder training ran in; calibrate resolved them
    against the current folder, so it failed anywhere else."""
    from avscene.checkpoint.format import read_config, write_config
    from avscene.testing.models import tiny_checkpoint

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    rows = []
    for k in range(6):
        clip = project / "data" / f"c{k}.mp4"
        clip.write_bytes(clips["av"].read_bytes())
        rows.append(f"{clip.name},{'violin' if k % 2 else 'drum'}")
    (project / "data" / "labels.csv").write_text("clip,labels\n" + "\n".join(rows) + "\n")
    ckpt = tiny_checkpoint(project / "runs" / "m", labels=("violin", "drum", "car"))
    config = read_config(ckpt)
    config["training"] = {"manifest": "data/labels.csv", "output": "runs/m", "val_split": 0.5, "seed": 0}
    write_config(ckpt, config)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = run(capsys, "calibrate", ckpt, "--dry-run")
    assert code == 0, err
    assert json.loads(out)["n_clips"] > 0


def test_download_help_example_names_the_revision_twice(capsys):
    code, out, _ = run(capsys, "download", "--help")
    example = next(line for line in out.splitlines() if "&&" in line)
    assert example.count("--revision v1") == 2, example


def test_events_tsv_that_exists_is_refused_before_any_input(capsys, tiny_model_dir, clips, tmp_path):
    """Exit code 2 means nothing was processed: an existing --events-tsv used to be found after every input."""
    tsv, log = tmp_path / "ev.tsv", tmp_path / "l.jsonl"
    tsv.write_text("old")
    code, _, err = run(capsys, "localize", clips["av"], "-m", tiny_model_dir, "--events-tsv", tsv, "--jsonl", log)
    assert code == 2 and "already exists" in err
    assert not log.exists() and tsv.read_text() == "old"


def test_a_summary_file_failing_after_the_inputs_is_exit_1(capsys, monkeypatch, tiny_model_dir, clips, tmp_path):
    """Exit code 2 means nothing was processed; a file written after every input failing is not that."""
    from avscene.errors import OutputError
    from avscene.io import report_html

    def broken(records, path):
        raise OutputError(f"cannot write {path}: disk full")

    monkeypatch.setattr(report_html, "write_index", broken)
    log = tmp_path / "r.jsonl"
    code, _, err = run(capsys, "report", clips["av"], "-m", tiny_model_dir, "-o", f"{tmp_path}/rep/", "--jsonl", log)
    assert code == 1 and "disk full" in err, err
    assert len(log.read_text().splitlines()) == 1  # the input was processed and recorded


def test_readme_exit_codes_say_what_2_means():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    line = next(x for x in readme.split("Exit codes:")[1].split("\n\n")[:1])
    assert "`2` usage error" in line and "before any input is processed" in line
