"""The batch runner: shards, time limits, worker processes (order, crashes, stuck inputs), the result log.

Worker processes are started with ``spawn``: they import this module to find the
per-input functions below, so those live at module level.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from avscene.errors import AvsceneError, CheckpointError, InputTimeoutError, OutputError, UsageError
from avscene.results import FailedInput
from avscene import threads
from avscene.tasks import _pool, limits
from avscene.tasks.runner import (
    FileJob,
    Interrupted,
    ModelSpec,
    ResultLog,
    interrupts_raise,
    parse_shard,
    pending_inputs,
    run_batch,
    shard_inputs,
    time_limit,
)

SLOW_S = 30.0  # how long a "stuck" input would take: far beyond every limit used here
LIMIT_S = 0.5  # the time limit of the timeout tests


# ---- per-input functions (module level: picklable by reference for spawn workers) -----------------


@dataclass(frozen=True)
class Echo:
    """A minimal result: which file, and which process handled it."""

    file: str
    pid: int

    ok = True

    def to_json(self) -> dict:
        return {"file": self.file}


def echo(path: Path) -> Echo:
    """Inputs named ``<n>.x`` sleep ``n`` tenths of a second (so later ones can finish first)."""
    time.sleep(int(path.stem) / 10 if path.stem.isdigit() else 0.0)
    return Echo(str(path), os.getpid())


def misbehave(path: Path) -> Echo:
    """``slow``: sleeps; ``stuck``: sleeps deaf to SIGALRM; ``crash``: exits; ``kill``: SIGKILLs itself."""
    if path.stem == "slow":
        time.sleep(SLOW_S)
    elif path.stem == "stuck":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # like a long native call
        time.sleep(SLOW_S)
    elif path.stem == "crash":
        os._exit(3)
    elif path.stem == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif path.stem == "bad":
        raise UsageError("bad input: fix it")
    elif path.stem == "bug":
        raise ZeroDivisionError("oops")
    return Echo(str(path), os.getpid())


def touch_then_echo(path: Path) -> Echo:
    """``echo``, then leave ``<path>.done`` behind (an output file, as ``separate`` writes)."""
    r = echo(path)
    Path(f"{path}.done").touch()
    return r


def echo_setup():
    return echo


def touch_setup():
    return touch_then_echo


def misbehave_setup():
    import avscene.io.decode  # noqa: F401 - imported once here, not under the first input's 0.5-s limit (its probe)

    return misbehave


def broken_setup():
    raise CheckpointError("no such checkpoint; pass --model")


def hanging_setup():
    """A model load that never returns (deaf to signals, like a native call that hangs)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(SLOW_S)
    return echo


class EnvAtImport:
    """A setup that notes the thread variables a worker has when it unpickles it: the moment
    numpy and torch are imported there (their thread pools are sized then, once); and, as it
    runs, torch's threads (the worker applies its budget)."""

    def __init__(self) -> None:
        self.seen: dict[str, str | int | None] = {}

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, _state: dict) -> None:
        self.seen = {v: os.environ.get(v) for v in threads.THREAD_ENV_VARS}

    def __call__(self):
        import torch

        return functools.partial(report_env, {**self.seen, "torch": torch.get_num_threads()})


def report_env(seen: dict, path: Path) -> Echo:
    return EnvSeen(str(path), os.getpid(), seen)


@dataclass(frozen=True)
class EnvSeen(Echo):
    seen: dict


def paths(*names: str) -> list[Path]:
    return [Path(n) for n in names]


# ---- shards ---------------------------------------------------------------------------------------


def test_shard_by_hand():
    files = paths("c", "a", "d", "b", "e")  # sorted: a b c d e → shard 1: a c e, shard 2: b d
    assert shard_inputs(files, 1, 2) == paths("c", "a", "e")  # original order kept
    assert shard_inputs(files, 2, 2) == paths("d", "b")
    assert shard_inputs(files, 3, 3) == paths("c")  # sorted positions 2
    assert shard_inputs(files, 1, 1) == files


@pytest.mark.parametrize("n_files", [0, 1, 7, 23])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_shards_partition_the_inputs(rng, n_files, count):
    files = [Path(f"d{rng.integers(0, 5)}/f{k:03d}_{rng.integers(0, 1000)}.mp4") for k in range(n_files)]
    shards = [shard_inputs(files, i, count) for i in range(1, count + 1)]
    flat = [f for s in shards for f in s]
    assert sorted(flat) == sorted(files)  # every input in exactly one shard
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    for s in shards:  # each shard keeps the input order
        assert s == [f for f in files if f in s]
    shuffled = [files[k] for k in rng.permutation(n_files)]  # argument order does not matter
    assert [set(shard_inputs(shuffled, i, count)) for i in range(1, count + 1)] == [set(s) for s in shards]


