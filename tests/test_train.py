"""Tests of the training stack: manifests, the clip cache, balanced sampling, the loop (resume,
determinism, DDP under torchrun), backbone initialisation and freezing."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from avscene.config import PreprocessConfig
from avscene.errors import CheckpointError, ConfigError, UsageError
from avscene.testing.models import tiny_model, tiny_preprocess
from avscene.train.data import BalancedBatchSampler, ClipCache, read_manifest
from avscene.train.loop import TrainConfig, Trainer, fit

N_CLIPS = 12  # half "red" (red square + 440 Hz), half "blue" (blue square + 2000 Hz)
TOY_CLASSES = {"red": ((230, 20, 20), 440.0), "blue": ((20, 20, 230), 2000.0)}
TINY_MODEL = {"audio_width": 0.125, "audio_fc": [32], "visual_channels": [8, 16], "visual_fc": [32, 32],
              "embed_dim": 16}
TINY_PRE = {"image_size": 64, "boxes_per_frame": 4}
CHI2_2DOF_P001 = 13.82  # chi-square critical value, 2 degrees of freedom, p = 0.001


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """``train.csv`` (bare ids) over ``clips/c{i}.mp4``: a 2-class problem separable in both modalities."""
    from avscene.testing.media import write_video

    root = tmp_path_factory.mktemp("toy")
    rows = ["clip,labels"]
    for i in range(N_CLIPS):
        name = "red" if i % 2 == 0 else "blue"
        colour, freq = TOY_CLASSES[name]
        (root / "clips").mkdir(exist_ok=True)
        write_video(root / "clips" / f"c{i}.mp4", duration=2.0, fps=4, size=(64, 48), box=(16, 8, 48, 40),
                    box_color=colour, freq=freq)
        rows.append(f"c{i},{name}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root / "train.csv"


@pytest.fixture(scope="module")
def toy_heldout(tmp_path_factory) -> tuple[Path, Path]:
    """``val.csv`` and ``test.csv``: 4 clips each of the toy classes that training never sees (the
    box elsewhere and smaller, the tone a little off the training frequency, quieter)."""
    from avscene.testing.media import write_video

    root = tmp_path_factory.mktemp("toy_heldout")
    (root / "clips").mkdir()
    boxes = [(4, 4, 36, 30), (28, 16, 60, 44), (8, 20, 40, 46), (30, 2, 62, 30)]
    manifests = {}
    for split, shift in (("val", 1.04), ("test", 0.96)):
        rows = ["clip,labels"]
        for i, box in enumerate(boxes):
            name = "red" if i % 2 == 0 else "blue"
            colour, freq = TOY_CLASSES[name]
            write_video(root / "clips" / f"{split}{i}.mp4", duration=2.0, fps=4, size=(64, 48), box=box,
                        box_color=colour, freq=freq * shift, amplitude=0.3)
            rows.append(f"{split}{i},{name}")
        manifests[split] = root / f"{split}.csv"
        manifests[split].write_text("\n".join(rows) + "\n")
    return manifests["val"], manifests["test"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def toy_config(toy: Path, cache_dir: Path, output: Path, **kw) -> TrainConfig:
    base = dict(manifest=str(toy), output=str(output), val_manifest=str(toy), preset="small", model=TINY_MODEL,
                preprocess=TINY_PRE, epochs=3, batch_size=4, lr=3e-3, augment=False, workers=1,
                cache_dir=str(cache_dir), patience=100, device="cpu")
    return TrainConfig(**{**base, **kw})


def log_epochs(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a)), load_file(str(b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---- the loop -----------------------------------------------------------------------------------


def _micro_f1(scores: np.ndarray, y: np.ndarray, threshold: float) -> float:
    """Micro-F1 of ``scores > threshold`` against bool ``y``, counted directly (0 when undefined)."""
    pred = scores > threshold
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def test_learns_separable_toy_problem(toy, toy_heldout, cache_dir, tmp_path):
    from avscene.checkpoint.load import load_pretrained
    from avscene.tasks.classify import classify_file
    from avscene.train.calibrate import THRESHOLD_GRID

    val, test = toy_heldout
    out = tmp_path / "run"
    summary = fit(toy_config(toy, cache_dir, out, epochs=8, val_manifest=str(val)), log=quiet)
    losses = [r["train_loss"] for r in log_epochs(out)]
    assert len(losses) == 8 and summary.epochs_run == 8
    assert np.mean(losses[-2:]) < 0.5 * losses[0]
    assert summary.class_names == ("blue", "red") and summary.holdout_clips == 4

    loaded = load_pretrained(str(out), device="cpu")
    assert loaded.labels == ("blue", "red")
    # The stored threshold is the one of the grid with the best micro-F1 on the validation clips
    # (which training never saw), counted here from the model's scores of those clips.
    t = loaded.config.threshold
    assert t is not None
    val_rows = read_manifest(val)
    scores = np.array([[x.score for x in sorted(classify_file(r.path, loaded).labels, key=lambda x: x.label)]
                       for r in val_rows])  # (4, 2) in label order
    y = np.array([[c in r.labels for c in loaded.labels] for r in val_rows])
    assert _micro_f1(scores, y, t) >= max(_micro_f1(scores, y, g) for g in THRESHOLD_GRID) - 1e-12
    # Clips seen by neither training nor selection are classified right.
    truth = {r.path: r.labels for r in read_manifest(test)}
    correct = sum(classify_file(p, loaded).predicted == labels for p, labels in truth.items())
    assert correct == len(truth)


@pytest.mark.parametrize("split", [0.0, 0.05])  # 0.05 of 6 clips per label set rounds to none
def test_trains_without_holdout(toy, cache_dir, tmp_path, split):
    from avscene.checkpoint.format import read_config
    from avscene.checkpoint.load import load_pretrained

    out = tmp_path / "run"
    messages: list[str] = []
    summary = fit(toy_config(toy, cache_dir, out, epochs=2, val_manifest=None, val_split=split, patience=1),
                  log=messages.append)
    assert summary.holdout_clips == 0 and summary.epochs_run == 2 and summary.best_epoch == 1
    assert any("no hold-out clips" in m and "last one is kept" in m for m in messages)
    assert not any("calibrated threshold" in m for m in messages)
    assert [sorted(r) for r in log_epochs(out)] == [["epoch", "lr", "seconds", "train_loss"]] * 2
    # the checkpoint is the last epoch's, uncalibrated, and says how it was chosen
    assert same_weights(out / "model.safetensors", out / "last" / "model.safetensors")
    training = read_config(out)["training"]
    assert training["holdout_clips"] == 0 and training["selection"] == "last epoch (no hold-out clips)"
    assert training["best_epoch"] == 1 and training["val_micro_f1"] is None
    assert load_pretrained(str(out), device="cpu").config.threshold is None


def test_avor_fusion_learns_the_toy_problem(toy, cache_dir, tmp_path):
    """The noisy-OR ("heard or seen") variant, with each modality's own loss, still learns the toy problem."""
    from avscene.checkpoint.load import load_pretrained
    from avscene.tasks.classify import classify_file

    out = tmp_path / "run"
    fit(toy_config(toy, cache_dir, out, epochs=8, variant="avor", aux_loss=0.5), log=quiet)
    losses = [r["train_loss"] for r in log_epochs(out)]
    assert np.mean(losses[-2:]) < 0.5 * losses[0]
    loaded = load_pretrained(str(out), device="cpu")
    assert loaded.config.variant == "avor"
    truth = {r.path: r.labels for r in read_manifest(toy)}
    results = {p: classify_file(p, loaded) for p in truth}
    assert sum(r.predicted == truth[p] for p, r in results.items()) / len(truth) >= 0.9
    assert all(0.0 <= lab.score <= 1.0 for r in results.values() for lab in r.labels)  # probabilities


