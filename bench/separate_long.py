"""Memory and speed of ``avscene separate`` on a one-hour input, streamed (not a test).

    python bench/separate_long.py [--input long/long_60min.m4a] [--minutes 60] [--model PATH]
                                  [--method hybrid] [--label violin] [--clip examples/clips/...]
                                  [--repeat 5] [--json out.json]

The one-hour input is made by ``bench/make_long.py`` when ``--input`` does not exist (the audio
alone, AAC 44.1 kHz stereo: ``separate`` reads only the audio track, so the video would only
cost time to write). ``separate --label`` runs on it in a cold process of its own
(``bench/_child.py``: wall time with imports, the process's peak RSS); the target is a peak
of at most 1.5 GB (issue 31). Then a 10-s clip (``--clip``, the avbench example) is separated
warm in this process, ``--repeat`` times per method the model carries (median), to compare
each method's speed with the default's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import cold  # noqa: E402  (bench/run.py: one command in a process of its own)

TARGET_PEAK_MB = 1.5 * 1024  # issue 31: at most 1.5 GB for a one-hour input


def cold_separate(path: Path, label: str, model: str | None, method: str | None) -> dict[str, float]:
    """``separate PATH --label LABEL`` in a fresh process (``bench/run.py``'s ``cold``): seconds,
    peak RSS (MB), exit code; a failed run is an error, not a figure."""
    with tempfile.TemporaryDirectory() as tmp:
        args = ["separate", str(path), "--label", label, "-o", f"{tmp}/s.wav", "--json"]
        rec = cold(args + (["--method", method] if method else []), model)
    if rec["exit_code"] != 0:
        raise RuntimeError(f"separate exited {rec['exit_code']}")
    return rec


def warm_methods(clip: Path, label: str, model: str | None, repeat: int) -> dict[str, float]:
    """Median seconds of a warm ``separate`` of ``clip`` per method the model carries ("default": none given)."""
    import avscene
    from avscene.separation.registry import METHODS, missing_parts

    loaded = avscene.load_model(model, device="cpu", offline=True)
    runs = {"default": "auto", **{m.name.value: m.name for m in METHODS.values()
                                if not missing_parts(m, loaded.separation)}}
    out = {}
    for name, method in runs.items():
        avscene.separate(clip, model=loaded, label=label, method=method)  # warm-up
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            avscene.separate(clip, model=loaded, label=label, method=method)
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=Path(tempfile.gettempdir()) / "avscene-bench" / "long_60min.m4a")
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the input made when --input is missing")
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    ap.add_argument("--method", default=None, help="separation method of the long run (default: the model's)")
    ap.add_argument("--label", default="violin")
    ap.add_argument("--clip", type=Path, default=Path("examples/clips/car_ambulance_sync.mp4"),
                    help="the 10-s clip of the warm comparison ('' to skip)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", dest="json_out", type=Path, default=None)
    args = ap.parse_args(argv)

    if not args.input.exists():
        args.input.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(HERE / "make_long.py"), str(args.input), "--minutes", str(args.minutes),
                        "--fps", "0"], check=True)
    from avscene.io.decode import probe

    results: dict = {"input": args.input.name, "input_seconds": float(probe(args.input).duration),
                     "label": args.label, "method": args.method or "default"}
    results["long"] = cold_separate(args.input, args.label, args.model, args.method)
    results["long"]["within_target"] = results["long"]["peak_rss_mb"] <= TARGET_PEAK_MB
    print(f"separate {args.input.name} ({results['input_seconds'] / 60:.0f} min): "
          f"{results['long']['seconds']:.0f} s, peak RSS {results['long']['peak_rss_mb']:.0f} MB "
          f"(target <= {TARGET_PEAK_MB:.0f} MB), exit {results['long']['exit_code']}")
    if str(args.clip) not in ("", "."):
        results["clip"] = args.clip.name
        results["warm_10s"] = warm_methods(args.clip, args.label, args.model, args.repeat)
        base = results["warm_10s"]["default"]
        for name, s in results["warm_10s"].items():
            print(f"separate {args.clip.name}, warm, {name}: {s:.2f} s ({s / base:.2f}x the default)")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
