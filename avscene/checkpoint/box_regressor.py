"""The self-trained box regressor's file (:class:`avscene.proposals.box_regression.BoxRegressor`).

A safetensors file of two arrays, ``weights`` (C, d + 1, 4) float32 and ``trained`` (C,) uint8, and
its metadata (``labels``: the class names as JSON, ``penalty``, ``teacher``). Read strictly: a missing
array, another shape, a non-finite weight or metadata that does not parse is a CheckpointError naming
the file. safetensors is imported on use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from avscene.checkpoint.format import default_file_mode
from avscene.errors import CheckpointError, UsageError
from avscene.proposals.box_regression import BoxRegressor

BOX_REGRESSOR_NAME = "box_regressor.safetensors"


def save_box_regressor(reg: BoxRegressor, path: str | Path) -> Path:
    """Write ``reg`` to ``path`` (atomically: a temporary file renamed)."""
    from safetensors.numpy import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"weights": np.ascontiguousarray(reg.weights, dtype=np.float32),
               "trained": np.asarray(reg.trained, dtype=np.uint8)}, str(tmp),
              metadata={"labels": json.dumps(list(reg.labels)), "penalty": repr(float(reg.penalty)),
                        "teacher": reg.teacher})
    default_file_mode(tmp)
    os.replace(tmp, path)
    return path


def read_box_regressor(path: str | Path) -> BoxRegressor:
    """Read a box regressor file strictly (see the module docstring)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"box regressor {path} not found")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if keys != {"weights", "trained"}:
                raise CheckpointError(f"box regressor {path}: expected the arrays weights and trained, got "
                                      f"{sorted(keys)}")
            weights, trained = f.get_tensor("weights"), f.get_tensor("trained")
        labels = json.loads(meta["labels"])
        penalty = float(meta.get("penalty", "nan"))
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt header, missing or malformed metadata
        raise CheckpointError(f"box regressor {path} is unreadable: {e}") from e
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise CheckpointError(f"box regressor {path}: its labels are not a list of class names")
    if trained.dtype != np.uint8 or not np.isin(trained, (0, 1)).all():
        raise CheckpointError(f"box regressor {path}: 'trained' must hold 0 or 1 (uint8)")
    try:
        return BoxRegressor(tuple(labels), weights.astype(np.float64), trained.astype(bool), penalty=penalty,
                            teacher=meta.get("teacher", ""))
    except UsageError as e:
        raise CheckpointError(f"box regressor {path}: {e}") from e
