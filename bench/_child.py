"""Run one avscene CLI command in this (fresh) process and report its wall time and peak RSS.

    python bench/_child.py OUT.json -- classify clip.mp4 --json

Used by ``bench/run.py`` so that each command's memory is measured in a process of its
own (``ru_maxrss`` of a process is its lifetime peak, so in-process figures would mix
commands). The wall time counts from interpreter start (imports included: a cold run).
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import time

T_START = time.perf_counter()


def _peak_kib() -> int:
    """This process's peak RSS in KiB: ``VmHWM`` (reset by exec), else ``ru_maxrss``.

    On Linux ``ru_maxrss`` survives ``execve``: a child of a large process would report
    its parent's size at fork time, so the high-water mark of the new address space is used.
    """
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB; macOS: bytes


def main(argv: list[str]) -> int:
    out, rest = argv[0], argv[argv.index("--") + 1 :]
    from avscene.cli.app import main as cli_main

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        try:
            code = cli_main(rest)
        except SystemExit as e:  # typer/click exit
            code = int(e.code or 0)
    peak_kb = _peak_kib()
    with open(out, "w") as f:
        json.dump({"exit_code": code, "seconds": time.perf_counter() - T_START,
                   "peak_rss_mb": peak_kb / 1024}, f)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
