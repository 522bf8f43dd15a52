"""The mask network's training loop (``avscene.train.masknet``): any number of steps works, and the
recipe (self-training's learning rate and seed) is the library's, not the CLI's."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from avscene.errors import UsageError
from avscene.train.masknet import MaskNetTrainOptions, train_mask_net, warmup_fraction
from avscene.train.masknet_data import MixOptions, Segment, TrainingPool

SR = 16000


def _pool(rng: np.random.Generator) -> TrainingPool:
    t = np.arange(2 * SR) / SR
    audio = [(0.01 * rng.standard_normal(2 * SR) + np.where(t >= 1, 0.3 * np.sin(2 * np.pi * f * t), 0))
             .astype(np.float32) for f in (440.0, 1300.0)]
    return TrainingPool(audio=audio, names=["a.wav", "b.wav"],
                        anchors={"a": [Segment(0, SR, 2 * SR)], "b": [Segment(1, SR, 2 * SR)]},
                        background=[Segment(0, 0, SR), Segment(1, 0, SR)])


@pytest.mark.parametrize("steps", [1, 2, 3, 19, 20, 21, 39, 40])
def test_short_runs_train_with_a_sane_schedule(tmp_path, steps) -> None:
    """``train-separator --steps 20`` ended in "internal error: ZeroDivisionError" (a one-step warm-up)."""
    rng = np.random.default_rng(0)
    opts = MaskNetTrainOptions(steps=steps, batch=2, lr=1e-3, hidden=8, blocks=1, log_every=1, eval_every=10**6,
                               mix=MixOptions(segment_seconds=0.25, speed=0.0, eq_db=0.0))
    log = tmp_path / "log.jsonl"
    net, summary = train_mask_net(_pool(rng), None, ["a", "b"], opts, log_path=log)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    lrs = [r["lr"] for r in records if "loss" in r]
    assert summary["steps"] == steps and len(lrs) == steps
    assert all(math.isfinite(x) and 0 <= x <= opts.lr * (1 + 1e-9) for x in lrs), lrs
    assert all(bool(p.isfinite().all()) for p in net.parameters())


def test_the_warm_up_never_lasts_exactly_one_step() -> None:
    assert warmup_fraction(6000) == 0.05  # the bundled network's schedule is unchanged
    for steps in range(1, 500):
        end = warmup_fraction(steps) * steps - 1  # OneCycleLR's last warm-up step
        assert end != 0 and steps - 1 - end != 0, steps
        assert 0 < warmup_fraction(steps) < 1


def test_options_are_validated_and_self_training_is_the_librarys_recipe() -> None:
    for bad in ({"steps": 0}, {"batch": 0}, {"lr": float("nan")}, {"self_train_steps": -1}):
        with pytest.raises(UsageError):
            MaskNetTrainOptions(**bad)
    opts = MaskNetTrainOptions(steps=100, lr=3e-3, seed=7, self_train_steps=40)
    second = opts.second_round()
    assert second is not None and (second.steps, second.lr, second.seed) == (40, 1e-3, 8)
    assert second.second_round() is None and MaskNetTrainOptions().second_round() is None


# --------------------------------------------------------------------------- two classes at once


def _labelled_pool() -> TrainingPool:
    """Four clips: 'a' alone, 'b' alone, 'c' with 'a' (a two-label clip), 'd' alone."""
    rng = np.random.default_rng(1)
    audio = [(0.1 * rng.standard_normal(2 * SR)).astype(np.float32) for _ in range(4)]
    return TrainingPool(audio=audio, names=["a", "b", "ac", "d"],
                        anchors={"a": [Segment(0, 0, 2 * SR)], "b": [Segment(1, 0, 2 * SR)],
                                 "c": [Segment(2, 0, 2 * SR)], "d": [Segment(3, 0, 2 * SR)]},
                        background=[], labels=[("a",), ("b",), ("a", "c"), ("d",)])


def test_pairs_mix_clips_with_disjoint_labels_deterministically() -> None:
    from avscene.train.masknet_data import PairSampler

    pool = _labelled_pool()
    sampler = PairSampler(pool, ["a", "b", "c", "d"], MixOptions(segment_seconds=0.25, background_prob=0.0))
    draws = [sampler.sample(np.random.default_rng(0)) for _ in range(2)]
    assert np.array_equal(draws[0].mixture, draws[1].mixture) and draws[0].labels == draws[1].labels
    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(300):
        p = sampler.sample(rng)
        ca, cb = p.clips
        assert ca != cb and not (pool.label_set(ca) & pool.label_set(cb)), (p.labels, p.clips)
        assert p.labels[0] != p.labels[1]
        np.testing.assert_allclose(p.sources.sum(axis=0), p.mixture, atol=1e-6)  # no background: A + B
        seen.add(frozenset(p.labels))
    assert frozenset("ac") not in seen and frozenset("bc") in seen  # 'c' comes from a clip that also holds 'a'
    other = sampler.sample(np.random.default_rng(1))
    assert not np.array_equal(other.mixture, draws[0].mixture)


def _band_scorer(x):
    """A toy two-class classifier: class 0 is energy below 1 kHz, class 1 above (scores in [-10, 10])."""
    import torch

    spec = torch.fft.rfft(x, dim=-1).abs() ** 2
    cut = int(1000 * x.shape[-1] / SR)
    low, high = spec[..., :cut].sum(-1), spec[..., cut:].sum(-1)
    s0 = 10 * (low - high) / (low + high)
    return torch.stack([s0, -s0], dim=-1)


def test_the_assessor_loss_is_zero_for_a_perfect_separation_and_positive_when_swapped() -> None:
    import torch

    from avscene.train.masknet import assessor_loss

    t = torch.arange(SR) / SR
    low, high = 0.3 * torch.sin(2 * np.pi * 300 * t), 0.3 * torch.sin(2 * np.pi * 3000 * t)
    present, absent = torch.tensor([0, 1]), torch.tensor([1, 0])
    perfect = _band_scorer(torch.stack([low, high]))
    assert assessor_loss(perfect, present, absent, margin=1.0).item() == 0.0
    swapped = _band_scorer(torch.stack([high, low]))
    assert assessor_loss(swapped, present, absent, margin=1.0).item() > 10
    halfway = _band_scorer(torch.stack([low + high, low + high]))  # the mixture for both: classified as neither
    assert 0 < assessor_loss(halfway, present, absent, margin=1.0).item() < assessor_loss(swapped, present, absent,
                                                                                           margin=1.0).item()


def test_outputs_and_residual_add_up_to_the_mixture() -> None:
    import torch

    from avscene.nn.masknet import MaskNet, MaskNetConfig
    from avscene.train.masknet import separate_classes

    torch.manual_seed(0)
    net = MaskNet(MaskNetConfig(num_classes=3, hidden=8, blocks=1)).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)  # masks far from 0.5, different per class
    mixture = torch.randn(SR) * 0.1
    with torch.no_grad():
        outputs, residual = separate_classes(net, mixture, [0, 2])
    assert outputs.shape == (2, SR) and not torch.allclose(outputs[0], outputs[1])
    torch.testing.assert_close(outputs.sum(0) + residual, mixture, atol=1e-6, rtol=0)


def tone(f: float, r: np.random.Generator) -> np.ndarray:
    """A 2-s toy 'instrument': a tone at ``f`` Hz (random phase) and its octave."""
    t = np.arange(2 * SR) / SR
    return (0.2 * np.sin(2 * np.pi * f * t + r.uniform(0, 6.3)) + 0.1 * np.sin(4 * np.pi * f * t)).astype(np.float32)


def _toy_gains(net) -> list[float]:
    """SDR improvements (dB) of ``net``'s classes 0 (low) and 1 (high) on held-out toy mixtures
    (other pitches, phases and ratios than the training tones)."""
    import torch

    from avscene.train.masknet import separate_classes
    from avscene.evaluation.metrics.separation import sdr

    test = np.random.default_rng(99)
    gains = []
    for f_low, f_high, ratio_db in ((310, 1550, -5.0), (330, 1650, 0.0), (290, 1750, 5.0)):
        a, b = tone(f_low, test), tone(f_high, test) * 10 ** (-ratio_db / 20)
        with torch.no_grad():
            out, _ = separate_classes(net, torch.from_numpy(a + b), [0, 1])
        for est, ref in zip(out.numpy(), (a, b)):
            gains.append(sdr(est, ref) - sdr(a + b, ref))
    return gains


def test_a_short_training_separates_two_tones(tmp_path) -> None:
    """Mix-and-separate of two tone 'classes' (~300 steps, a tiny network): the held-out toy
    mixtures (other pitches, phases and ratios) gain more than 6 dB of SDR."""
    import torch

    rng = np.random.default_rng(0)

    audio = [tone(f, rng) for f in (300, 320, 340)] + [tone(f, rng) for f in (1500, 1600, 1700)]
    pool = TrainingPool(audio=audio, names=[str(i) for i in range(6)],
                        anchors={"low": [Segment(i, 0, 2 * SR) for i in range(3)],
                                 "high": [Segment(i, 0, 2 * SR) for i in range(3, 6)]},
                        background=[], labels=[("low",)] * 3 + [("high",)] * 3)
    opts = MaskNetTrainOptions(steps=300, batch=4, lr=3e-3, hidden=16, blocks=2, log_every=1000, eval_every=10**6,
                               holdout_mixtures=0, pair_fraction=1.0, assessor_weight=0.01, overlap_weight=1.0,
                               mix=MixOptions(segment_seconds=0.5, background_prob=0.0, speed=0.03, eq_db=3.0))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: a second thread only adds synchronisation on a busy machine
    try:
        net, summary = train_mask_net(pool, None, ["low", "high"], opts, scorer=_band_scorer)
    finally:
        torch.set_num_threads(threads)
    assert summary["pairs"]["assessor_weight"] == 0.01
    gains = _toy_gains(net)
    assert min(gains) > 6, gains


# --------------------------------------------------------------------------- co-separation


def _toy_spectra():
    """Two 'clips' in disjoint bins of a (1, F=4, T=3) spectrogram: A holds bins 0-1, B bins 2-3."""
    import torch

    a = torch.zeros(1, 4, 3)
    a[:, :2] = 1.0
    b = torch.zeros(1, 4, 3)
    b[:, 2:] = 2.0
    return a, b, a + b


def test_the_coseparation_loss_is_zero_for_a_perfect_separation_and_positive_when_swapped() -> None:
    import torch

    from avscene.train.masknet import coseparation_loss

    a, b, mix = _toy_spectra()
    clip_mags = torch.stack([a, b], dim=1)  # (1, 2, F, T)
    in_a, in_b = (a > 0).float(), (b > 0).float()
    # clip A has two classes that split its bins in any way; clip B one class (its second slot unused)
    split = torch.zeros(1, 2, 2, 4, 3)
    split[0, 0, 0, 0], split[0, 0, 1, 1] = 1.0, 1.0  # A's two classes: one bin each, adding up to A
    split[0, 1, 0] = in_b[0]
    split[0, 1, 1] = 0.7  # B's unused slot: ignored
    queried = torch.tensor([[[True, True], [True, False]]])
    assert coseparation_loss(split, queried, mix, clip_mags).item() == 0.0
    swapped = torch.zeros(1, 2, 2, 4, 3)
    swapped[0, 0, 0], swapped[0, 1, 0] = in_b[0], in_a[0]  # each clip's class returns the other clip
    assert coseparation_loss(swapped, torch.tensor([[[True, False], [True, False]]]), mix, clip_mags).item() > 0.5
    half = torch.full((1, 2, 2, 4, 3), 0.5)  # the mixture halved for both: between the two
    one = torch.tensor([[[True, False], [True, False]]])
    assert 0 < coseparation_loss(half, one, mix, clip_mags).item() < \
        coseparation_loss(swapped, one, mix, clip_mags).item()


def _clip_pool():
    from avscene.train.masknet_data import ClipPool

    rng = np.random.default_rng(2)
    audio = [(0.1 * rng.standard_normal(2 * SR)).astype(np.float32) for _ in range(4)]
    return ClipPool(audio=audio, labels=[("a",), ("b",), ("a", "c"), ("c", "d")],
                    heard=[("a",), ("b",), ("a", "c"), ("d",)],
                    active=[[(0, 2 * SR)], [(0, SR)], [(SR, 2 * SR)], [(0, 2 * SR)]])


def test_coseparation_mixes_clips_with_disjoint_labels_deterministically() -> None:
    from avscene.train.masknet_data import CoSeparationSampler

    pool = _clip_pool()
    labels = ["a", "b", "c", "d"]
    sampler = CoSeparationSampler(pool, labels, MixOptions(segment_seconds=0.25, background_prob=0.0))
    first, again = (sampler.batch(np.random.default_rng(0), 3) for _ in range(2))
    assert all(torch_equal(x, y) for x, y in zip(first, again))
    rng = np.random.default_rng(5)
    pairs = set()
    for _ in range(200):
        x = sampler.sample(rng)
        i, j = x.clips
        assert not set(pool.labels[i]) & set(pool.labels[j]), x.clips  # 'c' shared by clips 2 and 3
        assert x.classes == (pool.heard[i], pool.heard[j])
        np.testing.assert_allclose(x.sources.sum(axis=0), x.mixture, atol=1e-6)  # no background: A + B
        pairs.add(frozenset(x.clips))
    assert pairs == {frozenset(p) for p in ((0, 1), (0, 3), (1, 2), (1, 3))}
    m, s, c = sampler.batch(np.random.default_rng(1), 40)
    assert s.shape == (40, 2, m.shape[1]) and c.shape == (40, 2, 2)
    for row in c:  # each clip's heard classes, -1 after them
        for side in row:
            names = tuple(labels[k] for k in side.tolist() if k >= 0)
            assert names in pool.heard and (side >= 0).tolist() == sorted((side >= 0).tolist(), reverse=True)


def torch_equal(x, y) -> bool:
    import torch

    return bool(torch.equal(x, y))


def test_coseparation_options_are_validated() -> None:
    for bad in ({"objective": "mixit"}, {"objective": "coseparation"},  # no pairs in the batch
                {"objective": "coseparation", "pair_fraction": 0.5, "assessor_weight": 0.1}):
        with pytest.raises(UsageError):
            MaskNetTrainOptions(**bad)
    MaskNetTrainOptions(objective="coseparation", pair_fraction=0.5, overlap_weight=1.0)


def test_a_short_coseparation_training_separates_two_tones() -> None:
    """Co-separation of two tone 'clips' (~300 steps, a tiny network): held-out toy mixtures gain
    more than 6 dB of SDR; one 'low' clip is a two-label clip (low + a class never heard alone)."""
    import torch

    from avscene.train.masknet_data import ClipPool

    rng = np.random.default_rng(0)

    audio = [tone(f, rng) for f in (300, 320, 340)] + [tone(f, rng) for f in (1500, 1600, 1700)]
    clips = ClipPool(audio=audio, labels=[("low",), ("low",), ("low", "other")] + [("high",)] * 3,
                     heard=[("low",)] * 3 + [("high",)] * 3, active=[[(0, 2 * SR)]] * 6)
    opts = MaskNetTrainOptions(steps=300, batch=4, lr=3e-3, hidden=16, blocks=2, log_every=1000, eval_every=10**6,
                               holdout_mixtures=0, pair_fraction=1.0, overlap_weight=1.0, objective="coseparation",
                               mix=MixOptions(segment_seconds=0.5, background_prob=0.0, speed=0.03, eq_db=3.0))
    empty = TrainingPool(audio=[], names=[], anchors={}, background=[])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net, summary = train_mask_net(empty, None, ["low", "high", "other"], opts, clip_pool=clips)
    finally:
        torch.set_num_threads(threads)
    assert summary["pairs"]["objective"] == "coseparation"
    gains = _toy_gains(net)
    assert min(gains) > 6, gains


def test_train_separator_refuses_an_unknown_objective(tmp_path, capsys) -> None:
    from avscene.cli.app import main

    code = main(["train-separator", str(tmp_path / "model"), str(tmp_path / "labels.csv"), "--pair-fraction", "0.5",
                 "--objective", "mixit"])
    assert code == 2 and "objective" in capsys.readouterr().err
