"""Noise stress in ``evaluate``: the audio the pipeline sees, the scores, the CLI's JSON."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from avscene.dsp import noise as bank
from avscene.errors import UsageError
from avscene.evaluation import noise_stress as ns

SR = 16000


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


# --------------------------------------------------------------------------- parsing


def test_parse_noise_specs_expands_heldout_defaults_to_0_db_and_drops_duplicates():
    got = ns.parse_noise_specs(["heldout", "crowd:10", "crowd:10", "white:-5.5"])
    held = [ns.NoiseCondition(f, 0.0) for f in bank.HELDOUT_FAMILIES]
    assert list(got) == held + [ns.NoiseCondition("crowd", 10.0), ns.NoiseCondition("white", -5.5)]


@pytest.mark.parametrize("spec,match", [("siren:0", "unknown noise family 'siren'"), ("crowd:loud", "number of dB"),
                                        ("crowd:nan", "number of dB"), ("crowd:inf", "number of dB")])
def test_parse_noise_specs_rejects_bad_specs(spec, match):
    with pytest.raises(UsageError, match=match):
        ns.parse_noise_specs([spec])


# --------------------------------------------------------------------------- the audio the pipeline sees


@pytest.fixture
def bag_spy(monkeypatch):
    """Every AudioBagStream's pushed audio, per stream, in the order the streams were first fed."""
    from avscene.proposals.bags import AudioBagStream

    seen: dict[int, list[np.ndarray]] = {}
    alive: list[AudioBagStream] = []  # kept, so that no later stream reuses an id
    push = AudioBagStream.push

    def spy(self, audio):
        if id(self) not in seen:
            alive.append(self)
        seen.setdefault(id(self), []).append(np.array(audio, dtype=np.float64))
        return push(self, audio)

    monkeypatch.setattr(AudioBagStream, "push", spy)
    return seen


