"""How well the frozen audio window embeddings separate the sounding windows of a clip's classes
from its silent ones, on val and val_shift (ground-truth audio intervals): an *analysis*, nothing
here chooses a step, a threshold or a head.

For every window of every clip, and each class the clip is labelled with (the events are gated by
the clip-level decision, so only these windows matter), the window is *sounding* when its centre is
inside one of that class's audio intervals. Printed per split and class: the ROC AUC of the
two-stream head's A and of each event head's logits (threshold-free), and of a linear probe fitted
with those strong labels by 5-fold cross-validation over clips *within the split* (an upper bound
for any linear head on these frozen features; fitted here for the figure only, never used).

python docs/results/event_pooling/separability.py ../shared/avbench runs/ev/heads > docs/results/event_pooling/separability.md
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

from avscene.checkpoint.format import load_state_dict
from avscene.io.decode import read_audio
from avscene.proposals.bags import audio_bag
from avscene.tasks.models import load_model
from avscene.train.data import read_manifest

HEADS = ("linear_softmax", "max", "mean", "exp_softmax", "attention", "auto_pool", "linear_softmax_last",
         "auto_pool_last", "mean_last")
FOLDS = 5


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC by ranks (ties averaged); NaN without both kinds."""
    pos, neg = int(y.sum()), int((~y).sum())
    if not pos or not neg:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def windows(root: Path, split: str, loaded):
    """Per clip: contexted embeddings (P, d), A (P, C), window centres (P,), labels, gt intervals."""
    pre, m = loaded.preprocess, loaded.model
    gt = {}
    for line in (root / split / "ground_truth.jsonl").read_text().splitlines():
        d = json.loads(line)
        gt[d["clip"]] = d
    out = []
    for ex in read_manifest(root / split / "labels.csv"):
        ap = audio_bag(read_audio(ex.path, sample_rate=pre.sample_rate), cfg=pre)
        with torch.no_grad():
            z = m.forward_audio_features(torch.from_numpy(np.ascontiguousarray(ap.patches, np.float32)))
            zc = m.audio_context(z[None], torch.ones(1, len(z), dtype=torch.bool))[0]
            A = m.audio_head.cls(zc)
        events = {}
        for e in gt[ex.path.stem]["events"]:
            if isinstance(e["audio"], list) and e["audio"] and not isinstance(e["audio"][0], str):
                events.setdefault(e["class"], []).append(tuple(e["audio"]))
        out.append((zc.numpy(), A.numpy(), ap.times.mean(axis=1), ex.labels, events))
    return out


def rows(clips, names, c):
    """Windows of the clips labelled with class c: indices (clip, window), sounding bool."""
    idx, y = [], []
    for k, (zc, _, centres, labels, events) in enumerate(clips):
        if names[c] not in labels:
            continue
        for i, t in enumerate(centres):
            idx.append((k, i))
            y.append(any(a <= t < b for a, b in events.get(names[c], [])))
    return idx, np.array(y, dtype=bool)


def probe_auc(clips, idx, y, seed=0) -> float:
    """5-fold (by clip) logistic-regression probe on the contexted embeddings: pooled out-of-fold AUC."""
    X = torch.from_numpy(np.stack([clips[k][0][i] for k, i in idx]))
    Y = torch.from_numpy(y.astype(np.float32))
    clip_of = np.array([k for k, _ in idx])
    uniq = np.random.default_rng(seed).permutation(np.unique(clip_of))
    fold = {k: f % FOLDS for f, k in enumerate(uniq)}
    f_of = np.array([fold[k] for k in clip_of])
    scores = np.zeros(len(y))
    for f in range(FOLDS):
        tr, te = f_of != f, f_of == f
        if not te.any() or len(np.unique(y[tr])) < 2:
            scores[te] = 0.0
            continue
        torch.manual_seed(seed)
        lin = torch.nn.Linear(X.shape[1], 1)
        opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=1e-3)
        for _ in range(300):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(lin(X[tr])[:, 0], Y[tr])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            scores[te] = lin(X[te])[:, 0].numpy()
    return auc(scores, y)


def main() -> None:
    torch.set_num_threads(1)
    root, heads_dir = Path(sys.argv[1]), Path(sys.argv[2])
    loaded = load_model("models/avscene-av-small", device="cpu", offline=True)
    names = list(loaded.labels)
    heads = {h: load_state_dict(heads_dir / h) for h in HEADS if (heads_dir / h).is_dir()}
    cols = ["A", *heads, "probe (CV, strong labels)"]
    for split in ("val", "val_shift"):
        clips = windows(root, split, loaded)
        print(f"\nROC AUC of sounding vs silent windows of the clip's own classes, {split}\n")
        print("| class | windows (sounding) | " + " | ".join(cols) + " |")
        print("|---" * (2 + len(cols)) + "|")
        table = []
        for c, name in enumerate(names):
            idx, y = rows(clips, names, c)
            if not len(y):
                continue
            A = np.array([clips[k][1][i, c] for k, i in idx])
            vals = [auc(A, y)]
            for sd in heads.values():
                w, b = sd["audio_event.lin.weight"].numpy()[c], float(sd["audio_event.lin.bias"][c])
                vals.append(auc(np.array([clips[k][0][i] @ w + b for k, i in idx]), y))
            vals.append(probe_auc(clips, idx, y))
            table.append(vals)
            print(f"| {name} | {len(y)} ({int(y.sum())}) | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
        mean = np.nanmean(np.array(table), axis=0)
        print("| mean over classes | | " + " | ".join(f"{v:.3f}" for v in mean) + " |")


if __name__ == "__main__":
    main()
