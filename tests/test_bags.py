"""Audio bags: TSPs, NCPs and both, and their per-window scores."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from avscene.config import PreprocessConfig
from avscene.errors import ConfigError
from avscene.proposals.bags import audio_bag

SR = 16000


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    t = np.arange(4 * SR) / SR  # 4 s: 8 TSPs (ceil((4 - 0.96) / 0.48) + 1), 5 NCP windows (ceil(4 / 0.96))
    return (0.3 * np.sin(2 * np.pi * 440 * t) * (t < 2) + 0.3 * np.sin(2 * np.pi * 1500 * t) * (t >= 2)).astype(
        np.float32)


def _cfg(kind: str, k: int = 3) -> PreprocessConfig:
    return dataclasses.replace(PreprocessConfig(), audio_proposals=kind, ncp_components=k)


def test_bag_sizes_and_components(audio: np.ndarray) -> None:
    tsp = audio_bag(audio, cfg=_cfg("tsp"))
    ncp = audio_bag(audio, cfg=_cfg("ncp", k=3))
    both = audio_bag(audio, cfg=_cfg("tsp+ncp", k=3))
    assert tsp.patches.shape == (8, 96, 64) and tsp.component is None
    assert ncp.patches.shape == (3 * 5, 96, 64)
    assert ncp.component.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert np.allclose(ncp.times[:5], [[0.96 * p, 0.96 * (p + 1)] for p in range(5)])
    assert both.patches.shape == (8 + 15, 96, 64)
    assert (both.component[:8] == -1).all() and np.array_equal(both.patches[:8], tsp.patches)
    # the NCP tracks sum to the mixture, so the same seed gives the same bag
    assert np.array_equal(audio_bag(audio, cfg=_cfg("ncp", k=3)).patches, ncp.patches)


def test_windows_sum_components_of_an_ncp_bag(audio: np.ndarray) -> None:
    ncp = audio_bag(audio, cfg=_cfg("ncp", k=3))
    scores = np.arange(15 * 2, dtype=float).reshape(15, 2)  # (K*P, C)
    w, times = ncp.windows(scores)
    expected = np.array([[scores[p, c] + scores[5 + p, c] + scores[10 + p, c] for c in range(2)] for p in range(5)])
    assert np.array_equal(w, expected) and times.shape == (5, 2)
    both = audio_bag(audio, cfg=_cfg("tsp+ncp", k=3))
    w2, t2 = both.windows(np.arange(23 * 2, dtype=float).reshape(23, 2))
    assert w2.shape == (8, 2) and np.allclose(t2[:, 1] - t2[:, 0], 0.96)  # the TSP windows


def test_unknown_bag_type_is_a_config_error(audio: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="audio_proposals must be one of"):
        audio_bag(audio, cfg=_cfg("frames"))


def test_inference_uses_the_bag_the_checkpoint_names(tiny_model_dir, clips, tmp_path) -> None:
    """A checkpoint whose preprocessing says ``ncp`` is fed K x P NCPs; localize reports P windows."""
    import json
    import shutil

    from avscene.checkpoint.load import load_pretrained
    from avscene.tasks._pipeline import analyse
    from avscene.tasks.localize import LocalizeOptions, localize_from_analysis

    folder = tmp_path / "ncp_model"
    shutil.copytree(tiny_model_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["preprocess"].update(audio_proposals="ncp", ncp_components=4)
    (folder / "config.json").write_text(json.dumps(cfg))
    loaded = load_pretrained(str(folder))
    a = analyse(clips["audio_only"], loaded)
    n_windows = int(np.ceil(a.info.duration / 0.96 - 1e-9))
    assert a.output.audio_E.shape[0] == 4 * n_windows
    res = localize_from_analysis(clips["audio_only"], a, loaded, LocalizeOptions(labels=("drum",)))
    assert len(res.audio["drum"]) == n_windows
