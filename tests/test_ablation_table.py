"""scripts/ablation_table.py: each recipe's row holds the figures of its own evaluation files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ablation_table.py"


def _script():
    spec = importlib.util.spec_from_file_location("ablation_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _eval(micro: float, worst: tuple[str, float], sed: float, noisy: float, fp: float, pure: list) -> dict:
    classes = [{"name": "car", "f1": 1.0}, {"name": worst[0], "f1": worst[1]}, {"name": "silent", "f1": None}]
    return {"classification": {"micro_f1": micro, "classes": classes}, "sed": {"f1": sed},
            "noise_stress": {"conditions": [
                {"family": "typing", "snr_db": 0.0, "micro_f1": 0.1, "max_fp_rate": 0.9},  # one family: not pooled
                {"family": "all", "snr_db": 10.0, "micro_f1": 0.2, "max_fp_rate": 0.8},  # another SNR
                {"family": "all", "snr_db": 0.0, "micro_f1": noisy, "max_fp_rate": fp}],
                "pure_noise": [{"family": f, "n_clips": n, "any_label": a} for f, n, a in pure]}}


def test_a_row_holds_its_own_files_figures(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval_val_noise.json").write_text(json.dumps(
        _eval(0.9, ("flute", 0.25), 0.8, 0.7, 0.03, [("typing", 100, 0.5), ("crowd", 300, 0.1)])))
    (run / "eval_val_shift_noise.json").write_text(json.dumps(
        _eval(0.85, ("violin", 0.0), 0.6, 0.65, 0.02, [("typing", 50, 0.0), ("crowd", 50, 1.0)])))
    # the best hold-out epoch, the first of a tie without losses (as `avscene train` keeps it); a line without a figure
    (run / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"epoch": 0, "val_micro_f1": 0.8}, {"epoch": 1, "val_micro_f1": 0.91}, {"epoch": 2, "val_micro_f1": 0.91},
        {"epoch": 3, "val_micro_f1": None}]) + "\n")
    row = _script().row("x", run)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["x", "0.910 (ep. 1)", "0.900 / 0.850", "violin 0.00", "0.800 / 0.600", "0.700 / 0.650",
                     "0.030 / 0.020", "0.200 / 0.500"]  # pure noise pooled by clips: (50 + 30) / 400, 50 / 100


def test_no_training_log_is_a_dash(tmp_path):
    e = json.dumps(_eval(0.5, ("drum", 0.4), 0.5, 0.5, 0.1, [("typing", 10, 0.0)]))
    for s in ("val", "val_shift"):
        (tmp_path / f"eval_{s}_noise.json").write_text(e)
    assert _script().row("y", tmp_path).split("|")[2].strip() == "—"


def test_a_robust_run_shows_the_epoch_its_pooled_figure_kept(tmp_path):
    e = json.dumps(_eval(0.5, ("drum", 0.4), 0.5, 0.5, 0.1, [("typing", 10, 0.0)]))
    for s in ("val", "val_shift"):
        (tmp_path / f"eval_{s}_noise.json").write_text(e)
    (tmp_path / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"epoch": 0, "val_micro_f1": 0.95, "robust_micro_f1": 0.70},
        {"epoch": 1, "val_micro_f1": 0.90, "robust_micro_f1": 0.85},
        {"epoch": 2, "val_micro_f1": 0.92, "robust_micro_f1": 0.85}]) + "\n")
    mod = _script()
    assert mod.row("c", tmp_path).split("|")[2].strip() == "0.950 (ep. 0)"
    assert mod.row("r", tmp_path, select="robust").split("|")[2].strip() == "0.900 (ep. 1, robust 0.850)"
    # a tie goes to the lower validation loss, as `avscene train` breaks it
    (tmp_path / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"epoch": 0, "val_micro_f1": 0.8, "val_loss": 0.01}, {"epoch": 1, "val_micro_f1": 0.9, "val_loss": 0.05},
        {"epoch": 2, "val_micro_f1": 0.9, "val_loss": 0.03}, {"epoch": 3, "val_micro_f1": 0.9, "val_loss": 0.04}]) + "\n")
    assert mod.row("t", tmp_path).split("|")[2].strip() == "0.900 (ep. 2)"
    with pytest.raises(SystemExit, match="selection"):
        mod.main([f"x={tmp_path}@best"])


def test_a_bare_recipe_is_its_folder_under_docs_results(tmp_path):
    mod = _script()
    results = Path(__file__).resolve().parents[1] / "docs" / "results"
    assert mod.parse_arg("dense") == ("dense", results / "dense", "clean")
    assert mod.parse_arg("bandnorm@robust") == ("bandnorm", results / "bandnorm", "robust")
    assert mod.parse_arg(f"a b=c={tmp_path}@robust") == ("a b", Path(f"c={tmp_path}"), "robust")
    with pytest.raises(SystemExit, match="selection"):
        mod.parse_arg("dense@best")


def _parse_eval(micro, silent, offscreen, seg, event_type, corloc, pointing) -> dict:
    return {"classification": {"micro_f1": micro},
            "recall_by_mode": {"silent": {"recall": 0.01, "n": 3}},  # the fused decision's: not this table's
            "recall_by_mode_parse": {"silent": {"recall": silent, "n": 3}, "offscreen": {"recall": offscreen, "n": 4}},
            "avvp": {"segment": dict(zip(("audio", "visual", "audio_visual", "type_av", "event_av"), seg)),
                     "event": {"type_av": event_type, "audio": 0.02}},
            "localization": {"corloc": corloc, "pointing_accuracy": pointing}}


def test_the_parsing_table_holds_each_splits_figures(tmp_path, capsys):
    (tmp_path / "eval_val.json").write_text(json.dumps(
        _parse_eval(0.9, 0.5, 0.75, (0.1, 0.2, 0.3, 0.4, 0.45), 0.6, 0.25, 0.8)))
    shift = _parse_eval(0.8, 0.25, None, (0.11, 0.21, 0.31, 0.41, 0.46), 0.61, 0.2, 0.7)
    del shift["localization"]  # a model without a visual stream: no localisation figures
    (tmp_path / "eval_val_shift.json").write_text(json.dumps(shift))
    _script().main(["--parsing", f"run={tmp_path}"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].count("|") == lines[2].count("|")
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells == ["run", "—", "0.900 / 0.800", "0.500 / 0.250", "0.750 / —", "0.100 / 0.110", "0.200 / 0.210",
                     "0.300 / 0.310", "0.400 / 0.410", "0.600 / 0.610", "0.250 / —", "0.800 / —"]
