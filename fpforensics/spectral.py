"""Residuals, spectra and azimuthal integration (METHOD 1.1 and 1.6), batched in torch.

All functions take batches ``(B, 3, H, W)`` of float images in ``[0, 1]`` on any device.

Residual extractors share one interface, :class:`ResidualExtractor`:

* ``median`` (training-free default): ``r = x - median3x3(x)``. A median filter removes
  flat content and edges better than a linear blur, while periodic up-sampling traces and
  noise-like fingerprints survive in the residual. It needs no weights, so the whole flow works
  before a denoiser is trained.
* ``dncnn``: ``r = x - denoise(x)`` with the DnCNN of METHOD 1.1 trained at sigma = 1/255 by
  ``fpt train denoiser``; with residual learning, DnCNN outputs the noise itself, so ``r`` is
  its output.

Spectrum fed to the backbone: ``log(|DFT(r)| + 1e-4)`` per channel, orthonormal DFT,
zero frequency shifted to the centre.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from fpforensics.checkpoints import load_checkpoint, state_dict_digest
from fpforensics.defaults import DEFAULTS
from fpforensics.errors import InputError

SPECTRUM_EPS = 1e-4
DEFAULT_DNCNN_PATH = Path(__file__).parent / "weights" / "dncnn.pt"


class ResidualExtractor(nn.Module):
    """Maps images to residuals ``r = x - denoise(x)``; ``identity`` names it for provenance."""

    identity: str = "residual"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


# Compare-exchange pairs of the 19-step median-of-9 network (Paeth; Devillard's opt_med9): after
# them, element 4 holds the median. Exact, and ~10x faster on CPU than torch.median over unfold,
# which sorts all 9 values per pixel and materialises a 9x copy of the image.
_MEDIAN9_NETWORK = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3), (5, 8),
                    (4, 7), (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2))


def median3x3(x: torch.Tensor) -> torch.Tensor:
    """Exact 3x3 median filter with reflect padding, as a min/max sorting network on shifted views."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    p = [padded[..., dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]
    for i, j in _MEDIAN9_NETWORK:
        p[i], p[j] = torch.minimum(p[i], p[j]), torch.maximum(p[i], p[j])
    return p[4].contiguous()


class MedianResidual(ResidualExtractor):
    identity = "median3x3"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - median3x3(x)


class NoResidual(ResidualExtractor):
    """No denoiser: the spectrum of the image itself (the ablation that shows what a residual adds)."""

    identity = "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class DnCNN(nn.Module):
    """DnCNN (Zhang et al. 2017): conv+ReLU, (depth-2) x conv+BN+ReLU, conv; predicts the noise."""

    def __init__(self, depth: int = int(DEFAULTS["dncnn_depth"]), channels: int = int(DEFAULTS["dncnn_channels"]),
                 image_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(image_channels, channels, 3, padding=1, bias=True), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(channels, image_channels, 3, padding=1, bias=False))
        self.body = nn.Sequential(*layers)
        self.depth, self.channels = depth, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


class DnCNNResidual(ResidualExtractor):
    """Residual from a trained DnCNN: its predicted noise, i.e. ``x - denoise(x)``."""

    def __init__(self, net: DnCNN, identity: str) -> None:
        super().__init__()
        self.net = net.eval()
        self.identity = identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def load_dncnn(path: str | Path) -> DnCNNResidual:
    """Load DnCNN weights written by ``fpt train denoiser``."""
    ckpt = load_checkpoint(path, kind="dncnn")
    net = DnCNN(depth=int(ckpt.get("depth", 17)), channels=int(ckpt.get("channels", 64)))
    try:
        net.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise InputError(f"{path}: DnCNN weights do not match the architecture ({str(exc).splitlines()[0]})") from None
    for p in net.parameters():
        p.requires_grad_(False)
    return DnCNNResidual(net, identity=f"dncnn:{state_dict_digest(ckpt['state_dict'])}")


def build_residual(spec: str | Path | None = "default") -> ResidualExtractor:
    """``default`` (shipped DnCNN when present, else median), ``median``, ``none``, ``dncnn`` or a weights path."""
    spec = "default" if spec is None else str(spec)
    if spec == "median":
        return MedianResidual()
    if spec == "none":
        return NoResidual()
    if spec == "default":
        return load_dncnn(DEFAULT_DNCNN_PATH) if DEFAULT_DNCNN_PATH.exists() else MedianResidual()
    if spec == "dncnn":
        if not DEFAULT_DNCNN_PATH.exists():
            raise InputError("no trained DnCNN ships with this install yet: train one with `fpt train denoiser`")
        return load_dncnn(DEFAULT_DNCNN_PATH)
    return load_dncnn(spec)


def log_magnitude_spectrum(residual: torch.Tensor) -> torch.Tensor:
    """Backbone input: per-channel ``log(|DFT| + eps)``, centred. Same shape as the input."""
    mag = torch.fft.fft2(residual.float(), norm="ortho").abs()
    return torch.fft.fftshift(torch.log(mag + SPECTRUM_EPS), dim=(-2, -1))


def power_spectrum(residual: torch.Tensor) -> torch.Tensor:
    """Centred 2-D power spectrum averaged over channels: ``(B, H, W)``."""
    power = torch.fft.fft2(residual.float(), norm="ortho").abs().square().mean(dim=1)
    return torch.fft.fftshift(power, dim=(-2, -1))


@lru_cache(maxsize=16)
def _radial_weights(h: int, w: int, device: str) -> torch.Tensor:
    """``(H*W, R)`` averaging matrix: column r averages the pixels at rounded radius r from the centre."""
    cy, cx = h // 2, w // 2
    yy, xx = torch.meshgrid(torch.arange(h) - cy, torch.arange(w) - cx, indexing="ij")
    radius = torch.sqrt(yy.double() ** 2 + xx.double() ** 2).round().long().flatten()
    n_bins = min(h, w) // 2
    keep = radius < n_bins
    weights = torch.zeros(h * w, n_bins, dtype=torch.float32)
    weights[torch.arange(h * w)[keep], radius[keep]] = 1.0
    weights /= weights.sum(dim=0, keepdim=True)
    return weights.to(device)


def azimuthal_average(power: torch.Tensor) -> torch.Tensor:
    """Azimuthal integration of centred ``(B, H, W)`` spectra into ``(B, min(H,W)//2)`` radial profiles.

    Bins are rings of integer radius; each bin is the mean over its ring (so bins with different
    pixel counts are comparable). Done as one matrix product, so it is batched and device-agnostic.
    """
    b, h, w = power.shape
    weights = _radial_weights(h, w, str(power.device))
    return power.reshape(b, h * w) @ weights


def radial_log_power(residual: torch.Tensor) -> torch.Tensor:
    """1-D radial power spectrum of residuals, in log10: ``(B, R)``. The unit of FFD and the spectral extractor."""
    return torch.log10(azimuthal_average(power_spectrum(residual)) + 1e-12)
