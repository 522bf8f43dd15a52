"""Mutation fuzzing of the per-file path: damaged clips end in a result or a clean AvsceneError.

Small valid clips (1 s, 32x24, H.264/AAC in mp4 with the index at either end, in
mkv, and VP9/Opus in webm) are damaged by seeded random mutations (bit flips,
overwritten runs, truncations, duplicated and deleted chunks;
:func:`avscene.testing.media.mutate_bytes`) and classified with a tiny model
through :func:`avscene.tasks.classify.classify_file`. Each case must return a
result or raise an :class:`~avscene.errors.AvsceneError` other than a timeout,
within ``CASE_TIME_LIMIT_S``.

The cases run in a child process (this file, run as a script), so that a crash in
native code (FFmpeg, PyAV, OpenCV) fails this test with the case that caused it
instead of killing the test run; the child logs each case before running it and
leaves the input it is working on in ``current.<ext>`` (kept as
``crash-input.<ext>`` when the child dies). ``AVSCENE_FUZZ_CASES=5000``
runs more cases (the default keeps the test to ~10 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

CASES = int(os.environ.get("AVSCENE_FUZZ_CASES", "200"))
CASE_TIME_LIMIT_S = 10.0  # far above the ~0.1 s a case takes: only a hang gets near it
CHILD_STARTUP_S = 60.0  # importing torch and writing the clips, on a loaded machine
MAX_OPS = 4  # mutations per case: 1 .. MAX_OPS
CLIP = {"duration": 1.0, "fps": 8, "size": (32, 24), "pattern": "index", "box": (8, 6, 24, 18)}
SOURCES = {  # name -> (file suffix, write_video arguments beyond CLIP)
    "mp4": (".mp4", {}),
    "mp4-faststart": (".mp4", {"faststart": True}),
    "mkv": (".mkv", {}),
    "webm": (".webm", {"video_codec": "libvpx-vp9", "audio_codec": "libopus", "audio_rate": 48000}),
}


# ---- the child: runs the cases ----------------------------------------------------------------


def _time_limit(seconds: float):
    """``avscene.tasks.runner.time_limit`` (SIGALRM), or the same thing here if it is missing."""
    try:
        from avscene.tasks.runner import time_limit
    except ImportError:  # pragma: no cover - until the runner module has landed
        import contextlib
        import signal

        from avscene.errors import InputTimeoutError

        @contextlib.contextmanager
        def time_limit(seconds: float):
            def fire(_signum, _frame):
                raise InputTimeoutError(f"took longer than {seconds:g} s")

            old = signal.signal(signal.SIGALRM, fire)
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                yield
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)

    return time_limit(seconds)


def _sources(workdir: Path) -> dict[str, tuple[str, bytes]]:
    from avscene.testing.media import has_encoders, write_video

    out = {}
    for name, (suffix, extra) in SOURCES.items():
        if not has_encoders(extra.get("video_codec", "libx264"), extra.get("audio_codec", "aac")):
            continue
        path = write_video(workdir / f"source-{name}{suffix}", **CLIP, **extra)
        out[name] = (suffix, path.read_bytes())
    return out


def _one_case(path: Path, loaded) -> str:
    """``ok``, ``AvsceneError <Type>``, or a failure: ``timeout ...`` / ``crash <Type>: ...``."""
    from avscene.errors import AvsceneError, InputTimeoutError
    from avscene.tasks.classify import classify_file

    try:
        with _time_limit(CASE_TIME_LIMIT_S):
            result = classify_file(path, loaded)
    except InputTimeoutError as e:
        return f"timeout: {e}"
    except AvsceneError as e:
        return f"AvsceneError {type(e).__name__}"
    except Exception as e:  # noqa: BLE001 - the finding: anything else escaped the library
        return f"crash {type(e).__name__}: {e}\n{traceback.format_exc(limit=-4)}"
    return "ok" if result.file == str(path) and len(result.labels) > 0 else f"crash: bad result {result}"


def child(model_dir: str, workdir: str, start: int, count: int) -> None:
    """Run cases ``start .. start + count - 1``, one JSON line per event in ``workdir/log.jsonl``."""
    import torch

    from avscene.checkpoint.load import load_pretrained
    from avscene.testing.media import mutate_bytes

    torch.set_num_threads(1)
    work = Path(workdir)
    sources = _sources(work)
    loaded = load_pretrained(model_dir, device="cpu")
    names = sorted(sources)
    with open(work / "log.jsonl", "a", buffering=1) as log:
        for case in range(start, start + count):
            rng = np.random.default_rng(case)
            name = names[case % len(names)]
            suffix, data = sources[name]
            mutated, ops = mutate_bytes(data, rng, n_ops=int(rng.integers(1, MAX_OPS + 1)))
            path = work / f"current{suffix}"
            path.write_bytes(mutated)
            log.write(json.dumps({"case": case, "source": name, "ops": ops, "input": str(path)}) + "\n")
            t0 = time.perf_counter()
            outcome = _one_case(path, loaded)
            log.write(json.dumps({"case": case, "outcome": outcome,
                                  "seconds": round(time.perf_counter() - t0, 3)}) + "\n")


# ---- the test -----------------------------------------------------------------------------------


def _read_log(path: Path) -> tuple[dict[int, dict], int | None]:
    """Cases by number (ops, outcome, seconds) and the case started last."""
    cases: dict[int, dict] = {}
    last = None
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            cases.setdefault(row["case"], {}).update(row)
            last = row["case"]
    return cases, last


def _is_failure(outcome: str) -> bool:
    return not (outcome == "ok" or outcome.startswith("AvsceneError "))


def test_mutated_clips_end_cleanly(tiny_model_dir, tmp_path):
    work = tmp_path / "fuzz"
    work.mkdir()
    cmd = [sys.executable, "-X", "faulthandler", __file__, "--child", str(tiny_model_dir), str(work), "0", str(CASES)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AVSCENE_DEBUG": ""}
    budget = CHILD_STARTUP_S + CASES * CASE_TIME_LIMIT_S
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=budget)
        died = None if proc.returncode == 0 else f"the child exited with {proc.returncode}: {proc.stderr[-2000:]}"
    except subprocess.TimeoutExpired:
        died = f"the child hung for {budget:.0f} s (a native call that SIGALRM cannot interrupt)"
    cases, last = _read_log(work / "log.jsonl")
    problems = [f"case {n} ({c['source']}, {c['ops']}): {c['outcome']}"
                for n, c in sorted(cases.items()) if _is_failure(c.get("outcome", "ok"))]
    if died is not None:
        if last is None:
            problems.append(f"{died} before the first case")
        else:
            current = Path(cases[last]["input"])
            keep = shutil.copyfile(current, tmp_path / f"crash-input{current.suffix}")
            problems.append(f"{died} in case {last} ({cases[last]['source']}, {cases[last]['ops']}); "
                            f"input kept as {keep}")
    assert not problems, "\n".join(problems)
    outcomes = [c["outcome"] for c in cases.values()]
    assert len(outcomes) == CASES
    # the mutations must not all be fatal (nor all harmless), or the fuzzer tests nothing
    assert 0 < outcomes.count("ok") < CASES


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
