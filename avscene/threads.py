"""The thread budget: how many CPU threads avscene's numerical libraries may use in a process.

A library left to itself starts one thread per core, and its threads wait for each other at every
parallel step (OpenMP and OpenBLAS threads spin at their barriers). On a machine busy with other
work that is ruinous: on 2 cores beside one busy process, ``separate`` of a 10-s clip took
9.8-22.9 s with a thread per core against 3.2 s with one. So every command runs under one budget
(``--threads N``, declared once in ``cli/_options.py``), and this module is its one home:

* :func:`default_threads` (pure): the cores that other work leaves free, shared by ``jobs``
  processes; :func:`busy_cores` (pure) reads how many cores other work keeps busy from the text of
  ``/proc/loadavg``; :func:`free_threads` applies both to this machine.
* :func:`thread_budget`: a block run under a budget. It sets ``OMP_NUM_THREADS``,
  ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENCV_FOR_THREADS_NUM`` (read by each
  library when it loads: torch's OpenMP and MKL, and child processes), and limits what is loaded
  already: torch's intra-op (and, once per process, inter-op) threads, the BLAS and OpenMP pools
  of numpy, scipy and OpenCV (threadpoolctl) and OpenCV's own pool. Everything is restored after.
* :func:`budget`: this process's budget, read by those who start threads themselves: EdgeBoxes'
  frame threads (:func:`avscene.proposals.visual.proposal_threads`) and the ``--jobs`` worker
  pool (:mod:`avscene.tasks._pool`: each of N workers gets ``budget() // N``, at least 1, in the
  environment it starts with: :func:`child_thread_budget`).

The default: the CPUs this process may run on (``os.sched_getaffinity``) less the cores busy with
other work, which is the smaller of the 1-minute load average and the processes runnable right
now (the average alone would count a previous avscene run, or lag a minute behind new work; the
snapshot alone would catch a passing blip), both scaled to this process's share of the machine.
``OMP_NUM_THREADS``, when set, is the default instead: the usual way to say it, kept.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

# Read by each library when it loads (numpy's OpenBLAS, MKL, OpenMP: torch; OpenCV's pool), and
# inherited by child processes.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")
LOADAVG = "/proc/loadavg"


class _State:
    applied: int | None = None  # the budget of the innermost thread_budget block, None outside one


def default_threads(cores: int, busy: float, jobs: int = 1) -> int:
    """Threads per process: the cores that other work leaves free, shared by ``jobs`` processes.

    Args:
        cores: CPUs this process may run on.
        busy: cores kept busy by other work (:func:`busy_cores`).
        jobs: processes sharing the free cores (``--jobs``, torchrun's local world size).

    Returns:
        ``round(cores - busy)`` (at least 1) divided by ``jobs``, rounded down, at least 1.
    """
    free = max(1, math.floor(cores - min(max(busy, 0.0), cores) + 0.5))
    return share(free, jobs)


def share(threads: int, jobs: int) -> int:
    """One of ``jobs`` processes' part of ``threads``: rounded down, at least 1."""
    return max(1, threads // max(1, jobs))


def busy_cores(loadavg: str, *, cores: int, machine_cpus: int) -> float:
    """Cores of this process's share of the machine that other work keeps busy.

    Args:
        loadavg: the text of ``/proc/loadavg`` (``"1.02 0.61 0.33 2/412 9876"``: the 1-, 5- and
            15-minute load averages, runnable / all scheduling entities, last pid), read by
            this process: the runnable count includes it.
        cores: CPUs this process may run on.
        machine_cpus: CPUs of the machine (the load is the machine's: on a container given
            2 of 64 CPUs, its share is 2/64 of it).

    Returns:
        ``min(1-minute load, runnable - 1)`` x ``cores / machine_cpus``.
    """
    fields = loadavg.split()
    load1, runnable = float(fields[0]), int(fields[3].split("/")[0])
    other = max(0.0, min(load1, runnable - 1.0))
    return other * cores / max(cores, machine_cpus)


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask; all of them where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def free_threads(jobs: int = 1) -> int:
    """:func:`default_threads` on this machine now (without ``/proc/loadavg``: its free cores all)."""
    cores = available_cores()
    try:
        with open(LOADAVG) as f:
            busy = busy_cores(f.read(), cores=cores, machine_cpus=os.cpu_count() or cores)
    except (OSError, ValueError, IndexError):  # not Linux: no runnable count
        busy = 0.0
    return default_threads(cores, busy, jobs)


def _env_threads() -> int | None:
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def budget() -> int:
    """This process's thread budget: the one applied (:func:`thread_budget`), else ``OMP_NUM_THREADS``,
    else :func:`free_threads`."""
    return _State.applied or _env_threads() or free_threads()


def process_threads(threads: int | None) -> int:
    """This process's part of a command's budget ``threads`` (None: :func:`budget`): all of it, or
    under torchrun its share with the job's other processes on this machine (``LOCAL_WORLD_SIZE``)."""
    local = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    return share(threads or budget(), int(local) if local.isdigit() else 1)


@contextmanager
def thread_budget(threads: int | None = None) -> Iterator[int]:
    """Run the block with at most ``threads`` CPU threads in every library; yields the number.

    Args:
        threads: the budget (``--threads``); None: :func:`budget` (``OMP_NUM_THREADS`` when
            set, else the free cores).

    Raises:
        ValueError: ``threads`` < 1.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    n = threads or budget()
    with ExitStack() as stack:
        stack.enter_context(_environment(n))
        stack.enter_context(_loaded_pools(n))
        before, _State.applied = _State.applied, n
        stack.callback(setattr, _State, "applied", before)
        yield n


@contextmanager
def child_thread_budget(threads: int) -> Iterator[None]:
    """Processes started inside the block get ``threads`` threads (in their environment, read
    before they import numpy or torch: a ``spawn`` child unpickles its arguments first)."""
    with _environment(threads):
        yield


@contextmanager
def _environment(n: int) -> Iterator[None]:
    old = {v: os.environ.get(v) for v in THREAD_ENV_VARS}
    os.environ.update(dict.fromkeys(THREAD_ENV_VARS, str(n)))
    try:
        yield
    finally:
        for v, value in old.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value


@contextmanager
def _loaded_pools(n: int) -> Iterator[None]:
    """Limit the pools of the libraries loaded now: torch (imported here: every command uses it,
    and its inter-op pool can be sized only before its first use), BLAS / OpenMP, OpenCV."""
    import threadpoolctl
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # sized already (by an earlier block, or used): once per process
        pass
    limiter = threadpoolctl.threadpool_limits(limits=n)
    cv2 = sys.modules.get("cv2")
    cv2_before = cv2.getNumThreads() if cv2 is not None else None
    if cv2 is not None:
        cv2.setNumThreads(n)
    try:
        yield
    finally:
        if cv2 is not None:
            cv2.setNumThreads(cv2_before)
        limiter.restore_original_limits()
        torch.set_num_threads(before)


__all__ = ["THREAD_ENV_VARS", "available_cores", "budget", "busy_cores", "child_thread_budget", "default_threads",
           "free_threads", "process_threads", "share", "thread_budget"]
