"""Tests of avscene.io.render: the overlay video keeps timing, audio and size, and draws in place."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avscene.errors import DecodeError, OutputError, UsageError
from avscene.io.draw import PALETTE
from avscene.io.render import render_overlay
from avscene.results import (
    AudioSegment, BoxDetection, ClassifyResult, Event, Label, LocalizeResult, ModelRef, Timing,
)
from avscene.testing.media import index_colour, write_audio, write_video

INFERNO_LOW = (0, 0, 4)  # inferno colour map at 0 (near black)
INFERNO_HIGH = (252, 255, 164)  # inferno colour map at 1 (pale yellow)


def _result(file: Path | str, duration: float, *, visual: dict | None = None,
            audio: dict | None = None, seen: dict | None = None, status: dict | None = None,
            events: tuple[Event, ...] = (), event_threshold: float = 0.0) -> LocalizeResult:
    """A result reporting every class of ``visual`` and ``audio`` (``status``: predicted unless given);
    each class of ``visual`` is seen throughout unless ``seen`` says when."""
    cls = ClassifyResult(file=str(file), duration=duration, modalities=("audio", "visual"),
                         labels=(Label("dog", 1.0),), predicted=("dog",), threshold=0.0,
                         model=ModelRef("test"))
    seen = {c: () for c in audio or {}} | {c: ((0.0, duration),) for c in visual or {}} | (seen or {})
    timing = {c: Timing(heard=(), seen=tuple(iv), overlap=False) for c, iv in seen.items()}
    status = {c: "predicted" for c in timing} | (status or {})
    return LocalizeResult(classification=cls, visual=visual or {}, audio=audio or {}, timing=timing, status=status,
                          events=events, event_threshold=event_threshold)


def _score_track(scores: list[float]) -> tuple[AudioSegment, ...]:
    """Windows of 0.96 s every 0.48 s with the given scores E (heat: their min-max, which the strip ignores)."""
    lo, hi = min(scores), max(scores)
    return tuple(AudioSegment(0.48 * i, 0.48 * i + 0.96, e, (e - lo) / ((hi - lo) or 1)) for i, e in enumerate(scores))


def _luma(rgb: np.ndarray) -> float:
    return float(np.dot(rgb, [0.299, 0.587, 0.114]))


def _decode(path: Path) -> tuple[list[np.ndarray], list[Fraction]]:
    """All frames (H, W, 3) RGB and their presentation times in seconds."""
    with av.open(str(path)) as c:
        frames, times = [], []
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(f.pts * f.time_base)
    return frames, times


def _stream_info(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        return {
            "rate": v.average_rate if v else None,
            "size": (v.codec_context.width, v.codec_context.height) if v else None,
            "audio_rate": a.codec_context.sample_rate if a else None,
            "channels": a.codec_context.layout.nb_channels if a else None,
            "audio_codec": a.codec_context.name if a else None,
            "video_codec": v.codec_context.name if v else None,
        }


def _mean(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    return img[y0:y1, x0:x1].reshape(-1, 3).astype(np.float64).mean(axis=0)


# --------------------------------------------------------------------------- timing and streams


def test_output_keeps_frames_duration_and_audio(tmp_path):
    src = write_video(tmp_path / "in.mp4", duration=2.0, fps=8, size=(64, 48), audio_rate=16000)
    seen = []
    report = render_overlay(src, _result(src, 2.0), tmp_path / "out.mp4",
                            progress=lambda done, total: seen.append((done, total)))
    assert report.frames == 16 and report.has_audio and not report.padded
    assert report.duration == pytest.approx(2.0)
    assert (report.width, report.height) == (64, 48)
    assert seen == [(k, 16) for k in range(1, 17)]
    _, times_in = _decode(src)
    _, times_out = _decode(report.path)
    assert times_out == times_in
    info = _stream_info(report.path)
    assert info["rate"] == 8 and info["size"] == (64, 48) and info["video_codec"] == "h264"
    assert (info["audio_codec"], info["audio_rate"], info["channels"]) == ("aac", 16000, 1)


def test_ntsc_rate_is_kept_exactly(tmp_path):
    src = write_video(tmp_path / "in.mp4", duration=1.0, fps=30000 / 1001, audio_codec=None)
    report = render_overlay(src, _result(src, 1.0), tmp_path / "out.mp4")
    assert _stream_info(report.path)["rate"] == Fraction(30000, 1001)
    _, times_in = _decode(src)
    _, times_out = _decode(report.path)
    assert len(times_out) == 30 and times_out == times_in
    assert times_out[1] == Fraction(1001, 30000)


def test_variable_frame_rate_timestamps_are_kept(tmp_path):
    t = [0.0, 0.1, 0.15, 0.4, 0.45, 0.9, 1.3]
    src = write_video(tmp_path / "in.mp4", duration=1.4, frame_times=t, audio_codec=None)
    report = render_overlay(src, _result(src, 1.4), tmp_path / "out.mp4")
    _, times_out = _decode(report.path)
    assert [float(x) for x in times_out] == pytest.approx(t)


def test_stereo_44k_and_a_non_aac_rate(tmp_path):
    src = write_video(tmp_path / "in.mp4", duration=1.0, audio_rate=44100, channels=2)
    info = _stream_info(render_overlay(src, _result(src, 1.0), tmp_path / "out.mp4").path)
    assert (info["audio_rate"], info["channels"]) == (44100, 2)
    # 37.8 kHz is not an AAC rate: resampled to the next higher one, 44.1 kHz.
    src = write_video(tmp_path / "odd.mkv", duration=1.0, audio_codec="pcm_s16le", audio_rate=37800)
    info = _stream_info(render_overlay(src, _result(src, 1.0), tmp_path / "odd_out.mp4").path)
    assert (info["audio_codec"], info["audio_rate"], info["channels"]) == ("aac", 44100, 1)


def test_video_only_input_gives_video_only_output(tmp_path):
    src = write_video(tmp_path / "in.mp4", duration=1.0, audio_codec=None)
    report = render_overlay(src, _result(src, 1.0), tmp_path / "out.mp4")
    assert not report.has_audio
    assert _stream_info(report.path)["audio_codec"] is None


@pytest.mark.parametrize("size", [(17, 13), (33, 21)])
def test_odd_sizes_are_padded_by_one_edge_pixel(tmp_path, size):
    src = write_video(tmp_path / "in.mp4", duration=1.0, size=size, video_codec="mpeg4", audio_codec=None)
    report = render_overlay(src, _result(src, 1.0), tmp_path / "out.mp4")
    w, h = size
    assert report.padded and (report.width, report.height) == (w + 1, h + 1)
    frames, _ = _decode(report.path)
    assert len(frames) == 8 and frames[0].shape == (h + 1, w + 1, 3)
    want = np.array(index_colour(0), dtype=np.float64)
    np.testing.assert_allclose(_mean(frames[0], w, 0, w + 1, h + 1), want, atol=12)  # padded column
    np.testing.assert_allclose(_mean(frames[0], 0, h, w + 1, h + 1), want, atol=12)  # padded row


def test_rotated_input_is_rendered_upright(tmp_path):
    # White block in the coded top-left; a 90° counter-clockwise display rotation shows it bottom-left.
    src = write_video(tmp_path / "in.mp4", duration=0.5, size=(64, 48), box=(0, 0, 16, 16),
                      rotation=90, audio_codec=None)
    report = render_overlay(src, _result(src, 0.5), tmp_path / "out.mp4")
    assert (report.width, report.height) == (48, 64)
    img = _decode(report.path)[0][0]
    assert _mean(img, 2, 50, 14, 62).min() > 230  # bottom-left: white
    assert _mean(img, 2, 2, 14, 14).max() < 200  # top-left: frame colour


# --------------------------------------------------------------------------- drawing


def _shows_box(img: np.ndarray, k: int, box: tuple[int, int, int, int], colour=PALETTE[0]) -> bool:
    """Whether frame ``k``'s box outline (its left edge band) is nearer the class colour than the background."""
    x0, y0, _, y1 = box
    got = _mean(img, x0, y0 + 8, x0 + 2, y1 - 8)
    return bool(np.abs(got - np.array(colour)).mean() < np.abs(got - np.array(index_colour(k), float)).mean())


