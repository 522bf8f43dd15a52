"""Modality-aware label refinement (after Wu & Yang, "Exploring heterogeneous clues for weakly
supervised audio-visual video parsing", CVPR 2021: MA).

A clip's video-level labels say a class is heard *or* seen, not which. Swap one modality's
track with that of an unrelated clip (no label in common) and score the hybrid: a class the
model still finds when only the clip's *audio* is kept is taken as heard, one it still finds
when only the *frames* are kept as seen. The refined per-modality targets train each stream's
own loss (``--aux-loss``) with ``--refine-labels``; the fused loss keeps the video labels.

Pure numpy over prepared clips; the scoring is the caller's (``Trainer.modality_targets``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from avscene.train.data import CachedClip


def unrelated_partners(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each clip, a random other clip with no label in common; -1 when there is none. (N, C) → (N,)."""
    y = np.asarray(y, dtype=bool)
    disjoint = ~(y.astype(np.int64) @ y.T.astype(np.int64)).astype(bool)  # (N, N) no shared label
    np.fill_diagonal(disjoint, False)
    out = np.full(len(y), -1, dtype=np.int64)
    for i, row in enumerate(disjoint):
        cand = np.flatnonzero(row)
        if len(cand):
            out[i] = int(rng.choice(cand))
    return out


def keep_modality(clip: CachedClip, other: CachedClip, keep: str) -> CachedClip:
    """``clip`` with the other modality taken from ``other``: keep "audio" or "visual"."""
    if keep == "audio":
        return dataclasses.replace(clip, frames=other.frames, boxes=other.boxes, frame_times=other.frame_times)
    return dataclasses.replace(clip, audio=other.audio)


def refine_targets(y: np.ndarray, kept_audio: np.ndarray, kept_visual: np.ndarray, partners: np.ndarray, *,
                   threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-modality targets from the scores of the swapped clips.

    Args:
        y: (N, C) bool video labels.
        kept_audio: (N, C) fused scores of each clip's audio with its partner's frames.
        kept_visual: (N, C) fused scores of its frames with its partner's audio.
        partners: (N,) partner index, -1 for none (the clip's targets stay ``y``).
        threshold: the decision threshold of the scores.

    Returns:
        ``(y_audio, y_visual)`` (N, C) bool: a label is kept in a modality when the class is
        still found with that modality kept; a label found in neither stays in both (it is
        somewhere), and nothing is added: ``y_audio | y_visual == y``.
    """
    y = np.asarray(y, dtype=bool)
    ya = y & (kept_audio > threshold)
    yv = y & (kept_visual > threshold)
    lost = y & ~ya & ~yv
    ya, yv = ya | lost, yv | lost
    alone = partners < 0
    ya[alone], yv[alone] = y[alone], y[alone]
    return ya, yv
