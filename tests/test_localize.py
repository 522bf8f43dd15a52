"""localize: box coordinates, event merging, timing, missing modalities, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avscene.errors import UsageError
from avscene.tasks.classify import ClassifyOptions
from avscene.tasks.localize import (
    LocalizeOptions,
    event_windows,
    frame_spans,
    heat,
    intervals_intersection,
    localize_file,
    merge_active,
    resolve_labels,
    window_spans,
)

LABELS = ("violin", "drum", "car")


@pytest.fixture(scope="module")
def loaded(tiny_model_dir: Path):
    from avscene.checkpoint.load import load_pretrained

    return load_pretrained(str(tiny_model_dir))


@pytest.fixture(scope="module")
def decided_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its classification streams biased so that, on any input, car is predicted
    (heard and seen), violin only seen (its visual score is positive, its audio score far below) and
    drum neither."""
    import torch

    from avscene.checkpoint.load import save_pretrained
    from avscene.testing.models import tiny_model, tiny_preprocess

    model = tiny_model(len(LABELS), seed=0)
    with torch.no_grad():  # class order: violin, drum, car
        model.visual_head.cls.bias[:] = torch.tensor([3.0, -6.0, 6.0])
        model.audio_head.cls.bias[:] = torch.tensor([-6.0, -3.0, 6.0])
    return save_pretrained(model, tmp_path_factory.mktemp("decided") / "m", labels=list(LABELS),
                           preprocess=tiny_preprocess(), training={"note": "tiny, biased classification streams"})


def test_window_spans_tile_the_clip_with_the_central_hop() -> None:
    starts = 0.48 * np.arange(20)
    spans = window_spans(np.stack([starts, starts + 0.96], axis=1), 10.0)
    assert spans[0].tolist() == [0.0, pytest.approx(0.72)]
    assert spans[1].tolist() == [pytest.approx(0.72), pytest.approx(1.20)]
    assert spans[-1].tolist() == [pytest.approx(9.36), 10.0]
    assert np.allclose(spans[1:, 0], spans[:-1, 1])  # no gap, no overlap


def test_merge_active_on_hand_made_sequences() -> None:
    spans = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]], dtype=float)
    assert merge_active([False, True, True, False, True], spans) == [(1.0, 3.0), (4.0, 5.0)]
    assert merge_active([True] * 5, spans) == [(0.0, 5.0)]
    assert merge_active([False] * 5, spans) == []
    # a span of zero length never starts an event
    assert merge_active([True, True], np.array([[0.0, 0.0], [0.0, 1.0]])) == [(0.0, 1.0)]


def test_heat_scales_to_unit_range_and_constant_is_zero() -> None:
    assert heat(np.array([-2.0, 0.0, 2.0])).tolist() == [0.0, 0.5, 1.0]
    assert heat(np.array([3.0, 3.0])).tolist() == [0.0, 0.0]


def test_intervals_intersection_and_frame_spans() -> None:
    assert intervals_intersection([(0.0, 2.0)], [(1.5, 3.0)]) == [(1.5, 2.0)]
    assert intervals_intersection([(0.0, 2.0)], [(2.0, 3.0)]) == []  # touching is not overlapping
    assert intervals_intersection([(0.0, 2.0), (4.0, 9.0)], [(1.0, 5.0), (8.0, 10.0)]) == [
        (1.0, 2.0), (4.0, 5.0), (8.0, 9.0)]
    assert frame_spans(np.array([0.5, 1.5, 9.5]), fps=1.0, duration=9.8).tolist() == [[0, 1], [1, 2], [9, 9.8]]


def test_unknown_label_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown label.*piano"):
        resolve_labels(["piano"], [], LABELS)
    assert resolve_labels(["car", "car"], ["violin"], LABELS) == ["car"]
    assert resolve_labels([], ["violin"], LABELS) == ["violin"]


