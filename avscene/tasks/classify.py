"""``classify``: video-level labels of a file (the paper's classification task)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from avscene.results import ClassifyResult, ClassParse, FailedInput
from avscene.tasks._pipeline import Analysis, analyse, predicted_labels, ranked_labels, run_each
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
    audio_threshold: float | None = None  # "heard" above this audio score; None: the model's
    visual_threshold: float | None = None  # "seen" above this visual score; None: the model's


def result_from_analysis(path: Path, a: Analysis, loaded: LoadedModel, opts: ClassifyOptions) -> ClassifyResult:
    """Turn one forward pass into the ``classify`` output contract."""
    threshold = loaded.config.decision_threshold if opts.threshold is None else opts.threshold
    ranked = ranked_labels(a.output.scores.numpy(), loaded.labels)
    predicted = predicted_labels(ranked, threshold=threshold, top_k=opts.top_k)
    return ClassifyResult(
        file=str(path),
        duration=a.info.duration,
        modalities=a.modalities,
        labels=ranked,
        predicted=predicted,
        threshold=threshold,
        model=model_ref(loaded),
        warnings=a.info.warnings,
        parse=class_parse(a, loaded, predicted, opts),
        modality_thresholds=modality_thresholds(loaded, opts),
    )


def modality_thresholds(loaded: LoadedModel, opts: ClassifyOptions) -> dict[str, float]:
    """The threshold of each modality's own score: the option, else the model's
    (``ModelConfig.modality_threshold``)."""
    given = {"audio": opts.audio_threshold, "visual": opts.visual_threshold}
    return {m: loaded.config.modality_threshold(m) if t is None else t for m, t in given.items()}


def class_parse(a: Analysis, loaded: LoadedModel, predicted: tuple[str, ...],
                opts: ClassifyOptions) -> tuple[ClassParse, ...]:
    """Fused and per-modality video-level decisions of every class, in class order."""
    from avscene.nn.model import modality_scores

    per = {m: s.numpy() for m, s in modality_scores(a.output, loaded.config).items()}  # (C,) each
    limit = modality_thresholds(loaded, opts)
    fused = a.output.scores.numpy()
    out = []
    for c, lab in enumerate(loaded.labels):
        sa = None if "audio" not in per else float(per["audio"][c])
        sv = None if "visual" not in per else float(per["visual"][c])
        out.append(ClassParse(lab, float(fused[c]), lab in predicted,
                              audio_score=sa, heard=sa is not None and sa > limit["audio"],
                              visual_score=sv, seen=sv is not None and sv > limit["visual"]))
    return tuple(out)


def classify_file(path: str | Path, loaded: LoadedModel, opts: ClassifyOptions | None = None) -> ClassifyResult:
    """Classify one file; raises an ``AvsceneError`` if it cannot be processed."""
    opts = opts or ClassifyOptions()
    a = analyse(path, loaded, edge_model=opts.edge_model)
    return result_from_analysis(Path(path), a, loaded, opts)


def classify_many(
    paths: Iterable[str | Path], loaded: LoadedModel, opts: ClassifyOptions | None = None
) -> Iterator[ClassifyResult | FailedInput]:
    """Classify files and directories (recursed); failures are yielded, not raised."""
    opts = opts or ClassifyOptions()
    return run_each(expand_inputs(paths), lambda p: classify_file(p, loaded, opts))
