"""Worker processes for :func:`avscene.tasks.runner.run_batch` with ``jobs >= 2``.

Imported by ``run_batch`` only when it needs workers, so a ``--jobs 1`` run
never loads ``multiprocessing``. Each worker (``spawn``) builds its per-input
function once (loads the model once), then answers inputs one at a time over a
pipe:

* parent → worker: ``(index, path)``, or ``None`` to exit;
* worker → parent: ``("ready",)`` after setup, ``("setup_error", error,
  traceback)`` if setup raised, ``("done", index, result, traceback)`` per input.

A worker that dies fails its current input and is replaced; one still busy
``HARD_KILL_MARGIN_S`` after its own time limit fired (stuck in native code) is
killed and replaced; one not ready ``SETUP_TIMEOUT_S`` after it started (a model
load that hangs) is killed and the run fails: no wait in the parent is unbounded.
Results leave :func:`run_pool` in input order.
"""

from __future__ import annotations

import math
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avscene.errors import AvsceneError
from avscene.results import FailedInput, InputResult
from avscene.tasks.limits import (
    Interrupted, Setup, hold_signals, input_limit, interrupts_held, raise_interrupted, run_one, timeout_message,
)
from avscene.threads import budget, child_thread_budget, share, thread_budget

HARD_KILL_MARGIN_S = 5.0  # a worker still busy this long after its own timer fired is stuck: killed
KILL_GRACE_S = 3.0  # after SIGTERM, time a worker gets to clean up (temporary files) before SIGKILL
SHUTDOWN_WAIT_S = 10.0  # time idle workers get to exit after the last input
SETUP_TIMEOUT_S = 900.0  # a worker not ready this long after it started is stuck loading the model: the run fails


class _RemoteTraceback(Exception):
    """A worker's traceback text, attached as ``__cause__`` of its error re-raised in the parent."""

    def __str__(self) -> str:
        return str(self.args[0])


def _send(conn: Any, msg: tuple) -> None:
    """Pickle and send ``msg``; an unpicklable result or error is replaced by a plain one."""
    import pickle

    try:
        data = pickle.dumps(msg)
    except Exception as e:  # noqa: BLE001 - e.g. a result holding an open file
        if msg[0] == "done":
            msg = ("done", msg[1], FailedInput(str(msg[2].file), f"internal error: the result cannot be sent "
                                               f"between processes ({e}); rerun with --jobs 1"), msg[3])
        else:
            msg = (msg[0], AvsceneError(f"{type(msg[1]).__name__}: {msg[1]}"), msg[2])
        data = pickle.dumps(msg)
    conn.send_bytes(data)


def _terminated(signum: int, frame: Any) -> None:
    """A worker's SIGTERM: unwind once; a second SIGTERM must not cut the unwinding (the removal
    of temporary files) short, so it is ignored (the parent SIGKILLs after ``KILL_GRACE_S``)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise_interrupted(signum, frame)


def _worker_main(conn: Any, setup: Setup, timeout: float | None, verbose: bool) -> None:
    """A worker process: build the per-input function once, then answer ``(index, path)`` until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, _terminated)  # unwind, so atomic writes remove their temp files
    # This worker's share of the thread budget was in its environment from its start
    # (child_thread_budget), read by numpy and torch as ``setup`` was unpickled; thread_budget()
    # applies it to every pool (and to EdgeBoxes' threads) as it does in a command's process.
    try:
        with thread_budget():
            _serve(conn, setup, timeout, verbose)
    except Interrupted as e:
        raise SystemExit(e.exit_code) from None
    except (EOFError, OSError):  # the parent has gone
        return


def _serve(conn: Any, setup: Setup, timeout: float | None, verbose: bool) -> None:
    """Build the per-input function once, then answer ``(index, path)`` until None."""
    import traceback

    try:
        fn = setup()
    except Exception as e:  # noqa: BLE001 - re-raised in the parent
        _send(conn, ("setup_error", e, traceback.format_exc()))
        return
    _send(conn, ("ready",))
    while (msg := conn.recv()) is not None:
        index, path = msg
        result, tb = run_one(fn, path, timeout=timeout, verbose=verbose)
        _send(conn, ("done", index, result, tb))


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


