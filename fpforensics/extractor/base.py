"""What every extractor is, and the one way embeddings are computed from images (METHOD 1.4).

An extractor maps batches of 128x128 crops to fingerprint vectors. :func:`embed_images`
wraps any extractor with the sliding window (equally spaced N x N grid of crops, embeddings
averaged) and L2 normalization, batching crops of many images together.

Built-in extractors (``--extractor`` values):
* ``default``: the trained extractor shipped in ``fpforensics/weights/extractor.pt`` when it
  exists, else ``spectral``.
* ``spectral``: training-free; the 1-D radial log-power spectrum of the residual, centred.
* ``pixels``: raw-pixel baseline (crop resized to 32x32, centred), to show what a learned
  extractor adds.
* a path: a checkpoint written by ``fpt train extractor``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fpforensics.defaults import DEFAULTS
from fpforensics.spectral import ResidualExtractor, build_residual, radial_log_power
from fpforensics.transforms import grid_crops

CROP = int(DEFAULTS["crop_size"])
DEFAULT_EXTRACTOR_PATH = Path(__file__).resolve().parent.parent / "weights" / "extractor.pt"


class Extractor(nn.Module):
    """Crops ``(B, 3, 128, 128)`` in [0, 1] -> raw embeddings ``(B, D)``.

    ``identity`` must change whenever embeddings would change (weights, residual, transform):
    galleries and embedding files store it and refuse to mix identities.
    """

    identity: str = "extractor"
    embedding_dim: int = 0

    def embed_crops(self, crops: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.embed_crops(crops)


class SpectralExtractor(Extractor):
    """Training-free: radial log-power spectrum of the residual, mean-removed (then L2 by the caller)."""

    def __init__(self, residual: ResidualExtractor | None = None) -> None:
        super().__init__()
        self.residual = residual if residual is not None else build_residual("default")
        self.identity = f"spectral[{self.residual.identity}]"
        self.embedding_dim = CROP // 2

    @torch.no_grad()
    def embed_crops(self, crops: torch.Tensor) -> torch.Tensor:
        prof = radial_log_power(self.residual(crops))
        return prof - prof.mean(dim=1, keepdim=True)


class PixelExtractor(Extractor):
    """Raw-pixel baseline: the crop at 32x32, centred. Content, not fingerprint: a floor to beat."""

    identity = "pixels32"
    embedding_dim = 3 * 32 * 32

    @torch.no_grad()
    def embed_crops(self, crops: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(crops, size=(32, 32), mode="area").flatten(1)
        return small - small.mean(dim=1, keepdim=True)


def load_extractor(spec: str | Path | None = "default", device: torch.device | str = "cpu") -> Extractor:
    """Resolve an ``--extractor`` value into a ready, eval-mode extractor on ``device``."""
    spec = "default" if spec is None else str(spec)
    if spec == "default":
        spec = str(DEFAULT_EXTRACTOR_PATH) if DEFAULT_EXTRACTOR_PATH.exists() else "spectral"
    if spec == "spectral":
        ext: Extractor = SpectralExtractor()
    elif spec == "pixels":
        ext = PixelExtractor()
    else:
        from fpforensics.extractor.trained import TrainedExtractor

        ext = TrainedExtractor.from_checkpoint(spec)
    return ext.to(torch.device(device)).eval()


def l2_normalize(x: np.ndarray | torch.Tensor, eps: float = 1e-12):
    if isinstance(x, torch.Tensor):
        return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


@torch.no_grad()
def embed_images(
    extractor: Extractor,
    images: Iterable[torch.Tensor],
    grid: int = int(DEFAULTS["grid"]),
    batch_size: int = 64,
    device: torch.device | str | None = None,
    on_image: Callable[[int], None] | None = None,
) -> np.ndarray:
    """L2-normalized embeddings ``(N, D)`` of images with the N x N sliding window.

    Crops of consecutive images are packed into batches of about ``batch_size`` crops, so the
    extractor runs on full batches whatever the grid. Results do not depend on ``batch_size``.
    """
    device = torch.device(device) if device is not None else next(
        (p.device for p in extractor.parameters()), torch.device("cpu"))
    out: list[torch.Tensor] = []
    pending: list[torch.Tensor] = []
    counts: list[int] = []

    def flush() -> None:
        if not pending:
            return
        emb = extractor.embed_crops(torch.cat(pending).to(device)).float().cpu()
        for chunk in torch.split(emb, counts):
            out.append(l2_normalize(l2_normalize(chunk).mean(dim=0)))
        if on_image:
            on_image(len(counts))
        pending.clear()
        counts.clear()

    for image in images:
        crops = grid_crops(image, CROP, grid)
        pending.append(crops)
        counts.append(crops.shape[0])
        if sum(counts) >= batch_size:
            flush()
    flush()
    if not out:
        return np.zeros((0, extractor.embedding_dim), dtype=np.float32)
    return torch.stack(out).numpy().astype(np.float32)


def iter_batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
