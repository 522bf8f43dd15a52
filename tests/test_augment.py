"""Training augmentations: shapes, identities, label sets, and the auxiliary loss."""

import numpy as np
import pytest
import torch

from avscene.nn.mil import hinge_loss, l2_normalise
from avscene.nn.model import ModelOutput
from avscene.train.augment import eq_curve, mix_bags, random_eq
from avscene.train.data import CachedClip
from avscene.train.loop import training_loss

SR = 16000


def test_random_eq_of_zero_db_is_the_identity():
    x = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    assert random_eq(x, np.random.default_rng(1), max_db=0, points=6, sr=SR) is x


def test_random_eq_changes_the_level_of_a_tone_within_range_and_keeps_its_pitch():
    """Measured on tones (whole FFT bins): the output is the same tone (same frequency, nothing
    added elsewhere), its level changed by at most ``max_db``; and the change is random: it
    differs between draws and between frequencies."""
    t = np.arange(SR) / SR
    max_db = 9.0
    gains_db = {}
    for freq in (200.0, 1000.0, 5000.0):  # whole cycles in 1 s: exact FFT bins
        x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        for seed in range(4):
            y = random_eq(x, np.random.default_rng(seed), max_db=max_db, points=6, sr=SR)
            assert y.shape == x.shape and y.dtype == np.float32
            spectrum = np.abs(np.fft.rfft(y))  # (SR / 2 + 1,): bin k is k Hz
            assert np.argmax(spectrum) == int(freq)  # the pitch is kept
            assert spectrum[int(freq)] ** 2 > 0.999 * (spectrum**2).sum()  # no other frequency added
            gains_db[freq, seed] = 20 * np.log10(np.sqrt(np.mean(y**2) / np.mean(x**2)))
    g = np.array(list(gains_db.values()))
    assert np.all(np.abs(g) <= max_db + 1e-3)
    assert np.ptp([gains_db[1000.0, s] for s in range(4)]) > 1.0  # draws differ
    assert np.ptp([gains_db[f, 0] for f in (200.0, 1000.0, 5000.0)]) > 0.5  # a curve, not one gain


def test_eq_curve_passes_through_its_control_points():
    gains = np.array([-6.0, 0.0, 3.0, 9.0])
    anchors = np.geomspace(50.0, SR / 2, 4)
    np.testing.assert_allclose(20 * np.log10(eq_curve(anchors, gains, sr=SR)), gains, atol=1e-4)


def _clip(n_audio, value, t_frames):
    frames = np.full((t_frames, 3, 8, 8), value, np.uint8)
    boxes = np.tile(np.array([0, 0, 4, 4], np.float32), (t_frames, 2, 1))
    return CachedClip(audio=np.full(n_audio, value / 255, np.float32), frames=frames, boxes=boxes,
                      frame_times=np.arange(t_frames) + 0.5)


def test_mix_bags_sums_audio_within_range_and_appends_frames():
    a, b = _clip(1000, 100, 3), _clip(800, 200, 2)
    m = mix_bags(a, b, np.random.default_rng(0), level_db=0.0)  # 0 dB: plain sum
    assert m.audio.shape == (1000,) and np.abs(m.audio).max() <= 1.0
    # the sum clips (100+200)/255 > 1 over the overlap, so it is scaled back to peak 1
    np.testing.assert_allclose(m.audio[:800], 1.0, atol=1e-6)
    np.testing.assert_allclose(m.audio[800:], (100 / 255) / ((300) / 255), atol=1e-6)
    assert m.frames.shape == (5, 3, 8, 8) and m.boxes.shape == (5, 2, 4) and m.frame_times.shape == (5,)
    assert (m.frames[:3] == 100).all() and (m.frames[3:] == 200).all()


def test_training_loss_adds_each_modalitys_own_hinge_loss():
    torch.manual_seed(0)
    a, v = torch.randn(4, 5), torch.randn(4, 5)
    y = (torch.rand(4, 5) > 0.5).float()
    fused = (l2_normalise(a) + l2_normalise(v)) * 3.0
    out = ModelOutput(scores=fused, audio_scores=a, visual_scores=v)
    base = training_loss(out, y, hinge_loss, scale=3.0, aux=0.0)
    assert torch.isclose(base, hinge_loss(fused, y))
    with_aux = training_loss(out, y, hinge_loss, scale=3.0, aux=0.5)
    own = (hinge_loss(l2_normalise(a) * 3.0, y) + hinge_loss(l2_normalise(v) * 3.0, y)) / 2
    assert torch.isclose(with_aux, base + 0.5 * own)
    one = ModelOutput(scores=fused, audio_scores=a)  # one modality: nothing to add
    assert torch.isclose(training_loss(one, y, hinge_loss, scale=3.0, aux=0.5), hinge_loss(fused, y))


def _run(mask_1d):
    """Indices of a 1-d mask, checked to be one contiguous run."""
    idx = np.flatnonzero(mask_1d)
    assert len(idx) == 0 or idx[-1] - idx[0] == len(idx) - 1
    return idx