def test_boxes_are_drawn_in_place_with_score_opacity(tmp_path):
    size = (320, 240)  # outline thickness round(240/150) = 2 px
    src = write_video(tmp_path / "in.mp4", duration=2.0, fps=8, size=size, audio_codec=None)
    box = (80, 60, 240, 200)
    # 2 sampled frames: opacity 0.5 + 0.5 * clip(E * 2, 0, 1): E = 0.1 → 0.6, E = 5 → 1
    weak, strong = BoxDetection(0.5, box, 0.1), BoxDetection(1.5, box, 5.0)
    report = render_overlay(src, _result(src, 2.0, visual={"dog": (weak, strong)}), tmp_path / "out.mp4")
    frames, _ = _decode(report.path)
    colour = np.array(PALETTE[0], dtype=np.float64)
    for k in (2, 14):  # t = 0.25 (before the first instant: weak box), t = 1.75 (strong box)
        bg = np.array(index_colour(k), dtype=np.float64)
        img = frames[k]
        # Away from the box and inside it the frame is untouched.
        np.testing.assert_allclose(_mean(img, 10, 220, 60, 235), bg, atol=6)
        np.testing.assert_allclose(_mean(img, 120, 100, 200, 160), bg, atol=6)
        alpha = 0.6 if k == 2 else 1.0
        x0, y0, _, y1 = box
        got = _mean(img, x0, y0 + 8, x0 + 2, y1 - 8)
        np.testing.assert_allclose(got, alpha * colour + (1 - alpha) * bg, atol=25)
        # The name plate above the box is opaque, whatever the box's opacity.
        np.testing.assert_allclose(_mean(img, x0 + 1, y0 - 3, x0 + 3, y0 - 1), colour, atol=25)


