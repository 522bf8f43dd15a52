"""Initialisation from pretrained backbones, freezing, and the resume state of a run.

The resume state lives in ``<output>/last/``: ``model.safetensors``,
``optimizer.safetensors`` (the optimiser's tensors, flattened) and
``state.json`` (epoch, best score, scheduler and optimiser scalars). Nothing is
pickled, so a run folder is as safe to share as a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from avscene.config import PreprocessConfig
from avscene.errors import CheckpointError, ConfigError

# freezable part → parameter-name prefixes inside AVSceneNet
FREEZE_PREFIXES = {
    "audio_backbone": ("audio.vggish.",),
    "visual_backbone": ("visual.backbone.",),
    "audio": ("audio.",),
    "visual": ("visual.",),
}
VGGISH_PREFIX = "audio.vggish."  # where torchvggish's `features.*`/`embeddings.*` keys go


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here is a bad file
        raise CheckpointError(f"{path}: cannot read weights ({e})") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return sd


def initialise(model: torch.nn.Module, *, audio: str | None, visual: str | None) -> None:
    """Copy pretrained backbone weights into ``model`` (strictly: every backbone tensor must match)."""
    if audio:
        sd = read_state_dict(audio)
        # The common PyTorch VGGish port (harritaylor/torchvggish) names its layers
        # features.* and embeddings.*, exactly as avscene's VGGish does; its optional
        # PCA post-processing tensors (pproc.*) are not part of the network.
        sd = {k: v for k, v in sd.items() if not k.startswith(("pproc.", "_pca"))}
        own = {k[len(VGGISH_PREFIX):]: v for k, v in model.state_dict().items() if k.startswith(VGGISH_PREFIX)}
        _check_same(own, sd, audio)
        with torch.no_grad():
            for k, v in sd.items():
                own[k].copy_(v)
    if visual:
        sd = read_state_dict(visual)
        model.visual.backbone.load_torchvision_state_dict(sd)


def _check_same(own: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], source: str) -> None:
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(sd)) if own[k].shape != sd[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{source} does not match the model's VGGish (use audio_width=1, audio_norm=false): "
            f"missing {missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}), "
            f"shape mismatches {shapes[:3]}")


def freeze(model: torch.nn.Module, parts: Iterable[str]) -> None:
    """Stop gradients into the named parts (see ``FREEZE_PREFIXES``)."""
    prefixes = tuple(p for part in parts for p in FREEZE_PREFIXES[part])
    if not prefixes:
        return
    n = 0
    for name, p in model.named_parameters():
        if name.startswith(prefixes):
            p.requires_grad_(False)
            n += 1
    if n == 0:
        raise ConfigError(f"--freeze {list(parts)} matched no parameter of this variant")


def eval_frozen(model: torch.nn.Module, parts: Iterable[str]) -> None:
    """Put the frozen parts in eval mode (call after ``model.train()``): kept fixed means their
    BatchNorm running statistics too, not only their parameters."""
    prefixes = tuple(p for part in parts for p in FREEZE_PREFIXES[part])
    if not prefixes:
        return
    for name, module in model.named_modules():
        if name and (name + ".").startswith(prefixes):
            module.eval()


def save_model(model: torch.nn.Module, out: Path, *, class_names: Sequence[str], pre: PreprocessConfig,
               training: dict) -> None:
    """Write the checkpoint (config.json + model.safetensors + card) into ``out`` atomically."""
    from avscene.checkpoint.load import save_pretrained

    save_pretrained(model, out, labels=list(class_names), preprocess=pre, training=training)


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_resume(folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched, state: dict) -> None:
    """Write the resume state into ``folder`` (replaced atomically as a whole)."""
    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".last-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()  # not tempfile.mkdtemp: its 0700 mode would stick to the renamed folder
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(tmp / "model.safetensors"))
        tensors, meta = _flatten_optimizer(opt)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({**state, "optimizer": meta,
                                                    "scheduler": sched.state_dict()}))
        old = folder.with_name(folder.name + ".old")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_resume(folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched) -> dict:
    """Restore model, optimiser and scheduler from ``folder``; returns the saved state."""
    from safetensors.torch import load_file

    try:
        state = json.loads((folder / "state.json").read_text())
        model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
        tensors = load_file(str(folder / "optimizer.safetensors"))
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot resume from {folder} ({e}); delete it to start over") from e
    meta = state.pop("optimizer")
    opt_state: dict[int, dict] = {}
    for key, v in tensors.items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = v
    for idx, sc in meta["scalars"].items():
        opt_state.setdefault(int(idx), {}).update(sc)
    opt.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    sched.load_state_dict(state.pop("scheduler"))
    return state
