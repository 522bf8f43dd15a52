"""avscene.checkpoint as the one home of the checkpoint: one ``config.json`` writer, one loader that
builds a complete model (separation parts included), one card template, the default method's record."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import avscene
import avscene.checkpoint.format as fmt
from avscene.checkpoint.card import bundled_card, card_text
from avscene.checkpoint.format import DICTIONARIES_NAME, MASK_NET_NAME, read_config
from avscene.checkpoint.load import load_pretrained
from avscene.checkpoint.parts import METHOD_PARTS, save_dictionaries, save_mask_net, set_default_method
from avscene.errors import CheckpointError
from avscene.nn.masknet import MaskNet, MaskNetConfig
from avscene.separation.dictionary import Dictionaries
from avscene.testing.media import write_audio
from avscene.testing.models import TINY_LABELS, tiny_checkpoint, tiny_config, tiny_model, tiny_preprocess


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The folders whose config.json the one writer wrote, in order."""
    seen: list[Path] = []
    real = fmt.write_config

    def spy(folder, config):
        seen.append(Path(folder))
        return real(folder, config)

    monkeypatch.setattr(fmt, "write_config", spy)
    import avscene.checkpoint.parts as parts

    monkeypatch.setattr(parts, "write_config", spy)
    return seen


def _with_parts(folder: Path) -> Path:
    torch.manual_seed(0)
    save_mask_net(folder, MaskNet(MaskNetConfig(num_classes=len(TINY_LABELS), hidden=16, blocks=2)).eval(), {})
    rng = np.random.default_rng(0)
    save_dictionaries(folder, Dictionaries(classes={c: rng.random((513, 3)).astype(np.float32) for c in TINY_LABELS},
                                           background=rng.random((513, 2)).astype(np.float32), n_fft=1024, hop=256))
    return folder


def test_training_and_save_pretrained_write_config_through_the_one_writer(tmp_path, writes):
    from avscene.train.checkpointing import save_model

    library = tiny_checkpoint(tmp_path / "library")
    trained = tmp_path / "trained"
    save_model(tiny_model(), trained, class_names=TINY_LABELS, pre=tiny_preprocess(), training={"epochs": 1})
    assert len(writes) == 2 and all(w.parent == tmp_path for w in writes)  # each written once, in its temp folder
    a, b = read_config(library), read_config(trained)
    assert set(a) == set(b) == {"format_version", "model", "labels", "preprocess", "training"}
    assert a["model"] == b["model"] and a["preprocess"] == b["preprocess"] and a["labels"] == b["labels"]
    # the parts and the default method go through it too, and the file stays standard JSON
    _with_parts(trained)
    set_default_method(trained, "hybrid")
    assert len(writes) == 5
    text = (trained / "config.json").read_text(encoding="utf-8")
    assert text.endswith("}\n") and json.loads(text)["separation"]["default_method"] == "hybrid"


WRITES = {"write_text", "write_bytes", "dump", "replace", "rename", "copyfile", "open", "atomic_write_text"}


