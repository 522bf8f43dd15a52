"""The CLI against a local server speaking the Hub's file API: download, then offline use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hubserver import HubServer

REPO = "avscene-test/tiny-cli"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avscene", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_download_then_classify_offline_with_server_gone(tiny_model_dir: Path, clips: dict, tmp_path: Path) -> None:
    with HubServer() as hub:
        files = {p.name: p.read_bytes() for p in tiny_model_dir.iterdir()}
        commit = hub.add_revision(REPO, files)
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "NO_PROXY": "127.0.0.1",
               "OMP_NUM_THREADS": "1"}
        for k in ("HF_HUB_CACHE", "HF_HUB_OFFLINE"):
            env.pop(k, None)
        got = _run(["download", REPO], env)
        assert got.returncode == 0, got.stderr
        assert commit in got.stdout  # the snapshot folder is named by the commit
        before = hub.request_count
        hub.stop()
        out = _run(["classify", str(clips["av"]), "--model", REPO, "--offline", "--json"], env)
        assert hub.request_count == before
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)[0]
    assert rec["model"]["id"] == REPO
    assert [x["label"] for x in rec["labels"]] and set(rec["predicted"]) <= {"violin", "drum", "car"}


def test_offline_model_not_in_cache_says_how_to_fetch(clips: dict, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HOME": str(tmp_path / "empty"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    env.pop("HF_HUB_CACHE", None)
    out = _run(["classify", str(clips["av"]), "--model", "nobody/nothing", "--offline"], env)
    assert out.returncode == 2
    assert "avscene download nobody/nothing" in out.stderr
    assert "Traceback" not in out.stderr
