"""Decision-threshold calibration on held-out clips."""

from __future__ import annotations

import numpy as np

from avscene.train.calibrate import best_threshold, micro_f1_at


def test_micro_f1_at_by_hand() -> None:
    s = np.array([[0.5, -0.2], [-0.1, 0.3]])
    y = np.array([[True, True], [False, True]])
    # threshold 0: predicted {(0,0), (1,1)} -> TP 2, FP 0, FN 1 -> F1 = 4 / 5
    assert micro_f1_at(s, y, 0.0) == 2 * 2 / (2 + 3)
    # threshold -0.25: predicted all four -> TP 3, FP 1 -> F1 = 6 / 7
    assert micro_f1_at(s, y, -0.25) == 2 * 3 / (4 + 3)


def test_best_threshold_recovers_a_shifted_boundary() -> None:
    rng = np.random.default_rng(0)
    y = rng.random((200, 5)) < 0.3
    s = np.where(y, -0.3, -0.9) + rng.normal(0, 0.05, y.shape)  # positives near -0.3, negatives near -0.9
    t = best_threshold(s, y, default=0.0)
    assert -0.8 < t < -0.4 and micro_f1_at(s, y, t) == 1.0
    assert micro_f1_at(s, y, 0.0) == 0.0


def test_ties_go_to_the_default() -> None:
    s = np.array([[2.0, -2.0]])
    y = np.array([[True, False]])
    assert best_threshold(s, y, default=0.0) == 0.0  # every threshold in (-2, 2) is perfect


def test_modality_thresholds_by_hand() -> None:
    from avscene.train.calibrate import best_modality_thresholds, or_f1_at

    # one class, four clips: 0 heard, 1 seen only (silent), 2 and 3 absent
    y = np.array([[True], [True], [False], [False]])
    audio = np.array([[2.0], [-3.0], [-1.5], [-3.0]])
    visual = np.array([[-3.0], [0.5], [-3.0], [0.3]])
    # at (0, 0): clips 0, 1 and 3 -> TP 2, FP 1 -> F1 = 4 / 5
    assert or_f1_at(audio, visual, y, 0.0, 0.0) == 4 / 5
    # perfect: t_audio in [-1.5, 1] (clip 0 only) and t_visual in [0.3, 0.5) (clip 1, not 3);
    # the grid pair closest to (0, 0) in L1 is (0.0, 0.3)
    assert best_modality_thresholds(audio, visual, y, default=0.0) == (0.0, 0.3)
    assert or_f1_at(audio, visual, y, 0.0, 0.3) == 1.0


def test_modality_thresholds_with_the_fused_decisions_by_hand() -> None:
    from avscene.tasks.classify import modality_decisions
    from avscene.train.calibrate import best_modality_thresholds, or_f1_at

    # one class, four clips: 0 predicted by the fused score and faintly heard, 1 seen only,
    # 2 and 3 absent but with a middling visual (2) or audio (3) score
    y = np.array([[True], [True], [False], [False]])
    pred = np.array([[True], [False], [False], [False]])
    audio = np.array([[0.1], [-1.0], [-1.0], [0.2]])
    visual = np.array([[-1.0], [0.6], [0.4], [-1.0]])
    heard, seen = modality_decisions(audio, visual, pred, t_audio=0.2, t_visual=0.4, base=0.0)
    # clip 0: 0.1 < 0.2 but predicted with 0.1 > 0 -> heard; clip 3: 0.2 is not > 0.2
    assert heard[:, 0].tolist() == [True, False, False, False]
    assert seen[:, 0].tolist() == [False, True, False, False]  # 0.6 > 0.4, 0.4 is not
    # with the fused decisions: perfect for t_audio >= 0.2 and 0.4 <= t_visual < 0.6: closest (0.2, 0.4)
    assert or_f1_at(audio, visual, y, 0.2, 0.4, predicted=pred) == 1.0
    assert best_modality_thresholds(audio, visual, y, default=0.0, predicted=pred) == (0.2, 0.4)
    # without them clip 0 needs t_audio < 0.1, which lets clip 3 in: TP 2, FP 1 -> F1 4/5 beats
    # missing clip 0 (TP 1, FN 1 -> 2/3); closest such pair (0.0, 0.4)
    assert best_modality_thresholds(audio, visual, y, default=0.0) == (0.0, 0.4)
    assert or_f1_at(audio, visual, y, 0.0, 0.4) == 4 / 5


def test_the_grid_follows_what_the_scores_are() -> None:
    from avscene.nn.model import ModelConfig
    from avscene.train.calibrate import PROBABILITY_GRID, THRESHOLD_GRID, search_grid

    grid, default = search_grid(ModelConfig(num_classes=2))  # hinge scores, margin ±1
    assert default == 0.0 and grid is THRESHOLD_GRID and grid[0] == -2.0 and grid[-1] == 1.0
    grid, default = search_grid(ModelConfig(num_classes=2, variant="wsddn"))  # probabilities
    assert default == 0.5 and grid is PROBABILITY_GRID and grid[0] == 0.05 and grid[-1] == 0.95


def test_calibrate_threshold_stores_the_hand_computed_value(tiny_model_dir, tmp_path) -> None:
    """Training's last step: the threshold chosen on hand-made hold-out scores, stored in config.json."""
    import dataclasses
    import shutil

    from avscene.checkpoint.load import load_pretrained
    from avscene.train.calibrate import calibrate_threshold

    folder = tmp_path / "run"
    shutil.copytree(tiny_model_dir, folder)
    cfg = load_pretrained(str(folder)).config
    assert cfg.loss != "bce" and cfg.threshold is None
    y = np.array([[True, False, False], [False, True, False], [True, False, True]])
    # positives at -0.3 or above, negatives at -0.62 or below: perfect for -0.62 <= t < -0.3; the grid
    # values there closest to 0: -0.35
    s = np.array([[-0.3, -0.62, -0.9], [-0.7, 0.2, -0.8], [0.4, -0.65, -0.1]])
    lines = []
    assert calibrate_threshold(folder, s, y, cfg, pools="clean", log=lines.append) == -0.35
    assert load_pretrained(str(folder)).config.threshold == -0.35
    # at 0: TP 2 (0.2, 0.4), FN 2 -> 4 / 6; at -0.35: 1
    assert lines == ["calibrated threshold -0.35 on 3 held-out inputs (clean): micro-F1 0.667 at +0.00 → 1.000"]
    # probabilities (wsddn): the probability grid, ties to 0.5; perfect for 0.1 <= t < 0.3 -> 0.25
    p = np.where(y, 0.3, 0.1)
    wsddn = dataclasses.replace(cfg, variant="wsddn")
    assert wsddn.loss == "bce"
    assert calibrate_threshold(folder, p, y, wsddn, log=lines.append) == 0.25


def test_the_threshold_of_an_input_follows_its_streams() -> None:
    from avscene.nn.model import ModelConfig

    cfg = ModelConfig(num_classes=3, threshold=-0.1, audio_threshold=0.85, visual_threshold=0.65)
    assert cfg.input_threshold(("audio", "visual")) == -0.1
    assert cfg.input_threshold(("audio",)) == 0.85 and cfg.input_threshold(("visual",)) == 0.65
    assert ModelConfig(num_classes=3, threshold=-0.1).input_threshold(("audio",)) == 0.0  # uncalibrated: the sign
    audio_model = ModelConfig(num_classes=3, variant="audio", threshold=0.3, audio_threshold=0.9)
    assert audio_model.input_threshold(("audio",)) == 0.3  # one stream is all it has: its own fused threshold
