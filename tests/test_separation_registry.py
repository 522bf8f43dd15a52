"""The one registry of separation methods (``avscene.separation.registry``) and who reads it."""

from __future__ import annotations

import pytest

from avscene.errors import CheckpointError, UsageError
from avscene.checkpoint.parts import PARTS, SeparationParts, default_method
from avscene.separation.registry import METHODS, MethodName, parse_method, resolve_method
from avscene.evaluation.evaluate_sep import METHODS as EVALUATION_ROWS

BOTH = SeparationParts(dictionaries=object(), mask_net=object())  # type: ignore[arg-type]  # presence only
MASK = SeparationParts(mask_net=object())  # type: ignore[arg-type]
DICTS = SeparationParts(dictionaries=object())  # type: ignore[arg-type]


def test_the_cli_choices_are_the_registry_and_auto() -> None:
    assert [m.value for m in MethodName] == ["auto", *[m.value for m in METHODS]]
    assert all(set(m.needs) <= set(PARTS) for m in METHODS.values())
    with pytest.raises(UsageError, match="unknown separation method 'nmf'"):
        parse_method("nmf")


@pytest.mark.parametrize(("parts", "threshold", "expected"), [
    (BOTH, None, "hybrid"), (MASK, None, "mask"), (DICTS, None, "dictionary"), (SeparationParts(), None, "ncp"),
    (BOTH, 0.1, "ncp"),  # a threshold is the NCP ranking's option
    (SeparationParts(dictionaries=object(), mask_net=object(), default_method="dictionary"), None,  # type: ignore[arg-type]
     "dictionary"),  # the checkpoint's measured default wins over the order
])
def test_auto_picks_the_first_method_the_checkpoint_carries(parts, threshold, expected) -> None:
    assert resolve_method("auto", parts, threshold=threshold).name.value == expected


def test_a_method_needs_its_parts_and_only_ncp_takes_a_threshold() -> None:
    for name, parts, command in (("hybrid", MASK, "train-dictionaries"), ("hybrid", DICTS, "train-separator"),
                                 ("mask", DICTS, "train-separator"), ("dictionary", MASK, "train-dictionaries")):
        with pytest.raises(UsageError, match=command):
            resolve_method(name, parts)
    with pytest.raises(UsageError, match="--threshold applies to --method ncp"):
        resolve_method("mask", BOTH, threshold=0.1)
    assert resolve_method("ncp", SeparationParts(), threshold=0.1).ranks


def test_the_checkpoints_default_method_is_checked_against_the_registry() -> None:
    assert default_method({"separation": {"default_method": "mask", "mask": {}}}, "c") == "mask"
    with pytest.raises(CheckpointError, match="must be one of"):
        default_method({"separation": {"default_method": "auto"}}, "c")
    with pytest.raises(CheckpointError, match="no separation.dictionary"):
        default_method({"separation": {"default_method": "hybrid", "mask": {}}}, "c")


def test_evaluation_rows_come_from_the_registry() -> None:
    rows = [r for r in EVALUATION_ROWS if r.startswith("avscene") or r == "supervised NMF"]
    assert rows == ["avscene hybrid, label known", "avscene hybrid, label unknown",
                    "avscene mask network, label known", "avscene mask network, label unknown",
                    "avscene soft, label known", "avscene τ=0.1, label known", "avscene τ=0.2, label known",
                    "avscene soft, label unknown", "avscene τ=0.1, label unknown", "avscene τ=0.2, label unknown",
                    "supervised NMF", "avscene dictionary, label unknown"]  # the rows (and order) of the report
