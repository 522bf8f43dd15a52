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


def _hub_env(hub: HubServer, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "NO_PROXY": "127.0.0.1",
           "OMP_NUM_THREADS": "1", "HF_TOKEN": "hf_test_token_not_checked"}
    for k in ("HF_HUB_CACHE", "HF_HUB_OFFLINE"):
        env.pop(k, None)
    return env


def test_upload_then_download_and_classify_from_the_hub(tiny_model_dir: Path, clips: dict, tmp_path: Path) -> None:
    """Publish with huggingface_hub's real create_repo / create_branch / upload_folder, then
    fetch it back and classify with it: the bytes on the Hub are the folder's."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for p in tiny_model_dir.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "train_log.jsonl").write_text("{}\n")  # not a checkpoint file: never published
    repo = "avscene-test/uploaded"
    with HubServer() as hub:
        env = _hub_env(hub, tmp_path)
        up = _run(["upload", str(folder), repo, "--private", "--revision", "v1", "--message", "first", "--json"], env)
        assert up.returncode == 0, up.stderr
        res = json.loads(up.stdout)
        state = hub.repo(repo)
        assert state is not None and state.private and res["private"] is True
        assert res["revision"] == "v1" and state.refs["v1"] == res["commit"] and state.messages[res["commit"]] == "first"
        published = state.commits[res["commit"]]
        assert sorted(published) == sorted(res["files"]) == sorted(p.name for p in tiny_model_dir.iterdir())
        assert all(published[name] == (folder / name).read_bytes() for name in published)
        again = _run(["upload", str(folder), repo, "--revision", "v1", "--json"], env)  # repo and branch exist
        assert again.returncode == 0, again.stderr
        got = _run(["download", repo, "--revision", "v1"], env)
        assert got.returncode == 0, got.stderr
        out = _run(["classify", str(clips["av"]), "--model", repo, "--revision", "v1", "--json"], env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["model"] == {"id": repo, "revision": "v1"}


def test_upload_refuses_a_folder_that_would_not_load(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_bytes((tiny_model_dir / "config.json").read_bytes())
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with HubServer() as hub:
        out = _run(["upload", str(folder), "avscene-test/never"], _hub_env(hub, tmp_path))
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert "model.safetensors" in out.stderr
        assert hub.repo("avscene-test/never") is None and hub.request_count == 0  # nothing was sent


def test_upload_offline_is_a_usage_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = _run(["upload", str(tiny_model_dir), "avscene-test/x"], env)
    assert out.returncode == 2 and "HF_HUB_OFFLINE" in out.stderr