def test_refine_labels_keeps_per_modality_targets_within_the_labels(toy, cache_dir, tmp_path):
    with pytest.raises(ConfigError, match="--aux-loss"):
        Trainer(toy_config(toy, cache_dir, tmp_path / "x", refine_labels=True), log=quiet)
    first = tmp_path / "first"
    fit(toy_config(toy, cache_dir, first, epochs=2), log=quiet)
    out = tmp_path / "refined"
    fit(toy_config(toy, cache_dir, out, epochs=1, init_model=str(first), model={}, preprocess={},
                   aux_loss=0.5, refine_labels=True), log=quiet)
    with np.load(out / "refined_targets.npz") as f:
        ya, yv = f["audio"], f["visual"]
    y = np.array([[lab in e.labels for lab in ("blue", "red")] for e in read_manifest(toy)])
    assert ya.shape == yv.shape == y.shape
    assert ((ya | yv) == y).all()  # each label kept in at least one modality, none added


class Interrupt(Exception):
    pass


def interrupt_at(epoch: int):
    def on_step(e: int, step: int, steps: int) -> None:
        if e == epoch:
            raise Interrupt
    return on_step


def test_same_seed_same_weights_and_resume_is_exact(toy, cache_dir, tmp_path):
    # with augmentation and dropout on, so that every source of randomness is exercised
    cfg = toy_config(toy, cache_dir, tmp_path / "a", augment=True)
    fit(cfg, log=quiet)
    fit(dataclasses.replace(cfg, output=str(tmp_path / "b")), log=quiet)
    assert same_weights(tmp_path / "a" / "last" / "model.safetensors", tmp_path / "b" / "last" / "model.safetensors")

    # interrupted in epoch 2, then resumed: identical to the uninterrupted run
    c = dataclasses.replace(cfg, output=str(tmp_path / "c"))
    with pytest.raises(Interrupt):
        fit(c, log=quiet, on_step=interrupt_at(2))
    assert [r["epoch"] for r in log_epochs(tmp_path / "c")] == [0, 1]
    messages: list[str] = []
    fit(dataclasses.replace(c, resume=True), log=messages.append)
    assert any("resumed" in m and "after epoch 1" in m for m in messages)
    assert [r["epoch"] for r in log_epochs(tmp_path / "c")] == [0, 1, 2]
    assert same_weights(tmp_path / "a" / "last" / "model.safetensors", tmp_path / "c" / "last" / "model.safetensors")
    assert log_epochs(tmp_path / "c")[2]["train_loss"] == log_epochs(tmp_path / "a")[2]["train_loss"]