def test_boxes_map_back_to_an_odd_non_square_frame(decided_dir: Path, tmp_path: Path) -> None:
    """The network sees the frame resized (shorter side = image_size); boxes come back in frame pixels."""
    from avscene.checkpoint.load import load_pretrained
    from avscene.testing.media import write_video

    loaded = load_pretrained(str(decided_dir))  # car is seen in every frame

    W, H = 161, 97  # odd, non-square, not a multiple of the CNN stride
    # FFV1 in Matroska: lossless and allows odd frame sizes (H.264 4:2:0 does not)
    clip = write_video(tmp_path / "odd.mkv", duration=2.0, fps=8, size=(W, H), box=(101, 20, 151, 80),
                       box_color=(20, 200, 20), video_codec="ffv1")
    res = localize_file(clip, loaded, LocalizeOptions(labels=("car",), boxes=3, box_mode="window",
                                                      snap=False))
    from avscene.io.decode import decode
    from avscene.proposals.visual import visual_proposals

    c = decode(clip)
    props = visual_proposals(c.frames, c.frame_times, cfg=loaded.preprocess)
    dets = res.visual["car"]
    assert len(dets) == 3 * len(c.frame_times)
    for d in dets:
        t = int(np.flatnonzero(np.isclose(props.times, d.t))[0])
        # every reported box is one of the frame's proposals, in original pixels (not network pixels)
        assert np.isclose(props.boxes[t], np.array(d.box), atol=0.05).all(axis=1).any()
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
    assert loaded.preprocess.image_size != min(W, H)  # the test does exercise a resize


def test_class_status_names_each_decision() -> None:
    from avscene.results import ClassParse
    from avscene.tasks.localize import class_status

    def parse(predicted: bool, heard: bool, seen: bool) -> ClassParse:
        return ClassParse("x", 0.0, predicted, audio_score=0.0, heard=heard, visual_score=0.0, seen=seen)

    assert class_status(parse(True, False, True), requested=False) == "predicted"
    assert class_status(parse(True, False, False), requested=True) == "predicted"  # predicted wins over asked
    assert class_status(parse(False, False, False), requested=True) == "requested"
    assert class_status(parse(False, False, True), requested=True) == "requested"
    assert class_status(parse(False, True, False), requested=False) == "heard_only"
    assert class_status(parse(False, False, True), requested=False) == "seen_only"
    assert class_status(parse(False, True, True), requested=False) == "heard_and_seen_only"


def test_boxes_only_where_seen_and_never_from_degenerate_evidence() -> None:
    from avscene.results import BoxDetection
    from avscene.tasks.localize import boxes_where_seen, informative_frames

    times = np.array([0.5, 1.5, 2.5, 3.5])
    E = np.array([[0.2, 0.1, -0.1],  # a positive window: informative
                  [-7e-5, -8e-5, -3e-3],  # no positive window: the visual stream gives nothing
                  [0.3, 0.3, 0.3],  # every window the same: the best one would be arbitrary
                  [0.0, 0.5, 0.1]])
    assert informative_frames(E).tolist() == [True, False, False, True]
    dets = [BoxDetection(t, (0.0, 0.0, 10.0, 10.0), 1.0) for t in times]
    assert [d.t for d in boxes_where_seen(dets, [(0.0, 4.0)])] == [0.5, 1.5, 2.5, 3.5]
    assert [d.t for d in boxes_where_seen(dets, [(3.0, 4.0)])] == [3.5]  # not seen before 3 s
    assert boxes_where_seen(dets, []) == ()  # never seen: no box at all


def test_status_says_why_each_class_is_reported(decided_dir: Path, clips: dict) -> None:
    from avscene.checkpoint.load import load_pretrained

    decided = load_pretrained(str(decided_dir))
    r = localize_file(clips["av"], decided)
    parse = {p.label: p for p in r.classification.parse}
    assert (parse["car"].predicted, parse["violin"].predicted, parse["violin"].seen) == (True, False, True)
    assert not parse["violin"].heard and not parse["drum"].seen and not parse["drum"].heard
    rec = json.loads(json.dumps(r.to_json()))
    assert rec["status"] == {"car": "predicted", "violin": "seen_only"}
    assert set(rec["timing"]) == set(rec["status"])  # one status per reported class
    assert rec["frame_times"] == [0.5, 1.5] and rec["event_threshold"] == 0.0
    for lab in ("car", "violin"):  # boxes in the frames it is seen, and only there
        assert rec["visual"][lab]
        assert all(any(a <= b["t"] < e for a, e in rec["timing"][lab]["seen"]) for b in rec["visual"][lab])
    asked = localize_file(clips["av"], decided, LocalizeOptions(labels=("drum", "car")))
    assert asked.status == {"drum": "requested", "car": "predicted"}
    assert asked.visual["drum"] == ()  # asked for but never seen: no box (not its best-scoring window)


