"""avscene.checkpoint.card (the bundled model's card, scripts/model_card.py): the noise-stress figures land in their own card section, and the recipe written into
the card is the run's own training record."""

from __future__ import annotations

import json
import shutil

import pytest

from avscene.checkpoint import bundle, card
from avscene.errors import UsageError

CARD = """# model

## val and val_shift

old splits table

## Separation

sep text

## Limitations

lim
"""



def _stress(micro: float, fp: float, any_label: float) -> dict:
    cond = {"family": "crowd", "texture": "speech", "snr_db": 0.0, "n_clips": 100, "micro_f1": micro,
            "max_fp_rate": fp, "worst_class": "saxophone" if fp else None, "fp_rate": {}}
    return {"noise_stress": {"clean": {"micro_f1": 0.9, "max_fp_rate": 0.01},
                             "conditions": [cond], "pure_noise": [{"family": "crowd", "texture": "speech",
                                                                   "n_clips": 100, "any_label": any_label,
                                                                   "label_counts": {}}]}}


def test_update_noise_stress_writes_its_section_before_separation_and_replaces_it(tmp_path):
    (tmp_path / "README.md").write_text(CARD)
    val, shift = tmp_path / "val.json", tmp_path / "shift.json"
    val.write_text(json.dumps(_stress(0.812, 0.07, 0.31)))
    shift.write_text(json.dumps(_stress(0.701, 0.0, 0.05)))
    card.update_noise_stress(tmp_path, val, shift)
    text = (tmp_path / "README.md").read_text()
    assert text.index("## val and val_shift") < text.index("## Noise stress") < text.index("## Separation")
    row = next(line for line in text.splitlines() if line.startswith("| `crowd` | speech"))
    assert row == "| `crowd` | speech | 0 | 0.812 (-0.088) | 0.070 (saxophone) | 0.701 (-0.199) | 0.000 |"
    assert "| `crowd` | 0.310 (of 100) | 0.050 (of 100) |" in text
    val.write_text(json.dumps(_stress(0.5, 0.2, 0.9)))  # again: the section is replaced, not added
    card.update_noise_stress(tmp_path, val, None)
    text = (tmp_path / "README.md").read_text()
    assert text.count("## Noise stress") == 1 and "0.500 (-0.400)" in text and "0.812" not in text
    assert "sep text" in text and "old splits table" in text


def test_updating_the_splits_section_keeps_the_noise_section(tmp_path):
    (tmp_path / "README.md").write_text(CARD)
    val = tmp_path / "val.json"
    val.write_text(json.dumps(_stress(0.812, 0.07, 0.31)))
    card.update_noise_stress(tmp_path, val, None)
    ev = {"classification": {"micro_f1": 0.9, "classes": []}}
    (tmp_path / "e.json").write_text(json.dumps(ev))
    card.update_splits(tmp_path, tmp_path / "e.json", tmp_path / "e.json")
    text = (tmp_path / "README.md").read_text()
    assert "old splits table" not in text and "0.812 (-0.088)" in text
    assert text.index("## val and val_shift") < text.index("## Noise stress") < text.index("## Separation")


def test_an_evaluation_without_noise_stress_is_refused(tmp_path):
    (tmp_path / "README.md").write_text(CARD)
    (tmp_path / "val.json").write_text(json.dumps({"noise_stress": None}))
    with pytest.raises(UsageError, match="--add-noise"):
        card.update_noise_stress(tmp_path, tmp_path / "val.json", None)
    assert (tmp_path / "README.md").read_text() == CARD


RECORD = {"variant": "async", "preset": "small", "epochs": 8, "batch_size": 12, "lr": 0.0005, "patience": 25,
          "seed": 0, "mix_prob": 0.3, "aux_loss": 0.0, "refine_labels": True, "oicr_weight": 0.1,
          "model": {"visual_refine": 3, "audio_context": [1, 2, 4]}, "preprocess": {"visual_proposals": "dense"},
          "augment_opts": {"background_snr_db": [-5, 20]}, "init_model": "models/m"}