def config_writers(root: Path) -> list[str]:
    """Functions under ``root`` that name config.json and write or move a file."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
                n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
            calls = {c.func.attr if isinstance(c.func, ast.Attribute) else getattr(c.func, "id", "")
                     for c in ast.walk(node) if isinstance(c, ast.Call)}
            if names & {"CONFIG_NAME", "config.json"} and calls & WRITES:
                found.append(f"{path.relative_to(root.parent).as_posix()}:{node.name}")
    return found


def test_config_json_has_one_writer(tmp_path):
    root = Path(avscene.__file__).resolve().parent
    writers = [w for top in (root, root.parent / "scripts", root.parent / "bench") for w in config_writers(top)]
    # write_config, and save_folder, which moves the files it wrote into a new folder into place
    assert writers == ["avscene/checkpoint/format.py:save_folder", "avscene/checkpoint/format.py:write_config"]
    # the check does see a writer by hand
    probe = tmp_path / "pkg"
    probe.mkdir()
    (probe / "m.py").write_text("def f(run, config):\n    (run / CONFIG_NAME).write_text(str(config))\n")
    assert config_writers(probe) == ["pkg/m.py:f"]


def test_the_loader_reads_the_separation_parts_once(tmp_path):
    folder = _with_parts(tiny_checkpoint(tmp_path / "m"))
    loaded = load_pretrained(str(folder))
    assert loaded.separation.mask_net is not None and loaded.separation.dictionaries is not None
    assert set(loaded.separation.dictionaries.classes) == set(TINY_LABELS)
    (folder / MASK_NET_NAME).unlink()
    (folder / DICTIONARIES_NAME).unlink()
    import avscene

    mix = write_audio(tmp_path / "mix.wav", duration=2.0, freq=440.0)
    for method in ("mask", "dictionary", "hybrid"):  # nothing reads the deleted files again
        out = avscene.separate(mix, model=loaded, label=TINY_LABELS[0], method=method)
        assert out.result.method == method
    with pytest.raises(CheckpointError, match="dictionaries.safetensors is missing"):
        load_pretrained(str(folder))  # a fresh load does read them, strictly


def test_set_default_method_records_a_method_the_checkpoint_can_run(tmp_path):
    folder = tiny_checkpoint(tmp_path / "m")
    with pytest.raises(CheckpointError, match="no separation.mask"):
        set_default_method(folder, "mask")
    with pytest.raises(CheckpointError, match="must be one of"):
        set_default_method(folder, "nmf")
    assert "separation" not in read_config(folder)  # refused: nothing written
    set_default_method(folder, "ncp")
    assert load_pretrained(str(folder)).separation.default_method == "ncp"
    set_default_method(folder, None)
    assert load_pretrained(str(folder)).separation.default_method is None


def test_the_registry_is_built_on_the_part_table():
    from avscene.separation.registry import METHODS

    assert [(m.name.value, m.needs) for m in METHODS.values()] == list(METHOD_PARTS.items())


def test_the_generic_card_lists_what_it_is_given():
    text = card_text(tiny_config(), labels=["dog", "car", "violin"], preprocess=tiny_preprocess(),
                     training={"metrics": {"val_micro_f1": 0.8125}}, title="org/tiny")
    assert text.startswith("---\nlibrary_name: avscene\n") and "| val_micro_f1 | 0.8125 |" in text
    assert 'avscene.load_model("org/tiny")' in text and "avscene.hub" not in text


def test_the_bundled_card_carries_the_figures_of_the_evaluation_files(tmp_path):
    runs = tmp_path / "runs"
    run = tiny_checkpoint(runs / "ctx")
    config = read_config(run)
    config["training"] = {"variant": "async", "preset": "small", "epochs": 3, "batch_size": 12, "lr": 0.001,
                          "patience": 3, "seed": 0, "best_epoch": 1}
    fmt.write_config(run, config)
    log = [{"epoch": e, "val_micro_f1": 0.5, "seconds": 600.0} for e in range(3)]
    (run / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))

    def evaluation(f1: float, precision: float, recall: float) -> str:
        return json.dumps({"model": {"variant": "async"}, "classification": {
            "micro_f1": f1, "micro_precision": precision, "micro_recall": recall}})

    (run / "eval_val.json").write_text(evaluation(0.8771, 0.9122, 0.8433))
    (run / "eval_val_shift.json").write_text(evaluation(0.7651, 0.8013, 0.7322))
    card = bundled_card(runs, "ctx", config, size_mb=12.34, processes=2)
    row = next(line for line in card.splitlines() if "(`ctx`: 3 ep.)" in line)
    assert "0.877 (0.912 / 0.843)" in row and "0.765 (0.801 / 0.732)" in row and "| 2/3 | 30 |" in row
    assert "12.3 MB of float32 weights" in card and "torchrun --nproc_per_node=2" in card
    assert card.startswith("---\nlibrary_name: avscene\n") and "datasets:\n- avbench\n---" in card
    assert f"- model: `{json.dumps(config['model'])}`" in card


def test_the_bundled_model_loads_unchanged():
    from avscene.tasks.models import default_model_path

    folder = default_model_path()
    loaded = load_pretrained(str(folder))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert list(loaded.labels) == config["labels"]
    for key, part in (("mask", loaded.separation.mask_net), ("dictionary", loaded.separation.dictionaries)):
        assert (part is not None) == (key in config.get("separation", {}))
    assert loaded.separation.default_method == config.get("separation", {}).get("default_method")
