"""Fair to a busy machine: ``classify`` and ``separate`` idle and beside a CPU-bound process (not a test).

    python bench/busy.py [--clip PATH] [--repeat 3] [--settle 60] [--variants default,all]
                         [--code DIR] [--json out.json]

For each load — idle, then with one competing process (a busy loop started and stopped here,
given ``--settle`` seconds first so that the load average shows it, as it does for a machine busy
with other work) — and each thread setting (``default``: what a command chooses, :mod:`avscene.threads`;
``all``: ``--threads`` = every core, what the libraries do by themselves; a number: ``--threads N``):

* cold: the CLI command in a fresh process (``bench/_child.py``: imports and model load included);
* warm: its library call in a process that loaded the model and ran it once (``bench/_warm.py``);

and, idle, the cold start: ``import avscene.cli.app`` and ``avscene --help``. The target: loaded
time <= 1.5 x idle time for ``classify`` and ``separate`` with the default.

``--code DIR`` measures the ``avscene`` package in DIR instead (e.g. ``git archive main`` unpacked):
a checkout without a thread budget runs every setting with the libraries' defaults, so give it
``--variants default``. Run it under the machine's CPU lock: other work during the idle runs
makes them look loaded.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 1.5  # loaded / idle
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")
COMMANDS = ("classify", "separate")


def child_env(code: Path) -> dict[str, str]:
    """The children's environment: ``code`` first on the path, no thread variables (the true defaults)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["PYTHONPATH"] = str(code)
    return env


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall


def threads_args(variant: str) -> list[str]:
    if variant == "default":
        return []
    return ["--threads", str(len(os.sched_getaffinity(0)) if variant == "all" else int(variant))]


def cold(command: str, clip: Path, variant: str, env: dict[str, str], repeat: int) -> list[float]:
    """Seconds of ``avscene COMMAND CLIP`` in a fresh process, ``repeat`` times."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        extra = ["-o", f"{tmp}/s.wav", "--force"] if command == "separate" else []
        for _ in range(repeat):
            cmd = [sys.executable, str(HERE / "_child.py"), f"{tmp}/r.json", "--", command, str(clip), "--json",
                   "--offline", "--device", "cpu", *extra, *threads_args(variant)]
            out.append(timed(cmd, env))
    return out


def warm(command: str, clip: Path, variant: str, env: dict[str, str], repeat: int) -> dict:
    """Seconds of the library call, warm, ``repeat`` times (one process), and the threads it used."""
    with tempfile.TemporaryDirectory() as tmp:
        setting = "default" if variant == "default" else threads_args(variant)[1]
        timed([sys.executable, str(HERE / "_warm.py"), f"{tmp}/w.json", command, str(clip), str(repeat), setting],
              env)
        return json.loads(Path(f"{tmp}/w.json").read_text())


def cold_start(env: dict[str, str], repeat: int) -> dict[str, list[float]]:
    return {"import avscene.cli.app": [timed([sys.executable, "-c", "import avscene.cli.app"], env)
                                       for _ in range(repeat)],
            "avscene --help": [timed([sys.executable, "-m", "avscene", "--help"], env) for _ in range(repeat)]}


def measure(clip: Path, variants: list[str], env: dict[str, str], repeat: int) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for variant in variants:
        for command in COMMANDS:
            rows[f"{command} cold, {variant}"] = {"seconds": cold(command, clip, variant, env, repeat)}
            rows[f"{command} warm, {variant}"] = warm(command, clip, variant, env, repeat)
            print(f"  {command} {variant}: cold {statistics.median(rows[f'{command} cold, {variant}']['seconds']):.2f} s,"
                  f" warm {statistics.median(rows[f'{command} warm, {variant}']['seconds']):.2f} s", file=sys.stderr)
    return rows


def busy_loop() -> subprocess.Popen:
    """One CPU-bound process (the competing work), at this process's priority."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def report(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=150)  # a log file too gets whole rows
    t = Table("case", "idle s (min-max)", "busy s (min-max)", "busy / idle", "threads idle / busy",
              title=f"{results['clip']}, {results['cores']} cores, median of {results['repeat']}")

    def cell(s: list[float]) -> str:
        return f"{statistics.median(s):.2f} ({min(s):.2f}-{max(s):.2f})"

    for case, idle in results["idle"].items():
        busy = results["busy"][case]
        ratio = statistics.median(busy["seconds"]) / statistics.median(idle["seconds"])
        mark = "" if ratio <= TARGET_RATIO else " > target"
        t.add_row(case, cell(idle["seconds"]), cell(busy["seconds"]), f"{ratio:.2f}{mark}",
                  f"{idle.get('threads', '')} / {busy.get('threads', '')}")
    for case, s in results["cold_start"].items():
        t.add_row(f"cold start: {case}", cell(s), "", "", "")
    con.print(t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=HERE.parent / "examples/clips/car_ambulance_sync.mp4")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (the median is shown)")
    ap.add_argument("--settle", type=float, default=60.0, help="seconds the busy loop runs before the first run")
    ap.add_argument("--variants", default="default,all", help="thread settings: default, all, or a number")
    ap.add_argument("--code", type=Path, default=HERE.parent, help="folder holding the avscene package to time")
    ap.add_argument("--json", dest="json_out", type=Path, default=None)
    args = ap.parse_args(argv)

    env = child_env(args.code.resolve())
    variants = args.variants.split(",")
    results: dict = {"clip": str(args.clip), "cores": len(os.sched_getaffinity(0)), "repeat": args.repeat,
                     "code": str(args.code), "variants": variants}
    print("idle", os.getloadavg(), file=sys.stderr)
    results["cold_start"] = cold_start(env, max(5, args.repeat))
    results["idle"] = measure(args.clip, variants, env, args.repeat)
    competitor = busy_loop()
    try:
        time.sleep(args.settle)
        print("busy", os.getloadavg(), file=sys.stderr)
        results["busy"] = measure(args.clip, variants, env, args.repeat)
    finally:
        competitor.terminate()
        competitor.wait()
    if args.json_out:  # first: the figures are kept whatever the table does
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