def _manifest(tmp_path: Path, names: list[str], n: int = 2) -> Path:
    from avscene.testing.media import write_video

    (tmp_path / "clips").mkdir()
    rows = ["clip,labels"]
    for i in range(n):
        write_video(tmp_path / "clips" / f"{i:05d}.mp4", duration=2.0, size=(64, 48), freq=300.0 + 200 * i)
        rows.append(f"{i:05d},{names[i % len(names)]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "labels.csv"


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_evaluate_adds_each_family_at_the_asked_snr_and_pure_noise_at_the_clip_level(tiny_model_dir, tmp_path,
                                                                                      bag_spy):
    from avscene.checkpoint.load import load_pretrained
    from avscene.evaluation.evaluate import evaluate

    loaded = load_pretrained(str(tiny_model_dir))
    manifest = _manifest(tmp_path, list(loaded.labels), n=2)  # two clips of the same length
    conditions = (ns.NoiseCondition("white", 0.0), ns.NoiseCondition("white", 10.0),
                  ns.NoiseCondition("crowd", 10.0))
    rep = evaluate(loaded, manifest, noise=conditions)
    streams = [np.concatenate(parts) for parts in bag_spy.values()]
    per_clip = 1 + 3 + 2  # clean, one per condition, pure noise of each family
    assert len(streams) == 2 * per_clip
    clips = [streams[k * per_clip:(k + 1) * per_clip] for k in range(2)]
    added = []
    for clean, *noisy_and_pure in clips:
        noisy, pure = noisy_and_pure[:3], dict(zip(("white", "crowd"), noisy_and_pure[3:]))
        add = [audio - clean for audio in noisy]
        added.append(add)
        for c, a in zip(conditions, add):  # the SNR measured on what the pipeline saw is the one asked
            assert 10 * np.log10(_power(clean) / _power(a)) == pytest.approx(c.snr_db, abs=0.02)
            assert abs(_corr(a, clean)) < 0.1  # noise, not the clip
        # one family at two SNRs: the same noise at two levels, 10 dB apart
        assert _corr(add[0], add[1]) > 0.9999
        assert 10 * np.log10(_power(add[0]) / _power(add[1])) == pytest.approx(10.0, abs=0.02)
        assert abs(_corr(add[0], add[2])) < 0.1  # another family: another noise
        for family, a in (("white", add[0]), ("crowd", add[2])):  # pure: that noise alone, at the clip's RMS
            assert _power(pure[family]) == pytest.approx(_power(clean), rel=1e-3)
            assert _corr(pure[family], a) > 0.9999
    # the noise depends on the clip: two clips of one length get different white noise
    assert abs(_corr(added[0][0], added[1][0])) < 0.1 and abs(_corr(added[0][2], added[1][2])) < 0.1
    # and on nothing else: a second evaluation feeds the pipeline exactly the same audio
    bag_spy.clear()
    again = evaluate(loaded, manifest, noise=conditions)
    assert all(np.array_equal(x, y) for x, y in zip(streams, [np.concatenate(p) for p in bag_spy.values()]))
    assert again.noise_stress.to_json() == rep.noise_stress.to_json()
    assert [c.family for c in rep.noise_stress.conditions][:3] == ["white", "white", "crowd"]
    assert [p.family for p in rep.noise_stress.pure_noise] == ["white", "crowd"]


def test_sharing_the_frames_across_variants_changes_no_score(tiny_model_dir, clips):
    from avscene.checkpoint.load import load_pretrained
    from avscene.tasks._pipeline import AudioVariant, analyse, analyse_variants

    loaded = load_pretrained(str(tiny_model_dir))
    alone = analyse(clips["av"], loaded)
    assert alone.output.visual_scores is not None  # the frames count in this check
    same, loud, audio_only = analyse_variants(clips["av"], loaded, [
        AudioVariant(edit=lambda a, start: a.copy()), AudioVariant(edit=lambda a, start: 4 * a),
        AudioVariant(video=False)])
    assert torch.equal(same.output.scores, alone.output.scores)
    assert torch.equal(loud.output.visual_scores, alone.output.visual_scores)  # frames: the same features
    assert not torch.equal(loud.output.audio_scores, alone.output.audio_scores)  # audio: its own
    assert audio_only.output.visual_scores is None and audio_only.visual is None
    assert torch.equal(audio_only.output.audio_scores, alone.output.audio_scores)


# --------------------------------------------------------------------------- scores


def test_false_positive_rate_counts_only_the_clips_without_the_class():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0], [1, 0, 1]], bool)
    p = np.array([[1, 1, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [1, 1, 1]], bool)
    # class 0: clips 2, 3 lack it, clip 2 predicts it -> 1/2; clips 0, 1, 4 predict it but have it
    # class 1: clips 0, 2, 4 lack it, clips 0 and 4 predict it -> 2/3
    # class 2: clips 0-3 lack it, clip 1 predicts it -> 1/4
    assert ns.false_positive_rates(y, p) == pytest.approx([0.5, 2 / 3, 0.25])
    every = np.ones((3, 1), bool)
    assert np.isnan(ns.false_positive_rates(every, every)[0])  # no clip without the class: undefined
    s = ns.condition_scores("white", 0.0, y, p, ["a", "b", "c"])
    assert s.fp_rate == pytest.approx({"a": 0.5, "b": 2 / 3, "c": 0.25})
    assert s.max_fp_rate == pytest.approx(2 / 3) and s.worst_class() == "b"
    # TP 6 (0a 1a 1b 3b 4a 4c), FP 4 (0b 1c 2a 4b), FN 0: F1 = 12 / 16
    assert s.micro_f1 == pytest.approx(12 / 16)


def test_pure_noise_fraction_counts_clips_with_any_label():
    p = np.array([[0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]], bool)
    r = ns.pure_noise_scores("crowd", p, ["a", "b", "c"])
    assert r.any_label == pytest.approx(2 / 5) and r.n_clips == 5
    assert r.label_counts == {"a": 1, "b": 2}


def test_report_scores_hand_made_predictions_per_condition_pooled_and_pure(monkeypatch, clips):
    """NoiseStress with the network replaced by given scores: each version's predictions land in its row."""
    names = ("a", "b")
    conds = (ns.NoiseCondition("white", 0.0), ns.NoiseCondition("crowd", 0.0))
    # per clip: scores of clean, white, crowd, pure white, pure crowd (threshold 0)
    plan = [[[1, -1], [1, 1], [1, -1], [-1, 1], [-1, -1]],
            [[-1, 1], [1, 1], [-1, 1], [-1, -1], [-1, -1]],
            [[-1, -1], [-1, 1], [-1, -1], [-1, -1], [1, -1]]]
    calls = []

    def fake(path, loaded, variants):
        calls.append([v.video for v in variants])
        rows = plan[len(calls) - 1][:len(variants)]
        return [SimpleNamespace(output=SimpleNamespace(scores=torch.tensor(r, dtype=torch.float32))) for r in rows]

    monkeypatch.setattr(ns, "analyse_variants", fake)
    loaded = SimpleNamespace(preprocess=SimpleNamespace(sample_rate=SR))
    stress = ns.NoiseStress(conds, names, 0.0, pure_noise_clips=2)
    for i in range(3):
        stress.analyse(clips["av"], f"{i:05d}", loaded)
    assert calls == [[True, True, True, False, False]] * 2 + [[True, True, True]]  # pure noise: first 2 clips
    y = np.array([[1, 0], [0, 1], [0, 0]], bool)
    rep = stress.report(y, np.array([[1, 0], [0, 1], [0, 0]], bool))
    rows = {c.family: c for c in rep.conditions}
    assert rows["white"].fp_rate == pytest.approx({"a": 1 / 2, "b": 1.0})  # a: clips 1, 2 lack it; b: 0, 2
    assert rows["crowd"].fp_rate == pytest.approx({"a": 0.0, "b": 0.0})
    assert rows["all"].fp_rate == pytest.approx({"a": 1 / 4, "b": 2 / 4}) and rows["all"].n_clips == 6
    assert rows["crowd"].micro_f1 == pytest.approx(1.0) and rep.clean.micro_f1 == pytest.approx(1.0)
    pure = {p.family: p for p in rep.pure_noise}
    assert pure["white"].any_label == pytest.approx(1 / 2) and pure["white"].n_clips == 2
    assert pure["crowd"].any_label == 0.0


def test_pure_noise_is_decided_at_the_heard_threshold(monkeypatch, clips):
    """Without a ``--threshold``, each version is decided at its streams' threshold: the noisy clip
    (audio and frames) at the fused one, the pure noise (audio alone) at the heard one."""
    from avscene.nn.model import ModelConfig

    names = ("a", "b")
    conds = (ns.NoiseCondition("white", 0.0),)
    rows = [[1.0, -1.0], [0.3, 0.6], [0.3, 0.6]]  # clean, white at 0 dB, pure white

    def fake(path, loaded, variants):
        return [SimpleNamespace(output=SimpleNamespace(scores=torch.tensor(r)),
                                modalities=("audio", "visual") if v.video else ("audio",))
                for r, v in zip(rows, variants)]

    monkeypatch.setattr(ns, "analyse_variants", fake)
    cfg = ModelConfig(num_classes=2, threshold=0.0, audio_threshold=0.5, visual_threshold=0.2)
    loaded = SimpleNamespace(preprocess=SimpleNamespace(sample_rate=SR), config=cfg)
    stress = ns.NoiseStress(conds, names, None)
    stress.analyse(clips["av"], "00000", loaded)
    rep = stress.report(np.array([[0, 0]], bool), np.array([[1, 0]], bool))  # labels: none
    noisy = {c.family: c for c in rep.conditions}["white"]
    assert noisy.fp_rate == pytest.approx({"a": 1.0, "b": 1.0})  # fused threshold 0: both 0.3 and 0.6 predicted
    pure = rep.pure_noise[0]
    assert pure.label_counts == {"b": 1}  # heard threshold 0.5: 0.6 an alarm, 0.3 not


# --------------------------------------------------------------------------- CLI


def test_cli_writes_the_noise_stress_section(tiny_model_dir, tmp_path):
    from avscene.cli.app import main

    from avscene.checkpoint.load import load_pretrained

    manifest = _manifest(tmp_path, list(load_pretrained(str(tiny_model_dir)).labels), n=2)
    out = tmp_path / "eval.json"
    code = main(["evaluate", str(manifest), "--model", str(tiny_model_dir), "--offline", "--add-noise", "white:5",
                 "--add-noise", "brown:5", "--pure-noise-clips", "1", "--json-out", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())["noise_stress"]
    assert [(c["family"], c["snr_db"], c["n_clips"]) for c in doc["conditions"]] == [
        ("white", 5.0, 2), ("brown", 5.0, 2), ("all", 5.0, 4)]
    assert [(p["family"], p["n_clips"]) for p in doc["pure_noise"]] == [("white", 1), ("brown", 1)]
    assert set(doc["clean"]["fp_rate"]) == set(load_pretrained(str(tiny_model_dir)).labels)


def test_cli_refuses_a_bad_noise_spec_before_loading_any_model(tmp_path, capsys):
    from avscene.cli.app import main

    code = main(["evaluate", str(tmp_path / "labels.csv"), "--model", str(tmp_path / "none"),
                 "--add-noise", "siren:0"])
    assert code == 2 and "unknown noise family 'siren'" in capsys.readouterr().err  # a usage error


def test_pure_noise_clips_without_add_noise_is_refused(tiny_model_dir, tmp_path):
    from avscene.checkpoint.load import load_pretrained
    from avscene.evaluation.evaluate import evaluate

    with pytest.raises(UsageError, match="give --add-noise too"):
        evaluate(load_pretrained(str(tiny_model_dir)), tmp_path / "labels.csv", pure_noise_clips=3)