def test_opacity_is_one_scale_for_every_class(tmp_path):
    # Two classes with the same score: the same opacity, though their score ranges differ.
    src = write_video(tmp_path / "in.mp4", duration=2.0, fps=8, size=(320, 240), audio_codec=None)
    a, b = (20, 40, 140, 220), (180, 40, 300, 220)
    dets = {"dog": (BoxDetection(0.5, a, 0.2), BoxDetection(1.5, a, 0.2)),
            "car": (BoxDetection(0.5, b, 0.2), BoxDetection(1.5, b, 9.0))}
    frames, _ = _decode(render_overlay(src, _result(src, 2.0, visual=dets), tmp_path / "out.mp4").path)
    k = 6  # t = 0.75: the instant 0.5, both at E = 0.2 → alpha 0.5 + 0.5 * 0.4 = 0.7
    bg = np.array(index_colour(k), dtype=np.float64)
    for box, colour in ((a, PALETTE[0]), (b, PALETTE[1])):
        got = _mean(frames[k], box[0], box[1] + 8, box[0] + 2, box[3] - 8)
        np.testing.assert_allclose(got, 0.7 * np.array(colour) + 0.3 * bg, atol=25)


def test_boxes_only_where_the_class_is_seen(tmp_path):
    src = write_video(tmp_path / "in.mp4", duration=2.0, fps=8, size=(320, 240), audio_codec=None)
    box = (80, 60, 240, 200)
    dets = (BoxDetection(0.5, box, 5.0), BoxDetection(1.5, box, 5.0))
    result = _result(src, 2.0, visual={"dog": dets}, seen={"dog": ((1.0, 2.0),)})  # not seen in [0, 1)
    frames, _ = _decode(render_overlay(src, result, tmp_path / "out.mp4").path)
    drawn = [_shows_box(f, k, box) for k, f in enumerate(frames)]
    assert drawn == [k >= 12 for k in range(16)]  # from the instant 1.5 s on ("hold")