def test_overlay_does_not_draw_a_class_only_seen_like_a_prediction(decided_dir: Path, tmp_path: Path,
                                                                    capsys) -> None:
    """The real pipeline (model → JSON → overlay video): violin is only seen, car predicted; in the
    rendered frames car's box has a solid left edge and violin's a dashed one."""
    from avscene.cli.app import main
    from avscene.testing.media import write_video

    src = write_video(tmp_path / "in.mp4", duration=2.0, fps=8, size=(320, 240))
    out = tmp_path / "ov.mp4"
    # the top windows, not the evidence map: on these biased streams every window scores alike, so the
    # two classes' evidence boxes would be the same box and their edges could not be told apart
    assert main(["localize", str(src), "-m", str(decided_dir), "--json", "--render", str(out),
                 "--box-mode", "window", "--no-snap"]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    assert rec["status"] == {"car": "predicted", "violin": "seen_only"}
    src_t, src_f, _ = _rgb_frames(src)
    _, out_f, _ = _rgb_frames(out)
    h = src_f[0].shape[0]
    checked = 0
    for t in rec["frame_times"]:
        k = next(i for i, x in enumerate(src_t) if x >= t)  # the first frame showing this instant ("hold")
        changed = np.abs(out_f[k] - src_f[k]).max(axis=2) > 40  # (H, W)
        boxes = {lab: [round(v) for v in next(b["box"] for b in rec["visual"][lab] if b["t"] == t)]
                 for lab in ("car", "violin")}
        drawn = {}
        for lab, (x0, y0, x1, y1) in boxes.items():  # its right edge, clear of the other box and the strip
            other = boxes["violin" if lab == "car" else "car"]
            rows = np.zeros(h, dtype=bool)
            rows[y0 + 4:min(y1, h - h // 3) - 4] = True
            if other[0] - 4 <= x1 - 1 <= other[2] + 4:  # the other box's outline or name may cross this column
                rows[max(0, other[1] - 20):other[1] + 6] = False
                rows[max(0, other[3] - 6):other[3] + 6] = False
                if abs(other[2] - x1) < 4:
                    rows[other[1]:other[3]] = False
            if rows.sum() >= 24:
                drawn[lab] = changed[rows, max(0, x1 - 3):x1].any(axis=1).mean()
        if len(drawn) == 2:
            assert drawn["car"] > 0.95, drawn  # solid
            assert 0.2 < drawn["violin"] < 0.8, drawn  # dashed: drawn on some rows, not on others
            checked += 1
    assert checked, "no instant where the two boxes' edges could be told apart"

def test_audio_only_and_video_only_inputs(loaded, clips: dict) -> None:
    a = localize_file(clips["audio_only"], loaded, LocalizeOptions(labels=LABELS))
    assert a.visual == {} and set(a.audio) == set(LABELS)
    assert a.classification.modalities == ("audio",)
    assert all(not t.seen for t in a.timing.values())
    v = localize_file(clips["video_only"], loaded, LocalizeOptions(labels=LABELS))
    assert v.audio == {} and v.events == () and set(v.visual) == set(LABELS)
    assert v.classification.modalities == ("visual",)


def test_events_follow_the_threshold_on_window_scores(loaded, clips: dict) -> None:
    heard = ClassifyOptions(audio_threshold=-1e9)  # every class heard: the window threshold alone decides
    r = localize_file(clips["av"], loaded, LocalizeOptions(labels=LABELS, event_threshold=-1e9, classify=heard))
    # every window above an impossible-to-miss threshold: one event per class covering the clip
    for lab in LABELS:
        ev = [e for e in r.events if e.label == lab]
        assert len(ev) == 1 and ev[0].onset == 0.0
        assert ev[0].offset == pytest.approx(r.classification.duration)
    r2 = localize_file(clips["av"], loaded, LocalizeOptions(labels=LABELS, event_threshold=1e9, classify=heard))
    # no window clears the threshold: a heard class keeps its best window as its one event
    for lab in LABELS:
        ev = [e for e in r2.events if e.label == lab]
        best = max(r2.audio[lab], key=lambda x: x.score)
        assert len(ev) == 1 and ev[0].onset < best.end and ev[0].offset > best.start  # its span lies in it
    deaf = ClassifyOptions(audio_threshold=1e9, threshold=1e9)  # no class heard or predicted: no event
    r3 = localize_file(clips["av"], loaded, LocalizeOptions(labels=LABELS, event_threshold=-1e9, classify=deaf))
    assert r3.events == () and all(not t.heard and not t.both for t in r3.timing.values())
    # predicted but not heard: events where the windows are positive, and no best-window fallback
    told = ClassifyOptions(audio_threshold=1e9, threshold=-1e9)
    r4 = localize_file(clips["av"], loaded, LocalizeOptions(labels=LABELS, event_threshold=-1e9, classify=told))
    assert {e.label for e in r4.events} == set(LABELS)
    r5 = localize_file(clips["av"], loaded, LocalizeOptions(labels=LABELS, event_threshold=1e9, classify=told))
    assert r5.events == ()
    only_heard = LocalizeOptions(labels=LABELS, event_threshold=-1e9, classify=told, event_classes="heard")
    assert localize_file(clips["av"], loaded, only_heard).events == ()
    # heat is the per-class min-max of the window scores
    segs = r.audio["violin"]
    s = np.array([x.score for x in segs])
    assert np.allclose([x.heat for x in segs], (s - s.min()) / (s.max() - s.min()), atol=1e-3)


def test_cli_localize_json_tsv_and_render(tiny_model_dir: Path, clips: dict, tmp_path: Path, capsys) -> None:
    from avscene.cli.app import main

    out_video, events, scores = tmp_path / "ov.mp4", tmp_path / "ev.tsv", tmp_path / "scores"
    code = main(["localize", str(clips["av"]), "-m", str(tiny_model_dir), "--label", "drum", "--json",
                 "--event-threshold", "-1e9", "--audio-threshold", "-1e9", "--visual-threshold", "-1e9", "--render", str(out_video), "--events-tsv", str(events),
                 "--scores-tsv", str(scores)])
    out, err = capsys.readouterr()
    assert code == 0, err
    rec = json.loads(out)[0]
    for key in ("file", "duration", "modalities", "labels", "predicted", "model", "visual", "audio", "events"):
        assert key in rec
    assert set(rec["visual"]) == {"drum"} and rec["events"][0]["label"] == "drum"
    assert events.read_text().splitlines()[0] == "filename\tonset\toffset\tevent_label\tmodality"
    assert events.read_text().splitlines()[1].split("\t")[0] == clips["av"].name
    header = (scores / f"{clips['av'].stem}.tsv").read_text().splitlines()[0].split("\t")
    assert header[:2] == ["onset", "offset"] and set(header[2:]) == set(LABELS)
    check_overlay(clips["av"], out_video, rec["visual"]["drum"], rec["timing"]["drum"]["seen"])
    # an existing overlay is not overwritten without --force: that input fails, exit code 1
    code = main(["localize", str(clips["av"]), "-m", str(tiny_model_dir), "--render", str(out_video), "--jsonl", "-"])
    _, err = capsys.readouterr()
    assert code == 1 and "--force" in err


def _rgb_frames(path: Path) -> tuple[list[float], list[np.ndarray], object]:
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        rate = v.average_rate
        frames = [(f.time, f.to_ndarray(format="rgb24").astype(int)) for f in c.decode(v)]
    return [t for t, _ in frames], [f for _, f in frames], rate


def check_overlay(src: Path, overlay: Path, boxes: list[dict], seen: list[list[float]]) -> None:
    """The overlay has the source's frames (count, times, rate) and sound, and the strongest
    box of an instant where the class is seen (the overlay draws boxes only there: io/draw.py)
    drawn where the result puts it: its left edge changed, the picture away from the box,
    its label and the heat strip (bottom third at most) unchanged up to coding noise. A class
    never seen has nothing drawn above the heat strip."""
    from avscene.io.decode import read_audio

    src_t, src_f, src_rate = _rgb_frames(src)
    out_t, out_f, out_rate = _rgb_frames(overlay)
    assert out_rate == src_rate and np.allclose(out_t, src_t, atol=1e-3)
    shown = [b for b in boxes if any(a <= b["t"] < e for a, e in seen)]
    h, w = src_f[0].shape[:2]
    if not shown:  # the class is never seen: no box and no label anywhere above the heat strip
        for f_out, f_src in zip(out_f, src_f):
            changed = np.abs(f_out - f_src).max(axis=2) > 40
            assert changed[: h - h // 3 - 1].mean() < 0.01, "a box drawn where the class is not seen"
    else:
        best = max(shown, key=lambda b: b["score"])
        k = next(i for i, t in enumerate(src_t) if t >= best["t"])  # a frame showing it ("hold")
        x0, y0, x1, y1 = (round(v) for v in best["box"])
        changed = np.abs(out_f[k] - src_f[k]).max(axis=2) > 40  # (H, W)
        edge_rows = slice(y0, max(y0 + 1, min(y1, h - h // 3)))
        # the outline (2 px, blurred by 4:2:0 chroma) lies within 2 px of the box's left side
        assert changed[edge_rows, max(0, x0 - 2):x0 + 3].any(axis=1).mean() > 0.8, "no box edge where the box is"
        away = np.ones((h, w), dtype=bool)
        away[max(0, y0 - 14):y1 + 2, max(0, x0 - 2):max(x1, x0 + 48) + 2] = False  # box and label
        away[h - h // 3 - 1:] = False  # heat strip
        assert changed[away].mean() < 0.05, "the picture changed away from the box"
    a, b = read_audio(src), read_audio(overlay)
    assert abs(len(b) - len(a)) < 0.05 * len(a)
    spectrum = np.abs(np.fft.rfft(b[: len(a)]))
    assert abs(np.argmax(spectrum) * 16000 / len(a[: len(b)]) - 440.0) < 2.0  # the tone is kept
    assert 0.8 < np.sqrt(np.mean(b**2)) / np.sqrt(np.mean(a**2)) < 1.25


def test_cli_render_template_needs_name_for_several_inputs(tiny_model_dir: Path, clips: dict, tmp_path: Path,
                                                          capsys) -> None:
    from avscene.cli.app import main

    code = main(["localize", str(clips["av"]), str(clips["video_only"]), "-m", str(tiny_model_dir),
                 "--render", str(tmp_path / "one.mp4")])
    _, err = capsys.readouterr()
    assert code == 2 and "{name}" in err
    assert not (tmp_path / "one.mp4").exists()


def test_events_tsv_refuses_a_tab_in_a_file_name_before_any_output(tiny_model_dir: Path, clips: dict,
                                                                    tmp_path: Path, capsys) -> None:
    import shutil

    from avscene.cli.app import main

    good, tabbed = tmp_path / "good.mp4", tmp_path / "a\tb.mp4"
    shutil.copyfile(clips["av"], good)
    shutil.copyfile(clips["av"], tabbed)
    out = tmp_path / "out"
    code = main(["localize", str(good), str(tabbed), "-m", str(tiny_model_dir), "--events-tsv", str(out / "ev.tsv"),
                 "--render", str(out / "{name}.mp4"), "--scores-tsv", str(out / "scores"),
                 "--jsonl", str(out / "log.jsonl")])
    _, err = capsys.readouterr()
    assert code == 2 and "contains a tab or line break" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing was written: not the overlays, scores or log of the good input


def test_event_windows_on_hand_made_rows() -> None:
    E = np.array([-0.1, 0.2, -0.05, -0.3, 0.0, -0.2, 0.1])
    A = np.array([-0.4, 1.5, -0.3, -0.9, -0.6, -0.2, 0.7])
    plain = LocalizeOptions(event_low=None)
    assert event_windows(E, A, plain, fallback=True).tolist() == (E > 0).tolist()
    # hysteresis: from the seeds (E > 0) through the neighbours whose A stays above -0.5
    hys = LocalizeOptions(event_low=-0.5)
    assert event_windows(E, A, hys, fallback=True).astype(int).tolist() == [1, 1, 1, 0, 0, 1, 1]
    # a median filter of 3 fills the one-window gap of the plain threshold at 1
    med = LocalizeOptions(event_low=None, event_median=3)
    assert event_windows(np.array([1, -1, 1, 1, -1, -1, -1.0]), A, med, fallback=True).astype(int).tolist() == [
        1, 1, 1, 1, 0, 0, 0]
    # clip-relative: A at least half the best A (1.5)
    rel = LocalizeOptions(event_fraction=0.5)
    assert event_windows(E, A, rel, fallback=True).astype(int).tolist() == [0, 1, 0, 0, 0, 0, 0]
    # nothing active: the best window alone with the fallback, nothing without
    none = -np.ones(4)
    assert event_windows(none + np.array([0, 0.5, 0, 0]), none, plain, fallback=True).tolist() == [
        False, True, False, False]
    assert not event_windows(none, none, plain, fallback=False).any()
    with pytest.raises(UsageError, match="odd"):
        LocalizeOptions(event_median=2)
    with pytest.raises(UsageError, match="event classes"):
        LocalizeOptions(event_classes="seen")


def test_evidence_boxes_fill_up_to_n_and_stay_in_the_frame(decided_dir: Path, clips: dict) -> None:
    from avscene.checkpoint.load import load_pretrained
    from avscene.io.decode import probe

    decided = load_pretrained(str(decided_dir))  # car is seen there, so it has boxes
    info = probe(clips["av"])
    for snap in (False, True):
        res = localize_file(clips["av"], decided, LocalizeOptions(labels=("car",), boxes=3, snap=snap))
        dets = res.visual["car"]
        assert len(dets) == 3 * len({d.t for d in dets}) and [d.rank for d in dets[:3]] == [1, 2, 3]
        for d in dets:
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 < x1 <= info.width and 0 <= y0 < y1 <= info.height


def test_erase_boxes_start_from_the_evidence_box_and_only_grow(decided_dir: Path, clips: dict) -> None:
    from avscene.checkpoint.load import load_pretrained
    from avscene.io.decode import probe

    decided = load_pretrained(str(decided_dir))  # car is seen there, so it has boxes
    info = probe(clips["av"])

    def boxes(**kw) -> list:
        res = localize_file(clips["av"], decided, LocalizeOptions(labels=("car",), snap=False, **kw))
        return [(d.t, np.array(d.box)) for d in res.visual["car"]]

    evidence, one, erased = boxes(), boxes(box_mode="erase", erase_rounds=1), boxes(box_mode="erase")
    assert evidence and [t for t, _ in erased] == [t for t, _ in evidence]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(one, evidence))  # one round: the evidence box
    for (_, e), (_, g) in zip(evidence, erased):  # the union of the regions found contains the first
        assert g[0] <= e[0] and g[1] <= e[1] and g[2] >= e[2] and g[3] >= e[3]
        assert 0 <= g[0] < g[2] <= info.width and 0 <= g[1] < g[3] <= info.height


def test_erase_options_are_checked() -> None:
    with pytest.raises(UsageError, match="needs evidence weight 'A'"):
        LocalizeOptions(box_mode="erase", evidence_weight="E")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(UsageError, match="erase rounds"):
            LocalizeOptions(box_mode="erase", erase_rounds=bad)
    with pytest.raises(UsageError, match="'erase'"):  # the modes are listed
        LocalizeOptions(box_mode="erasing")


def test_cli_refuses_zero_erase_rounds(tiny_model_dir: Path, clips: dict, capsys) -> None:
    from avscene.cli.app import main

    for cmd in (["localize", str(clips["av"])], ["evaluate", str(clips["av"])]):
        code = main([*cmd, "-m", str(tiny_model_dir), "--box-mode", "erase", "--erase-rounds", "0"])
        _, err = capsys.readouterr()
        assert code == 2 and "--erase-rounds" in err
