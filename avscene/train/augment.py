"""Training augmentation and batching of cached clips into ``ModelInput`` tensors.

Augmentation targets what changes between recordings, so that a model trained on
one collection generalises to others: level, pitch/tempo and noise of the audio,
alignment of the audio windows, timbre (a random smooth equaliser curve, so that
other samples of the same instrument still match), mirror image, lighting and
colour saturation of the frames. Bag mixing (``mix_bags``) combines two clips
into one bag whose labels are exactly the union of theirs, which is what a
multiple-instance bag means: it teaches overlapping sources and keeps every
bag correctly labelled. Temporal splicing (``splice_bags``) joins two clips with disjoint labels
one after the other: each half keeps its own clip's labels, which teaches an event head that a
label holds for part of a bag. Hide-and-seek (``hide_patches``) hides random grid cells of the
frames, so that the visual stream cannot rely on one part of an object.
"""

from __future__ import annotations

import math

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from avscene.config import PreprocessConfig
from avscene.dsp import noise as noise_bank
from avscene.dsp.noise import mix_at_snr, training_noise
from avscene.dsp.timbre import pitch_shift, warp_frequency
from avscene.nn.inputs import IMAGENET_MEAN, normalise_images, segment_of_times
from avscene.nn.model import ModelInput
from avscene.train.data import CachedClip


@dataclass(frozen=True)
class AugmentOptions:
    """Random perturbations applied to each training bag (all off for validation)."""

    gain_db: float = 6.0  # uniform gain in ±gain_db
    speed: float = 0.08  # resampling factor in [1 - speed, 1 + speed] (pitch and tempo)
    noise_snr_db: tuple[float, float] = (10.0, 40.0)  # white noise added at this SNR range
    noise_prob: float = 0.5  # probability of adding noise
    shift_s: float = 0.48  # random start offset of the audio windows, seconds
    eq_db: float = 9.0  # random equaliser: smooth gain curve within ±eq_db over log frequency
    eq_points: int = 6  # control points of that curve (log-spaced, 50 Hz to Nyquist)
    freq_mask: int = 8  # SpecAugment: one band mask of up to this many mel bands per bag
    time_mask: int = 0  # SpecAugment: one mask of up to this many frames in each patch (0: off)
    background_prob: float = 0.0  # probability of adding a background from the noise bank's training families
    background_snr_db: tuple[float, float] = (-5.0, 20.0)  # its SNR range over the clip (dsp.noise.mix_at_snr)
    negative_prob: float = 0.0  # probability that a bag becomes a background-only negative (no label)
    pitch_semitones: float = 0.0  # pitch shift without tempo change, uniform in ±pitch_semitones
    pitch_prob: float = 0.5  # probability of that shift
    warp: float = 0.0  # frequency-axis warp of the log-mel patches: middle moved by up to ±warp of the bands
    flip_prob: float = 0.5  # horizontal mirror of frames and boxes
    brightness: float = 0.3  # multiplicative brightness in [1 - b, 1 + b]
    contrast: float = 0.3  # contrast around the mean in [1 - c, 1 + c]
    saturation: float = 0.3  # blend with greyscale in [1 - s, 1 + s]
    zoom: float = 0.0  # random crop keeping [1 - zoom, 1] of each side, resized back to the frame (boxes follow)
    blur: float = 0.0  # Gaussian blur of the frames, sigma uniform in [0, blur] pixels (0: off)
    hide_prob: float = 0.0  # hide-and-seek: each grid cell of each frame hidden with this probability (0: off)
    hide_patch: int = 32  # its grid cell side, pixels of the resized frame

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentOptions":
        """Defaults overridden by ``d``; an unknown field or a value of the wrong type is a ConfigError."""
        from avscene.errors import ConfigError

        names = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ConfigError(f"unknown augmentation setting(s) {unknown}; known: {sorted(names)}")
        out = {}
        for k, v in d.items():
            default = getattr(cls, k)
            if isinstance(default, tuple):
                if not isinstance(v, (list, tuple)) or len(v) != len(default):
                    raise ConfigError(f"augmentation setting {k} takes {len(default)} numbers, got {v!r}")
                v = tuple(float(x) for x in v)
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"augmentation setting {k} takes a number, got {v!r}")
            elif isinstance(default, int) and not float(v).is_integer():
                raise ConfigError(f"augmentation setting {k} takes an integer, got {v!r}")
            else:
                v = type(default)(v)
            out[k] = v
        return cls(**out)


