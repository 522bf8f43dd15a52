"""Event-head poolings on hand-computed toy batches, splicing in embedding space, fitting an event
head on frozen embeddings of a toy problem, and installing it into a checkpoint."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from avscene.errors import OutputError, UsageError
from avscene.nn.mil import (
    EventPooling, attention_pool, auto_pool, exp_softmax, linear_softmax, masked_max, mean_pool,
)
from avscene.train.event_head import (
    Bag, EmbeddedClip, EventHeadFit, HoldoutFigures, fit_event_head, install_event_head, splice_embeddings,
    stack_bags, window_decisions,
)

# one bag, three windows, two classes; a second bag whose last window is padding
P = torch.tensor([[[0.2, 0.9], [0.8, 0.1], [0.5, 0.5]],
                  [[0.2, 0.9], [0.8, 0.1], [0.5, 0.5]]])
MASK = torch.tensor([[True, True, True], [True, True, False]])


def test_max_and_mean_pool_on_a_toy_batch():
    assert torch.allclose(masked_max(P, MASK), torch.tensor([[0.8, 0.9], [0.8, 0.9]]))
    assert torch.allclose(mean_pool(P, MASK), torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    assert mean_pool(P, torch.zeros(2, 3, dtype=torch.bool)).eq(0).all()


def test_linear_and_exp_softmax_on_a_toy_batch():
    # class 0, all windows: (0.04 + 0.64 + 0.25) / 1.5; padding out: (0.04 + 0.64) / 1.0
    want = torch.tensor([[0.93 / 1.5, (0.81 + 0.01 + 0.25) / 1.5], [0.68, 0.82 / 1.0]])
    assert torch.allclose(linear_softmax(P, MASK), want)
    e = [math.exp(x) for x in (0.2, 0.8, 0.5)]
    want0 = (0.2 * e[0] + 0.8 * e[1] + 0.5 * e[2]) / sum(e)
    got = exp_softmax(P, MASK)
    assert got[0, 0].item() == pytest.approx(want0, rel=1e-6)
    assert got[1, 0].item() == pytest.approx((0.2 * e[0] + 0.8 * e[1]) / (e[0] + e[1]), rel=1e-6)


def test_auto_pool_goes_from_the_mean_to_the_max_and_the_min():
    zero = auto_pool(P, torch.zeros(2), MASK)
    assert torch.allclose(zero, torch.tensor([[0.5, 0.5], [0.5, 0.5]]))  # α = 0: the mean
    big = auto_pool(P, torch.full((2,), 200.0), MASK)
    assert torch.allclose(big, torch.tensor([[0.8, 0.9], [0.8, 0.9]]), atol=1e-4)  # α → ∞: the max
    small = auto_pool(P, torch.full((2,), -200.0), MASK)
    assert torch.allclose(small, torch.tensor([[0.2, 0.1], [0.2, 0.1]]), atol=1e-4)  # α → -∞: the min
    # α per class: class 0 at the mean, class 1 at the max
    mixed = auto_pool(P, torch.tensor([0.0, 200.0]), MASK)
    assert torch.allclose(mixed[0], torch.tensor([0.5, 0.9]), atol=1e-4)
    assert torch.allclose(auto_pool(P, torch.ones(2), MASK), exp_softmax(P, MASK))


def test_attention_pool_weighs_windows_by_the_softmax_of_their_weights():
    w = torch.zeros(2, 3, 2)
    w[:, 1, 0] = math.log(3.0)  # class 0: weights 1 : 3 : 1 -> 0.2, 0.6, 0.2
    got = attention_pool(P, w, MASK)
    assert got[0, 0].item() == pytest.approx(0.2 * 0.2 + 0.6 * 0.8 + 0.2 * 0.5)
    assert got[0, 1].item() == pytest.approx((0.9 + 0.1 + 0.5) / 3)
    assert got[1, 0].item() == pytest.approx(0.25 * 0.2 + 0.75 * 0.8)  # padding has no weight


def test_event_pooling_dispatches_and_refuses_an_unknown_kind():
    z = torch.zeros(2, 3, 4)
    assert torch.allclose(EventPooling("max", 4, 2)(P, z, MASK), masked_max(P, MASK))
    auto = EventPooling("auto_pool", 4, 2)
    assert torch.allclose(auto(P, z, MASK), mean_pool(P, MASK))  # α starts at 0
    assert auto.alpha.requires_grad
    with pytest.raises(UsageError, match="pooling"):
        EventPooling("median", 4, 2)


def test_splice_in_embedding_space_keeps_each_half_and_the_splice_point():
    a, b = torch.randn(3, 4), torch.randn(5, 4)
    z, part = splice_embeddings(a, b)
    assert torch.equal(z[:3], a) and torch.equal(z[3:], b)
    assert part.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    names = ["x", "y", "w"]
    first = EmbeddedClip("a.mp4", ("x",), "clean", a.numpy())
    second = EmbeddedClip("b.mp4", ("y", "w"), "augmented", b.numpy())
    bag = Bag.of(first, second, names)
    assert bag.targets.tolist() == [[1, 0, 0], [0, 1, 1]]
    assert bag.window_targets().tolist() == [[1, 0, 0]] * 3 + [[0, 1, 1]] * 5
    single = Bag.of(first, None, names)
    assert single.part.tolist() == [0, 0, 0] and single.targets[1].eq(0).all()
    zs, mask, parts, targets = stack_bags([bag, single])
    assert zs.shape == (2, 8, 4) and mask.sum(dim=1).tolist() == [8, 3]
    assert parts[0].tolist() == part.tolist() and targets.shape == (2, 2, 3)


def test_window_decisions_follow_localize_rule_and_gate():
    logits = np.array([[-3.0, 2.0], [1.0, -3.0], [-0.3, -3.0], [-0.8, -3.0]])
    on = window_decisions(logits, np.array([True, False]), 0.0)
    # starts above 0 (window 1), continues while above -0.5 (window 2); class 1 gated off
    assert on[:, 0].tolist() == [False, True, True, False] and not on[:, 1].any()
    on = window_decisions(logits, np.array([True, True]), 1.5)
    assert on[:, 0].tolist() == [False, True, False, False]  # none above: the best window alone
    assert on[:, 1].tolist() == [True, False, False, False]


def _toy_clips(rng: np.random.Generator, n: int, d: int = 8, windows: int = 10) -> list[EmbeddedClip]:
    """Each clip holds one of two classes, sounding in its first half only: those windows carry
    the class's direction, every other window is noise."""
    dirs = np.eye(d, dtype=np.float32)[:2] * 3.0
    out = []
    for i in range(n):
        c = i % 2
        z = rng.normal(0, 0.5, (windows, d)).astype(np.float32)
        z[: windows // 2] += dirs[c]
        out.append(EmbeddedClip(f"c{i}.mp4", (("a", "b")[c],), "clean", z))
    return out


@pytest.mark.parametrize("pooling", ["linear_softmax", "auto_pool"])
def test_a_head_trained_on_weak_labels_localises_the_sounding_half(pooling):
    rng = np.random.default_rng(0)
    train, held, test = _toy_clips(rng, 40), _toy_clips(rng, 10), _toy_clips(rng, 20)
    oracle = torch.nn.Linear(8, 2)  # the toy's own reference: each class's direction
    with torch.no_grad():
        oracle.weight.copy_(torch.eye(8)[:2])
        oracle.bias.fill_(-1.5)
    fit = fit_event_head(None, oracle, train, held, ["a", "b"], pooling=pooling, steps=300, batch_size=16,
                         eval_every=100, lr=1e-2, seed=0)
    assert 1 <= fit.best_step <= 300 and fit.pooling == pooling
    correct = total = 0
    for clip in test:
        logits = clip.z @ fit.weight.T + fit.bias - fit.threshold  # (P, C)
        c = ("a", "b").index(clip.labels[0])
        want = np.zeros(logits.shape, dtype=bool)
        want[:5, c] = True  # the class sounds in the first half only; the other never
        correct += int(((logits > 0) == want).sum())
        total += want.size
    assert correct / total >= 0.95


def _fit(weight: np.ndarray, bias: np.ndarray, threshold: float) -> EventHeadFit:
    figs = HoldoutFigures(f1=0.5, precision=0.5, recall=0.5, outside=0.1, f1_parts=0.6)
    return EventHeadFit(pooling="linear_softmax", steps=10, best_step=10, threshold=threshold, holdout=figs,
                        holdout_at_zero=figs, reference=figs, curve=((10, 0.5, 0.5, 0.5),), n_train_clips=4, n_holdout_bags=2,
                        alpha=None, weight=weight, bias=bias)


def test_an_installed_head_loads_strictly_and_decides_the_events(tiny_model_dir, clips, tmp_path):
    from avscene.checkpoint.format import read_config
    from avscene.checkpoint.load import load_pretrained
    from avscene.nn.model import event_scores
    from avscene.tasks._pipeline import analyse
    from avscene.tasks.classify import ClassifyOptions
    from avscene.tasks.localize import LocalizeOptions, localize_from_analysis

    base = load_pretrained(str(tiny_model_dir), device="cpu")
    assert not base.config.event_head
    C, d = len(base.labels), base.config.embed_dim
    g = np.random.default_rng(1)
    weight = g.normal(0, 0.3, (C, d)).astype(np.float32)
    bias = g.normal(0, 0.3, C).astype(np.float32)
    out = install_event_head(tiny_model_dir, tmp_path / "with_head", _fit(weight, bias, 0.25))
    with pytest.raises(OutputError, match="exists"):
        install_event_head(tiny_model_dir, out, _fit(weight, bias, 0.25))
    assert read_config(out)["training"]["event_head_fit"]["threshold_installed"] == 0.25
    loaded = load_pretrained(str(out), device="cpu")  # strict: the head's weights are all there
    assert loaded.config.event_head
    sd = loaded.model.state_dict()
    assert torch.equal(sd["audio_event.lin.weight"], torch.from_numpy(weight))
    assert torch.allclose(sd["audio_event.lin.bias"], torch.from_numpy(bias - 0.25))
    # everything else is the checkpoint's own: the video-level decision cannot change
    assert all(torch.equal(v, base.model.state_dict()[k]) for k, v in sd.items() if not k.startswith("audio_event"))

    a = analyse(clips["av"], loaded)
    assert event_scores(a.output) is a.output.audio_event
    heard = ClassifyOptions(audio_threshold=-1e6)  # every class heard: its events are reported
    lab = base.labels[0]
    res = localize_from_analysis(Path(clips["av"]), a, loaded, LocalizeOptions(labels=(lab,), classify=heard))
    logits = a.output.audio_event[:, 0].numpy()
    assert [s.score for s in res.audio[lab]] == pytest.approx(logits.tolist())
    # the same clip with the head's bias shifted by the threshold back: logits 0.25 higher
    plain = install_event_head(tiny_model_dir, tmp_path / "at_zero", _fit(weight, bias, 0.0))
    b = analyse(clips["av"], load_pretrained(str(plain), device="cpu"))
    assert np.allclose(b.output.audio_event.numpy(), a.output.audio_event.numpy() + 0.25, atol=1e-5)
    shutil.rmtree(plain)


def _run(capsys, *argv) -> tuple[int, str, str]:
    from avscene.cli.app import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_events_refuses_an_existing_output_and_an_unknown_pooling(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "with_head"
    out.mkdir()
    (out / "keep").write_text("mine")
    code, _, err = _run(capsys, "train-events", tiny_model_dir, "-o", out)
    assert code == 2 and "--force" in err, err
    assert (out / "keep").read_text() == "mine"
    code, _, err = _run(capsys, "train-events", tiny_model_dir, "-o", tmp_path / "new", "--pooling", "median")
    assert code == 2 and "linear_softmax" in err, err
    assert not (tmp_path / "new").exists()
