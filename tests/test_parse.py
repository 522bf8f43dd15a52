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


def test_calibrate_reproduces_the_holdout_and_stores_the_thresholds(tiny_model_dir: Path, tmp_path: Path,
                                                                      capsys) -> None:
    import shutil

    import numpy as np

    from avscene.cli.app import main
    from avscene.errors import UsageError
    from avscene.checkpoint.format import read_config
    from avscene.checkpoint.load import load_pretrained
    from avscene.tasks.classify import classify_file
    from avscene.testing.media import write_video
    from avscene.train.calibrate import best_modality_thresholds
    from avscene.train.data import read_manifest
    from avscene.train.loop import split_examples
    from avscene.train.recalibrate import calibrate_modalities

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    names = list(load_pretrained(str(model)).labels)
    (tmp_path / "clips").mkdir()
    rows = ["clip,labels"]
    for i in range(6):
        write_video(tmp_path / "clips" / f"{i:05d}.mp4", duration=2.0, freq=300.0 + 150 * i)
        rows.append(f"{i:05d},{names[i % 2]}")
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    with pytest.raises(UsageError, match="training record lacks val_split, seed"):  # an untrained checkpoint
        calibrate_modalities(model, csv)
    config = read_config(model)
    config["training"] = {"manifest": str(csv), "val_split": 0.5, "seed": 3}
    (model / "config.json").write_text(json.dumps(config))
    before = (model / "config.json").read_text()
    assert main(["calibrate", str(model), "--dry-run"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (model / "config.json").read_text() == before and shown["written"] is None
    res = calibrate_modalities(model)
    # the hold-out is the training run's: split_examples with the recorded fraction and seed
    _, held = split_examples(read_manifest(csv), 0.5, 3)
    assert res.n_clips == len(held) == 4  # round(3 * 0.5) = 2 of each label set
    # the thresholds are the best pair for the classify pipeline's modality scores of those clips
    loaded = load_pretrained(str(model))  # reloaded: the thresholds are now in config.json
    parses = [classify_file(e.path, loaded).parse for e in held]
    audio = np.array([[p.audio_score for p in ps] for ps in parses])
    visual = np.array([[p.visual_score for p in ps] for ps in parses])
    pred = np.array([[p.predicted for p in ps] for ps in parses])
    y = np.array([[lab in e.labels for lab in names] for e in held])
    assert (res.audio_threshold, res.visual_threshold) == best_modality_thresholds(audio, visual, y, default=0.0,
                                                                                   predicted=pred)
    assert loaded.config.audio_threshold == res.audio_threshold
    assert loaded.config.visual_threshold == res.visual_threshold
    assert shown["audio_threshold"] == res.audio_threshold