@dataclass
class _Worker:
    process: Any  # multiprocessing Process (spawn context)
    conn: Any  # the parent's end of its pipe
    ready: bool = False  # setup done: the model is loaded
    task: tuple[int, Path] | None = None  # (input index, path) being processed
    limit: float | None = None  # the current input's time limit (limits.input_limit)
    deadline: float = math.inf  # time.monotonic() after which it is stuck: killed (setup, then each input)


Done = tuple[int, Any, "str | None"]  # (input index, result or FailedInput, traceback text)


class _Pool:
    """Worker processes for :func:`run_pool`: one input each at a time, dead or stuck ones replaced."""

    def __init__(self, setup: Setup, *, size: int, timeout: float | None, verbose: bool) -> None:
        import multiprocessing

        self.ctx = multiprocessing.get_context("spawn")  # fork is unsafe with torch / CUDA threads
        self.setup, self.size, self.verbose = setup, size, verbose
        self.timeout = timeout if timeout and timeout > 0 else None
        self.threads = share(budget(), size)  # each worker's part of the thread budget: no oversubscription
        self.workers: list[_Worker] = []

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker_main, name="avscene-worker", daemon=True,
                                args=(child, self.setup, self.timeout, self.verbose))
        # SIGINT inherited blocked: a Ctrl-C cannot kill it half-started; its thread budget in its environment
        with hold_signals(signal.SIGINT), child_thread_budget(self.threads):
            proc.start()
        child.close()
        self.workers.append(_Worker(proc, parent, deadline=time.monotonic() + SETUP_TIMEOUT_S))

    def dispatch(self, todo: deque[tuple[int, Path]]) -> None:
        """Start workers up to the pool size while inputs wait; give each idle ready one an input."""
        while todo and len(self.workers) < self.size:
            self._start()
        for w in self.workers:
            if not (todo and w.ready and w.task is None):
                continue
            w.task = todo.popleft()
            try:
                w.conn.send(w.task)
            except OSError:  # it has just died: the input goes back, poll() buries the worker
                todo.appendleft(w.task)
                w.task = None
                continue
            w.limit = input_limit(Path(w.task[1]), self.timeout)  # the worker applies the same limit
            w.deadline = math.inf if w.limit is None else time.monotonic() + w.limit + HARD_KILL_MARGIN_S

    def wait(self) -> None:
        """Block until a result, a death or a deadline (interruptible: nothing is read here)."""
        from multiprocessing.connection import wait

        deadline = min((w.deadline for w in self.workers), default=math.inf)
        wait([h for w in self.workers for h in (w.conn, w.process.sentinel)],
             timeout=None if deadline == math.inf else max(0.0, deadline - time.monotonic()))

    def collect(self) -> list[Done]:
        """The inputs that finished since the last call (results read, deaths, overruns)."""
        out: list[Done] = []
        for w in list(self.workers):
            out.extend(self._read(w))
            if not w.process.is_alive():
                out.extend(self._bury(w))
            elif not w.ready and time.monotonic() > w.deadline:
                self._stop([w])
                raise AvsceneError(f"a worker process did not finish loading the model within {SETUP_TIMEOUT_S:g} s; "
                                   "rerun with --jobs 1 to see why")
            elif w.task is not None and time.monotonic() > w.deadline:
                index, path = w.task
                self._stop([w])
                out.append((index, FailedInput(str(path), timeout_message(w.limit or 0)), None))
        return out

    def _read(self, w: _Worker) -> list[Done]:
        msgs = []
        try:
            while w.conn.poll():
                msgs.append(w.conn.recv())
        except (EOFError, OSError):
            pass  # it died mid-message: _bury reports its input
        out: list[Done] = []
        for msg in msgs:
            if msg[0] == "setup_error":
                raise msg[1] from _RemoteTraceback(msg[2])
            if msg[0] == "ready":
                w.ready, w.deadline = True, math.inf
            else:
                out.append(msg[1:])
                w.task, w.deadline = None, math.inf
        return out

    def _bury(self, w: _Worker) -> list[Done]:
        """A worker ended on its own: fail its input (if any); before it was ready, the run fails."""
        w.process.join()
        self.workers.remove(w)
        w.conn.close()
        code = _exit_text(w.process.exitcode)
        if not w.ready:
            raise AvsceneError(f"a worker process ended ({code}) before loading the model; rerun with "
                               "--jobs 1 to see why")
        if w.task is None:
            return []
        return [(w.task[0], FailedInput(str(w.task[1]), f"the worker process died on this input ({code}: a "
                                        "crash in native code, or out of memory?); try it alone with --jobs 1"),
                 None)]

    def _stop(self, workers: list[_Worker]) -> list[Done]:
        """SIGTERM (they unwind and remove temp files), SIGKILL after ``KILL_GRACE_S``; forget them.

        Returns the results they had sent but that were not read yet.
        """
        for w in workers:
            if w.process.is_alive():
                w.process.terminate()
        end = time.monotonic() + KILL_GRACE_S
        sent: list[Done] = []
        for w in workers:
            w.process.join(max(0.0, end - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            try:  # complete messages stay readable in the pipe after the worker is gone
                while w.conn.poll():
                    msg = w.conn.recv()
                    sent.extend([msg[1:]] if msg[0] == "done" else [])
            except (EOFError, OSError):
                pass
            self.workers.remove(w)
            w.conn.close()
        return sent

    def close(self, *, completed: bool) -> list[Done]:
        """After the last input, ask idle workers to exit; otherwise (interrupted) terminate them.

        Returns the results that were sent but not read (an interrupted run).
        """
        with hold_signals(signal.SIGINT, signal.SIGTERM):
            if completed:
                for w in self.workers:
                    try:
                        w.conn.send(None)
                    except OSError:
                        pass
                end = time.monotonic() + SHUTDOWN_WAIT_S
                for w in self.workers:
                    w.process.join(max(0.0, end - time.monotonic()))
            return self._stop(list(self.workers))


def run_pool(files: Sequence[Path], setup: Setup, *, jobs: int, timeout: float | None,
             on_traceback: Callable[[str, str], None] | None,
             on_salvage: Callable[[InputResult], None] | None) -> Iterator[InputResult]:
    """``setup()``'s function over ``files`` in ``min(jobs, len(files))`` workers; yields results in input order.

    Args:
        files: the inputs (at least one).
        setup: picklable; called once in each worker.
        jobs: the most worker processes to run at once.
        timeout: seconds per input; None or ``<= 0``: no limit.
        on_traceback: see :func:`avscene.tasks.runner.run_batch`; None: workers send no tracebacks.
        on_salvage: see :func:`avscene.tasks.runner.run_batch`.

    Raises:
        Whatever ``setup`` raised in a worker, its traceback attached as ``__cause__``.
        AvsceneError: a worker process ended before it was ready.
    """
    pool = _Pool(setup, size=min(jobs, len(files)), timeout=timeout, verbose=on_traceback is not None)
    todo = deque((k, Path(f)) for k, f in enumerate(files))
    finished: dict[int, tuple[Any, str | None]] = {}
    completed = False
    try:
        for k in range(len(files)):
            while k not in finished:  # results arrive in any order; they leave in input order
                pool.dispatch(todo)
                pool.wait()
                with interrupts_held():  # a result read from its worker is recorded before a signal lands
                    finished.update((i, (r, tb)) for i, r, tb in pool.collect())
            result, tb = finished.pop(k)
            if tb is not None and on_traceback is not None:
                on_traceback(str(result.file), tb)
            yield result
        completed = True
    finally:
        finished.update((i, (r, tb)) for i, r, tb in pool.close(completed=completed))
        if on_salvage is not None:  # stopped early: finished inputs that never got their turn
            for k in sorted(finished):
                on_salvage(finished[k][0])



__all__ = ["HARD_KILL_MARGIN_S", "KILL_GRACE_S", "SETUP_TIMEOUT_S", "SHUTDOWN_WAIT_S", "run_pool"]
