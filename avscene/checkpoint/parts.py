"""What a checkpoint carries for separation besides the classifier: the part table, reading the
parts strictly and adding them to a folder.

Two optional parts, each a safetensors file beside ``model.safetensors`` (the names are
:mod:`avscene.checkpoint.format`'s) and an entry under ``"separation"`` in ``config.json``: the mask
network (the *separator*, ``avscene train-separator``) and the supervised-NMF dictionaries
(``avscene train-dictionaries``); and ``separation.default_method``, the method ``separate --method
auto`` uses. :data:`METHOD_PARTS` says which parts each separation method needs (the registry of
methods, :mod:`avscene.separation.registry`, is built on it), so the default method is checked
here, on load, without importing the methods.

:func:`load_parts` reads what ``config.json`` declares, strictly (a declared file that is missing,
unreadable or mis-shaped is a CheckpointError); :func:`save_dictionaries`, :func:`save_mask_net`
and :func:`set_default_method` add them to a folder, each file written atomically, the weights
before ``config.json`` (so a config never names a file that is not there). Of separation this
imports only its maths (:mod:`avscene.separation.dictionary`, on use).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from avscene.checkpoint.format import (
    CONFIG_NAME,
    DICTIONARIES_NAME,
    MASK_NET_NAME,
    check_state_dict,
    default_file_mode,
    read_config,
    write_config,
)
from avscene.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from torch import Tensor

    from avscene.nn.masknet import MaskNet
    from avscene.separation.dictionary import Dictionaries


@dataclass(frozen=True)
class Part:
    """One optional part of a checkpoint that some separation methods need."""

    key: str  # its entry under "separation" in config.json
    file: str  # its weights file
    what: str  # how messages name it
    command: str  # the avscene command that adds it to a checkpoint


PARTS = {
    "mask": Part("mask", MASK_NET_NAME, "separator network", "train-separator"),
    "dictionary": Part("dictionary", DICTIONARIES_NAME, "dictionaries", "train-dictionaries"),
}

# The parts each separation method needs, in the order ``--method auto`` prefers the methods;
# avscene.separation.registry.METHODS is built on this table (one entry per method).
METHOD_PARTS: dict[str, tuple[str, ...]] = {
    "hybrid": ("mask", "dictionary"),
    "mask": ("mask",),
    "dictionary": ("dictionary",),
    "ncp": (),
}


@dataclass(frozen=True)
class SeparationParts:
    """The separation parts a checkpoint carries (:func:`load_parts`)."""

    dictionaries: Dictionaries | None = None  # supervised-NMF dictionaries
    mask_net: MaskNet | None = None  # the mask network (eval mode, on the model's device)
    default_method: str | None = None  # separation.default_method: the measured best, if recorded

    def has(self, key: str) -> bool:
        """Whether the part ``key`` (a key of :data:`PARTS`) is there."""
        return (self.mask_net if key == "mask" else self.dictionaries) is not None


_DECLARED = {"mask": "a separator", "dictionary": "dictionaries"}  # a part, as a missing file's message names it
DICTIONARY_META = ("n_fft", "hop", "class_atoms", "background_atoms")  # separation.dictionary's keys


def load_parts(folder: str | Path, config: dict, labels: Sequence[str], *, device: str = "cpu") -> SeparationParts:
    """The separation parts ``config.json`` (``config``) declares, read from ``folder``.

    Raises:
        CheckpointError: a declared part is missing, unreadable or does not match the labels,
            or the default method names a method whose parts are not there.
    """
    folder = Path(folder)
    return SeparationParts(dictionaries=load_dictionaries(folder, config, labels),
                           mask_net=load_mask_net(folder, config, labels, device=device),
                           default_method=default_method(config, str(folder / CONFIG_NAME)))


def default_method(config: dict, where: str) -> str | None:
    """``separation.default_method`` of ``config.json``, checked against the registry and what the
    checkpoint declares."""
    sep = config.get("separation") or {}
    name = sep.get("default_method")
    if name is None:
        return None
    known = list(METHOD_PARTS)
    if name not in known:
        raise CheckpointError(f"{where}: separation.default_method must be one of {known}, got {name!r}")
    missing = [k for k in METHOD_PARTS[name] if k not in sep]
    if missing:
        raise CheckpointError(f"{where}: separation.default_method is {name!r} but the checkpoint has no "
                              f"separation.{missing[0]}")
    return name


def set_default_method(folder: str | Path, method: str | None) -> None:
    """Record in ``config.json`` which method ``separate --method auto`` uses (None: remove the
    record), checked as loading checks it (``evaluate-separation --pairs --holdout --set-default``).

    Raises:
        CheckpointError: an unknown method, or one whose parts the checkpoint does not declare.
    """
    folder = Path(folder)
    config = read_config(folder)
    sep = dict(config.get("separation") or {})
    if method is None:
        sep.pop("default_method", None)
    else:
        sep["default_method"] = method
    config["separation"] = sep
    default_method(config, str(folder / CONFIG_NAME))
    write_config(folder, config)


def _tensors(path: Path, key: str) -> dict[str, Tensor]:
    """The tensors of the part ``key`` that ``config.json`` declares, from ``path``.

    Raises:
        CheckpointError: the file is missing or unreadable.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    part = PARTS[key]
    if not path.is_file():
        raise CheckpointError(f"{path} is missing but {CONFIG_NAME} declares {_DECLARED[key]}; re-download "
                              f"the checkpoint or run `avscene {part.command}` again")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {path} ({e}); re-download the checkpoint or run "
                              f"`avscene {part.command}` again") from e


