"""Self-training of the box regressor from the model's own confident boxes (weak → strong).

On training clips only: every clip's labelled classes that the model predicts and sees give, in each
frame where the class has a box, a pseudo-box (the box ``localize`` reports with ``teacher``, by
default its defaults: the evidence box snapped to the object); the starting boxes are the box
``start`` chooses (the evidence box, unsnapped) and the dense windows overlapping the pseudo-box with
IoU ≥ ``POSITIVE_IOU``; their RoI features (the frozen visual stream) are regressed onto the
pseudo-box's offsets (:mod:`avscene.proposals.box_regression`). The ridge penalty is chosen on the
checkpoint's training hold-out, by the IoU between each hold-out frame's refined starting box and its
pseudo-box (the hold-out has no true boxes); nothing of ``val`` is read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from avscene.evaluation.metrics.localization import box_iou
from avscene.proposals.box_regression import POSITIVE_IOU, BoxRegressor, fit_box_regressor
from avscene.tasks._pipeline import analyse
from avscene.tasks.classify import ClassifyOptions, result_from_analysis
from avscene.tasks.localize import LocalizeOptions, report_boxes, visual_features
from avscene.train.data import Example

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel

PENALTIES = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # ridge penalties tried on the hold-out


@dataclass
class Samples:
    """Per class: RoI features (N, d), starting boxes (N, 4), pseudo-boxes (N, 4), and which rows are
    the starting box ``localize`` chose (not an overlapping window)."""

    z: dict[int, list[np.ndarray]] = field(default_factory=dict)
    start: dict[int, list[np.ndarray]] = field(default_factory=dict)
    target: dict[int, list[np.ndarray]] = field(default_factory=dict)
    chosen: dict[int, list[np.ndarray]] = field(default_factory=dict)
    frames: int = 0  # (frame, class) pairs with a pseudo-box

    def add(self, c: int, z: np.ndarray, start: np.ndarray, target: np.ndarray, chosen: np.ndarray) -> None:
        for d, v in ((self.z, z), (self.start, start), (self.target, target), (self.chosen, chosen)):
            d.setdefault(c, []).append(v)

    def arrays(self, *, chosen_only: bool = False) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        out = {}
        for c in self.z:
            keep = np.concatenate(self.chosen[c]) if chosen_only else slice(None)
            out[c] = tuple(np.concatenate(d[c])[keep] for d in (self.z, self.start, self.target))
        return out


def collect_samples(loaded: LoadedModel, examples: Sequence[Example], *, teacher: LocalizeOptions,
                    start: LocalizeOptions, progress: Callable[[int, int], None] | None = None) -> Samples:
    """The pseudo-boxes of ``examples`` (see the module docstring) and their starting boxes' features."""
    names = list(loaded.labels)
    out = Samples()
    for n, ex in enumerate(examples):
        a = analyse(ex.path, loaded, keep_frames=True)
        if a.visual is None or a.output.visual_E is None or a.frames is None:
            continue
        cls = result_from_analysis(ex.path, a, loaded, ClassifyOptions())
        seen = {p.label for p in cls.parse if p.seen}
        classes = [names.index(lab) for lab in ex.labels if lab in cls.predicted and lab in seen]
        if classes:
            pseudo = report_boxes(ex.path, a, classes, loaded, teacher)
            first = report_boxes(ex.path, a, classes, loaded, start)
            frames = np.stack([f for _, f in a.frames])  # (T, H, W, 3)
            windows = a.visual.boxes  # (T, M, 4)
            for t in range(len(windows)):
                pairs = [(c, pseudo[c][t][0][0], first[c][t][0][0]) for c in classes if pseudo[c][t] and first[c][t]]
                if not pairs:
                    continue
                boxes = np.concatenate([windows[t], np.stack([b for _, _, b in pairs])])  # (M + K, 4)
                z = visual_features(loaded, frames[t : t + 1], boxes[None])[0]  # (M + K, d)
                M = len(windows[t])
                for k, (c, target, box) in enumerate(pairs):
                    over = np.flatnonzero(box_iou(windows[t], target[None])[:, 0] >= POSITIVE_IOU)  # (n,)
                    rows = np.concatenate([[M + k], over])
                    out.add(c, z[rows], boxes[rows], np.repeat(target[None], len(rows), axis=0),
                            np.arange(len(rows)) == 0)
                    out.frames += 1
        if progress:
            progress(n + 1, len(examples))
    return out


def holdout_iou(reg: BoxRegressor, samples: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """Mean IoU of the refined starting boxes with their pseudo-boxes (over every class's rows)."""
    ious = [np.diag(box_iou(reg.refine(s, z, c), t)) for c, (z, s, t) in samples.items()]
    return float(np.mean(np.concatenate(ious))) if ious else float("nan")


def train_box_regressor(loaded: LoadedModel, train: Sequence[Example], holdout: Sequence[Example], *,
                        teacher: LocalizeOptions | None = None, start: LocalizeOptions | None = None,
                        penalties: Sequence[float] = PENALTIES,
                        progress: Callable[[str, int, int], None] | None = None) -> tuple[BoxRegressor, dict]:
    """Fit the box regressor on ``train``'s pseudo-boxes and choose its penalty on ``holdout``'s.

    Returns the regressor and a record: per penalty the hold-out IoU, the figures without regression,
    sample counts.
    """
    teacher = teacher or LocalizeOptions()
    start = start or LocalizeOptions(snap=False)
    step = (lambda what: (lambda i, n: progress(what, i, n))) if progress else (lambda what: None)
    tr = collect_samples(loaded, train, teacher=teacher, start=start, progress=step("train"))
    ho = collect_samples(loaded, holdout, teacher=teacher, start=start, progress=step("hold-out"))
    held = ho.arrays(chosen_only=True)
    name = _describe(teacher)
    fits = {lam: fit_box_regressor(tuple(loaded.labels), tr.arrays(), feature_dim=loaded.config.embed_dim,
                                   penalty=lam, teacher=name) for lam in penalties}
    scores = {lam: holdout_iou(reg, held) for lam, reg in fits.items()}
    best = max(scores, key=lambda lam: (scores[lam], lam))
    identity = fit_box_regressor(tuple(loaded.labels), {}, feature_dim=loaded.config.embed_dim, penalty=0.0)
    record = {"teacher": name, "start": _describe(start), "train_clips": len(train), "holdout_clips": len(holdout),
              "train_pairs": tr.frames, "holdout_pairs": ho.frames,
              "train_rows": {loaded.labels[c]: int(len(v[0])) for c, v in sorted(tr.arrays().items())},
              "holdout_iou_without": holdout_iou(identity, held),
              "holdout_iou": {str(lam): v for lam, v in scores.items()}, "penalty": best,
              "trained": [lab for lab, t in zip(loaded.labels, fits[best].trained) if t]}
    return fits[best], record


def _describe(opts: LocalizeOptions) -> str:
    d = dataclasses.asdict(opts)
    return ", ".join(f"{k}={d[k]}" for k in ("box_mode", "evidence_weight", "evidence_fraction", "snap"))
