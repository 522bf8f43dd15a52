"""Batch runs over many inputs: shards, per-input time limits, worker processes, a resumable log.

* :func:`run_batch` applies a per-input function to a list of files and yields
  one result per input **in input order**: in this process (``jobs=1``) or in
  ``jobs`` worker processes (``spawn``), each of which builds its function once
  (loads the model once). A failing input becomes a
  :class:`~avscene.results.FailedInput` and the run goes on; a worker that dies
  (a crash in native code, the OOM killer) fails its current input and is
  replaced.
* **Time limit per input** (``timeout`` seconds, None: none). In this process,
  :func:`time_limit` raises :class:`~avscene.errors.InputTimeoutError` from a
  ``SIGALRM`` timer (Python code gets it between bytecodes: PyAV decode loops
  return to Python between packets, but one long native call is only
  interrupted when it returns). A worker uses the same timer, and the parent
  kills a worker that is still busy ``HARD_KILL_MARGIN_S`` after its limit
  (stuck in native code) and starts a new one. The worker pool lives in
  :mod:`avscene.tasks._pool`, imported only when ``jobs >= 2``.
* **Shards** (:func:`shard_inputs`): shard ``I`` of ``N`` is every ``N``-th input
  of the list sorted by path, starting with the ``I``-th, so ``N`` machines
  running ``--shard 1/N`` … ``--shard N/N`` on the same inputs process each input
  exactly once.
* **Result log** (:class:`ResultLog`): a JSONL file with one complete record per
  line, appended with one write + fsync per record; a torn last line (a hard
  kill mid-write) is cut off when the log is reopened to resume.
* **Interruption**: inside :func:`interrupts_raise`, ``SIGINT`` and ``SIGTERM``
  raise :class:`Interrupted` (a ``KeyboardInterrupt``), so ``finally`` blocks
  (atomic writes, worker shutdown) run. Workers ignore ``SIGINT`` (a terminal's
  Ctrl-C reaches the whole process group): the parent stops them with ``SIGTERM``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avscene.errors import AvsceneError, InputTimeoutError, OutputError, UsageError
from avscene.results import FailedInput

if TYPE_CHECKING:
    from avscene.hub import LoadedModel

DEFAULT_TIMEOUT_S = 120.0  # base allowance per input (~60x a 10-s clip on a busy 2-core CPU)
# ... plus this many seconds per second of media (header duration): classify/localize run at
# ~0.1x and separate at ~0.16x real time on 2 CPU cores, so a 1-h file gets 3,720 s (~6x headroom)
MEDIA_TIME_FACTOR = 1.0
TIMEOUT_REPEAT_S = 1.0  # re-raise every second, in case code under the limit swallows the first one
EXIT_SIGNAL_BASE = 128  # shell convention: a process ended by signal N exits with 128 + N

PerInput = Callable[[Path], Any]  # one input → its result; raises AvsceneError when it fails
Setup = Callable[[], PerInput]  # picklable; called once per process (loads the model)


# --------------------------------------------------------------------------- signals


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while :func:`interrupts_raise` was active."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM."""
        return EXIT_SIGNAL_BASE + self.signum


class _Hold:
    """Process-wide bookkeeping of held sections (signal handlers always run in the main thread).

    Masking signals with ``pthread_sigmask`` covers only the calling thread: a signal that the
    kernel hands to another thread (rich's refresh thread, say) still makes Python run the
    handler in the main thread, in the middle of the section. So the handler itself checks
    this state: inside a held section it only records the signal, and the section raises it
    when it ends, at a point where the bookkeeping is whole.
    """

    depth = 0
    pending: int | None = None


