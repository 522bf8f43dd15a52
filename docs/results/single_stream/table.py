"""Print the single-stream decision table (markdown) from ``scores_<split>.json`` (``run.py``):
inputs with one stream decided at the fused threshold (before) or at that stream's own heard / seen
threshold (now, ``ModelConfig.input_threshold``).

    python docs/results/single_stream/table.py > docs/results/single_stream/table.md
"""
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
SPLITS = ("val", "val_shift")


def f1(y, p):
    tp, fp, fn = int((y & p).sum()), int((~y & p).sum()), int((y & ~p).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


def fmt(x):
    return "—" if x != x else f"{x:.3f}"


docs = {s: json.loads((HERE / f"scores_{s}.json").read_text()) for s in SPLITS if (HERE / f"scores_{s}.json").is_file()}
first = next(iter(docs.values()))
names = first["labels"]
rules = {"audio": first["audio_threshold"], "visual": first["visual_threshold"]}
STREAM = {"soundtrack": "audio", "silent_video": "visual"}
print(f"# Inputs with one stream: fused threshold against the stream's own (model `{first['model']}`)\n")
print(f"Fused threshold {first['threshold']:+.2f}; heard {rules['audio']:+.2f}, seen {rules['visual']:+.2f} "
      "(all chosen on the training hold-out). Soundtrack: each clip's audio alone, scored against the "
      "classes that sound in it; silent video: its frames alone, against the classes on screen; pure "
      "noise: each held-out family at the clip's RMS, audio alone (every label a false alarm).\n")


def block(doc, kind):
    rows = [r for r in doc["rows"] if r["input"] == kind]
    s = np.array([r["scores"] for r in rows])
    y = np.array([[n in r["labels"] for n in names] for r in rows])
    return s, y


print("| split | input | n | micro-F1 at the fused threshold | micro-F1 at the stream's threshold |")
print("|---|---|---|---|---|")
for split, doc in docs.items():
    for kind, m in STREAM.items():
        s, y = block(doc, kind)
        print(f"| {split} | {kind} | {len(y)} | {fmt(f1(y, s > doc['threshold']))} | {fmt(f1(y, s > rules[m]))} |")
print("\n## Pure noise: share of inputs given any label\n")
families = sorted({r["input"] for r in first["rows"]} - set(STREAM))
print("| split | " + " | ".join(families) + " | all |")
print("|---|" + "---|" * (len(families) + 1))
for split, doc in docs.items():
    for label, t in (("fused threshold", doc["threshold"]), ("heard threshold", rules["audio"])):
        cells, pooled = [], []
        for fam in families:
            s, _ = block(doc, fam)
            hit = (s > t).any(axis=1)
            pooled.append(hit)
            cells.append(f"{hit.mean():.2f}")
        print(f"| {split}, {label} | " + " | ".join(cells) + f" | {np.concatenate(pooled).mean():.2f} |")
print("\n## Per class, F1 (fused threshold → the stream's)\n")
print("| class | " + " | ".join(f"{s} {k}" for s in docs for k in STREAM) + " |")
print("|---|" + "---|" * (len(docs) * len(STREAM)))
for c, name in enumerate(names):
    cells = []
    for split, doc in docs.items():
        for kind, m in STREAM.items():
            s, y = block(doc, kind)
            cells.append(f"{fmt(f1(y[:, c], s[:, c] > doc['threshold']))} → {fmt(f1(y[:, c], s[:, c] > rules[m]))}")
    print(f"| {name} | " + " | ".join(cells) + " |")