@pytest.mark.parametrize(("hold", "switch_frame"), [("hold", 12), ("nearest", 8)])
def test_box_hold_modes(tmp_path, hold, switch_frame):
    # Instants 0.5 s (box A) and 1.5 s (box B); frame k is at k/8 s.
    src = write_video(tmp_path / "in.mp4", duration=2.0, fps=8, size=(320, 240), audio_codec=None)
    a, b = (20, 20, 140, 220), (180, 20, 300, 220)
    dets = (BoxDetection(0.5, a, 1.0), BoxDetection(1.5, b, 1.0))
    report = render_overlay(src, _result(src, 2.0, visual={"dog": dets}), tmp_path / "out.mp4",
                            box_hold=hold)
    frames, _ = _decode(report.path)
    shows_b = [_shows_box(f, k, b) for k, f in enumerate(frames)]
    shows_a = [_shows_box(f, k, a) for k, f in enumerate(frames)]
    assert shows_b == [k >= switch_frame for k in range(16)]
    assert shows_a == [k < switch_frame for k in range(16)]


def test_heatmap_strip_fills_the_bottom_rows(tmp_path):
    # 96 px high, two classes: no room for named rows (3 x 12 px > a third), so one 4-px row per class
    # (round(96/24)) and no legend: the strip is rows 88..95.
    src = write_video(tmp_path / "in.mp4", duration=2.0, fps=8, size=(128, 96), audio_codec=None)
    # 2-s clip, windows every 0.48 s: spans [0, .72), [.72, 1.2), [1.2, 1.68), [1.68, 2]
    audio = {"dog": _score_track([-1, -1, 1, 1]), "car": _score_track([1, 1, -1, -1])}
    events = (Event("car", 0.0, 1.2), Event("dog", 1.2, 2.0))
    report = render_overlay(src, _result(src, 2.0, audio=audio, events=events), tmp_path / "out.mp4")
    frames, _ = _decode(report.path)
    img = frames[0]  # playhead at x = 0
    low, high = np.array(INFERNO_LOW, float), np.array(INFERNO_HIGH, float)
    # column x covers t = (x + .5) * 2 / 128: x < 76 is before 1.2 s
    np.testing.assert_allclose(_mean(img, 10, 89, 70, 91), low, atol=20)  # dog row, early
    np.testing.assert_allclose(_mean(img, 82, 89, 124, 91), high, atol=20)  # dog row, late
    np.testing.assert_allclose(_mean(img, 10, 93, 70, 95), high, atol=20)  # car row, early
    np.testing.assert_allclose(_mean(img, 82, 93, 124, 95), low, atol=20)  # car row, late
    np.testing.assert_allclose(_mean(img, 0, 40, 128, 86), index_colour(0), atol=6)  # above: untouched


def test_heat_strip_is_dark_under_the_event_threshold_and_bright_over_it(tmp_path):
    """One absolute scale anchored at the event threshold: a window is bright exactly where the
    result has a sound event of its class; a class with scores over the threshold but no event
    (not heard) stays dark; and a legend row above the cells."""
    # 288 px high: 12-px named rows, a legend row on top: legend 252..263, dog 264..275, car 276..287
    src = write_video(tmp_path / "in.mp4", duration=2.0, fps=8, size=(320, 288), audio_codec=None)
    scores = [0.1, 0.2, 0.5, 0.9]  # windows [0, .72), [.72, 1.2), [1.2, 1.68), [1.68, 2]
    audio = {"dog": _score_track(scores), "car": _score_track(scores)}
    events = (Event("dog", 1.2, 2.0),)  # dog is heard where its scores clear 0.3; car is not heard
    img = _decode(render_overlay(src, _result(src, 2.0, audio=audio, events=events, event_threshold=0.3),
                                 tmp_path / "out.mp4").path)[0][0]
    # cells span [x0, 320) with 20 <= x0 <= 320 / 3 (the names' margin): whatever x0, these columns lie
    # in window 1 (E = 0.2, under the threshold), window 2 (0.5) and window 3 (0.9)
    cols = {1: (185, 198), 2: (238, 268), 3: (290, 316)}
    dog = {w: _luma(_mean(img, a, 266, b, 274)) for w, (a, b) in cols.items()}
    car = {w: _luma(_mean(img, a, 278, b, 286)) for w, (a, b) in cols.items()}
    assert dog[1] < 60 and dog[2] > 150 and dog[3] > 150, dog  # dark under the threshold, bright in the event
    assert max(car.values()) < 60, car  # the same scores without an event: dark
    assert dog[3] >= dog[2]  # brighter with the score
    legend = img[254:262].astype(np.float64)  # the legend row: a bright key cell
    assert (np.abs(legend - np.array(INFERNO_HIGH)).mean(axis=2) < 30).sum() > 20


