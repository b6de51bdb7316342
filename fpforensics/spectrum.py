"""Stage 3, spectrum: log-magnitude and power spectra and their azimuthal integration (METHOD 1.1, 1.6), batched in torch.

All functions take batches ``(B, C, H, W)`` on any device. The backbone input is
:func:`log_magnitude_spectrum` of the residual; the ManiFPT ``freq`` space is the same function
of the image; FFD and the spectral extractor use :func:`radial_log_power`.
"""

from __future__ import annotations

from functools import lru_cache

import torch

SPECTRUM_EPS = 1e-4


def log_magnitude_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Per-channel ``log(|DFT| + 1e-4)``, orthonormal DFT, zero frequency centred; same shape as ``x``."""
    mag = torch.fft.fft2(x.float(), norm="ortho").abs()
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
