"""Score inputs that have one stream with a checkpoint: each clip's soundtrack alone (audio file),
its frames alone (silent video) and pure noise of every held-out family at the clip's RMS (audio
alone). Writes ``scores_<split>.json``: per input the fused scores, the streams it had and its labels
(the classes that sound for a soundtrack, the classes on screen for a silent video, none for noise);
``table.py`` compares the decision rules on them.

    python docs/results/single_stream/run.py models/avscene-av-small ../shared/avbench val val_shift
"""
import json
import sys
import tempfile
import zlib
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from avscene.dsp import noise as bank
from avscene.tasks._pipeline import analyse
from avscene.tasks.models import load_model

HERE = Path(__file__).parent
SR = 16000


def soundtrack(clip: Path) -> np.ndarray:
    with av.open(str(clip)) as c:
        res = av.AudioResampler(format="flt", layout="mono", rate=SR)
        return np.concatenate([f.to_ndarray().reshape(-1) for fr in c.decode(audio=0) for f in res.resample(fr)])


def silent_copy(clip: Path, out: Path) -> None:
    """The clip's video stream alone, packets copied (no re-encoding)."""
    with av.open(str(clip)) as src, av.open(str(out), "w") as dst:
        v = src.streams.video[0]
        o = dst.add_stream_from_template(v)
        for packet in src.demux(v):
            if packet.dts is None:
                continue
            packet.stream = o
            dst.mux(packet)


def main(model: str, avbench: str, splits: list[str]) -> None:
    loaded = load_model(model, device="cpu", offline=True)
    cfg = loaded.config
    for split in splits:
        root = Path(avbench) / split
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for line in open(root / "ground_truth.jsonl"):
                g = json.loads(line)
                clip = root / "clips" / f"{g['clip']}.mp4"
                x = soundtrack(clip)
                rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
                items = [("soundtrack", x, sorted({e["class"] for e in g["events"] if e["audio"]}))]
                items += [(f, (bank.noise(f, len(x), sr=SR, rng=zlib.crc32(f"{f}/{g['clip']}".encode())) * rms)
                           .astype(np.float32), []) for f in bank.HELDOUT_FAMILIES]
                for kind, sig, labels in items:
                    p = Path(tmp) / f"{kind}.wav"
                    sf.write(p, sig, SR)
                    a = analyse(p, loaded)
                    rows.append({"clip": g["clip"], "input": kind, "labels": labels, "modalities": list(a.modalities),
                                 "scores": [round(float(s), 5) for s in a.output.scores.numpy()]})
                p = Path(tmp) / "silent.mp4"
                silent_copy(clip, p)
                a = analyse(p, loaded)
                rows.append({"clip": g["clip"], "input": "silent_video", "modalities": list(a.modalities),
                             "labels": sorted({e["class"] for e in g["events"] if e["visual"]}),
                             "scores": [round(float(s), 5) for s in a.output.scores.numpy()]})
                print(split, g["clip"], flush=True)
        doc = {"model": Path(model).name, "split": split, "labels": list(loaded.labels),
               "threshold": cfg.decision_threshold, "audio_threshold": cfg.modality_threshold("audio"),
               "visual_threshold": cfg.modality_threshold("visual"), "rows": rows}
        (HERE / f"scores_{split}.json").write_text(json.dumps(doc) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