def _raise_interrupted(signum: int, _frame: Any) -> None:
    if _Hold.depth:
        _Hold.pending = signum  # raised by the held section when it ends
        return
    raise Interrupted(signum)


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Inside the block, SIGINT and SIGTERM raise :class:`Interrupted` (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        _Hold.pending = None
        for s, handler in old.items():
            signal.signal(s, handler)


@contextmanager
def _deferred(*signums: int) -> Iterator[None]:
    """Hold back ``signums`` inside the block; a pending one is raised (as :class:`Interrupted`,
    under :func:`interrupts_raise`) or delivered when the outermost held block ends."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    _Hold.depth += 1
    try:
        yield
    except Interrupted:
        _Hold.pending = None  # already on its way out
        raise
    finally:
        _Hold.depth -= 1
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    if _Hold.depth == 0 and _Hold.pending is not None:
        signum, _Hold.pending = _Hold.pending, None
        raise Interrupted(signum)


def interrupts_held() -> contextlib.AbstractContextManager[None]:
    """Hold back Ctrl-C and SIGTERM inside the block (bookkeeping that must not be torn in two)."""
    return _deferred(signal.SIGINT, signal.SIGTERM)


def timeout_message(seconds: float) -> str:
    return (f"timed out: took longer than the time limit of {seconds:g} s for this input; raise it with "
            "--timeout SECONDS (the base per input, 0: no limit)")


def input_limit(path: Path, timeout: float | None) -> float | None:
    """One input's time limit: ``timeout`` + ``MEDIA_TIME_FACTOR`` x its duration from the header.

    The header is read under the base limit; an unreadable one counts as 0 s (the
    per-input function then reports why the file cannot be read). None: no limit.
    """
    import math

    if not timeout or timeout <= 0:
        return None
    from avscene.io.decode import probe

    try:
        with time_limit(timeout):
            duration = float(probe(path).duration or 0.0)
    except Exception:  # noqa: BLE001 - any unreadable header: no media allowance
        duration = 0.0
    return timeout + MEDIA_TIME_FACTOR * (duration if math.isfinite(duration) and duration > 0 else 0.0)


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`~avscene.errors.InputTimeoutError` in the block once it has run ``seconds``.

    A ``SIGALRM`` timer (``signal.setitimer``): the error is raised in the main
    thread between Python bytecodes, then again every ``TIMEOUT_REPEAT_S`` until
    the block ends (code that catches it by mistake cannot keep running
    forever). A native call that does not return is not interrupted. An
    enclosing limit is restored (and fires) after the block. ``None`` or
    ``<= 0``: no limit.

    Raises:
        UsageError: a limit was asked for outside the main thread (signals only reach it).
    """
    if seconds is None or seconds <= 0:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        raise UsageError("time_limit() works in the main thread only; run the batch there, or with jobs >= 2")

    def _fire(_signum: int, _frame: Any) -> None:
        raise InputTimeoutError(timeout_message(seconds))

    start = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, _fire)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds, TIMEOUT_REPEAT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:  # an outer limit: re-arm it with what is left of it (at least 1 ms)
            left = max(old_delay - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


# --------------------------------------------------------------------------- shards


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → ``(I, N)`` with ``1 <= I <= N``; raises UsageError otherwise."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        i = n = 0
    if not 1 <= i <= n:
        raise UsageError(f"--shard {text!r}: write I/N with 1 <= I <= N, e.g. --shard 2/8")
    return i, n


def shard_inputs(files: Sequence[Path], index: int, count: int) -> list[Path]:
    """Shard ``index`` (1-based) of ``count``: the inputs at sorted positions ``index-1``, ``+count``, …

    Positions are taken in the list sorted by path string (code-point order, so
    the split does not depend on argument order or locale); the inputs kept are
    returned in their original order. Every input is in exactly one shard, and
    shard sizes differ by at most one.
    """
    if not 1 <= index <= count:
        raise UsageError(f"shard {index}/{count}: the index must lie in 1..{count}")
    ranked = sorted(range(len(files)), key=lambda k: str(files[k]))
    keep = {ranked[pos] for pos in range(index - 1, len(files), count)}
    return [f for k, f in enumerate(files) if k in keep]


# --------------------------------------------------------------------------- result log


class ResultLog:
    """An append-only JSONL file of results: every line a complete JSON record with a ``"file"``.

    Each record is written with one ``os.write`` (no Python buffer) and
    ``fsync``, SIGINT/SIGTERM held back meanwhile, so an interruption never
    leaves half a line; only a hard kill or a machine crash can tear the last
    one, and resuming cuts it off (:attr:`repaired` says so). The file is
    opened (created, emptied by ``force``, repaired) at the first append. It may
    hold several records of one input (``--retry-failed``): the last one wins.

    Args:
        path: the JSONL file.
        resume: read the records already there, and append.
        force: without ``resume``, replace an existing file instead of refusing it.

    Raises:
        OutputError: the file exists (neither ``resume`` nor ``force``) or is a
            folder, or a line other than the last is not a record.
    """

    def __init__(self, path: str | Path, *, resume: bool = False, force: bool = False) -> None:
        self.path = Path(path)
        self.records: dict[str, dict] = {}  # file → its last record
        self.repaired: str | None = None  # the torn last line cut off at opening, if any
        self._resume = resume
        self._keep: int | None = None  # bytes of the existing file to keep (resume)
        self._fd: int | None = None
        if self.path.is_dir():
            raise OutputError(f"{self.path} is a folder: give a file name for --jsonl")
        if self.path.exists() and not (resume or force):
            raise OutputError(f"{self.path} already exists; pass --resume to continue it or --force to replace it")
        if resume and self.path.exists():
            self._read()

    def done(self, *, retry_failed: bool = False) -> set[str]:
        """Files with a record (``retry_failed``: with a successful one only)."""
        return {f for f, rec in self.records.items() if not (retry_failed and "error" in rec)}

    def append(self, record: dict) -> None:
        """Write one record as one line, durably (write + fsync)."""
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        with _deferred(signal.SIGINT, signal.SIGTERM):
            fd = self._open()
            view = memoryview(data)
            while view:  # a regular file takes it in one write; loop in case it does not
                view = view[os.write(fd, view):]
            os.fsync(fd)
        self.records[str(record["file"])] = record

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ResultLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._keep is not None and self._keep < self.path.stat().st_size:
                os.truncate(self.path, self._keep)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if self._resume else os.O_TRUNC)
            self._fd = os.open(self.path, flags, 0o666)
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}; choose another --jsonl file") from e
        return self._fd

    def _read(self) -> None:
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1  # a last line without its newline is torn
        lines = data[:keep].split(b"\n")[:-1]
        for n, line in enumerate(lines, 1):
            try:
                rec = json.loads(line)
                self.records[str(rec["file"])] = rec
            except (ValueError, KeyError, TypeError) as e:
                if n < len(lines):
                    raise OutputError(f"{self.path}: line {n} is not a result record ({e}); remove that line "
                                      "or start a new file") from e
                keep -= len(line) + 1  # a last line that does not parse is torn too
        if keep < len(data):
            self._keep = keep
            self.repaired = (f"{self.path}: cutting off an incomplete last line ({len(data) - keep} bytes, "
                             "from an interrupted write)")


