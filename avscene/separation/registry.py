"""The separation methods, in one registry read by every caller.

``separate`` (its ``--method`` choices and ``auto``), ``evaluate-separation`` (its rows) and
``bench/run.py`` read :data:`METHODS`: for each method, what it needs from a checkpoint (the parts
of :data:`~avscene.checkpoint.parts.PARTS` that :data:`~avscene.checkpoint.parts.METHOD_PARTS`
lists for it: the checkpoint loader checks ``separation.default_method`` with that table, below
separation), how its chunk strategy is built (:mod:`avscene.separation.methods`), and its name in reports.

Methods, in the order ``auto`` prefers them (the order of their SDR on avbench):

* ``hybrid``: the mean of the mask network's and the dictionaries' masks (needs both);
* ``mask``: the checkpoint's class-conditioned mask network (``avscene train-separator``);
* ``dictionary``: supervised NMF with the checkpoint's dictionaries (``avscene train-dictionaries``);
* ``ncp``: the paper's ranking of NMF components by the audio network (needs nothing more).

``auto`` is the checkpoint's ``separation.default_method`` (set from a measurement), else the
first method it carries all the parts of; ``ncp`` whenever a threshold is asked for (the
threshold is the NCP ranking's option). No torch at import (the CLI builds ``--method`` from here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from avscene.errors import UsageError
from avscene.checkpoint.parts import METHOD_PARTS, PARTS, SeparationParts

if TYPE_CHECKING:
    import numpy as np

    from avscene.checkpoint.load import LoadedModel
    from avscene.proposals.nmf import NMFOptions
    from avscene.separation.methods import ChunkStrategy, ScoredComponents


class MethodName(str, Enum):
    """``--method``: a method of :data:`METHODS`, or ``auto``."""

    AUTO = "auto"
    HYBRID = "hybrid"
    MASK = "mask"
    DICTIONARY = "dictionary"
    NCP = "ncp"


@dataclass(frozen=True)
class StrategyInputs:
    """What a method's strategy is built from."""

    loaded: LoadedModel  # the classifier (its audio network scores the NCPs)
    parts: SeparationParts  # the mask network and dictionaries to use
    class_index: int  # the class to separate
    nmf: NMFOptions  # the NMF of the ncp method
    threshold: float | None = None  # ncp: None for soft weights, else the hard threshold τ
    # ncp: the NMF and scores of a chunk (default: computed; evaluate-separation shares one per mixture)
    score: Callable[[np.ndarray], ScoredComponents] | None = None

    @property
    def label(self) -> str:
        return self.loaded.labels[self.class_index]


def _hybrid(s: StrategyInputs) -> ChunkStrategy:
    from avscene.separation.methods import HybridStrategy

    assert s.parts.mask_net is not None and s.parts.dictionaries is not None  # resolve_method checked it
    return HybridStrategy(s.parts.mask_net, s.parts.dictionaries, s.class_index, s.label)


def _mask(s: StrategyInputs) -> ChunkStrategy:
    from avscene.separation.methods import MaskStrategy

    assert s.parts.mask_net is not None  # resolve_method checked it
    return MaskStrategy(s.parts.mask_net, s.class_index)


def _dictionary(s: StrategyInputs) -> ChunkStrategy:
    from avscene.separation.methods import DictionaryStrategy

    assert s.parts.dictionaries is not None  # resolve_method checked it
    return DictionaryStrategy(s.parts.dictionaries, s.label)


def _ncp(s: StrategyInputs) -> ChunkStrategy:
    from avscene.separation.methods import NCPStrategy

    return NCPStrategy(s.loaded, s.class_index, nmf=s.nmf, threshold=s.threshold, score=s.score)


