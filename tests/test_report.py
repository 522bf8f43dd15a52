"""``avscene report``, checked in a real browser: headless Chromium loads each page and reports what it saw.

The pages carry an inline script that writes into the DOM what a person would notice:
script errors, failed image or audio loads (``#page-errors``, ``data-errors``), how
many images decoded (``naturalWidth > 0``) and each audio player's duration. Chromium
runs them (``--virtual-time-budget`` lets the scripts and media loads finish) and
``--dump-dom`` gives the DOM back. Without Chromium these tests skip, except under CI
(``CI=true``), where a missing browser fails them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
TWO_CLASSES = REPO / "examples" / "clips" / "accordion_trumpet_async.mp4"  # accordion and trumpet
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIRTUAL_TIME_MS = 10_000  # scripts and media metadata settle well within this (virtual, not waited)


@pytest.fixture(scope="module")
def browser() -> str:
    found = next((p for p in map(shutil.which, BROWSERS) if p), None)
    if found is None:
        msg = "Chromium is not installed (Debian: apt-get install chromium): the report pages are not opened"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " — under CI it must be")
        pytest.skip(msg)
    return found


def _chromium(browser: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--mute-audio", "--hide-scrollbars",
           f"--virtual-time-budget={VIRTUAL_TIME_MS}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


class _Dom(HTMLParser):
    """What the tests read back from a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.status: dict[str, str] = {}
        self.errors: list[str] = []
        self.rows: list[str] = []  # data-label of each timeline row
        self.index_rows: list[dict[str, str | None]] = []  # the index table's rows, in DOM order
        self._in_errors = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id") == "page-status":
            self.status = {k: v or "" for k, v in a.items()}
        elif a.get("id") == "page-errors":
            self._in_errors = True
        elif "timeline-row" in (a.get("class") or "").split():
            self.rows.append(a.get("data-label") or "")
        elif tag == "tr" and "data-name" in a:
            self.index_rows.append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "ul":
            self._in_errors = False

    def handle_data(self, data: str) -> None:
        if self._in_errors and data.strip():
            self.errors.append(data.strip())


def load(browser: str, page: Path, fragment: str = "") -> _Dom:
    proc = _chromium(browser, "--dump-dom", page.resolve().as_uri() + fragment)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = _Dom()
    dom.feed(proc.stdout)
    assert dom.status, f"no #page-status in the DOM of {page}: the page's script did not run"
    return dom


def screenshot(browser: str, page: Path, out: Path, size: str = "1280,800") -> np.ndarray:
    import cv2

    proc = _chromium(browser, f"--window-size={size}", f"--screenshot={out}", page.resolve().as_uri())
    assert proc.returncode == 0 and out.exists(), proc.stderr[-2000:]
    img = cv2.imread(str(out))
    assert img is not None
    return img


def assert_looks_right(dom: _Dom, *, images: int, audio: int, rows: list[str]) -> list[float]:
    """No error, every image decoded, every player has a finite duration, one timeline row per class."""
    assert dom.errors == [] and dom.status["data-errors"] == "0", dom.errors
    assert int(dom.status["data-images"]) == images
    assert dom.status["data-images-ok"] == dom.status["data-images"], "an embedded image did not decode"
    durations = [float(d) for d in dom.status["data-audio-durations"].split()]
    assert len(durations) == audio
    assert all(np.isfinite(d) and d > 0 for d in durations), durations
    assert dom.rows == rows and dom.status["data-rows"] == str(len(rows))
    return durations


def assert_self_contained(page: Path) -> None:
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "a resource from the network"
    assert "<link" not in text and "@import" not in text and "url(" not in text
    for ref in re.findall(r'(?:src|href)="([^"]+)"', text):
        assert ref.startswith("data:") or (page.parent / ref).is_file(), ref


def not_blank(img: np.ndarray) -> None:
    assert img.std() > 20, "the screenshot is (nearly) one colour"
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200


