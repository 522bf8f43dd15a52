"""Tests of avscene.checkpoint: checkpoint files, strict loading, and the Hub download path.

The Hub tests run huggingface_hub for real against ``tests/hubserver.py``, a
loopback HTTP server speaking the Hub's download API, with a fresh cache per test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hubserver import HubServer, use_endpoint
from safetensors.torch import load_file, save_file

from avscene.checkpoint.card import card_text
from avscene.checkpoint.format import (
    CARD_NAME,
    CONFIG_NAME,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    load_state_dict,
    read_config,
    save_folder,
)
from avscene.checkpoint.load import load_pretrained, save_pretrained
from avscene.checkpoint.resolve import resolve
from avscene.errors import CheckpointError, ConfigError, UsageError
from avscene.testing.models import tiny_checkpoint, tiny_config, tiny_input, tiny_model, tiny_preprocess

REPO = "avscene-test/tiny"
MINIMAL_CONFIG = {"format_version": FORMAT_VERSION, "model": {}, "labels": [], "preprocess": {}}


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return tiny_checkpoint(tmp_path / "tiny", seed=0)


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "hf-cache")


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server, use_endpoint(server.url):
        yield server


def _outputs(model: torch.nn.Module, seed: int = 1) -> list[torch.Tensor]:
    """Every tensor ``model`` returns for a fixed random input."""
    with torch.no_grad():
        return [t for t in model(tiny_input(seed=seed)) if t is not None]


def _rewrite_config(folder: Path, **changes: object) -> None:
    path = folder / CONFIG_NAME
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# --- low level: files -----------------------------------------------------------------


def test_save_folder_writes_contiguous_tensors_and_leaves_no_temp(tmp_path: Path, gen: torch.Generator) -> None:
    base = torch.randn(4, 6, generator=gen)
    state = {"w": base.t(), "b": torch.arange(5.0)}  # base.t() is not contiguous
    folder = save_folder(tmp_path / "ck", config=MINIMAL_CONFIG, state_dict=state, card="# card\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # the temp folder was renamed away
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
    loaded = load_file(str(folder / WEIGHTS_NAME))
    assert torch.equal(loaded["w"], base.t()) and torch.equal(loaded["b"], torch.arange(5.0))
    assert json.loads((folder / CONFIG_NAME).read_text()) == MINIMAL_CONFIG


def test_save_folder_keeps_existing_card_and_other_files(tmp_path: Path) -> None:
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / CARD_NAME).write_text("my own card")
    (folder / "notes.txt").write_text("keep me")
    save_folder(folder, config=MINIMAL_CONFIG, state_dict={"x": torch.zeros(2)}, card="generated")
    save_folder(folder, config={**MINIMAL_CONFIG, "labels": ["a"]}, state_dict={"x": torch.ones(3)}, card="again")
    assert (folder / CARD_NAME).read_text() == "my own card"
    assert (folder / "notes.txt").read_text() == "keep me"
    assert torch.equal(load_file(str(folder / WEIGHTS_NAME))["x"], torch.ones(3))  # replaced
    assert json.loads((folder / CONFIG_NAME).read_text())["labels"] == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_read_config_rejects_newer_format(tmp_path: Path) -> None:
    save_folder(tmp_path, config={**MINIMAL_CONFIG, "format_version": FORMAT_VERSION + 1}, state_dict={}, card=None)
    with pytest.raises(CheckpointError, match=rf"format_version {FORMAT_VERSION + 1}.*upgrade avscene"):
        read_config(tmp_path)


def test_read_config_names_missing_key_and_bad_json(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text(json.dumps({"format_version": 1, "model": {}, "preprocess": {}}))
    with pytest.raises(CheckpointError, match=r"lacks required key\(s\) \['labels'\]"):
        read_config(tmp_path)
    (tmp_path / CONFIG_NAME).write_text('{"format_version": 1,\n "model": }')
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON \(line 2, column 11"):
        read_config(tmp_path)


def test_read_config_warns_on_unknown_key(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**MINIMAL_CONFIG, "colour": "blue"}))
    with pytest.warns(UserWarning, match=r"unknown config keys \['colour'\]"):
        data = read_config(tmp_path)
    assert data["colour"] == "blue"


@pytest.mark.parametrize("keep", [0, 7, 100, -10])  # empty, inside the length prefix, inside the header, last bytes
def test_truncated_weights_raise_checkpoint_error(tmp_path: Path, gen: torch.Generator, keep: int) -> None:
    save_folder(tmp_path, config=MINIMAL_CONFIG, state_dict={"w": torch.randn(8, 8, generator=gen)}, card=None)
    path = tmp_path / WEIGHTS_NAME
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is truncated or corrupted"):
        load_state_dict(tmp_path)


def test_load_state_dict_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load must not be used for checkpoints")

    monkeypatch.setattr(torch, "load", forbidden)
    save_folder(tmp_path, config=MINIMAL_CONFIG, state_dict={"w": torch.ones(2, 3)}, card=None)
    assert torch.equal(load_state_dict(tmp_path)["w"], torch.ones(2, 3))


# --- low level: resolving names -----------------------------------------------------


def test_resolve_local_folder_as_is(tiny: Path) -> None:
    resolved = resolve(str(tiny))
    assert resolved.folder == tiny and resolved.commit is None and resolved.revision is None


def test_resolve_errors_for_local_paths(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"neither an existing folder nor a Hugging Face repo id"):
        resolve(str(tmp_path / "does" / "not-exist"))
    (tmp_path / CONFIG_NAME).write_text(json.dumps(MINIMAL_CONFIG))
    with pytest.raises(CheckpointError, match=r"not an avscene checkpoint: missing model\.safetensors"):
        resolve(str(tmp_path))
    with pytest.raises(CheckpointError, match=r"is a file; pass the folder"):
        resolve(str(tmp_path / CONFIG_NAME))
    with pytest.raises(UsageError, match=r"--revision applies to Hub repo ids"):
        resolve(str(tmp_path), revision="main")


def test_import_checkpoint_does_not_import_torch() -> None:
    heavy = "('torch', 'safetensors', 'huggingface_hub')"
    modules = "avscene.checkpoint.load, avscene.checkpoint.push, avscene.checkpoint.card, avscene.checkpoint.bundle"
    code = f"import sys, {modules}; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- Hub download path ------------------------------------------------------------------


def _publish(hub: HubServer, folder: Path, revision: str = "main") -> str:
    # An extra file checks that only the checkpoint files are fetched.
    files = {p.name: p.read_bytes() for p in folder.iterdir()} | {"big-extra.bin": b"\0" * 1000}
    return hub.add_revision(REPO, files, revision=revision)


def test_download_then_cache_hits_without_server(hub: HubServer, tiny: Path, cache: str) -> None:
    commit = _publish(hub, tiny)
    resolved = resolve(REPO, cache_dir=cache)
    assert resolved.commit == commit and resolved.model_id == REPO
    assert sorted(p.name for p in resolved.folder.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
    for name in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME):
        assert (resolved.folder / name).read_bytes() == (tiny / name).read_bytes()
    assert not any("big-extra" in r.path for r in hub.requests)
    assert any(r.path == f"/api/models/{REPO}/revision/main" for r in hub.requests)

    hub.stop()  # from now on every connection is refused
    assert resolve(REPO, cache_dir=cache, offline=True).folder == resolved.folder
    # Online mode with the Hub unreachable: huggingface_hub falls back to the cached snapshot.
    assert resolve(REPO, cache_dir=cache).folder == resolved.folder


def test_offline_makes_no_request(hub: HubServer, tiny: Path, cache: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _publish(hub, tiny)
    online = resolve(REPO, cache_dir=cache)
    before = hub.request_count
    assert resolve(REPO, cache_dir=cache, offline=True).folder == online.folder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve(REPO, cache_dir=cache).folder == online.folder
    assert hub.request_count == before


@pytest.mark.parametrize("env", [False, True])
def test_offline_with_empty_cache_says_how_to_fetch(
    hub: HubServer, tiny: Path, cache: str, monkeypatch: pytest.MonkeyPatch, env: bool
) -> None:
    _publish(hub, tiny)
    if env:
        monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    with pytest.raises(CheckpointError, match=rf"{REPO} is not in the Hugging Face cache .*avscene download {REPO}"):
        resolve(REPO, cache_dir=cache, offline=not env)
    assert hub.request_count == 0


def test_unreachable_hub_with_empty_cache(tiny: Path, cache: str) -> None:
    server = HubServer().start()
    server.stop()  # a port that just closed: connection refused
    with use_endpoint(server.url), pytest.raises(CheckpointError, match=r"could not reach the Hugging Face Hub"):
        resolve(REPO, cache_dir=cache)


def test_revisions_give_their_own_weights(hub: HubServer, tmp_path: Path, cache: str) -> None:
    main_commit = _publish(hub, tiny_checkpoint(tmp_path / "v1", seed=1))
    v2_commit = _publish(hub, tiny_checkpoint(tmp_path / "v2", seed=2), revision="v2")
    assert main_commit != v2_commit
    by_name = {rev: load_state_dict(resolve(REPO, revision=rev, cache_dir=cache).folder) for rev in ("main", "v2")}
    by_commit = load_state_dict(resolve(REPO, revision=v2_commit, cache_dir=cache).folder)
    for name, tensor in load_state_dict(tmp_path / "v2").items():
        assert torch.equal(by_name["v2"][name], tensor) and torch.equal(by_commit[name], tensor)
    v1 = load_state_dict(tmp_path / "v1")
    assert all(torch.equal(by_name["main"][k], v) for k, v in v1.items())
    assert any(not torch.equal(by_name["main"][k], by_name["v2"][k]) for k in v1 if v1[k].is_floating_point())
    assert resolve(REPO, revision="v2", cache_dir=cache, offline=True).commit == v2_commit


def test_unknown_repo_and_revision(hub: HubServer, tiny: Path, cache: str) -> None:
    _publish(hub, tiny)
    with pytest.raises(CheckpointError, match=r"avscene-test/nope is neither a local folder nor a repo on the"):
        resolve("avscene-test/nope", cache_dir=cache)
    with pytest.raises(CheckpointError, match=r"revision 'no-such-branch' does not exist in avscene-test/tiny"):
        resolve(REPO, revision="no-such-branch", cache_dir=cache)


def test_load_pretrained_from_hub_matches_local(hub: HubServer, tiny: Path, cache: str) -> None:
    commit = _publish(hub, tiny)
    remote = load_pretrained(REPO, cache_dir=cache)
    local = load_pretrained(str(tiny))
    assert remote.model_id == REPO and remote.labels == local.labels and remote.config == local.config
    assert remote.commit == commit and local.commit is None
    for a, b in zip(_outputs(remote.model), _outputs(local.model), strict=True):
        assert torch.equal(a, b)


def test_hf_endpoint_env_in_fresh_processes(tiny: Path, tmp_path: Path) -> None:
    """The real user path: HF_ENDPOINT and HF_HOME set before huggingface_hub is imported."""
    code = "from avscene.checkpoint.resolve import resolve; r = resolve('%s'); print(r.commit); print(r.folder)" % REPO
    with HubServer() as hub:
        commit = _publish(hub, tiny)
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home"), "NO_PROXY": "127.0.0.1"}
        env.pop("HF_HUB_CACHE", None)
        env.pop("HF_HUB_OFFLINE", None)
        first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        before = hub.request_count
        second = subprocess.run(
            [sys.executable, "-c", code], env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True
        )
        assert second.returncode == 0, second.stderr
        assert hub.request_count == before  # offline: not a single request, even in a fresh process
    commit_line, folder_line = first.stdout.split()
    assert commit_line == commit and second.stdout.split() == [commit_line, folder_line]
    assert Path(folder_line).is_relative_to(tmp_path / "home" / "hub")


# --- model layer -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["async", "sync", "wsddn"])
def test_round_trip_gives_identical_outputs(tmp_path: Path, variant: str) -> None:
    model = tiny_model(variant=variant, seed=3).eval()
    folder = save_pretrained(model, tmp_path / "ck", labels=["dog", "car", "violin"], preprocess=tiny_preprocess())
    loaded = load_pretrained(str(folder))
    assert not loaded.model.training
    assert loaded.config == tiny_config(variant=variant)
    assert loaded.labels == ("dog", "car", "violin") and loaded.preprocess == tiny_preprocess()
    assert loaded.folder == folder and loaded.model_id == str(folder) and loaded.revision is None
    want, got = _outputs(model), _outputs(loaded.model)
    assert len(got) == len(want) >= 3
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)
    other = tiny_model(variant=variant, seed=4).eval()  # the comparison can fail: other weights differ
    assert not torch.equal(_outputs(other)[0], want[0])


def test_width_changed_in_config_names_the_tensor(tiny: Path) -> None:
    _rewrite_config(tiny, model={**tiny_config().to_dict(), "visual_fc": [48, 32]})
    # RoIHead fc: 16 channels x 6 x 6 RoI = 576 inputs; checkpoint has 32 outputs, config asks 48.
    with pytest.raises(CheckpointError, match=r"does not match its config: shape mismatch \(\d+\) \[.*"
                       r"fc\.0\.weight: checkpoint \(32, 576\) vs config \(48, 576\)"):
        load_pretrained(str(tiny))


def test_missing_and_unexpected_tensors_are_listed(tiny: Path) -> None:
    state = load_file(str(tiny / WEIGHTS_NAME))
    dropped = sorted(state)[0]
    del state[dropped]
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(tiny / WEIGHTS_NAME))
    with pytest.raises(CheckpointError) as info:
        load_pretrained(str(tiny))
    msg = str(info.value)
    assert f"missing tensors (1) [{dropped}]" in msg and "unexpected tensors (1) [extra.weight]" in msg
    assert "shape mismatch" not in msg


def test_labels_must_match_num_classes(tiny: Path, tmp_path: Path) -> None:
    _rewrite_config(tiny, labels=["a", "b"])
    with pytest.raises(CheckpointError, match=r"lists 2 labels \(2 distinct\) but model\.num_classes is 3"):
        load_pretrained(str(tiny))
    _rewrite_config(tiny, labels=["a", "b", "a"])
    with pytest.raises(CheckpointError, match=r"lists 3 labels \(2 distinct\)"):
        load_pretrained(str(tiny))
    with pytest.raises(ConfigError, match=r"2 labels given for a model with num_classes=3"):
        save_pretrained(tiny_model(), tmp_path / "x", labels=["a", "b"], preprocess=tiny_preprocess())


def test_unknown_model_key_warns_and_missing_key_fails(tiny: Path) -> None:
    _rewrite_config(tiny, model={**tiny_config().to_dict(), "future_knob": 1})
    with pytest.warns(UserWarning, match=r"future_knob"):
        assert load_pretrained(str(tiny)).config == tiny_config()
    model_cfg = tiny_config().to_dict()
    del model_cfg["num_classes"]
    _rewrite_config(tiny, model=model_cfg)
    with pytest.raises(CheckpointError, match=r"missing required key 'num_classes'"):
        load_pretrained(str(tiny))


def test_corrupted_weights_through_load_pretrained(tiny: Path) -> None:
    data = (tiny / WEIGHTS_NAME).read_bytes()
    (tiny / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{tiny.name}/model\.safetensors is truncated or corrupted"):
        load_pretrained(str(tiny))


def test_card_front_matter_labels_and_training(tmp_path: Path) -> None:
    training = {"command": "avscene train data.csv --epochs 3", "metrics": {"mAP": 0.61234}, "epochs": 3}
    text = card_text(tiny_config(), labels=["dog", "car", "violin"], preprocess=tiny_preprocess(),
                     training=training, title="org/tiny")
    front, body = text.split("---\n")[1], text.split("---\n", 2)[2]
    assert "library_name: avscene\n" in front and "- audio-visual\n" in front
    assert body.startswith("\n# org/tiny\n")
    assert "0. dog\n1. car\n2. violin\n" in body
    assert "avscene train data.csv --epochs 3" in body and "| mAP | 0.6123 |" in body
    assert "| `variant` | `async` |" in body and "| `image_size` | `64` |" in body
    folder = tiny_checkpoint(tmp_path / "ck")
    assert (folder / CARD_NAME).read_text().startswith("---\nlibrary_name: avscene\n")


def test_saved_checkpoint_files_get_default_permissions(tmp_path: Path) -> None:
    """safetensors writes 0600 files; a checkpoint meant for sharing gets 0666 minus the umask."""
    old = os.umask(0o022)
    try:
        folder = tiny_checkpoint(tmp_path / "perm", seed=0)
    finally:
        os.umask(old)
    for name in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME):
        assert (folder / name).stat().st_mode & 0o777 == 0o644, name
    assert folder.stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize(("key", "value", "message"), [
    ("n_mels", 1e9, "n_mels: 1000000000.0 must be an integer"),  # was a MemoryError per input
    ("n_mels", 10**9, r"n_mels: 1000000000 must be in \[1, 1024\]"),
    ("n_mels", 64.5, "n_mels: 64.5 must be an integer"),  # was accepted
    ("fps", 0, r"fps: 0 must be in \[0.01, 120.0\]"),  # was a ZeroDivisionError per input
    ("image_size", 0, r"image_size: 0 must be in \[16, 4096\]"),
    ("sample_rate", "16k", "sample_rate: '16k' is not a number"),
    ("stft_hop", 500, r"stft_hop: 500 must be at most stft_window \(400\)"),
    ("fmax", 9000.0, r"fmax: 9000.0 must be at most half the sample_rate"),
    ("band_norm", 1, "band_norm: 1 must be true or false"),
    ("audio_proposals", "mfcc", r"audio_proposals must be one of \(.*\), got 'mfcc'"),
])
def test_preprocess_section_is_validated_on_load(tiny: Path, key: str, value, message: str) -> None:
    _rewrite_config(tiny, preprocess={**tiny_preprocess().to_dict(), key: value})
    with pytest.raises(CheckpointError, match=rf"config\.json: invalid config: {message}"):
        load_pretrained(str(tiny))


def test_a_bad_preprocess_section_is_one_usage_error_not_a_failure_per_input(tiny: Path, tmp_path: Path,
                                                                             capsys) -> None:
    from avscene.cli.app import main
    from avscene.testing.media import write_audio

    _rewrite_config(tiny, preprocess={**tiny_preprocess().to_dict(), "fps": 0})
    clips = [write_audio(tmp_path / f"{k}.wav", duration=1.0) for k in range(2)]
    code = main(["classify", *map(str, clips), "-m", str(tiny)])
    _, err = capsys.readouterr()
    assert code == 2 and len([x for x in err.splitlines() if x.strip()]) == 1 and "fps: 0" in err, err
