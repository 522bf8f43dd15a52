"""Visual proposal methods compared on avbench ground truth (not a test).

    python bench/proposals.py ../shared/avbench/val [--clips 100] [--json out.json]

For each clip: frames sampled as the model sees them (1 fps, mid-second), then per method
the proposal time per frame and the recall at IoU 0.5: the fraction of (frame, visible object)
pairs of the ground truth that some proposal of that frame overlaps at IoU >= 0.5.
Methods: EdgeBoxes with 10 and 30 boxes per frame, and the dense windows (proposals/dense.py).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from avscene.config import PreprocessConfig
from avscene.io.decode import decode
from avscene.proposals.visual import visual_proposals
from avscene.evaluation.metrics.localization import box_iou

METHODS = {"edgeboxes-10": PreprocessConfig(boxes_per_frame=10),
           "edgeboxes-30": PreprocessConfig(boxes_per_frame=30),
           "dense": PreprocessConfig(visual_proposals="dense")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("split", type=Path)
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    recs = [json.loads(x) for x in (args.split / "ground_truth.jsonl").read_text().splitlines() if x.strip()]
    hits = {m: [] for m in METHODS}
    secs = {m: 0.0 for m in METHODS}
    n_frames = 0
    for rec in recs[: args.clips]:
        clip = decode(args.split / "clips" / f"{rec['clip']}.mp4", fps=1.0, offset=0.5)
        n_frames += len(clip.frame_times)
        props = {}
        for m, cfg in METHODS.items():
            t0 = time.perf_counter()
            props[m] = visual_proposals(clip.frames, clip.frame_times, cfg=cfg, threads=1)
            secs[m] += time.perf_counter() - t0
        for ev in rec["events"]:
            if not ev.get("visual"):
                continue
            gt = {round(f["t"], 3): f["box"] for f in ev["visual"]["frames"]}
            for t, ts in enumerate(clip.frame_times):
                box = gt.get(round(float(ts), 3))
                if box is None:
                    continue
                for m in METHODS:
                    iou = box_iou(props[m].boxes[t].astype(np.float64), np.asarray([box], np.float64))
                    hits[m].append(bool((iou >= 0.5).any()))
    out = {m: {"recall@0.5": float(np.mean(hits[m])), "n": len(hits[m]),
               "ms_per_frame": 1000 * secs[m] / max(n_frames, 1),
               "boxes_per_frame": int(props[m].boxes.shape[1])} for m in METHODS}
    for m, r in out.items():
        print(f"{m:14s} recall@0.5 {r['recall@0.5']:.3f} (n={r['n']})  {r['ms_per_frame']:.2f} ms/frame  "
              f"{r['boxes_per_frame']} boxes")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
