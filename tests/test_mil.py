"""Scoring heads, fusion, synchronous pooling and losses against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from avscene.errors import UsageError
from avscene.nn.mil import (
    OneStreamHead, TwoStreamHead, WSDDNHead, bce_loss, hinge_loss, l2_fuse, loss_fn, mean_fuse, sync_pool,
)
from avscene.nn.model import ModelConfig

# a bag of 3 proposals with d = 2 features, C = 2 classes
Z = [[1.0, 2.0], [0.0, 1.0], [2.0, -1.0]]
W_CLS, B_CLS = [[1.0, 0.0], [0.5, -1.0]], [0.0, 0.5]  # rows: classes
W_LOC, B_LOC = [[0.0, 1.0], [1.0, 1.0]], [0.1, -0.2]


def _linear(z: list[list[float]], w: list[list[float]], b: list[float]) -> list[list[float]]:
    return [[sum(zi * wi for zi, wi in zip(row, w[c])) + b[c] for c in range(len(w))] for row in z]


def _set(lin: torch.nn.Linear, w: list[list[float]], b: list[float]) -> None:
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(w))
        lin.bias.copy_(torch.tensor(b))


def _two_stream_by_hand(z: list[list[float]]) -> tuple[list[float], list[list[float]], list[list[float]]]:
    A, L = _linear(z, W_CLS, B_CLS), _linear(z, W_LOC, B_LOC)
    E = [[0.0, 0.0] for _ in z]
    for c in range(2):
        den = sum(math.exp(L[p][c]) for p in range(len(z)))
        for p in range(len(z)):
            E[p][c] = A[p][c] * math.exp(L[p][c]) / den
    return [sum(E[p][c] for p in range(len(z))) for c in range(2)], E, A


def _two_stream_head() -> TwoStreamHead:
    head = TwoStreamHead(2, 2)
    _set(head.cls, W_CLS, B_CLS)
    _set(head.loc, W_LOC, B_LOC)
    return head


def test_two_stream_matches_hand_computation():
    score, E, A = _two_stream_head()(torch.tensor([Z]))
    s_ref, E_ref, A_ref = _two_stream_by_hand(Z)
    assert torch.allclose(A[0], torch.tensor(A_ref))
    assert torch.allclose(E[0], torch.tensor(E_ref), atol=1e-6)
    assert torch.allclose(score[0], torch.tensor(s_ref), atol=1e-6)
    # A for proposal 0 written out: class 0 = 1*1 + 0*2 + 0 = 1, class 1 = 0.5*1 - 1*2 + 0.5 = -1
    assert A[0, 0].tolist() == [1.0, -1.0]


def test_two_stream_masked_proposals_do_not_change_score():
    head = _two_stream_head()
    padded = torch.tensor([Z + [[50.0, -80.0]]])  # a 4th, masked proposal with extreme values
    mask = torch.tensor([[True, True, True, False]])
    score, E, _ = head(padded, mask)
    s_ref, _, _ = _two_stream_by_hand(Z)
    assert torch.allclose(score[0], torch.tensor(s_ref), atol=1e-6)
    assert E[0, 3].tolist() == [0.0, 0.0]


def test_two_stream_all_masked_is_finite_with_finite_gradients():
    head = _two_stream_head()
    z = torch.tensor([Z], requires_grad=True)
    score, E, _ = head(z, torch.zeros(1, 3, dtype=torch.bool))
    assert score.tolist() == [[0.0, 0.0]] and torch.isfinite(E).all()
    score.sum().backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(head.loc.weight.grad).all()


def test_one_stream_is_log_mean_exp_over_real_proposals():
    r = 2.0
    head = OneStreamHead(2, 2, r)
    _set(head.cls, W_CLS, B_CLS)
    mask = torch.tensor([[True, False, True]])  # proposal 1 is padding
    score, E, A = head(torch.tensor([Z]), mask)
    A_ref = _linear(Z, W_CLS, B_CLS)
    ref = [math.log((math.exp(r * A_ref[0][c]) + math.exp(r * A_ref[2][c])) / 2) / r for c in range(2)]
    assert torch.allclose(score[0], torch.tensor(ref), atol=1e-6)
    assert torch.allclose(A[0], torch.tensor(A_ref))
    empty, _, _ = head(torch.tensor([Z]), torch.zeros(1, 3, dtype=torch.bool))
    assert empty.tolist() == [[0.0, 0.0]]


def test_wsddn_is_class_softmax_times_proposal_softmax():
    head = WSDDNHead(2, 2)
    _set(head.cls, W_CLS, B_CLS)
    _set(head.loc, W_LOC, B_LOC)
    score, _, A = head(torch.tensor([Z]))
    S, L = _linear(Z, W_CLS, B_CLS), _linear(Z, W_LOC, B_LOC)
    ref = []
    for c in range(2):
        den_p = sum(math.exp(L[p][c]) for p in range(3))
        ref.append(sum(math.exp(S[p][c]) / (math.exp(S[p][0]) + math.exp(S[p][1]))
                       * math.exp(L[p][c]) / den_p for p in range(3)))
    assert torch.allclose(score[0], torch.tensor(ref), atol=1e-6)
    assert torch.allclose(A.sum(-1), torch.ones(1, 3))
    assert 0.0 <= score.min() and score.max() <= 1.0


def test_l2_fuse_by_hand():
    a = torch.tensor([[3.0, 4.0, 0.0]])  # norm 5
    v = torch.tensor([[0.0, -2.0, 0.0]])  # norm 2
    assert torch.allclose(l2_fuse([a, v]), torch.tensor([[0.6, 0.8 - 1.0, 0.0]]))
    assert torch.allclose(l2_fuse([a]), torch.tensor([[0.6, 0.8, 0.0]]))
    assert l2_fuse([torch.zeros(1, 3)]).tolist() == [[0.0, 0.0, 0.0]]  # no NaN for a zero vector
    assert torch.allclose(mean_fuse([torch.tensor([[0.2, 1.0]]), torch.tensor([[0.4, 0.0]])]),
                          torch.tensor([[0.3, 0.5]]))


def test_hinge_loss_by_hand():
    s = torch.tensor([[2.0, -0.5], [0.3, -2.0]])
    t = torch.tensor([[1, 0], [0, 1]])
    # y = [[1, -1], [-1, 1]]; 1 - y s = [[-1, 0.5], [1.3, 3]] -> clipped [[0, 0.5], [1.3, 3]]
    assert hinge_loss(s, t).item() == pytest.approx((0 + 0.5 + 1.3 + 3) / 4)


def test_bce_loss_by_hand_and_clamped():
    p = torch.tensor([[0.9, 0.2]])
    t = torch.tensor([[1.0, 0.0]])
    assert bce_loss(p, t).item() == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2, rel=1e-6)
    worst = bce_loss(torch.tensor([[0.0, 1.0]]), t)
    assert math.isfinite(worst.item()) and worst.item() > 10


def test_loss_shape_mismatch_and_choice():
    with pytest.raises(UsageError, match="must both be"):
        hinge_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    assert loss_fn(ModelConfig(num_classes=2, variant="wsddn")) is bce_loss
    assert loss_fn(ModelConfig(num_classes=2, variant="sync")) is hinge_loss


def test_sync_pool_by_hand():
    """Two modalities, C = 2, segments 0 and 2 used, segment 1 empty, one padded proposal."""
    r = 3.0
    A_a = [[1.0, -1.0], [2.0, 0.5], [0.5, 1.0], [9.0, 9.0]]  # last one is padding
    L_a = [[0.0, 1.0], [1.0, 0.0], [2.0, -1.0], [9.0, 9.0]]
    seg_a = [0, 0, 2, 7]
    A_v = [[-1.0, 2.0], [3.0, 0.0]]
    L_v = [[0.5, 0.5], [-1.0, 2.0]]
    seg_v = [0, 2]
    out = sync_pool(
        [torch.tensor([A_a]), torch.tensor([A_v])], [torch.tensor([L_a]), torch.tensor([L_v])],
        [torch.tensor([seg_a]), torch.tensor([seg_v])],
        [torch.tensor([[True, True, True, False]]), None], r=r,
    )
    members = {0: [("a", 0), ("a", 1), ("v", 0)], 2: [("a", 2), ("v", 1)]}
    A = {"a": A_a, "v": A_v}
    L = {"a": L_a, "v": L_v}
    seg_ref = [[0.0, 0.0] for _ in range(3)]
    share_a = [[0.0, 0.0] for _ in range(3)]
    for s, mem in members.items():
        for c in range(2):
            den = sum(math.exp(L[m][p][c]) for m, p in mem)
            for m, p in mem:
                e = A[m][p][c] * math.exp(L[m][p][c]) / den
                seg_ref[s][c] += e
                if m == "a":
                    share_a[s][c] += e
    pooled = [math.log((math.exp(r * seg_ref[0][c]) + math.exp(r * seg_ref[2][c])) / 2) / r for c in range(2)]
    norm = math.sqrt(sum(x * x for x in pooled))
    assert out.exists.tolist() == [[True, False, True]]
    assert torch.allclose(out.segment_scores[0], torch.tensor(seg_ref), atol=1e-6)
    assert torch.allclose(out.shares[0][0], torch.tensor(share_a), atol=1e-6)
    assert torch.allclose(out.shares[0] + out.shares[1], out.segment_scores)
    assert torch.allclose(out.scores[0], torch.tensor([x / norm for x in pooled]), atol=1e-6)
    assert out.E[0][0, 3].tolist() == [0.0, 0.0]


def test_sync_pool_batch_with_an_empty_bag_is_finite():
    A = torch.randn(2, 4, 3, requires_grad=True)
    L = torch.randn(2, 4, 3)
    seg = torch.tensor([[0, 1, 1, 2], [0, 0, 0, 0]])
    mask = torch.tensor([[True] * 4, [False] * 4])
    out = sync_pool([A], [L], [seg], [mask], r=5.0)
    assert out.segment_scores.shape == (2, 3, 3)
    assert out.scores[1].tolist() == [0.0, 0.0, 0.0] and out.exists[1].tolist() == [False] * 3
    out.scores.sum().backward()
    assert torch.isfinite(A.grad).all() and A.grad[1].abs().sum() == 0


def test_sync_pool_rejects_negative_segments():
    with pytest.raises(UsageError, match=">= 0"):
        sync_pool([torch.zeros(1, 2, 1)], [torch.zeros(1, 2, 1)], [torch.tensor([[0, -1]])], [None], r=1.0)


def test_noisy_or_fuse_by_hand():
    from avscene.nn.mil import noisy_or_fuse

    pa = torch.tensor([[0.9, 0.0, 0.5]])
    pv = torch.tensor([[0.0, 0.8, 0.5]])
    # 1 - (1 - 0.9)(1 - 0) = 0.9; 1 - 1 * 0.2 = 0.8; 1 - 0.5 * 0.5 = 0.75
    assert torch.allclose(noisy_or_fuse([pa, pv]), torch.tensor([[0.9, 0.8, 0.75]]))
    assert torch.equal(noisy_or_fuse([pa]), pa)  # one modality: its own probability


def test_avor_variant_fuses_modality_probabilities_by_noisy_or():
    from avscene.nn.mil import l2_normalise
    from avscene.nn.model import AVSceneNet, ModelConfig, ModelInput, modality_scores

    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=3, variant="avor", audio_width=0.125, audio_fc=(32,), visual_channels=(8, 16),
                      visual_fc=(32, 32), embed_dim=16)
    assert cfg.loss == "bce" and cfg.decision_threshold == 0.5 and cfg.modality_threshold("visual") == 0.5
    net = AVSceneNet(cfg).eval()
    x = ModelInput(audio=torch.randn(2, 4, 96, 64), images=torch.rand(2, 2, 3, 32, 32),
                   boxes=torch.tensor([0.0, 0.0, 16.0, 16.0]).expand(2, 2, 1, 4).clone())
    with torch.no_grad():
        out = net(x)
    pa = torch.sigmoid(l2_normalise(out.audio_scores) * cfg.fused_scale)
    pv = torch.sigmoid(l2_normalise(out.visual_scores) * cfg.fused_scale)
    assert torch.allclose(out.scores, 1 - (1 - pa) * (1 - pv), atol=1e-6)
    per = modality_scores(out, cfg)
    assert torch.allclose(per["audio"], pa) and torch.allclose(per["visual"], pv)
    assert bool((out.scores >= torch.maximum(pa, pv) - 1e-6).all())  # OR: at least either modality


# ---- issue 30: event head pooling, the floor under a modality's evidence ------------------------


def test_linear_softmax_is_the_sum_of_squares_over_the_sum_on_a_toy_batch():
    from avscene.nn.mil import linear_softmax

    p = torch.tensor([[[0.9, 0.1], [0.5, 0.0], [0.2, 0.0]],
                      [[0.4, 1.0], [0.4, 1.0], [0.0, 0.0]]])  # (B=2, P=3, C=2)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    want = torch.tensor([[(0.81 + 0.25 + 0.04) / (0.9 + 0.5 + 0.2), 0.01 / 0.1],
                         [(0.16 + 0.16) / 0.8, 2.0 / 2.0]])
    assert torch.allclose(linear_softmax(p, mask), want)
    # a padded window never counts; a class at 0 everywhere, and a bag without windows, pool to 0
    p2 = p.clone()
    p2[1, 2] = torch.tensor([1.0, 1.0])
    assert torch.allclose(linear_softmax(p2, mask), want)
    assert linear_softmax(p, torch.zeros(2, 3, dtype=torch.bool)).eq(0).all()
    # between mean and max: 0.9 of one window in ten gives 0.9, not the mean 0.09
    one = torch.zeros(1, 10, 1)
    one[0, 3, 0] = 0.9
    assert torch.isclose(linear_softmax(one, None), torch.tensor([[0.9]]))


def test_event_loss_pools_each_part_against_its_own_labels():
    from avscene.nn.mil import event_loss

    logits = torch.tensor([[[2.0, -1.0], [1.0, -2.0], [-1.0, 3.0], [0.0, 0.0]]])  # (1, 4, 2)
    part = torch.tensor([[0, 0, 1, 1]])
    part_y = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # first half class 0, second half class 1
    p = torch.sigmoid(logits[0])

    def ls(rows):
        q = p[rows]
        return (q * q).sum(0) / q.sum(0)

    pooled = torch.stack([ls([0, 1]), ls([2, 3])])  # (2 parts, C)
    want = bce_loss(pooled, part_y[0])
    assert torch.isclose(event_loss(logits, None, part, part_y), want)
    # a padded window leaves its part out of the pooling; an empty part is no term
    mask = torch.tensor([[True, True, False, False]])
    assert torch.isclose(event_loss(logits, mask, part, part_y), bce_loss(pooled[:1], part_y[0, :1]))
    # without parts every window is one bag, taught the first row
    whole = bce_loss(ls([0, 1, 2, 3])[None], torch.tensor([[1.0, 1.0]]))
    assert torch.isclose(event_loss(logits, None, None, torch.tensor([[[1.0, 1.0]]])), whole)


def test_floor_loss_by_hand_and_its_gradient_reaches_the_best_proposal_only():
    from avscene.nn.mil import floor_loss, masked_max

    A = torch.tensor([[[0.5, 2.0], [-0.3, -4.0], [3.0, 9.0]]], requires_grad=True)  # (1, 3, 2)
    mask = torch.tensor([[True, True, False]])  # the third proposal is padding
    y = torch.tensor([[1.0, 0.0]])
    assert masked_max(A, mask).tolist() == [[0.5, 2.0]]
    # positive class 0: relu(1 - 0.5) = 0.5; negative class 1: relu(1 + 2) = 3; each group averaged
    loss = floor_loss(A, mask, y)
    assert torch.isclose(loss, torch.tensor(3.5))
    loss.backward()
    assert A.grad[0, :, 0].tolist() == [-1.0, 0.0, 0.0]
    assert A.grad[0, :, 1].tolist() == [1.0, 0.0, 0.0]
    # met margins cost nothing
    ok = torch.tensor([[[1.5, -1.2], [0.0, -3.0]]])
    assert floor_loss(ok, None, y) == 0


def _toy_bags(seed: int, n: int = 48, d: int = 6, pa: int = 4, pv: int = 12):
    """Bags of two classes: every audio window of a class carries its feature strongly (audibly
    easier), one visual window (the object) carries another feature clearly (visually easy)."""
    g = torch.Generator().manual_seed(seed)
    cls = torch.randint(0, 2, (n,), generator=g)
    y = torch.nn.functional.one_hot(cls, 2).float()
    za = torch.randn(n, pa, d, generator=g) * 0.3
    zv = torch.randn(n, pv, d, generator=g) * 0.3
    obj = torch.randint(0, pv, (n,), generator=g)
    za[torch.arange(n), :, cls] += 3.0
    zv[torch.arange(n), obj, 2 + cls] += 1.2
    return za, zv, y, cls, obj


def _visual_map_hits(floor: float, seed: int, steps: int = 150) -> float:
    """Train audio and visual two-stream heads on the toy, class 0's visual stream starting dead (all
    zero: every window alike) and the audio stream already meeting the margin; the share of held-out
    class-0 bags whose best visual window for class 0 is the object."""
    from avscene.nn.mil import floor_loss

    torch.manual_seed(seed)
    za, zv, y, _, _ = _toy_bags(seed)
    audio, visual = TwoStreamHead(6, 2), TwoStreamHead(6, 2)
    with torch.no_grad():
        audio.cls.weight.zero_()
        audio.cls.weight[0, 0] = audio.cls.weight[1, 1] = 1.0
        audio.cls.bias.fill_(-1.0)
        for lin in (visual.cls, visual.loc):
            lin.weight[0] = 0.0
            lin.bias[0] = 0.0
    opt = torch.optim.Adam([*audio.parameters(), *visual.parameters()], lr=0.02)
    for _ in range(steps):
        sa, _, _ = audio(za)
        sv, _, Av = visual(zv)
        loss = hinge_loss(l2_fuse([sa, sv]) * 2.0, y) + floor * floor_loss(Av, None, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, zv, _, cls, obj = _toy_bags(seed + 100)
    with torch.no_grad():
        A = visual.classify(zv)[..., 0]  # (n, pv)
    pos = cls == 0
    return float((A[pos].argmax(dim=1) == obj[pos]).float().mean())


def test_a_class_audibly_easier_than_visually_still_gets_a_visual_map_with_the_floor():
    with_floor = [_visual_map_hits(0.5, seed) for seed in (0, 1)]
    fused_only = [_visual_map_hits(0.0, seed) for seed in (0, 1)]
    assert min(with_floor) >= 0.9, with_floor  # the object is class 0's best window in (nearly) every bag
    assert sum(with_floor) > sum(fused_only) + 0.2, (with_floor, fused_only)
