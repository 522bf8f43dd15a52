"""RoIAlign in plain torch (the semantics of ``torchvision.ops.roi_align(..., aligned=True)``).

Importing ``torchvision.ops`` imports all of torchvision and ``torch._dynamo`` (about 1 s),
more than a cold ``avscene classify`` spends on its work; this module keeps that cost out
of every command. ``tests/test_model.py`` checks it against torchvision's kernel.

Per RoI bin, ``sampling_ratio`` x ``sampling_ratio`` points are read by bilinear
interpolation and averaged. Like torchvision: a point more than one pixel outside the map
reads 0, a point within one pixel outside is clamped to the border, and coordinates are
shifted by half a pixel (``aligned=True``: pixel centres at integer + 0.5).
"""

from __future__ import annotations

import torch
from torch import Tensor

ALIGNED_OFFSET = 0.5  # aligned=True: a box edge at pixel x lies at feature coordinate x * scale - 0.5


def _axis(coord: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bilinear taps along one axis. (K, L) coordinates -> low/high indices and weights, each (K, L)."""
    valid = (coord >= -1.0) & (coord <= size)
    c = coord.clamp(min=0.0)
    low = c.floor().long().clamp(max=size - 1)
    edge = low >= size - 1
    high = torch.where(edge, low, low + 1)
    c = torch.where(edge, low.to(c.dtype), c)
    frac = (c - low.to(c.dtype)) * valid
    return low, high, (1.0 - (c - low.to(c.dtype))) * valid, frac


def roi_align(fmap: Tensor, rois: Tensor, *, output_size: int, spatial_scale: float, sampling_ratio: int) -> Tensor:
    """Pool each RoI to ``output_size`` x ``output_size`` cells.

    Args:
        fmap: (N, C, H, W) feature maps.
        rois: (K, 5) rows ``(image index, x0, y0, x1, y1)`` in input pixels.
        output_size: k, cells per side.
        spatial_scale: feature cells per input pixel.
        sampling_ratio: s > 0, sample points per cell side.

    Returns:
        (K, C, k, k) pooled features.
    """
    N, C, H, W = fmap.shape
    K, k, s = rois.shape[0], output_size, sampling_ratio
    if K == 0:
        return fmap.new_zeros(0, C, k, k)
    b = rois[:, 0].long()  # (K,)
    start = rois[:, 1:3] * spatial_scale - ALIGNED_OFFSET  # (K, 2) x0, y0
    size = rois[:, 3:5] * spatial_scale - ALIGNED_OFFSET - start  # (K, 2) width, height
    # sample j of an axis (j = cell * s + i) sits at (cell + (i + 0.5) / s) cells = (j + 0.5) / s
    unit = (torch.arange(k * s, device=fmap.device, dtype=fmap.dtype) + 0.5) / s  # (L,), L = k * s
    xs = start[:, :1] + unit * (size[:, :1] / k)  # (K, L)
    ys = start[:, 1:] + unit * (size[:, 1:] / k)  # (K, L)
    y_lo, y_hi, wy_lo, wy_hi = _axis(ys, H)
    x_lo, x_hi, wx_lo, wx_hi = _axis(xs, W)
    L = k * s
    per_roi = fmap.permute(0, 2, 1, 3)  # (N, H, C, W): rows first, so one index picks a row
    rows = (per_roi[b[:, None], y_lo] * wy_lo[..., None, None]
            + per_roi[b[:, None], y_hi] * wy_hi[..., None, None])  # (K, L, C, W)
    cols_lo = x_lo[:, None, None, :].expand(K, L, C, L)  # (K, L, C, L)
    cols_hi = x_hi[:, None, None, :].expand(K, L, C, L)
    pts = (rows.gather(3, cols_lo) * wx_lo[:, None, None, :]
           + rows.gather(3, cols_hi) * wx_hi[:, None, None, :])  # (K, Ly, C, Lx)
    pts = pts.permute(0, 2, 1, 3)  # (K, C, Ly, Lx)
    return pts.reshape(K, C, k, s, k, s).mean(dim=(3, 5))  # (K, C, k, k)
