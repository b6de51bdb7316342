"""Stage 1, crops: fitting images to the working size, sliding-window grids and random crops.

Every consumer of image geometry uses these functions: the sliding window of the extractors
(METHOD 1.4), the central crop of FFD and the residual spectrum, the fitted view of the ManiFPT
pixel spaces, and the random crops of real photos that synthesis, training and the synthetic
benchmark draw.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

FITS = ("crop", "resize")


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


def fit_image(image: torch.Tensor, size: int, fit: str = "crop") -> torch.Tensor:
    """``(3, H, W)`` -> ``(3, size, size)``.

    ``crop`` (default) keeps pixels as generated (central crop; upscaled only when smaller), so
    high-frequency traces survive; ``resize`` scales the short side to ``size`` (antialiased)
    and crops the centre, so the whole scene is kept at the cost of resampling the traces.
    """
    from fpforensics.errors import InputError

    if fit == "crop":
        return center_crop(image, size).contiguous()
    if fit != "resize":
        raise InputError(f"unknown fit '{fit}': use {' or '.join(FITS)}")
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    if new != (h, w):
        image = F.interpolate(image.unsqueeze(0), size=new, mode="bilinear", antialias=True,
                              align_corners=False).squeeze(0).clamp(0, 1)
    return center_crop(image, size).contiguous()


def grid_offsets(length: int, size: int, n: int) -> list[int]:
    """``n`` equally spaced window starts covering ``[0, length)`` with windows of ``size``."""
    span = length - size
    if span <= 0:
        return [0]
    if n <= 1:
        return [span // 2]
    return sorted({round(i * span / (n - 1)) for i in range(n)})


def grid_size(height: int, width: int, size: int, n: int) -> int:
    """How many crops :func:`grid_crops` cuts from an image of this size (after any upscaling)."""
    short = min(height, width)
    if short < size:
        scale = size / short
        height, width = max(size, round(height * scale)), max(size, round(width * scale))
    return len(grid_offsets(height, size, n)) * len(grid_offsets(width, size, n))


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


def _draw(rng: torch.Generator | np.random.Generator) -> Callable[[int], int]:
    """An integer in ``[0, n)`` from either kind of seeded generator (torch for training, numpy for benchmarks)."""
    if isinstance(rng, np.random.Generator):
        return lambda n: int(rng.integers(0, n))
    return lambda n: int(torch.randint(n, (1,), generator=rng))


def random_crop(image: torch.Tensor, size: int, rng: torch.Generator | np.random.Generator
                ) -> tuple[torch.Tensor, int, int]:
    """A ``size x size`` window at a random position (top drawn first, then left): ``(crop, top, left)``."""
    draw = _draw(rng)
    h, w = image.shape[-2:]
    top = draw(h - size + 1)
    left = draw(w - size + 1)
    return image[..., top:top + size, left:left + size], top, left
