"""Speed and memory benchmark of avscene's commands (not a test).

    python bench/run.py [--durations 10,60,600] [--model PATH] [--repeat 3] [--jobs-clips 8]
                        [--workdir DIR] [--json out.json] [--box-regressor FILE]

On generated clips (224x224, 8 fps, 16 kHz mono AAC, as avbench) of each duration:

* the floor: decoding every packet of the file with FFmpeg through PyAV, nothing else;
* each command (``classify``, ``localize --render``, ``separate --label``) in a cold process
  of its own (``bench/_child.py``: wall time with imports, and that process's peak RSS);
* warm, in-process: ``classify`` per stage (decode, audio proposals, visual proposals,
  networks), ``localize`` (also ``--box-mode erase``, and with ``--box-regressor``), overlay rendering, ``report`` (and its time beyond ``localize``;
  the bytes of its files, with and without ``--separate``), ``separate`` and NMF alone;
* the same on a real clip (``--clip``, default the avbench example: natural images make
  EdgeBoxes work harder than the generated pictures do);
* directory throughput: ``classify`` on ``--jobs-clips`` copies of the real clip with
  ``--jobs 1`` and ``--jobs 2`` (cold processes; clips per second).

Every figure is printed as a table (seconds, x real time, / floor, peak MB) and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLIP_SIZE, CLIP_FPS = (224, 224), 8  # avbench's format
NMF_COMPONENTS = 20  # separate's default K


def _median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_clip(path: Path, seconds: float) -> Path:
    """A synthetic clip with a moving box and a tone (``avscene.testing.media``)."""
    from avscene.testing.media import write_video

    if not path.exists():
        write_video(path, duration=seconds, fps=CLIP_FPS, size=CLIP_SIZE, pattern="index",
                    box=(60, 60, 140, 140), audio_rate=16000)
    return path


def ffmpeg_floor(path: Path) -> float:
    """Seconds to decode every video and audio packet with PyAV (no sampling, no resampling)."""
    import av

    t0 = time.perf_counter()
    with av.open(str(path)) as c:
        for _ in c.decode(*c.streams):
            pass
    return time.perf_counter() - t0


def cold(args: list[str], model: str | None) -> dict[str, float]:
    """One CLI command in a fresh process: {"seconds", "peak_rss_mb", "exit_code"}."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, str(HERE / "_child.py"), str(out), "--", *args, "--offline", "--device", "cpu"]
        if model:
            cmd += ["--model", model]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if not out.exists():
            raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr[-2000:]}")
        rec = json.loads(out.read_text())
    return {"seconds": wall, "peak_rss_mb": rec["peak_rss_mb"], "exit_code": rec["exit_code"]}


def warm(clip: Path, loaded, repeat: int, label: str, box_regressor: Path | None = None) -> dict[str, float]:
    """In-process (model loaded, caches warm) seconds per command and per stage."""
    import avscene
    from avscene.dsp.stft import stft
    from avscene.dsp.nmf import nmf
    from avscene.io.decode import read_audio
    from avscene.io.render import render_overlay
    from avscene.tasks._pipeline import analyse

    rows: dict[str, float] = {}
    avscene.classify(clip, model=loaded)  # warm-up
    stages: list[dict[str, float]] = []
    rows["classify"] = _median(lambda: stages.append(analyse(clip, loaded).timings), repeat)
    for stage in ("decode", "audio_proposals", "visual_proposals", "network"):
        rows[f"classify: {stage}"] = statistics.median(s[stage] for s in stages)
    loc = avscene.localize(clip, model=loaded)
    rows["localize"] = _median(lambda: avscene.localize(clip, model=loaded), repeat)
    from avscene.tasks.localize import LocalizeOptions, localize_file

    variants = {"localize --box-mode erase": LocalizeOptions(box_mode="erase")}
    if box_regressor is not None:
        from avscene.checkpoint.box_regressor import read_box_regressor

        variants["localize --box-regressor"] = LocalizeOptions(box_regressor=read_box_regressor(box_regressor))
    for name, opts in variants.items():
        rows[name] = _median(lambda o=opts: localize_file(clip, loaded, o), repeat)
    with tempfile.TemporaryDirectory() as tmp:
        rows["localize: render overlay"] = _median(
            lambda: render_overlay(clip, loc, Path(tmp) / "o.mp4", force=True), 1)
    rows["report: page beyond localize"] = _median(lambda: report_page(clip, loaded, localized=loc), repeat)
    rows["separate"] = _median(lambda: avscene.separate(clip, model=loaded, label=label), repeat)
    from avscene.separation.registry import METHODS, missing_parts

    for method in METHODS.values():  # every method the model carries the parts of
        if not missing_parts(method, loaded.separation):
            rows[f"separate --method {method.name.value}"] = _median(
                lambda m=method.name: avscene.separate(clip, model=loaded, label=label, method=m), repeat)
    import torch

    audio = read_audio(clip, sample_rate=16000)  # audio only: the frames are not needed here
    V = torch.as_tensor(stft(audio)).abs().float()  # (F, T) magnitude
    rows["separate: NMF alone (whole clip)"] = _median(lambda: nmf(V, k=NMF_COMPONENTS), 1)
    return rows


def report_page(clip: Path, loaded, *, separate: bool = False, localized=None) -> int:
    """``avscene report`` of one clip in-process (page and files written); returns the bytes written.

    With ``localized`` (the clip's localize result) only what the report adds runs.
    """
    from avscene.io.report_html import write_report
    from avscene.tasks.report import ReportOptions, build_page, page_from_localization

    opts = ReportOptions(separate=separate)
    page = (build_page(clip, loaded, opts) if localized is None else
            page_from_localization(clip, localized, loaded, opts))
    with tempfile.TemporaryDirectory() as tmp:
        files = write_report(page, Path(tmp) / "r.html", force=True)
        return sum(f.stat().st_size for f in files)


