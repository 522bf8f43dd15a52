"""Per-modality decisions (heard / seen) and the per-second parse they gate, on real and generated media."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avscene.results import LocalizeResult
from avscene.tasks.classify import ClassifyOptions
from avscene.tasks.localize import LocalizeOptions, localize_file

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "clips"
BUNDLED = Path(__file__).resolve().parent.parent / "models" / "avscene-av-small"


def _check_consistent(r: LocalizeResult, n_classes: int) -> None:
    """The parse's invariants: every class decided, and the timing follows the decisions."""
    c = r.classification
    parse = {p.label: p for p in c.parse}
    assert len(c.parse) == n_classes
    limits = c.modality_thresholds
    for p in c.parse:
        assert p.predicted == (p.label in c.predicted)
        # heard: above the calibrated threshold, or predicted with a positive audio share (hinge base 0)
        if p.audio_score is not None:
            assert p.heard == (p.audio_score > limits["audio"] or (p.predicted and p.audio_score > 0))
        if p.visual_score is not None:
            assert p.seen == (p.visual_score > limits["visual"] or (p.predicted and p.visual_score > 0))
        if p.heard or p.seen or p.predicted:
            assert p.label in r.timing  # reported
    for lab, t in r.timing.items():
        events = [(e.onset, e.offset) for e in r.events if e.label == lab]
        # a heard class has events; a class neither heard nor predicted has none (a predicted class
        # that the audio decision does not hear may have events where its windows clear the threshold)
        if parse[lab].heard:
            assert t.heard
        if not (parse[lab].heard or parse[lab].predicted):
            assert not t.heard
        assert list(t.heard) == events
        assert bool(t.seen) == parse[lab].seen
        times = [d.t for d in r.visual.get(lab, ())]
        assert all(any(on <= x < off for on, off in t.seen) for x in times)  # boxes only where it is seen
        if parse[lab].seen and parse[lab].visual_score > 0:  # seen with some visual evidence: boxes there
            assert r.visual[lab]
            assert all(any(on <= x < off for x in times) for on, off in t.seen)
        # both = heard ∩ seen, checked pointwise on a 10-ms grid
        for k in range(int(c.duration * 100)):
            x = (k + 0.5) / 100
            inside = lambda ivs: any(a <= x < b for a, b in ivs)  # noqa: E731
            assert inside(t.both) == (inside(t.heard) and inside(t.seen))
    js = r.to_json()
    assert [p["label"] for p in js["parse"]] == [p.label for p in c.parse]
    assert set(js["timing"][next(iter(r.timing))]) == {"heard", "seen", "both", "overlap"} if r.timing else True


@pytest.fixture(scope="module")
def bundled():
    if not (BUNDLED / "config.json").is_file():
        pytest.skip("bundled model not present")
    from avscene.checkpoint.load import load_pretrained

    return load_pretrained(str(BUNDLED))


@pytest.mark.parametrize("clip", sorted(p.name for p in EXAMPLES.glob("*.mp4")))
def test_bundled_model_parse_of_the_example_clips(bundled, clip: str) -> None:
    r = localize_file(EXAMPLES / clip, bundled)
    _check_consistent(r, len(bundled.labels))
    # the async (l2-sum) fused score is the sum of the two modality scores
    for p in r.classification.parse:
        assert p.score == pytest.approx(p.audio_score + p.visual_score, abs=1e-4)
    # the clips are named after their classes: each is heard or seen
    named = [lab for lab in bundled.labels if lab in clip]
    parse = {p.label: p for p in r.classification.parse}
    assert named and all(parse[lab].heard or parse[lab].seen for lab in named)