def run_report(*args: str) -> int:
    """``avscene report ARGS`` in this process; returns the exit code."""
    from avscene.cli.app import main

    return main(["report", *args, "--offline", "--device", "cpu"])


def _records(jsonl: Path) -> dict[str, dict]:
    return {Path(r["file"]).name: r for r in map(json.loads, jsonl.read_text().splitlines())}


# --------------------------------------------------------------------------- pages in a browser


def test_two_class_clip_with_separation(browser: str, tmp_path: Path) -> None:
    # The bundled model, where the figures matter: the example clip has an accordion and a trumpet.
    out = tmp_path / "reports"
    code = run_report(str(TWO_CLASSES), "-o", f"{out}/", "--separate", "--jsonl", str(tmp_path / "r.jsonl"))
    assert code == 0
    rec = _records(tmp_path / "r.jsonl")[TWO_CLASSES.name]
    predicted = rec["predicted"]
    assert sorted(predicted) == ["accordion", "trumpet"]
    page = Path(rec["report"]["page"])
    assert_self_contained(page)
    dom = load(browser, page)
    n_frames = len(rec["frame_times"])  # every sampled frame has a thumbnail in every class row
    durations = assert_looks_right(dom, images=n_frames * len(rec["timing"]), audio=1 + 2 * len(predicted),
                                   rows=list(rec["timing"]))
    assert all(abs(d - rec["duration"]) < 0.1 for d in durations)  # soundtrack, sources and residuals
    text = page.read_text()
    for s in rec["report"]["separations"]:
        assert f"{s['label']}: separated source ({s['method']})" in text
    assert rec["model"]["id"] in text and "avscene report" in text and "--separate" in text
    not_blank(screenshot(browser, page, tmp_path / "wide.png"))
    not_blank(screenshot(browser, page, tmp_path / "phone.png", size="390,844"))
    # the folder's index lists it
    index = load(browser, out / "index.html")
    assert [r["data-name"] for r in index.index_rows] == [TWO_CLASSES.name.lower()]
    assert index.status["data-images-ok"] == "1" and index.errors == []


def test_audio_only_file(browser: str, tiny_model_dir: Path, clips: dict, tmp_path: Path) -> None:
    page = tmp_path / "a.html"
    code = run_report(str(clips["audio_only"]), "-m", str(tiny_model_dir), "-o", str(page),
                         "-l", "violin", "-l", "drum")
    assert code == 0
    dom = load(browser, page)
    assert_looks_right(dom, images=0, audio=1, rows=["violin", "drum"])
    assert "no video stream" in page.read_text()


def test_video_only_file(browser: str, tiny_model_dir: Path, clips: dict, tmp_path: Path) -> None:
    page = tmp_path / "v.html"
    code = run_report(str(clips["video_only"]), "-m", str(tiny_model_dir), "-o", str(page), "-l", "car")
    assert code == 0
    dom = load(browser, page)
    assert_looks_right(dom, images=2, audio=0, rows=["car"])  # 2-s clip: frames at 0.5 and 1.5 s
    assert "The input has no audio stream" in page.read_text()


