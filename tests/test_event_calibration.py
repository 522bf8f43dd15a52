"""The calibrated event rule: EventRule on hand-made rows, splices of two clips, the calibration's
choice, the checkpoint record, and the one home of the "no evidence, no box" rule."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from avscene.dsp.events import EventRule
from avscene.errors import CheckpointError, UsageError
from avscene.train.data import Example
from avscene.train.event_calibration import (
    ClipEventScores, best_event_rule, build_splice, pair_clips, part_scores, rule_metrics,
)

NAMES = ("x", "y")


def test_clip_relative_fraction_and_margin_apply_to_predicted_classes_only() -> None:
    row = np.array([-1.0, 0.1, 2.0, 1.2, 0.3, -1.0])
    rule = EventRule(start=1.5, low=None, fraction=0.5)  # 0.5 of the best (2.0): windows >= 1.0
    assert rule.active(row, relative=False).tolist() == [False, False, True, False, False, False]
    assert rule.active(row, relative=True).tolist() == [False, False, True, True, False, False]
    # scores that all shrank below 0: a fraction of a negative best means nothing, a margin still finds the top
    low = row - 3.0
    assert not EventRule(start=0.0, fraction=0.5).active(low, relative=True).any()
    assert EventRule(start=0.0, margin=0.9).active(low, relative=True).tolist() == [
        False, False, True, True, False, False]
    assert not EventRule(start=0.0, margin=0.9).active(low, relative=False).any()
    # the scope: every predicted class, or only those the audio decision does not hear
    assert EventRule(margin=0.5).relative(predicted=True, heard=True)
    assert not EventRule(margin=0.5, scope="unheard").relative(predicted=True, heard=True)
    assert EventRule(margin=0.5, scope="unheard").relative(predicted=True, heard=False)
    assert not EventRule(margin=0.5, scope="unheard").relative(predicted=False, heard=False)


def test_centred_rule_ignores_a_common_offset_and_hysteresis_continues() -> None:
    row = np.array([0.0, 0.0, 0.0, 1.5, 0.6, 0.6, 0.0, 0.0, 0.0])
    rule = EventRule(start=1.0, low=0.5, centre=True)  # the median (0) is subtracted
    expect = [False, False, False, True, True, True, False, False, False]
    assert rule.active(row, relative=False).tolist() == expect
    assert rule.active(row - 5.0, relative=False).tolist() == expect  # a gain change moving every window
    assert not EventRule(start=1.0, low=0.5).active(row - 5.0, relative=False).any()  # uncentred: lost


def test_event_rule_refuses_inconsistent_parameters() -> None:
    with pytest.raises(UsageError, match="low <= start"):
        EventRule(start=0.0, low=0.5)
    with pytest.raises(UsageError, match="odd"):
        EventRule(median=2)
    with pytest.raises(UsageError, match="fraction"):
        EventRule(fraction=1.5)
    with pytest.raises(UsageError, match="margin"):
        EventRule(margin=-1.0)
    with pytest.raises(UsageError, match="scope"):
        EventRule(scope="heard")
    assert EventRule.from_json(EventRule(0.5, -0.5, 3, 0.25, True, 0.5, "unheard").to_json()) == EventRule(
        0.5, -0.5, 3, 0.25, True, 0.5, "unheard")


def _scores(A: np.ndarray, reference, *, heard=(True, False), predicted=(True, False)) -> ClipEventScores:
    w = len(A)
    spans = np.stack([np.arange(w, dtype=float), np.arange(1, w + 1, dtype=float)], axis=1)  # 1-s windows
    return ClipEventScores(E=A, A=A, spans=spans, heard=np.array(heard), predicted=np.array(predicted),
                           duration=float(w), reference=tuple(reference))


def test_calibration_picks_the_continuation_a_hand_made_splice_calls_for() -> None:
    # class x sounds in the first part (0-10 s): one clear window, then shrunk scores around -0.3;
    # the second part, where x is absent, scores -1 (the hinge margin of absent classes)
    A = np.zeros((20, 2)) - 1.0
    A[0, 0], A[1:10, 0] = 0.5, -0.3
    s = _scores(A, [(0.0, 10.0, "x")])
    grid = [EventRule(0.0, None), EventRule(0.0, -0.5), EventRule(0.0, -1.5)]
    rule, f1 = best_event_rule([s], NAMES, grid)
    assert rule == EventRule(0.0, -0.5) and f1 == pytest.approx(1.0)
    # the start alone finds 1 of 10 segments; continuing below -1 floods the absent part too
    assert rule_metrics([s], EventRule(0.0, None), NAMES).recall == pytest.approx(0.1)
    assert rule_metrics([s], EventRule(0.0, -1.5), NAMES).precision == pytest.approx(0.5)


def test_part_criterion_is_exact_on_the_parts_and_penalises_a_leak() -> None:
    A = np.zeros((20, 2)) - 1.0
    A[3, 0] = 1.0  # x: one window in its part
    A[12, 1] = 1.0  # y heard in the wrong part (x's clip is first, y absent from both)
    s = _scores(A, [(0.0, 10.0, "x")], heard=(True, True), predicted=(True, True))
    f1, rate = part_scores([s], [10.0], EventRule(0.0, None), NAMES)
    # decisions (part, class): x found in part 1 (TP), y in part 2 (FP): F1 = 2/3; 1 alarm in 30 negatives
    assert f1 == pytest.approx(2 / 3) and rate == pytest.approx(1 / 30)
    with pytest.raises(UsageError, match="splice"):
        best_event_rule([s], NAMES, [EventRule()], criterion="part")


def test_consistency_reference_is_the_clean_splice_s_events_in_their_part() -> None:
    from avscene.train.event_calibration import Splice, consistency_scores

    clean = np.zeros((20, 3)) - 1.0
    clean[0:4, 0] = 1.0  # x sounds 0-4 s in its part
    clean[12, 1] = 1.0  # y, in neither part's labels: dropped from the pseudo-reference
    shifted = np.zeros((20, 3)) - 1.0
    shifted[0, 0], shifted[1:4, 0] = 0.2, -0.3  # the same clip under a recording change: x's scores shrank
    both = dict(first="a.mp4", second="b.mp4", first_labels=("x",), second_labels=("z",), point=10.0, duration=20.0)
    splices = [Splice(**both, variant="clean"), Splice(**both, perturb=1, variant="shifted")]
    heard = (True, True, False)
    scores = [_scores(clean, [], heard=heard, predicted=heard), _scores(shifted, [], heard=heard, predicted=heard)]
    pseudo = consistency_scores(splices, scores, ("x", "y", "z"))
    assert [p.reference for p in pseudo] == [((0.0, 4.0, "x"),)] * 2
    grid = [EventRule(0.0, None), EventRule(0.0, -0.5)]
    rule, f1 = best_event_rule(scores, ("x", "y", "z"), grid, criterion="consistency", splices=splices)
    assert rule == EventRule(0.0, -0.5) and f1 < 1.0  # the clean splice's stray y stays a false alarm


def test_pairs_have_disjoint_labels() -> None:
    ex = [Example(Path(f"{i}.mp4"), labels) for i, labels in
          enumerate([("a",), ("a", "b"), ("b",), ("c",), ("a",)])]
    pairs = pair_clips(ex, seed=3)
    assert len(pairs) == len(ex)  # every clip has a partner here
    for first, second in pairs:
        assert first is not second and not set(first.labels) & set(second.labels)
    assert pairs == pair_clips(ex, seed=3)


def test_splice_keeps_each_part_and_the_splice_point(tmp_path: Path) -> None:
    from avscene.io.decode import decode
    from avscene.testing.media import write_video

    first = write_video(tmp_path / "a.mp4", duration=2.0, fps=8, size=(64, 48), freq=440.0, pattern="noise")
    second = write_video(tmp_path / "b.mp4", duration=3.0, fps=8, size=(64, 48), freq=2000.0,
                         box=(0, 0, 64, 48), box_color=(250, 0, 0))
    sp = build_splice(Example(first, ("drum",)), Example(second, ("car", "alarm")), tmp_path / "s.mp4",
                      sample_rate=16000)
    assert (sp.point, sp.duration) == (pytest.approx(2.0), pytest.approx(5.0))
    assert sp.reference() == [(0.0, 2.0, "drum"), (2.0, 5.0, "car"), (2.0, 5.0, "alarm")]
    clip = decode(tmp_path / "s.mp4", fps=8, offset=0.0, sample_rate=16000)
    assert len(clip.frames) == 40
    red = clip.frames[..., 0].astype(int) - clip.frames[..., 1:].mean(axis=-1)  # (T, H, W)
    assert (red[16:].mean(axis=(1, 2)) > 150).all() and (red[:16].mean(axis=(1, 2)) < 100).all()

    def peak(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x))
        return float(np.fft.rfftfreq(len(x), 1 / 16000)[np.argmax(spec)])

    assert peak(clip.audio[4000:28000]) == pytest.approx(440.0, abs=5)  # inside the first part
    assert peak(clip.audio[36000:76000]) == pytest.approx(2000.0, abs=5)  # inside the second


def test_checkpoint_records_a_rule_that_localize_applies(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from avscene.checkpoint.format import read_config, write_config
    from avscene.checkpoint.load import load_pretrained
    from avscene.tasks.localize import LocalizeOptions, calibrated_rule, resolve_event_rule

    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "m"))
    assert resolve_event_rule(LocalizeOptions(), load_pretrained(str(folder)).config) is None  # not calibrated
    config = read_config(folder)
    config["model"].update(event_start=0.25, event_low=-0.25, event_median=3, event_fraction=0.5,
                           event_centre=True, event_margin=0.5, event_scope="unheard")
    write_config(folder, config)
    cfg = load_pretrained(str(folder)).config
    rule = EventRule(0.25, -0.25, 3, 0.5, True, 0.5, "unheard")
    assert calibrated_rule(cfg) == rule and resolve_event_rule(LocalizeOptions(), cfg) == rule
    assert resolve_event_rule(LocalizeOptions(event_low=None), cfg) is None  # asked for another rule
    assert resolve_event_rule(LocalizeOptions(event_rule=EventRule()), cfg) == EventRule()
    config["model"].update(event_low=1.0)  # above the start
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="event_low"):
        load_pretrained(str(folder))
    config["model"].update(event_start=None, event_low=None, event_median=1, event_fraction=None,
                           event_centre=False, event_margin=0.5, event_scope="predicted")  # margin, no start
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="event_start"):
        load_pretrained(str(folder))


def test_no_evidence_no_box_in_localize_and_evaluate_alike(tiny_model_dir: Path, clips: dict, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import avscene.evaluation.evaluate as evaluate_module
    from avscene.checkpoint.load import load_pretrained
    from avscene.tasks._pipeline import analyse
    from avscene.tasks.classify import ClassifyOptions
    from avscene.tasks.localize import LocalizeOptions, frame_boxes, localize_from_analysis

    loaded = load_pretrained(str(tiny_model_dir))
    labels = list(loaded.labels)
    a = analyse(clips["av"], loaded)
    E = a.output.visual_E.clone()
    E[..., 0] = -torch.rand(E.shape[:-1]) - 0.1  # class 0: no window anywhere with evidence
    E[..., 1] = torch.rand(E.shape[:-1]) + 0.1  # class 1: evidence everywhere
    out = a.output._replace(visual_E=E, visual_A=None if a.output.visual_A is None else E.clone())
    a = dataclasses.replace(a, output=out)
    for opts in (LocalizeOptions(snap=False), LocalizeOptions(snap=False, box_mode="window")):
        assert all(per == [] for per in frame_boxes(a, 0, opts))
        assert all(len(per) == 1 for per in frame_boxes(a, 1, opts))
    seen = ClassifyOptions(visual_threshold=-1e9)  # both classes seen: only the evidence rule can drop a box
    res = localize_from_analysis(Path(clips["av"]), a, loaded, LocalizeOptions(labels=tuple(labels[:2]), snap=False,
                                                                               classify=seen))
    assert res.visual[labels[0]] == () and len(res.visual[labels[1]]) == len(a.visual.times)
    # evaluate scores the same boxes: class 0's frames count, each without a box (a miss)
    gt = {"clip": "av", "duration": a.info.duration, "events": [
        {"class": lab, "mode": "sync", "audio": None,
         "visual": {"interval": [0.0, a.info.duration],
                    "frames": [{"t": float(t), "box": [0.0, 0.0, 8.0, 8.0]} for t in a.visual.times]}}
        for lab in labels[:2]]}
    (tmp_path / "labels.csv").write_text(f"clip,labels\n{clips['av']},{labels[0]};{labels[1]}\n")
    (tmp_path / "ground_truth.jsonl").write_text(json.dumps(gt) + "\n")
    monkeypatch.setattr(evaluate_module, "analyse", lambda *args, **kw: a)
    report = evaluate_module.evaluate(loaded, tmp_path / "labels.csv", localize=LocalizeOptions(snap=False))
    by = report.localization.classes
    assert by[labels[0]].n == len(a.visual.times) and by[labels[0]].pointing_accuracy == 0.0
    assert by[labels[1]].n == len(a.visual.times)


def test_noise_stress_scores_the_events_of_each_noisy_version(monkeypatch: pytest.MonkeyPatch, clips: dict) -> None:
    """SED per noise condition, from hand-made events: white keeps both sounding seconds, crowd one."""
    from types import SimpleNamespace

    import torch

    import avscene.tasks.localize as localize_module
    import avscene.evaluation.noise_stress as ns
    from avscene.results import Event
    from avscene.evaluation.metrics.avvp import clip_parse
    from avscene.evaluation.metrics.sed import segment_activity

    conds = (ns.NoiseCondition("white", 0.0), ns.NoiseCondition("crowd", 0.0))
    versions = ("clean", "white", "crowd")
    monkeypatch.setattr(ns, "analyse_variants", lambda path, loaded, variants: [
        SimpleNamespace(tag=v, output=SimpleNamespace(scores=torch.tensor([1.0, -1.0]))) for v in versions])
    heard = {"white": [Event("a", 0.0, 2.0)], "crowd": [Event("a", 0.0, 1.0)]}
    monkeypatch.setattr(localize_module, "localize_from_analysis",
                        lambda path, a, loaded, opts: SimpleNamespace(events=heard[a.tag], timing={}))
    stress = ns.NoiseStress(conds, ("a", "b"), 0.0, pure_noise_clips=0)
    stress.analyse(clips["av"], "00000", SimpleNamespace(preprocess=SimpleNamespace(sample_rate=16000)))
    ref = segment_activity([(0.0, 2.0, "a")], class_names=("a", "b"), duration=2.0)
    truth = clip_parse({0: [[0.0, 2.0]]}, {}, num_classes=2, duration=2.0)
    stress.add_events(Path(clips["av"]), None, None, ref, truth, duration=2.0, to_parse=lambda *a, **k: truth)
    rows = {c.family: c for c in stress.report(np.array([[1, 0]], bool), np.array([[1, 0]], bool)).conditions}
    assert rows["white"].sed.f1 == pytest.approx(1.0)
    assert rows["crowd"].sed.f1 == pytest.approx(2 / 3)  # 1 of 2 segments: precision 1, recall 1/2
    assert rows["all"].sed.f1 == pytest.approx(6 / 7)  # pooled: 3 of 4 segments
    assert rows["crowd"].to_json()["sed_f1"] == pytest.approx(2 / 3)
    assert rows["crowd"].to_json()["sed_classes"]["a"] == pytest.approx(2 / 3)
    assert rows["white"].avvp.segment.audio == pytest.approx(1.0)


def test_calibrate_events_on_clean_splices_keeps_today_s_rule_and_records_it(tmp_path: Path, capsys) -> None:
    """Without perturbed versions the consistency reference is today's rule's own events (less those in
    the wrong part), which only a rule deciding alike reproduces best: the choice must be that rule,
    written where localize reads it. The model hears class x in every window of every clip."""
    import torch

    from avscene.cli.app import main
    from avscene.checkpoint.format import read_config
    from avscene.checkpoint.load import load_pretrained, save_pretrained
    from avscene.tasks.localize import LocalizeOptions, resolve_event_rule
    from avscene.testing.media import write_video
    from avscene.testing.models import tiny_model, tiny_preprocess
    from avscene.train.event_calibration import DEFAULT_RULE, calibrate_events

    net = tiny_model(3, seed=0)
    with torch.no_grad():
        net.audio_head.cls.bias[:] = torch.tensor([6.0, -6.0, -6.0])
        net.visual_head.cls.bias[:] = torch.tensor([3.0, -6.0, -6.0])
    (tmp_path / "clips").mkdir()
    rows = ["clip,labels"]
    for i in range(4):
        write_video(tmp_path / "clips" / f"{i:05d}.mp4", duration=2.0, freq=300.0 + 150 * i)
        rows.append(f"{i:05d},{'xy'[i % 2]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    model = save_pretrained(net, tmp_path / "model", labels=["x", "y", "z"], preprocess=tiny_preprocess(),
                            training={"manifest": str(tmp_path / "labels.csv"), "val_split": 1.0, "seed": 0})
    before = (model / "config.json").read_text()
    assert main(["calibrate", str(model), "--dry-run", "--events"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (model / "config.json").read_text() == before and shown["events"]["written"] is None
    res = calibrate_events(model, augment=False)
    assert res.n_splices == 4 and res.criterion == "consistency"
    # x sounds everywhere by today's rule: right in its own part, a false alarm in the other one
    assert 0 < res.figure_default < 1
    assert res.rule == DEFAULT_RULE and res.figure_after == pytest.approx(res.figure_default)
    assert resolve_event_rule(LocalizeOptions(), load_pretrained(str(model)).config) == DEFAULT_RULE
    assert read_config(model)["model"]["event_low"] == -0.5


def test_snapping_on_the_kept_frames_gives_what_decoding_again_gives(tiny_model_dir: Path, clips: dict) -> None:
    from avscene.checkpoint.load import load_pretrained
    from avscene.tasks._pipeline import analyse
    from avscene.tasks.localize import snap_boxes

    loaded = load_pretrained(str(tiny_model_dir))
    kept = analyse(clips["av"], loaded, keep_frames=True)
    assert kept.frames is not None and len(kept.frames) == len(kept.visual.times)
    assert analyse(clips["av"], loaded).frames is None  # not asked: nothing held
    assert analyse(clips["av"], loaded, keep_frames=True, chunk_seconds=1.0).frames is None  # several chunks
    pre = loaded.preprocess
    chosen = {0: [[(np.array([10.0, 4.0, 52.0, 44.0]), 1.0)] for _ in kept.visual.times]}  # around the red box
    again = snap_boxes(clips["av"], kept.visual.times, chosen, fps=pre.fps, offset=pre.frame_offset)
    on_kept = snap_boxes(clips["av"], kept.visual.times, chosen, fps=pre.fps, offset=pre.frame_offset,
                         frames=kept.frames)
    assert [[b.tolist() for b, _ in per] for per in on_kept[0]] == [[b.tolist() for b, _ in per] for per in again[0]]
    assert any(not np.allclose(b, chosen[0][0][0][0]) for per in again[0] for b, _ in per)  # it did snap
