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
