"""The same checkpoint without its OICR branches, so the MIL head chooses the boxes again.

    python scripts/strip_refiner.py MODEL_DIR OUT_DIR

Everything else (weights, thresholds, preprocessing, separation parts declared in config.json are
not copied) is kept, so ``avscene evaluate`` on both folders compares the box choice alone:
CorLoc / pointing of the refined boxes against those of the head they were refined from.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path


def main(src: str, dst: str) -> None:
    from avscene.hub import load_pretrained, read_config, save_pretrained
    from avscene.nn.model import AVSceneNet

    loaded = load_pretrained(src, offline=True, device="cpu")
    if not loaded.config.visual_refine:
        raise SystemExit(f"{src}: the model has no OICR branches (visual_refine is 0)")
    cfg = dataclasses.replace(loaded.config, visual_refine=0)
    model = AVSceneNet(cfg)
    state = {k: v for k, v in loaded.model.state_dict().items() if not k.startswith("visual_refiner.")}
    model.load_state_dict(state, strict=True)
    training = dict(read_config(Path(src)).get("training", {}), stripped_from=str(src))
    save_pretrained(model, dst, labels=list(loaded.labels), preprocess=loaded.preprocess, training=training)
    print(f"{dst}: {src} without its {loaded.config.visual_refine} OICR branches")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
