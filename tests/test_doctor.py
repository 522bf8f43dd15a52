"""``avscene doctor``: every check passes here, and each failure path says how to fix it."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from avscene import doctor
from avscene.doctor import Check, exit_code, run_checks
from avscene.testing.models import MINI_EDGE_MODEL_YAML as MINI_EDGE_MODEL

ALL_CHECKS = ["python", "pyav", "decoders", "opencv", "torch", "torchvision", "torchaudio", "model",
              "hf-cache", "hf-settings", "temp-dir"]
# Valid YAML that is not an edge model: OpenCV divides by the absent numberOfTrees (SIGFPE).
NOT_AN_EDGE_MODEL = "%YAML:1.0\n---\nfoo: 1\n"


@pytest.fixture
def tiny_as_bundled(monkeypatch, tiny_model_dir):
    """Point the bundled-model check at the tiny checkpoint (fast to load)."""
    monkeypatch.setenv("AVSCENE_MODEL", str(tiny_model_dir))
    return tiny_model_dir


@pytest.fixture
def a_file(tmp_path) -> Path:
    """A regular file: nothing can be created 'inside' it, not even by root."""
    f = tmp_path / "a_file"
    f.write_text("x")
    return f


def _doctor_main(argv: list[str]) -> int:
    """``avscene doctor ARGV`` in-process (registers the command if app.py does not yet)."""
    from avscene.cli import app as cli_app
    from avscene.cli import doctor as cli_doctor

    if not any(c.name == "doctor" for c in cli_app.app.registered_commands):
        cli_app.command(cli_doctor.doctor_cmd, "doctor", cli_doctor.EPILOG)
    return cli_app.main(["doctor", *argv])


def _failed(check: Check, *, fix: str) -> None:
    assert not check.ok
    assert fix in check.fix, check
    assert check.to_json()["status"] == ("FAIL" if check.required else "warn")


# ---- everything passes on this (test) installation --------------------------------------------


def test_all_checks_pass_here(tiny_as_bundled, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    checks = run_checks(cache_dir=tmp_path / "hf")
    assert [c.name for c in checks] == ALL_CHECKS
    # required checks pass on a working install; advisory ones (e.g. a torchaudio that does not
    # match torch) may warn without failing doctor
    assert all(c.ok for c in checks if c.required), [c for c in checks if not c.ok]
    assert exit_code(checks) == 0
    assert all(c.fix == "" for c in checks if c.ok)
    by_name = {c.name: c for c in checks}
    import av
    import torch

    assert f"PyAV {av.__version__}" in by_name["pyav"].detail
    for lib, version in av.library_versions.items():
        if lib in ("libavcodec", "libavformat"):
            assert f"{lib} {'.'.join(map(str, version))}" in by_name["pyav"].detail
    assert f"{torch.get_num_threads()} CPU threads" in by_name["torch"].detail
    assert "3 classes" in by_name["model"].detail and str(tiny_as_bundled) in by_name["model"].detail
    # torchaudio: what it is for, not a claim that avscene never imports it
    assert "only by `avscene train`" in by_name["torchaudio"].detail
    assert "does not import" not in by_name["torchaudio"].detail


def test_check_to_json():
    c = Check("x", False, "found y", "do z", required=False)
    assert c.to_json() == {"name": "x", "ok": False, "detail": "found y", "fix": "do z", "required": False,
                           "status": "warn"}
    assert Check("x", False, "d", "f").status == "FAIL" and Check("x", True, "d").status == "ok"


def test_exit_code_ignores_advisory_failures():
    assert exit_code([Check("a", True, ""), Check("b", False, "", "f", required=False)]) == 0
    assert exit_code([Check("a", True, ""), Check("b", False, "", "f", required=True)]) == 1


# ---- one failure path per check ------------------------------------------------------------


def test_old_python(monkeypatch):
    monkeypatch.setattr(sys, "version_info", (3, 9, 18, "final", 0))
    _failed(doctor.check_python(), fix="Python 3.10 or newer")


@pytest.mark.parametrize("module, check, dist", [
    ("av", doctor.check_pyav, "av"),
    ("av", doctor.check_decoders, "av"),
    ("torch", doctor.check_torch, "torch"),
])
def test_missing_module(monkeypatch, module, check, dist):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    c = check()
    _failed(c, fix=f"pip install '{dist}")
    assert f"cannot import {module}" in c.detail


def test_missing_decoder(monkeypatch):
    import av

    real = av.Codec

    def no_h264(name, mode="r"):
        if name == "h264":
            raise ValueError(f"unknown codec {name}")
        return real(name, mode)

    monkeypatch.setattr(av, "Codec", no_h264)
    c = doctor.check_decoders()
    _failed(c, fix="pip install --force-reinstall 'av")
    assert "h264 (H.264 video)" in c.detail and "aac" not in c.detail


def test_opencv_without_contrib(monkeypatch):
    import cv2

    monkeypatch.delattr(cv2, "ximgproc")
    c = doctor.check_opencv()
    _failed(c, fix="pip install --force-reinstall 'opencv-contrib-python")
    assert "no cv2.ximgproc" in c.detail
    monkeypatch.setitem(sys.modules, "cv2", None)
    _failed(doctor.check_opencv(), fix="opencv-contrib-python")


@pytest.mark.parametrize("torch_version, dist, expected", [
    ("2.0.1", "torchvision", "0.15"),  # pairs from the PyTorch release compatibility table
    ("2.5.1+cpu", "torchvision", "0.20"),
    ("2.11.0+cu130", "torchvision", "0.26"),
    ("2.5.1", "torchaudio", "2.5"),
    ("2.11.0+cu130", "torchaudio", "2.11"),
])
def test_expected_companion(torch_version, dist, expected):
    assert doctor.expected_companion(torch_version, dist) == expected


@pytest.mark.parametrize("vision_version, why", [("0.20.1+cu130", "expects 0.26.x"),
                                                 ("0.26.0+cpu", "different builds")])
def test_torchvision_mismatch(monkeypatch, vision_version, why):
    import torch
    import torchvision

    monkeypatch.setattr(torch, "__version__", "2.11.0+cu130")
    monkeypatch.setattr(torchvision, "__version__", vision_version)
    c = doctor.check_companion("torchvision", required=True)
    _failed(c, fix="pip install 'torchvision==0.26.*'")
    assert why in c.detail and c.required


def test_torchaudio_is_advisory(monkeypatch, tiny_as_bundled):
    monkeypatch.setitem(sys.modules, "torchaudio", None)
    c = {c.name: c for c in run_checks()}["torchaudio"]
    _failed(c, fix="pip install 'torchaudio==")
    assert c.status == "warn" and "only by `avscene train`" in c.detail


def test_torchaudio_serves_training_only(tiny_model_dir, clips):
    """What doctor's torchaudio line says: with torchaudio unimportable, classify and localize
    run, and the training augmentation's pitch shift is what fails."""
    script = f"""
import sys
sys.modules["torchaudio"] = None  # `import torchaudio` raises ImportError
import numpy as np
from avscene.cli.app import main
for command in ("classify", "localize"):
    rc = main([command, {str(clips["av"])!r}, "--model", {str(tiny_model_dir)!r}, "--json"])
    assert rc == 0, (command, rc)
from avscene.dsp.timbre import pitch_shift
try:
    pitch_shift(np.zeros(16000, np.float32), 1.0)
except ImportError:
    sys.exit(3)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert out.returncode == 3, out.stderr


def test_corrupted_model(monkeypatch, tiny_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    monkeypatch.setenv("AVSCENE_MODEL", str(broken))
    c = doctor.check_bundled_model()
    _failed(c, fix="reinstall avscene")
    assert "truncated or corrupted" in c.detail and str(broken) in c.detail

    (broken / "config.json").unlink()
    c = doctor.check_bundled_model()
    _failed(c, fix="reinstall avscene")
    assert "config.json" in c.detail


def test_model_not_installed(monkeypatch, tmp_path):
    from avscene.errors import AvsceneError
    from avscene.tasks import models

    def not_installed():
        raise AvsceneError("the bundled model avscene-av-small is not installed; reinstall avscene or pass --model")

    monkeypatch.setattr(models, "default_model_path", not_installed)
    c = doctor.check_bundled_model()
    _failed(c, fix="reinstall avscene")
    assert "not installed" in c.detail


def test_hf_cache_size_and_writable(tmp_path):
    cache = tmp_path / "hub"
    (cache / "models--org--name" / "blobs").mkdir(parents=True)
    for i, n in enumerate((1024, 2048, 3072)):  # 6144 bytes = 6.0 KiB
        (cache / "models--org--name" / "blobs" / f"b{i}").write_bytes(b"\0" * n)
    c = doctor.check_hf_cache(cache)
    assert c.ok and not c.required
    assert c.detail == f"{cache} (writable, 6.0 KiB)"


def test_hf_cache_default_is_huggingface_hubs(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "not_yet"))
    c = doctor.check_hf_cache()
    assert c.ok and c.detail == f"{tmp_path / 'not_yet'} (not created yet; writable)"


def test_hf_cache_unwritable(a_file):
    c = doctor.check_hf_cache(a_file / "hub")
    _failed(c, fix="set HF_HUB_CACHE (or HF_HOME) to a writable folder")
    assert f"{a_file} is a file" in c.detail
    assert exit_code([c]) == 0  # advisory: the bundled model needs no cache


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_hf_cache_read_only_folder(read_only_dir):
    _failed(doctor.check_hf_cache(read_only_dir), fix="HF_HUB_CACHE")


def test_hf_settings(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.org")
    c = doctor.check_hf_settings()
    assert c.ok and c.detail.startswith("offline (HF_HUB_OFFLINE)") and "https://hub.example.org" in c.detail
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "hub.example.org")
    c = doctor.check_hf_settings()
    _failed(c, fix="unset it or set e.g. https://huggingface.co")
    assert c.detail.startswith("online")


def test_edge_model_ok_and_checksum(tmp_path):
    path = tmp_path / "model.yml.gz"
    with gzip.open(path, "wt") as f:
        f.write(MINI_EDGE_MODEL)
    c = doctor.check_edge_model(path)
    assert c.ok, c
    assert hashlib.sha256(path.read_bytes()).hexdigest() in c.detail


@pytest.mark.parametrize("content, why", [
    (b"", "empty file"),
    (b"\x1f\x8b garbage, not gzip", "not an OpenCV YAML/XML file"),
    (b"this is a video, honest", "not an OpenCV YAML/XML file"),
])
def test_edge_model_bad_file(tmp_path, content, why):
    path = tmp_path / "model.yml.gz"
    path.write_bytes(content)
    c = doctor.check_edge_model(path)
    _failed(c, fix="download OpenCV's model.yml.gz")
    assert why in c.detail and hashlib.sha256(content).hexdigest() in c.detail


def test_edge_model_missing(tmp_path):
    c = doctor.check_edge_model(tmp_path / "nope.yml.gz")
    _failed(c, fix="drop --edge-model")
    assert "no such file" in c.detail


def test_edge_model_that_would_crash_opencv(tmp_path):
    # OpenCV divides by options.numberOfTrees: loading this kills the process. In a subprocess,
    # so that a regression fails this test instead of the whole test run.
    path = tmp_path / "model.yml"
    path.write_text(NOT_AN_EDGE_MODEL)
    code = ("import json, sys; from avscene.doctor import check_edge_model; "
            "print(json.dumps(check_edge_model(sys.argv[1]).to_json()))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-500:]}"
    c = Check(**{k: v for k, v in json.loads(proc.stdout).items() if k != "status"})
    _failed(c, fix="download OpenCV's model.yml.gz")
    assert "numberOfTrees" in c.detail


def test_unwritable_temp_dir(monkeypatch, a_file):
    monkeypatch.setattr(tempfile, "tempdir", str(a_file / "tmp"))
    _failed(doctor.check_temp_dir(), fix="set TMPDIR to a writable folder")


def test_a_crashing_check_is_reported(monkeypatch, tiny_as_bundled, tmp_path):
    def boom() -> Check:
        raise RuntimeError("kaput")

    monkeypatch.delenv("AVSCENE_DEBUG", raising=False)
    monkeypatch.setattr(doctor, "check_torch", boom)
    by_name = {c.name: c for c in run_checks(cache_dir=tmp_path)}
    c = by_name["torch"]
    _failed(c, fix="AVSCENE_DEBUG=1")
    assert "RuntimeError: kaput" in c.detail
    monkeypatch.setenv("AVSCENE_DEBUG", "1")
    with pytest.raises(RuntimeError, match="kaput"):
        run_checks(cache_dir=tmp_path)


# ---- the command ------------------------------------------------------------------------------


def test_cli_json_all_ok(capsys, tiny_as_bundled, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # whatever this machine's cache is
    code = _doctor_main(["--json"])
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True, err
    assert [c["name"] for c in doc["checks"]] == ALL_CHECKS


def test_cli_required_failure_exits_1(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("AVSCENE_MODEL", str(tmp_path / "no_model_here"))
    code = _doctor_main(["--json"])
    out, _ = capsys.readouterr()
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False
    (model,) = [c for c in doc["checks"] if c["name"] == "model"]
    assert model["status"] == "FAIL" and "reinstall avscene" in model["fix"]

    monkeypatch.setenv("COLUMNS", "300")
    code = _doctor_main([])
    out, err = capsys.readouterr()
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("│ model"))
    assert "FAIL" in row and "reinstall avscene" in row
    assert "1 required check(s) failed: model" in err and "Traceback" not in err


def test_cli_edge_model(capsys, tiny_as_bundled, tmp_path):
    bad = tmp_path / "model.yml"
    bad.write_text(NOT_AN_EDGE_MODEL.replace("foo", "options:\n   numberOfTrees: 0\nbar"))
    code = _doctor_main(["--json", "--edge-model", str(bad)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert doc["checks"][-1]["name"] == "edge-model" and doc["checks"][-1]["status"] == "FAIL"
    assert _doctor_main(["--edge-model", str(tmp_path / "missing.yml.gz")]) == 2  # usage error
