"""Modality-aware label refinement on a toy batch: the targets change as specified."""

from __future__ import annotations

import numpy as np

from avscene.train.data import CachedClip
from avscene.train.refine import keep_modality, refine_targets, unrelated_partners


def test_partners_share_no_label() -> None:
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]], dtype=bool)
    p = unrelated_partners(y, np.random.default_rng(0))
    # clip 0 (class 0) can pair with 2 or 3; clip 1 (0, 1) only with 2; clip 2 with 0, 1 or 3; clip 3 with 0 or 2
    assert p[0] in (2, 3) and p[1] == 2 and p[2] in (0, 1, 3) and p[3] in (0, 2)
    assert unrelated_partners(np.ones((2, 1), bool), np.random.default_rng(0)).tolist() == [-1, -1]


def test_refined_targets_on_a_toy_batch() -> None:
    # three clips, two classes (threshold 0):
    # clip 0: labels {0}: still found with its audio kept (0.8), lost with its frames kept (-0.5): heard only
    # clip 1: labels {0, 1}: class 0 found with frames kept only (silent object); class 1 in both
    # clip 2: labels {1}: found in neither swap (-0.1, -0.6) -> kept in both (the label is somewhere)
    y = np.array([[1, 0], [1, 1], [0, 1]], dtype=bool)
    kept_audio = np.array([[0.8, 0.9], [-0.2, 0.5], [0.3, -0.1]])  # class 1 of clip 0 is not a label: ignored
    kept_visual = np.array([[-0.5, -0.4], [0.7, 0.4], [-0.3, -0.6]])
    ya, yv = refine_targets(y, kept_audio, kept_visual, np.array([2, 2, 0]), threshold=0.0)
    assert ya.tolist() == [[True, False], [False, True], [False, True]]
    assert yv.tolist() == [[False, False], [True, True], [False, True]]
    assert ((ya | yv) == y).all()  # nothing added, nothing lost
    # a clip without a partner keeps its labels in both modalities
    ya, yv = refine_targets(y, kept_audio, kept_visual, np.array([2, -1, 0]), threshold=0.0)
    assert ya[1].tolist() == yv[1].tolist() == [True, True]


def test_keep_modality_swaps_the_other_track() -> None:
    a = CachedClip(audio=np.zeros(4, np.float32), frames=np.zeros((1, 3, 2, 2), np.uint8),
                   boxes=np.zeros((1, 1, 4), np.float32), frame_times=np.array([0.5]))
    b = CachedClip(audio=np.ones(4, np.float32), frames=np.ones((1, 3, 2, 2), np.uint8),
                   boxes=np.ones((1, 1, 4), np.float32), frame_times=np.array([0.5]))
    ka = keep_modality(a, b, "audio")
    assert ka.audio is a.audio and ka.frames is b.frames and ka.boxes is b.boxes
    kv = keep_modality(a, b, "visual")
    assert kv.audio is b.audio and kv.frames is a.frames


def test_training_loss_trains_each_modality_on_its_refined_targets() -> None:
    import torch

    from avscene.nn.mil import hinge_loss
    from avscene.nn.model import ModelOutput
    from avscene.train.loop import training_loss

    # one clip, one class labelled present; audio and visual scores +1 and -1 after scaling
    # (one class: the l2-normalised score is its sign, times scale 1)
    out = ModelOutput(scores=torch.tensor([[0.0]]), audio_scores=torch.tensor([[2.0]]),
                      visual_scores=torch.tensor([[-3.0]]))
    y = torch.tensor([[1.0]])
    # plain aux: fused hinge max(0, 1 - 0) = 1; audio max(0, 1 - 1) = 0; visual max(0, 1 + 1) = 2
    # -> 1 + 0.5 * (0 + 2) / 2 = 1.5
    assert float(training_loss(out, y, hinge_loss, scale=1.0, aux=0.5)) == 1.5
    # refined: the label is only heard -> visual target 0: max(0, 1 - 1) = 0 -> 1 + 0.5 * 0 = 1.0
    modal = (torch.tensor([[1.0]]), torch.tensor([[0.0]]))
    assert float(training_loss(out, y, hinge_loss, scale=1.0, aux=0.5, modality_targets=modal)) == 1.0