def throughput(clip: Path, n: int, model: str | None) -> dict[str, dict[str, float]]:
    """``classify`` on ``n`` copies of ``clip`` with --jobs 1 and 2, in a cold process each.

    ``clips_per_s`` counts the whole run (start-up included); ``steady_clips_per_s`` is the
    rate between the first and the last result line, what a long directory run converges to.
    """
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            os.symlink(clip.resolve(), Path(tmp) / f"c{i:03d}.mp4")
        for jobs in (1, 2):
            cmd = [sys.executable, "-m", "avscene", "classify", tmp, "--jobs", str(jobs), "--jsonl", "-",
                   "--offline", "--device", "cpu", *(["--model", model] if model else [])]
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            stamps = [time.perf_counter() - t0 for line in proc.stdout if line.strip()]
            proc.wait()
            wall = time.perf_counter() - t0
            steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
            out[f"jobs {jobs}"] = {"seconds": wall, "clips_per_s": n / wall, "steady_clips_per_s": steady,
                                   "first_result_s": stamps[0] if stamps else float("nan"),
                                   "exit_code": proc.returncode}
    return out


def report(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    for d in results["clips"]:
        t = Table("stage", "seconds", "× real time", "/ floor", "peak MB",
                  title=f"{d['seconds']:.0f}-s clip ({d['path']})")
        floor = d["floor_s"]
        t.add_row("floor: FFmpeg decode (PyAV)", f"{floor:.3f}", f"{floor / d['seconds']:.4f}", "1.0", "")
        for name, r in d["cold"].items():
            t.add_row(f"{name} (cold process)", f"{r['seconds']:.2f}", f"{r['seconds'] / d['seconds']:.3f}",
                      f"{r['seconds'] / floor:.1f}", f"{r['peak_rss_mb']:.0f}")
        for name, s in d.get("warm", {}).items():
            t.add_row(f"{name} (warm)", f"{s:.3f}", f"{s / d['seconds']:.4f}", f"{s / floor:.1f}", "")
        con.print(t)
        for name, mb in d.get("report_mb", {}).items():
            con.print(f"report size, {name}: {mb:.2f} MB (files written, audio beside the page included)")
    if results.get("throughput"):
        t = Table("run", "seconds", "clips/s (all)", "first result s", "clips/s (steady)",
                  title=f"classify, {results['jobs_clips']} copies of {results['throughput_clip']}")
        for name, r in results["throughput"].items():
            t.add_row(name, f"{r['seconds']:.1f}", f"{r['clips_per_s']:.2f}", f"{r['first_result_s']:.1f}",
                      f"{r['steady_clips_per_s']:.2f}")
        con.print(t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--durations", default="10,60,600", help="generated clip lengths in seconds, comma-separated")
    ap.add_argument("--clip", type=Path, default=Path("examples/clips/car_ambulance_sync.mp4"),
                    help="a real clip benchmarked too, and the one the --jobs run copies ('' to skip)")
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    ap.add_argument("--repeat", type=int, default=3, help="warm repeats (median); 1 for clips over 60 s")
    ap.add_argument("--jobs-clips", type=int, default=24, help="clips in the --jobs throughput run (0: skip)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "avscene-bench")
    ap.add_argument("--no-warm", action="store_true", help="only cold processes")
    ap.add_argument("--json", dest="json_out", type=Path, default=None)
    ap.add_argument("--box-regressor", type=Path, default=None,
                    help="also time warm localize with this box regressor file")
    args = ap.parse_args(argv)

    import avscene
    import torch

    args.workdir.mkdir(parents=True, exist_ok=True)
    loaded = None if args.no_warm else avscene.load_model(args.model, device="cpu")
    label = "violin"
    results: dict = {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "clips": [],
                     "jobs_clips": args.jobs_clips}
    from avscene.io.decode import probe

    clips = [make_clip(args.workdir / f"bench_{float(x):g}s.mp4", float(x)) for x in args.durations.split(",") if x]
    if str(args.clip) not in ("", "."):
        clips.append(args.clip)
    for clip in clips:
        seconds = float(probe(clip).duration)
        entry: dict = {"path": str(clip), "seconds": seconds, "floor_s": _median(lambda: ffmpeg_floor(clip), 3)}
        with tempfile.TemporaryDirectory() as tmp:
            entry["cold"] = {
                "classify": cold(["classify", str(clip), "--json"], args.model),
                "localize --render": cold(["localize", str(clip), "--json", "--render", f"{tmp}/o.mp4"], args.model),
                "separate": cold(["separate", str(clip), "--label", label, "-o", f"{tmp}/s.wav", "--json"],
                                 args.model),
            }
        if loaded is not None:
            entry["warm"] = warm(clip, loaded, args.repeat if seconds <= 60 else 1, label, args.box_regressor)
            entry["report_mb"] = {"page": report_page(clip, loaded) / 1e6}
            if seconds <= 60:  # separating every predicted class of a long input takes minutes
                entry["report_mb"]["page --separate"] = report_page(clip, loaded, separate=True) / 1e6
        results["clips"].append(entry)
        print(f"done: {clip}", file=sys.stderr)
    if args.jobs_clips:
        ten = args.clip if str(args.clip) not in ("", ".") else make_clip(args.workdir / "bench_10s.mp4", 10.0)
        results["throughput"] = throughput(ten, args.jobs_clips, args.model)
        results["throughput_clip"] = str(ten)
    report(results)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