@dataclass(frozen=True)
class Method:
    """One separation method."""

    name: MethodName
    needs: tuple[str, ...]  # keys of PARTS it needs from the checkpoint
    build: Callable[[StrategyInputs], ChunkStrategy]  # its chunk strategy
    display: str  # its rows in evaluate-separation: "<display>, label known" / "..., label unknown"
    help: str  # --method's help
    known_row: str | None = None  # the label-known row's name when it has a name of its own
    thresholds: tuple[tuple[str, float | None], ...] = ()  # ranks components: the settings evaluated

    @property
    def ranks(self) -> bool:
        """Whether it ranks NMF components (and so takes a threshold)."""
        return bool(self.thresholds)

    def row(self, mode: str, setting: str = "") -> str:
        """Its row name in evaluate-separation for ``mode`` ("label known" / "label unknown")."""
        if mode == "label known" and self.known_row:
            return self.known_row
        return f"{self.display}{' ' + setting if setting else ''}, {mode}"


METHODS: dict[MethodName, Method] = {m.name: m for m in (  # in the order auto prefers them
    Method(MethodName.HYBRID, METHOD_PARTS["hybrid"], _hybrid, "avscene hybrid",
           "the mean of the mask and dictionary masks"),
    Method(MethodName.MASK, METHOD_PARTS["mask"], _mask, "avscene mask network",
           "the separation network: `avscene train-separator`"),
    Method(MethodName.DICTIONARY, METHOD_PARTS["dictionary"], _dictionary, "avscene dictionary",
           "supervised NMF: `avscene train-dictionaries`", known_row="supervised NMF"),
    Method(MethodName.NCP, METHOD_PARTS["ncp"], _ncp, "avscene", "the paper's ranking of NMF components",
           thresholds=(("soft", None), ("τ=0.1", 0.1), ("τ=0.2", 0.2))),
)}


def method_help() -> str:
    """``--method``'s help text, from the registry."""
    listed = ", ".join(f"{m.name.value} ({m.help})" for m in METHODS.values())
    return (f"auto (the model's measured best, else the first it carries of {', '.join(n.value for n in METHODS)}; "
            f"ncp whenever --threshold is given), {listed}.")


def parse_method(value: MethodName | str) -> MethodName:
    """``value`` as a :class:`MethodName`.

    Raises:
        UsageError: not a method name.
    """
    try:
        return MethodName(value)
    except ValueError:
        raise UsageError(f"unknown separation method {value!r}: use one of "
                         f"{[n.value for n in MethodName]}") from None


def missing_parts(method: Method, parts: SeparationParts) -> list[str]:
    """The parts ``method`` needs that ``parts`` lacks (keys of PARTS)."""
    return [key for key in method.needs if not parts.has(key)]


def resolve_method(requested: MethodName | str, parts: SeparationParts, *, threshold: float | None = None,
                   model_id: str = "the model") -> Method:
    """The method to run: ``requested``, or for ``auto`` the checkpoint's default, else the first it carries.

    Raises:
        UsageError: an unknown method, a method whose parts the model lacks, or a
            threshold with a method that ranks nothing.
    """
    name = parse_method(requested)
    if name is MethodName.AUTO:
        if threshold is not None:  # a threshold is the NCP ranking's option: asking for it picks ncp
            return METHODS[MethodName.NCP]
        if parts.default_method is not None:  # the checkpoint's measured best
            return METHODS[MethodName(parts.default_method)]
        return next(m for m in METHODS.values() if not missing_parts(m, parts))
    method = METHODS[name]
    missing = missing_parts(method, parts)
    if missing:
        part = PARTS[missing[0]]
        needs = " and ".join(PARTS[k].what for k in method.needs)
        raise UsageError(f"--method {name.value} needs {needs}; the model {model_id} has no {part.what}: add "
                         f"it with `avscene {part.command} MODEL labels.csv`, or use another --method")
    if threshold is not None and not method.ranks:
        raise UsageError(f"--threshold applies to --method ncp (it thresholds the ranking of NMF components), "
                         f"not to {name.value}; drop it, or use --method ncp")
    return method