# --------------------------------------------------------------------------- per input


@dataclass(frozen=True)
class ModelSpec:
    """Which checkpoint each process loads (picklable: a worker loads its own copy)."""

    model: str | None = None  # local folder or Hub id; None: the bundled model
    revision: str | None = None  # Hub revision
    offline: bool = False  # Hugging Face cache only
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps

    def load(self) -> LoadedModel:
        from avscene.tasks._pipeline import load_model

        return load_model(self.model, revision=self.revision, offline=self.offline, device=self.device)


@dataclass(frozen=True)
class FileJob:
    """Picklable setup of a batch over a task's per-file function: the model is loaded once per process.

    ``FileJob(classify_file, ModelSpec(m), ClassifyOptions())()`` returns
    ``path → classify_file(path, loaded=..., opts=...)``; ``localize_file`` and
    ``separate_file`` fit too. ``fn`` and ``check`` must be module-level
    functions (pickled by reference for worker processes).
    """

    fn: Callable[..., Any]  # fn(path, loaded=LoadedModel, opts=opts) → result
    model: ModelSpec
    opts: Any = None
    check: Callable[[Any, Any], Any] | None = None  # check(opts, loaded): refuse bad options once

    def __call__(self) -> PerInput:
        import functools

        loaded = self.model.load()
        if self.check is not None:
            self.check(self.opts, loaded)
        return functools.partial(self.fn, loaded=loaded, opts=self.opts)