def test_the_command_carries_preprocessing_label_refinement_and_the_oicr_weight():
    cmd = card.train_command(RECORD, "dense_oicr", 2)
    assert cmd == ("torchrun --nproc_per_node=2 -m avscene train ../shared/avbench/train/labels.csv -o runs/dense_oicr "
                   "--variant async --preset small --epochs 8 --batch-size 12 --lr 0.0005 --patience 25 --seed 0 "
                   "--mix-prob 0.3 --model-opt visual_refine=3 --model-opt audio_context=[1,2,4] "
                   "--pre-opt visual_proposals=dense --aug-opt background_snr_db=[-5,20] --refine-labels "
                   "--oicr-weight 0.1 --init-model models/m --device cpu")


def test_the_oicr_weight_is_left_out_without_refinement_branches_or_at_its_default():
    for change in ({"model": {}}, {"oicr_weight": 1.0}):
        cmd = card.train_command({**RECORD, **change}, "r", 1)
        assert "--oicr-weight" not in cmd and cmd.startswith("avscene train ")


def test_the_command_carries_the_visual_floor_splice_and_selection_only_when_set():
    cmd = card.train_command({**RECORD, "visual_floor": 0.5, "splice_prob": 0.3, "select": "robust"}, "r", 1)
    assert cmd.endswith("--oicr-weight 0.1 --visual-floor 0.5 --splice-prob 0.3 --select robust "
                        "--init-model models/m --device cpu")
    plain = card.train_command({**RECORD, "visual_floor": 0.0, "splice_prob": 0.0, "select": "clean"}, "r", 1)
    assert "--visual-floor" not in plain and "--splice-prob" not in plain and "--select" not in plain


def test_replace_classifier_copies_the_run_and_writes_its_command_with_the_note(tmp_path,
                                                                               tiny_model_dir):
    from avscene.testing.models import tiny_checkpoint

    folder = tmp_path / "bundled"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "README.md").write_text("# m\n\n1.0 MB of float32 weights\n\n```bash\n"
                                      "# then fine-tuned from it\navscene train x\n```\n\n## next\n\n"
                                      "- model: `{\"old\": 1}`\n- preprocessing: `{\"old\": 2}`\n")
    run = tiny_checkpoint(tmp_path / "dense", seed=1)
    cfg = json.loads((run / "config.json").read_text())
    cfg["training"] = {**RECORD, "model": {}, "processes": 1}
    (run / "config.json").write_text(json.dumps(cfg))
    bundle.replace_classifier(folder, run, "with dense proposals")
    assert (folder / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    card = (folder / "README.md").read_text()
    line = "# then fine-tuned again from that model (models/m held it), with dense proposals:\navscene train "
    assert line in card and card.index(line) < card.index("```\n\n## next")  # inside the recipe block
    assert "--pre-opt visual_proposals=dense" in card
    size = (run / "model.safetensors").stat().st_size / 1e6
    assert f"{size:.1f} MB of float32 weights" in card and "1.0 MB of" not in card
    assert '"old"' not in card and f"- model: `{json.dumps(cfg['model'])}`" in card  # the configuration is the run's
    assert f"- preprocessing: `{json.dumps(cfg['preprocess'])}`" in card


def test_the_splits_section_has_a_per_class_table_from_both_files(tmp_path):
    (tmp_path / "README.md").write_text(CARD)
    val = {"classification": {"micro_f1": 0.9, "classes": [{"name": "violin", "f1": 0.5}, {"name": "alarm", "f1": 1.0}]},
           "sed": {"f1": 0.8, "classes": [{"name": "violin", "f1": 0.25}]},
           "localization": {"corloc": 0.4, "median_iou": 0.45,
                            "classes": [{"name": "violin", "pointing_accuracy": 0.75, "corloc": 0.125,
                                         "median_iou": 0.3, "median_size_ratio": 0.5}]}}
    shift = {"classification": {"micro_f1": 0.8, "classes": [{"name": "violin", "f1": 0.375}]}}
    (tmp_path / "v.json").write_text(json.dumps(val))
    (tmp_path / "s.json").write_text(json.dumps(shift))
    card.update_splits(tmp_path, tmp_path / "v.json", tmp_path / "s.json")
    text = (tmp_path / "README.md").read_text()
    assert "| median IoU of the boxes | 0.450 | — |" in text
    assert "| violin | 0.500 / 0.375 | 0.250 / — | 0.750 / — | 0.125 / — | 0.300 / — | 0.500 / — |" in text
    assert "| alarm | 1.000 / — | — / — | — / — | — / — | — / — | — / — |" in text