def test_spec_mask_covers_at_most_the_widths_it_is_given():
    from avscene.train.augment import spec_mask

    patches = np.random.default_rng(0).random((6, 96, 64)).astype(np.float32) + 1.0
    patches[0, 0, 0] = floor = 0.0  # the fill value; patches 1..5 do not hold it
    for seed in range(20):
        out = spec_mask(patches, np.random.default_rng(seed), 8, 24)
        assert out.shape == patches.shape and out.dtype == patches.dtype
        assert (out[out != patches] == floor).all()
        masked = (out == floor)[1:]  # (5, 96, 64)
        band = _run(masked.all(axis=(0, 1)))  # mel channels masked in every frame of every patch
        assert len(band) <= 8
        rest = np.delete(masked, band, axis=2)  # (5, 96, 64 - len(band))
        for p in range(5):
            frames = _run(rest[p].all(axis=1))
            assert len(frames) <= 24
            # nothing else is masked: a frame is masked in all its remaining channels or in none
            assert (rest[p].any(axis=1) == rest[p].all(axis=1)).all()
    assert spec_mask(patches, np.random.default_rng(0), 0, 0) is patches


def test_augment_options_from_dict_overrides_and_rejects_unknown_or_mistyped():
    import pytest

    from avscene.errors import ConfigError
    from avscene.train.augment import AugmentOptions

    opts = AugmentOptions.from_dict({"eq_db": 12, "time_mask": 24, "noise_snr_db": [5, 30]})
    assert opts.eq_db == 12.0 and isinstance(opts.eq_db, float) and opts.time_mask == 24
    assert opts.noise_snr_db == (5.0, 30.0) and opts.speed == AugmentOptions().speed
    for bad in ({"eqdb": 1}, {"time_mask": 2.5}, {"eq_db": "loud"}, {"noise_snr_db": [5]}, {"flip_prob": True}):
        with pytest.raises(ConfigError):
            AugmentOptions.from_dict(bad)