def test_heat_strip_rows_are_the_reported_classes_and_unpredicted_ones_are_hollow(tmp_path):
    # audio scores of a class that is not reported (as --scores-tsv adds) get no row
    src = write_video(tmp_path / "in.mp4", duration=2.0, fps=8, size=(320, 288), audio_codec=None)
    r = _result(src, 2.0, audio={"dog": _score_track([1, 1, 1, 1]), "car": _score_track([1, 1, 1, 1])},
                status={"car": "heard_only"})
    unreported = _result(src, 2.0, audio={"dog": _score_track([1, 1, 1, 1])})
    r = dataclasses.replace(r, audio={**r.audio, "cow": _score_track([1, 1, 1, 1])})  # cow: scores, not reported
    img = _decode(render_overlay(src, r, tmp_path / "out.mp4").path)[0][0]
    one = _decode(render_overlay(src, unreported, tmp_path / "one.mp4").path)[0][0]
    # legend + dog + car rows (36 px), not a fourth row for cow
    np.testing.assert_allclose(_mean(img, 0, 200, 320, 250), index_colour(0), atol=6)
    dog_swatch, car_swatch = _mean(img, 3, 266, 9, 274), _mean(img, 3, 278, 9, 286)
    np.testing.assert_allclose(dog_swatch, PALETTE[0], atol=30)  # filled: a prediction
    assert _luma(car_swatch) < 60  # hollow: car is heard only
    np.testing.assert_allclose(_mean(img, 1, 279, 3, 285), PALETTE[1], atol=40)  # its outline in its colour
    np.testing.assert_allclose(_mean(one, 0, 200, 320, 262), index_colour(0), atol=6)  # one class: 2 rows


def _edge_runs(changed: np.ndarray) -> tuple[float, int]:
    """Share of the rows where the edge was drawn, and the longest run of rows where it was not."""
    longest = run = 0
    for on in changed:
        run = 0 if on else run + 1
        longest = max(longest, run)
    return float(changed.mean()), longest


def _plate_width(img: np.ndarray, src: np.ndarray, x0: int, y: int) -> int:
    """Columns from ``x0`` on where row ``y`` differs from the source (the name plate)."""
    row = np.abs(img[y].astype(int) - src[y].astype(int)).max(axis=1) > 40  # (W,)
    return int(np.argmin(row[x0:])) if not row[x0:].all() else len(row) - x0


def test_a_class_seen_but_not_predicted_is_not_drawn_like_a_prediction(tmp_path):
    # dog is predicted, cat only seen: the same score, so the same opacity; boxes apart
    src = write_video(tmp_path / "in.mp4", duration=2.0, fps=8, size=(320, 240), audio_codec=None)
    a, b = (20, 60, 140, 220), (180, 60, 300, 220)
    dets = {"dog": (BoxDetection(0.5, a, 5.0), BoxDetection(1.5, a, 5.0)),
            "cat": (BoxDetection(0.5, b, 5.0), BoxDetection(1.5, b, 5.0))}
    out = render_overlay(src, _result(src, 2.0, visual=dets, status={"cat": "seen_only"}), tmp_path / "o.mp4")
    frames, _ = _decode(out.path)
    plain, _ = _decode(src)
    k = 10
    changed = np.abs(frames[k].astype(int) - plain[k].astype(int)).max(axis=2) > 40  # (H, W)
    solid = _edge_runs(changed[a[1] + 4:a[3] - 4, a[0]:a[0] + 2].any(axis=1))
    dashed = _edge_runs(changed[b[1] + 4:b[3] - 4, b[0]:b[0] + 2].any(axis=1))
    assert solid[0] > 0.95 and solid[1] == 0, solid  # the prediction: a solid outline
    assert 0.3 < dashed[0] < 0.7 and dashed[1] >= 6, dashed  # the other: dashes with gaps of several px
    # the names: "cat (seen only)" needs a plate several times as wide as "dog" (same length of name)
    assert _plate_width(frames[k], plain[k], b[0], b[1] - 4) > 2.5 * _plate_width(frames[k], plain[k], a[0], a[1] - 4)


