"""The CLI against a local server speaking the Hub's file API: download, then offline use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hubserver import HubServer, SilentServer, use_endpoint

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


# ---- a Hub that accepts connections and never answers ------------------------------------------


@pytest.fixture
def silent_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to fall back on
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_checked")
    with SilentServer() as server, use_endpoint(server.url):
        yield server


@pytest.mark.parametrize("command", ["download", "classify", "evaluate", "upload"])
def test_a_hub_that_never_answers_fails_with_one_line(silent_hub, command, tiny_model_dir, clips, capsys):
    """Each command that talks to the Hub gives up after --hub-timeout with one line naming it."""
    from huggingface_hub import constants, get_session

    from avscene.cli.app import main

    args = {"download": ["download", "org/name"],
            "classify": ["classify", str(clips["av"]), "--model", "org/name"],
            "evaluate": ["evaluate", str(clips["av"]), "--model", "org/name"],
            "upload": ["upload", str(tiny_model_dir), "org/name"]}[command]
    default_timeout = constants.HF_HUB_DOWNLOAD_TIMEOUT
    client_timeout = get_session().timeout  # huggingface_hub 1.x sets one, 2.x none
    code = main([*args, "--hub-timeout", "1"])
    _, err = capsys.readouterr()
    assert silent_hub.accepted.is_set()  # it did wait on the server
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "did not answer within 1 s" in lines[0] and "--hub-timeout" in lines[0], err
    # huggingface_hub's own settings are restored afterwards
    assert constants.HF_HUB_DOWNLOAD_TIMEOUT == default_timeout
    assert get_session().timeout == client_timeout


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_interrupts_a_hung_hub_call(tmp_path: Path, signame: str) -> None:
    """With a limit far away (600 s), Ctrl-C or SIGTERM while the request waits ends the command at
    once, with one line saying so and the shell's code for that signal."""
    import signal

    signum = getattr(signal, signame)
    with SilentServer() as server:
        env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf"), "NO_PROXY": "127.0.0.1"}
        env.pop("HF_HUB_OFFLINE", None)
        # preexec_fn: a shell runs a background job with SIGINT ignored, and a child inherits that
        # (Python then keeps ignoring it); a terminal's Ctrl-C reaches a process with the default.
        proc = subprocess.Popen([sys.executable, "-m", "avscene", "download", "org/name", "--hub-timeout", "600"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            assert server.accepted.wait(120), "the command never reached the Hub"
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=60)  # a hang guard only: 600 s is the Hub limit
        finally:
            proc.kill()
    assert proc.returncode == 128 + signum
    assert err.strip() == f"avscene: interrupted ({signame})", err
