"""Frechet Frequency Distance between two sets of generative models (METHOD 1.6).

Pipeline, named after its stages: ``images_to_model_spectrum`` (N images -> residual -> power
spectrum -> azimuthal integration -> mean over images: one vector per model),
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
from fpforensics.errors import InputError
from fpforensics.io.images import iter_images, list_images
from fpforensics.metrics import features_to_statistics, statistics_to_frechet
from fpforensics.spectral import ResidualExtractor, build_residual, radial_log_power
from fpforensics.transforms import center_crop


@dataclass
class ModelSet:
    """A set of models: model name -> its image paths (a folder with one subfolder per model)."""

    root: Path
    models: dict[str, list[Path]]

    @classmethod
    def from_folder(cls, root: str | Path) -> ModelSet:
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: expected a folder with one subfolder of images per model")
        models: dict[str, list[Path]] = {}
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            try:
                models[sub.name] = list_images(sub)
            except InputError:
                continue
        if not models:
            raise InputError(f"{root}: no model subfolders with images (expected ROOT/<model>/<images>)")
        return cls(root=root, models=models)


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


@torch.no_grad()
def images_to_model_spectrum(
    images: Sequence[torch.Tensor], residual: ResidualExtractor, device: torch.device,
    crop: int = int(DEFAULTS["crop_size"]), batch_size: int = 32,
) -> np.ndarray:
    """Mean log10 radial power spectrum of a model's images: one ``(crop//2,)`` vector."""
    rows = []
    for start in range(0, len(images), batch_size):
        batch = torch.stack([center_crop(im, crop) for im in images[start:start + batch_size]]).to(device)
        rows.append(radial_log_power(residual(batch)).double().cpu())
    return torch.cat(rows).mean(dim=0).numpy()


def model_set_spectra(
    model_set: ModelSet, residual: ResidualExtractor, device: torch.device, images_per_model: int,
    on_model: Callable[[str], None] | None = None, warn: Callable[[str], None] | None = None,
) -> tuple[dict[str, np.ndarray], list[str], int]:
    """Per-model spectra for a set; models with fewer readable images than asked are skipped."""
    spectra: dict[str, np.ndarray] = {}
    skipped_models: list[str] = []
    skipped_images = 0
    for name, paths in model_set.models.items():
        images = []
        for path in paths:
            if len(images) >= images_per_model:
                break
            loaded = list(iter_images([path]))
            if not loaded:
                skipped_images += 1
                if warn:
                    warn(f"{path}: unreadable image skipped")
                continue
            images.append(loaded[0][1])
        if len(images) < images_per_model:
            skipped_models.append(name)
            if warn:
                warn(f"model '{name}' has {len(images)} readable images, fewer than {images_per_model}: skipped")
        else:
            spectra[name] = images_to_model_spectrum(images, residual, device)
        if on_model:
            on_model(name)
    return spectra, skipped_models, skipped_images


def frechet_frequency_distance(
    spectra_a: np.ndarray, spectra_b: np.ndarray
) -> float:
    """FFD between two stacks of model spectra ``(models, bins)``."""
    return statistics_to_frechet(features_to_statistics(spectra_a), features_to_statistics(spectra_b))


def ffd_between_folders(
    set_a: str | Path, set_b: str | Path, images_per_model: int = int(DEFAULTS["ffd_images_per_model"]),
    residual: str | ResidualExtractor = "default", device: torch.device | str = "cpu",
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
        preprocessing=f"center_crop{DEFAULTS['crop_size']}+residual={res.identity}+log10_radial_power",
    )
