"""The self-trained box regressor: its offsets by hand, its fit, its file, and how localize applies it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from avscene.checkpoint.box_regressor import read_box_regressor, save_box_regressor
from avscene.errors import CheckpointError, UsageError
from avscene.proposals.box_regression import (
    MAX_LOG_RATIO, MIN_SAMPLES, BoxRegressor, decode_boxes, encode_boxes, fit_box_regressor, ridge_fit,
)


def test_offsets_by_hand() -> None:
    # box: centre (5, 10), 10 x 20; target: centre (15, 20), 20 x 40 -> one width right, half a height
    # down, twice the size
    got = encode_boxes(np.array([[0, 0, 10, 20]]), np.array([[5, 0, 25, 40]]))
    assert np.allclose(got, [[1.0, 0.5, math.log(2), math.log(2)]])
    # a target inside the box: centre (4, 6), 4 x 2 from centre (5, 5), 10 x 10
    assert np.allclose(encode_boxes(np.array([[0, 0, 10, 10]]), np.array([[2, 5, 6, 7]])),
                       [[-0.1, 0.1, math.log(0.4), math.log(0.2)]])
    assert np.allclose(decode_boxes(np.array([[0, 0, 10, 20]]), np.array([[1.0, 0.5, math.log(2), math.log(2)]])),
                       [[5, 0, 25, 40]])
    assert np.allclose(decode_boxes(np.array([[0, 0, 10, 10]]), np.zeros((1, 4))), [[0, 0, 10, 10]])  # no offset


def test_decoding_clips_huge_size_ratios_and_encoding_refuses_empty_boxes() -> None:
    big = decode_boxes(np.array([[0, 0, 2, 2]]), np.array([[0, 0, 50.0, 0]]))[0]
    assert np.isclose(big[2] - big[0], 2 * math.exp(MAX_LOG_RATIO)) and np.isclose(big[3] - big[1], 2)
    with pytest.raises(UsageError, match="positive width"):
        encode_boxes(np.array([[0, 0, 0, 5]]), np.array([[0, 0, 5, 5]]))
    with pytest.raises(UsageError, match="2 boxes and 1 targets"):
        encode_boxes(np.zeros((2, 4)), np.zeros((1, 4)))


def test_ridge_fit_recovers_a_linear_map_and_shrinks_to_the_mean() -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.concatenate([2 * x + 1, -x], axis=1)  # (4, 2)
    assert np.allclose(ridge_fit(x, y, 0.0), [[2.0, -1.0], [1.0, 0.0]])
    w = ridge_fit(x, y, 1e9)  # the weights vanish, the unpenalised bias is the mean
    assert np.allclose(w[0], 0, atol=1e-6) and np.allclose(w[1], y.mean(axis=0), atol=1e-6)
    with pytest.raises(UsageError, match=">= 0"):
        ridge_fit(x, y, -1.0)


def test_a_fitted_regressor_moves_boxes_onto_their_targets() -> None:
    rng = np.random.default_rng(0)
    n = MIN_SAMPLES + 5
    start = np.stack([rng.uniform(0, 50, n), rng.uniform(0, 50, n)], axis=1)
    start = np.concatenate([start, start + rng.uniform(10, 40, (n, 2))], axis=1)  # (n, 4)
    target = decode_boxes(start, rng.normal(0, 0.2, (n, 4)))
    z = encode_boxes(start, target)  # a feature that carries the offsets themselves: identity to learn
    reg = fit_box_regressor(("a", "b", "c"), {0: (z, start, target), 2: (z[: MIN_SAMPLES - 1], start[:19], target[:19])},
                            feature_dim=4, penalty=0.0)
    assert reg.trained.tolist() == [True, False, False]  # c had one sample too few, b none
    assert np.allclose(reg.refine(start, z, 0), target)
    assert np.array_equal(reg.refine(start, z, 2), start)  # untrained: unchanged
    with pytest.raises(UsageError, match="4-d features"):
        reg.refine(start, np.zeros((n, 3)), 0)


def test_the_file_round_trips_and_is_read_strictly(tmp_path: Path) -> None:
    reg = BoxRegressor(("x", "y"), np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4), np.array([True, False]),
                       penalty=10.0, teacher="evidence")
    back = read_box_regressor(save_box_regressor(reg, tmp_path / "r.safetensors"))
    assert back.labels == ("x", "y") and back.trained.tolist() == [True, False] and back.penalty == 10.0
    assert np.array_equal(back.weights, reg.weights) and back.teacher == "evidence" and back.feature_dim == 2
    from safetensors.numpy import save_file

    save_file({"weights": np.zeros((2, 3, 4), np.float32)}, str(tmp_path / "half.safetensors"),
              metadata={"labels": '["x", "y"]'})
    with pytest.raises(CheckpointError, match="weights and trained"):
        read_box_regressor(tmp_path / "half.safetensors")
    save_file({"weights": np.zeros((3, 3, 4), np.float32), "trained": np.ones(3, np.uint8)},
              str(tmp_path / "shape.safetensors"), metadata={"labels": '["x", "y"]'})
    with pytest.raises(CheckpointError, match="needs weights"):
        read_box_regressor(tmp_path / "shape.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="unreadable"):
        read_box_regressor(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        read_box_regressor(tmp_path / "missing.safetensors")
    with pytest.raises(UsageError, match="not all finite"):
        BoxRegressor(("x",), np.full((1, 3, 4), np.nan), np.array([True]))


@pytest.fixture(scope="module")
def car_model(tmp_path_factory: pytest.TempPathFactory):
    """The tiny model with car predicted and seen on any input (so it has boxes)."""
    import torch

    from avscene.checkpoint.load import load_pretrained, save_pretrained
    from avscene.testing.models import tiny_model, tiny_preprocess

    model = tiny_model(3, seed=0)
    with torch.no_grad():  # violin, drum, car
        model.visual_head.cls.bias[:] = torch.tensor([-6.0, -6.0, 6.0])
        model.audio_head.cls.bias[:] = torch.tensor([-6.0, -6.0, 6.0])
    folder = save_pretrained(model, tmp_path_factory.mktemp("car") / "m", labels=["violin", "drum", "car"],
                             preprocess=tiny_preprocess(), training={"note": "tiny, car everywhere"})
    return load_pretrained(str(folder))


def test_localize_moves_each_box_by_the_regressor(car_model, clips: dict) -> None:
    from avscene.io.decode import probe
    from avscene.tasks.localize import LocalizeOptions, localize_file

    d = car_model.config.embed_dim
    info = probe(clips["av"])

    def boxes(reg: BoxRegressor | None) -> np.ndarray:
        res = localize_file(clips["av"], car_model, LocalizeOptions(labels=("car",), snap=False, box_regressor=reg))
        return np.array([det.box for det in res.visual["car"]])

    plain = boxes(None)
    assert len(plain)
    W = np.zeros((3, d + 1, 4))
    zero = boxes(BoxRegressor(car_model.labels, W, np.array([False, False, True])))
    assert np.allclose(zero, plain)  # zero offsets: the boxes as they were
    W[2, -1] = [0.0, 0.0, math.log(0.5), math.log(0.5)]  # the bias alone: half the size, same centre
    half = boxes(BoxRegressor(car_model.labels, W, np.array([False, False, True])))
    assert np.allclose(half[:, 2] - half[:, 0], 0.5 * (plain[:, 2] - plain[:, 0]))
    assert np.allclose(half[:, 0] + half[:, 2], plain[:, 0] + plain[:, 2])
    W[2, -1] = [0.0, 0.0, math.log(100.0), math.log(100.0)]  # far larger than the frame: clipped to it
    huge = boxes(BoxRegressor(car_model.labels, W, np.array([False, False, True])))
    assert np.allclose(huge, [[0, 0, info.width, info.height]])
    with pytest.raises(UsageError, match="trained for classes"):
        boxes(BoxRegressor(("a", "b", "c"), W, np.ones(3, bool)))
    with pytest.raises(UsageError, match="features"):
        boxes(BoxRegressor(car_model.labels, np.zeros((3, d + 2, 4)), np.ones(3, bool)))


def test_cli_reports_a_missing_regressor_file(tiny_model_dir: Path, clips: dict, tmp_path: Path, capsys) -> None:
    from avscene.cli.app import main

    code = main(["localize", str(clips["av"]), "-m", str(tiny_model_dir), "--box-regressor",
                 str(tmp_path / "none.safetensors")])
    _, err = capsys.readouterr()
    assert code != 0 and "none.safetensors" in err and "not found" in err
