"""The two-source separation evaluation (``evaluate-separation --pairs``) on a tiny hand-made split.

Stems are sines of whole cycles, so two of them at different frequencies are orthogonal and the
expected numbers follow by hand: the mixture's SDR against a stem is the stem-to-rest power
ratio (BSS Eval's 512-tap filter of a sine spans only that sine's frequency), a perfect estimate
has an unbounded SDR, and the ideal ratio mask of two sines 100+ STFT bins apart is all but
exact.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avscene.evaluation.evaluate_pairs import (
    IRM,
    MIXTURE,
    clip_items,
    duet_items,
    format_pair_rows,
    holdout_items,
    mix_at_snr,
    pair_kind,
    run_pairs,
)

SR = 16000
N = 4 * SR
# clip -> class -> (frequency Hz, amplitude); each class sounds over [0.5, 3.5] s in the ground truth
SPLIT = {"c0": {"violin": (440.0, 0.3), "car": (2000.0, 0.1)},
         "c1": {"flute": (700.0, 0.2)},
         "c2": {"alarm": (3000.0, 0.2), "ambulance": (1200.0, 0.2)}}
PERFECT = "perfect"


def sine(freq: float, amp: float) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(N) / SR)


@pytest.fixture()
def split(tmp_path) -> Path:
    (tmp_path / "clips").mkdir()
    with (tmp_path / "ground_truth.jsonl").open("w") as gt:
        for clip, classes in SPLIT.items():
            (tmp_path / "stems" / clip).mkdir(parents=True)
            for c, (f, a) in classes.items():
                sf.write(tmp_path / "stems" / clip / f"{c}.flac", sine(f, a), SR, subtype="PCM_24")
            sf.write(tmp_path / "clips" / f"{clip}.wav", sum(sine(f, a) for f, a in classes.values()), SR,
                     subtype="FLOAT")
            events = [{"class": c, "audio": [0.5, 3.5]} for c in classes]
            events.append({"class": "piano", "audio": None})  # seen, not heard: never a source
            gt.write(json.dumps({"clip": clip, "events": events}) + "\n")
    return tmp_path


def perfect_estimator(split: Path):
    def estimate(mixture: np.ndarray, item) -> dict[str, np.ndarray]:
        ref, _ = sf.read(split / item.target, dtype="float64")
        return {PERFECT: ref}
    return estimate


def test_clips_with_two_sounding_classes_score_as_derived_by_hand(split) -> None:
    items = clip_items(split)
    assert sorted((i.name, i.other, i.kind) for i in items) == [
        ("c0/car", "violin", "instrument+street"), ("c0/violin", "car", "instrument+street"),
        ("c2/alarm", "ambulance", "street+street"), ("c2/ambulance", "alarm", "street+street")]
    rep = run_pairs(split, items, perfect_estimator(split), model={"id": "toy"}, seed=0, per_cell=1)
    assert not rep.failed and rep.methods == (PERFECT, MIXTURE, IRM)
    by = {r.item.name: r.scores for r in rep.results}
    # stem-to-rest power ratios: 20 log10(0.3 / 0.1) = +9.54 dB, its opposite, and 0 dB
    for name, expected in (("c0/violin", 9.542), ("c0/car", -9.542), ("c2/alarm", 0.0), ("c2/ambulance", 0.0)):
        assert by[name][MIXTURE].si_sdr == pytest.approx(expected, abs=0.01)
        assert by[name][MIXTURE].sdr == pytest.approx(expected, abs=0.3)  # the 512-tap filter's edges
        assert by[name][MIXTURE].sdr_improvement == 0.0
        assert by[name][IRM].sdr > 30
        assert by[name][PERFECT].sdr > 80 or math.isinf(by[name][PERFECT].sdr)
        assert by[name][PERFECT].sdr_improvement > 80 - expected
    summary = rep.summary()["clips"]
    assert summary[MIXTURE]["instrument+street"]["si_sdr"] == pytest.approx(0.0, abs=0.01)  # +9.54 and -9.54
    assert summary[MIXTURE]["all"]["n"] == 4
    groups, rows = format_pair_rows(rep, "clips", "sdr")
    assert groups == ["instrument+street", "street+street", "all"] and rows[-1] == ("n", "2", "2", "4")


def test_duets_mix_at_the_asked_ratio_and_are_deterministic_by_seed(split) -> None:
    items = duet_items(split, per_cell=2, seed=3)
    assert items == duet_items(split, per_cell=2, seed=3)
    assert {i.snr_db for i in items} == {-5.0, 0.0, 5.0}
    for i in items:
        a, b = i.target.split("/")[1], i.interferer.split("/")[1]
        assert a != b and i.label != i.other and i.kind == pair_kind(i.label, i.other)
    # instrument+instrument: violin and flute (two clips), both orders
    ii = [i for i in items if i.kind == "instrument+instrument"]
    assert len(ii) == 6 and {(i.label, i.other) for i in ii} <= {("violin", "flute"), ("flute", "violin")}
    rep = run_pairs(split, items, perfect_estimator(split), model={"id": "toy"}, seed=3, per_cell=2)
    for r in rep.results:
        assert r.scores[MIXTURE].si_sdr == pytest.approx(r.item.snr_db, abs=0.01)
        assert r.scores[MIXTURE].sdr == pytest.approx(r.item.snr_db, abs=0.3)
        assert r.scores[IRM].sdr > 30
    summary = rep.summary()["duets"][MIXTURE]
    assert summary["-5 dB"]["si_sdr"] == pytest.approx(-5.0, abs=0.01) and summary["+5 dB"]["n"] == 6
    assert summary["street+street +0"]["si_sdr"] == pytest.approx(0.0, abs=0.01)
    seeds = {tuple(i.name for i in duet_items(split, per_cell=2, seed=s)) for s in range(6)}
    assert len(seeds) > 1  # the seed draws the pairs


def test_mix_at_snr_sets_the_power_ratio() -> None:
    t, x = sine(440.0, 0.5), sine(900.0, 0.01)
    for snr in (-5.0, 0.0, 5.0):
        rest = mix_at_snr(t, x, snr) - t
        assert 10 * np.log10(np.mean(t ** 2) / np.mean(rest ** 2)) == pytest.approx(snr, abs=1e-9)


def test_holdout_pairs_never_pair_a_class_with_itself() -> None:
    clips = [("a.mp4", "violin"), ("b.mp4", "violin"), ("c.mp4", "car"), ("d.mp4", "flute")]
    items = holdout_items(clips, per_cell=10, seed=0)
    assert items and all(i.label != i.other and i.target != i.interferer for i in items)
    assert {i.kind for i in items} == {"instrument+instrument", "instrument+street", "instrument+ambience",
                                       "street+ambience"}
    alone = [i for i in items if i.other == "ambience"]
    assert [i.target for i in alone] == [p for p, _ in clips]  # each clip once over ambience
    assert items == holdout_items(clips, per_cell=10, seed=0)


def test_the_default_is_ranked_on_the_holdout_by_each_methods_default_row() -> None:
    from avscene.evaluation.evaluate_pairs import PairItem, PairResult, PairScores, PairsReport, method_ranking

    def result(set_name: str, **sdrs: float) -> PairResult:
        item = PairItem(set_name, "x", "instrument+instrument", 0.0, "violin", "flute", "a")
        return PairResult(item, {row: PairScores(v, v, v) for row, v in sdrs.items()})

    rows = {"hybrid": "avscene hybrid, label known", "mask": "avscene mask network, label known",
            "dictionary": "supervised NMF", "soft": "avscene soft, label known", "tau": "avscene τ=0.1, label known"}
    results = (result("holdout", **{rows["hybrid"]: 2.0, rows["mask"]: 3.0, rows["dictionary"]: 1.0,
                                     rows["soft"]: 0.0, rows["tau"]: 9.0}),
               result("holdout", **{rows["hybrid"]: 2.0, rows["mask"]: -1.0, rows["dictionary"]: 1.0,
                                     rows["soft"]: 0.0, rows["tau"]: 9.0}),
               result("clips", **{rows["mask"]: 50.0}))  # another set: never chosen on
    rep = PairsReport({"id": "m"}, "train", 0, 1, tuple(rows.values()), results)
    assert method_ranking(rep) == [("hybrid", 2.0), ("mask", 1.0), ("dictionary", 1.0), ("ncp", 0.0)]


def test_set_default_is_refused_off_the_training_holdout(split, tiny_model_dir, capsys) -> None:
    from avscene.cli.app import main

    before = (tiny_model_dir / "config.json").read_text()
    code = main(["evaluate-separation", str(split), "--pairs", "--set-default", "--model", str(tiny_model_dir)])
    _, err = capsys.readouterr()
    assert code == 2 and "hold-out" in err
    assert (tiny_model_dir / "config.json").read_text() == before