def augment_audio(audio: np.ndarray, rng: np.random.Generator, opts: AugmentOptions, *, sr: int) -> np.ndarray:
    """Pitch, speed (linear-interpolation resampling), start shift, EQ, gain, background and noise.
    (N,) → (N',)."""
    x = audio.astype(np.float32)
    if opts.pitch_semitones > 0 and rng.random() < opts.pitch_prob:
        x = pitch_shift(x, float(rng.uniform(-opts.pitch_semitones, opts.pitch_semitones)))
    if opts.speed > 0:
        factor = rng.uniform(1 - opts.speed, 1 + opts.speed)
        n_out = max(1, int(round(len(x) / factor)))
        x = np.interp(np.arange(n_out) * factor, np.arange(len(x)), x).astype(np.float32)
    if opts.shift_s > 0:
        x = x[int(rng.uniform(0, opts.shift_s) * sr):]
    if opts.eq_db > 0:
        x = random_eq(x, rng, max_db=opts.eq_db, points=opts.eq_points, sr=sr)
    if opts.background_prob > 0 and rng.random() < opts.background_prob:
        x = mix_at_snr(x, training_noise(len(x), sr=sr, rng=rng), float(rng.uniform(*opts.background_snr_db)))
    x = x * np.float32(10 ** (rng.uniform(-opts.gain_db, opts.gain_db) / 20))
    if rng.random() < opts.noise_prob:
        rms = float(np.sqrt(np.mean(x**2)) + 1e-8)
        snr = rng.uniform(*opts.noise_snr_db)
        x = x + rng.standard_normal(len(x)).astype(np.float32) * np.float32(rms / 10 ** (snr / 20))
    return np.clip(x, -1.0, 1.0)


def eq_curve(freqs: np.ndarray, gains_db: np.ndarray, *, sr: int) -> np.ndarray:
    """Linear gain at ``freqs`` (Hz) of a curve through ``gains_db`` at log-spaced points 50 Hz..sr/2."""
    anchors = np.geomspace(50.0, sr / 2, len(gains_db))
    db = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(anchors), gains_db)
    return (10 ** (db / 20)).astype(np.float32)


def random_eq(audio: np.ndarray, rng: np.random.Generator, *, max_db: float, points: int,
              sr: int) -> np.ndarray:
    """Filter by a random smooth equaliser curve (zero phase, FFT domain). (N,) → (N,).

    The curve changes the spectral envelope (timbre) and leaves the pitch and timing, which
    carry the class, alone. ``max_db = 0`` is the identity.
    """
    if max_db <= 0 or len(audio) < 2:
        return audio
    gains = rng.uniform(-max_db, max_db, points)
    spec = np.fft.rfft(audio)
    spec *= eq_curve(np.fft.rfftfreq(len(audio), 1 / sr), gains, sr=sr)
    return np.fft.irfft(spec, n=len(audio)).astype(np.float32)


def mix_bags(a: CachedClip, b: CachedClip, rng: np.random.Generator, *, level_db: float = 6.0) -> CachedClip:
    """One bag holding two clips: audio summed (``b`` at ±level_db relative gain, the sum
    scaled back into [-1, 1] if it clips), frames and their boxes concatenated in time.
    The bag's labels are the union of both clips' labels (the caller's business)."""
    audio = None
    if a.audio is not None and b.audio is not None:
        n = max(len(a.audio), len(b.audio))
        audio = np.zeros(n, np.float32)
        audio[: len(a.audio)] += a.audio
        audio[: len(b.audio)] += b.audio * np.float32(10 ** (rng.uniform(-level_db, level_db) / 20))
        peak = float(np.abs(audio).max(initial=0.0))
        if peak > 1.0:
            audio /= np.float32(peak)
    frames = boxes = times = None
    if a.frames is not None and b.frames is not None and a.frames.shape[1:] == b.frames.shape[1:] \
            and a.boxes.shape[1:] == b.boxes.shape[1:]:
        frames = np.concatenate([a.frames, b.frames])
        boxes = np.concatenate([a.boxes, b.boxes])
        times = np.concatenate([a.frame_times, b.frame_times])
    elif a.frames is not None:
        frames, boxes, times = a.frames, a.boxes, a.frame_times
    return CachedClip(audio=audio if audio is not None else a.audio, frames=frames, boxes=boxes, frame_times=times)


