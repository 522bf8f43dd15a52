"""RoIAlign in plain torch (the semantics of ``torchvision.ops.roi_align(..., aligned=True)``).

Importing ``torchvision.ops`` imports all of torchvision and ``torch._dynamo`` (about 1 s),
more than a cold ``avscene classify`` spends on its work; this module keeps that cost out
of every command. ``tests/test_model.py`` checks it against torchvision's kernel.

Per RoI bin, ``sampling_ratio`` x ``sampling_ratio`` points are read by bilinear
interpolation and averaged; both steps are separable, so each RoI is pooled as two small matrix
products with per-axis weights (no per-point gather). Like torchvision: a point more than one pixel outside the map
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
    wy = _cell_weights(ys, H, k)  # (K, k, H)
    wx = _cell_weights(xs, W, k)  # (K, k, W)
    out = fmap.new_empty(K, C, k, k)
    for n in torch.unique(b).tolist():  # the RoIs of one image share its map: two matrix products
        idx = (b == n).nonzero().squeeze(1)
        rows = (wy[idx] @ fmap[n].permute(1, 0, 2).reshape(H, C * W)).view(-1, k, C, W)  # (R, k, C, W)
        out[idx] = (rows @ wx[idx].transpose(1, 2).unsqueeze(1)).permute(0, 2, 1, 3)  # (R, C, k, k)
    return out


def _cell_weights(coord: Tensor, size: int, k: int) -> Tensor:
    """(K, k * s) sample coordinates along one axis -> (K, k, size): the weight of each map row (or
    column) in each cell, the cell's samples' bilinear taps averaged. Bilinear interpolation and the
    average over a cell's s x s samples are both separable, so a pooled cell is ``wy @ map @ wx.T``."""
    low, high, w_low, w_high = _axis(coord, size)
    w = coord.new_zeros(*coord.shape, size)
    w.scatter_add_(2, low[..., None], w_low[..., None])
    w.scatter_add_(2, high[..., None], w_high[..., None])
    return w.view(coord.shape[0], k, -1, size).mean(dim=2)
