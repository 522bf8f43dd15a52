"""From numpy proposals to the network's input tensors.

One place turns decoded frames, EdgeBoxes boxes and log-mel patches into a
``ModelInput``, for inference (``tasks``) and training (``train``) alike, so the
two can never preprocess differently.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from avscene.nn.model import ModelInput

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision ImageNet normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)
# Frames resized per call: the float copy of 8 frames of 1280x720 is 88 MB, of a minute 663 MB.
RESIZE_BATCH = 8


def resize_scale(height: int, width: int, *, image_size: int) -> float:
    """Scale factor that maps the frame's shorter side to ``image_size`` pixels."""
    return image_size / min(height, width)


def frames_to_uint8_tensor(frames: np.ndarray, *, image_size: int) -> tuple[torch.Tensor, float]:
    """Resize frames so their shorter side is ``image_size`` (aspect kept).

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        image_size: target length of the shorter side.

    Returns:
        (T, 3, h, w) uint8 tensor and the scale factor applied to pixel coordinates.
    """
    T, H, W, _ = frames.shape
    scale = resize_scale(H, W, image_size=image_size)
    h, w = max(1, round(H * scale)), max(1, round(W * scale))
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (T, 3, H, W)
    if (h, w) == (H, W):
        return x, scale
    out = torch.empty((T, 3, h, w), dtype=torch.uint8)  # (T, 3, h, w)
    for i in range(0, T, RESIZE_BATCH):  # each frame is resized on its own: batching changes nothing
        y = F.interpolate(x[i:i + RESIZE_BATCH].float(), size=(h, w), mode="bilinear",
                          antialias=scale < 1, align_corners=False)
        out[i:i + RESIZE_BATCH] = y.round().clamp(0, 255).to(torch.uint8)
    return out, scale


def normalise_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float ImageNet-normalised (..., 3, H, W)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    y = x.to(torch.float32, copy=True)  # one float copy, then in place: no extra temporaries
    return y.div_(255.0).sub_(mean).div_(std)


def segment_of_times(times: np.ndarray) -> torch.Tensor:
    """1-s segment index of each instant (see ``avscene.config``)."""
    return torch.from_numpy(np.floor(np.asarray(times, dtype=np.float64)).astype(np.int64))


def single_input(
    *,
    patches: np.ndarray | None,
    patch_times: np.ndarray | None,
    frames: np.ndarray | None,
    frame_times: np.ndarray | None,
    boxes: np.ndarray | None,
    image_size: int,
    device: str | torch.device = "cpu",
) -> tuple[ModelInput, float]:
    """Build a batch-of-one ``ModelInput`` for one clip.

    Args:
        patches: (P, 96, 64) log-mel patches or None (no audio).
        patch_times: (P, 2) start/end seconds of each patch.
        frames: (T, H, W, 3) uint8 frames or None (no video).
        frame_times: (T,) seconds.
        boxes: (T, M, 4) boxes in original frame pixels.
        image_size: shorter side of the network's frames.
        device: where the tensors go.

    Returns:
        The input and the frame scale factor (network pixels per frame pixel).
    """
    audio = audio_seg = images = net_boxes = frame_seg = None
    scale = 1.0
    if patches is not None:
        audio = torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32))[None]  # (1, P, 96, 64)
        centres = np.asarray(patch_times).mean(axis=1)
        audio_seg = segment_of_times(centres)[None]  # (1, P)
    if frames is not None:
        x, scale = frames_to_uint8_tensor(frames, image_size=image_size)
        images = normalise_images(x)[None]  # (1, T, 3, h, w)
        net_boxes = torch.from_numpy(np.asarray(boxes, dtype=np.float32) * scale)[None]  # (1, T, M, 4)
        frame_seg = segment_of_times(frame_times)[None]  # (1, T)
    x = ModelInput(
        audio=_to(audio, device),
        audio_segment=_to(audio_seg, device),
        images=_to(images, device),
        boxes=_to(net_boxes, device),
        frame_segment=_to(frame_seg, device),
    )
    return x, scale


def _to(t: torch.Tensor | None, device: str | torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device)
