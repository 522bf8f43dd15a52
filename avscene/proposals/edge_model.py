"""OpenCV structured-edge (SED) model files: validation and a per-file cached loader.

``cv2.ximgproc.createStructuredEdgeDetection`` divides by ``options.numberOfTrees``, so a
YAML file without it kills the process (SIGFPE) instead of raising: the nodes are read with
``cv2.FileStorage`` first, and only a file that passes is handed to OpenCV. Loaded detectors
are cached per path and file version (mtime, size).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import cv2

from avscene.errors import UsageError

# The reference structured-edge model (opencv_extra testdata/cv/ximgproc); no checksum is published.
EDGE_MODEL_URL = "https://github.com/opencv/opencv_extra/raw/4.x/testdata/cv/ximgproc/model.yml.gz"
# Nodes OpenCV's StructuredEdgeDetection reads besides options.numberOfTrees (checked first: it
# divides by it, so a file without it kills the process with SIGFPE instead of raising).
EDGE_MODEL_NODES = ("childs", "featureIds", "thresholds", "edgeBoundaries", "edgeBins")


def _cv_message(e: BaseException) -> str:
    """The useful part of an OpenCV error: ``(-212:Parsing error) ...`` without file and line."""
    cause = e.__cause__ if isinstance(e, SystemError) and e.__cause__ is not None else e
    text = str(getattr(cause, "msg", cause)).strip()
    return text.split("error: ", 1)[-1]


def _edge_model_nodes_problem(path: Path) -> str | None:
    """Why ``path`` is not a structured-edge model, from its nodes (OpenCV does not build it)."""
    if not path.is_file():
        return "no such file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as e:  # SystemError: the binding's wrapping of some cv2.errors
        return f"not an OpenCV YAML/XML file ({_cv_message(e)})"
    try:
        if not fs.isOpened():
            return "OpenCV cannot open it"
        trees = fs.getNode("options").getNode("numberOfTrees")
        if trees.empty() or not trees.isInt() or int(trees.real()) <= 0:
            return "no options.numberOfTrees: not an OpenCV structured-edge model"
        missing = [n for n in EDGE_MODEL_NODES if fs.getNode(n).empty()]
        return f"missing node(s) {missing}: not an OpenCV structured-edge model" if missing else None
    finally:
        fs.release()


def edge_model_problem(path: str | os.PathLike) -> str | None:
    """Why OpenCV cannot use ``path`` as a structured-edge model; None when it loads.

    The nodes are read with ``cv2.FileStorage`` before OpenCV builds the model:
    ``createStructuredEdgeDetection`` divides by ``options.numberOfTrees``, so a YAML file
    without it would kill the process (SIGFPE) instead of raising. A file that passes is
    loaded, once per process and version of the file.

    Args:
        path: the model file (OpenCV's ``model.yml.gz``, see ``EDGE_MODEL_URL``).

    Returns:
        A short reason (``"no such file"``, ``"no options.numberOfTrees: ..."``), or None.
    """
    return _load_edge_model(*_file_key(path))[1]


def validate_edge_model(path: str | os.PathLike) -> cv2.ximgproc.StructuredEdgeDetection:
    """Load a structured-edge model, checking it first so that a bad file cannot crash OpenCV.

    Returns:
        OpenCV's detector, cached per file (and reloaded when the file changes).

    Raises:
        UsageError: the file is missing, unreadable or not an OpenCV structured-edge model
            (:func:`edge_model_problem`); the message names the file, the reason and where
            the reference model is.
    """
    detector, problem = _load_edge_model(*_file_key(path))
    if problem is not None:
        raise UsageError(
            f"edge model {str(path)!r}: {problem}; pass the path of OpenCV's structured-edge "
            f"model.yml.gz ({EDGE_MODEL_URL}), or no edge model to use gradient edges")
    return detector


def _file_key(path: str | os.PathLike) -> tuple[str, tuple[int, int] | None]:
    """``(path, (mtime ns, size))``: a cache key that changes when the file does (None: no file)."""
    try:
        st = os.stat(path)
    except OSError:
        return str(path), None
    return str(path), (st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=2)
def _load_edge_model(path: str, stamp: tuple[int, int] | None,
                     ) -> tuple[cv2.ximgproc.StructuredEdgeDetection | None, str | None]:
    """``(detector, None)``, or ``(None, why OpenCV cannot use the file)``; ``stamp`` keys the cache."""
    problem = _edge_model_nodes_problem(Path(path))
    if problem is not None:
        return None, problem
    try:
        return cv2.ximgproc.createStructuredEdgeDetection(path), None
    except (cv2.error, SystemError) as e:
        return None, f"OpenCV cannot load it ({_cv_message(e)})"
