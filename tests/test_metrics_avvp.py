"""AVVP (LLP) metrics on hand-made clips whose figures are computed by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest

from avscene.errors import UsageError
from avscene.evaluation.metrics.avvp import (
    ClipParse,
    avvp_metrics,
    clip_parse,
    clip_scores,
    event_counts,
    extract_events,
    interval_segments,
    n_segments,
)

S = 10  # segments of a 10-s clip
C = 3


def roll(**rows: tuple[int, int] | list[int]) -> np.ndarray:
    """(C, S) roll from ``c0=(start, stop)`` or ``c0=[segments]``."""
    r = np.zeros((C, S), dtype=bool)
    for name, spec in rows.items():
        c = int(name[1:])
        idx = range(*spec) if isinstance(spec, tuple) else spec
        r[c, list(idx)] = True
    return r


# Clip 1. class 0: heard segs 0-4, predicted heard 2-6; seen 0-9, predicted seen 0-9.
#         class 1: predicted heard at seg 9 only (a class only in the prediction). class 2: nothing.
CLIP1 = dict(pred_a=roll(c0=(2, 7), c1=[9]), pred_v=roll(c0=(0, 10)),
             gt_a=roll(c0=(0, 5)), gt_v=roll(c0=(0, 10)))
# Clip 2. class 0 heard at segs 3-5, nothing predicted (empty prediction).
CLIP2 = dict(pred_a=roll(), pred_v=roll(), gt_a=roll(c0=(3, 6)), gt_v=roll())
# Clip 3. nothing true, nothing predicted.
CLIP3 = dict(pred_a=roll(), pred_v=roll(), gt_a=roll(), gt_v=roll())


def test_segment_level_clip1_by_hand():
    s = clip_scores(**CLIP1, level="segment")
    # audio c0: TP 3 (2,3,4), FP 2 (5,6), FN 2 (0,1): F = 6 / (6 + 4) = 0.6
    #       c1: TP 0, FP 1: F = 0 (involved through the prediction alone); c2 not involved
    #   mean (0.6 + 0) / 2 = 0.3
    assert s["audio"] == pytest.approx(0.3)
    # visual c0: TP 10: F = 1; no other class involved
    assert s["visual"] == pytest.approx(1.0)
    # audio-visual: GT c0 = 0-4, pred c0 = 2-6 (c1 has no seen segment): TP 3, FP 2, FN 2: 0.6
    assert s["audio_visual"] == pytest.approx(0.6)
    # Event@AV pools per class: c0 TP 3+10 = 13, FP 2, FN 2: 26 / 30; c1: 0.  mean 13/30
    assert s["event_av"] == pytest.approx(13 / 30)


def test_event_level_clip1_by_hand():
    s = clip_scores(**CLIP1, level="event")
    # audio c0: pred [2,7) vs GT [0,5): IoU 3/7 < 0.5: FP 1, FN 1: F 0; c1: FP 1: F 0
    assert s["audio"] == 0.0
    # visual c0: [0,10) matches [0,10): TP 1: F 1
    assert s["visual"] == pytest.approx(1.0)
    # audio-visual c0: the same runs as audio: F 0
    assert s["audio_visual"] == 0.0
    # pooled c0: TP 0+1, FP 1+0, FN 1+0: 2 / (2 + 2) = 0.5; c1: TP 0, FP 1: 0.  mean 0.25
    assert s["event_av"] == pytest.approx(0.25)


def test_empty_prediction_and_empty_clip():
    # clip 2: audio c0 TP 0, FN 3: F 0; visual and audio-visual: nothing involved: 1.0;
    # pooled c0: TP 0, FN 3: 0
    for level in ("segment", "event"):
        assert clip_scores(**CLIP2, level=level) == {"audio": 0.0, "visual": 1.0, "audio_visual": 1.0,
                                                     "event_av": 0.0}
        # clip 3: no class involved anywhere: every figure 1.0
        assert clip_scores(**CLIP3, level=level) == {"audio": 1.0, "visual": 1.0, "audio_visual": 1.0,
                                                     "event_av": 1.0}


def test_mean_over_clips_and_type_av():
    clips = [CLIP1, CLIP2, CLIP3]
    m = avvp_metrics([ClipParse(c["pred_a"], c["pred_v"]) for c in clips],
                     [ClipParse(c["gt_a"], c["gt_v"]) for c in clips])
    assert m.n_clips == 3
    # segment: audio (0.3 + 0 + 1) / 3; visual 1; audio-visual (0.6 + 1 + 1) / 3
    assert m.segment.audio == pytest.approx(1.3 / 3)
    assert m.segment.visual == pytest.approx(1.0)
    assert m.segment.audio_visual == pytest.approx(2.6 / 3)
    # Type@AV = mean of the three means = (1.3/3 + 1 + 2.6/3) / 3 = 6.9 / 9
    assert m.segment.type_av == pytest.approx(6.9 / 9)
    # Event@AV = (13/30 + 0 + 1) / 3 = 43 / 90
    assert m.segment.event_av == pytest.approx(43 / 90)
    # event: audio (0 + 0 + 1) / 3, visual 1, audio-visual (0 + 1 + 1) / 3, Event@AV (0.25 + 0 + 1) / 3
    assert m.event.audio == pytest.approx(1 / 3)
    assert m.event.audio_visual == pytest.approx(2 / 3)
    assert m.event.type_av == pytest.approx((1 / 3 + 1 + 2 / 3) / 3)
    assert m.event.event_av == pytest.approx(1.25 / 3)
    js = m.to_json()
    assert js["segment"]["type_av"] == pytest.approx(round(6.9 / 9, 6)) and js["n_clips"] == 3


def test_event_matching_at_iou_half_and_several_runs():
    row = np.zeros(S, dtype=bool)
    gt = row.copy()
    gt[[0, 1, 2, 3]] = True  # one GT event [0, 4)
    pred = row.copy()
    pred[[0, 1]] = True  # [0, 2): IoU 2/4 = 0.5, matches (>=)
    assert event_counts(pred, gt) == (1, 0, 0)
    pred = row.copy()
    pred[[0]] = True  # [0, 1): IoU 1/4: no match
    assert event_counts(pred, gt) == (0, 1, 1)
    gt2 = row.copy()
    gt2[[0, 1, 5, 6, 7]] = True  # GT [0,2) and [5,8)
    pred2 = row.copy()
    pred2[[0, 1, 6, 7, 9]] = True  # [0,2) IoU 1; [6,8) vs [5,8) IoU 2/3; [9,10) matches nothing
    assert extract_events(pred2) == [(0, 2), (6, 8), (9, 10)]
    assert event_counts(pred2, gt2) == (2, 1, 0)  # F = 4 / (4 + 1) = 0.8
    c = np.zeros((1, S), bool)
    s = clip_scores(pred2[None], c, gt2[None], c, level="event")
    assert s["audio"] == pytest.approx(0.8)


def test_intervals_to_segments_by_their_middle():
    # segment k is on when k + 0.5 is in [on, off)
    assert np.flatnonzero(interval_segments([[6.407, 9.403]], 10)).tolist() == [6, 7, 8]
    assert np.flatnonzero(interval_segments([[1.0, 9.375]], 10)).tolist() == list(range(1, 9))
    assert np.flatnonzero(interval_segments([[2.0, 5.0]], 10)).tolist() == [2, 3, 4]  # whole segments: exact
    assert np.flatnonzero(interval_segments([[0.6, 1.4]], 10)).tolist() == []  # holds no middle
    assert np.flatnonzero(interval_segments([[0.0, 0.5]], 10)).tolist() == []  # half-open at 0.5
    assert np.flatnonzero(interval_segments([[0.4, 0.6], [9.0, 10.0]], 10)).tolist() == [0, 9]
    assert n_segments(10.0) == 10 and n_segments(9.2) == 10 and n_segments(0.0) == 0
    with pytest.raises(UsageError, match="onset <= offset"):
        interval_segments([[3.0, 2.0]], 10)


def test_clip_parse_builds_rolls_per_class():
    p = clip_parse({0: [[0.0, 2.0]], 2: [[4.2, 6.7]]}, {1: [[9.0, 10.0]]}, num_classes=3, duration=10.0)
    assert p.audio.shape == (3, 10) and p.visual.shape == (3, 10)
    assert np.flatnonzero(p.audio[0]).tolist() == [0, 1]
    assert np.flatnonzero(p.audio[2]).tolist() == [4, 5, 6]  # middles 4.5, 5.5, 6.5 lie in [4.2, 6.7)
    assert not p.audio[1].any() and np.flatnonzero(p.visual[1]).tolist() == [9]


def test_bad_shapes_and_levels():
    with pytest.raises(UsageError, match="level"):
        clip_scores(**CLIP3, level="frame")
    with pytest.raises(UsageError, match="shape"):
        clip_scores(roll(), roll(), roll(), np.zeros((C, 5), bool), level="segment")
    with pytest.raises(UsageError, match="as many"):
        avvp_metrics([], [])


def test_evaluate_scores_the_localize_timing_against_the_ground_truth_intervals(tiny_model_dir, tmp_path):
    """``evaluate``'s AVVP figures are those of localize's heard/seen against avbench's intervals."""
    import json

    from avscene.checkpoint.load import load_pretrained
    from avscene.tasks.classify import ClassifyOptions
    from avscene.tasks.localize import LocalizeOptions, localize_file
    from avscene.testing.media import write_video
    from avscene.evaluation.evaluate import evaluate

    loaded = load_pretrained(str(tiny_model_dir))
    names = list(loaded.labels)
    (tmp_path / "clips").mkdir()
    gts = [{"clip": "00000", "duration": 3.0, "labels": [names[0]],
            "events": [{"class": names[0], "mode": "sync", "audio": [0.2, 2.4],
                        "visual": {"interval": [1.0, 3.0], "frames": []}}]},
           {"clip": "00001", "duration": 3.0, "labels": [names[1]],
            "events": [{"class": names[1], "mode": "offscreen", "audio": [1.0, 3.0], "visual": None}]}]
    for i, g in enumerate(gts):
        write_video(tmp_path / "clips" / f"{g['clip']}.mp4", duration=3.0, freq=300.0 + 200 * i)
    (tmp_path / "labels.csv").write_text("clip,labels\n" + "".join(f"{g['clip']},{g['labels'][0]}\n" for g in gts))
    (tmp_path / "ground_truth.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gts))
    rep = evaluate(loaded, tmp_path / "labels.csv")
    # ground truth by the middle rule, written out: clip 0 heard segs 0,1 (0.5, 1.5 in [0.2, 2.4)), seen 1,2;
    # clip 1 heard segs 1,2, never seen
    gt = [ClipParse(roll(c0=[0, 1])[:, :3], roll(c0=[1, 2])[:, :3]), ClipParse(roll(c1=[1, 2])[:, :3], roll()[:, :3])]
    gt = [ClipParse(np.pad(g.audio, ((0, len(names) - C), (0, 0))), np.pad(g.visual, ((0, len(names) - C), (0, 0))))
          for g in gt]
    opts = LocalizeOptions(classify=ClassifyOptions(threshold=loaded.config.decision_threshold))
    pred, found = [], {}
    for g in gts:
        res = localize_file(tmp_path / "clips" / f"{g['clip']}.mp4", loaded, opts)
        parsed = {p.label for p in res.classification.parse if p.heard or p.seen}
        for ev in g["events"]:
            found.setdefault(ev["mode"], []).append(ev["class"] in parsed)
        idx = {names.index(lab): t for lab, t in res.timing.items()}
        pred.append(clip_parse({c: t.heard for c, t in idx.items()}, {c: t.seen for c, t in idx.items()},
                               num_classes=len(names), duration=3.0))
    assert rep.avvp == avvp_metrics(pred, gt)
    assert rep.recall_by_mode_parse == {m: {"recall": sum(v) / len(v), "n": len(v)}
                                        for m, v in (("sync", found["sync"]), ("offscreen", found["offscreen"]))}
    assert rep.to_json()["avvp"]["n_clips"] == 2
