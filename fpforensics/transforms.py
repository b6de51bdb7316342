"""Geometry shared by every consumer of images: fitting to the working size and window grids."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upscale_to_min_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize up (bicubic, aspect kept) only when the short side is below ``size`` (METHOD 1.4).

    Takes one image ``(3, H, W)`` or a batch ``(B, 3, H, W)``; training uses the same function so
    that it sees small images exactly as identification does.
    """
    h, w = image.shape[-2:]
    short = min(h, w)
    if short >= size:
        return image
    scale = size / short
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    out = F.interpolate(batch, size=(new_h, new_w), mode="bicubic", align_corners=False).clamp(0, 1)
    return out if image.dim() == 4 else out.squeeze(0)


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """Central ``size x size`` crop of an image at least that large (upscaled first if smaller)."""
    image = upscale_to_min_side(image, size)
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[..., top : top + size, left : left + size]


def grid_offsets(length: int, size: int, n: int) -> list[int]:
    """``n`` equally spaced window starts covering ``[0, length)`` with windows of ``size``."""
    span = length - size
    if span <= 0:
        return [0]
    if n <= 1:
        return [span // 2]
    return sorted({round(i * span / (n - 1)) for i in range(n)})


def grid_crops(image: torch.Tensor, size: int, n: int) -> torch.Tensor:
    """The equally spaced ``n x n`` grid of ``size`` crops of METHOD 1.4, as ``(k, 3, size, size)``.

    An image smaller than ``size`` is resized up first; a side equal to ``size`` gives one
    position along that axis, so a 128x128 image yields one crop whatever ``n`` is.
    """
    image = upscale_to_min_side(image, size)
    h, w = image.shape[-2:]
    tops, lefts = grid_offsets(h, size, n), grid_offsets(w, size, n)
    crops = [image[..., t : t + size, s : s + size] for t in tops for s in lefts]
    return torch.stack(crops)
