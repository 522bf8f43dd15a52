"""``separate --method mask``: the mask network, its weakly supervised training, and its checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from avscene.cli.app import main
from avscene.errors import CheckpointError, UsageError
from avscene.checkpoint.parts import save_mask_net
from avscene.checkpoint.format import MASK_NET_NAME
from avscene.tasks.models import load_model
from avscene.nn.masknet import MaskNet, MaskNetConfig
from avscene.separation.methods import MaskStrategy
from avscene.separation.streaming import StreamingSeparation
from avscene.testing.media import write_audio
from avscene.train.masknet import MaskNetTrainOptions, apply_mask, ideal_mask, mask_loss, snr_db, train_mask_net
from avscene.train.masknet_data import (
    MixOptions,
    MixtureSampler,
    Segment,
    TrainingPool,
    activity_runs,
    anchor_snr_db,
    keep_clean_anchors,
    mix,
    power,
)

SR = 16000


def tone(f0: float, seconds: float, rng: np.random.Generator, partials: int = 3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(0.5 ** i * np.sin(2 * np.pi * f0 * (i + 1) * t + rng.uniform(0, 2 * np.pi))
               for i in range(partials)).astype(np.float32)


def _db(x: float) -> float:
    return 10 * np.log10(x)


# --------------------------------------------------------------------------- mixing


def test_mix_gives_the_ratios_and_level_it_is_asked_for(rng) -> None:
    target = tone(440.0, 1.0, rng)
    a, b = rng.standard_normal(SR).astype(np.float32), tone(1300.0, 1.0, rng)
    m, t = mix(target, [(a, -7.0), (b, 4.0)], level_db=-23.0)
    assert m.shape == t.shape == target.shape and m.dtype == t.dtype == np.float32
    assert _db(power(m)) == pytest.approx(-23.0, abs=1e-3)
    g = np.sqrt(power(t) / power(target))  # the one gain applied to everything
    np.testing.assert_allclose(t, target * g, rtol=1e-5, atol=1e-7)
    # each interferer at its ratio: the mixture is target + ka a + kb b, all scaled by g
    ka = np.sqrt(power(target) / power(a) / 10 ** (-7.0 / 10))
    kb = np.sqrt(power(target) / power(b) / 10 ** (4.0 / 10))
    np.testing.assert_allclose(m, g * (target + ka * a + kb * b), rtol=1e-4, atol=1e-6)
    for x, ratio in ((a, -7.0), (b, 4.0), (a, 12.0)):
        m1, t1 = mix(target, [(x, ratio)], level_db=-30.0)
        assert _db(power(t1) / power(m1.astype(np.float64) - t1)) == pytest.approx(ratio, abs=1e-3)
        assert _db(power(m1)) == pytest.approx(-30.0, abs=1e-3)
    with pytest.raises(UsageError, match="silent"):
        mix(np.zeros(100, np.float32), [], level_db=-20)


def _pool(rng: np.random.Generator, seconds: float = 3.0) -> TrainingPool:
    """Clips 0-1: class "a" (440 Hz) heard 1-2 s; clips 2-3: class "b" (1300 Hz) heard 1-2 s; hum under all."""
    n = int(seconds * SR)
    audio = []
    for f0 in (440.0, 440.0, 1300.0, 1300.0):
        x = 0.1 * tone(90.0, seconds, rng, partials=1)
        x[SR:2 * SR] += tone(f0, 1.0, rng)
        audio.append(x)
    anchors = {"a": [Segment(0, SR, 2 * SR), Segment(1, SR, 2 * SR)],
               "b": [Segment(2, SR, 2 * SR), Segment(3, SR, 2 * SR)]}
    background = [Segment(k, 2 * SR, n) for k in range(4)]
    return TrainingPool(audio=audio, names=[f"c{k}" for k in range(4)], anchors=anchors, background=background)


def test_sampler_mixes_only_what_it_says_with_disjoint_labels(rng) -> None:
    pool = _pool(rng)
    opts = MixOptions(segment_seconds=0.5, other_prob=1.0, speed=0.0, eq_db=0.0)
    sampler = MixtureSampler(pool, ["a", "b", "c"], opts)
    assert sampler.classes == ["a", "b"]  # "c" has no anchor: never a target
    for _ in range(20):
        s = sampler.sample(rng)
        assert len(s.mixture) == len(s.target) == SR // 2
        assert s.parts == ("background", "b" if s.label == "a" else "a")  # never the target's own class
        assert power(s.mixture) > power(s.target) > 0
    m, t, c = sampler.batch(rng, 5)
    assert m.shape == t.shape == (5, SR // 2) and c.dtype == torch.int64 and set(c.tolist()) <= {0, 1}
    alone = MixtureSampler(pool, ["a", "b"], MixOptions(segment_seconds=0.5, background_prob=0.0,
                                                        other_prob=0.0, speed=0.0, eq_db=0.0))
    s = alone.sample(rng)
    assert s.parts == () and np.allclose(s.mixture, s.target)


def test_clean_anchors_are_those_loud_over_their_own_background(rng) -> None:
    pool = _pool(rng)  # tone (power 0.66) over a hum of power 0.005: ~21 dB
    loud = anchor_snr_db(pool.audio[0], pool.anchors["a"][0], [s for s in pool.background if s.clip == 0])
    assert loud == pytest.approx(_db((power(pool.audio[0][SR:2 * SR]) - 0.005) / 0.005), abs=0.5)
    pool.audio[1] = pool.audio[1] + 2.0 * np.sin(np.arange(len(pool.audio[1])) * 0.3).astype(np.float32)
    kept = keep_clean_anchors(pool, 6.0, min_seconds=0.5)  # clip 1's hum is now louder than its tone
    assert kept.anchors["a"] == [pool.anchors["a"][0]] and kept.anchors["b"] == pool.anchors["b"]
    assert anchor_snr_db(pool.audio[0], pool.anchors["a"][0], []) == -np.inf
    # too few clean seconds: the cleanest anchor(s) up to min_seconds are kept all the same
    assert keep_clean_anchors(pool, 40.0, min_seconds=0.5).anchors["a"] == [pool.anchors["a"][0]]
    assert keep_clean_anchors(pool, 40.0, min_seconds=1.5).anchors["a"] == pool.anchors["a"]


def test_activity_runs_find_the_active_and_the_quiet_windows() -> None:
    times = np.array([[i * 0.48, i * 0.48 + 0.96] for i in range(8)])
    scores = np.array([0.0, 0.1, 2.0, 2.5, 2.4, 0.5, 0.05, 0.0])  # active in windows 2-4
    act, quiet = activity_runs(scores, times)
    assert act == [(round(0.96 * SR), round((4 * 0.48 + 0.96) * SR))]
    assert quiet[0] == (0, round((0.48 + 0.96) * SR)) and quiet[-1][1] == round((7 * 0.48 + 0.96) * SR)
    assert activity_runs(np.full(8, 1.0), times) == ([], [])  # no contrast (a silent event): nothing


# --------------------------------------------------------------------------- loss and training


def test_loss_is_zero_exactly_at_the_ideal_mask(rng) -> None:
    from avscene.dsp.stft import stft

    a, b = tone(440.0, 1.0, rng), 0.7 * tone(1300.0, 1.0, rng)
    M, T = stft(torch.from_numpy(a + b)).abs(), stft(torch.from_numpy(a)).abs()
    ideal = ideal_mask(M, T)
    assert float(ideal.min()) >= 0 and float(ideal.max()) <= 1
    assert float(mask_loss(ideal, M, T)) == pytest.approx(0.0, abs=1e-7)
    assert float(mask_loss(torch.full_like(M, 0.5), M, T)) > 0.1
    assert float(mask_loss(torch.ones_like(M), M, T)) > float(mask_loss(ideal * 0.9, M, T))


def test_a_few_steps_of_training_separate_two_generated_tones(rng) -> None:
    torch.manual_seed(0)
    pool = _pool(rng, seconds=3.0)
    opts = MaskNetTrainOptions(steps=200, batch=8, lr=1e-2, hidden=32, blocks=2, holdout_mixtures=8,
                                 log_every=40, eval_every=200,
                                 mix=MixOptions(segment_seconds=0.5, other_prob=1.0, background_prob=0.5,
                                                snr_other=(-3.0, 3.0), speed=0.0, eq_db=0.0))
    net, summary = train_mask_net(pool, pool, ["a", "b"], opts)
    assert summary["holdout"]["n"] == 8 and not net.training
    fresh_a, fresh_b = tone(440.0, 1.0, rng), tone(1300.0, 1.0, rng)
    m, t = mix(fresh_a, [(fresh_b, 0.0)], level_db=-20.0)
    with torch.no_grad():
        est = apply_mask(net, torch.from_numpy(m[None]), torch.tensor([0]))[0].numpy()
        other = apply_mask(net, torch.from_numpy(m[None]), torch.tensor([1]))[0].numpy()
    assert snr_db(m, t) == pytest.approx(0.0, abs=0.01)  # the mixture: a at 0 dB over b
    assert snr_db(est, t) > 12.0  # the class "a" estimate
    assert snr_db(other, m - t) > 8.0  # the same network, asked for "b"
    # the inference path (``separate --method mask``) recovers the known sources too
    both, _ = MaskStrategy(net, 0)(m)
    assert snr_db(both[0], t) > 12.0 and snr_db(both[1], m - t) > 8.0


# --------------------------------------------------------------------------- inference


def _net(seed: int = 0, classes: int = 3) -> MaskNet:
    torch.manual_seed(seed)
    net = MaskNet(MaskNetConfig(num_classes=classes, hidden=16, blocks=3))
    with torch.no_grad():  # a non-trivial FiLM so the class matters
        net.film.weight.normal_(0, 0.5)
    return net.eval()


def test_mask_source_plus_residual_is_the_input_and_the_class_matters(rng) -> None:
    """The contract of the strategy with any network (here untrained); that its source is the
    right one is checked with a trained network in the training test above."""
    net = _net()
    x = (tone(440.0, 2.0, rng) + 0.3 * rng.standard_normal(2 * SR)).astype(np.float32)
    both, ranking = MaskStrategy(net, 1)(x)
    assert both.shape == (2, len(x)) and ranking is None
    np.testing.assert_allclose(both[0] + both[1], x, atol=1e-6)
    assert 0 < power(both[0]) < power(x)
    other, _ = MaskStrategy(net, 2)(x)
    assert np.abs(other[0] - both[0]).max() > 1e-3


def test_chunked_mask_separation_equals_unchunked_away_from_the_crossfades(rng) -> None:
    net = _net(1)
    assert (net.receptive_frames() * 256 + 1024) < SR  # the context fits inside a 1-s cross-fade
    x = (0.3 * rng.standard_normal(10 * SR)).astype(np.float32)
    whole, _ = MaskStrategy(net, 0)(x)
    size, overlap = 4 * SR, 64 * 256  # chunks on the frame grid (the separator aligns them itself)
    sep = StreamingSeparation(MaskStrategy(net, 0), size=size, overlap=overlap)
    out = np.concatenate([sep.push(x[i:i + 3000]) for i in range(0, len(x), 3000)] + [sep.finish()], axis=1)
    assert out.shape == (2, len(x))
    np.testing.assert_allclose(out[0] + out[1], x, atol=1e-5)
    keep = np.ones(len(x), bool)
    for a, b in sep.bounds[1:]:  # each later chunk starts with a cross-fade
        keep[a:a + overlap] = False
    assert len(sep.bounds) >= 3 and keep.sum() > len(x) // 2
    np.testing.assert_allclose(out[0][keep], whole[0][keep], atol=2e-5)
    assert np.abs(out[0][~keep] - whole[0][~keep]).max() > 1e-6  # the cuts did change something there


# --------------------------------------------------------------------------- checkpoint and CLI


def _with_separator(tiny_model_dir: Path, tmp_path: Path) -> tuple[Path, MaskNet]:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    labels = json.loads((folder / "config.json").read_text())["labels"]
    net = _net(2, classes=len(labels))
    save_mask_net(folder, net, {"steps": 0})
    return folder, net


def test_checkpoint_round_trip_is_strict(tiny_model_dir, tmp_path) -> None:
    folder, net = _with_separator(tiny_model_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["separation"]["mask"]["network"]["hidden"] == 16
    back = load_model(str(folder), device="cpu").separation.mask_net
    assert back is not None and not back.training
    for k, v in net.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v, rtol=0, atol=0)
    assert load_model(str(tiny_model_dir), device="cpu").separation.mask_net is None

    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / MASK_NET_NAME))
    tensors["out.weight"] = tensors["out.weight"][:, :8].contiguous()
    save_file(tensors, str(folder / MASK_NET_NAME))
    with pytest.raises(CheckpointError, match="out.weight"):
        load_model(str(folder), device="cpu")
    (folder / MASK_NET_NAME).unlink()
    with pytest.raises(CheckpointError, match="declares a separator"):
        load_model(str(folder), device="cpu")


def test_cli_separates_with_the_network_by_default(capsys, tiny_model_dir, tmp_path) -> None:
    folder, _ = _with_separator(tiny_model_dir, tmp_path)
    mix_file = write_audio(tmp_path / "mix.wav", duration=2.0, freq=440.0)
    out, rest = tmp_path / "violin.wav", tmp_path / "rest.wav"
    code = main(["separate", str(mix_file), "-m", str(folder), "--label", "violin", "-o", str(out),
                 "--residual", str(rest), "--json"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    rec = json.loads(stdout)[0]
    assert rec["method"] == "mask" and rec["k"] is None and rec["alpha"] == [] and rec["threshold"] is None
    x, _ = sf.read(mix_file, dtype="float32")
    s, _ = sf.read(out, dtype="float32")
    r, _ = sf.read(rest, dtype="float32")
    np.testing.assert_allclose(s + r, x, atol=1e-5)
    for i, args in enumerate((["--threshold", "0.1"], ["--method", "ncp"])):
        code = main(["separate", str(mix_file), "-m", str(folder), "--label", "violin", "-o",
                     str(tmp_path / f"ncp{i}.wav"), "--json", *args])
        stdout, err = capsys.readouterr()
        assert code == 0, err
        assert json.loads(stdout)[0]["method"] == "ncp"
    code = main(["separate", str(mix_file), "-m", str(folder), "--method", "mask", "--threshold", "0.1",
                 "--label", "violin", "-o", str(tmp_path / "bad.wav")])
    _, err = capsys.readouterr()
    assert code == 2 and "--threshold applies to --method ncp" in err


def test_ncp_output_does_not_depend_on_the_separator(tiny_model_dir, tmp_path, rng) -> None:
    from avscene.proposals.nmf import NMFOptions
    from avscene.tasks.separate import SeparateOptions, separate_audio

    folder, _ = _with_separator(tiny_model_dir, tmp_path)
    x = (tone(440.0, 3.0, rng) + 0.2 * rng.standard_normal(3 * SR)).astype(np.float32)
    opts = SeparateOptions(method="ncp", nmf=NMFOptions(k=4, max_iter=30))
    with_net = separate_audio(x, load_model(str(folder), device="cpu"), 0, opts)
    without = separate_audio(x, load_model(str(tiny_model_dir), device="cpu"), 0, opts)
    np.testing.assert_array_equal(with_net[0], without[0])
    np.testing.assert_array_equal(with_net[1], without[1])


def test_mask_method_needs_a_separator(capsys, tiny_model_dir, tmp_path) -> None:
    mix_file = write_audio(tmp_path / "mix.wav", duration=2.0, freq=440.0)
    code = main(["separate", str(mix_file), "-m", str(tiny_model_dir), "--method", "mask", "--label", "violin",
                 "-o", str(tmp_path / "x.wav")])
    _, err = capsys.readouterr()
    assert code == 2 and "train-separator" in err and not (tmp_path / "x.wav").exists()


def test_train_separator_refuses_a_detector_that_finds_no_anchor(capsys, tiny_model_dir, tmp_path, rng) -> None:
    """A randomly initialised audio network scores every window alike: no anchor, a clear error,
    and the checkpoint is left as it was."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    before = (folder / "config.json").read_text()
    rows = ["clip,labels"]
    for i, (label, f0) in enumerate((("violin", 440.0), ("drum", 300.0), ("car", 700.0)) * 4):
        x = 0.01 * rng.standard_normal(3 * SR)
        x[SR:2 * SR] += tone(f0, 1.0, rng)
        sf.write(tmp_path / f"c{i}.wav", (x / 4).astype(np.float32), SR)
        rows.append(f"c{i}.wav,{label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    code = main(["train-separator", str(folder), str(tmp_path / "labels.csv"), "--steps", "2"])
    _, err = capsys.readouterr()
    assert code == 2 and "no training clip gave an anchor" in err
    assert (folder / "config.json").read_text() == before and not (folder / MASK_NET_NAME).exists()


def test_self_training_starts_from_the_teacher_and_needs_its_shape(rng) -> None:
    pool = _pool(rng)
    mixo = MixOptions(segment_seconds=0.5, speed=0.0, eq_db=0.0)
    teacher = MaskNet(MaskNetConfig(num_classes=2, hidden=16, blocks=2)).eval()
    net, summary = train_mask_net(pool, None, ["a", "b"], MaskNetTrainOptions(
        steps=1, batch=2, lr=0.0, hidden=16, blocks=2, mix=mixo), teacher=teacher)
    assert summary["rounds"] == 2 and summary["holdout"] is None
    for k, v in teacher.state_dict().items():  # lr 0: the student is still the teacher
        torch.testing.assert_close(net.state_dict()[k], v)
    with pytest.raises(UsageError, match="teacher's shape"):
        train_mask_net(pool, None, ["a", "b"], MaskNetTrainOptions(steps=1, batch=2, hidden=32, blocks=2,
                                                                      mix=mixo), teacher=teacher)


def test_auto_uses_the_default_the_checkpoint_records(capsys, tiny_model_dir, tmp_path) -> None:
    from avscene.testing.models import record_default_method

    folder, _ = _with_separator(tiny_model_dir, tmp_path)
    mix_file = write_audio(tmp_path / "mix.wav", duration=2.0, freq=440.0)
    record_default_method(folder, "ncp")  # e.g. measured better than the network
    code = main(["separate", str(mix_file), "-m", str(folder), "--label", "violin", "-o", str(tmp_path / "a.wav"),
                 "--json"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(stdout)[0]["method"] == "ncp"
    record_default_method(folder, "dictionary")  # a default whose part the checkpoint lacks is refused on load
    with pytest.raises(CheckpointError, match="no separation.dictionary"):
        load_model(str(folder), device="cpu")
    record_default_method(folder, None)
    assert load_model(str(folder), device="cpu").separation.default_method is None
