"""Self-train the box regressor of the bundled model from its own pseudo-boxes on the training clips
(``avscene.train.box_regressor``), its ridge penalty chosen on the checkpoint's training hold-out.

    python docs/results/box_erasing/train_regressor.py ../shared/avbench/train/labels.csv \
        runs/box_regressor.safetensors docs/results/box_erasing/regressor_train.json
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from avscene.checkpoint.box_regressor import save_box_regressor
from avscene.tasks.models import load_model
from avscene.train.box_regressor import train_box_regressor
from avscene.train.calibrate import holdout_examples
from avscene.train.data import read_manifest

MODEL = "models/avscene-av-small"


def main(manifest: str, out: str, record: str) -> None:
    loaded = load_model(MODEL, offline=True, device="cpu")
    training = json.loads((loaded.folder / "config.json").read_text())["training"]
    held = holdout_examples(training, manifest=manifest)
    held_paths = {e.path for e in held}
    train = [e for e in read_manifest(manifest, class_names=list(loaded.labels)) if e.path not in held_paths]
    t0 = time.perf_counter()
    reg, rec = train_box_regressor(loaded, train, held, progress=lambda what, i, n: (
        print(f"{what} {i}/{n}", file=sys.stderr, flush=True) if i % 50 == 0 or i == n else None))
    save_box_regressor(reg, out)
    rec = {"model": MODEL, "manifest": "../shared/avbench/train/labels.csv", **rec,
           "seconds": round(time.perf_counter() - t0, 1)}
    Path(record).write_text(json.dumps(rec, indent=1) + "\n")
    print(json.dumps(rec, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])
