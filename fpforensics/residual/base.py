"""Stage 2, residual: the interface every residual extractor implements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn


class ResidualExtractor(nn.Module):
    """Maps images ``(B, 3, H, W)`` in [0, 1] to residuals ``r = x - denoise(x)`` of the same shape.

    ``name`` is its registry key; ``identity`` names it for provenance and must change whenever
    its output would (weights included).
    """

    name: str = "residual"
    identity: str = "residual"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def create(cls) -> ResidualExtractor:
        """The residual its registry name alone selects (``--residual NAME``)."""
        return cls()

    def to_payload(self) -> dict[str, Any]:
        """What a checkpoint must store to rebuild this residual (tensors and plain values)."""
        return {}

    @classmethod
    def from_payload(cls, payload: dict[str, Any], path: str | Path = "") -> ResidualExtractor:
        """Rebuild from :meth:`to_payload` (``path`` names the checkpoint in errors)."""
        return cls()