def test_generated_media_every_threshold_extreme(tiny_model_dir: Path, clips: dict) -> None:
    from avscene.checkpoint.load import load_pretrained

    loaded = load_pretrained(str(tiny_model_dir))
    n = len(loaded.labels)
    for a_t, v_t in ((-1e9, 1e9), (1e9, -1e9), (None, None)):
        opts = LocalizeOptions(classify=ClassifyOptions(audio_threshold=a_t, visual_threshold=v_t))
        r = localize_file(clips["av"], loaded, opts)
        _check_consistent(r, n)
        if a_t == -1e9:  # all heard, none seen: every class reported with audio events only
            assert set(r.timing) == set(loaded.labels)
            assert all(t.heard and not t.seen and not t.both for t in r.timing.values())
        if v_t == -1e9:
            assert set(r.timing) == set(loaded.labels)
            assert all(t.seen and not t.heard for t in r.timing.values())
    # a file without audio: no audio score, nothing heard
    r = localize_file(clips["video_only"], loaded, LocalizeOptions(
        classify=ClassifyOptions(audio_threshold=-1e9, visual_threshold=-1e9)))
    _check_consistent(r, n)
    assert all(p.audio_score is None and not p.heard and p.seen for p in r.classification.parse)
    assert json.loads(json.dumps(r.to_json()))["parse"][0]["audio"] is None


def test_modality_thresholds_in_the_config_are_validated_with_defaults() -> None:
    from avscene.errors import ConfigError
    from avscene.nn.model import ModelConfig

    assert ModelConfig(num_classes=3).modality_threshold("audio") == 0.0  # hinge: the sign
    assert ModelConfig(num_classes=3, variant="wsddn").modality_threshold("visual") == 0.5
    cfg = ModelConfig.from_dict({"num_classes": 3, "audio_threshold": -0.25, "visual_threshold": 1})
    assert (cfg.modality_threshold("audio"), cfg.modality_threshold("visual")) == (-0.25, 1.0)
    with pytest.raises(ConfigError, match="visual_threshold"):
        ModelConfig.from_dict({"num_classes": 3, "visual_threshold": "high"})


def _calibration_fixture(tiny_model_dir: Path, tmp_path: Path, training: dict) -> tuple[Path, Path]:
    """A copy of the tiny checkpoint whose training record is ``training`` (``{csv}``: the
    manifest below), and a manifest of six clips, three ``violin`` and three ``drum``."""
    import shutil

    from avscene.checkpoint.format import read_config

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    csv = tmp_path / "labels.csv"
    csv.write_text("clip,labels\n" + "".join(f"{i:05d},{('violin', 'drum')[i % 2]}\n" for i in range(6)))
    config = read_config(model)
    config["training"] = {k: v.format(csv=csv) if isinstance(v, str) else v for k, v in training.items()}
    (model / "config.json").write_text(json.dumps(config))
    return model, csv