def test_long_input_is_bounded_and_says_so(browser: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    from avscene.testing.media import write_video

    src = write_video(tmp_path / "long.mp4", duration=90.0, fps=2, size=(64, 48))
    page = tmp_path / "out" / "long.html"
    code = run_report(str(src), "-m", str(tiny_model_dir), "-o", str(page), "-l", "violin", "-l", "drum",
                         "--max-thumbnails", "7", "--max-embed-seconds", "30", "--json")
    assert code == 0
    beside = page.with_name("long.original.ogg")
    assert beside.is_file()
    assert_self_contained(page)
    dom = load(browser, page)
    durations = assert_looks_right(dom, images=7 * 2, audio=1, rows=["violin", "drum"])
    assert abs(durations[0] - 90.0) < 0.1  # the linked file beside the page plays
    text = page.read_text()
    assert "7 of the 90 sampled frames" in text and "written beside the page" in text


def test_the_harness_sees_a_broken_page(browser: str, tiny_model_dir: Path, clips: dict, tmp_path: Path) -> None:
    # A negative control: the same checks on a page with a broken image and a throwing script must fail.
    page = tmp_path / "v.html"
    assert run_report(str(clips["video_only"]), "-m", str(tiny_model_dir), "-o", str(page), "-l", "car") == 0
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace(
        "</main>", '</main><img src="data:image/jpeg;base64,AAAA" alt="bad"><script>nosuchfunction()</script>'))
    dom = load(browser, broken)
    assert int(dom.status["data-errors"]) >= 2
    assert any("failed to load img" in e for e in dom.errors) and any("nosuchfunction" in e for e in dom.errors)
    assert dom.status["data-images-ok"] != dom.status["data-images"]


