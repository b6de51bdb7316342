"""Evaluation: what ``fpt eval`` scores (the dataset of models and images) and how (its settings)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fpforensics.defaults import DEFAULTS
from fpforensics.errors import InputError
from fpforensics.images.folders import ModelSet, files_digest
from fpforensics.perturbations import CLEAN, Perturbation


@dataclass
class EvalSettings:
    """Everything that defines a report's numbers (written verbatim into report.json)."""

    shots: int = DEFAULTS.shots
    repeats: int = DEFAULTS.eval_repeats
    pairs: int = DEFAULTS.eval_pairs
    seed: int = DEFAULTS.seed
    grid: int = DEFAULTS.grid
    max_images_per_model: int | None = None
    perturbations: list[Perturbation] = field(default_factory=list)
    open_set_fraction: float = 0.25
    batch_size: int = DEFAULTS.embed_batch_size
    precision: str = DEFAULTS.precision
    tsne_max_points: int = 2000
    figures: bool = True
    real_photos: list[str] = field(default_factory=list)  # photographs scored as unknowns (never a model)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["perturbations"] = [p.label for p in self.all_perturbations]
        return d

    @property
    def all_perturbations(self) -> list[Perturbation]:
        return [CLEAN] + [p for p in self.perturbations if p != CLEAN]

    def validate(self) -> None:
        if self.shots < 1:
            raise InputError(f"--shots must be at least 1 (got {self.shots})")
        if self.repeats < 1:
            raise InputError(f"--repeats must be at least 1 (got {self.repeats})")
        if self.pairs < 2:
            raise InputError(f"--pairs must be at least 2 (got {self.pairs})")
        if self.grid < 1:
            raise InputError(f"--grid must be at least 1 (got {self.grid})")
        if self.max_images_per_model is not None and self.max_images_per_model < self.shots + 1:
            raise InputError(f"--max-images-per-model {self.max_images_per_model} leaves no query: "
                             f"needs at least --shots + 1 = {self.shots + 1}")
        if not 0 < self.open_set_fraction < 1:
            raise InputError("open-set fraction must be in (0, 1)")
        for p in self.real_photos:
            if not Path(p).exists():
                raise InputError(f"--real-photos {p}: no such file or folder")


@dataclass
class EvalDataset:
    """The images evaluated: ``paths[i]`` belongs to model ``names[labels[i]]``."""

    root: Path
    names: list[str]
    paths: list[Path]
    labels: np.ndarray
    skipped_models: list[dict] = field(default_factory=list)
    skipped_images: list[dict] = field(default_factory=list)
    available: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_folder(cls, root: str | Path, settings: EvalSettings, warn: Callable[[str], None] | None = None) -> EvalDataset:
        """ROOT/<model>/<images>; models with fewer than shots + 1 images are skipped (and listed)."""
        ms = ModelSet.from_folder(root)
        names, paths, labels, skipped, available = [], [], [], [], {}
        need = settings.shots + 1
        for name, files in ms.models.items():
            available[name] = len(files)
            if len(files) < need:
                skipped.append({"model": name, "images": len(files), "reason": f"fewer than shots + 1 = {need} images"})
                if warn:
                    warn(f"model '{name}' has {len(files)} images, fewer than --shots + 1 = {need}: skipped")
                continue
            if settings.max_images_per_model and len(files) > settings.max_images_per_model:
                rng = np.random.default_rng([settings.seed, 11, len(names)])
                keep = np.sort(rng.choice(len(files), settings.max_images_per_model, replace=False))
                files = [files[i] for i in keep]
            labels += [len(names)] * len(files)
            names.append(name)
            paths += files
        ds = cls(Path(root), names, paths, np.asarray(labels, dtype=np.int64), skipped, [], available)
        ds.require_models()
        return ds

    def require_models(self) -> None:
        if len(self.names) < 2:
            raise InputError(f"{self.root}: needs at least 2 models with --shots + 1 images each "
                             f"(found {len(self.names)}); lower --shots or add images")

    def restrict(self, ok: np.ndarray, shots: int,
                 warn: Callable[[str], None] | None = None) -> tuple[EvalDataset, np.ndarray]:
        """Drop unreadable images, then models left with fewer than shots + 1 images; relabel.

        Returns the new dataset and the rows of this one it keeps.
        """
        for i in np.flatnonzero(~ok):
            self.skipped_images.append({"path": str(self.paths[i]), "reason": "unreadable"})
        counts = np.bincount(self.labels[ok], minlength=len(self.names))
        keep_models = [m for m in range(len(self.names)) if counts[m] >= shots + 1]
        for m in range(len(self.names)):
            if m not in keep_models:
                self.skipped_models.append({"model": self.names[m], "images": int(counts[m]),
                                            "reason": f"fewer than shots + 1 = {shots + 1} readable images"})
                if warn:
                    warn(f"model '{self.names[m]}' has {counts[m]} readable images, fewer than {shots + 1}: skipped")
        remap = -np.ones(len(self.names), dtype=np.int64)
        remap[keep_models] = np.arange(len(keep_models))
        rows = np.flatnonzero(ok & (remap[self.labels] >= 0))
        out = EvalDataset(self.root, [self.names[m] for m in keep_models], [self.paths[i] for i in rows],
                          remap[self.labels[rows]], self.skipped_models, self.skipped_images, self.available)
        out.require_models()
        return out, rows

    def file_signature(self) -> str:
        """Changes with any file of the dataset (the key of every cached pass over it)."""
        return files_digest(self.paths)