def test_parse_shard():
    assert parse_shard("2/8") == (2, 8)
    assert parse_shard("1/1") == (1, 1)
    for bad in ("0/8", "9/8", "2", "a/b", "2/0", "1/2/3", ""):
        with pytest.raises(UsageError, match=r"--shard .*I/N with 1 <= I <= N"):
            parse_shard(bad)


# ---- time_limit -----------------------------------------------------------------------------------


def test_time_limit_interrupts_python_code():
    before = signal.getsignal(signal.SIGALRM)
    t0 = time.monotonic()
    with pytest.raises(InputTimeoutError, match=r"time limit of 0\.3 s .*--timeout"):
        with time_limit(0.3):
            while True:  # busy Python loop: interrupted between bytecodes
                pass
    assert time.monotonic() - t0 >= 0.29  # never early (a late timer is the machine's load)
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.mark.parametrize("seconds", [None, 0, -1])
def test_no_limit(seconds):
    with time_limit(seconds):
        time.sleep(0.05)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_time_limit_repeats_when_swallowed(monkeypatch):
    monkeypatch.setattr(limits, "TIMEOUT_REPEAT_S", 0.2)
    swallowed = 0
    t0 = time.monotonic()
    with pytest.raises(InputTimeoutError):
        with time_limit(0.2):
            while True:
                try:
                    time.sleep(0.01)
                except InputTimeoutError:
                    swallowed += 1  # code that catches it by mistake...
                    if swallowed == 2:
                        raise  # ...is reached again TIMEOUT_REPEAT_S later
    assert time.monotonic() - t0 >= 0.39 and swallowed == 2


def test_nested_limits_restore_the_outer_one():
    t0 = time.monotonic()
    with pytest.raises(InputTimeoutError, match=r"of 1\.2 s"):
        with time_limit(1.2):
            with pytest.raises(InputTimeoutError, match=r"of 0\.2 s"):
                with time_limit(0.2):
                    time.sleep(SLOW_S)
            time.sleep(SLOW_S)
    assert time.monotonic() - t0 >= 1.19  # the outer limit ran on after the inner one


def test_time_limit_outside_the_main_thread_is_refused():
    caught: list[BaseException] = []

    def body() -> None:
        try:
            with time_limit(1.0):
                pass
        except UsageError as e:
            caught.append(e)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert len(caught) == 1 and "main thread" in str(caught[0])


def test_sigterm_raises_interrupted():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as info:
        with interrupts_raise():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(SLOW_S)
    assert info.value.exit_code == 128 + 15 and isinstance(info.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before


# ---- run_batch ------------------------------------------------------------------------------------


def test_jobs_keep_input_order():
    files = paths("15.x", "1.x", "4.x", "0.x", "2.x")  # the first is the slowest: the other worker takes the rest
    results = list(run_batch(files, echo_setup, jobs=2))
    assert [r.file for r in results] == [str(f) for f in files]
    assert len({r.pid for r in results}) == 2 and os.getpid() not in {r.pid for r in results}
    here = list(run_batch(files, echo_setup, jobs=1))
    assert {r.pid for r in here} == {os.getpid()}


@pytest.mark.slow
def test_jobs_2_results_identical_to_jobs_1(tiny_model_dir, clips, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    files = [clips["av"], broken, clips["audio_only"], clips["video_only"]]
    from avscene.tasks.classify import ClassifyOptions, classify_file

    job = FileJob(classify_file, ModelSpec(str(tiny_model_dir), device="cpu"), ClassifyOptions(threshold=-10))
    one = [r.to_json() for r in run_batch(files, job, jobs=1)]
    two = [r.to_json() for r in run_batch(files, job, jobs=2)]
    assert two == one
    assert [r["file"] for r in one] == [str(f) for f in files]
    assert "error" in one[1] and all("error" not in r for r in one[:1] + one[2:])
    assert one[0]["predicted"] == [x["label"] for x in one[0]["labels"]]  # threshold -10 reached the worker


@pytest.mark.parametrize("jobs", [1, 2])
def test_timeout_fails_one_input_and_goes_on(jobs):
    files = paths("a", "slow", "b")
    results = list(run_batch(files, misbehave_setup, jobs=jobs, timeout=LIMIT_S))
    assert [r.file for r in results] == ["a", "slow", "b"]
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1], FailedInput) and "time limit of 0.5 s" in results[1].error


