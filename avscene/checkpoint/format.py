"""The checkpoint folder format (Hugging Face Hub layout): its files and ``config.json``.

* ``config.json``: ``{"format_version": 1, "model": ModelConfig.to_dict(), "labels": [...],
  "preprocess": PreprocessConfig.to_dict()}`` + optional ``"training"`` and ``"separation"``
  (:mod:`avscene.checkpoint.parts`). Nothing is pickled. :func:`checkpoint_config` makes its
  content, :func:`write_config` is the one place it is written (atomically, standard JSON),
  :func:`read_config` reads and validates it.
* ``model.safetensors``: the state dict, read with safetensors only (never ``torch.load``) and
  checked strictly (:func:`check_state_dict`: names, shapes, dtypes, finite values).
* ``README.md``: the model card (:mod:`avscene.checkpoint.card`), written only if missing.
* the separation parts' optional files (:data:`DICTIONARIES_NAME`, :data:`MASK_NET_NAME`).

Nothing here knows the network; torch and safetensors are imported on use.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from avscene.config import PreprocessConfig
from avscene.errors import CheckpointError, ConfigError, OutputError
from avscene.results import json_text

if TYPE_CHECKING:
    from torch import Tensor

    from avscene.nn.model import ModelConfig

FORMAT_VERSION = 1  # bump when config.json changes incompatibly; readers accept <= this
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
DICTIONARIES_NAME = "dictionaries.safetensors"  # supervised-NMF dictionaries (separate --method dictionary)
MASK_NET_NAME = "separator.safetensors"  # the mask network's weights (separate --method mask)
SEPARATION_FILES = (DICTIONARIES_NAME, MASK_NET_NAME)  # every optional file of separation
# all a download fetches from a repo (and an upload publishes): the format's files and separation's optional ones
HUB_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, *SEPARATION_FILES)
CONFIG_KEYS = ("format_version", "model", "labels", "preprocess", "training", "separation")
REQUIRED_CONFIG_KEYS = ("format_version", "model", "labels", "preprocess")
_LIST_SHOWN = 5  # names shown per category in a mismatch message


def default_file_mode(path: Path) -> None:
    """Give ``path`` the permissions a plain ``open()`` would (0666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def save_folder(folder: str | Path, *, config: dict, state_dict: dict[str, Tensor], card: str | None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and (if missing) ``README.md`` into ``folder``.

    Files are written into a temporary folder next to ``folder``, then renamed into
    place (the whole folder if new, else file by file), so a crash never leaves a
    half-written file. Other files of an existing ``folder``, and its model card, are kept.

    Args:
        folder: destination; created if missing.
        config: the ``config.json`` content (JSON-serialisable).
        state_dict: tensor name -> tensor; saved contiguous, on CPU.
        card: model card text, or None for no card.

    Raises:
        OutputError: ``folder`` exists and is not a folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} exists and is not a folder; choose another destination")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state_dict.items()}
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()  # not tempfile.mkdtemp: its 0700 mode would stick to the renamed folder
    try:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        default_file_mode(tmp / WEIGHTS_NAME)  # safetensors creates it 0600
        write_config(tmp, config)
        if card is not None and not (folder / CARD_NAME).exists():
            (tmp / CARD_NAME).write_text(card, encoding="utf-8")
        if not folder.exists():
            tmp.rename(folder)
            return folder
        for name in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME):
            if (tmp / name).exists():
                os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def write_config(folder: str | Path, config: dict) -> Path:
    """Write ``config`` as ``folder/config.json``, atomically (replacing it): the one writer of the file.

    Standard JSON (:func:`avscene.results.json_text`: a non-finite float as ``null``), indented, one
    final newline. Returns the file's path.
    """
    from avscene.io.writers import atomic_write_text

    return atomic_write_text(Path(folder) / CONFIG_NAME, json_text(config, indent=2) + "\n", force=True)