def test_resume_extends_a_finished_run(toy, cache_dir, tmp_path):
    cfg = toy_config(toy, cache_dir, tmp_path / "run", epochs=2)
    fit(cfg, log=quiet)
    before = load_file(str(tmp_path / "run" / "last" / "model.safetensors"))
    summary = fit(dataclasses.replace(cfg, epochs=3, resume=True), log=quiet)
    assert summary.epochs_run == 1
    assert [r["epoch"] for r in log_epochs(tmp_path / "run")] == [0, 1, 2]
    after = load_file(str(tmp_path / "run" / "last" / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it did train on


def test_different_seed_different_weights(toy, cache_dir, tmp_path):
    cfg = toy_config(toy, cache_dir, tmp_path / "a", epochs=1)
    fit(cfg, log=quiet)
    fit(dataclasses.replace(cfg, output=str(tmp_path / "b"), seed=1), log=quiet)
    assert not same_weights(tmp_path / "a" / "last" / "model.safetensors",
                            tmp_path / "b" / "last" / "model.safetensors")


def test_torchrun_two_processes(toy, cache_dir, tmp_path):
    from avscene.checkpoint.load import load_pretrained

    out = tmp_path / "ddp"
    opts = [f"--model-opt={k}={json.dumps(v)}" for k, v in TINY_MODEL.items()]
    opts += [f"--pre-opt={k}={v}" for k, v in TINY_PRE.items()]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--standalone",  # torchrun binds a free port itself: no check-then-use race
           "-m", "avscene", "train", str(toy), "-o", str(out), "--val", str(toy), "--epochs", "2",
           "--batch-size", "4", "--lr", "3e-3", "--no-augment", "--workers", "1", "--cache-dir", str(cache_dir),
           "--device", "cpu", *opts]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["epoch"] for r in log_epochs(out)] == [0, 1]  # one log, written by rank 0 only
    assert proc.stderr.count("best validation micro-F1") == 1
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "last", "model.safetensors",
                                                      "train_log.jsonl"]
    loaded = load_pretrained(str(out), device="cpu")
    assert loaded.labels == ("blue", "red")
    assert loaded.config.visual_channels == (8, 16)


# ---- batches ------------------------------------------------------------------------------------


def skewed_labels() -> np.ndarray:
    """(120, 3) one-hot: class 0 has 100 examples, classes 1 and 2 have 10 each."""
    cls = np.repeat([0, 1, 2], [100, 10, 10])
    return np.eye(3, dtype=np.float32)[cls]


def test_balanced_sampler_draws_classes_uniformly():
    y = skewed_labels()
    sampler = BalancedBatchSampler(y, batch_size=30, batches_per_epoch=50, seed=3)
    batches = sampler.epoch(0)
    assert len(batches) == 50 and all(len(b) == 30 for b in batches)
    drawn = np.concatenate(batches)
    assert drawn.min() >= 0 and drawn.max() < len(y)
    counts = y[drawn].sum(axis=0)  # (3,) positives of each class among the 1500 bags
    expected = len(drawn) / 3
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < CHI2_2DOF_P001, counts
    # plain uniform sampling of examples would give class 0 about 100/120 of the bags
    assert counts[0] / len(drawn) < 0.4


def test_balanced_sampler_is_deterministic_per_seed_and_epoch():
    y = skewed_labels()
    a = BalancedBatchSampler(y, batch_size=8, batches_per_epoch=5, seed=7)
    b = BalancedBatchSampler(y, batch_size=8, batches_per_epoch=5, seed=7)
    assert all(np.array_equal(x, z) for x, z in zip(a.epoch(2), b.epoch(2)))
    assert not all(np.array_equal(x, z) for x, z in zip(a.epoch(2), a.epoch(3)))
    c = BalancedBatchSampler(y, batch_size=8, batches_per_epoch=5, seed=8)
    assert not all(np.array_equal(x, z) for x, z in zip(a.epoch(2), c.epoch(2)))


def test_balanced_sampler_skips_empty_classes_and_rejects_no_positives():
    y = np.zeros((10, 3), np.float32)
    y[:, 1] = 1  # only class 1 has examples
    drawn = np.concatenate(BalancedBatchSampler(y, batch_size=4, batches_per_epoch=3, seed=0).epoch(0))
    assert set(drawn.tolist()) <= set(range(10))
    with pytest.raises(ConfigError, match="no class has a positive example"):
        BalancedBatchSampler(np.zeros((4, 2)), batch_size=2, batches_per_epoch=1, seed=0)


# ---- cache --------------------------------------------------------------------------------------


