"""Speed of the noise bank (not a test): CPU milliseconds per family for one clip.

    python bench/noise.py [--seconds 10] [--sr 16000] [--repeat 5] [--json out.json]

Prints, per family of ``avscene.dsp.noise.FAMILIES``, the median process (CPU) time of
``noise(family, seconds·sr, sr=sr, rng=seed)`` over ``--repeat`` seeds: CPU time, because the
machines this runs on are often shared, and wall time then measures the neighbours.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--sr", type=int, default=16000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from avscene.dsp.noise import FAMILIES, noise

    n = int(args.seconds * args.sr)
    noise("white", n, sr=args.sr, rng=0)  # imports and FFT plans out of the timings
    out = {}
    for name, family in FAMILIES.items():
        times = []
        for seed in range(max(1, args.repeat)):
            t0 = time.process_time()
            noise(name, n, sr=args.sr, rng=seed)
            times.append(time.process_time() - t0)
        out[name] = {"texture": family.texture, "split": family.split, "cpu_ms": 1000 * statistics.median(times)}
        print(f"{name:12s} {family.texture:10s} {family.split:8s} {out[name]['cpu_ms']:7.1f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "sr": args.sr, "families": out}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
