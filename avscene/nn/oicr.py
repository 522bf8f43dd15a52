"""Online instance classifier refinement (OICR; Tang, Wang, Bai, Liu, CVPR 2017) for the visual proposals.

The two-stream head's localisation picks the proposal that tells a class apart best: often a
discriminative part of the object or its context, rarely the whole object. OICR adds ``K``
refinement branches, each a proposal classifier over ``C + 1`` classes (the last is background).
Branch ``k`` is trained on pseudo-labels from branch ``k - 1`` (branch 1 from the MIL head): in
each frame, the top-scoring proposal of every class present in the video is a *seed*; proposals
overlapping a seed at IoU ≥ 0.5 take its class, the others are background, each weighted by the
seed's score. Neighbours of a seed that cover more of the object thereby become positives, and
the next branch learns to prefer them. At inference the branches' class probabilities, averaged,
choose the boxes (``ModelOutput.visual_R``); the video-level scores are the MIL head's as before.

Videos differ from OICR's images in one way: a class in the video's labels need not be visible in
every frame (it may be heard only). Branch 1's seed weight in a frame is therefore the frame's
share of the MIL head's positive evidence for the class (``T · Σ_m E⁺[t, m] / Σ_{t,m} E⁺``, at most
1): frames where the visual stream sees nothing of the class, or clips where it sees nothing at
all, give no pseudo-label. Frames without a seed are ignored, not labelled background.

Pure tensor functions plus one small module; the training loop adds ``oicr_loss`` to its loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

OICR_IOU = 0.5  # a proposal takes its seed's class at IoU >= this (OICR's value)


class InstanceRefiner(nn.Module):
    """``K`` proposal classifiers over ``C + 1`` classes: (..., d) features -> (..., K, C + 1) logits."""

    def __init__(self, embed_dim: int, num_classes: int, branches: int):
        super().__init__()
        self.branches = nn.ModuleList(nn.Linear(embed_dim, num_classes + 1) for _ in range(branches))

    def forward(self, z: Tensor) -> Tensor:
        return torch.stack([b(z) for b in self.branches], dim=-2)  # (..., K, C+1)


def refined_scores(logits: Tensor) -> Tensor:
    """Class probabilities of the proposals, averaged over the branches: (..., K, C+1) -> (..., C)."""
    return F.softmax(logits, dim=-1)[..., :-1].mean(dim=-2)


def evidence_weights(E: Tensor, frame_mask: Tensor) -> Tensor:
    """Branch 1's seed weight per frame and class: the frame's share of the positive MIL evidence.

    Args:
        E: (B, T, M, C) the MIL head's localisation-weighted proposal scores (``visual_E``).
        frame_mask: (B, T) bool, True for a real frame.

    Returns:
        (B, T, C) in [0, 1]: ``min(1, T_real · Σ_m E⁺[t] / Σ_{t, m} E⁺)``; 0 where a class has no
        positive evidence in the clip and on padded frames.
    """
    pos = E.clamp(min=0).sum(dim=2) * frame_mask[..., None]  # (B, T, C)
    total = pos.sum(dim=1, keepdim=True)  # (B, 1, C)
    n = frame_mask.sum(dim=1).to(E.dtype)[:, None, None]  # (B, 1, 1)
    share = torch.where(total > 0, pos * n / total.clamp(min=torch.finfo(E.dtype).tiny), torch.zeros_like(pos))
    return share.clamp(max=1.0)


@torch.no_grad()
def oicr_targets(scores: Tensor, seed_weight: Tensor, boxes: Tensor, labels: Tensor,
                 frame_mask: Tensor, *, iou: float = OICR_IOU) -> tuple[Tensor, Tensor]:
    """Pseudo-labels of one refinement branch from the scores of the branch before it.

    Args:
        scores: (B, T, M, C) per-proposal class scores of the previous branch (any scale: only
            the argmax over a frame's proposals is used).
        seed_weight: (B, T, C) weight of each frame's seed of each class (0: no seed).
        boxes: (B, T, M, 4) the proposals, x0, y0, x1, y1.
        labels: (B, C) video-level labels (> 0 = present); absent classes never seed.
        frame_mask: (B, T) bool.
        iou: overlap with a seed at which a proposal takes the seed's class.

    Returns:
        ``(target, weight)``: (B, T, M) long class index in ``[0, C]`` (``C`` = background) and
        (B, T, M) float loss weight. In a frame with seeds, each proposal is compared with every
        seed; the seed it overlaps most gives its weight, and its class when the overlap is
        ``>= iou`` (background otherwise). Frames without a seed have weight 0. One batched
        computation, no loop over frames.
    """
    B, T, M, C = scores.shape
    seeds = scores.argmax(dim=2)  # (B, T, C) top proposal of each class in each frame
    active = (labels[:, None, :] > 0) & (seed_weight > 0) & frame_mask[..., None]  # (B, T, C)
    seed_boxes = boxes.gather(2, seeds[..., None].expand(B, T, C, 4))  # (B, T, C, 4)
    ov = frame_iou(boxes, seed_boxes).masked_fill(~active[:, :, None, :], -1.0)  # (B, T, M, C)
    best, which = ov.max(dim=3)  # (B, T, M): the active seed each proposal overlaps most
    target = torch.where(best >= iou, which, torch.full_like(which, C))
    weight = seed_weight.gather(2, which) * active.any(dim=2, keepdim=True)  # frames without a seed: 0
    return target, weight.to(scores.dtype)


def frame_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every box of ``a`` (..., M, 4) with every box of ``b`` (..., S, 4) in the same frame
    (x0, y0, x1, y1): (..., M, S). ``torchvision.ops.box_iou`` without its 2-D limit (one call for
    every frame of a batch)."""
    a, b = a[..., :, None, :], b[..., None, :, :]
    w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter).clamp(min=torch.finfo(inter.dtype).tiny)


def oicr_loss(logits: Tensor, E: Tensor, boxes: Tensor, labels: Tensor, frame_mask: Tensor) -> Tensor:
    """Mean over the branches of OICR's weighted cross-entropy, each branch taught by the one before.

    Args:
        logits: (B, T, M, K, C+1) the refinement branches' logits (``ModelOutput.visual_refine``).
        E: (B, T, M, C) the MIL head's proposal scores, which teach branch 1.
        boxes, labels, frame_mask: as in :func:`oicr_targets`.

    Returns:
        Scalar: per branch, ``Σ w · CE(logits, target)`` over the real proposals divided by their
        number (OICR's normalisation), averaged over branches.
    """
    B, T, M, K, _ = logits.shape
    n = (frame_mask.sum() * M).clamp(min=1)  # the real proposals
    prev, seed_w = E.detach(), evidence_weights(E.detach(), frame_mask)
    seen = seed_w > 0  # (B, T, C) where the MIL head sees the class: no later branch seeds elsewhere
    losses = []
    for k in range(K):
        target, w = oicr_targets(prev, seed_w, boxes, labels, frame_mask)
        ce = F.cross_entropy(logits[..., k, :].reshape(-1, logits.shape[-1]), target.reshape(-1),
                             reduction="none").view(B, T, M)
        losses.append((ce * w).sum() / n)  # w is 0 on padded frames
        probs = F.softmax(logits[..., k, :].detach(), dim=-1)[..., :-1]  # (B, T, M, C)
        prev = probs
        seed_w = probs.max(dim=2).values * seen  # (B, T, C) the seed's own probability (OICR)
    return torch.stack(losses).mean()
