"""Stage 2, residual: no denoiser, the spectrum of the image itself (the ablation that shows what a residual adds)."""

from __future__ import annotations

import torch

from fpforensics.residual import RESIDUALS
from fpforensics.residual.base import ResidualExtractor


@RESIDUALS.register("none")
class NoResidual(ResidualExtractor):
    name = "none"
    identity = "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