def run_one(fn: PerInput, path: Path, *, timeout: float | None, verbose: bool = False,
            reraise_unexpected: bool = False) -> tuple[Any, str | None]:
    """``fn(path)`` under :func:`time_limit`; a failure becomes a FailedInput.

    ``reraise_unexpected``: an exception that is not an ``AvsceneError`` propagates (library
    callers debugging with ``AVSCENE_DEBUG=1``) instead of becoming an "internal error".

    Returns:
        ``(result or FailedInput, traceback text or None)``; the traceback only with ``verbose``.
    """
    import traceback

    try:
        with time_limit(input_limit(path, timeout)):
            return fn(path), None
    except AvsceneError as e:
        return FailedInput(str(path), str(e)), traceback.format_exc() if verbose else None
    except Exception as e:  # noqa: BLE001 - one bad input must not stop the others
        if reraise_unexpected:
            raise
        msg = (f"internal error ({type(e).__name__}: {e}); rerun with --verbose (or AVSCENE_DEBUG=1) "
               "for the traceback")
        return FailedInput(str(path), msg), traceback.format_exc() if verbose else None


def run_batch(files: Sequence[Path], setup: Setup, *, jobs: int = 1, timeout: float | None = DEFAULT_TIMEOUT_S,
              on_traceback: Callable[[str, str], None] | None = None,
              on_salvage: Callable[[Any], None] | None = None) -> Iterator[Any]:
    """Apply ``setup()``'s function to every file; yields one result per file, in order.

    Close the generator (``contextlib.closing``) when stopping early: that stops the workers.

    Args:
        files: the inputs.
        setup: picklable callable, called once per process, returning the
            per-input function (which raises an ``AvsceneError`` for a bad input).
        jobs: 1: run here; N > 1: N worker processes (at most one per input).
        timeout: seconds per input; None or 0: no limit.
        on_traceback: called as ``(file, traceback text)`` for each failure just
            before it is yielded; None: no tracebacks are collected.
        on_salvage: when the run stops early (interrupted, or closed), called
            with each result that was finished but not yet yielded (workers run
            ahead of the input order), e.g. to record it: its output files exist.

    Raises:
        Whatever ``setup`` raises (in a worker too): e.g. a CheckpointError.
        AvsceneError: a worker process could not start.
    """
    if jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs}")
    if not files:  # nothing to do: not even the model is loaded
        return (r for r in ())
    if jobs == 1 or len(files) == 1:
        return _run_here(files, setup, timeout=timeout, on_traceback=on_traceback)
    from avscene.tasks._pool import run_pool  # here, so that a run in this process never loads multiprocessing

    return run_pool(files, setup, jobs=jobs, timeout=timeout, on_traceback=on_traceback, on_salvage=on_salvage)


def _run_here(files: Sequence[Path], setup: Setup, *, timeout: float | None,
              on_traceback: Callable[[str, str], None] | None) -> Iterator[Any]:
    fn = setup()
    for path in files:
        result, tb = run_one(fn, Path(path), timeout=timeout, verbose=on_traceback is not None)
        if tb is not None and on_traceback is not None:
            on_traceback(str(path), tb)
        yield result


def pending_inputs(files: Sequence[Path], log: ResultLog | None, *, retry_failed: bool) -> list[Path]:
    """The inputs without a record in ``log`` (all of them without a log)."""
    if log is None:
        return list(files)
    done = log.done(retry_failed=retry_failed)
    return [f for f in files if str(f) not in done]


__all__ = ["DEFAULT_TIMEOUT_S", "FileJob", "Interrupted", "ModelSpec", "ResultLog", "input_limit", "interrupts_held", "interrupts_raise", "parse_shard",
           "pending_inputs", "run_batch", "run_one", "shard_inputs", "time_limit", "timeout_message"]
