"""OICR refinement of the visual proposals (nn/oicr.py): pseudo-labels, seed weights, the loss,
and how the branches join the network and the box choice."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torchvision.ops import box_iou

from avscene.errors import ConfigError
from avscene.nn.model import AVSceneNet, ModelConfig, box_scores
from avscene.nn.oicr import InstanceRefiner, evidence_weights, oicr_loss, oicr_targets, refined_scores
from avscene.testing.models import tiny_config, tiny_input

BG = 3  # background index with C = 3 classes

# one frame of four proposals: 0 and 1 overlap at IoU 0.9; 2 apart; 3 touches 2 at IoU 1/7
FRAME = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30], [25, 25, 35, 35]], dtype=torch.float)


def one_clip_case():
    """B=1, T=3 frames (the last padded), M=4, C=3: classes 0 and 1 present, 2 absent."""
    boxes = FRAME.expand(1, 3, 4, 4).clone()
    scores = torch.zeros(1, 3, 4, 3)
    scores[0, :, 0, 0] = 5.0  # class 0's top proposal: 0
    scores[0, :, 2, 1] = 5.0  # class 1's: 2
    scores[0, :, 3, 2] = 9.0  # class 2's: 3 (absent from the labels: never a seed)
    seed_w = torch.tensor([[[0.8, 0.5, 1.0], [0.0, 0.0, 1.0], [0.9, 0.9, 0.9]]])  # (1, T, C)
    labels = torch.tensor([[1.0, 1.0, -1.0]])  # hinge-style targets: > 0 is present
    frame_mask = torch.tensor([[True, True, False]])
    return scores, seed_w, boxes, labels, frame_mask


def test_pseudo_labels_are_the_top_proposals_of_present_classes_and_their_neighbours():
    target, weight = oicr_targets(*one_clip_case())
    # frame 0 (computed by hand): 0 is class 0's seed, 1 overlaps it at 0.9 -> class 0 (weight 0.8);
    # 2 is class 1's seed (0.5); 3 overlaps class 1's seed at 1/7 < 0.5 -> background at that seed's 0.5
    assert target[0, 0].tolist() == [0, 0, 1, BG]
    torch.testing.assert_close(weight[0, 0], torch.tensor([0.8, 0.8, 0.5, 0.5]))
    # class 2 scores highest on proposal 3 but is absent: no proposal anywhere is labelled 2
    assert not (target == 2).any()
    # frame 1: no present class has a seed weight -> ignored (weight 0), not taught background
    assert weight[0, 1].eq(0).all()
    # frame 2 is padding: weight 0 whatever its seed weights
    assert weight[0, 2].eq(0).all()


def test_a_proposal_between_two_seeds_takes_the_one_it_overlaps_most():
    boxes = torch.tensor([[[[0, 0, 10, 10], [4, 0, 14, 10], [5, 0, 15, 10]]]], dtype=torch.float)
    scores = torch.zeros(1, 1, 3, 2)
    scores[0, 0, 0, 0] = 1.0  # class 0 seeds at proposal 0
    scores[0, 0, 2, 1] = 1.0  # class 1 at proposal 2
    seed_w = torch.tensor([[[0.3, 0.7]]])
    target, weight = oicr_targets(scores, seed_w, boxes, torch.ones(1, 2), torch.ones(1, 1, dtype=torch.bool))
    # proposal 1 = [4, 14]: IoU 6/14 with proposal 0, 9/11 with proposal 2 -> class 1
    assert target[0, 0].tolist() == [0, 1, 1]
    torch.testing.assert_close(weight[0, 0], torch.tensor([0.3, 0.7, 0.7]))


def test_seed_weights_are_each_frames_share_of_the_positive_evidence():
    E = torch.zeros(1, 3, 2, 2)  # (B, T, M, C); frame 2 is padding
    E[0, 0, :, 0] = torch.tensor([2.0, 1.0])  # frame 0: 3 of class 0's positive evidence
    E[0, 1, :, 0] = torch.tensor([1.0, -4.0])  # frame 1: 1 (negative scores count as 0)
    E[0, 2, :, 0] = 100.0  # padded frame: ignored
    E[0, :, :, 1] = -1.0  # class 1: no positive evidence anywhere
    w = evidence_weights(E, torch.tensor([[True, True, False]]))
    # 2 real frames: shares 3/4 and 1/4, times 2 -> 1.5 (capped at 1) and 0.5
    torch.testing.assert_close(w[0, :, 0], torch.tensor([1.0, 0.5, 0.0]))
    assert w[0, :, 1].eq(0).all()


def test_the_loss_reaches_only_the_branches_and_falls_as_they_learn_their_targets():
    torch.manual_seed(0)
    B, T, M, C, K = 2, 3, 4, 3, 2
    boxes = FRAME.expand(B, T, M, 4).clone()
    z = torch.randn(B, T, M, 8)
    refiner = InstanceRefiner(8, C, K)
    E = torch.randn(B, T, M, C, requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    fm = torch.ones(B, T, dtype=torch.bool)
    loss = oicr_loss(refiner(z), E, boxes, labels, fm)
    loss.backward()
    assert E.grad is None or E.grad.abs().sum() == 0  # the MIL head's scores only teach
    opt = torch.optim.Adam(refiner.parameters(), lr=0.05)
    first = float(loss.detach())
    for _ in range(150):
        opt.zero_grad()
        loss = oicr_loss(refiner(z), E.detach(), boxes, labels, fm)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
    # after learning, the refined box of a present class in each frame is its seed or a neighbour
    # of it (IoU >= 0.5 with the MIL head's top box); an absent class scores below a present one
    R = refined_scores(refiner(z)).detach()  # (B, T, M, C)
    for b, c in ((0, 0), (1, 1)):
        for t in range(T):
            seed = int(E[b, t, :, c].argmax())
            chosen = int(R[b, t, :, c].argmax())
            if float(evidence_weights(E.detach(), fm)[b, t, c]) > 0:
                assert float(box_iou(boxes[b, t, seed][None], boxes[b, t, chosen][None])) >= 0.5
    assert float(R[0, :, :, 0].max()) > float(R[0, :, :, 1].max())


def refine_cfg(k: int = 3, variant: str = "async") -> ModelConfig:
    return dataclasses.replace(tiny_config(variant=variant), visual_refine=k)


@pytest.mark.parametrize("variant", ["async", "visual", "avor", "sync", "wsddn"])
def test_refinement_outputs_per_proposal_probabilities_and_leaves_the_scores_alone(variant):
    torch.manual_seed(0)
    net = AVSceneNet(refine_cfg(3, variant)).eval()
    x = tiny_input(batch=2)
    with torch.no_grad():
        out = net(x)
        plain = AVSceneNet(tiny_config(variant=variant)).eval()
        plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("visual_refiner.")})
        ref = plain(x)
    B, T, M = x.boxes.shape[:3]
    assert out.visual_refine.shape == (B, T, M, 3, 4)
    assert out.visual_R.shape == (B, T, M, 3)
    assert torch.all(out.visual_R.sum(dim=-1) < 1)  # the background takes the rest
    torch.testing.assert_close(out.scores, ref.scores)  # the video-level decision is the MIL head's
    assert box_scores(out) is out.visual_R and box_scores(ref) is ref.visual_E


def test_refinement_is_off_by_default_and_checked():
    assert AVSceneNet(tiny_config()).visual_refiner is None
    assert AVSceneNet(tiny_config(variant="audio")).visual_refiner is None
    assert AVSceneNet(refine_cfg(0)).visual_refiner is None
    assert AVSceneNet(refine_cfg(2, "audio")).visual_refiner is None  # no visual stream to refine
    for bad in (-1, 9, 1.5, True):
        with pytest.raises(ConfigError, match="visual_refine"):
            refine_cfg(bad)
    d = json.loads(json.dumps(refine_cfg(2).to_dict()))
    assert ModelConfig.from_dict(d).visual_refine == 2


def test_training_loss_weighs_the_oicr_loss_by_oicr_weight():
    """training_loss(..., oicr_weight=w) = the MIL loss + w × oicr_loss (0 leaves the MIL loss alone)."""
    from avscene.nn.mil import hinge_loss
    from avscene.train.loop import training_loss

    torch.manual_seed(0)
    net = AVSceneNet(refine_cfg(2)).eval()
    x = tiny_input(batch=2)
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    with torch.no_grad():
        out = net(x)
    out = out._replace(visual_E=out.visual_E.abs() + 0.1)  # positive evidence: every frame seeds
    fm = torch.ones(x.boxes.shape[:2], dtype=torch.bool) if x.frame_mask is None else x.frame_mask.bool()
    mil = float(hinge_loss(out.scores, y))
    refine = float(oicr_loss(out.visual_refine, out.visual_E, x.boxes, y, fm))
    assert refine > 0
    for w in (0.0, 0.1, 1.0):
        got = float(training_loss(out, y, hinge_loss, scale=1.0, x=x, oicr_weight=w))
        assert got == pytest.approx(mil + w * refine, rel=1e-6)


def test_frame_iou_is_torchvisions_box_iou_in_every_frame():
    from avscene.nn.oicr import frame_iou

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 3, 5, 2, generator=g) * 50
    a = torch.cat([xy, xy + 1 + torch.rand(2, 3, 5, 2, generator=g) * 30], dim=-1)  # (2, 3, 5, 4)
    b = a[:, :, [4, 0, 2]]  # (2, 3, 3, 4): some identical boxes (IoU 1)
    got = frame_iou(a, b)
    assert got.shape == (2, 3, 5, 3)
    for i in range(2):
        for t in range(3):
            torch.testing.assert_close(got[i, t], box_iou(a[i, t], b[i, t]))
    assert torch.allclose(got[:, :, 4, 0], torch.ones(2, 3))


def test_pseudo_labels_of_a_batch_worked_by_hand():
    """Two clips of two frames, three boxes, two classes; every target and weight worked out by hand.

    Boxes: P = [0, 0, 10, 10], Q = [0, 0, 10, 20] (IoU(P, Q) = 100 / 200 = 0.5, at the threshold),
    R = [20, 20, 30, 30] (no overlap). Clip 0 lists them P, Q, R; clip 1 as Q, R, P.
    """
    P, Q, R = [0.0, 0, 10, 10], [0.0, 0, 10, 20], [20.0, 20, 30, 30]
    boxes = torch.tensor([[[P, Q, R]] * 2, [[Q, R, P]] * 2])  # (2, 2, 3, 4)
    scores = torch.zeros(2, 2, 3, 2)
    scores[0, 0, 0, 0] = scores[0, 0, 2, 1] = 1.0  # clip 0, frame 0: class 0 seeds at P, class 1 at R
    scores[1, 0, 2, 0] = scores[1, 0, 0, 1] = 1.0  # clip 1, frame 0: class 0 (absent) at P, class 1 at Q
    seed_w = torch.tensor([[[0.4, 0.7], [0.4, 0.7]], [[0.9, 0.2], [0.5, 0.0]]])  # (2, 2, 2)
    labels = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # clip 1: class 0 absent, never a seed
    fm = torch.tensor([[True, False], [True, True]])  # clip 0's frame 1 is padding
    target, weight = oicr_targets(scores, seed_w, boxes, labels, fm)
    bg = 2  # C: background
    # clip 0 frame 0: P is class 0's seed; Q overlaps it at exactly 0.5 (class 0, its weight); R is class 1's seed
    # clip 0 frame 1: masked, no seed -> background, weight 0
    # clip 1 frame 0: Q is class 1's seed (class 0 is absent); R overlaps nothing (background, weight of the
    #   seed it overlaps most: class 1's 0.2); P overlaps Q at 0.5 -> class 1
    # clip 1 frame 1: class 1's seed weight is 0 and class 0 is absent -> no seed
    assert target.tolist() == [[[0, 0, 1], [bg, bg, bg]], [[1, bg, 1], [bg, bg, bg]]]
    torch.testing.assert_close(weight, torch.tensor([[[0.4, 0.4, 0.7], [0.0, 0.0, 0.0]],
                                                     [[0.2, 0.2, 0.2], [0.0, 0.0, 0.0]]]))
