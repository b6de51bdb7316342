"""Stage 4, extractor: the interface every fingerprint extractor implements."""

from __future__ import annotations

import torch
import torch.nn as nn


class Extractor(nn.Module):
    """Crops ``(B, 3, 128, 128)`` in [0, 1] -> raw embeddings ``(B, D)``; the embedding loop L2-normalizes them.

    ``identity`` must change whenever embeddings would change (weights, residual, transform):
    galleries and embedding files store it and refuse to mix identities.
    """

    identity: str = "extractor"
    embedding_dim: int = 0
    calibration: dict | None = None  # stored operating points (fpforensics.verdict.stored), if any
    source: str | None = None  # the checkpoint file it was loaded from, if any

    def embed_crops(self, crops: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.embed_crops(crops)
