"""The extractor's training batch: real crops -> synthetic models -> 8-bit images -> spectra.

Kept apart from the optimisation loop so benchmarks and tests build the same batch the trainer does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from fpforensics.defaults import DEFAULTS
from fpforensics.errors import InputError
from fpforensics.images.real import random_crops
from fpforensics.perturbations import AugmentConfig, Augmenter, quantize
from fpforensics.residual.base import ResidualExtractor
from fpforensics.spectrum import log_magnitude_spectrum

if TYPE_CHECKING:
    from fpforensics.extractor.config import ExtractorConfig

CROP = int(DEFAULTS["crop_size"])


class RealCrops:
    """Real photos in memory (uint8); random or fixed 128x128 crops as float batches."""

    def __init__(self, photos: list[torch.Tensor]) -> None:
        if not photos:
            raise InputError("no readable real photos")
        self.photos = photos

    def __len__(self) -> int:
        return len(self.photos)

    def crops(self, indices: Sequence[int], gen: torch.Generator) -> torch.Tensor:
        return random_crops(self.photos, indices, CROP, gen).float().div_(255)



REAL_ID = -1  # pool id of the "real photo" class (``real_class``): the crop itself
LOWRES_SIZES = (64, 80, 96, 112)  # generator sizes simulated with lowres_p (multiples of 4: K=2 models)


def draw_lowres(cfg: ExtractorConfig, gen: torch.Generator) -> int:
    """0 (generate at 128) or the size this batch's synthetic models generate at; a function of ``gen``."""
    if cfg.lowres_p <= 0:
        return 0
    u, i = torch.rand(1, generator=gen).item(), int(torch.randint(len(LOWRES_SIZES), (1,), generator=gen))
    return LOWRES_SIZES[i] if u < cfg.lowres_p else 0


def make_augmenter(cfg: ExtractorConfig) -> Augmenter | None:
    if not cfg.augment:
        return None
    return Augmenter(AugmentConfig(jpeg_p=cfg.jpeg_p, jpeg_quality=(cfg.jpeg_min_quality, 100), crop_p=cfg.crop_p,
                                   resize_p=cfg.resize_p))


class StepTimer:
    """Wall time per stage (synthetic models, augmentation, residual+spectrum, backbone fwd/bwd)."""

    def __init__(self, device: torch.device, enabled: bool = False) -> None:
        self.device, self.enabled = device, enabled
        self.seconds: dict[str, float] = {}
        self._t = 0.0

    def start(self) -> None:
        if self.enabled:
            self._sync()
            self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.enabled:
            self._sync()
            now = time.perf_counter()
            self.seconds[name] = self.seconds.get(name, 0.0) + now - self._t
            self._t = now

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def fingerprinted_images(pool, pool_ids: torch.Tensor, crops: torch.Tensor, device: torch.device,
                         lowres: int = 0, to_8bit: bool = True) -> torch.Tensor:
    """Real crops -> synthetic models -> 8-bit images, as saved by a generator (at ``lowres`` px, then
    brought up to the crop size by the inference path for small images)."""
    from fpforensics.images.crops import upscale_to_min_side

    size = crops.shape[-1]
    x = crops.to(device)
    if lowres:
        x = F.interpolate(x, size=(lowres, lowres), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    real = torch.as_tensor(pool_ids) < 0  # REAL_ID: the photo itself, no synthetic model
    if real.any():
        x = x.clone()
        fake = (~real).nonzero(as_tuple=True)[0]
        if len(fake):
            x[fake.to(device)] = pool.apply(torch.as_tensor(pool_ids)[fake], x[fake.to(device)], device)
    else:
        x = pool.apply(pool_ids, x, device)
    if to_8bit:
        x = quantize(x)
    if lowres:
        x = upscale_to_min_side(x, size)
    return x


def fingerprinted_spectra(pool, pool_ids: torch.Tensor, crops: torch.Tensor, residual: ResidualExtractor,
                          device: torch.device, augmenter: Augmenter | None = None,
                          timer: StepTimer | None = None, lowres: int = 0, to_8bit: bool = True) -> torch.Tensor:
    """Real crops -> synthetic models -> 8-bit -> (augmentation) -> residual -> log-magnitude spectrum."""
    timer = timer or StepTimer(device)
    with torch.no_grad():
        x = fingerprinted_images(pool, pool_ids, crops, device, lowres, to_8bit)
        timer.lap("synthetic")
        if augmenter is not None:
            x = augmenter(x)
            timer.lap("augment")
        spec = log_magnitude_spectrum(residual(x.to(device)))
        timer.lap("residual")
    return spec