def background_negative(clip: CachedClip, rng: np.random.Generator, *, sr: int) -> CachedClip:
    """A bag with nothing to find: the audio replaced by a background of the noise bank's training
    families (as long as the clip's audio, at a random level), every frame by one flat colour with
    the clip's boxes kept. Its target is "no class": it teaches that a sound texture the
    classes never make, and a picture without objects, are not evidence of any class."""
    audio = None
    if clip.audio is not None:
        level = np.float32(10 ** (rng.uniform(-30.0, -10.0) / 20))  # RMS -30..-10 dBFS, like the clips' backgrounds
        audio = np.clip(training_noise(len(clip.audio), sr=sr, rng=rng) * level, -1.0, 1.0).astype(np.float32)
    frames = None
    if clip.frames is not None:
        colour = rng.integers(0, 256, size=(1, 3, 1, 1), dtype=np.uint8)
        frames = np.broadcast_to(colour, clip.frames.shape).copy()  # (T, 3, h, w)
    return CachedClip(audio=audio, frames=frames, boxes=clip.boxes, frame_times=clip.frame_times)


def holdout_background(audio: np.ndarray, i: int, *, seed: int, sr: int,
                       snr_db: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The ``i``-th hold-out clip's audio under unfamiliar sound (training families only):
    ``(noisy, pure)``, the audio with a background of family ``TRAIN_FAMILIES[i % n]`` (seeded by
    ``(seed, i)``) at ``snr_db`` over the audio's own power, and that background alone at the
    audio's RMS. One rule for model selection (:func:`holdout_backgrounds`) and for the fused
    threshold's robust calibration (``train.calibrate.calibrate_fused``)."""
    family = noise_bank.TRAIN_FAMILIES[i % len(noise_bank.TRAIN_FAMILIES)]
    background = noise_bank.noise(family, len(audio), sr=sr, rng=np.random.default_rng([seed, i]))  # unit RMS
    power = float(np.mean(np.square(audio, dtype=np.float64)))
    level = np.float32(np.sqrt(power) if power > 0 else noise_bank.SILENT_RMS)
    mixed = mix_at_snr(audio, background, snr_db)
    return (np.clip(mixed, -1.0, 1.0).astype(np.float32),
            np.clip(background * level, -1.0, 1.0).astype(np.float32))


def holdout_backgrounds(clips: Sequence[CachedClip], *, seed: int, sr: int,
                        snr_db: float = 0.0) -> tuple[list[CachedClip], list[CachedClip]]:
    """The hold-out clips as model selection sees them under unfamiliar sound (training families only).

    Returns ``(noisy, pure)``: each clip with a background of the noise bank's training families
    at ``snr_db`` over its own audio, and each clip's pure-noise version (the same background at
    the clip's RMS, frames left out: an audio-only input, as the noise-stress protocol scores pure
    noise), by :func:`holdout_background`. Clip ``i`` gets family ``TRAIN_FAMILIES[i % n]`` seeded
    by ``(seed, i)``, so every epoch, rank and resumed run sees the same sets, and every training
    family is used.
    """
    noisy, pure = [], []
    for i, clip in enumerate(clips):
        if clip.audio is None or not len(clip.audio):
            noisy.append(clip)
            continue
        mixed, alone = holdout_background(clip.audio, i, seed=seed, sr=sr, snr_db=snr_db)
        noisy.append(CachedClip(audio=mixed, frames=clip.frames, boxes=clip.boxes, frame_times=clip.frame_times))
        pure.append(CachedClip(audio=alone, frames=None, boxes=None, frame_times=None))
    return noisy, pure


def augment_frames(frames: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
                   opts: AugmentOptions) -> tuple[torch.Tensor, np.ndarray]:
    """Mirror, zoom, blur + photometric jitter. (T, 3, h, w) uint8, (T, M, 4) → float [0,255] tensor, boxes."""
    x = torch.from_numpy(frames).float()  # (T, 3, h, w)
    if rng.random() < opts.flip_prob:
        w = x.shape[-1]
        x = x.flip(-1)
        boxes = boxes.copy()
        boxes[..., [0, 2]] = w - boxes[..., [2, 0]]
    if opts.zoom > 0:
        x, boxes = zoom_frames(x, boxes, rng, opts.zoom)
    if opts.blur > 0:
        from torchvision.transforms.v2.functional import gaussian_blur

        sigma = float(rng.uniform(0.0, opts.blur))
        if sigma > 0.1:
            x = gaussian_blur(x, kernel_size=2 * math.ceil(3 * sigma) + 1, sigma=sigma)
    x = x * rng.uniform(1 - opts.brightness, 1 + opts.brightness)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * rng.uniform(1 - opts.contrast, 1 + opts.contrast) + mean
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * rng.uniform(1 - opts.saturation, 1 + opts.saturation) + grey
    return hide_patches(x.clamp(0, 255), rng, prob=opts.hide_prob, patch=opts.hide_patch), boxes


def hide_patches(x: torch.Tensor, rng: np.random.Generator, *, prob: float, patch: int) -> torch.Tensor:
    """Hide-and-seek (Singh & Lee, ICCV 2017): each frame is cut into a grid of ``patch``-pixel
    cells and each cell, independently in each frame, is filled with the ImageNet mean colour
    (zero after normalisation) with probability ``prob``. With the most telling part of an object
    hidden in some frames, the visual stream has to find the others too, so its evidence, and
    the chosen box, spread over the whole object. Boxes and labels are unchanged (a bag keeps
    its labels: the object is rarely hidden in every frame). (T, 3, h, w) float [0, 255] → same.
    """
    if prob <= 0 or patch <= 0:
        return x
    T, _, h, w = x.shape
    gh, gw = -(-h // patch), -(-w // patch)
    cells = torch.from_numpy(rng.random((T, gh, gw)) < prob)  # (T, gh, gw)
    hidden = cells.repeat_interleave(patch, 1).repeat_interleave(patch, 2)[:, :h, :w]  # (T, h, w)
    fill = (torch.tensor(IMAGENET_MEAN, dtype=x.dtype) * 255).view(1, 3, 1, 1)
    return torch.where(hidden[:, None], fill, x)


def zoom_frames(x: torch.Tensor, boxes: np.ndarray, rng: np.random.Generator,
                zoom: float) -> tuple[torch.Tensor, np.ndarray]:
    """One random crop of every frame, keeping a fraction in ``[1 - zoom, 1]`` of each side (same
    aspect), resized back to ``(h, w)``; the boxes are mapped into it and clipped to the frame
    (at least one pixel wide and high). (T, 3, h, w) float, (T, M, 4) → same shapes."""
    T, _, h, w = x.shape
    keep = float(rng.uniform(1.0 - zoom, 1.0))
    ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = x[:, :, y0 : y0 + ch, x0 : x0 + cw]
    out = torch.nn.functional.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
    sx, sy = w / cw, h / ch
    b = np.asarray(boxes, dtype=np.float64).copy()
    b[..., [0, 2]] = np.clip((b[..., [0, 2]] - x0) * sx, 0, w)
    b[..., [1, 3]] = np.clip((b[..., [1, 3]] - y0) * sy, 0, h)
    b[..., 2] = np.maximum(b[..., 2], np.minimum(b[..., 0] + 1, w))  # a box cropped away keeps one pixel
    b[..., 0] = np.minimum(b[..., 0], b[..., 2] - 1)
    b[..., 3] = np.maximum(b[..., 3], np.minimum(b[..., 1] + 1, h))
    b[..., 1] = np.minimum(b[..., 1], b[..., 3] - 1)
    return out, b.astype(np.asarray(boxes).dtype)


def spec_mask(patches: np.ndarray, rng: np.random.Generator, width: int, time_width: int = 0) -> np.ndarray:
    """SpecAugment with the bag minimum as fill: one random band of up to ``width`` mel channels
    across the bag, and in each patch one run of up to ``time_width`` frames. (P, 96, 64) → same."""
    if width <= 0 and time_width <= 0:
        return patches
    out = patches.copy()
    floor = patches.min()
    if width > 0:
        w = int(rng.integers(0, width + 1))
        f0 = int(rng.integers(0, patches.shape[-1] - w + 1))
        out[..., f0 : f0 + w] = floor
    if time_width > 0:
        for p in range(out.shape[0]):
            w = int(rng.integers(0, time_width + 1))
            t0 = int(rng.integers(0, out.shape[1] - w + 1))
            out[p, t0 : t0 + w] = floor
    return out


def clip_tensors(clip: CachedClip, pre: PreprocessConfig, rng: np.random.Generator | None,
                 opts: AugmentOptions | None) -> dict[str, torch.Tensor]:
    """One bag's tensors, augmented when ``rng`` and ``opts`` are given."""
    from avscene.proposals.audio import band_offset, normalise_bands
    from avscene.proposals.bags import audio_bag

    out: dict[str, torch.Tensor] = {}
    if clip.audio is not None:
        audio = clip.audio if rng is None else augment_audio(clip.audio, rng, opts, sr=pre.sample_rate)
        ap = audio_bag(audio, cfg=pre)
        patches = normalise_bands(ap.patches, band_offset(audio, cfg=pre))  # the identity unless pre.band_norm
        if rng is not None:
            if opts.warp > 0:
                patches = warp_frequency(patches, float(rng.uniform(-opts.warp, opts.warp)))
            patches = spec_mask(patches, rng, opts.freq_mask, opts.time_mask)
        out["audio"] = torch.from_numpy(np.ascontiguousarray(patches, np.float32))
        out["audio_segment"] = segment_of_times(ap.times.mean(axis=1))
    if clip.frames is not None:
        if rng is None:
            x, boxes = torch.from_numpy(clip.frames).float(), clip.boxes
        else:
            x, boxes = augment_frames(clip.frames, clip.boxes, rng, opts)
        out["images"] = normalise_images(x)
        out["boxes"] = torch.from_numpy(np.asarray(boxes, np.float32))
        out["frame_segment"] = segment_of_times(clip.frame_times)
    return out


def splice_bags(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Temporal splice: the tensors of two clips' bags (``clip_tensors``) joined in time, the
    second after the first. Its audio windows, frames and boxes are the first clip's followed by the
    second's, the second's 1-s segments start after the first's last, and ``audio_part`` (P,) long
    says which clip each window comes from (0, 1): the splice point is known exactly (no window
    straddles it), so each half can keep its own clip's labels, and it is ours, not an annotation
    (weak supervision still). A modality only one of them has is left out; frames of different
    sizes cannot be joined (the caller pairs clips whose frames match)."""
    def last_segment(b: dict[str, torch.Tensor]) -> int:
        segs = [b[k] for k in ("audio_segment", "frame_segment") if k in b and b[k].numel()]
        return int(max(int(t.max()) for t in segs)) if segs else -1

    offset = last_segment(first) + 1
    out: dict[str, torch.Tensor] = {}
    if "audio" in first and "audio" in second:
        out["audio"] = torch.cat([first["audio"], second["audio"]])
        out["audio_segment"] = torch.cat([first["audio_segment"], second["audio_segment"] + offset])
        out["audio_part"] = torch.cat([torch.zeros(len(first["audio"]), dtype=torch.long),
                                       torch.ones(len(second["audio"]), dtype=torch.long)])
    if "images" in first and "images" in second:
        if first["images"].shape[1:] != second["images"].shape[1:] or first["boxes"].shape[1:] != second["boxes"].shape[1:]:
            raise ValueError(f"cannot splice frames {tuple(first['images'].shape[1:])} and "
                             f"{tuple(second['images'].shape[1:])}")
        out["images"] = torch.cat([first["images"], second["images"]])
        out["boxes"] = torch.cat([first["boxes"], second["boxes"]])
        out["frame_segment"] = torch.cat([first["frame_segment"], second["frame_segment"] + offset])
    return out


def audio_parts(bags: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
    """(B, P) long: the part of each audio window of bags of ``clip_tensors`` / ``splice_bags``
    (0 for a bag of one clip and for padding)."""
    return _pad_stack([b.get("audio_part", torch.zeros(len(b["audio"]), dtype=torch.long)) for b in bags])[0]


def _pad_stack(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack along a new batch dim, zero-padding every dim to the largest (frames of different
    sizes are padded bottom/right, which leaves box coordinates valid); returns (stacked, mask (B, L))."""
    shape = [max(t.shape[d] for t in items) for d in range(items[0].dim())]
    out = items[0].new_zeros((len(items), *shape))
    mask = torch.zeros(len(items), shape[0], dtype=torch.bool)
    for i, t in enumerate(items):
        out[(i, *[slice(0, n) for n in t.shape])] = t
        mask[i, : t.shape[0]] = True
    return out, mask


def collate(bags: Sequence[dict[str, torch.Tensor]], *, use_audio: bool, use_visual: bool) -> ModelInput:
    """Pad bags of different lengths into one ``ModelInput`` with masks."""
    kw: dict[str, torch.Tensor | None] = {}
    if use_audio and all("audio" in b for b in bags):
        kw["audio"], kw["audio_mask"] = _pad_stack([b["audio"] for b in bags])
        kw["audio_segment"], _ = _pad_stack([b["audio_segment"] for b in bags])
    if use_visual and all("images" in b for b in bags):
        kw["images"], kw["frame_mask"] = _pad_stack([b["images"] for b in bags])
        kw["boxes"], _ = _pad_stack([b["boxes"] for b in bags])
        kw["frame_segment"], _ = _pad_stack([b["frame_segment"] for b in bags])
    return ModelInput(**kw)
