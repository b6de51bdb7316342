"""Robustness augmentation ("immunized" extractor, METHOD 1.3): what social media does to images.

Applied to fingerprinted images (after the synthetic model, before the residual):
* random resized crop (area share ``crop_scale``, aspect 3/4..4/3) resized back to the input
  size with antialiased bilinear resampling, with probability ``crop_p``;
* JPEG re-compression at a random quality in ``jpeg_quality``, encoded and decoded in memory
  with PIL (the libjpeg of real platforms, not a differentiable imitation), with probability
  ``jpeg_p``. Crop first, then JPEG: platforms resize, then compress.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


@dataclass
class AugmentConfig:
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (60, 100)
    crop_p: float = 0.5
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)


def jpeg_recompress(image: torch.Tensor, quality: int) -> torch.Tensor:
    """``(3, H, W)`` in [0, 1] -> the same image after an in-memory JPEG round trip."""
    arr = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as img:
        out = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(out.transpose(2, 0, 1).copy())


def random_resized_crop(image: torch.Tensor, scale: tuple[float, float], ratio: tuple[float, float],
                        rng: random.Random) -> torch.Tensor:
    """Crop a random region (area share in ``scale``) and resize it back to the input size."""
    import torchvision.transforms.v2.functional as TF

    _, h, w = image.shape
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = round((target * aspect) ** 0.5), round((target / aspect) ** 0.5)
        if 0 < cw <= w and 0 < ch <= h:
            top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
            out = TF.resized_crop(image.unsqueeze(0), top, left, ch, cw, [h, w], antialias=True)
            return out.squeeze(0).clamp(0, 1)
    return image


class Augmenter:
    """Batch augmentation with its own seeded RNG (a resumed run draws the same augmentations)."""

    def __init__(self, cfg: AugmentConfig | None = None, seed: int = 0) -> None:
        self.cfg = cfg or AugmentConfig()
        self.rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        self.rng.seed(seed)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        cfg, out, device = self.cfg, [], images.device
        for img in images.detach().float().cpu():
            if self.rng.random() < cfg.crop_p:
                img = random_resized_crop(img, cfg.crop_scale, cfg.crop_ratio, self.rng)
            if self.rng.random() < cfg.jpeg_p:
                img = jpeg_recompress(img, self.rng.randint(*cfg.jpeg_quality))
            out.append(img)
        return torch.stack(out).to(device)