def test_stuck_worker_is_killed_and_replaced(monkeypatch):
    monkeypatch.setattr(_pool, "HARD_KILL_MARGIN_S", 2.0)
    files = paths("stuck", "a", "b", "c")
    results = list(run_batch(files, misbehave_setup, jobs=2, timeout=LIMIT_S))
    assert [r.ok for r in results] == [False, True, True, True]
    assert "time limit of 0.5 s" in results[0].error


@pytest.mark.parametrize(("name", "why"), [("crash", "exit code 3"), ("kill", "killed by SIGKILL")])
def test_dead_worker_fails_its_input_only(name, why):
    files = paths("a", name, "b", "c", "d")
    results = list(run_batch(files, misbehave_setup, jobs=2))
    assert [r.file for r in results] == [str(f) for f in files]
    assert [r.ok for r in results] == [True, False, True, True, True]
    assert re.search(rf"worker process died on this input \({why}", results[1].error)


def test_failures_become_failed_inputs_with_tracebacks_on_request():
    seen: list[tuple[str, str]] = []
    results = list(run_batch(paths("bad", "bug", "a"), misbehave_setup, jobs=2,
                             on_traceback=lambda f, tb: seen.append((f, tb))))
    assert results[0].error == "bad input: fix it"
    assert "internal error (ZeroDivisionError: oops)" in results[1].error and results[2].ok
    assert [f for f, _ in seen] == ["bad", "bug"]
    assert "Traceback" in seen[1][1] and "ZeroDivisionError" in seen[1][1]
    quiet = list(run_batch(paths("bad", "bug"), misbehave_setup, jobs=1))
    assert [r.error for r in quiet] == [r.error for r in results[:2]]


@pytest.mark.parametrize("jobs", [1, 2])
def test_setup_error_stops_the_run(jobs):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        list(run_batch(paths("a", "b"), broken_setup, jobs=jobs))


def test_worker_stuck_loading_the_model_fails_the_run(monkeypatch):
    monkeypatch.setattr(_pool, "SETUP_TIMEOUT_S", LIMIT_S)
    monkeypatch.setattr(_pool, "KILL_GRACE_S", 0.5)
    with pytest.raises(AvsceneError, match="did not finish loading the model within 0.5 s"):
        list(run_batch(paths("a", "b", "c"), hanging_setup, jobs=2))  # without the limit: ready after SLOW_S


def test_workers_start_with_a_thread_budget(monkeypatch, tmp_path):
    for v in threads.THREAD_ENV_VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(6)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    (tmp_path / "loadavg").write_text("0.00 0.00 0.00 1/100 42\n")  # an idle machine: 6 free cores
    monkeypatch.setattr(threads, "LOADAVG", str(tmp_path / "loadavg"))
    results = list(run_batch(paths("a", "b"), EnvAtImport(), jobs=2))
    # 6 cores / 2 workers
    assert [r.seen for r in results] == [{**dict.fromkeys(threads.THREAD_ENV_VARS, "3"), "torch": 3}] * 2
    assert all(v not in os.environ for v in threads.THREAD_ENV_VARS)  # the parent's own budget is untouched


def test_workers_share_the_budget_of_the_command():
    with threads.thread_budget(4):  # --threads 4 --jobs 2
        results = list(run_batch(paths("a", "b"), EnvAtImport(), jobs=2))
    assert [r.seen for r in results] == [{**dict.fromkeys(threads.THREAD_ENV_VARS, "2"), "torch": 2}] * 2


def test_a_thread_budget_the_user_set_is_kept(monkeypatch):
    for v in threads.THREAD_ENV_VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    results = list(run_batch(paths("a", "b"), EnvAtImport(), jobs=2))
    assert results[0].seen["OMP_NUM_THREADS"] == "1" and results[0].seen["torch"] == 1
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_closing_early_stops_the_workers():
    gen = run_batch(paths("0.x", "9.x", "9.x", "9.x"), echo_setup, jobs=2)
    with closing(gen):
        first = next(gen)
    assert first.file == "0.x"
    with pytest.raises(ProcessLookupError):  # terminated and reaped (closing joins the workers)
        os.kill(first.pid, 0)


