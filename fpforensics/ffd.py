"""Beside the stages, FFD: the Frechet Frequency Distance between two sets of generative models (METHOD 1.6).

Pipeline: ``model_set_spectra`` (per model, N images through the embedding loop's
:class:`~fpforensics.embedding.loop.SpectrumEncoder`: residual -> power spectrum -> azimuthal
integration, then the mean over images: one vector per model),
``features_to_statistics`` (Gaussian over a set's model vectors), ``statistics_to_frechet``.
Each image enters as its central 128x128 crop (resized up only if smaller), so models of any
resolution are compared on the same frequency grid. The preprocessing is recorded with every
result (``preprocessing`` in :class:`FFDResult`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from fpforensics.defaults import DEFAULTS
from fpforensics.embedding.loop import SpectrumEncoder, embed_files, embed_images
from fpforensics.errors import InputError
from fpforensics.images.folders import ModelSet
from fpforensics.metrics import features_to_statistics, statistics_to_frechet
from fpforensics.residual import build_residual
from fpforensics.residual.base import ResidualExtractor

BATCH = 32  # images per forward pass


@dataclass
class FFDResult:
    ffd: float
    models_a: int
    models_b: int
    images_per_model: int
    skipped_models: list[str] = field(default_factory=list)
    skipped_images: int = 0
    preprocessing: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def images_to_model_spectrum(images: Sequence[torch.Tensor], residual: ResidualExtractor, device: torch.device,
                             ) -> np.ndarray:
    """Mean log10 radial power spectrum of a model's decoded images: one ``(crop//2,)`` vector."""
    rows = embed_images(SpectrumEncoder(residual, device), images, BATCH)
    return rows.astype(np.float64).mean(axis=0)


def model_set_spectra(
    model_set: ModelSet, residual: ResidualExtractor, device: torch.device, images_per_model: int,
    on_model: Callable[[str], None] | None = None, warn: Callable[[str], None] | None = None,
) -> tuple[dict[str, np.ndarray], list[str], int]:
    """Per-model mean spectra of the first ``images_per_model`` readable images; models with fewer are skipped."""
    encoder = SpectrumEncoder(residual, device)
    spectra: dict[str, np.ndarray] = {}
    skipped_models: list[str] = []
    skipped_images = 0
    for name, paths in model_set.models.items():
        done = embed_files([encoder], paths, BATCH, limit=images_per_model,
                           on_skip=(lambda p, _why: warn(f"{p}: unreadable image skipped")) if warn else None)
        skipped_images += len(done.skipped)
        if len(done.paths) < images_per_model:
            skipped_models.append(name)
            if warn:
                warn(f"model '{name}' has {len(done.paths)} readable images, fewer than {images_per_model}: skipped")
        else:
            spectra[name] = done.rows[0].astype(np.float64).mean(axis=0)
        if on_model:
            on_model(name)
    return spectra, skipped_models, skipped_images


def frechet_frequency_distance(
    spectra_a: np.ndarray, spectra_b: np.ndarray
) -> float:
    """FFD between two stacks of model spectra ``(models, bins)``."""
    return statistics_to_frechet(features_to_statistics(spectra_a), features_to_statistics(spectra_b))


def ffd_between_folders(
    set_a: str | Path, set_b: str | Path, images_per_model: int = DEFAULTS.ffd_images_per_model,
    residual: str | ResidualExtractor = DEFAULTS.residual, device: torch.device | str = "cpu",
    on_model: Callable[[str], None] | None = None, warn: Callable[[str], None] | None = None,
) -> FFDResult:
    """The whole ``fpt ffd`` computation on two ``ROOT/<model>/<images>`` folders."""
    if images_per_model < 1:
        raise InputError("--images-per-model must be at least 1")
    device = torch.device(device)
    res = residual if isinstance(residual, ResidualExtractor) else build_residual(residual)
    res = res.to(device).eval()
    a, b = ModelSet.from_folder(set_a), ModelSet.from_folder(set_b)
    spec_a, skip_a, bad_a = model_set_spectra(a, res, device, images_per_model, on_model, warn)
    spec_b, skip_b, bad_b = model_set_spectra(b, res, device, images_per_model, on_model, warn)
    for label, spec, root in (("A", spec_a, a.root), ("B", spec_b, b.root)):
        if not spec:
            raise InputError(f"set {label} ({root}): no model has {images_per_model} readable images; "
                             "lower --images-per-model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = frechet_frequency_distance(np.stack(list(spec_a.values())), np.stack(list(spec_b.values())))
    return FFDResult(
        ffd=value, models_a=len(spec_a), models_b=len(spec_b), images_per_model=images_per_model,
        skipped_models=skip_a + skip_b, skipped_images=bad_a + bad_b,
        preprocessing=f"center_crop{DEFAULTS.crop_size}+residual={res.identity}+log10_radial_power",
    )
