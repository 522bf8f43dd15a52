"""Which model a run uses and where it runs: the bundled default, a local folder or a Hub
repo, and the torch device."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from avscene.errors import AvsceneError, UsageError
from avscene.results import ModelRef

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel

DEFAULT_MODEL_NAME = "avscene-av-small"


def default_model_path() -> Path:
    """The bundled model: ``$AVSCENE_MODEL`` if set, else the copy installed with the package."""
    env = os.environ.get("AVSCENE_MODEL")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    for cand in (here / "bundled" / DEFAULT_MODEL_NAME, here.parent / "models" / DEFAULT_MODEL_NAME):
        if (cand / "config.json").is_file():
            return cand
    raise AvsceneError(
        f"the bundled model {DEFAULT_MODEL_NAME} is not installed; reinstall avscene or pass --model"
    )


def resolve_device(device: str) -> str:
    """``auto`` → cuda, then mps, then cpu; otherwise checks the device exists."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: MPS is not available here; use --device cpu or auto")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise UsageError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def load_model(
    model: str | Path | None = None,
    *,
    revision: str | None = None,
    offline: bool = False,
    device: str = "auto",
    hub_timeout: float | None = None,
) -> LoadedModel:
    """Load a checkpoint (local folder or Hub ``org/name``) with its separation parts; None loads the
    bundled model.

    ``hub_timeout``: seconds a Hub request may wait for the server (None: the default, 10 s).
    """
    from avscene.checkpoint.load import load_pretrained

    target = str(default_model_path()) if model is None else str(model)
    return load_pretrained(target, revision=revision, offline=offline, device=resolve_device(device),
                           hub_timeout=hub_timeout)


def model_ref(loaded: LoadedModel) -> ModelRef:
    return ModelRef(id=loaded.model_id, revision=loaded.revision)


__all__ = ["DEFAULT_MODEL_NAME", "default_model_path", "load_model", "model_ref", "resolve_device"]