def test_index_sorts_and_filters(browser: str, tiny_model_dir: Path, clips: dict, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("av", "video_only", "audio_only"):
        shutil.copy(clips[name], videos / clips[name].name)
    out = tmp_path / "reports"
    code = run_report(str(videos), "-m", str(tiny_model_dir), "-o", f"{out}/", "-l", "violin",
                         "--event-threshold", "-1e9", "--audio-threshold", "-1e9",  # heard wherever audio
                         "--jsonl", str(tmp_path / "r.jsonl"))
    assert code == 0
    records = _records(tmp_path / "r.jsonl")
    plain = load(browser, out / "index.html")
    assert len(plain.index_rows) == 3 and plain.status["data-shown"] == "3" and plain.errors == []
    assert plain.status["data-images-ok"] == "2"  # a poster per video with frames
    by_name = load(browser, out / "index.html", "#sort=name:desc")
    assert [r["data-name"] for r in by_name.index_rows] == sorted((n.lower() for n in records), reverse=True)
    # the filter keeps the videos where violin is heard or seen: the two with audio at least
    present = {n.lower() for n, r in records.items() if r["report"]["presence"]["violin"] != "neither"}
    assert {"av.mp4", "audio_only.wav"} <= present
    filtered = load(browser, out / "index.html", "#class=violin")
    assert filtered.status["data-shown"] == str(len(present))
    assert {r["data-name"] for r in filtered.index_rows if "hidden" not in r} == present
    for rec in records.values():  # every link leads to a page
        assert Path(rec["report"]["page"]).is_file()


# --------------------------------------------------------------------------- without a browser


def test_page_escapes_what_comes_from_the_input(tiny_model_dir: Path, clips: dict, tmp_path: Path) -> None:
    src = tmp_path / '<i x="1">x&y.mp4'
    shutil.copy(clips["av"], src)
    page = tmp_path / "p.html"
    assert run_report(str(src), "-m", str(tiny_model_dir), "-o", str(page), "-l", "drum") == 0
    text = page.read_text()
    assert '<i x="1">' not in text and "&lt;i x=&quot;1&quot;&gt;x&amp;y" in text


def test_report_exports_captions_and_fails_like_the_other_commands(tiny_model_dir: Path, clips: dict,
                                                                   tmp_path: Path, capsys) -> None:
    page = tmp_path / "{name}.html"
    code = run_report(str(clips["av"]), str(tmp_path / "missing.mp4"), "-m", str(tiny_model_dir), "-o",
                         str(page), "-l", "drum", "--vtt", str(tmp_path / "{name}.vtt"), "--audacity",
                         str(tmp_path / "{name}.txt"), "--event-threshold", "-1e9", "--audio-threshold", "-1e9",
                         "--jsonl", "-")
    out, err = capsys.readouterr()
    assert code == 1 and "missing.mp4" in err  # one input failed: exit 1, the other is reported
    ok = [json.loads(line) for line in out.splitlines() if "report" in json.loads(line)]
    assert len(ok) == 1
    stem = clips["av"].stem
    assert (tmp_path / f"{stem}.vtt").read_text().startswith("WEBVTT")
    assert (tmp_path / f"{stem}.txt").read_text().split("\t")[2].strip() == "drum"
    assert set(ok[0]["report"]["files"]) == {str(tmp_path / f"{stem}.vtt"), str(tmp_path / f"{stem}.txt")}


def test_thumbnails_follow_the_overlay_rule(tiny_model_dir: Path, clips: dict) -> None:
    """A class's boxes are on the thumbnails of the instants where it is seen, and nowhere else."""
    import avscene
    from avscene.io.draw import PALETTE
    from avscene.results import BoxDetection, ClassifyResult, Label, LocalizeResult, ModelRef, Timing
    from avscene.tasks.report import ReportOptions, page_from_localization

    src = clips["video_only"]  # 64x48, frames sampled at 0.5 and 1.5 s
    box = (8.0, 16.0, 56.0, 44.0)
    cls = ClassifyResult(file=str(src), duration=2.0, modalities=("visual",), labels=(Label("car", 1.0),),
                         predicted=("car",), threshold=0.0, model=ModelRef("test"))
    r = LocalizeResult(classification=cls, visual={"car": (BoxDetection(0.5, box, 5.0), BoxDetection(1.5, box, 5.0))},
                       timing={"car": Timing(heard=(), seen=((1.0, 2.0),), overlap=False)})
    page = page_from_localization(src, r, avscene.load_model(str(tiny_model_dir), device="cpu"), ReportOptions())
    thumbs = page.thumbnails["car"]
    assert [t.t for t in thumbs] == [0.5, 1.5]
    colour = np.array(PALETTE[0], float)
    edge = [np.abs(t.image[20:40, 8:10].reshape(-1, 3).astype(float) - colour).mean() for t in thumbs]
    assert edge[0] > 40 and edge[1] < 20  # not seen at 0.5 s: no box; seen at 1.5 s: the car's colour, opaque
    assert page.presence == {"car": "seen"} and page.tracks == ()


def test_heard_and_seen_come_from_the_classifiers_parse_when_the_result_has_one() -> None:
    """The page's heard / seen per class are the classifier's per-modality decisions (ClassParse);
    a result without them (an older record) falls back to its timing."""
    from avscene.results import ClassifyResult, ClassParse, Label, LocalizeResult, ModelRef, Timing
    from avscene.tasks.report import heard_seen, presence_word

    timing = {"car": Timing(heard=(), seen=((1.0, 2.0),), overlap=False),
              "dog": Timing(heard=((0.0, 1.0),), seen=(), overlap=False)}
    parse = (ClassParse("car", 1.0, True, audio_score=0.7, heard=True, visual_score=-0.2, seen=False),
             ClassParse("dog", -1.0, False, audio_score=-0.5, heard=False, visual_score=0.4, seen=True))
    cls = ClassifyResult(file="x.mp4", duration=2.0, modalities=("audio", "visual"),
                         labels=(Label("car", 1.0), Label("dog", -1.0)), predicted=("car",), threshold=0.0,
                         model=ModelRef("test"), parse=parse)
    r = LocalizeResult(classification=cls, timing=timing)
    assert [presence_word(*heard_seen(r, c)) for c in ("car", "dog")] == ["heard", "seen"]
    old = LocalizeResult(classification=dataclasses.replace(cls, parse=()), timing=timing)
    assert [presence_word(*heard_seen(old, c)) for c in ("car", "dog")] == ["seen", "heard"]


def test_usage_errors_and_unwritable_pages(tiny_model_dir: Path, clips: dict, tmp_path: Path, capsys) -> None:
    code = run_report(str(clips["av"]), "-m", str(tiny_model_dir), "-o", str(tmp_path / "x.html"), "-l", "unicorn")
    assert code == 2 and "unknown label" in capsys.readouterr().err
    code = run_report(str(clips["av"]), str(clips["video_only"]), "-m", str(tiny_model_dir), "-o",
                         str(tmp_path / "one.html"))
    assert code == 2 and "{name}" in capsys.readouterr().err  # two inputs, one page: refused before any work
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    code = run_report(str(clips["av"]), "-m", str(tiny_model_dir), "-o", str(a_file / "p.html"), "-l", "car")
    assert code == 1 and str(a_file) in capsys.readouterr().err


def test_resumed_run_indexes_the_recorded_pages_too(tiny_model_dir: Path, clips: dict, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("av", "video_only"):
        shutil.copy(clips[name], videos / clips[name].name)
    out, log = tmp_path / "reports", tmp_path / "r.jsonl"
    common = ["-m", str(tiny_model_dir), "-o", f"{out}/", "-l", "drum", "--jsonl", str(log)]
    assert run_report(str(videos / "av.mp4"), *common) == 0  # a first run did one video
    assert run_report(str(videos), *common, "--resume") == 0  # the second run does the rest
    dom = _Dom()
    dom.feed((out / "index.html").read_text())
    assert sorted(r["data-name"] for r in dom.index_rows) == ["av.mp4", "video_only.mp4"]
    assert len(log.read_text().splitlines()) == 2 and (out / "video_only.html").is_file()


def _decided_page(tmp_path: Path):
    """A hand-made result of a 320x240 clip: dog predicted and heard (one event, 1.2-2.0 s), cat only
    seen (its scores are over the event threshold but it is not heard), with the same boxes' scores."""
    from avscene.results import (
        AudioSegment, BoxDetection, ClassifyResult, ClassParse, Event, Label, LocalizeResult, ModelRef, Timing,
    )
    from avscene.testing.media import write_video

    src = write_video(tmp_path / "in.mp4", duration=2.0, fps=8, size=(320, 240))
    a, b = (20.0, 60.0, 140.0, 220.0), (180.0, 60.0, 300.0, 220.0)
    scores = [0.1, 0.2, 0.5, 0.9]  # windows [0, .72), [.72, 1.2), [1.2, 1.68), [1.68, 2]
    segs = tuple(AudioSegment(0.48 * i, 0.48 * i + 0.96, e, e) for i, e in enumerate(scores))
    parse = (ClassParse("dog", 2.0, True, audio_score=1.5, heard=True, visual_score=0.5, seen=True),
             ClassParse("cat", -0.4, False, audio_score=-1.0, heard=False, visual_score=0.6, seen=True))
    cls = ClassifyResult(file=str(src), duration=2.0, modalities=("audio", "visual"),
                         labels=(Label("dog", 2.0), Label("cat", -0.4)), predicted=("dog",), threshold=0.0,
                         model=ModelRef("test"), parse=parse)
    r = LocalizeResult(
        classification=cls, status={"dog": "predicted", "cat": "seen_only"},
        visual={"dog": (BoxDetection(0.5, a, 5.0), BoxDetection(1.5, a, 5.0)),
                "cat": (BoxDetection(0.5, b, 5.0), BoxDetection(1.5, b, 5.0))},
        audio={"dog": segs, "cat": segs}, events=(Event("dog", 1.2, 2.0),), event_threshold=0.3,
        timing={"dog": Timing(heard=((1.2, 2.0),), seen=((0.0, 2.0),), overlap=True, both=((1.2, 2.0),)),
                "cat": Timing(heard=(), seen=((0.0, 2.0),), overlap=False)},
        frame_times=(0.5, 1.5))
    return src, r, a, b


def test_page_marks_a_class_only_seen_and_its_heat_is_on_the_event_scale(tiny_model_dir: Path,
                                                                        tmp_path: Path) -> None:
    """The page says what was decided: cat is seen only (dashed boxes on its frames, its row and decision
    marked), the heat lanes are bright exactly in the JSON's events, whatever the scores, and the
    legend states the threshold; "both" is the at-once lane (timing.both), "heard and seen" the badge."""
    import avscene
    from avscene.io.report_html import page_html
    from avscene.tasks.report import ReportOptions, page_from_localization

    src, r, a, b = _decided_page(tmp_path)
    page = page_from_localization(src, r, avscene.load_model(str(tiny_model_dir), device="cpu"), ReportOptions())
    assert page.presence == {"dog": "heard_and_seen", "cat": "seen"}
    # thumbnails (the pictures a reader sees): dog's box has a solid left edge, cat's a dashed one
    scale = page.thumbnails["dog"][0].image.shape[1] / 320
    for label, box, solid in (("dog", a, True), ("cat", b, False)):
        img = page.thumbnails[label][1].image.astype(int)
        other = page.thumbnails["cat" if label == "dog" else "dog"][1].image.astype(int)  # the same frame
        x0, y0, y1 = (round(v * scale) for v in (box[0], box[1], box[3]))
        edge = (np.abs(img - other).max(axis=2) > 40)[y0 + 4:y1 - 4, x0:x0 + 2].any(axis=1)
        assert (edge.mean() > 0.95) if solid else (0.3 < edge.mean() < 0.7), (label, edge.mean())
    html = page_html(page, [])
    rows = dict(re.findall(r'<section class="timeline-row[^"]*" data-label="(\w+)" data-status="(\w+)"', html))
    assert rows == {"dog": "predicted", "cat": "seen_only"}
    assert 'class="timeline-row not-predicted" data-label="cat"' in html
    assert "seen only, not predicted" in html and "heard and seen" in html
    assert 'data-name="both"' in html and 'data-name="overlap"' not in html
    assert "event threshold +0.30" in html
    lanes = re.findall(r'<div class="lane heat" data-name="heat"><svg[^>]*>(.*?)</svg>', html)
    fills = [[tuple(int(h[i:i + 2], 16) for i in (1, 3, 5)) for h in re.findall(r'fill="(#[0-9a-f]{6})"', lane)]
             for lane in lanes]
    luma = [[0.299 * r_ + 0.587 * g + 0.114 * b_ for r_, g, b_ in lane] for lane in fills]
    dog, cat = luma  # rows in the page's order
    assert dog[0] < 60 and dog[1] < 60 and dog[2] > 150 and dog[3] > 150, dog  # bright in the event only
    assert max(cat) < 60, cat  # scores over the threshold, but cat is not heard: no event, dark


def test_the_lanes_agree_with_the_badge_for_a_predicted_class_that_is_not_heard(tiny_model_dir: Path,
                                                                                tmp_path: Path) -> None:
    """dog is predicted and has a sound event (1.2-2.0 s), but the audio decision does not call it heard: the
    badge says "seen", and no lane claims "heard": the event is on the "events" lane (once), named for what it is."""
    import dataclasses

    import avscene
    from avscene.io.report_html import page_html
    from avscene.results import ClassParse
    from avscene.tasks.report import ReportOptions, page_from_localization

    src, r, _, _ = _decided_page(tmp_path)
    parse = (ClassParse("dog", 2.0, True, audio_score=-0.5, heard=False, visual_score=0.5, seen=True),
             *r.classification.parse[1:])
    r = dataclasses.replace(r, classification=dataclasses.replace(r.classification, parse=parse))
    page = page_from_localization(src, r, avscene.load_model(str(tiny_model_dir), device="cpu"), ReportOptions())
    assert page.presence["dog"] == "seen"
    html = page_html(page, [])
    row = re.search(r'<section class="timeline-row" data-label="dog".*?</section>', html).group(0)
    assert '<span class="badge seen">seen</span>' in row
    lanes = dict(re.findall(r'<div class="lane" data-name="([\w ]+)" role="img" aria-label="[\w ]+: ([^"]*)"', row))
    assert lanes == {"events": "1.2–2.0 s", "seen": "0.0–2.0 s", "both": "1.2–2.0 s"}, lanes
