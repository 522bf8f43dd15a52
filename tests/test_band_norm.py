"""Front-end normalisation (``PreprocessConfig.band_norm``, issue 19): each mel band's mean over the
input is subtracted from every audio proposal, in training, inference (a first pass over the
file's audio) and separation alike, so a recording's fixed gain or equaliser cancels."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import torch

from avscene.config import PreprocessConfig
from avscene.proposals.audio import BandMeans, audio_proposals, band_means, band_offset, normalise_bands

SR = 16000
ON = PreprocessConfig(band_norm=True)


def _chord(seconds: float = 2.88, seed: int = 0) -> np.ndarray:
    """Three decaying notes over a little noise: every band well above the log floor. 2.88 s fill
    5 TSPs with no padded second (a padded tail stays at the floor whatever the gain)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f * t) * np.exp(-((t % 1.0) * 3)) for f in (220.0, 660.0, 1760.0))
    return (0.05 * x + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def test_band_means_of_pieces_are_those_of_the_whole():
    patches = np.random.default_rng(0).normal(size=(7, 96, 64)).astype(np.float32)
    acc = BandMeans()
    assert acc.value() is None
    for piece in (patches[:2], None, patches[2:3], patches[3:]):
        acc.push(piece)
    np.testing.assert_allclose(acc.value(), patches.mean(axis=(0, 1)), rtol=1e-5, atol=1e-6)
    assert band_means(patches).shape == (64,)


def test_off_by_default_and_the_identity_when_off():
    x = _chord()
    assert PreprocessConfig().band_norm is False and band_offset(x, cfg=PreprocessConfig()) is None
    patches = audio_proposals(x, cfg=PreprocessConfig()).patches
    assert normalise_bands(patches, None) is patches


@pytest.mark.parametrize("gain", [0.25, 4.0])
def test_a_recordings_gain_cancels(gain):
    x = _chord()
    ref = normalise_bands(audio_proposals(x, cfg=ON).patches, band_offset(x, cfg=ON))
    out = normalise_bands(audio_proposals(x * gain, cfg=ON).patches, band_offset(x * gain, cfg=ON))
    raw_shift = np.abs(audio_proposals(x * gain, cfg=ON).patches - audio_proposals(x, cfg=ON).patches).mean()
    assert raw_shift > 1.0  # without the normalisation the input moves by ~2 log(gain)
    assert np.abs(out - ref).mean() < 0.05 * raw_shift


def test_a_fixed_equaliser_mostly_cancels():
    from avscene.train.augment import random_eq

    x = _chord()
    y = random_eq(x, np.random.default_rng(3), max_db=12.0, points=6, sr=SR)
    p_x, p_y = audio_proposals(x, cfg=ON).patches, audio_proposals(y, cfg=ON).patches
    n_x, n_y = normalise_bands(p_x, band_offset(x, cfg=ON)), normalise_bands(p_y, band_offset(y, cfg=ON))
    assert np.abs(n_y - n_x).mean() < 0.25 * np.abs(p_y - p_x).mean()


def _band_norm_checkpoint(tiny_model_dir, folder):
    shutil.copytree(tiny_model_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["preprocess"]["band_norm"] = True
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("chunk_seconds", [None, 0.7])
def test_inference_subtracts_the_whole_files_band_means(tiny_model_dir, clips, tmp_path, chunk_seconds):
    from avscene.checkpoint.load import load_pretrained
    from avscene.io.decode import read_audio
    from avscene.tasks._pipeline import analyse

    loaded = load_pretrained(str(_band_norm_checkpoint(tiny_model_dir, tmp_path / "bn")))
    fed = []  # the audio patches the network is given, piece by piece
    embed = loaded.model.forward_features
    loaded.model.forward_features = lambda x: (fed.append(x.audio[0].clone()) if x.audio is not None else None,
                                               embed(x))[1]
    path = clips["audio_only"]
    audio = read_audio(path, sample_rate=SR)
    analyse(path, loaded, chunk_seconds=chunk_seconds)
    raw = audio_proposals(audio, cfg=loaded.preprocess).patches
    offset = band_offset(audio, cfg=loaded.preprocess)  # the whole file's, even when it comes in pieces
    assert np.abs(offset).max() > 1.0  # subtracting it changes the input
    np.testing.assert_allclose(torch.cat(fed).numpy(), normalise_bands(raw, offset), rtol=1e-4, atol=1e-4)


def test_each_audio_variant_gets_the_band_means_of_its_own_audio(tiny_model_dir, clips, tmp_path):
    from avscene.checkpoint.load import load_pretrained
    from avscene.io.decode import read_audio
    from avscene.tasks._pipeline import AudioVariant, analyse_variants

    loaded = load_pretrained(str(_band_norm_checkpoint(tiny_model_dir, tmp_path / "bn")))
    fed = []
    embed = loaded.model.forward_features
    loaded.model.forward_features = lambda x: (fed.append(x.audio[0].clone()) if x.audio is not None else None,
                                               embed(x))[1]
    noise = np.random.default_rng(0).standard_normal(10 * SR).astype(np.float32)
    edits = [lambda a, start: 4 * a, lambda a, start: a + 0.3 * noise[start:start + len(a)]]
    analyse_variants(clips["audio_only"], loaded, [AudioVariant(edit=e) for e in edits], chunk_seconds=math.inf)
    audio = read_audio(clips["audio_only"], sample_rate=SR)
    assert len(fed) == 4  # each variant's patches of the chunk, then the rest at the end, in turn
    for k, edit in enumerate(edits):
        got = torch.cat(fed[k::2])
        x = edit(audio, 0)
        want = normalise_bands(audio_proposals(x, cfg=loaded.preprocess).patches, band_offset(x, cfg=loaded.preprocess))
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)


def test_training_bags_are_normalised_over_the_clip():
    from avscene.train.augment import clip_tensors
    from avscene.train.data import CachedClip

    clip = CachedClip(audio=_chord(), frames=None, boxes=None, frame_times=None)
    on = clip_tensors(clip, ON, None, None)["audio"].numpy()
    off = clip_tensors(clip, dataclasses.replace(ON, band_norm=False), None, None)["audio"].numpy()
    np.testing.assert_allclose(on.mean(axis=(0, 1)), 0.0, atol=1e-4)  # every band centred over the clip
    np.testing.assert_allclose(on, off - off.mean(axis=(0, 1)), atol=1e-4)


def test_ncp_scores_see_the_mixtures_band_means():
    from avscene.proposals.nmf import NMFOptions
    from avscene.separation.methods import score_with

    x = _chord(2.0)
    fed = {}
    for cfg in (ON, PreprocessConfig()):
        seen = []
        score_with(x, lambda p, seen=seen: (seen.append(p.clone()), torch.zeros(len(p), 2))[1], cfg=cfg,
                   nmf=NMFOptions(k=3, seed=0, max_iter=5))
        fed[cfg.band_norm] = torch.cat(seen)  # (K*P, 96, 64) patches the scorer was given
    on_patches, off_patches = fed[True], fed[False]
    offset = torch.from_numpy(band_offset(x, cfg=ON))
    torch.testing.assert_close(on_patches, off_patches - offset, rtol=1e-4, atol=1e-4)
