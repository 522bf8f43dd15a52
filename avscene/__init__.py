"""avscene: weakly supervised audio-visual scene analysis of single videos.

The public API (torch is imported on first use, not at ``import avscene``)::

    import avscene

    model = avscene.load_model()                 # the bundled model; or "org/name", a folder
    result = avscene.classify("clip.mp4", model=model)
    print(result.predicted, result.to_json())
    where = avscene.localize("clip.mp4", model=model, labels=["violin"])

Each function takes one path and returns a frozen result dataclass (see
``avscene.results``) or raises an ``avscene.errors.AvsceneError``. For many files,
call them in a loop (catching ``AvsceneError`` per file), or use the command line's
batch options (``--jobs``, ``--jsonl``, ``--resume``, ``--shard``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["classify", "load_model", "localize", "separate", "__version__"]

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel
    from avscene.results import ClassifyResult, LocalizeResult
    from avscene.separation.registry import MethodName
    from avscene.tasks.separate import Separation

    ModelLike = LoadedModel | str | Path | None  # a loaded model, a folder or Hub id, None: bundled


def load_model(model: str | Path | None = None, *, revision: str | None = None, offline: bool = False,
               device: str = "auto") -> LoadedModel:
    """Load a checkpoint: None = the bundled model, a local folder, or a Hub repo id ``org/name``."""
    from avscene.tasks.models import load_model as _load

    return _load(model, revision=revision, offline=offline, device=device)


def _model(model: ModelLike) -> LoadedModel:
    from avscene.checkpoint.load import LoadedModel

    return model if isinstance(model, LoadedModel) else load_model(model)


def classify(path: str | Path, *, model: ModelLike = None, top_k: int | None = None,
             threshold: float | None = None) -> ClassifyResult:
    """Video-level labels of one file (see ``avscene.results.ClassifyResult``)."""
    from avscene.tasks.classify import ClassifyOptions, classify_file

    return classify_file(path, _model(model), ClassifyOptions(top_k=top_k, threshold=threshold))


def localize(path: str | Path, *, model: ModelLike = None, labels: list[str] | tuple[str, ...] = (),
             boxes: int = 1) -> LocalizeResult:
    """Boxes, audio scores, events and timing of one file (see ``avscene.results.LocalizeResult``)."""
    from avscene.tasks.localize import LocalizeOptions, localize_file

    return localize_file(path, _model(model), LocalizeOptions(labels=tuple(labels), boxes=boxes))


def separate(path: str | Path, *, model: ModelLike = None, label: str | None = None, threshold: float | None = None,
             method: MethodName | str = "auto") -> Separation:
    """Separate the audio of ``label`` (None: the top predicted class) from the rest of the mixture.

    ``method``: "hybrid", "mask", "dictionary", "ncp" or "auto" (the best the model carries; see
    :class:`avscene.tasks.separate.SeparateOptions`).
    """
    from avscene.separation.registry import parse_method
    from avscene.tasks.separate import SeparateOptions, separate_file

    opts = SeparateOptions(label=label, threshold=threshold, method=parse_method(method))
    return separate_file(path, _model(model), opts)
