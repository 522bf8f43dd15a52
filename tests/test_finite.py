"""Checkpoint tensors of the wrong dtype, non-finite weights and thresholds, and strict JSON out.

Every JSON document avscene writes is parsed here with a strict parser (one that refuses
Python's ``NaN`` / ``Infinity`` extension, as other languages' parsers do).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from avscene.cli.app import main
from avscene.errors import CheckpointError, UsageError
from avscene.checkpoint.format import CONFIG_NAME, WEIGHTS_NAME
from avscene.checkpoint.load import load_pretrained


def strict_loads(text: str):
    """``json.loads`` that refuses NaN, Infinity and -Infinity, as RFC 8259 does."""
    def refuse(word: str):
        raise ValueError(f"non-standard JSON constant {word}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def _edit_weights(folder: Path, edit) -> str:
    """Apply ``edit(state)`` to the first float weight of ``folder``; returns its name."""
    state = load_file(str(folder / WEIGHTS_NAME))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 2)
    state[name] = edit(state[name])
    save_file(state, str(folder / WEIGHTS_NAME))
    return name


def test_integer_weights_are_refused_not_cast(model_copy):
    name = _edit_weights(model_copy, lambda w: (w * 100).to(torch.int64))
    with pytest.raises(CheckpointError, match=rf"dtype mismatch \(1\) \[{name}: checkpoint int64 vs model float32\]"):
        load_pretrained(str(model_copy))


def test_half_precision_weights_are_refused(model_copy):
    name = _edit_weights(model_copy, lambda w: w.half())
    with pytest.raises(CheckpointError, match=rf"{name}: checkpoint float16 vs model float32"):
        load_pretrained(str(model_copy))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_are_refused(model_copy, value):
    def poison(w):
        w = w.clone()
        w[0, 0] = value
        return w

    name = _edit_weights(model_copy, poison)
    with pytest.raises(CheckpointError, match=rf"NaN or infinite values \(1\) \[{name}\]"):
        load_pretrained(str(model_copy))


def test_config_with_nan_is_refused(model_copy):
    path = model_copy / CONFIG_NAME
    cfg = json.loads(path.read_text())
    cfg["model"]["threshold"] = math.nan
    path.write_text(json.dumps(cfg))  # Python writes the bare word NaN
    assert "NaN" in path.read_text()
    with pytest.raises(CheckpointError, match="not valid JSON .*NaN is not a JSON value"):
        load_pretrained(str(model_copy))


@pytest.mark.parametrize("args", [
    ["classify", "--threshold", "nan"],
    ["classify", "--threshold", "inf"],
    ["localize", "--threshold", "nan"],
    ["localize", "--event-threshold", "nan"],
])
def test_non_finite_threshold_is_a_usage_error(capsys, tiny_model_dir, clips, args):
    code = main([*args[:1], str(clips["av"]), "-m", str(tiny_model_dir), "--json", *args[1:]])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "must be a finite number" in err and len(err.strip().splitlines()) == 1


def test_library_refuses_non_finite_threshold():
    from avscene.tasks.classify import ClassifyOptions
    from avscene.tasks.localize import LocalizeOptions

    with pytest.raises(UsageError, match="--threshold must be a finite number"):
        ClassifyOptions(threshold=math.nan)
    with pytest.raises(UsageError, match="--visible-threshold must be a finite number"):
        LocalizeOptions(visible_threshold=-math.inf)


def test_json_text_is_standard_json():
    from avscene.results import json_text

    doc = {"a": math.nan, "b": [1.5, math.inf, (-math.inf, 2)], "c": {"d": "é"}}
    assert strict_loads(json_text(doc)) == {"a": None, "b": [1.5, None, [None, 2]], "c": {"d": "é"}}
    assert strict_loads(json_text(doc, indent=2)) == strict_loads(json_text(doc))


def test_outputs_parse_strictly(capsys, tiny_model_dir, clips, tmp_path):
    jsonl = tmp_path / "out.jsonl"
    assert main(["classify", str(clips["av"]), "-m", str(tiny_model_dir), "--json"]) == 0
    out, _ = capsys.readouterr()
    assert strict_loads(out)[0]["file"] == str(clips["av"])
    assert main(["localize", str(clips["av"]), "-m", str(tiny_model_dir), "--jsonl", str(jsonl)]) == 0
    capsys.readouterr()
    assert [strict_loads(line)["file"] for line in jsonl.read_text().splitlines()] == [str(clips["av"])]


def _dictionaries():
    import numpy as np

    from avscene.separation.dictionary import Dictionaries

    rng = np.random.default_rng(0)
    atoms = lambda k: rng.random((5, k), dtype=np.float32)  # noqa: E731 - n_fft 8: 5 bins
    return Dictionaries(classes={"a": atoms(2), "b": atoms(2)}, background=atoms(3), n_fft=8, hop=4)


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda t: t.double(), "is float64, not float32"),
    (lambda t: t.to(torch.int64), "is int64, not float32"),
    (lambda t: t.index_fill(0, torch.tensor([1]), math.nan), "holds NaN, infinite or negative"),
    (lambda t: t.index_fill(0, torch.tensor([0]), math.inf), "holds NaN, infinite or negative"),
    (lambda t: -t, "holds NaN, infinite or negative"),
])
def test_separation_dictionaries_of_another_dtype_or_not_finite_are_refused(edit, problem):
    from avscene.separation.dictionary import Dictionaries

    d = _dictionaries()
    tensors = d.tensors()
    assert Dictionaries.from_tensors(tensors, d.meta(), ["a", "b"], source="d").n_fft == 8  # the unedited load
    tensors["class.b"] = edit(tensors["class.b"])
    with pytest.raises(CheckpointError, match=rf"class\.b {problem}"):
        Dictionaries.from_tensors(tensors, d.meta(), ["a", "b"], source="d")


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_mask_network_with_non_finite_weights_is_refused(model_copy, value):
    from avscene.nn.masknet import MaskNet, MaskNetConfig
    from avscene.checkpoint.parts import load_mask_net, save_mask_net
    from avscene.checkpoint.format import MASK_NET_NAME

    labels = json.loads((model_copy / CONFIG_NAME).read_text())["labels"]
    save_mask_net(model_copy, MaskNet(MaskNetConfig(num_classes=len(labels), n_fft=64, hop=16, hidden=8, blocks=1)))
    config = json.loads((model_copy / CONFIG_NAME).read_text())
    assert load_mask_net(model_copy, config, labels) is not None  # loads before the edit
    state = load_file(str(model_copy / MASK_NET_NAME))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.ndim >= 2)
    state[name] = state[name].clone().index_fill(0, torch.tensor([0]), value)
    save_file(state, str(model_copy / MASK_NET_NAME))
    with pytest.raises(CheckpointError, match=rf"NaN or infinite values \(1\) \[{re.escape(name)}\]"):
        load_mask_net(model_copy, config, labels)
