"""AVSceneNet, its config and its backbones on tiny inputs."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from avscene.errors import CheckpointError, ConfigError, UsageError
from avscene.nn.backbones import VGGish, VisualBackbone
from avscene.nn.model import VARIANTS, AVSceneNet, ModelConfig, ModelInput, ProposalFeatures, cat_features
from avscene.nn.mil import hinge_loss, l2_normalise

TINY = dict(num_classes=3, audio_width=0.125, audio_fc=(32,), visual_channels=(8, 16), visual_fc=(32, 32),
            embed_dim=16)
B, T, M, P, C = 2, 3, 4, 5, 3


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _net(variant: str, **kw) -> AVSceneNet:
    torch.manual_seed(0)
    return AVSceneNet(ModelConfig(**{**TINY, "variant": variant, **kw}))


def _boxes(gen: torch.Generator) -> torch.Tensor:
    xy = torch.rand(B, T, M, 2, generator=gen) * 40  # top-left in a 64x64 frame
    wh = 8 + torch.rand(B, T, M, 2, generator=gen) * 16
    return torch.cat([xy, xy + wh], dim=-1)  # (B, T, M, 4)


def _input(gen: torch.Generator, *, audio: bool = True, visual: bool = True) -> ModelInput:
    return ModelInput(
        audio=torch.randn(B, P, 96, 64, generator=gen) if audio else None,
        audio_segment=torch.tensor([[0, 0, 1, 1, 2]] * B) if audio else None,
        images=torch.randn(B, T, 3, 64, 64, generator=gen) if visual else None,
        boxes=_boxes(gen) if visual else None,
        frame_segment=torch.arange(T).expand(B, T) if visual else None,
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shapes(variant: str, gen: torch.Generator):
    out = _net(variant)(_input(gen))
    a, v = variant != "visual", variant != "audio"
    assert out.scores.shape == (B, C)
    for name, used, shape in [("audio_scores", a, (B, C)), ("audio_E", a, (B, P, C)), ("audio_A", a, (B, P, C)),
                              ("visual_scores", v, (B, C)), ("visual_E", v, (B, T, M, C)),
                              ("visual_A", v, (B, T, M, C))]:
        t = getattr(out, name)
        assert (t is None) != used and (t is None or t.shape == shape), name
    sync = variant == "sync"
    for name in ("segment_scores", "audio_segment_scores", "visual_segment_scores"):
        t = getattr(out, name)
        assert (t is not None) == sync and (t is None or t.shape == (B, 3, C)), name  # segments 0, 1, 2
    if variant == "wsddn":
        assert 0 <= out.scores.min() and out.scores.max() <= 1


@pytest.mark.parametrize("variant", ["async", "sync", "onestream", "wsddn"])
def test_gradients_reach_both_branches(variant: str, gen: torch.Generator):
    net = _net(variant)
    net(_input(gen)).scores.sum().backward()
    first_audio = net.audio.vggish.features[0].weight.grad
    first_visual = net.visual.backbone.trunk[0][0].weight.grad
    assert first_audio is not None and first_audio.abs().sum() > 0
    assert first_visual is not None and first_visual.abs().sum() > 0


def test_sync_segment_scores_add_up(gen: torch.Generator):
    out = _net("sync")(_input(gen))
    assert torch.allclose(out.audio_segment_scores + out.visual_segment_scores, out.segment_scores, atol=1e-6)
    # per segment, the audio share is the sum of the audio proposals' E of that segment
    seg = [0, 0, 1, 1, 2]
    for s in range(3):
        ref = sum(out.audio_E[:, p] for p in range(P) if seg[p] == s)
        assert torch.allclose(out.audio_segment_scores[:, s], ref, atol=1e-6)


def test_audio_only_input_gives_normalised_audio_scores(gen: torch.Generator):
    net = _net("async").eval()
    x = _input(gen)
    with torch.no_grad():
        both = net(x)
        alone = net(x._replace(images=None, boxes=None, frame_segment=None))
    s = alone.audio_scores
    norm = s.pow(2).sum(dim=1, keepdim=True).sqrt()
    # ℓ2-normalised, times sqrt(C) so that the hinge margin is reachable (ModelConfig.fused_scale)
    assert torch.allclose(alone.scores, s / norm * s.shape[1] ** 0.5, atol=1e-6)
    assert torch.allclose(alone.audio_scores, both.audio_scores, atol=1e-5)
    assert alone.visual_scores is None and alone.visual_E is None


@pytest.mark.parametrize("scale", [1.0, 7.75])
def test_score_scale_multiplies_the_normalised_scores(gen: torch.Generator, scale: float):
    x = _input(gen)
    with torch.no_grad():
        default = _net("async").eval()(x)
        scaled = _net("async", score_scale=scale).eval()(x)
    unit = [s / s.pow(2).sum(dim=1, keepdim=True).sqrt() for s in (default.audio_scores, default.visual_scores)]
    assert torch.allclose(scaled.scores, (unit[0] + unit[1]) * scale, atol=1e-5)
    assert torch.allclose(default.scores, (unit[0] + unit[1]) * default.scores.shape[1] ** 0.5, atol=1e-5)


def test_single_modality_meets_the_margin_at_sqrt_c_only_with_all_scores_at_one():
    """Why the small preset scales by more than sqrt(C): a unit vector times sqrt(C) has
    sum of squares C, so every |score| >= 1 forces every |score| == 1 exactly."""
    C = 15
    y = torch.tensor([1.0] + [0.0] * (C - 1))[None]
    peaked = torch.tensor([2.0] + [-1.0] * (C - 1))[None]  # confident, but not exactly +-1
    for_scale = lambda k: hinge_loss(l2_normalise(peaked) * k, y)  # noqa: E731
    assert for_scale(C ** 0.5) > 0.01  # the negatives sit at -sqrt(15/18) > -1
    assert for_scale(7.75) == 0.0


def test_missing_needed_modality_raises(gen: torch.Generator):
    with pytest.raises(ConfigError, match="'visual' variant needs images"):
        _net("visual")(_input(gen, visual=False))
    with pytest.raises(ConfigError, match="needs audio and/or images"):
        _net("async")(ModelInput())


def test_bad_input_shapes_raise(gen: torch.Generator):
    x = _input(gen)
    with pytest.raises(UsageError, match=r"\(B, P, 96, 64\)"):
        _net("audio")(x._replace(audio=torch.zeros(B, P, 64, 96)))
    with pytest.raises(UsageError, match="boxes must be"):
        _net("visual")(x._replace(boxes=None))
    with pytest.raises(UsageError, match="frame_segment"):
        _net("sync")(x._replace(frame_segment=None))


def test_padding_does_not_change_a_bag(gen: torch.Generator):
    """A bag padded to a longer batch (masks) scores as it does alone (eval mode)."""
    net = _net("sync").eval()
    x = _input(gen)
    alone = net(ModelInput(audio=x.audio[:1, :3], audio_segment=x.audio_segment[:1, :3], images=x.images[:1, :2],
                           boxes=x.boxes[:1, :2], frame_segment=x.frame_segment[:1, :2]))
    audio_mask = torch.tensor([[True, True, True, False, False]] * B)
    frame_mask = torch.tensor([[True, True, False]] * B)
    padded = net(x._replace(audio_mask=audio_mask, frame_mask=frame_mask))
    assert torch.allclose(padded.scores[0], alone.scores[0], atol=1e-5)
    assert torch.allclose(padded.visual_E[0, :2], alone.visual_E[0], atol=1e-5)
    assert padded.audio_E[0, 3:].abs().sum() == 0 and padded.visual_E[0, 2].abs().sum() == 0


def _piece(x: ModelInput, audio: slice, frames: slice) -> ModelInput:
    """The proposals ``audio`` and frames ``frames`` of every bag of ``x``."""
    return ModelInput(audio=x.audio[:, audio], audio_segment=x.audio_segment[:, audio],
                      images=x.images[:, frames], boxes=x.boxes[:, frames],
                      frame_segment=x.frame_segment[:, frames])


@pytest.mark.parametrize("variant", VARIANTS)
def test_features_of_pieces_score_like_the_whole_bag(variant: str, gen: torch.Generator):
    """Long files are embedded piece by piece: joined features give the whole-bag forward (eval)."""
    net = _net(variant).eval()
    x = _input(gen)
    with torch.no_grad():
        whole = net(x)
        # three pieces along the proposals; the middle one has no frame, the last no audio
        pieces = [_piece(x, slice(0, 2), slice(0, 1)), _piece(x, slice(2, 5), slice(1, 1)),
                  _piece(x, slice(5, 5), slice(1, 3))]
        pieces[1] = pieces[1]._replace(images=None, boxes=None, frame_segment=None)
        pieces[2] = pieces[2]._replace(audio=None, audio_segment=None)
        out = net.forward_head(cat_features([net.forward_features(p) for p in pieces]))
    for name, t in whole._asdict().items():
        got = getattr(out, name)
        assert (t is None) == (got is None), name
        if t is not None:
            assert torch.allclose(got, t, atol=1e-5), name


def test_forward_head_checks_what_a_variant_needs(gen: torch.Generator):
    net = _net("sync").eval()
    f = net.forward_features(_input(gen))
    with pytest.raises(UsageError, match="sync variant needs frame_segment"):
        net.forward_head(f._replace(frame_segment=None))
    with pytest.raises(ConfigError, match="needs audio and/or images"):
        net.forward_head(ProposalFeatures())
    # a bag of one modality only: the other stays None
    only = cat_features([f._replace(visual=None, frame_mask=None, frame_segment=None)])
    assert only.visual is None and only.audio.shape == (B, P, 16)


@pytest.mark.parametrize("variant", ["async", "wsddn"])
def test_score_audio_patches_matches_forward(variant: str, gen: torch.Generator):
    net = _net(variant).eval()
    x = _input(gen, visual=False)
    with torch.no_grad():
        out = net(x)
        A = net.score_audio_patches(x.audio[1])
    assert torch.allclose(A, out.audio_A[1], atol=1e-5)


def _torchvggish_forward(net: VGGish, x: torch.Tensor) -> torch.Tensor:
    """The forward of harritaylor/torchvggish ``VGG.forward``, transposes and all."""
    x = net.features(x[:, None])
    x = torch.transpose(x, 1, 3)
    x = torch.transpose(x, 1, 2)
    x = x.contiguous().view(x.size(0), -1)
    return net.embeddings(x)


def test_vggish_flatten_order_is_torchvggish(gen: torch.Generator):
    net = VGGish(ModelConfig(**TINY)).eval()
    x = torch.randn(3, 96, 64, generator=gen)
    assert torch.allclose(net(x), _torchvggish_forward(net, x), atol=1e-6)
    assert net.forward_features(x).shape == (3, 64, 6, 4)  # 512 * 0.125 channels, 96/16 x 64/16


def test_vggish_width_one_has_torchvggish_keys_and_size():
    with torch.device("meta"):
        net = VGGish(ModelConfig(num_classes=2))
    expected = {
        "features.0.weight": (64, 1, 3, 3), "features.0.bias": (64,),
        "features.3.weight": (128, 64, 3, 3), "features.3.bias": (128,),
        "features.6.weight": (256, 128, 3, 3), "features.6.bias": (256,),
        "features.8.weight": (256, 256, 3, 3), "features.8.bias": (256,),
        "features.11.weight": (512, 256, 3, 3), "features.11.bias": (512,),
        "features.13.weight": (512, 512, 3, 3), "features.13.bias": (512,),
        "embeddings.0.weight": (4096, 12288), "embeddings.0.bias": (4096,),
        "embeddings.2.weight": (4096, 4096), "embeddings.2.bias": (4096,),
        "embeddings.4.weight": (128, 4096), "embeddings.4.bias": (128,),
    }
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == expected

    def conv(ci: int, co: int) -> int:
        return ci * co * 9 + co

    convs = conv(1, 64) + conv(64, 128) + conv(128, 256) + conv(256, 256) + conv(256, 512) + conv(512, 512)
    fcs = (512 * 4 * 6) * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 128 + 128
    assert convs + fcs == 72_141_184
    assert sum(p.numel() for p in net.parameters()) == 72_141_184


def test_small_cnn_has_stride_8_and_resnet_stride_16():
    small = VisualBackbone(ModelConfig(**TINY))
    assert small.forward_features(torch.zeros(1, 3, 64, 64)).shape == (1, 16, 8, 8)
    assert small.spatial_scale == 1 / 8
    res = VisualBackbone(ModelConfig(**{**TINY, "visual_backbone": "resnet18"}))
    assert res.forward_features(torch.zeros(1, 3, 64, 64)).shape == (1, 256, 4, 4)
    assert res.spatial_scale == 1 / 16


def test_resnet18_loads_torchvision_state_dict():
    from torchvision.models import resnet18

    torch.manual_seed(1)
    sd = resnet18(weights=None).state_dict()
    net = AVSceneNet(ModelConfig(**{**TINY, "visual_backbone": "resnet18", "variant": "visual"}))
    net.visual.backbone.load_torchvision_state_dict(sd)
    own = net.state_dict()
    assert torch.equal(own["visual.backbone.trunk.layer1.0.conv1.weight"], sd["layer1.0.conv1.weight"])
    assert torch.equal(own["visual.backbone.trunk.bn1.running_var"], sd["bn1.running_var"])
    assert not any(k.startswith("visual.backbone.trunk.layer4") for k in own)

    broken = {k: v for k, v in sd.items() if k != "layer2.0.downsample.0.weight"}
    with pytest.raises(CheckpointError, match=r"missing \['layer2.0.downsample.0.weight'\]"):
        net.visual.backbone.load_torchvision_state_dict(broken)
    with pytest.raises(ConfigError, match="visual_backbone='resnet18'"):
        VisualBackbone(ModelConfig(**TINY)).load_torchvision_state_dict(sd)


def test_config_round_trip_through_json():
    cfg = ModelConfig(**{**TINY, "variant": "sync", "audio_norm": True, "lse_r": 2})
    back = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.visual_fc == (32, 32) and isinstance(back.lse_r, float)
    assert cfg.to_dict()["audio_fc"] == [32]


def test_config_unknown_key_warns_missing_and_bad_values_raise():
    with pytest.warns(UserWarning, match="colour"):
        ModelConfig.from_dict({"num_classes": 2, "colour": "red"})
    with pytest.raises(ConfigError, match="'num_classes'"):
        ModelConfig.from_dict({"variant": "async"})
    with pytest.raises(ConfigError, match="variant: 'stereo'"):
        ModelConfig(num_classes=2, variant="stereo")
    with pytest.raises(ConfigError, match="embed_dim"):
        ModelConfig.from_dict({"num_classes": 2, "embed_dim": "128"})
    with pytest.raises(ConfigError, match="visual_fc"):
        ModelConfig(num_classes=2, visual_fc=(512, 0))
    with pytest.raises(ConfigError, match="dropout"):
        ModelConfig(num_classes=2, dropout=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ModelConfig.from_dict(ModelConfig(num_classes=2).to_dict())  # no warning on a clean dict


def test_config_properties():
    props = {v: (c.uses_audio, c.uses_visual, c.loss, c.decision_threshold)
             for v in VARIANTS for c in [ModelConfig(num_classes=2, variant=v)]}
    assert props["audio"] == (True, False, "hinge", 0.0)
    assert props["visual"] == (False, True, "hinge", 0.0)
    assert props["wsddn"] == (True, True, "bce", 0.5)
    assert props["async"] == props["sync"] == props["onestream"] == (True, True, "hinge", 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plain_torch_roi_align_matches_torchvision(seed: int) -> None:
    """avscene.nn.roi.roi_align == torchvision.ops.roi_align(aligned=True), values and gradients,
    including boxes reaching outside the map (the zero / border-clamp rules) and degenerate boxes."""
    from torchvision.ops import roi_align as tv_roi_align

    from avscene.nn.roi import roi_align

    g = torch.Generator().manual_seed(seed)
    N, C, H, W, K = 3, 5, 11, 14, 40
    fmap = torch.randn(N, C, H, W, generator=g, dtype=torch.float64, requires_grad=True)
    corners = torch.rand(K, 4, generator=g, dtype=torch.float64) * torch.tensor([W * 8 + 40.0, H * 8 + 40.0] * 2) - 20
    x0, x1 = corners[:, 0].minimum(corners[:, 2]), corners[:, 0].maximum(corners[:, 2])
    y0, y1 = corners[:, 1].minimum(corners[:, 3]), corners[:, 1].maximum(corners[:, 3])
    x1[:3] = x0[:3]  # zero-width boxes
    rois = torch.stack([torch.randint(0, N, (K,), generator=g).double(), x0, y0, x1, y1], dim=1)
    ref = tv_roi_align(fmap, rois, output_size=6, spatial_scale=1 / 8, sampling_ratio=2, aligned=True)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), fmap)
    got = roi_align(fmap, rois, output_size=6, spatial_scale=1 / 8, sampling_ratio=2)
    (g_got,) = torch.autograd.grad(got.square().sum(), fmap)
    assert got.shape == (K, C, 6, 6)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("field,value", [("embed_dim", 10_000_000), ("num_classes", 2_000_000),
                                         ("audio_fc", [4096, 10**9]), ("visual_channels", [32] * 100),
                                         ("roi_size", 4096), ("audio_width", float("nan"))])
def test_oversized_config_is_refused_before_anything_is_built(tmp_path, monkeypatch, field, value):
    """A config.json asking for a huge network fails with a ConfigError naming the field, before the
    weights are read or a tensor allocated (it used to end in "can't allocate 40 GB")."""
    import avscene.checkpoint.load as load
    from avscene.nn.model import MAX_SIZE
    from avscene.testing.models import tiny_checkpoint

    assert max(ModelConfig(num_classes=16).audio_fc) <= MAX_SIZE["audio_fc"]  # the defaults pass
    with pytest.raises(ConfigError, match=field):
        ModelConfig.from_dict({"num_classes": 2, field: value})
    folder = tiny_checkpoint(tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"][field] = value
    if field == "num_classes":
        cfg["labels"] = [f"c{i}" for i in range(value)]
    (folder / "config.json").write_text(json.dumps(cfg))

    def no_build(*a, **k):
        raise AssertionError("the network or its weights were touched")

    monkeypatch.setattr(load, "load_state_dict", no_build)
    monkeypatch.setattr("avscene.nn.model.AVSceneNet.__init__", no_build)
    # NaN is not JSON: config.json's reader refuses the file before the field is even looked at
    expected = "NaN is not a JSON value" if value != value else f"invalid config: {field}.*(at most|layers)"
    with pytest.raises(CheckpointError, match=expected):
        load.load_pretrained(str(folder))


def test_mask_net_config_is_bounded():
    from avscene.nn.masknet import MaskNetConfig

    assert MaskNetConfig(num_classes=16).hidden == 256
    for field, value in (("hidden", 10**6), ("num_classes", 2_000_000), ("blocks", 10**4)):
        with pytest.raises(ConfigError, match=f"{field} is {value}, at most"):
            MaskNetConfig(**{"num_classes": 16, field: value})
