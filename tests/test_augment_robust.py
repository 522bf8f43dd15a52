"""Robustness augmentations (issue 19): backgrounds from the noise bank, background-only
negatives, pitch and warp in the training path, and none of it at evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avscene.config import PreprocessConfig
from avscene.dsp import noise as bank
from avscene.train.augment import (AugmentOptions, augment_audio, background_negative, clip_tensors,
                                     holdout_backgrounds)
from avscene.train.data import CachedClip

SR = 16000
QUIET = dict(gain_db=0.0, speed=0.0, noise_prob=0.0, shift_s=0.0, eq_db=0.0)  # every other step off


def tone_clip(seconds: float = 2.0, frames: int = 2) -> CachedClip:
    t = np.arange(int(seconds * SR)) / SR
    audio = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    img = np.zeros((frames, 3, 32, 32), np.uint8)
    img[:, 0, 8:24, 8:24] = 255  # a red square: an "object"
    boxes = np.tile(np.array([[8, 8, 24, 24], [0, 0, 32, 32]], np.float32), (frames, 1, 1))
    return CachedClip(audio=audio, frames=img, boxes=boxes, frame_times=np.arange(frames) + 0.5)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 12.0])
def test_background_is_added_at_the_snr_drawn(snr):
    clip = tone_clip()
    opts = AugmentOptions(**QUIET, background_prob=1.0, background_snr_db=(snr, snr))
    out = augment_audio(clip.audio, np.random.default_rng(0), opts, sr=SR)
    added = out - clip.audio
    measured = 10 * np.log10(np.mean(clip.audio.astype(np.float64) ** 2) / np.mean(added.astype(np.float64) ** 2))
    assert abs(measured - snr) < 0.2  # (clipping to [-1, 1] may shave a little at -5 dB)
    assert np.std(added) > 0


def test_background_off_leaves_the_audio_alone():
    clip = tone_clip()
    out = augment_audio(clip.audio, np.random.default_rng(0), AugmentOptions(**QUIET), sr=SR)
    np.testing.assert_array_equal(out, clip.audio)


def test_background_negative_has_no_trace_of_the_clip():
    clip = tone_clip()
    neg = background_negative(clip, np.random.default_rng(1), sr=SR)
    assert neg.audio.shape == clip.audio.shape and neg.frames.shape == clip.frames.shape
    # the 440-Hz tone is gone: its bin holds no more energy than its neighbourhood
    spec = np.abs(np.fft.rfft(neg.audio))
    k = int(440 * len(neg.audio) / SR)
    assert spec[k] < 5 * np.median(spec[k - 200 : k + 200])
    rms_db = 20 * np.log10(np.sqrt(np.mean(neg.audio**2)))
    assert -31.0 < rms_db < -9.0
    # every frame is one flat colour: no object to see
    assert all(np.ptp(neg.frames[t].reshape(3, -1), axis=1).max() == 0 for t in range(len(neg.frames)))
    np.testing.assert_array_equal(neg.boxes, clip.boxes)


def test_evaluation_input_ignores_every_augmentation():
    """Without a generator (validation, calibration) the bag is the plain one, whatever the options."""
    pre = PreprocessConfig(image_size=32, boxes_per_frame=2)
    clip = tone_clip()
    strong = AugmentOptions(background_prob=1.0, negative_prob=1.0, pitch_semitones=4.0, pitch_prob=1.0,
                            warp=0.2, freq_mask=16, time_mask=24)
    plain = clip_tensors(clip, pre, None, None)
    evaluated = clip_tensors(clip, pre, None, strong)
    for k in plain:
        torch.testing.assert_close(evaluated[k], plain[k])
    augmented = clip_tensors(clip, pre, np.random.default_rng(0), strong)
    assert not torch.allclose(augmented["audio"], plain["audio"])


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x.astype(np.float64))))


def test_holdout_backgrounds_at_0_db_from_training_families_only_and_the_same_every_time(spied):
    clips = [CachedClip(audio=(tone_clip().audio * (0.01 + 0.002 * i)).astype(np.float32), frames=tone_clip().frames,
                        boxes=tone_clip().boxes, frame_times=tone_clip().frame_times)
             for i in range(len(bank.TRAIN_FAMILIES) + 2)]
    noisy, pure = holdout_backgrounds(clips, seed=3, sr=SR)
    assert len(noisy) == len(pure) == len(clips)
    for c, n, p in zip(clips, noisy, pure):
        added = n.audio.astype(np.float64) - c.audio
        assert 10 * np.log10(_power(c.audio) / _power(added)) == pytest.approx(0.0, abs=0.05)  # SNR 0 dB
        assert n.frames is c.frames and np.array_equal(n.boxes, c.boxes)  # the picture is the clip's
        assert _power(p.audio) == pytest.approx(_power(c.audio), rel=0.02)  # pure noise at the clip's level
        assert p.frames is None and len(p.audio) == len(c.audio)  # audio only
    assert set(spied) <= set(bank.TRAIN_FAMILIES) and not set(spied) & set(bank.HELDOUT_FAMILIES)
    assert set(spied) >= set(bank.TRAIN_FAMILIES) - {"mix_train"}  # one clip per family: all of them used
    again, _ = holdout_backgrounds(clips, seed=3, sr=SR)
    other, _ = holdout_backgrounds(clips, seed=4, sr=SR)
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(noisy, again))
    assert not any(np.array_equal(a.audio, b.audio) for a, b in zip(noisy, other))


def test_holdout_backgrounds_leave_a_clip_without_audio_as_it_is():
    silent_video = CachedClip(audio=None, frames=tone_clip().frames, boxes=tone_clip().boxes,
                              frame_times=tone_clip().frame_times)
    noisy, pure = holdout_backgrounds([silent_video, tone_clip()], seed=0, sr=SR)
    assert noisy[0] is silent_video and len(pure) == 1