def _square_frames(t: int = 3, h: int = 60, w: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Black frames with a white square at x 30..50, y 20..40, its box and a box elsewhere."""
    frames = np.zeros((t, 3, h, w), np.uint8)
    frames[:, :, 20:40, 30:50] = 255
    boxes = np.tile(np.array([[30, 20, 50, 40], [0, 0, 10, 10]], np.float32), (t, 1, 1))
    return frames, boxes


def test_zoom_moves_the_boxes_with_the_object_they_hold():
    from avscene.train.augment import zoom_frames

    frames, boxes = _square_frames()
    for seed in range(20):
        x, b = zoom_frames(torch.from_numpy(frames).float(), boxes, np.random.default_rng(seed), 0.4)
        assert x.shape == frames.shape and b.shape == boxes.shape
        white = x[0, 0] > 127  # (h, w) the square, resized
        x0, y0, x1, y1 = (int(round(v)) for v in b[0, 0])
        # the square's box still holds the square (bilinear resizing blurs its edge by a pixel)
        assert white[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1].sum() >= 0.99 * white.sum()
        assert white[y0:y1, x0:x1].sum() >= 0.9 * (x1 - x0) * (y1 - y0)  # and little else
        assert np.all(b[..., 2] > b[..., 0]) and np.all(b[..., 3] > b[..., 1])
        assert (b >= 0).all() and (b[..., [0, 2]] <= 80).all() and (b[..., [1, 3]] <= 60).all()


def test_blur_smooths_the_frames_and_leaves_the_boxes():
    from avscene.train.augment import AugmentOptions, augment_frames

    frames, boxes = _square_frames()
    plain = dict(flip_prob=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    sharp, _ = augment_frames(frames, boxes, np.random.default_rng(0), AugmentOptions(**plain))
    blurred, b = augment_frames(frames, boxes, np.random.default_rng(0), AugmentOptions(**plain, blur=4.0))
    assert torch.equal(sharp, torch.from_numpy(frames).float())  # every jitter off: the frames as they were
    np.testing.assert_array_equal(b, boxes)

    def edge(x):  # energy of the horizontal differences
        return float(((x[..., 1:] - x[..., :-1]) ** 2).sum())

    assert edge(blurred) < 0.8 * edge(sharp)
    assert abs(float(blurred.mean()) - float(sharp.mean())) < 0.02 * float(sharp.mean())


# ---- issue 30: hide-and-seek, temporal splice ----------------------------------------------------


def test_hide_and_seek_hides_whole_cells_with_the_mean_colour_deterministically_by_seed():
    from avscene.nn.inputs import IMAGENET_MEAN
    from avscene.train.augment import hide_patches

    x = torch.rand(4, 3, 50, 70) * 255  # cells of 16 px: a 4 x 5 grid, the last row and column cut short
    a = hide_patches(x, np.random.default_rng(7), prob=0.5, patch=16)
    assert torch.equal(a, hide_patches(x, np.random.default_rng(7), prob=0.5, patch=16))
    assert not torch.equal(a, hide_patches(x, np.random.default_rng(8), prob=0.5, patch=16))
    fill = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255
    hidden = (a == fill).all(dim=1)  # (T, h, w): pixels holding the mean colour
    kept = (a == x).all(dim=1)
    assert (hidden | kept).all()
    n_cells = 0
    for t in range(4):
        for i in range(0, 50, 16):
            for j in range(0, 70, 16):
                cell = hidden[t, i : i + 16, j : j + 16]
                assert cell.all() or not cell.any()  # a cell is hidden whole or not at all
                n_cells += int(cell.all())
    assert 0.3 < n_cells / (4 * 4 * 5) < 0.7
    assert len({int(hidden[t].sum()) for t in range(4)}) > 1  # each frame draws its own cells
    assert torch.equal(hide_patches(x, np.random.default_rng(7), prob=0.0, patch=16), x)


def test_hide_and_seek_in_augment_frames_keeps_the_boxes():
    from avscene.train.augment import AugmentOptions, augment_frames

    frames, boxes = _square_frames()
    plain = dict(flip_prob=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    x, b = augment_frames(frames, boxes, np.random.default_rng(0),
                          AugmentOptions(**plain, hide_prob=0.5, hide_patch=10))
    np.testing.assert_array_equal(b, boxes)
    assert not torch.equal(x, torch.from_numpy(frames).float())
    x2, _ = augment_frames(frames, boxes, np.random.default_rng(0),
                           AugmentOptions(**plain, hide_prob=0.5, hide_patch=10))
    assert torch.equal(x, x2)


def test_splice_bags_keeps_each_half_in_order_and_marks_the_splice_point():
    from avscene.train.augment import audio_parts, splice_bags

    def bag(n_win, n_frames, value):
        return {"audio": torch.full((n_win, 96, 64), float(value)),
                "audio_segment": torch.arange(n_win) // 2,
                "images": torch.full((n_frames, 3, 8, 8), float(value)),
                "boxes": torch.full((n_frames, 2, 4), float(value)),
                "frame_segment": torch.arange(n_frames)}

    a, b = bag(5, 3, 1), bag(4, 2, 2)  # a's last segment is 2 (windows) and 2 (frames)
    s = splice_bags(a, b)
    assert s["audio"].shape[0] == 9 and (s["audio"][:5] == 1).all() and (s["audio"][5:] == 2).all()
    assert s["audio_part"].tolist() == [0] * 5 + [1] * 4  # the splice point: after a's 5 windows
    assert s["audio_segment"].tolist() == [0, 0, 1, 1, 2, 3, 3, 4, 4]
    assert s["frame_segment"].tolist() == [0, 1, 2, 3, 4]
    assert (s["images"][:3] == 1).all() and (s["images"][3:] == 2).all() and s["boxes"].shape == (5, 2, 4)
    # in a batch, a one-clip bag is all part 0 (padding too)
    assert audio_parts([s, a]).tolist() == [[0] * 5 + [1] * 4, [0] * 9]
    with pytest.raises(ValueError):
        splice_bags(a, {**b, "images": torch.zeros(2, 3, 8, 9)})


def test_training_loss_adds_the_visual_floor_on_real_frames_and_the_event_loss():
    from avscene.nn.mil import event_loss, floor_loss
    from avscene.nn.model import ModelInput

    torch.manual_seed(1)
    B, T, M, P, C = 2, 3, 4, 5, 3
    fused = torch.randn(B, C)
    A = torch.randn(B, T, M, C)
    ev = torch.randn(B, P, C)
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    frame_mask = torch.tensor([[True, True, False], [True, False, False]])
    audio_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    x = ModelInput(frame_mask=frame_mask, audio_mask=audio_mask)
    out = ModelOutput(scores=fused, visual_A=A)
    base = hinge_loss(fused, y)
    got = training_loss(out, y, hinge_loss, scale=1.0, x=x, visual_floor=0.5)
    real = frame_mask[:, :, None].expand(B, T, M).reshape(B, T * M)
    assert torch.isclose(got, base + 0.5 * floor_loss(A.reshape(B, T * M, C), real, y))
    A_pad = A.clone()
    A_pad[0, 2] = 50.0  # a padded frame never reaches the floor
    assert torch.isclose(training_loss(out._replace(visual_A=A_pad), y, hinge_loss, scale=1.0, x=x,
                                       visual_floor=0.5), got)
    assert torch.isclose(training_loss(out, y, hinge_loss, scale=1.0, x=x), base)  # off by default
    with_events = ModelOutput(scores=fused, audio_event=ev)
    part = torch.tensor([[0, 0, 1, 1, 1], [0] * 5])
    part_y = torch.tensor([[[1.0, 0, 0], [0, 0, 1.0]], [[0, 1.0, 1.0], [0, 0, 0]]])
    got = training_loss(with_events, y, hinge_loss, scale=1.0, x=x, events=(0.25, part, part_y))
    assert torch.isclose(got, base + 0.25 * event_loss(ev, audio_mask, part, part_y))
    whole = training_loss(with_events, y, hinge_loss, scale=1.0, x=x)  # no parts: the bag's labels, weight 1
    assert torch.isclose(whole, base + event_loss(ev, audio_mask, None, y[:, None]))
