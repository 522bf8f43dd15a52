"""``separate --method hybrid``: the mean of the mask network's and the dictionaries' masks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from avscene.cli.app import main
from avscene.separation.dictionary import Dictionaries, learn_dictionaries
from avscene.errors import CheckpointError
from avscene.checkpoint.parts import save_dictionaries, save_mask_net
from avscene.tasks.models import load_model
from avscene.nn.masknet import MaskNet, MaskNetConfig
from avscene.separation.methods import DictionaryStrategy, HybridStrategy, MaskStrategy
from avscene.testing.media import write_audio
from avscene.testing.models import record_default_method
from avscene.evaluation.metrics.separation import sdr

SR = 16000


def harmonic(f0: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(a * np.sin(2 * np.pi * f0 * (i + 1) * t + rng.uniform(0, 2 * np.pi))
               for i, a in enumerate((1.0, 0.5, 0.25))).astype(np.float32)


def _net(classes: int, seed: int = 0) -> MaskNet:
    torch.manual_seed(seed)
    net = MaskNet(MaskNetConfig(num_classes=classes, hidden=16, blocks=2))
    with torch.no_grad():
        net.film.weight.normal_(0, 0.5)  # the class matters
    return net.eval()


def test_hybrid_is_the_mean_of_the_two_estimates_and_adds_up(rng) -> None:
    """The STFT is linear, so averaging the masks averages the two methods' sources; the violin of a
    generated mixture is recovered better than by the mixture itself, and source + residual = input."""
    hum = lambda s: 0.3 * harmonic(1250.0, s, rng)  # noqa: E731
    gate = np.zeros(4 * SR, np.float32)
    gate[SR:3 * SR] = 1.0
    train = {"violin": [harmonic(440.0, 4, rng) * gate + hum(4) for _ in range(2)],
             "drum": [harmonic(300.0, 4, rng) * gate + hum(4) for _ in range(2)]}
    dicts = learn_dictionaries(train, classes=["violin", "drum"], class_atoms=4, background_atoms=4)
    violin = harmonic(440.0, 4, rng)
    mixture = (violin + hum(4)).astype(np.float32)
    dictionary, _ = DictionaryStrategy(dicts, "violin")(mixture)
    for seed in range(5):  # untrained networks differ: the claims must hold for each, not for a lucky one
        net = _net(2, seed)
        hybrid, ranking = HybridStrategy(net, dicts, 0, "violin")(mixture)
        masked, _ = MaskStrategy(net, 0)(mixture)
        assert ranking is None and hybrid.shape == (2, len(mixture))
        np.testing.assert_allclose(hybrid[0] + hybrid[1], mixture, atol=1e-5)
        np.testing.assert_allclose(hybrid[0], 0.5 * (masked[0] + dictionary[0]), atol=1e-4)
        # the violin is recovered (measured 6-11 dB above the mixture over these seeds)
        assert sdr(hybrid[0], violin) > sdr(mixture, violin) + 3.0, seed
        # an untrained network is a poor half: the dictionaries alone do better, the mean lies between
        assert sdr(masked[0], violin) < sdr(hybrid[0], violin) < sdr(dictionary[0], violin), seed


def test_hybrid_refuses_a_separator_and_dictionaries_on_different_stfts(rng) -> None:
    from avscene.errors import UsageError

    dicts = Dictionaries(classes={"a": rng.random((257, 2)).astype(np.float32)},
                         background=rng.random((257, 2)).astype(np.float32), n_fft=512, hop=128)
    with pytest.raises(UsageError, match="one STFT"):
        HybridStrategy(_net(1), dicts, 0, "a")


def _with_both(tiny_model_dir: Path, tmp_path: Path, rng, *, dictionaries: bool = True) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    labels = json.loads((folder / "config.json").read_text())["labels"]
    save_mask_net(folder, _net(len(labels), seed=2), {"steps": 0})
    if dictionaries:
        save_dictionaries(folder, Dictionaries(
            classes={c: rng.random((513, 3)).astype(np.float32) for c in labels},
            background=rng.random((513, 2)).astype(np.float32), n_fft=1024, hop=256))
    return folder


def test_cli_auto_is_hybrid_when_the_model_has_both(capsys, tiny_model_dir, tmp_path, rng) -> None:
    folder = _with_both(tiny_model_dir, tmp_path, rng)
    mix_file = write_audio(tmp_path / "mix.wav", duration=2.0, freq=440.0)
    out, rest = tmp_path / "violin.wav", tmp_path / "rest.wav"
    code = main(["separate", str(mix_file), "-m", str(folder), "--label", "violin", "-o", str(out),
                 "--residual", str(rest), "--json"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(stdout)[0]["method"] == "hybrid"
    x, _ = sf.read(mix_file, dtype="float32")
    s, _ = sf.read(out, dtype="float32")
    r, _ = sf.read(rest, dtype="float32")
    np.testing.assert_allclose(s + r, x, atol=1e-5)
    record_default_method(folder, "dictionary")  # a measured default wins over the order
    code = main(["separate", str(mix_file), "-m", str(folder), "--label", "violin", "-o", str(out), "--json",
                 "--force"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(stdout)[0]["method"] == "dictionary"
    record_default_method(folder, "hybrid")
    assert load_model(str(folder), device="cpu").separation.default_method == "hybrid"


def test_hybrid_needs_both_parts(capsys, tiny_model_dir, tmp_path, rng) -> None:
    folder = _with_both(tiny_model_dir, tmp_path, rng, dictionaries=False)
    mix_file = write_audio(tmp_path / "mix.wav", duration=2.0, freq=440.0)
    code = main(["separate", str(mix_file), "-m", str(folder), "--method", "hybrid", "--label", "violin",
                 "-o", str(tmp_path / "x.wav")])
    _, err = capsys.readouterr()
    assert code == 2 and "train-dictionaries" in err and not (tmp_path / "x.wav").exists()
    record_default_method(folder, "hybrid")  # a default the checkpoint cannot run is refused on load
    with pytest.raises(CheckpointError, match="no separation.dictionary"):
        load_model(str(folder), device="cpu")
