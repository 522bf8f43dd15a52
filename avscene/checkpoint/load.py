"""A model from its checkpoint and back: :func:`save_pretrained` and the one loader,
:func:`load_pretrained`, which builds a complete :class:`LoadedModel` (the classifier, checked
strictly against its ``config.json``, and the separation parts it declares).

torch and the network are imported on use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from avscene.checkpoint.format import (
    CONFIG_NAME,
    check_state_dict,
    checkpoint_config,
    load_state_dict,
    read_config,
    save_folder,
)
from avscene.checkpoint.parts import SeparationParts, load_parts
from avscene.checkpoint.resolve import resolve
from avscene.config import PreprocessConfig
from avscene.errors import CheckpointError, ConfigError, UsageError

if TYPE_CHECKING:
    from avscene.nn.model import AVSceneNet, ModelConfig


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference, with everything that travelled with its weights."""

    model: AVSceneNet  # eval mode, on the requested device
    config: ModelConfig
    labels: tuple[str, ...]  # class names, index i = output i
    preprocess: PreprocessConfig
    model_id: str  # repo id or local path, as given
    revision: str | None  # requested revision, None for the default
    folder: Path  # folder the files were read from
    # the mask network, dictionaries and default method of separation, read with the classifier
    # (on its device): nothing reads them again per call
    separation: SeparationParts
    commit: str | None = None  # Hub commit sha the weights came from; None for a local folder


def save_pretrained(
    model: AVSceneNet,
    folder: str | Path,
    *,
    labels: Sequence[str],
    preprocess: PreprocessConfig,
    training: dict | None = None,
    card: str | None = None,
) -> Path:
    """Save a model as a Hub-ready folder (config.json + model.safetensors + README.md).

    Args:
        model: the network; its ``cfg`` becomes ``config.json["model"]``.
        folder: destination (created; existing weights and config are replaced).
        labels: class names, one per output.
        preprocess: how inputs were made; it travels with the weights.
        training: optional JSON record of the training run (command, data, metrics).
        card: model card text (default: :func:`card_text`); an existing README.md is kept.
    """
    cfg = model.cfg
    config = checkpoint_config(cfg, labels=labels, preprocess=preprocess, training=training)
    if card is None:
        from avscene.checkpoint.card import card_text

        card = card_text(cfg, labels=labels, preprocess=preprocess, training=training, title=Path(folder).name)
    return save_folder(folder, config=config, state_dict=model.state_dict(), card=card)


def load_pretrained(
    model_id_or_path: str,
    *,
    revision: str | None = None,
    offline: bool = False,
    device: str = "cpu",
    cache_dir: str | None = None,
    hub_timeout: float | None = None,
) -> LoadedModel:
    """Load a checkpoint from a folder or a Hub repo, strictly, complete: the classifier and the
    separation parts its ``config.json`` declares (:func:`avscene.checkpoint.parts.load_parts`).

    The tensors' names and shapes are checked against the network built from
    ``config.json`` before any weight is copied.

    Args:
        model_id_or_path, revision, offline, cache_dir, hub_timeout: as for :func:`resolve`.
        device: torch device for the model, e.g. ``"cpu"`` or ``"cuda"``.

    Raises:
        CheckpointError: missing, corrupted, or inconsistent checkpoint.
        UsageError: unusable device.
    """
    from avscene.nn.model import AVSceneNet, ModelConfig

    resolved = resolve(model_id_or_path, revision=revision, offline=offline, cache_dir=cache_dir,
                       hub_timeout=hub_timeout)
    folder = resolved.folder
    raw = read_config(folder)
    where = f"{folder / CONFIG_NAME}"
    try:
        cfg = ModelConfig.from_dict(raw["model"])
        preprocess = PreprocessConfig.from_dict(raw["preprocess"])
    except (ConfigError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: invalid config: {e}; fix the file or re-save the checkpoint") from e
    labels = tuple(raw["labels"])
    if len(labels) != cfg.num_classes or len(set(labels)) != len(labels):
        raise CheckpointError(
            f"{where} lists {len(labels)} labels ({len(set(labels))} distinct) but model.num_classes is "
            f"{cfg.num_classes}; the labels must name the model's outputs one-to-one"
        )
    state = load_state_dict(folder)
    model = AVSceneNet(cfg)
    check_state_dict(model.state_dict(), state, name=model_id_or_path)
    model.load_state_dict(state, strict=True)
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError, ValueError) as e:
        raise UsageError(f"cannot put the model on device {device!r} ({e}); use --device cpu") from e
    model.eval()
    parts = load_parts(folder, raw, labels, device=str(next(model.parameters()).device))
    return LoadedModel(
        model=model, config=cfg, labels=labels, preprocess=preprocess,
        model_id=model_id_or_path, revision=revision, folder=folder, separation=parts, commit=resolved.commit,
    )
