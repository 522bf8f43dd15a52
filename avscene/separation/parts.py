"""What a checkpoint carries for separation besides the classifier, and the files it is in.

Two optional parts, each a safetensors file beside ``model.safetensors`` and an entry under
``"separation"`` in ``config.json``: the mask network (the *separator*, ``avscene
train-separator``) and the supervised-NMF dictionaries (``avscene train-dictionaries``); and
``separation.default_method``, the method ``separate --method auto`` uses. Light on purpose
(no torch): :mod:`avscene.hub` reads the file names from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avscene.nn.masknet import MaskNet
    from avscene.separation.dictionary import Dictionaries

DICTIONARIES_NAME = "dictionaries.safetensors"  # supervised-NMF dictionaries (separate --method dictionary)
MASK_NET_NAME = "separator.safetensors"  # the mask network's weights (separate --method mask)
FILES = (DICTIONARIES_NAME, MASK_NET_NAME)  # every optional file of separation


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


@dataclass(frozen=True)
class SeparationParts:
    """The separation parts a checkpoint carries (read by :mod:`avscene.separation.checkpoint`)."""

    dictionaries: Dictionaries | None = None  # supervised-NMF dictionaries
    mask_net: MaskNet | None = None  # the mask network (eval mode, on the model's device)
    default_method: str | None = None  # separation.default_method: the measured best, if recorded

    def has(self, key: str) -> bool:
        """Whether the part ``key`` (a key of :data:`PARTS`) is there."""
        return (self.mask_net if key == "mask" else self.dictionaries) is not None