def test_calibrate_stores_the_thresholds_chosen_by_hand(tiny_model_dir: Path, tmp_path: Path, capsys,
                                                        monkeypatch) -> None:
    """On a hand-made score set of a known hold-out, ``calibrate`` stores the pair worked out by hand."""
    import numpy as np

    from avscene.cli.app import main
    from avscene.checkpoint.load import load_pretrained
    from avscene.train import calibrate

    # the run validated on val.csv (classes violin, drum, car): c0 violin, c1 violin, c2 drum, c3 car
    model, _ = _calibration_fixture(tiny_model_dir, tmp_path, {"val_manifest": str(tmp_path / "val.csv")})
    (tmp_path / "val.csv").write_text("clip,labels\nc0,violin\nc1,violin\nc2,drum\nc3,car\n")
    assert load_pretrained(str(model)).config.audio_threshold is None  # uncalibrated: (0, 0)
    n = -3.0  # below the whole grid: never heard / seen
    audio = {"c0": [0.4, n, n], "c1": [n, n, n], "c2": [-0.5, 0.9, n], "c3": [n, 0.18, n]}
    visual = {"c0": [n, n, 0.47], "c1": [0.62, n, n], "c2": [n, n, n], "c3": [0.3, n, 0.7]}
    scored = []

    def hand_made(loaded, held, progress=None):
        scored.extend(e.path.stem for e in held)
        rows = [e.path.stem for e in held]
        return (np.array([audio[r] for r in rows]), np.array([visual[r] for r in rows]),
                np.full((len(rows), 3), n))  # fused: nothing predicted

    monkeypatch.setattr(calibrate, "holdout_modality_scores", hand_made)
    before = (model / "config.json").read_text()
    assert main(["calibrate", str(model), "--dry-run"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (model / "config.json").read_text() == before and shown["written"] is None
    # Every decision right ("heard OR seen" = the labels) needs: violin heard in c0 (0.4) and not
    # c2 (-0.5), drum heard in c2 (0.9) and not c3 (0.18): 0.18 <= t_audio < 0.4; violin seen in
    # c1 (0.62) and not c3 (0.3), car seen in c3 (0.7) and not c0 (0.47): 0.47 <= t_visual < 0.62.
    # The grid pair of that box closest to (0, 0): (0.2, 0.5).
    assert (shown["audio_threshold"], shown["visual_threshold"]) == (0.2, 0.5)
    # at (0, 0): TP c0 violin, c1 violin, c2 drum, c3 car; FP c3 drum, c3 violin, c0 car -> 8 / 11
    assert shown["f1_before"] == pytest.approx(8 / 11) and shown["f1_after"] == 1.0
    assert shown["fused_f1"] == 0.0 and shown["n_clips"] == 4
    res = calibrate.calibrate_modalities(model)
    assert res.written == str(model / "config.json")
    cfg = load_pretrained(str(model)).config
    assert (cfg.audio_threshold, cfg.visual_threshold) == (0.2, 0.5)
    assert scored == ["c0", "c1", "c2", "c3"] * 2  # the run's hold-out, and only it


def test_calibrate_dry_run_conditions_the_modalities_on_the_threshold_it_chose(
        tiny_model_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """``calibrate --threshold POOLS --dry-run`` stores no fused threshold, yet the heard / seen
    choice that follows must use the one it chose (what a real run would store), not the old one."""
    import numpy as np

    from avscene.cli.app import main
    from avscene.train import calibrate

    model, _ = _calibration_fixture(tiny_model_dir, tmp_path, {"val_manifest": str(tmp_path / "val.csv")})
    (tmp_path / "val.csv").write_text("clip,labels\nc0,violin\nc1,violin\nc2,drum\nc3,drum\n")
    # one class matters (violin): clip 0 violin, faintly heard (0.1) and fused 0.5; clip 1 violin, seen
    # only (0.6); clips 2 and 3 no violin, a middling visual (0.4) or audio (0.2) score; fused 0.5 /
    # -0.5 / -0.5 / -0.5. Every other class: -3 everywhere, except drum heard at 2 in clips 2 and 3.
    n = -3.0
    audio = {"c0": [0.1, n, n], "c1": [-1.0, n, n], "c2": [-1.0, 2.0, n], "c3": [0.2, 2.0, n]}
    visual = {"c0": [-1.0, n, n], "c1": [0.6, n, n], "c2": [0.4, n, n], "c3": [-1.0, n, n]}
    fused = {"c0": [0.5, n, n], "c1": [-0.5, n, n], "c2": [-0.5, n, n], "c3": [-0.5, n, n]}

    def hand_made(loaded, held, progress=None):
        rows = [e.path.stem for e in held]
        return tuple(np.array([d[r] for r in rows]) for d in (audio, visual, fused))

    monkeypatch.setattr(calibrate, "holdout_modality_scores", hand_made)
    monkeypatch.setattr(calibrate, "calibrate_fused", lambda *a, write, **k: calibrate.FusedCalibration(
        threshold=0.0, previous=1.0, pools="robust", n_inputs=4, f1_before=0.0, f1_after=1.0, written=None))
    from avscene.checkpoint.load import load_pretrained

    calibrate.store_thresholds(model, threshold=1.0)  # the checkpoint's fused threshold: clip 0 not predicted
    assert load_pretrained(str(model)).config.decision_threshold == 1.0
    cfg_before = (model / "config.json").read_text()
    assert main(["calibrate", str(model), "--threshold", "robust", "--dry-run"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (model / "config.json").read_text() == cfg_before
    # At the chosen threshold 0, clip 0 is predicted (0.5 > 0) and counts as heard with 0.1 > base 0
    # whatever t_audio: perfect for t_audio >= 0.2 (clip 3 out) and 0.4 <= t_visual < 0.6 -> (0.2, 0.4).
    assert (shown["threshold"]["threshold"], shown["audio_threshold"], shown["visual_threshold"]) == (0.0, 0.2, 0.4)
    # At the stored 1.0 clip 0 is not predicted; the choice differs: it needs t_audio < 0.1, which lets
    # clip 3 in (TP 2, FP 1: 4/5 beats missing clip 0, 2/3): the closest such pair is (0.0, 0.4).
    res = calibrate.calibrate_modalities(model, write=False)
    assert (res.audio_threshold, res.visual_threshold) == (0.0, 0.4)


def test_calibrate_scores_the_clips_training_held_out(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Without ``val_manifest``, ``calibrate`` scores the clips ``Trainer`` validated on: the
    stratified share of the manifest that the recorded ``val_split`` and ``seed`` held out."""
    import numpy as np

    from avscene.errors import UsageError
    from avscene.train import calibrate
    from avscene.train.loop import Trainer, TrainConfig

    model, csv = _calibration_fixture(tiny_model_dir, tmp_path, {"manifest": "{csv}"})
    with pytest.raises(UsageError, match="training record lacks val_split, seed"):
        calibrate.calibrate_modalities(model)
    model, csv = _calibration_fixture(tiny_model_dir, tmp_path / "b", {"manifest": "{csv}", "val_split": 0.5,
                                                                       "seed": 3})
    scored = []

    def record(loaded, held, progress=None):
        scored.extend(held)
        return tuple(np.zeros((len(held), 3)) for _ in range(3))

    monkeypatch.setattr(calibrate, "holdout_modality_scores", record)
    res = calibrate.calibrate_modalities(model, write=False)
    # round(3 * 0.5) = 2 clips of each label set
    assert res.n_clips == 4 and sorted(e.labels for e in scored) == [("drum",)] * 2 + [("violin",)] * 2
    trainer = Trainer(TrainConfig(manifest=str(csv), output=str(tmp_path / "run"), val_split=0.5, seed=3,
                                  cache_dir=str(tmp_path / "cache")))
    assert scored == trainer.val_ex


def test_calibration_scores_are_the_classify_pipelines(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The scores ``calibrate`` tunes on are those ``classify`` decides with (its parse)."""
    import numpy as np

    from avscene.checkpoint.load import load_pretrained
    from avscene.tasks.classify import classify_file
    from avscene.testing.media import write_video
    from avscene.train.calibrate import holdout_modality_scores
    from avscene.train.data import Example

    loaded = load_pretrained(str(tiny_model_dir))
    held = []
    for i in range(2):
        write_video(tmp_path / f"{i}.mp4", duration=2.0, freq=300.0 + 150 * i)
        held.append(Example(tmp_path / f"{i}.mp4", ("violin",)))
    done = []
    audio, visual, fused = holdout_modality_scores(loaded, held, lambda d, n: done.append((d, n)))
    assert done == [(1, 2), (2, 2)]
    parses = [classify_file(e.path, loaded).parse for e in held]
    assert np.allclose(audio, [[p.audio_score for p in ps] for ps in parses], atol=1e-6)
    assert np.allclose(visual, [[p.visual_score for p in ps] for ps in parses], atol=1e-6)
    assert np.allclose(fused, [[p.score for p in ps] for ps in parses], atol=1e-6)

def test_calibrate_threshold_robust_pools_the_noisy_and_pure_noise_versions(tiny_model_dir: Path, tmp_path: Path,
                                                                            capsys, monkeypatch) -> None:
    """``calibrate --threshold robust`` scores each hold-out clip clean, under a background at 0 dB
    and as that background alone (no frames, no label), and stores the threshold a hand-made score
    set calls for; the background alone has one stream, so its decision is the heard one whatever
    the fused threshold (``ModelConfig.input_threshold``); ``clean`` keeps to the clean clips."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    import avscene.tasks._pipeline as pipeline
    from avscene.checkpoint.load import load_pretrained
    from avscene.cli.app import main
    from avscene.train import calibrate

    model, _ = _calibration_fixture(tiny_model_dir, tmp_path, {"val_manifest": str(tmp_path / "val.csv"),
                                                               "seed": 5})
    (tmp_path / "val.csv").write_text("clip,labels\nc0,violin\nc1,drum\n")
    n = -1.0
    fused = {"c0": ([0.5, n, n], [0.35, n, n], [0.18, n, n]), "c1": ([n, 0.5, n], [n, 0.4, n], [n, 0.3, n])}
    tone = (0.1 * np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000)).astype(np.float32)
    seen = []

    def fake_variants(path, loaded, variants, **kw):
        seen.append((Path(path).stem, [(v.edit(tone, 0) if v.edit else tone, v.video) for v in variants]))
        rows = fused[Path(path).stem][: len(variants)]
        return [SimpleNamespace(output=SimpleNamespace(scores=torch.tensor(r)),
                                modalities=("audio", "visual") if v.video else ("audio",))
                for r, v in zip(rows, variants)]

    monkeypatch.setattr(pipeline, "analyse_variants", fake_variants)
    monkeypatch.setattr(calibrate, "holdout_modality_scores",  # the heard / seen step that follows
                        lambda loaded, held, progress=None: tuple(np.zeros((len(held), 3)) for _ in range(3)))
    calibrate.store_thresholds(model, audio_threshold=0.25)  # heard above 0.25; the fused threshold unset (0)
    before = (model / "config.json").read_text()
    assert main(["calibrate", str(model), "--threshold", "robust", "--dry-run"]) == 0
    shown = json.loads(capsys.readouterr().out)["threshold"]
    assert (model / "config.json").read_text() == before and shown["written"] is None
    # The pure noise is decided at the heard threshold 0.25: c0's (violin 0.18) is no alarm and c1's
    # (drum 0.3) is one at every fused threshold. The clean and noisy clips are all right for
    # -1 <= t < 0.35 (c0's noisy violin): 4 TP, 1 FP -> F1 8 / 9 there, and the grid value closest to 0
    # is 0 itself. (Compared with the fused threshold, the pure noise would ask for 0.3 <= t < 0.35.)
    assert shown["threshold"] == 0.0 and shown["n_inputs"] == 6 and shown["pools"] == "robust"
    assert shown["f1_before"] == pytest.approx(8 / 9) and shown["f1_after"] == pytest.approx(8 / 9)
    power = float(np.mean(tone.astype(np.float64) ** 2))
    for clip, versions in seen[:2]:
        (clean, v0), (noisy, v1), (pure, v2) = versions
        assert (v0, v1, v2) == (True, True, False)  # pure noise leaves the frames out
        added = noisy.astype(np.float64) - clean
        assert 10 * np.log10(power / np.mean(added ** 2)) == pytest.approx(0.0, abs=0.05)  # 0 dB over the clip
        assert np.sqrt(np.mean(pure.astype(np.float64) ** 2)) == pytest.approx(np.sqrt(power), rel=0.02)
    assert not np.allclose(seen[0][1][2][0], seen[1][1][2][0])  # each clip its own background
    seen.clear()
    assert main(["calibrate", str(model), "--threshold", "clean"]) == 0
    shown = json.loads(capsys.readouterr().out)["threshold"]
    assert [len(v) for _, v in seen[:2]] == [1, 1] and shown["n_inputs"] == 2
    assert shown["threshold"] == 0.0  # clean only: [-1, 0.35) holds the paper's 0
    assert load_pretrained(str(model)).config.decision_threshold == 0.0
    assert main(["calibrate", str(model), "--threshold", "loud"]) != 0