def read_config(folder: str | Path) -> dict:
    """Read and validate ``config.json``: unknown top-level keys warn, everything else wrong raises.

    Raises:
        CheckpointError: missing file or key, invalid JSON, a newer ``format_version``.
    """
    path = Path(folder) / CONFIG_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path} is missing; a checkpoint folder needs {CONFIG_NAME} and {WEIGHTS_NAME}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}; re-download or re-save the checkpoint") from e
    except _NonStandardJSON as e:
        raise CheckpointError(f"{path} is not valid JSON ({e} is not a JSON value); fix the file or "
                              "re-download the checkpoint") from e
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
            "fix the file or re-download the checkpoint"
        ) from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, found {type(data).__name__}")
    missing = [k for k in REQUIRED_CONFIG_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{path} lacks required key(s) {missing}; save checkpoints with save_pretrained")
    version = data["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: format_version must be a positive integer, found {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version} but this avscene reads up to {FORMAT_VERSION}: "
            "upgrade avscene (pip install -U avscene)"
        )
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        warnings.warn(f"{path}: ignoring unknown config keys {unknown}", stacklevel=2)
    _check_types(data, path)
    return data


class _NonStandardJSON(ValueError):
    """``NaN`` / ``Infinity`` in a JSON file: Python's extension, not JSON."""



def _refuse_constant(word: str) -> None:
    raise _NonStandardJSON(word)


def _check_types(data: dict, path: Path) -> None:
    if not isinstance(data["model"], dict) or not isinstance(data["preprocess"], dict):
        raise CheckpointError(f"{path}: 'model' and 'preprocess' must be JSON objects")
    labels = data["labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise CheckpointError(f"{path}: 'labels' must be a list of class names (strings)")
    if data.get("training") is not None and not isinstance(data["training"], dict):
        raise CheckpointError(f"{path}: 'training' must be a JSON object or absent")


def load_state_dict(folder: str | Path) -> dict[str, Tensor]:
    """Read ``model.safetensors`` onto the CPU with safetensors (never pickle).

    Raises:
        CheckpointError: the file is missing, truncated or corrupted.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; a checkpoint folder needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"{path} is truncated or corrupted ({e}); delete it and download or save the checkpoint again"
        ) from e


def check_folder(folder: Path, model_id: str) -> None:
    """Refuse a folder without the format's two required files."""
    missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{model_id} ({folder}) is not an avscene checkpoint: missing {', '.join(missing)}; "
            "save one with avscene.checkpoint.load.save_pretrained"
        )


def checkpoint_config(
    config: ModelConfig, *, labels: Sequence[str], preprocess: PreprocessConfig, training: dict | None = None
) -> dict:
    """The ``config.json`` content: format version, model config, labels, preprocessing, training.

    Raises:
        ConfigError: the labels do not name the model's classes one-to-one.
    """
    labels = list(labels)
    if len(labels) != config.num_classes:
        raise ConfigError(f"{len(labels)} labels given for a model with num_classes={config.num_classes}")
    if len(set(labels)) != len(labels) or not all(isinstance(x, str) and x for x in labels):
        raise ConfigError(f"labels must be distinct non-empty strings, got {labels}")
    out = {"format_version": FORMAT_VERSION, "model": config.to_dict(), "labels": labels,
           "preprocess": preprocess.to_dict()}
    return out if training is None else {**out, "training": training}


def check_state_dict(expected: dict[str, Tensor], found: dict[str, Tensor], *, name: str) -> None:
    """Raise if ``found`` (the checkpoint) differs from ``expected`` (the model) in names, shapes or
    dtypes, or holds a NaN or an infinity.

    A dtype other than the network's would be cast silently by ``load_state_dict`` (int64
    weights change the predictions), and one non-finite weight makes every score NaN.

    Raises:
        CheckpointError: listing missing and unexpected tensors, shape and dtype mismatches and
            tensors with non-finite values.
    """
    import torch

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    common = sorted(set(expected) & set(found))
    mismatched = [
        f"{k}: checkpoint {tuple(found[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in common if tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    dtypes = [f"{k}: checkpoint {str(found[k].dtype).removeprefix('torch.')} vs model "
              f"{str(expected[k].dtype).removeprefix('torch.')}"
              for k in common if found[k].dtype != expected[k].dtype]
    non_finite = [k for k in common if found[k].is_floating_point() and not bool(torch.isfinite(found[k]).all())]
    problems = [_listing(what, items) for what, items in
                (("missing tensors", missing), ("unexpected tensors", unexpected), ("shape mismatch", mismatched),
                 ("dtype mismatch", dtypes), ("NaN or infinite values", non_finite))
                if items]
    if problems:
        raise CheckpointError(
            f"checkpoint {name} does not match its config: {'; '.join(problems)}; "
            f"fix {CONFIG_NAME} or save the checkpoint again with save_pretrained"
        )


def _listing(what: str, items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_SHOWN])
    more = f", … ({len(items) - _LIST_SHOWN} more)" if len(items) > _LIST_SHOWN else ""
    return f"{what} ({len(items)}) [{shown}{more}]"