def test_heatmap_strip_names_sit_beside_the_cells(tmp_path):
    # 288 px high: 12-px rows, named; the cells start right of the names' margin.
    src = write_video(tmp_path / "in.mp4", duration=2.0, fps=8, size=(320, 288), audio_codec=None)
    audio = {"dog": _score_track([1, 1, 1, 1])}  # one event over the clip, far over the threshold: pale yellow
    result = _result(src, 2.0, audio=audio, events=(Event("dog", 0.0, 2.0),))
    frames, _ = _decode(render_overlay(src, result, tmp_path / "out.mp4").path)
    band = frames[15][277:287].astype(np.float64)  # (10, W, 3): the row, less its edge pixels
    hot = np.abs(band - np.array(INFERNO_HIGH)).mean(axis=(0, 2)) < 30  # (W,) column is a heat cell
    x0 = int(np.argmax(hot))
    assert 30 < x0 < 320 // 3  # a margin wide enough for "dog" and the swatch, not more than a third
    assert hot[x0 + 2:300].all()  # from there on cells only (the playhead is at the right end)
    swatch = _mean(frames[15], 2, 277, 10, 286)
    np.testing.assert_allclose(swatch, PALETTE[0], atol=30)  # the class colour at the far left
    text = band[:, 10:x0].max(axis=2)
    assert (text > 180).any() and (text < 40).mean() > 0.5  # white letters on black


def test_playhead_moves_with_time(tmp_path):
    src = write_video(tmp_path / "in.mp4", duration=2.0, fps=8, size=(128, 96), audio_codec=None)
    quiet = _score_track([-1, -1, -1, -1])  # no event, far under the threshold: black cells
    report = render_overlay(src, _result(src, 2.0, audio={"dog": quiet, "car": quiet}), tmp_path / "out.mp4")
    frames, _ = _decode(report.path)
    for k in (4, 10):  # t = 0.5 → x = 32; t = 1.25 → x = 80
        row = frames[k][92:95].astype(np.float64).mean(axis=(0, 2))  # (W,) brightness in the strip
        assert abs(int(np.argmax(row)) - round(k / 8 / 2 * 128)) <= 1
        assert row.max() > 150 and np.median(row) < 30


def test_audio_only_input_is_a_usage_error(tmp_path):
    src = write_audio(tmp_path / "in.m4a", duration=1.0)
    with pytest.raises(UsageError, match="has no video stream to draw on"):
        render_overlay(src, _result(src, 1.0), tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


def test_existing_output_needs_force(tmp_path):
    src = write_video(tmp_path / "in.mp4", duration=0.5, audio_codec=None)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep")
    with pytest.raises(OutputError, match="already exists.*--force"):
        render_overlay(src, _result(src, 0.5), out)
    assert out.read_bytes() == b"keep"
    assert render_overlay(src, _result(src, 0.5), out, force=True).frames == 4


def test_an_exception_mid_render_leaves_no_file(tmp_path):
    src = write_video(tmp_path / "in.mp4", duration=2.0, audio_codec=None)
    out_dir = tmp_path / "out"

    def boom(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render_overlay(src, _result(src, 2.0), out_dir / "o.mp4", progress=boom)
    assert list(out_dir.iterdir()) == []


def test_bad_arguments(tmp_path):
    src = write_video(tmp_path / "in.mp4", duration=0.5, audio_codec=None)
    with pytest.raises(UsageError, match="box_hold"):
        render_overlay(src, _result(src, 0.5), tmp_path / "o.mp4", box_hold="lerp")
    with pytest.raises(UsageError, match="overwrite its input"):
        render_overlay(src, _result(src, 0.5), src, force=True)
    with pytest.raises(DecodeError, match="cannot open"):
        render_overlay(tmp_path / "missing.mp4", _result("missing.mp4", 0.5), tmp_path / "o.mp4")
