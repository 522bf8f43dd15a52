"""``classify``: video-level labels of a file (the paper's classification task)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from avscene.results import ClassifyResult, FailedInput
from avscene.tasks._pipeline import Analysis, analyse, check_finite, predicted_labels, ranked_labels, run_each
from avscene.tasks.inputs import expand_inputs
from avscene.tasks.models import model_ref

if TYPE_CHECKING:
    from avscene.hub import LoadedModel


@dataclass(frozen=True)
class ClassifyOptions:
    """How scores become predictions."""

    top_k: int | None = None  # keep at most this many predicted labels (None: all above threshold)
    threshold: float | None = None  # None: the model's decision threshold (0 hinge, 0.5 wsddn)
    edge_model: str | None = None  # optional structured-edge model file for EdgeBoxes
    any_format: bool = False  # also decode containers/codecs outside avscene.io.formats (--any-format)

    def __post_init__(self) -> None:
        check_finite(threshold=self.threshold)


def result_from_analysis(path: Path, a: Analysis, loaded: LoadedModel, opts: ClassifyOptions) -> ClassifyResult:
    """Turn one forward pass into the ``classify`` output contract."""
    threshold = loaded.config.decision_threshold if opts.threshold is None else opts.threshold
    ranked = ranked_labels(a.output.scores.numpy(), loaded.labels)
    return ClassifyResult(
        file=str(path),
        duration=a.info.duration,
        modalities=a.modalities,
        labels=ranked,
        predicted=predicted_labels(ranked, threshold=threshold, top_k=opts.top_k),
        threshold=threshold,
        model=model_ref(loaded),
        warnings=a.info.warnings,
    )


def classify_file(path: str | Path, loaded: LoadedModel, opts: ClassifyOptions | None = None) -> ClassifyResult:
    """Classify one file; raises an ``AvsceneError`` if it cannot be processed."""
    opts = opts or ClassifyOptions()
    a = analyse(path, loaded, edge_model=opts.edge_model, any_format=opts.any_format)
    return result_from_analysis(Path(path), a, loaded, opts)


def classify_many(
    paths: Iterable[str | Path], loaded: LoadedModel, opts: ClassifyOptions | None = None
) -> Iterator[ClassifyResult | FailedInput]:
    """Classify files and directories (recursed); failures are yielded, not raised."""
    opts = opts or ClassifyOptions()
    return run_each(expand_inputs(paths), lambda p: classify_file(p, loaded, opts))
