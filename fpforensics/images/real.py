"""Stage 1, real photos in memory: decoded once, kept as uint8, and the one stream of random crops drawn from them.

Synthesis (real crops the synthetic models learn to reconstruct), extractor training (crops fed
through the synthetic models), denoiser training (noisy patches) and the synthetic benchmark all
draw their crops here, so a seed means the same crops everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fpforensics.images.crops import random_crop
from fpforensics.images.decode import iter_images


def prepare_photo(image: torch.Tensor, min_side: int, max_side: int | None = None) -> torch.Tensor:
    """Fit the short side into ``[min_side, max_side]`` (bicubic, aspect kept; antialiased when shrinking); uint8.

    Kept as uint8: 4x less memory than float for a set of photos held for a whole training run.
    """
    h, w = image.shape[-2:]
    short = min(h, w)
    target = min_side if short < min_side else (max_side if max_side is not None and short > max_side else short)
    if target != short:
        scale = target / short
        size = (max(min_side, round(h * scale)), max(min_side, round(w * scale)))
        image = F.interpolate(image.unsqueeze(0), size=size, mode="bicubic", align_corners=False,
                              antialias=target < short).squeeze(0)
    return image.clamp(0, 1).mul(255).round().to(torch.uint8)


def load_photos(paths: Sequence[Path], min_side: int, max_side: int | None = None,
                on_skip: Callable[[Path, str], None] | None = None) -> list[torch.Tensor]:
    """Decode photos once (unreadable ones skipped and announced) and keep them as uint8 ``(3, H, W)``."""
    return [prepare_photo(img, min_side, max_side) for _path, img in iter_images(paths, on_skip=on_skip)]


def random_crops(photos: Sequence[torch.Tensor], indices: Sequence[int], size: int,
                 rng: torch.Generator | np.random.Generator) -> torch.Tensor:
    """One random ``size x size`` crop of ``photos[i]`` for each ``i`` in ``indices``, stacked (dtype and device kept)."""
    return torch.stack([random_crop(photos[int(i)], size, rng)[0] for i in indices])
