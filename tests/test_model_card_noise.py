"""scripts/model_card.py --update-noise-stress: the evaluation files' figures land in their own card section."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "model_card.py"

CARD = """# model

## val and val_shift

old splits table

## Separation

sep text

## Limitations

lim
"""


@pytest.fixture(scope="module")
def card_script():
    spec = importlib.util.spec_from_file_location("model_card", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _stress(micro: float, fp: float, any_label: float) -> dict:
    cond = {"family": "crowd", "texture": "speech", "snr_db": 0.0, "n_clips": 100, "micro_f1": micro,
            "max_fp_rate": fp, "worst_class": "saxophone" if fp else None, "fp_rate": {}}
    return {"noise_stress": {"clean": {"micro_f1": 0.9, "max_fp_rate": 0.01},
                             "conditions": [cond], "pure_noise": [{"family": "crowd", "texture": "speech",
                                                                   "n_clips": 100, "any_label": any_label,
                                                                   "label_counts": {}}]}}


def test_update_noise_stress_writes_its_section_before_separation_and_replaces_it(card_script, tmp_path):
    (tmp_path / "README.md").write_text(CARD)
    val, shift = tmp_path / "val.json", tmp_path / "shift.json"
    val.write_text(json.dumps(_stress(0.812, 0.07, 0.31)))
    shift.write_text(json.dumps(_stress(0.701, 0.0, 0.05)))
    card_script.update_noise_stress(tmp_path, val, shift)
    text = (tmp_path / "README.md").read_text()
    assert text.index("## val and val_shift") < text.index("## Noise stress") < text.index("## Separation")
    row = next(line for line in text.splitlines() if line.startswith("| `crowd` | speech"))
    assert row == "| `crowd` | speech | 0 | 0.812 (-0.088) | 0.070 (saxophone) | 0.701 (-0.199) | 0.000 |"
    assert "| `crowd` | 0.310 (of 100) | 0.050 (of 100) |" in text
    val.write_text(json.dumps(_stress(0.5, 0.2, 0.9)))  # again: the section is replaced, not added
    card_script.update_noise_stress(tmp_path, val, None)
    text = (tmp_path / "README.md").read_text()
    assert text.count("## Noise stress") == 1 and "0.500 (-0.400)" in text and "0.812" not in text
    assert "sep text" in text and "old splits table" in text


def test_updating_the_splits_section_keeps_the_noise_section(card_script, tmp_path):
    (tmp_path / "README.md").write_text(CARD)
    val = tmp_path / "val.json"
    val.write_text(json.dumps(_stress(0.812, 0.07, 0.31)))
    card_script.update_noise_stress(tmp_path, val, None)
    ev = {"classification": {"micro_f1": 0.9, "classes": []}}
    (tmp_path / "e.json").write_text(json.dumps(ev))
    card_script.update_splits(tmp_path, tmp_path / "e.json", tmp_path / "e.json")
    text = (tmp_path / "README.md").read_text()
    assert "old splits table" not in text and "0.812 (-0.088)" in text
    assert text.index("## val and val_shift") < text.index("## Noise stress") < text.index("## Separation")


def test_an_evaluation_without_noise_stress_is_refused(card_script, tmp_path):
    (tmp_path / "README.md").write_text(CARD)
    (tmp_path / "val.json").write_text(json.dumps({"noise_stress": None}))
    with pytest.raises(SystemExit, match="--add-noise"):
        card_script.update_noise_stress(tmp_path, tmp_path / "val.json", None)
    assert (tmp_path / "README.md").read_text() == CARD