def load_dictionaries(folder: Path, config: dict, labels: Sequence[str]) -> Dictionaries | None:
    """The dictionaries ``config.json`` declares under ``separation.dictionary`` (None if none),
    read strictly from ``dictionaries.safetensors``.

    Raises:
        CheckpointError: declared but missing, unreadable, or not matching the labels.
    """
    meta = (config.get("separation") or {}).get("dictionary")
    if meta is None:
        return None
    from avscene.separation.dictionary import Dictionaries

    path = Path(folder) / DICTIONARIES_NAME
    if not isinstance(meta, dict) or not set(DICTIONARY_META) <= set(meta):
        raise CheckpointError(f"{Path(folder) / CONFIG_NAME}: separation.dictionary needs "
                              f"{', '.join(DICTIONARY_META[:-1])} and {DICTIONARY_META[-1]}")
    return Dictionaries.from_tensors(_tensors(path, "dictionary"), meta, labels, source=str(path))


def load_mask_net(folder: Path, config: dict, labels: Sequence[str], *, device: str = "cpu") -> MaskNet | None:
    """The mask network ``config.json`` declares under ``separation.mask`` (None if none), loaded
    strictly from ``separator.safetensors`` (every tensor's name, shape and dtype checked first, and
    every weight finite: ``format.check_state_dict``).

    Raises:
        CheckpointError: declared but missing, unreadable, or not matching its config or the labels.
    """
    meta = (config.get("separation") or {}).get("mask")
    if meta is None:
        return None
    from avscene.nn.masknet import MaskNet, MaskNetConfig

    path = Path(folder) / MASK_NET_NAME
    where = f"{Path(folder) / CONFIG_NAME}"
    try:
        cfg = MaskNetConfig.from_dict((meta or {}).get("network") or {})
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{where}: invalid separation.mask.network: {e}") from e
    if cfg.num_classes != len(labels):
        raise CheckpointError(f"{where}: the separator has {cfg.num_classes} classes, the model {len(labels)} labels")
    state = _tensors(path, "mask")
    net = MaskNet(cfg)
    check_state_dict(net.state_dict(), state, name=str(path))
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


def _add_to_checkpoint(folder: Path, name: str, tensors: dict[str, Tensor], key: str, entry: object) -> Path:
    """Write ``folder/name`` (safetensors) and ``separation.<key> = entry`` in ``config.json``, each
    atomically, the weights first (so a config never names a file that is not there)."""
    from safetensors.torch import save_file

    from avscene.io.writers import atomic_write

    with atomic_write(folder / name, force=True) as tmp:
        save_file(tensors, str(tmp))
        default_file_mode(tmp)  # safetensors creates it 0600
    config = read_config(folder)
    config["separation"] = {**(config.get("separation") or {}), key: entry}
    write_config(folder, config)
    return folder / name


def save_dictionaries(folder: str | Path, dicts: Dictionaries) -> Path:
    """Add ``dicts`` to the checkpoint in ``folder``: ``dictionaries.safetensors`` and the
    ``separation.dictionary`` entry of ``config.json``."""
    folder = Path(folder)
    unknown = sorted(set(dicts.classes) - set(read_config(folder)["labels"]))
    if unknown:
        raise CheckpointError(f"dictionaries for {unknown}, which are not labels of {folder}")
    return _add_to_checkpoint(folder, DICTIONARIES_NAME, dicts.tensors(), "dictionary", dicts.meta())


def save_mask_net(folder: str | Path, net: MaskNet, training: dict | None = None) -> Path:
    """Add the mask network to the checkpoint in ``folder``: ``separator.safetensors`` and the
    ``separation.mask`` entry of ``config.json`` (its shape and how it was trained)."""
    folder = Path(folder)
    labels = read_config(folder)["labels"]
    if net.cfg.num_classes != len(labels):
        raise CheckpointError(f"the separator has {net.cfg.num_classes} classes, {folder} has {len(labels)} labels")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    entry = {"network": net.cfg.to_dict(), "training": training or {}}
    return _add_to_checkpoint(folder, MASK_NET_NAME, state, "mask", entry)