@pytest.mark.parametrize("jobs", [1, 2])
def test_nothing_to_do_loads_nothing(jobs):
    with closing(run_batch([], broken_setup, jobs=jobs)) as results:  # setup would raise
        assert list(results) == []


def test_interrupted_pool_salvages_results_finished_ahead(tmp_path, monkeypatch):
    files = [tmp_path / "3000.x", tmp_path / "1.x", tmp_path / "2.x"]  # the first would take 300 s
    # The parent has read the results of inputs 1 and 2 (it waits for input 0 to hand them out):
    # signalled by the pool's reader itself, so the interrupt comes after them, not after a guess.
    received: set[int] = set()
    both_read = threading.Event()
    read = _pool._Pool._read

    def read_and_note(self, w):
        out = read(self, w)
        received.update(index for index, _, _ in out)
        if {1, 2} <= received:
            both_read.set()
        return out

    monkeypatch.setattr(_pool._Pool, "_read", read_and_note)

    def interrupt_when_the_others_are_done() -> None:
        # bounded (if they never come, the assertions below say so), and far: on a loaded machine the
        # workers may take longer than SLOW_S to start
        both_read.wait(10 * SLOW_S)
        os.kill(os.getpid(), signal.SIGTERM)

    salvaged: list[Echo] = []
    threading.Thread(target=interrupt_when_the_others_are_done, daemon=True).start()
    gen = run_batch(files, touch_setup, jobs=2, on_salvage=salvaged.append)
    with pytest.raises(Interrupted):
        with interrupts_raise(), closing(gen):
            next(gen)  # waits for the first input, which never finishes
    # outputs of inputs 2 and 3 exist: their results are handed over (to be recorded), in input order
    assert [r.file for r in salvaged] == [str(f) for f in files[1:]]
    assert not Path(f"{files[0]}.done").exists()