def test_clip_cache_hits_misses_and_repairs(toy, tmp_path):
    media = toy.parent / "clips" / "c0.mp4"
    cache = ClipCache(tmp_path / "cache", tiny_preprocess())
    first = cache.get(media)
    assert (cache.hits, cache.misses) == (0, 1)
    second = cache.get(media)
    assert (cache.hits, cache.misses) == (1, 1)
    for f in dataclasses.fields(first):
        np.testing.assert_array_equal(getattr(first, f.name), getattr(second, f.name))
    # 2 s at 1 fps: two frames, resized so the shorter side is image_size, 4 boxes each
    assert first.frames.shape == (2, 3, 64, 85) and first.boxes.shape == (2, 4, 4)
    assert first.audio.shape == (32000,)

    copy = tmp_path / "elsewhere" / "renamed.mp4"
    copy.parent.mkdir()
    copy.write_bytes(media.read_bytes())
    cache.get(copy)  # the key is the content, not the path
    assert (cache.hits, cache.misses) == (2, 1)

    other = ClipCache(tmp_path / "cache", dataclasses.replace(tiny_preprocess(), boxes_per_frame=3))
    assert other.get(media).boxes.shape == (2, 3, 4)
    assert (other.hits, other.misses) == (0, 1)

    entry = cache.path_for(media)
    good = entry.read_bytes()
    for damage in (good[: len(good) // 2], b"not an npz file", good[:100]):
        entry.write_bytes(damage)
        misses = cache.misses
        rebuilt = cache.get(media)
        assert cache.misses == misses + 1
        np.testing.assert_array_equal(rebuilt.boxes, first.boxes)
        cache.get(media)  # the rebuilt entry is readable again
        assert cache.misses == misses + 1


# ---- manifests ----------------------------------------------------------------------------------


def test_read_manifest_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    csv = tmp_path / "m.csv"
    csv.write_text("clip,labels\nabc,dog\nsub/x.mkv, cat ; dog \nclips/y.wav,\n")
    ex = read_manifest(csv)
    assert [e.path for e in ex] == [tmp_path / "clips" / "abc.mp4", tmp_path / "sub" / "x.mkv",
                                    tmp_path / "clips" / "y.wav"]
    assert [e.labels for e in ex] == [("dog",), ("cat", "dog"), ()]


def test_read_manifest_errors(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text("clip,labels\na,dog\nb,cat;bird\n")
    with pytest.raises(UsageError, match=r"m\.csv:3: unknown label\(s\) \['bird'\]"):
        read_manifest(csv, class_names=["cat", "dog"])
    csv.write_text("clip,labels\n")
    with pytest.raises(UsageError, match="has no rows"):
        read_manifest(csv)
    csv.write_text("")
    with pytest.raises(UsageError, match="columns 'clip,labels'"):
        read_manifest(csv)
    csv.write_text("file,tags\na,dog\n")
    with pytest.raises(UsageError, match="columns 'clip,labels'"):
        read_manifest(csv)
    with pytest.raises(UsageError, match="does not exist"):
        read_manifest(tmp_path / "missing.csv")


# ---- initialisation and freezing ---------------------------------------------------------------


def torchvggish_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """Random tensors under the torchvggish (harritaylor) names and shapes, written out by hand."""
    g = torch.Generator().manual_seed(seed)
    convs = {0: (64, 1), 3: (128, 64), 6: (256, 128), 8: (256, 256), 11: (512, 256), 13: (512, 512)}
    fcs = {0: (4096, 512 * 4 * 6), 2: (4096, 4096), 4: (128, 4096)}
    sd: dict[str, torch.Tensor] = {}
    for i, (c_out, c_in) in convs.items():
        sd[f"features.{i}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g)
        sd[f"features.{i}.bias"] = torch.randn(c_out, generator=g)
    for i, (n_out, n_in) in fcs.items():
        sd[f"embeddings.{i}.weight"] = torch.randn(n_out, n_in, generator=g) * 0.01
        sd[f"embeddings.{i}.bias"] = torch.randn(n_out, generator=g)
    sd["pproc._pca_matrix"] = torch.randn(128, 128, generator=g)  # torchvggish's PCA: not the network
    return sd


def test_init_audio_from_torchvggish_weights(tmp_path):
    from avscene.nn.model import AVSceneNet, ModelConfig
    from avscene.train import checkpointing

    # the paper's VGGish layout (72 M parameters): built once for this test
    model = AVSceneNet(ModelConfig(num_classes=2, variant="audio", audio_width=1.0, audio_fc=(4096, 4096),
                                   audio_norm=False, embed_dim=16))
    sd = torchvggish_state_dict(seed=0)
    save_file(sd, str(tmp_path / "vggish.safetensors"))
    checkpointing.initialise(model, audio=str(tmp_path / "vggish.safetensors"), visual=None)
    own = model.state_dict()
    for k, v in sd.items():
        if not k.startswith("pproc."):
            assert torch.equal(own[f"audio.vggish.{k}"], v), k

    for v in sd.values():  # a different set of weights, as a pickle-free torch file
        v.neg_()
    torch.save({"state_dict": sd}, tmp_path / "vggish.pth")
    del sd
    checkpointing.initialise(model, audio=str(tmp_path / "vggish.pth"), visual=None)
    ref = torch.load(tmp_path / "vggish.pth", weights_only=True)["state_dict"]
    own = model.state_dict()
    assert all(torch.equal(own[f"audio.vggish.{k}"], v) for k, v in ref.items() if not k.startswith("pproc."))


def test_init_audio_mismatch_is_a_checkpoint_error(tmp_path):
    from avscene.train import checkpointing

    model = tiny_model(2)  # VGGish at 1/8 width with BatchNorm: not torchvggish's layout
    path = tmp_path / "vggish.safetensors"
    save_file({"features.0.weight": torch.zeros(64, 1, 3, 3), "features.0.bias": torch.zeros(64)}, str(path))
    with pytest.raises(CheckpointError, match=r"does not match the model's VGGish.*missing"):
        checkpointing.initialise(model, audio=str(path), visual=None)
    (tmp_path / "garbage.pth").write_bytes(b"\x00not a torch file")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        checkpointing.initialise(model, audio=str(tmp_path / "garbage.pth"), visual=None)
    with pytest.raises(ConfigError, match="no such weights file"):
        checkpointing.initialise(model, audio=str(tmp_path / "missing.safetensors"), visual=None)


def test_freeze_audio_backbone_keeps_its_weights(toy, cache_dir, tmp_path):
    from avscene.nn.mil import loss_fn

    tr = Trainer(toy_config(toy, cache_dir, tmp_path / "run", freeze=("audio_backbone",)), log=quiet)
    tr.load_clips()
    before = {k: v.detach().clone() for k, v in tr.model.named_parameters()}
    stats = {k: v.clone() for k, v in tr.model.state_dict().items() if k.startswith("audio.vggish.") and "running" in k}
    trainable = [p for p in tr.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    tr.train_epoch(0, tr.model, opt, loss_fn(tr.mcfg))
    after = dict(tr.model.named_parameters())
    frozen = [k for k in before if k.startswith("audio.vggish.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(not after[k].requires_grad for k in frozen)
    state = tr.model.state_dict()
    assert stats and all(torch.equal(v, state[k]) for k, v in stats.items())  # BatchNorm statistics too
    assert tr.model.visual.training  # the rest did train
    moved = [k for k in before if not k.startswith("audio.vggish.") and not torch.equal(before[k], after[k])]
    assert any(k.startswith("audio.adapt.") for k in moved) and any(k.startswith("visual.") for k in moved)


def test_unknown_freeze_part_is_rejected(toy, tmp_path):
    with pytest.raises(ConfigError, match=r"--freeze: unknown part\(s\) \['audio_net'\]"):
        Trainer(toy_config(toy, tmp_path, tmp_path / "run", freeze=("audio_net",)), log=quiet)


def test_preprocess_overrides_reach_the_checkpoint(toy, cache_dir, tmp_path):
    fit(toy_config(toy, cache_dir, tmp_path / "run", epochs=1), log=quiet)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    pre = PreprocessConfig.from_dict(config["preprocess"])
    assert (pre.image_size, pre.boxes_per_frame) == (64, 4)
    assert config["labels"] == ["blue", "red"]
    assert config["model"]["embed_dim"] == 16


def test_checkpoint_names_no_directory_of_the_training_machine(toy, cache_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit(toy_config(toy, cache_dir, tmp_path / "run", epochs=1, augment_opts={"eq_db": 3.0}), log=quiet)
    text = (tmp_path / "run" / "config.json").read_text()
    assert str(tmp_path) not in text
    training = json.loads(text)["training"]
    assert not Path(training["manifest"]).is_absolute() and not Path(training["output"]).is_absolute()
    assert (tmp_path / training["manifest"]).resolve() == Path(toy).resolve()
    assert training["augment_opts"] == {"eq_db": 3.0}


def test_unknown_augmentation_setting_is_a_config_error(toy, cache_dir, tmp_path):
    with pytest.raises(ConfigError, match="eqdb"):
        Trainer(toy_config(toy, cache_dir, tmp_path / "run", augment_opts={"eqdb": 3.0}), log=quiet)


def test_init_model_starts_from_the_checkpoint_and_checks_it(toy, cache_dir, tmp_path):
    first = tmp_path / "first"
    fit(toy_config(toy, cache_dir, first, epochs=2), log=quiet)
    # the network, its config and its weights come from the checkpoint, the threshold is dropped
    tuned = Trainer(toy_config(toy, cache_dir, tmp_path / "tuned", init_model=str(first), model={},
                               preprocess={}), log=quiet)
    saved = load_file(str(first / "model.safetensors"))
    own = tuned.model.state_dict()
    assert saved.keys() == own.keys() and all(torch.equal(saved[k], own[k]) for k in saved)
    assert tuned.mcfg.threshold is None and tuned.mcfg.embed_dim == 16
    # fine-tuning keeps learning from there: its first epoch's loss is below the fresh run's first
    fit(toy_config(toy, cache_dir, tmp_path / "tuned", init_model=str(first), model={}, preprocess={},
                   epochs=1), log=quiet)
    assert log_epochs(tmp_path / "tuned")[0]["train_loss"] < log_epochs(first)[0]["train_loss"]
    with pytest.raises(ConfigError, match="variant"):  # the audio variant has no visual weights
        Trainer(toy_config(toy, cache_dir, tmp_path / "x", init_model=str(first), model={}, preprocess={},
                           variant="audio"), log=quiet)
    # a fusion change keeps every weight: avor starts from the async checkpoint's, strictly
    fused = Trainer(toy_config(toy, cache_dir, tmp_path / "avor", init_model=str(first), model={}, preprocess={},
                               variant="avor", aux_loss=0.5), log=quiet)
    assert fused.mcfg.variant == "avor" and fused.model.cfg.variant == "avor"
    own = fused.model.state_dict()
    assert saved.keys() == own.keys() and all(torch.equal(saved[k], own[k]) for k in saved)
    with pytest.raises(ConfigError, match="model-opt"):
        Trainer(toy_config(toy, cache_dir, tmp_path / "x", init_model=str(first)), log=quiet)


def _fine_tune(toy: Path, cache_dir: Path, output: Path, first: Path, model: dict) -> Trainer:
    """A trainer fine-tuning ``first`` with the ``model`` fields added, its clips loaded."""
    tr = Trainer(toy_config(toy, cache_dir, output, init_model=str(first), model=model, preprocess={}), log=quiet)
    tr.load_clips()
    return tr


def test_init_model_can_add_a_temporal_context_that_starts_from_the_checkpoints_scores(toy, cache_dir, tmp_path):
    first = tmp_path / "first"
    fit(toy_config(toy, cache_dir, first, epochs=1), log=quiet)
    plain = _fine_tune(toy, cache_dir, tmp_path / "a", first, {})
    ctx = _fine_tune(toy, cache_dir, tmp_path / "b", first, {"audio_context": [1, 2]})
    assert ctx.mcfg.audio_context == (1, 2) and ctx.model.audio_context is not None
    # the added part starts as the identity: the same hold-out scores as the checkpoint itself
    torch.testing.assert_close(ctx.holdout_scores()[0], plain.holdout_scores()[0])
    with pytest.raises(ConfigError, match="model-opt"):
        Trainer(toy_config(toy, cache_dir, tmp_path / "x", init_model=str(first), model={"embed_dim": 8},
                           preprocess={}), log=quiet)


def test_init_model_can_add_oicr_branches_that_train_and_then_choose_the_boxes(toy, cache_dir, tmp_path):
    from avscene.checkpoint.load import load_pretrained
    from avscene.tasks._pipeline import analyse
    from avscene.tasks.localize import LocalizeOptions, localize_from_analysis

    first = tmp_path / "first"
    fit(toy_config(toy, cache_dir, first, epochs=2), log=quiet)
    plain = _fine_tune(toy, cache_dir, tmp_path / "a", first, {})
    tr = _fine_tune(toy, cache_dir, tmp_path / "b", first, {"visual_refine": 2})
    # the branches only choose boxes: the video-level scores are the checkpoint's
    torch.testing.assert_close(tr.holdout_scores()[0], plain.holdout_scores()[0])
    start = {k: v.clone() for k, v in tr.model.state_dict().items() if k.startswith("visual_refiner.")}
    assert start
    out = tmp_path / "oicr"
    fit(toy_config(toy, cache_dir, out, init_model=str(first), model={"visual_refine": 2}, preprocess={},
                   epochs=2), log=quiet)
    assert all(np.isfinite(r["train_loss"]) for r in log_epochs(out))
    loaded = load_pretrained(str(out), device="cpu")  # strict: the branches are saved and declared
    assert loaded.config.visual_refine == 2
    trained = {k: v for k, v in loaded.model.state_dict().items() if k.startswith("visual_refiner.")}
    assert any(not torch.equal(trained[k], start[k]) for k in start)  # the OICR loss reached them
    clip = read_manifest(toy)[0].path
    a = analyse(clip, loaded)
    res = localize_from_analysis(Path(clip), a, loaded, LocalizeOptions(labels=("red",), box_mode="window", snap=False))
    c = loaded.labels.index("red")
    R, E = a.output.visual_R[..., c].numpy(), a.output.visual_E[..., c].numpy()  # (T, M)
    for det, t in zip(res.visual["red"], range(len(a.visual.times))):
        assert np.allclose(det.box, a.visual.boxes[t, int(np.argmax(R[t]))])
        assert det.score == pytest.approx(float(E[t, int(np.argmax(R[t]))]))


def test_negative_bags_get_no_label(toy, cache_dir, tmp_path):
    trainer = Trainer(toy_config(toy, cache_dir, tmp_path / "run", augment=True,
                                 augment_opts={"negative_prob": 1.0}), log=quiet)
    trainer.load_clips()
    clips = trainer.train_clips[:4]
    y = torch.ones(3, 4, len(trainer.class_names))  # (video labels, refined audio, refined visual)
    out, y_out = trainer._negatives(clips, y, np.random.default_rng(0))
    assert torch.all(y_out == 0) and torch.all(y == 1)  # the caller's targets are not modified
    assert all(not np.array_equal(o.audio[: len(c.audio)], c.audio) for o, c in zip(out, clips))
    kept, y_kept = trainer._negatives(clips, y, None)  # no generator: evaluation, nothing changes
    assert kept == clips and torch.equal(y_kept, y)


def test_mixed_bags_take_the_union_of_each_target(toy, cache_dir, tmp_path):
    """Bag mixing with refined targets: the video labels, the audio and the visual targets of a
    mixed bag are each the union of its two clips' (the mixture holds both soundtracks and both
    clips' frames); a bag left alone keeps its own."""
    trainer = Trainer(toy_config(toy, cache_dir, tmp_path / "run", augment=True, mix_prob=1.0, aux_loss=0.5,
                                 refine_labels=True), log=quiet)
    trainer.load_clips()
    n, C = len(trainer.train_clips), len(trainer.class_names)
    ya, yv = np.zeros((n, C), dtype=bool), np.zeros((n, C), dtype=bool)
    ya[:, 0], yv[:, 1] = True, True  # every clip: class 0 heard only, class 1 seen only
    trainer.modal_targets = (ya, yv)
    y_all = trainer._targets()
    assert y_all.shape == (3, n, C)
    mine = np.arange(2)
    own = torch.zeros(3, 2, C)  # the bags' own targets: nothing, so what they gain comes from the partner
    _, y = trainer._mixed([trainer.train_clips[i] for i in mine], own, np.random.default_rng(0))
    assert torch.all(y[1][:, 0] == 1) and torch.all(y[1][:, 1:] == 0)  # audio: the partner's audio targets
    assert torch.all(y[2][:, 1] == 1) and torch.all(y[2][:, [0]] == 0)  # visual: the partner's visual ones
    assert torch.all(y[0].sum(dim=1) >= 1)  # the video labels: the partner's (every toy clip has one)
    assert torch.all(own == 0)  # the caller's targets are not modified
    trainer_off = Trainer(toy_config(toy, cache_dir, tmp_path / "off", augment=True, mix_prob=0.0), log=quiet)
    _, kept = trainer_off._mixed([trainer.train_clips[i] for i in mine], own, np.random.default_rng(0))
    assert torch.equal(kept, own)


def test_robust_selection_keeps_the_epoch_best_on_the_pooled_holdout(toy, cache_dir, tmp_path):
    """--select robust: every epoch logs the hold-out clean, under training-family noise and on pure
    noise; the kept checkpoint is the epoch with the best pooled micro-F1 (ties: lower pooled loss),
    and --keep-epochs leaves each epoch's weights to compare."""
    from avscene.checkpoint.format import read_config

    out = tmp_path / "run"
    summary = fit(toy_config(toy, cache_dir, out, epochs=4, select="robust", keep_epochs=True), log=quiet)
    log = log_epochs(out)
    assert all({"noisy_micro_f1", "pure_alarm", "robust_micro_f1", "robust_loss"} <= set(r) for r in log)
    assert all(0.0 <= r["pure_alarm"] <= 1.0 for r in log)
    best = max(range(len(log)), key=lambda e: (log[e]["robust_micro_f1"], -log[e]["robust_loss"]))
    assert summary.best_epoch == best
    assert sorted(p.name for p in (out / "epochs").iterdir()) == [f"{e:02d}" for e in range(4)]
    assert same_weights(out / "model.safetensors", out / "epochs" / f"{best:02d}" / "model.safetensors")
    training = read_config(out)["training"]
    assert training["select"] == "robust" and "robust" in training["selection"]
    assert read_config(out)["model"]["threshold"] is not None  # calibrated on the pooled hold-out


def test_robust_pools_label_pure_noise_with_nothing(toy, cache_dir, tmp_path):
    trainer = Trainer(toy_config(toy, cache_dir, tmp_path / "run", select="robust"), log=quiet)
    trainer.load_clips()
    sets = trainer.holdout_sets()
    (clean, y), (noisy, yn), (pure, yp) = sets["clean"], sets["noisy"], sets["pure"]
    assert len(clean) == len(noisy) == len(pure) == N_CLIPS and np.array_equal(y, yn)
    assert y.sum() == N_CLIPS and yp.shape == y.shape and not yp.any()
    scores, labels = trainer.holdout_scores(pools=("clean", "noisy", "pure"))
    assert scores.shape == (3 * N_CLIPS, 2) and np.array_equal(labels, np.concatenate([y, yn, yp]))


def test_unknown_selection_is_a_config_error(toy, tmp_path):
    with pytest.raises(ConfigError, match="--select"):
        Trainer(toy_config(toy, tmp_path, tmp_path / "run", select="val_shift"), log=quiet)


def test_init_model_may_switch_on_band_norm_and_nothing_else_of_the_preprocessing(toy, cache_dir, tmp_path):
    from avscene.checkpoint.format import read_config

    first = tmp_path / "first"
    fit(toy_config(toy, cache_dir, first, epochs=1), log=quiet)
    tuned = tmp_path / "tuned"
    fit(toy_config(toy, cache_dir, tuned, init_model=str(first), model={}, preprocess={"band_norm": True},
                   epochs=1), log=quiet)
    assert read_config(tuned)["preprocess"]["band_norm"] is True
    assert read_config(tuned)["preprocess"]["image_size"] == read_config(first)["preprocess"]["image_size"]
    with pytest.raises(ConfigError, match="pre-opt"):
        Trainer(toy_config(toy, cache_dir, tmp_path / "x", init_model=str(first), model={},
                           preprocess={"image_size": 32}), log=quiet)


# ---- issue 30: temporal splice, the event head, the visual floor ---------------------------------


def test_spliced_bags_keep_each_halfs_labels_and_the_splice_point(toy, cache_dir, tmp_path):
    from avscene.proposals.audio import num_patches

    trainer = Trainer(toy_config(toy, cache_dir, tmp_path / "run", augment=True, splice_prob=1.0,
                                 augment_opts={"speed": 0.0, "shift_s": 0.0}), log=quiet)
    trainer.load_clips()
    y_all = trainer._targets()
    mine = np.arange(4)
    clips = [trainer.train_clips[i] for i in mine]
    bags, y, parts = trainer._spliced(clips, y_all[:, mine], np.random.default_rng(0))
    assert all(len(b) == 2 for b in bags)  # splice_prob 1: every bag has a partner
    labels = {id(c): trainer._targets()[0, k] for k, c in enumerate(trainer.train_clips)}
    for i, (first, second) in enumerate(bags):
        assert first is clips[i] or second is clips[i]  # the bag's own clip is one half, first or second
        torch.testing.assert_close(parts[i, 0], labels[id(first)])  # each half keeps its own clip's labels
        torch.testing.assert_close(parts[i, 1], labels[id(second)])
        assert not bool((parts[i, 0] * parts[i, 1]).any())  # disjoint labels
        torch.testing.assert_close(y[0, i], torch.maximum(parts[i, 0], parts[i, 1]))  # the bag: the union
    x, part = trainer._input_parts(bags, np.random.default_rng(1))
    for i, (first, second) in enumerate(bags):
        n0, n1 = (num_patches(len(c.audio), cfg=trainer.pre) for c in (first, second))
        assert part[i, : n0 + n1].tolist() == [0] * n0 + [1] * n1  # the splice point, where the halves meet
        assert int(x.audio_mask[i].sum()) == n0 + n1
        assert int(x.frame_mask[i].sum()) == len(first.frames) + len(second.frames)
    off = Trainer(toy_config(toy, cache_dir, tmp_path / "off", augment=True), log=quiet)
    off.train_clips = trainer.train_clips
    kept, y_kept, parts_off = off._spliced(clips, y_all[:, mine], np.random.default_rng(0))
    assert all(len(b) == 1 for b in kept) and torch.equal(y_kept, y_all[:, mine])
    assert torch.equal(parts_off[:, 0], y_all[0, mine]) and not parts_off[:, 1].any()


def test_init_model_can_add_an_event_head_that_trains_and_then_decides_the_events(toy, cache_dir, tmp_path):
    from avscene.checkpoint.load import load_pretrained
    from avscene.nn.model import event_scores
    from avscene.tasks._pipeline import analyse
    from avscene.tasks.classify import ClassifyOptions
    from avscene.tasks.localize import LocalizeOptions, localize_from_analysis

    first = tmp_path / "first"
    fit(toy_config(toy, cache_dir, first, epochs=1), log=quiet)
    plain = _fine_tune(toy, cache_dir, tmp_path / "a", first, {})
    tr = _fine_tune(toy, cache_dir, tmp_path / "b", first, {"event_head": True})
    # the head is beside the two-stream one: the video-level scores are the checkpoint's
    torch.testing.assert_close(tr.holdout_scores()[0], plain.holdout_scores()[0])
    start = {k: v.clone() for k, v in tr.model.state_dict().items() if k.startswith("audio_event.")}
    assert start
    out = tmp_path / "events"
    fit(toy_config(toy, cache_dir, out, init_model=str(first), model={"event_head": True}, preprocess={},
                   epochs=1, augment=True, splice_prob=0.5), log=quiet)
    loaded = load_pretrained(str(out), device="cpu")
    assert loaded.config.event_head
    trained = {k: v for k, v in loaded.model.state_dict().items() if k.startswith("audio_event.")}
    assert any(not torch.equal(trained[k], start[k]) for k in start)  # the event loss reached it
    clip = read_manifest(toy)[0].path
    a = analyse(clip, loaded)
    assert a.output.audio_event is not None and event_scores(a.output) is a.output.audio_event
    heard_anyway = ClassifyOptions(audio_threshold=-1e6)  # "red" is heard: its events are reported
    res = localize_from_analysis(Path(clip), a, loaded, LocalizeOptions(labels=("red",), classify=heard_anyway))
    c = loaded.labels.index("red")
    logits = a.output.audio_event[:, c].numpy()  # (P,) one TSP per window
    assert [s.score for s in res.audio["red"]] == pytest.approx(logits.tolist())
    assert next(p for p in res.classification.parse if p.label == "red").heard
    events = [(e.onset, e.offset) for e in res.events if e.label == "red"]
    centres = [(s.start + s.end) / 2 for s in res.audio["red"]]
    inside = [any(on <= t <= off for on, off in events) for t in centres]
    if (logits > 0).any():  # events: exactly the windows whose event logit is above 0
        assert inside == (logits > 0).tolist()
    else:  # none above: the best window alone
        assert inside == [i == int(np.argmax(logits)) for i in range(len(logits))]


def test_visual_floor_and_splice_are_refused_where_they_mean_nothing(toy, cache_dir, tmp_path):
    with pytest.raises(ConfigError, match="visual-floor"):
        Trainer(toy_config(toy, cache_dir, tmp_path / "a", variant="wsddn", visual_floor=1.0), log=quiet)
    with pytest.raises(ConfigError, match="visual-floor"):
        Trainer(toy_config(toy, cache_dir, tmp_path / "b", variant="audio", visual_floor=1.0), log=quiet)
    with pytest.raises(ConfigError, match="splice-prob"):
        Trainer(toy_config(toy, cache_dir, tmp_path / "c", splice_prob=1.5), log=quiet)
