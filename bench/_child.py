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


def main(argv: list[str]) -> int:
    out, rest = argv[0], argv[argv.index("--") + 1 :]
    from avscene.cli.app import main as cli_main

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        try:
            code = cli_main(rest)
        except SystemExit as e:  # typer/click exit
            code = int(e.code or 0)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    with open(out, "w") as f:
        json.dump({"exit_code": code, "seconds": time.perf_counter() - T_START,
                   "peak_rss_mb": peak_kb / 1024}, f)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