def test_a_run_here_does_not_load_the_worker_pool():
    """``jobs=1`` (or a single input) must not import ``_pool`` or ``multiprocessing``: a fresh interpreter checks."""
    import subprocess
    import sys

    code = ("import sys\nfrom pathlib import Path\nfrom avscene.tasks.runner import run_batch\n"
            "def setup():\n    return lambda p: p.name\n"
            "out = list(run_batch([Path('a'), Path('b')], setup, jobs=1)) + list(run_batch([Path('c')], setup, jobs=4))\n"
            "print(out, sorted(m for m in sys.modules if m == 'avscene.tasks._pool' or m.startswith('multiprocessing')))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['a', 'b', 'c'] []"


def test_bad_jobs():
    with pytest.raises(UsageError, match="--jobs must be >= 1"):
        run_batch(paths("a"), echo_setup, jobs=0)


# ---- the result log -------------------------------------------------------------------------------


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_log_refuses_an_existing_file_unless_resume_or_force(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"file": "a"}\n')
    with pytest.raises(OutputError, match=r"already exists; pass --resume .* or --force"):
        ResultLog(path)
    with ResultLog(path, force=True) as log:
        assert log.records == {}
        log.append({"file": "b"})
    assert lines(path) == [{"file": "b"}]
    with pytest.raises(OutputError, match="is a folder"):
        ResultLog(tmp_path)


def test_resume_skips_recorded_inputs(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResultLog(path) as log:
        log.append({"file": "a", "x": 1})
        log.append({"file": "b", "error": "broken"})
    assert path.read_text() == '{"file": "a", "x": 1}\n{"file": "b", "error": "broken"}\n'
    log = ResultLog(path, resume=True)
    assert log.repaired is None
    files = paths("a", "b", "c")
    assert pending_inputs(files, log, retry_failed=False) == paths("c")
    assert pending_inputs(files, log, retry_failed=True) == paths("b", "c")
    assert pending_inputs(files, None, retry_failed=False) == files
    with log:
        log.append({"file": "b", "x": 2})  # a retried input: its last record wins
    assert [r["file"] for r in lines(path)] == ["a", "b", "b"]
    assert ResultLog(path, resume=True).records["b"] == {"file": "b", "x": 2}


@pytest.mark.parametrize("torn", [b'{"file": "c", "x"', b'{"file": "c"\x00\x00\n', b"\x00\x00\x00"])
def test_resume_cuts_off_a_torn_last_line(tmp_path, torn):
    path = tmp_path / "r.jsonl"
    good = b'{"file": "a"}\n{"file": "b"}\n'
    path.write_bytes(good + torn)
    log = ResultLog(path, resume=True)
    assert set(log.records) == {"a", "b"}
    assert log.repaired and f"({len(torn)} bytes" in log.repaired
    assert path.read_bytes() == good + torn  # nothing is changed before the first append
    with log:
        log.append({"file": "c"})
    assert path.read_bytes() == good + b'{"file": "c"}\n'


def test_resume_refuses_a_bad_line_in_the_middle(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"file": "a"}\nnot json\n{"file": "b"}\n')
    with pytest.raises(OutputError, match=r"line 2 is not a result record"):
        ResultLog(path, resume=True)


def test_append_is_durable_across_a_hard_kill(tmp_path):
    """A child appends records and is SIGKILLed between appends: every line of the file is whole."""
    import subprocess
    import sys

    path = tmp_path / "r.jsonl"
    code = ("import sys, time\nfrom avscene.tasks.runner import ResultLog\nlog = ResultLog(sys.argv[1])\n"
            "for k in range(100000):\n    log.append({'file': f'f{k}', 'pad': 'x' * 5000})\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
    deadline = time.monotonic() + 30
    while (not path.exists() or path.stat().st_size < 50_000) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    # Linux may cut a multi-page write short on SIGKILL, so the last line can be torn (that is
    # what resume repairs); every line before it is whole and in order.
    *whole, tail = path.read_bytes().split(b"\n")
    recs = [json.loads(line) for line in whole]
    assert len(recs) >= 10 and [r["file"] for r in recs] == [f"f{k}" for k in range(len(recs))]
    with ResultLog(path, resume=True) as log:
        assert log.done() == {r["file"] for r in recs}
        assert (log.repaired is not None) == (tail != b"")  # a torn last line is found, a whole one kept
        log.append({"file": "after"})  # the repair (cutting the torn line) happens at the first append
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and [json.loads(line)["file"] for line in lines[:-1]] == [r["file"] for r in recs] + ["after"]


def test_input_limit_adds_the_media_duration_from_the_header(tmp_path):
    """A long file gets a longer limit: base + 1 s per media second; unreadable or no limit as documented."""
    from avscene.tasks.limits import MEDIA_TIME_FACTOR, input_limit
    from avscene.testing.media import write_video

    clip = write_video(tmp_path / "three.mp4", duration=3.0, fps=8)
    limit = input_limit(clip, 10.0)
    assert limit == pytest.approx(10.0 + MEDIA_TIME_FACTOR * 3.0, abs=0.2)  # AAC/H.264 header rounding
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    assert input_limit(junk, 10.0) == 10.0
    assert input_limit(clip, 0) is None and input_limit(clip, None) is None


class _SignalFromAnotherThread(ResultLog):
    """A result log whose first append asks a thread started beforehand (unmasked, like
    rich's refresh thread) to send SIGTERM to the process, and waits until it has: the kernel
    delivers the signal to that thread, and Python runs the handler in the main thread in
    the middle of the held section."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.go, self.sent = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._send, daemon=True)
        self.thread.start()

    def _send(self) -> None:
        self.go.wait()
        os.kill(os.getpid(), signal.SIGTERM)
        self.sent.set()

    def append(self, record: dict) -> None:
        super().append(record)
        if not self.go.is_set():
            self.go.set()
            # The kernel may hand the signal to any thread that does not block it, and that
            # thread may run its C handler after os.kill returned: wait (still inside the held
            # section) until the Python handler has recorded it, not for a number of bytecodes.
            assert self.sent.wait(timeout=60)
            deadline = time.monotonic() + 60
            while limits._Hold.pending is None and time.monotonic() < deadline:
                time.sleep(0.001)  # the main thread runs pending handlers between bytecodes
            assert limits._Hold.pending == signal.SIGTERM


def test_sigterm_in_another_thread_never_tears_the_log_from_the_count(tmp_path):
    from avscene.cli._output import Sink

    with _SignalFromAnotherThread(tmp_path / "r.jsonl") as log:
        sink = Sink(mode="jsonl", log=log)
        with pytest.raises(Interrupted) as info, interrupts_raise():
            for i in range(3):
                sink.add(FailedInput(file=f"f{i}", error="x"))
        assert info.value.signum == signal.SIGTERM
    recorded = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(recorded) == len(sink.results) == 1  # what the log holds is what was counted
