"""Bootstrapped remixing (``train-separator --objective remix``, :mod:`avscene.train.remix`): the
remixes' ratios and sums, the sampler's label sets and seeds, the teacher cache, the remix
hold-out of ``evaluate-separation --pairs --remix``, and a toy training from teacher estimates."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avscene.errors import UsageError
from avscene.train.masknet import MaskNetTrainOptions, train_mask_net
from avscene.train.masknet_data import MixOptions, TrainingPool
from avscene.train.remix import TEACHER_FILE, RemixPool, RemixSampler, TeacherCache, TeacherClip, remix

SR = 16000


def db(p: float, q: float) -> float:
    return 10 * math.log10(p / q)


def pw(x: np.ndarray) -> float:
    return float(np.mean(np.asarray(x, np.float64) ** 2))


def test_a_remix_sets_the_asked_ratios_and_adds_up_to_the_mixture() -> None:
    rng = np.random.default_rng(0)
    a, b, r = (rng.standard_normal(4000) * k for k in (0.1, 0.5, 2.0))
    m, s, res = remix([a, b], r, source_db=[3.0], residual_db=-4.0, level_db=-20.0)
    assert s.shape == (2, 4000) and m.dtype == s.dtype == res.dtype == np.float32
    assert db(pw(s[0]), pw(s[1])) == pytest.approx(3.0, abs=1e-3)
    assert db(pw(s[0] + s[1]), pw(res)) == pytest.approx(-4.0, abs=1e-3)
    assert 10 * math.log10(pw(m)) == pytest.approx(-20.0, abs=1e-3)
    np.testing.assert_allclose(s.sum(axis=0) + res, m, atol=1e-6)
    # the shapes of the sources are kept: each is its input times one gain
    assert abs(np.corrcoef(s[0], a)[0, 1]) > 0.9999 and abs(np.corrcoef(s[1], b)[0, 1]) > 0.9999
    m1, s1, r1 = remix([a], None, source_db=[], residual_db=0.0, level_db=-30.0)
    assert not r1.any() and s1.shape == (1, 4000)
    np.testing.assert_allclose(s1[0], m1, atol=1e-7)
    with pytest.raises(UsageError):
        remix([a, b], r, source_db=[], residual_db=0.0, level_db=-20.0)


def _pool() -> RemixPool:
    """Five clips of four classes: sources are tones, residuals noise (each clip's own)."""
    rng = np.random.default_rng(1)
    t = np.arange(SR) / SR
    labels = ["a", "a", "b", "c", "d"]
    sources = [(0.2 * np.sin(2 * np.pi * (300 + 200 * k) * t)).astype(np.float32) for k in range(5)]
    residuals = [(0.05 * rng.standard_normal(SR)).astype(np.float32) for _ in range(5)]
    return RemixPool(sources, residuals, labels, [((0, SR // 2),), ((SR // 2, SR),), ((0, SR),), (), ((0, SR),)],
                     [f"{k}.mp4" for k in range(5)])


def test_remixes_keep_label_sets_disjoint_and_are_deterministic_by_seed() -> None:
    import torch

    pool = _pool()
    labels = ["a", "b", "c", "d", "e"]
    sampler = RemixSampler(pool, labels, MixOptions(segment_seconds=0.25))
    first, again = (sampler.batch(np.random.default_rng(7), 5, 2) for _ in range(2))
    assert all(bool(torch.equal(x, y)) for x, y in zip(first, again))
    other = sampler.batch(np.random.default_rng(8), 5, 2)
    assert not torch.equal(first[0], other[0])
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(200):
        n = int(rng.integers(1, 3))
        x = sampler.sample(rng, n)
        assert len(x.labels) == len(set(x.labels)) == n
        assert [pool.labels[k] for k in x.clips] == list(x.labels)
        assert x.residual_clip is not None and pool.labels[x.residual_clip] not in x.labels  # a third class
        np.testing.assert_allclose(x.sources.sum(axis=0) + x.residual, x.mixture, atol=1e-6)
        seen.add(x.labels)
    assert {("a", "b"), ("b", "a"), ("c", "d")} <= seen and ("e",) not in seen  # e: no clip
    m, s, c = sampler.batch(np.random.default_rng(1), 4, 1)
    assert s.shape == (4, 1, m.shape[1]) and c.shape == (4, 1)
    with pytest.raises(UsageError, match="does not know: c, d"):
        RemixSampler(pool, ["a", "b"], MixOptions())


def test_a_remix_without_residual_is_its_sources() -> None:
    sampler = RemixSampler(_pool(), ["a", "b", "c", "d"], MixOptions(segment_seconds=0.25, background_prob=0.0))
    x = sampler.sample(np.random.default_rng(0), 2)
    assert x.residual_clip is None and not x.residual.any()
    np.testing.assert_allclose(x.sources.sum(axis=0), x.mixture, atol=1e-6)


def _write_cache(folder: Path, pool: RemixPool, holdout: list[bool]) -> TeacherCache:
    clips = []
    for k, name in enumerate(pool.names):
        stem = Path(name).stem
        sf.write(folder / f"s{stem}.wav", pool.sources[k], SR, subtype="FLOAT")
        sf.write(folder / f"r{stem}.wav", pool.residuals[k], SR, subtype="FLOAT")
        clips.append(TeacherClip(name, pool.labels[k], holdout[k], f"s{stem}.wav", f"r{stem}.wav", pool.active[k]))
    cache = TeacherCache("teacher-model", "hybrid", "labels.csv", SR, tuple(clips))
    (folder / TEACHER_FILE).write_text(json.dumps(cache.to_json()))
    return cache


def test_the_teacher_cache_reads_back_what_was_written(tmp_path) -> None:
    pool = _pool()
    cache = _write_cache(tmp_path, pool, [False, True, False, True, True])
    assert TeacherCache.read(tmp_path) == cache
    held = RemixPool.load(tmp_path, holdout=True)
    assert held.labels == ["a", "c", "d"] and held.names == ["1.mp4", "3.mp4", "4.mp4"]
    np.testing.assert_array_equal(held.sources[1], pool.sources[3])
    np.testing.assert_array_equal(held.residuals[2], pool.residuals[4])
    assert held.active[0] == ((SR // 2, SR),)
    with pytest.raises(UsageError, match="not a teacher cache"):
        TeacherCache.read(tmp_path / "elsewhere")
    (tmp_path / TEACHER_FILE).write_text(json.dumps({**cache.to_json(), "version": 99}))
    with pytest.raises(UsageError, match="version"):
        TeacherCache.read(tmp_path)


def test_the_remix_holdout_mixes_a_third_classs_residual_below_the_two_sources(tmp_path) -> None:
    from avscene.evaluation.evaluate_pairs import REMIX_RESIDUAL_DB, item_signals, remix_items

    pool = _pool()
    _write_cache(tmp_path, pool, [True] * 5)
    items = remix_items(tmp_path, per_cell=2, seed=0)
    assert items == remix_items(tmp_path, per_cell=2, seed=0)
    pairs = [x for x in items if x.other != "residual"]
    singles = [x for x in items if x.other == "residual"]
    assert len(singles) == 5 and pairs and {x.set for x in items} == {"remix"}
    by_path = {f"s{k}.wav": pool.labels[k] for k in range(5)} | {f"r{k}.wav": pool.labels[k] for k in range(5)}
    for x in pairs:
        assert by_path[x.target] == x.label and by_path[x.interferer] == x.other and x.residual is not None
        assert by_path[x.residual] not in (x.label, x.other)  # neither class is in the residual's clip
    for x in singles:  # the residual is the interferer
        assert by_path[x.target] == x.label and x.interferer.startswith("r") and x.residual is None
        assert by_path[x.interferer] != x.label
    x = pairs[0]
    mixture, ref = item_signals(tmp_path, x)
    other = sf.read(tmp_path / x.interferer, dtype="float64")[0]
    res = sf.read(tmp_path / x.residual, dtype="float64")[0]
    g_other = math.sqrt(pw(ref) / (pw(other) * 10 ** (x.snr_db / 10)))
    two = ref + g_other * other
    left = mixture - two  # what is not the two sources: the residual, scaled
    assert abs(np.corrcoef(left, res)[0, 1]) > 0.9999
    assert db(pw(two), pw(left)) == pytest.approx(REMIX_RESIDUAL_DB, abs=1e-6)
    s = singles[0]
    mixture, ref = item_signals(tmp_path, s)
    assert db(pw(ref), pw(mixture - ref)) == pytest.approx(s.snr_db, abs=1e-6)
    np.testing.assert_allclose(ref, pool.sources[int(Path(s.target).stem[1:])], atol=1e-7)


def test_the_remix_objective_is_validated(tmp_path) -> None:
    from avscene.train.masknet import train_mask_net_for

    for bad in ({"objective": "remix", "assessor_weight": 0.1, "pair_fraction": 0.5},
                {"objective": "remix", "self_train_steps": 10}):
        with pytest.raises(UsageError):
            MaskNetTrainOptions(**bad)
    (tmp_path / "labels.csv").write_text("clip,labels\n")
    with pytest.raises(UsageError, match="--teacher-cache"):
        train_mask_net_for(tmp_path / "model", tmp_path / "labels.csv", MaskNetTrainOptions(objective="remix"))
    with pytest.raises(UsageError, match="only for --objective remix"):
        train_mask_net_for(tmp_path / "model", tmp_path / "labels.csv", MaskNetTrainOptions(),
                           teacher_cache=tmp_path / "cache")
    empty = TrainingPool(audio=[], names=[], anchors={}, background=[])
    with pytest.raises(UsageError, match="remix_pool"):
        train_mask_net(empty, None, ["a"], MaskNetTrainOptions(objective="remix", steps=1))


def test_a_short_remix_training_separates_two_tones_and_drops_the_background() -> None:
    """Remixes of 'teacher estimates' (tones of two classes) with the other class's residuals
    (noise), 300 steps of a tiny network: held-out toy mixtures of two tones (other pitches,
    phases and ratios) gain more than 3 dB on average, and a tone over noise more than 6 dB
    (the residual is in no target, so the network learns to drop it)."""
    import torch

    from avscene.train.masknet import separate_classes
    from avscene.evaluation.metrics.separation import sdr
    from test_train_masknet import _toy_gains, tone

    rng = np.random.default_rng(0)
    sources = [tone(f, rng) for f in (300, 320, 340)] + [tone(f, rng) for f in (1500, 1600, 1700)]
    residuals = [(0.05 * rng.standard_normal(2 * SR)).astype(np.float32) for _ in sources]
    pool = RemixPool(sources, residuals, ["low"] * 3 + ["high"] * 3, [((0, 2 * SR),)] * 6)
    held = RemixPool(sources[:1] + sources[3:4], residuals[:2], ["low", "high"], [((0, 2 * SR),)] * 2)
    opts = MaskNetTrainOptions(steps=300, batch=4, lr=3e-3, hidden=16, blocks=2, log_every=1000, eval_every=10**6,
                               holdout_mixtures=4, pair_fraction=0.5, overlap_weight=1.0, objective="remix",
                               mix=MixOptions(segment_seconds=0.5, speed=0.03, eq_db=3.0))
    empty = TrainingPool(audio=[], names=[], anchors={}, background=[])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net, summary = train_mask_net(empty, None, ["low", "high"], opts, remix_pool=pool, remix_holdout=held)
    finally:
        torch.set_num_threads(threads)
    assert summary["remix"]["train_clips"] == 6 and summary["holdout_remix"]["n"] == 4
    assert summary["holdout_remix_pairs"]["sdr"] > summary["holdout_remix_pairs"]["mixture_sdr"] + 3
    gains = _toy_gains(net)
    assert np.mean(gains) > 3, gains
    test = np.random.default_rng(5)
    a, noise = tone(330, test), 0.05 * test.standard_normal(2 * SR)
    with torch.no_grad():
        out, _ = separate_classes(net, torch.from_numpy((a + noise).astype(np.float32)), [0])
    assert sdr(out[0].numpy(), a) - sdr(a + noise, a) > 6


def test_the_commands_refuse_a_remix_asked_for_wrongly(tmp_path, capsys) -> None:
    from avscene.cli.app import main

    assert main(["evaluate-separation", str(tmp_path), "--remix"]) == 2
    assert "--remix goes with --pairs" in capsys.readouterr().err
    assert main(["evaluate-separation", str(tmp_path), "--pairs", "--remix", "--holdout"]) == 2
    assert "one at a time" in capsys.readouterr().err
    code = main(["train-separator", str(tmp_path / "model"), str(tmp_path / "labels.csv"), "--objective", "remix",
                 "--assessor-weight", "0.1", "--pair-fraction", "0.5"])
    assert code == 2 and "assessor" in capsys.readouterr().err


def test_the_teacher_pass_caches_each_heard_clips_source_and_residual(tmp_path, tiny_model_dir) -> None:
    """The teacher (the tiny checkpoint's default method, ncp) separates each heard clip with an
    anchor, held-out ones marked; source plus residual is the clip, as ``separate`` promises."""
    from avscene.checkpoint.load import load_pretrained
    from avscene.train.masknet_data import Segment
    from avscene.train.remix import teacher_pass

    loaded = load_pretrained(str(tiny_model_dir))
    a, b = loaded.labels[:2]
    rng = np.random.default_rng(0)
    audio = [(0.1 * rng.standard_normal(3 * SR)).astype(np.float32) for _ in range(4)]
    train = TrainingPool(audio=audio[:3], names=["x.mp4", "y.mp4", "z.mp4"],
                         anchors={a: [Segment(0, SR, 2 * SR), Segment(1, 0, SR)]}, background=[Segment(2, 0, SR)],
                         labels=[(a,), (a,), (b,)], heard=[True, False, True])  # y unheard, z no anchor
    held = TrainingPool(audio=audio[3:], names=["w.mp4"], anchors={b: [Segment(0, 0, 2 * SR)]}, background=[],
                        labels=[(b,)], heard=[True])
    cache = teacher_pass(train, held, loaded, tmp_path / "cache", manifest="labels.csv")
    assert TeacherCache.read(tmp_path / "cache") == cache
    assert cache.method == "ncp" and cache.manifest == "labels.csv"
    assert [(c.name, c.label, c.holdout, c.active) for c in cache.clips] == \
        [("x.mp4", a, False, ((SR, 2 * SR),)), ("w.mp4", b, True, ((0, 2 * SR),))]
    for c, x in zip(cache.clips, (audio[0], audio[3])):
        s, r = (sf.read(tmp_path / "cache" / p, dtype="float32")[0] for p in (c.source, c.residual))
        np.testing.assert_allclose(s + r, x, atol=1e-5)
        assert pw(s) > 0 and pw(r) > 0
