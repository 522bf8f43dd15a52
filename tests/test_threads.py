"""The thread budget (avscene/threads.py): the default from cores, load and jobs, and that a command
run with ``--threads N`` really runs torch, the BLAS / OpenMP pools, OpenCV and EdgeBoxes on N threads."""

from __future__ import annotations

import os
import re

import pytest

from avscene import threads
from avscene.cli.app import main
from avscene.proposals.visual import MAX_PROPOSAL_THREADS, proposal_threads


@pytest.mark.parametrize(("cores", "busy", "jobs", "expected"), [
    (2, 0.0, 1, 2),  # an idle 2-core machine: both cores
    (2, 1.0, 1, 1),  # beside one busy process: the free core
    (2, 0.3, 1, 2),  # a passing blip does not cost a core
    (2, 5.0, 1, 1),  # overloaded: still one thread
    (8, 2.4, 1, 6),  # 5.6 free cores: 6
    (8, 2.6, 1, 5),  # 5.4: 5
    (8, 0.0, 3, 2),  # 8 free cores shared by 3 workers: 2 each
    (16, 1.0, 2, 7),  # 15 free cores, 2 workers
    (2, 0.0, 4, 1),  # more workers than cores: one each
    (4, -1.0, 1, 4),  # a negative estimate counts as idle
])
def test_default_threads(cores, busy, jobs, expected):
    assert threads.default_threads(cores, busy, jobs) == expected


@pytest.mark.parametrize(("text", "cores", "machine", "expected"), [
    ("1.50 0.80 0.30 2/412 9876", 2, 2, 1.0),  # one other process running now, and for a while
    ("1.80 0.90 0.40 1/300 9876", 2, 2, 0.0),  # only this process runs: the load is an earlier run's
    ("0.20 0.10 0.05 5/300 9876", 2, 2, 0.2),  # a blip of runnable threads, no load to speak of
    ("32.00 30.0 30.0 40/900 9876", 2, 64, 1.0),  # a container given 2 of 64 CPUs: its share of the load
])
def test_busy_cores_from_loadavg(text, cores, machine, expected):
    assert threads.busy_cores(text, cores=cores, machine_cpus=machine) == pytest.approx(expected)


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A 4-CPU machine whose /proc/loadavg says what the test writes; no thread variables set."""
    for v in threads.THREAD_ENV_VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(4)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    loadavg = tmp_path / "loadavg"
    monkeypatch.setattr(threads, "LOADAVG", str(loadavg))
    return loadavg


def test_budget_is_the_free_cores_unless_set(machine, monkeypatch):
    machine.write_text("1.00 1.00 1.00 2/100 42\n")
    assert threads.budget() == 3 and proposal_threads() == 3
    machine.write_text("0.00 0.00 0.00 1/100 42\n")
    assert threads.budget() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the usual way to say it is kept
    assert threads.budget() == 1 and proposal_threads() == 1
    with threads.thread_budget(2):  # an applied budget wins
        assert threads.budget() == 2
    machine.unlink()  # no /proc/loadavg (not Linux): every core counts as free
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.budget() == 4


def test_a_torchrun_process_takes_its_share(machine, monkeypatch):
    machine.write_text("0.00 0.00 0.00 1/100 42\n")
    assert threads.process_threads(None) == 4 and threads.process_threads(2) == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.process_threads(None) == 2 and threads.process_threads(3) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what torchrun sets by default
    assert threads.process_threads(None) == 1


def test_edgeboxes_threads_are_bounded():
    with threads.thread_budget(MAX_PROPOSAL_THREADS + 5):
        assert proposal_threads() == MAX_PROPOSAL_THREADS


def thread_state() -> dict:
    """Every thread count the budget sets, read from the libraries themselves."""
    import cv2
    import threadpoolctl
    import torch

    return {"torch": torch.get_num_threads(), "cv2": cv2.getNumThreads(), "edgeboxes": proposal_threads(),
            "env": {v: os.environ.get(v) for v in threads.THREAD_ENV_VARS},
            "pools": {f"{p['internal_api']} {p['filepath']}": p["num_threads"]
                      for p in threadpoolctl.threadpool_info()}}


def restored(before: dict, after: dict) -> None:
    """Each count as it was before (EdgeBoxes' follows the machine's load, outside a budget)."""
    assert {k: after[k] for k in ("torch", "cv2", "env")} == {k: before[k] for k in ("torch", "cv2", "env")}
    assert {k: after["pools"][k] for k in before["pools"]} == before["pools"]  # (a pool loaded inside keeps n)


def expect(state: dict, n: int) -> None:
    assert state["torch"] == n and state["cv2"] == n and state["edgeboxes"] == min(n, MAX_PROPOSAL_THREADS)
    assert state["env"] == dict.fromkeys(threads.THREAD_ENV_VARS, str(n))
    assert any(key.split()[0] in ("openblas", "mkl", "blis") for key in state["pools"])  # numpy's BLAS is seen
    assert set(state["pools"].values()) == {n}, state["pools"]


@pytest.mark.parametrize("n", [1, 3])  # 1: below every library's default on >= 2 cores; 3: above the tests' 1
def test_thread_budget_sets_every_pool_and_restores_them(n):
    before = thread_state()
    with threads.thread_budget(n) as got:
        assert got == n
        expect(thread_state(), n)
    restored(before, thread_state())


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize(("command", "module", "function"), [
    ("classify", "avscene.tasks.classify", "classify_file"),
    ("separate", "avscene.tasks.outputs", "separate_and_write"),
])
def test_a_command_runs_on_its_threads(n, command, module, function, monkeypatch, capsys, tiny_model_dir, clips,
                                       tmp_path):
    import importlib

    mod = importlib.import_module(module)
    real, seen = getattr(mod, function), []

    def spy(*args, **kwargs):  # what the libraries say while the command works on its input
        seen.append(thread_state())
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, function, spy)
    before = thread_state()
    extra = ["-o", str(tmp_path / "{name}.wav")] if command == "separate" else []
    code = main([command, str(clips["av"]), "-m", str(tiny_model_dir), "--threads", str(n), "--json", *extra])
    assert code == 0, capsys.readouterr().err
    assert len(seen) == 1
    expect(seen[0], n)
    restored(before, thread_state())  # an in-process run leaves the caller's settings as they were


def test_uses_threads_runs_a_command_under_its_option():
    from avscene.cli._options import uses_threads

    @uses_threads
    def cmd(*, threads=None):
        return thread_state()

    expect(cmd(threads=3), 3)


COMMANDS = ("classify", "localize", "report", "separate", "evaluate", "evaluate-separation", "train",
            "train-separator", "train-dictionaries", "calibrate")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_computing_command_takes_threads(command, capsys):
    assert main([command, "--help"]) == 0
    assert re.search(r"--threads\s+N", capsys.readouterr().out)


def test_threads_must_be_positive(capsys, clips):
    assert main(["classify", str(clips["av"]), "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err
