"""The temporal context over audio windows (nn/context.py) and how it joins the network."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from avscene.nn.context import TemporalContext
from avscene.nn.model import AVSceneNet, ModelConfig
from avscene.testing.models import tiny_config, tiny_input


def context_cfg(dilations=(1, 2, 4)) -> ModelConfig:
    return dataclasses.replace(tiny_config(), audio_context=dilations)


def trained_like(module: TemporalContext, seed: int = 0) -> TemporalContext:
    """The module with random (non-zero) output weights, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.out.weight.copy_(torch.randn(module.out.weight.shape, generator=g) * 0.3)
    return module


def test_context_keeps_the_number_and_order_of_windows_and_reaches_only_its_span():
    """A change in window j moves windows within the receptive field (±7 for dilations 1,2,4)
    and no other: the output stays one embedding per window, in time order."""
    torch.manual_seed(0)
    ctx = trained_like(TemporalContext(context_cfg())).eval()
    z = torch.randn(1, 30, 16)
    mask = torch.ones(1, 30, dtype=torch.bool)
    out = ctx(z, mask)
    assert out.shape == z.shape
    z2 = z.clone()
    z2[0, 15] += 5.0
    changed = (ctx(z2, mask) - out).abs().sum(-1)[0] > 1e-6  # (P,)
    assert changed[15 - 7 : 15 + 8].all()
    assert not changed[: 15 - 7].any() and not changed[15 + 8 :].any()


def test_padding_never_reaches_a_real_window():
    torch.manual_seed(1)
    ctx = trained_like(TemporalContext(context_cfg())).eval()
    z = torch.randn(1, 12, 16)
    mask = torch.tensor([[True] * 8 + [False] * 4])
    garbage = z.clone()
    garbage[0, 8:] = 1e3
    torch.testing.assert_close(ctx(z, mask)[0, :8], ctx(garbage, mask)[0, :8])
    assert torch.all(ctx(garbage, mask)[0, 8:] == garbage[0, 8:])  # padded rows untouched (no residual added)


def test_a_new_context_starts_as_the_identity_so_fine_tuning_starts_from_the_same_scores():
    base = AVSceneNet(tiny_config()).eval()
    with_ctx = AVSceneNet(context_cfg()).eval()
    missing, unexpected = with_ctx.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("audio_context.") for k in missing)
    x = tiny_input(patches=10)
    with torch.no_grad():
        torch.testing.assert_close(with_ctx(x).scores, base(x).scores)
        trained_like(with_ctx.audio_context)
        assert not torch.allclose(with_ctx(x).scores, base(x).scores)


def test_empty_context_builds_no_module_and_config_round_trips():
    assert AVSceneNet(tiny_config()).audio_context is None
    cfg = context_cfg((1, 2))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_context_dilations_must_be_positive():
    from avscene.errors import ConfigError

    with pytest.raises(ConfigError, match="audio_context"):
        context_cfg((1, 0))
