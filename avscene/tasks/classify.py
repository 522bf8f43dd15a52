"""``classify``: video-level labels of a file (the paper's classification task)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avscene.results import ClassifyResult, ClassParse
from avscene.tasks._pipeline import Analysis, analyse, check_finite, input_threshold, predicted_labels, ranked_labels
from avscene.tasks.models import model_ref

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel


@dataclass(frozen=True)
class ClassifyOptions:
    """How scores become predictions."""

    top_k: int | None = None  # keep at most this many predicted labels (None: all above threshold)
    threshold: float | None = None  # None: the model's for the input's streams (ModelConfig.input_threshold)
    edge_model: str | None = None  # optional structured-edge model file for EdgeBoxes
    any_format: bool = False  # also decode containers/codecs outside avscene.io.formats (--any-format)
    audio_threshold: float | None = None  # "heard" above this audio score; None: the model's
    visual_threshold: float | None = None  # "seen" above this visual score; None: the model's

    def __post_init__(self) -> None:
        check_finite(threshold=self.threshold, audio_threshold=self.audio_threshold,
                     visual_threshold=self.visual_threshold)


def result_from_analysis(path: Path, a: Analysis, loaded: LoadedModel, opts: ClassifyOptions) -> ClassifyResult:
    """Turn one forward pass into the ``classify`` output contract."""
    threshold = input_threshold(a, loaded, opts.threshold)
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


def modality_decisions(audio: np.ndarray, visual: np.ndarray, predicted: np.ndarray, *, t_audio: float,
                       t_visual: float, base: float) -> tuple[np.ndarray, np.ndarray]:
    """Heard and seen, per class: ``(C,)`` or ``(N, C)`` arrays in, bool arrays out.

    A class is heard when its audio score clears ``t_audio`` (the calibrated threshold), or when
    the fused decision predicts it and its audio score clears ``base`` (the uncalibrated one:
    0, the sign of its share of the fused score; 0.5 for probabilities); likewise seen. So a
    predicted class is parsed into the modalities that carry it, and a class the fused score
    misses (a silent object outvoted by the audio) is still seen when its visual score alone
    is strong. A modality score of ``-inf`` (stream absent) is never heard / seen.
    """
    heard = (audio > t_audio) | (predicted & (audio > base))
    seen = (visual > t_visual) | (predicted & (visual > base))
    return heard, seen


def class_parse(a: Analysis, loaded: LoadedModel, predicted: tuple[str, ...],
                opts: ClassifyOptions) -> tuple[ClassParse, ...]:
    """Fused and per-modality video-level decisions of every class, in class order."""
    from avscene.nn.model import modality_scores

    names = list(loaded.labels)
    per = {m: s.numpy() for m, s in modality_scores(a.output, loaded.config).items()}  # (C,) each
    absent = np.full(len(names), -np.inf)
    limit = modality_thresholds(loaded, opts)
    pred = np.array([lab in predicted for lab in names])
    heard, seen = modality_decisions(per.get("audio", absent), per.get("visual", absent), pred,
                                     t_audio=limit["audio"], t_visual=limit["visual"],
                                     base=0.5 if loaded.config.loss == "bce" else 0.0)
    fused = a.output.scores.numpy()
    return tuple(ClassParse(lab, float(fused[c]), bool(pred[c]),
                            audio_score=None if "audio" not in per else float(per["audio"][c]), heard=bool(heard[c]),
                            visual_score=None if "visual" not in per else float(per["visual"][c]),
                            seen=bool(seen[c]))
                 for c, lab in enumerate(names))


def classify_file(path: str | Path, loaded: LoadedModel, opts: ClassifyOptions | None = None) -> ClassifyResult:
    """Classify one file; raises an ``AvsceneError`` if it cannot be processed."""
    opts = opts or ClassifyOptions()
    a = analyse(path, loaded, edge_model=opts.edge_model, any_format=opts.any_format)
    return result_from_analysis(Path(path), a, loaded, opts)
