"""Experiment (not shipped): boxes from a score-weighted heat map of the dense windows instead of the top window.

    python docs/training/2026-12-05-s13/heat_boxes.py ../shared/avbench/val/labels.csv "top,1/0.5,4/0.5"

Each mode BETA/FRAC weighs window m by softmax(BETA * (s_m - max s) / std s) over the frame's windows (s: the
class's box scores), spreads each weight over its window (divided by the square root of its area), and takes the
bounding box of the pixels at FRAC of the maximum or more. Prints CorLoc@0.5, pointing and the number of scored
(frame, class) pairs of the bundled model for each mode; "top" is what `avscene evaluate` scores.
"""
import sys, numpy as np, torch
import avscene.train.evaluate as ev
from avscene.train.metrics import LocalizationScores
from avscene.tasks.models import load_model
from avscene.nn.model import box_scores
from pathlib import Path
MODES = sys.argv[2].split(",")
stats = {m: LocalizationScores() for m in MODES}
def heat_box(boxes, s, beta, frac, H, W):
    w = np.exp(beta * (s - s.max()) / (s.std() + 1e-12)); w /= w.sum()
    heat = np.zeros((H, W))
    for b, wm in zip(boxes, w):
        x0, y0, x1, y1 = [int(round(v)) for v in b]
        heat[y0:y1, x0:x1] += wm / max((x1 - x0) * (y1 - y0), 1) ** 0.5
    ys, xs = np.nonzero(heat >= frac * heat.max())
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)
def score(a, rec, names, loc):
    if a.output.visual_E is None: return
    bs = box_scores(a.output)
    for evt in rec["events"]:
        if not evt.get("visual"): continue
        c = names.index(evt["class"])
        gt = {round(fr["t"], 3): fr["box"] for fr in evt["visual"]["frames"]}
        for t, ts in enumerate(a.visual.times):
            box = gt.get(round(float(ts), 3))
            if box is None: continue
            s = bs[t, :, c].numpy(); boxes = a.visual.boxes[t]
            g = np.asarray(box, dtype=np.float64)
            Hh = int(boxes[:, 3].max()); Ww = int(boxes[:, 2].max())
            for m in MODES:
                if m == "top": pb = boxes[int(np.argmax(s))]
                else:
                    beta, frac = map(float, m.split("/"))
                    pb = heat_box(boxes, s, beta, frac, Hh, Ww)
                stats[m].add(pb, g)
            loc.add(boxes[int(np.argmax(s))], g)
ev._score_boxes = score
loaded = load_model("models/avscene-av-small")
ev.evaluate(loaded, Path(sys.argv[1]))
for m in MODES: print(m, round(stats[m].corloc, 3), round(stats[m].pointing_accuracy, 3), stats[m].n)
