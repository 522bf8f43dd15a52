"""One table mapping library errors to a one-line CLI message and an exit code."""

from __future__ import annotations

import os
import sys
import traceback

from avscene.errors import (
    AvsceneError,
    CheckpointError,
    ConfigError,
    DecodeError,
    InputTimeoutError,
    OutputError,
    UsageError,
)

EXIT_OK = 0
EXIT_INPUT_FAILED = 1  # at least one input failed; the others were processed
EXIT_USAGE = 2  # bad options, missing model, nothing to do: nothing was processed

# error class → (prefix, exit code); the first matching row wins.
CLI_ERROR_MAPPINGS: list[tuple[type[BaseException], str, int]] = [
    (CheckpointError, "checkpoint error", EXIT_USAGE),
    (ConfigError, "configuration error", EXIT_USAGE),
    (UsageError, "error", EXIT_USAGE),
    (OutputError, "output error", EXIT_USAGE),
    (DecodeError, "decode error", EXIT_INPUT_FAILED),
    (InputTimeoutError, "timed out", EXIT_INPUT_FAILED),
    (AvsceneError, "error", EXIT_USAGE),
]


_verbose = False  # set by the global --verbose flag (AVSCENE_DEBUG=1 does the same)


def set_verbose(on: bool) -> None:
    """Turn tracebacks on or off for this run (the ``--verbose`` flag)."""
    global _verbose
    _verbose = on


ARGV: list[str] = []  # the arguments of the running command (set by ``main``; a report shows them)


def verbose() -> bool:
    """Tracebacks wanted: ``--verbose`` or ``AVSCENE_DEBUG=1``."""
    return _verbose or os.environ.get("AVSCENE_DEBUG", "") not in ("", "0")


def report(exc: BaseException) -> int:
    """Print a one-line message for ``exc`` on stderr (after its traceback when verbose); return the exit code."""
    if verbose():
        traceback.print_exception(exc, file=sys.stderr)
    for cls, prefix, code in CLI_ERROR_MAPPINGS:
        if isinstance(exc, cls):
            print(f"avscene: {prefix}: {exc}", file=sys.stderr)
            return code
    print(f"avscene: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
    if not verbose():
        print("  rerun with --verbose for the traceback, and please report it", file=sys.stderr)
    return EXIT_INPUT_FAILED
