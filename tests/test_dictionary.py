"""``separate --method dictionary``: supervised NMF with dictionaries stored in the checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avscene.cli.app import main
from avscene.separation.dictionary import Dictionaries, learn_dictionaries, separate_with_dictionaries
from avscene.errors import CheckpointError
from avscene.checkpoint.parts import save_dictionaries
from avscene.checkpoint.format import DICTIONARIES_NAME
from avscene.tasks.models import load_model
from avscene.testing.media import write_audio
from avscene.evaluation.metrics.separation import sdr

SR = 16000
N_FREQ = 513  # the separation STFT: 1024-point frames


def harmonic(f0: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(a * np.sin(2 * np.pi * f0 * (i + 1) * t + rng.uniform(0, 2 * np.pi))
               for i, a in enumerate((1.0, 0.5, 0.25))).astype(np.float32)


def gate(n: int, start: float, end: float) -> np.ndarray:
    g = np.zeros(n, np.float32)
    g[int(start * SR):int(end * SR)] = 1.0
    return g


@pytest.fixture
def known(rng):
    """Weakly labelled clips (a 440-Hz 'violin' part of the time, a 300-Hz 'drum' part of the time,
    over a steady 1250-Hz hum) and a test mixture whose violin part is known."""
    hum = lambda s: 0.3 * harmonic(1250.0, s, rng)  # noqa: E731
    train = {"violin": [harmonic(440.0, 4, rng) * gate(4 * SR, 1, 3) + hum(4) for _ in range(2)],
             "drum": [harmonic(300.0, 4, rng) * gate(4 * SR, 0.5, 2.5) + hum(4) for _ in range(2)]}
    violin = harmonic(440.0, 4, rng) * gate(4 * SR, 0.5, 3.5)
    mixture = (violin + hum(4)).astype(np.float32)
    return train, violin, mixture


def test_dictionary_separation_recovers_a_known_source_and_adds_up(known) -> None:
    train, violin, mixture = known
    d = learn_dictionaries(train, classes=["violin", "drum"], class_atoms=4, background_atoms=4)
    source, residual = separate_with_dictionaries(mixture, d, "violin")
    assert source.shape == residual.shape == mixture.shape and source.dtype == np.float32
    np.testing.assert_allclose(source + residual, mixture, atol=1e-4)  # the masks sum to one
    assert sdr(source, violin) - sdr(mixture, violin) > 5.0
    assert sdr(source, violin) > 8.0


def _with_dictionaries(tiny_model_dir: Path, tmp_path: Path, rng) -> tuple[Path, Dictionaries]:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    labels = json.loads((folder / "config.json").read_text())["labels"]
    d = Dictionaries(classes={c: rng.random((N_FREQ, 3)).astype(np.float32) for c in labels},
                     background=rng.random((N_FREQ, 2)).astype(np.float32), n_fft=1024, hop=256)
    save_dictionaries(folder, d)
    return folder, d


def test_checkpoint_round_trip_is_strict(tiny_model_dir, tmp_path, rng) -> None:
    folder, d = _with_dictionaries(tiny_model_dir, tmp_path, rng)
    config = json.loads((folder / "config.json").read_text())
    assert config["separation"]["dictionary"] == {"n_fft": 1024, "hop": 256, "class_atoms": 3,
                                                  "background_atoms": 2}
    back = load_model(str(folder), device="cpu").separation.dictionaries
    assert back is not None and sorted(back.classes) == sorted(d.classes)
    for c in d.classes:
        np.testing.assert_array_equal(back.classes[c], d.classes[c])
    np.testing.assert_array_equal(back.background, d.background)
    assert load_model(str(tiny_model_dir), device="cpu").separation.dictionaries is None  # none declared: none loaded

    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / DICTIONARIES_NAME))
    del tensors["class.drum"]
    save_file(tensors, str(folder / DICTIONARIES_NAME))
    with pytest.raises(CheckpointError, match=r"missing \['class.drum'\]"):
        load_model(str(folder), device="cpu")
    (folder / DICTIONARIES_NAME).unlink()
    with pytest.raises(CheckpointError, match="declares dictionaries"):
        load_model(str(folder), device="cpu")


def _mixture_file(tmp_path: Path) -> Path:
    return write_audio(tmp_path / "mix.wav", duration=2.0, freq=440.0)


def test_cli_separates_with_the_dictionaries_and_source_plus_residual_is_the_input(
        capsys, tiny_model_dir, tmp_path, rng) -> None:
    folder, _ = _with_dictionaries(tiny_model_dir, tmp_path, rng)
    mix = _mixture_file(tmp_path)
    out, rest = tmp_path / "violin.wav", tmp_path / "rest.wav"
    code = main(["separate", str(mix), "-m", str(folder), "--label", "violin", "-o", str(out),
                 "--residual", str(rest), "--json"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    rec = json.loads(stdout)[0]
    assert rec["method"] == "dictionary" and rec["alpha"] == [] and rec["k"] == 5  # auto: 3 + 2 atoms
    x, _ = sf.read(mix, dtype="float32")
    s, _ = sf.read(out, dtype="float32")
    r, _ = sf.read(rest, dtype="float32")
    assert len(s) == len(r) == len(x)
    np.testing.assert_allclose(s + r, x, atol=2e-4)
    assert 0.0 < float(np.sum(s**2)) < float(np.sum(x**2))  # some, not all, of the input

    code = main(["separate", str(mix), "-m", str(folder), "--label", "violin", "-o", str(tmp_path / "t.wav"),
                 "--threshold", "0.1", "--json"])  # the ranking's option: auto picks ncp
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(stdout)[0]["method"] == "ncp"


def test_dictionary_method_needs_dictionaries(capsys, tiny_model_dir, tmp_path) -> None:
    mix = _mixture_file(tmp_path)
    code = main(["separate", str(mix), "-m", str(tiny_model_dir), "--method", "dictionary", "--label", "violin",
                 "-o", str(tmp_path / "x.wav")])
    _, err = capsys.readouterr()
    assert code == 2 and "train-dictionaries" in err and not (tmp_path / "x.wav").exists()
    code = main(["separate", str(mix), "-m", str(tiny_model_dir), "--label", "violin",
                 "-o", str(tmp_path / "y.wav"), "--json"])  # auto without dictionaries: the paper's method
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(stdout)[0]["method"] == "ncp"


def test_train_dictionaries_command_stores_them_in_the_checkpoint(capsys, tiny_model_dir, tmp_path, rng) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    rows = ["clip,labels"]
    for label, f0 in (("violin", 440.0), ("drum", 300.0), ("car", 700.0)):
        for i in range(2):  # heard 1 s of 3, over a hum every clip has (weak labels, as in avbench)
            x = 0.5 * harmonic(f0, 3, rng) * gate(3 * SR, 1, 2) + 0.2 * harmonic(1250.0, 3, rng)
            sf.write(tmp_path / f"{label}{i}.wav", x / 2, SR)
            rows.append(f"{label}{i}.wav,{label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    code = main(["train-dictionaries", str(folder), str(tmp_path / "labels.csv"), "--clips-per-class", "2"])
    _, err = capsys.readouterr()
    assert code == 0, err
    d = load_model(str(folder), device="cpu").separation.dictionaries
    assert d is not None and sorted(d.classes) == ["car", "drum", "violin"]
    peak = {c: int(np.argmax(d.classes[c].sum(axis=1))) for c in d.classes}
    assert peak["violin"] == round(440.0 / (SR / 1024)) and peak["drum"] == round(300.0 / (SR / 1024))


def test_dictionaries_file_gets_the_default_mode(tiny_model_dir, tmp_path, rng) -> None:
    import os

    folder, _ = _with_dictionaries(tiny_model_dir, tmp_path, rng)
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / DICTIONARIES_NAME).stat().st_mode & 0o777 == 0o666 & ~umask
