"""Time one library call, warm, in this (fresh) process: the model loaded and the call run once first.

    python bench/_warm.py OUT.json classify|separate CLIP REPEAT [default|N]

Used by ``bench/busy.py``. The last argument is the thread budget (:mod:`avscene.threads`): ``default``
(what a command chooses) or a number (``--threads N``); without it, or on a checkout that has no
thread budget, the libraries' own defaults. Writes ``{"seconds": [...], "threads": ...}``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import time


def main(argv: list[str]) -> int:
    out, task, clip, repeat = argv[0], argv[1], argv[2], int(argv[3])
    setting = argv[4] if len(argv) > 4 else None
    with contextlib.ExitStack() as stack:
        threads = None
        if setting is not None and importlib.util.find_spec("avscene.threads") is not None:
            from avscene.threads import thread_budget

            threads = stack.enter_context(thread_budget(None if setting == "default" else int(setting)))
        import avscene

        loaded = avscene.load_model(device="cpu", offline=True)
        call = {"classify": lambda: avscene.classify(clip, model=loaded),
                "separate": lambda: avscene.separate(clip, model=loaded)}[task]
        call()  # warm-up: caches, allocator, lazy imports
        seconds = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - t0)
    with open(out, "w") as f:
        json.dump({"seconds": seconds, "threads": threads}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
