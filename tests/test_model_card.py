"""scripts/model_card.py: the recipe written into the card is the run's own training record."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "model_card.py"


@pytest.fixture(scope="module")
def card_script():
    spec = importlib.util.spec_from_file_location("model_card", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


RECORD = {"variant": "async", "preset": "small", "epochs": 8, "batch_size": 12, "lr": 0.0005, "patience": 25,
          "seed": 0, "mix_prob": 0.3, "aux_loss": 0.0, "refine_labels": True, "oicr_weight": 0.1,
          "model": {"visual_refine": 3, "audio_context": [1, 2, 4]}, "preprocess": {"visual_proposals": "dense"},
          "augment_opts": {"background_snr_db": [-5, 20]}, "init_model": "models/m"}


def test_the_command_carries_preprocessing_label_refinement_and_the_oicr_weight(card_script):
    cmd = card_script.train_command(RECORD, "dense_oicr", 2)
    assert cmd == ("torchrun --nproc_per_node=2 -m avscene train ../shared/avbench/train/labels.csv -o runs/dense_oicr "
                   "--variant async --preset small --epochs 8 --batch-size 12 --lr 0.0005 --patience 25 --seed 0 "
                   "--mix-prob 0.3 --model-opt visual_refine=3 --model-opt audio_context=[1,2,4] "
                   "--pre-opt visual_proposals=dense --aug-opt background_snr_db=[-5,20] --refine-labels "
                   "--oicr-weight 0.1 --init-model models/m --device cpu")


def test_the_oicr_weight_is_left_out_without_refinement_branches_or_at_its_default(card_script):
    for change in ({"model": {}}, {"oicr_weight": 1.0}):
        cmd = card_script.train_command({**RECORD, **change}, "r", 1)
        assert "--oicr-weight" not in cmd and cmd.startswith("avscene train ")


def test_replace_classifier_copies_the_run_and_writes_its_command_with_the_note(card_script, tmp_path,
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
    card_script.replace_classifier(folder, run, "with dense proposals")
    assert (folder / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    card = (folder / "README.md").read_text()
    line = "# then fine-tuned again from that model (models/m held it), with dense proposals:\navscene train "
    assert line in card and card.index(line) < card.index("```\n\n## next")  # inside the recipe block
    assert "--pre-opt visual_proposals=dense" in card
    size = (run / "model.safetensors").stat().st_size / 1e6
    assert f"{size:.1f} MB of float32 weights" in card and "1.0 MB of" not in card
    assert '"old"' not in card and f"- model: `{json.dumps(cfg['model'])}`" in card  # the configuration is the run's
    assert f"- preprocessing: `{json.dumps(cfg['preprocess'])}`" in card
