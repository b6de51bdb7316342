"""Stage 4, extractor: the training-free extractors ``spectral`` (residual spectrum) and ``pixels`` (content baseline)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fpforensics.defaults import DEFAULTS
from fpforensics.extractor import EXTRACTORS
from fpforensics.extractor.base import Extractor
from fpforensics.residual import build_residual
from fpforensics.residual.base import ResidualExtractor
from fpforensics.spectrum import radial_log_power


@EXTRACTORS.register("spectral")
class SpectralExtractor(Extractor):
    """Training-free: radial log-power spectrum of the residual, mean-removed (then L2 by the caller)."""

    def __init__(self, residual: ResidualExtractor | None = None) -> None:
        super().__init__()
        self.residual = residual if residual is not None else build_residual("default")
        self.identity = f"spectral[{self.residual.identity}]"
        self.embedding_dim = DEFAULTS.crop_size // 2

    @torch.no_grad()
    def embed_crops(self, crops: torch.Tensor) -> torch.Tensor:
        prof = radial_log_power(self.residual(crops))
        return prof - prof.mean(dim=1, keepdim=True)


@EXTRACTORS.register("pixels")
class PixelExtractor(Extractor):
    """Raw-pixel baseline: the crop at 32x32, centred. Content, not fingerprint: a floor to beat."""

    identity = "pixels32"
    embedding_dim = 3 * 32 * 32

    @torch.no_grad()
    def embed_crops(self, crops: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(crops, size=(32, 32), mode="area").flatten(1)
        return small - small.mean(dim=1, keepdim=True)
