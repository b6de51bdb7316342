"""Distances and scores shared across the tool: L2 normalization, cosine, the Frechet distance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def l2_normalize(x, eps: float = 1e-12, dtype=None):
    """Rows scaled to unit L2 norm; the one normalize of the tool (numpy arrays and torch tensors).

    ``dtype`` casts a numpy input first (e.g. ``np.float64`` for the evaluation protocols); a
    tensor keeps its dtype and device.
    """
    if not isinstance(x, np.ndarray) and hasattr(x, "norm"):  # a torch tensor (torch is not imported here)
        return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)
    x = np.asarray(x, dtype=dtype)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


@dataclass(frozen=True)
class GaussianStats:
    """Mean and covariance of a set of feature vectors (one row per item)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def features_to_statistics(features: np.ndarray) -> GaussianStats:
    """Fit a Gaussian; with one row the covariance is zero (a point mass), not NaN."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError("features must be a non-empty 2-D array (items x dims)")
    mu = x.mean(axis=0)
    sigma = np.cov(x, rowvar=False) if x.shape[0] > 1 else np.zeros((x.shape[1], x.shape[1]))
    return GaussianStats(mu=mu, sigma=np.atleast_2d(sigma), n=x.shape[0])


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1-mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``, stable for singular covariances.

    ``Tr((S1 S2)^(1/2))`` equals ``Tr((A S2 A)^(1/2))`` with ``A = S1^(1/2)``; that matrix is
    symmetric positive semi-definite, so its square root comes from a clipped eigendecomposition,
    always real and finite, with no ``sqrtm`` of a non-symmetric, possibly singular product
    (the NaN/complex failure mode that FID code patches with an ``eps * I`` offset).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    root1 = _psd_sqrt(s1)
    cross = np.linalg.eigvalsh(root1 @ s2 @ root1)
    tr_covmean = np.sqrt(np.clip(cross, 0, None)).sum()
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(value, 0.0)


def statistics_to_frechet(a: GaussianStats, b: GaussianStats) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
