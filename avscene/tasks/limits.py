"""Per-input execution primitives: signals, time limits, and running one input.

* **Interruption**: inside :func:`interrupts_raise`, ``SIGINT`` and ``SIGTERM`` raise
  :class:`Interrupted` (a ``KeyboardInterrupt``), so ``finally`` blocks run. Inside a held
  section (:func:`interrupts_held`) a signal is only recorded, whichever thread the kernel
  delivered it to, and raised when the section ends: bookkeeping is never torn in two.
* **Time limit** (:func:`time_limit`): a ``SIGALRM`` timer raises
  :class:`~avscene.errors.InputTimeoutError` in the main thread between bytecodes.
* :func:`run_one`: one input under its limit (:func:`input_limit`); a failure becomes a
  :class:`~avscene.results.FailedInput`.

Nothing here imports another ``avscene.tasks`` module: the batch loop
(:mod:`avscene.tasks.runner`) and the worker pool (:mod:`avscene.tasks._pool`) build on it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from avscene.errors import AvsceneError, InputTimeoutError, UsageError
from avscene.results import FailedInput, TaskResult

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 120.0  # base allowance per input (~60x a 10-s clip on a busy 2-core CPU)
# ... plus this many seconds per second of media (header duration): classify/localize run at
# ~0.1x and separate at ~0.16x real time on 2 CPU cores, so a 1-h file gets 3,720 s (~6x headroom)
MEDIA_TIME_FACTOR = 1.0
TIMEOUT_REPEAT_S = 1.0  # re-raise every second, in case code under the limit swallows the first one
EXIT_SIGNAL_BASE = 128  # shell convention: a process ended by signal N exits with 128 + N

PerInput = Callable[[Path], TaskResult]  # one input → its result; raises AvsceneError when it fails
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

    @classmethod
    def of(cls, e: KeyboardInterrupt) -> Interrupted:
        """``e`` itself, or (a plain KeyboardInterrupt: Python's own Ctrl-C) the SIGINT one."""
        return e if isinstance(e, cls) else cls(signal.SIGINT)


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


def raise_interrupted(signum: int, _frame: Any) -> None:
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
    old = {s: signal.signal(s, raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        _Hold.pending = None
        for s, handler in old.items():
            signal.signal(s, handler)


@contextmanager
def hold_signals(*signums: int) -> Iterator[None]:
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
    return hold_signals(signal.SIGINT, signal.SIGTERM)


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
    from avscene.io.decode import header

    try:
        with time_limit(timeout):
            duration = float(header(path).duration or 0.0)  # nothing decoded
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


def run_one(fn: Callable[[Path], T], path: Path, *, timeout: float | None,
            verbose: bool = False) -> tuple[T | FailedInput, str | None]:
    """``fn(path)`` under :func:`time_limit`; a failure becomes a FailedInput (an unexpected
    exception as an "internal error", its traceback kept with ``verbose``).

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
        msg = (f"internal error ({type(e).__name__}: {e}); rerun with --verbose (or AVSCENE_DEBUG=1) "
               "for the traceback")
        return FailedInput(str(path), msg), traceback.format_exc() if verbose else None


__all__ = ["DEFAULT_TIMEOUT_S", "EXIT_SIGNAL_BASE", "Interrupted", "MEDIA_TIME_FACTOR", "PerInput", "Setup",
           "TIMEOUT_REPEAT_S", "hold_signals", "input_limit", "interrupts_held", "interrupts_raise",
           "raise_interrupted", "run_one", "time_limit", "timeout_message"]
