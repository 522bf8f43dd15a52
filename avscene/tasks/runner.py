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

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avscene.errors import OutputError, UsageError
from avscene.results import InputResult, TaskResult, json_text
from avscene.tasks.limits import (  # re-exported: the batch API's names
    DEFAULT_TIMEOUT_S,
    Interrupted,
    PerInput,
    Setup,
    input_limit,
    interrupts_held,
    interrupts_raise,
    run_one,
    time_limit,
    timeout_message,
)

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel
    from avscene.tasks.classify import ClassifyOptions
    from avscene.tasks.localize import LocalizeOptions
    from avscene.tasks.separate import SeparateOptions

    TaskOptions = ClassifyOptions | LocalizeOptions | SeparateOptions

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
    A file name that is not UTF-8 is written with ``\\udcXX`` escapes
    (:func:`avscene.results.json_text`) and reads back as the same ``str``, so
    ``--resume`` recognises its record.

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
        data = (json_text(record) + "\n").encode()
        with interrupts_held():
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
    hub_timeout: float | None = None  # s a Hub request may wait for the server; None: the default

    def load(self) -> LoadedModel:
        from avscene.tasks.models import load_model

        return load_model(self.model, revision=self.revision, offline=self.offline, device=self.device,
                          hub_timeout=self.hub_timeout)


@dataclass(frozen=True)
class FileJob:
    """Picklable setup of a batch over a task's per-file function: the model is loaded once per process.

    ``FileJob(classify_file, ModelSpec(m), ClassifyOptions())()`` returns
    ``path → classify_file(path, loaded=..., opts=...)``; ``localize_file`` and
    ``separate_file`` fit too. ``fn`` and ``check`` must be module-level
    functions (pickled by reference for worker processes).
    """

    fn: Callable[..., TaskResult]  # fn(path, loaded=LoadedModel, opts=opts) → result
    model: ModelSpec
    opts: TaskOptions | None = None
    # check(opts, loaded): refuse bad options once; it may return the options resolved for this model
    check: Callable[[Any, LoadedModel], Any] | None = None

    def __call__(self) -> PerInput:
        import functools

        loaded = self.model.load()
        opts = self.opts
        if self.check is not None:
            opts = self.check(opts, loaded) or opts
        return functools.partial(self.fn, loaded=loaded, opts=opts)


def run_batch(files: Sequence[Path], setup: Setup, *, jobs: int = 1, timeout: float | None = DEFAULT_TIMEOUT_S,
              on_traceback: Callable[[str, str], None] | None = None,
              on_salvage: Callable[[InputResult], None] | None = None) -> Iterator[InputResult]:
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
              on_traceback: Callable[[str, str], None] | None) -> Iterator[InputResult]:
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
