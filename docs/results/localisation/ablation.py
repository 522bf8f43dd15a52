"""Issue 30 ablation (inference side): each box rule and each event rule of ``localize`` on one split,
scored as ``avscene evaluate`` scores them, from one forward pass per clip.

    python docs/results/localisation/ablation.py ../shared/avbench/val_shift > docs/results/localisation/ablation_val_shift.txt

Boxes: the box ``localize`` reports first for each ground-truth class at each frame where it is visible
(``frame_boxes`` / ``snap_boxes``, the functions ``localize`` and ``evaluate`` use). Events: ``localize``'s
events (``localize_from_analysis``) against the ground truth's audio intervals, DCASE segment F1 / ER.
Nothing is tuned here: every row is a rule fixed beforehand; the defaults are marked.
"""
import dataclasses
import sys
from pathlib import Path

import numpy as np

from avscene.tasks._pipeline import analyse
from avscene.tasks.localize import LocalizeOptions, frame_boxes, localize_from_analysis, snap_boxes
from avscene.tasks.models import load_model
from avscene.train.data import read_manifest
from avscene.evaluation.evaluate import read_ground_truth
from avscene.evaluation.metrics.localization import LocalizationScores
from avscene.evaluation.metrics.sed import segment_activity, segment_based_metrics

split = Path(sys.argv[1])
loaded = load_model("models/avscene-av-small", offline=True, device="cpu")
names = list(loaded.labels)
gt = read_ground_truth(split / "ground_truth.jsonl")
W = dict(box_mode="window", snap=False)
BOXES = {  # name -> options (defaults otherwise)
    "top window (before)": LocalizeOptions(**W),
    "top window, snapped": LocalizeOptions(box_mode="window"),
    "evidence E, 0.2": LocalizeOptions(evidence_weight="E", snap=False),
    "evidence loc, 0.2": LocalizeOptions(evidence_weight="loc", snap=False),
    "evidence A, 0.2": LocalizeOptions(snap=False),
    "evidence A, 0.3 (not chosen)": LocalizeOptions(evidence_fraction=0.3, snap=False),
    "evidence A, 0.2, snapped (default)": LocalizeOptions(),
}
EVENTS = {
    "heard, E > 0 (before)": LocalizeOptions(event_classes="heard", event_low=None, **W),
    "predicted, E > 0": LocalizeOptions(event_classes="predicted", event_low=None, **W),
    "heard or predicted, E > 0": LocalizeOptions(event_low=None, **W),
    "heard, hysteresis -0.5": LocalizeOptions(event_classes="heard", **W),
    "predicted, hysteresis -0.5": LocalizeOptions(event_classes="predicted", **W),
    "heard or predicted, hysteresis -0.5 (default)": LocalizeOptions(**W),
    "heard or predicted, hysteresis -1.0": LocalizeOptions(event_low=-1.0, **W),
    "heard or predicted, hysteresis -0.5, median 3": LocalizeOptions(event_median=3, **W),
    "predicted, relative 0.2 of the clip's best": LocalizeOptions(event_classes="predicted", event_fraction=0.2, **W),
}
loc = {k: LocalizationScores() for k in BOXES}
rolls = {k: ([], []) for k in EVENTS}
pre = loaded.preprocess
for ex in read_manifest(split / "labels.csv", class_names=names):
    rec = gt[ex.path.stem]
    a = analyse(ex.path, loaded)
    duration = float(rec.get("duration", a.info.duration))
    ref = [(ev["audio"][0], ev["audio"][1], ev["class"]) for ev in rec["events"] if ev["audio"]]
    for k, opts in EVENTS.items():
        res = localize_from_analysis(ex.path, a, loaded, opts)
        est = [(e.onset, min(e.offset, duration), e.label) for e in res.events]
        rolls[k][0].append(segment_activity(ref, class_names=names, duration=duration))
        rolls[k][1].append(segment_activity(est, class_names=names, duration=duration))
    shown = [ev for ev in rec["events"] if ev.get("visual")]
    classes = list(dict.fromkeys(names.index(ev["class"]) for ev in shown))
    for k, opts in BOXES.items():
        chosen = {c: frame_boxes(a, c, opts) for c in classes}
        if opts.snap and chosen:
            chosen = snap_boxes(ex.path, a.visual.times, chosen, fps=pre.fps, offset=pre.frame_offset)
        for ev in shown:
            c = names.index(ev["class"])
            frames = {round(f["t"], 3): f["box"] for f in ev["visual"]["frames"]}
            for t, t_sec in enumerate(a.visual.times):
                box = frames.get(round(float(t_sec), 3))
                if box is not None:
                    loc[k].add(chosen[c][t][0][0], np.asarray(box, dtype=np.float64), ev["class"])


def f(x):
    return "—" if x != x else f"{x:.3f}"


print(f"# {split.name}: {len(gt)} clips\n\n## Boxes\n")
print("| rule | CorLoc@0.5 | pointing | median IoU | box/object area |\n|---|---|---|---|---|")
for k, s in loc.items():
    print(f"| {k} | {f(s.corloc)} | {f(s.pointing_accuracy)} | {f(s.median_iou)} | {f(s.median_size_ratio)} |")
cls = sorted({c for s in loc.values() for c in s.classes})
print("\nPer class, CorLoc / pointing:\n\n| rule | " + " | ".join(cls) + " |\n|---|" + "---|" * len(cls))
for k, s in loc.items():
    print(f"| {k} | " + " | ".join(f"{f(s.classes[c].corloc)} / {f(s.classes[c].pointing_accuracy)}" for c in cls) + " |")
print("\n## Sound events (DCASE segment-based, 1 s)\n")
print("| rule | F1 | ER | precision | recall |\n|---|---|---|---|---|")
sed = {k: segment_based_metrics(r, e, class_names=names) for k, (r, e) in rolls.items()}
for k, m in sed.items():
    print(f"| {k} | {f(m.f1)} | {f(m.error_rate)} | {f(m.precision)} | {f(m.recall)} |")
active = [c.name for c in next(iter(sed.values())).classes if c.n_ref]
print("\nPer class, F1:\n\n| rule | " + " | ".join(active) + " |\n|---|" + "---|" * len(active))
for k, m in sed.items():
    by = {c.name: c for c in m.classes}
    print(f"| {k} | " + " | ".join(f(by[c].f1) for c in active) + " |")
