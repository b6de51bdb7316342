"""What defines an extractor training run (:class:`ExtractorConfig`, its presets); stored in every checkpoint.

Its own module so that the training step, its batches and its validation share it without
importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from fpforensics.defaults import DEFAULTS
from fpforensics.errors import InputError
from fpforensics.extractor import BACKBONES


@dataclass
class ExtractorConfig:
    """Everything that defines an extractor training run; stored in the checkpoint."""

    backbone: str = "resnet50"
    embedding_dim: int = 512  # 0 = the pooled backbone feature
    epochs: int = int(DEFAULTS["epochs"])
    steps_per_epoch: int = 0  # 0 = one pass over the training models (ceil(models / p))
    p: int = 50  # models per batch
    k: int = 4  # images per model: p * k = 200 = the paper's batch
    lr: float = float(DEFAULTS["lr"])
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    margin: float = float(DEFAULTS["triplet_margin"])
    triplet_weight: float = 1.0
    augment: bool = True
    jpeg_p: float = 0.5
    jpeg_min_quality: int = 60
    crop_p: float = 0.5
    resize_p: float = 0.0
    lowres_p: float = 0.0
    quantize: bool = True
    real_class: bool = False  # real photos (no synthetic model) as one more class in every batch
    holdout_archs: str = "4"  # a count, or an --arch-grid expression
    holdout_seeds: int = 1  # the last N seeds of the other architectures
    max_train_models: int = 0  # 0 = all
    max_val_models: int = 100  # 0 = all
    val_shots: int = int(DEFAULTS["shots"])
    val_queries: int = 20
    val_real_fraction: float = 0.2
    residual: str = str(DEFAULTS["residual"])
    seed: int = int(DEFAULTS["seed"])
    half_weights: bool = False

    def validate(self) -> None:
        checks = [
            (self.backbone in BACKBONES, f"--backbone must be one of {', '.join(BACKBONES)}"),
            (self.embedding_dim >= 0, "--embedding-dim must be >= 0"),
            (self.epochs >= 1, "--epochs must be >= 1"),
            (self.steps_per_epoch >= 0, "--steps-per-epoch must be >= 0"),
            (self.p >= 2 + int(self.real_class), "--p must be at least 2 (3 with --real-class)"),
            (self.k >= 2, "--k must be at least 2"),
            (self.lr > 0, "--lr must be > 0"),
            (0 <= self.warmup_fraction < 1, "warm-up fraction must be in [0, 1)"),
            (self.margin >= 0, "--margin must be >= 0"),
            (all(0 <= v <= 1 for v in (self.jpeg_p, self.crop_p, self.resize_p, self.lowres_p)),
             "augmentation probabilities must be in [0, 1]"),
            (1 <= self.jpeg_min_quality <= 100, "--jpeg-min-quality must be in 1..100"),
            (self.holdout_seeds >= 0, "--holdout-seeds must be >= 0"),
            (self.val_shots >= 1 and self.val_queries >= 1, "--val-shots and --val-queries must be >= 1"),
            (0 < self.val_real_fraction < 1, "--val-real-fraction must be in (0, 1)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise InputError(msg)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # ~1 minute on one CPU core: small backbone, few models, few steps; for tests and examples.
    "tiny": {"backbone": "resnet18", "embedding_dim": 64, "epochs": 2, "steps_per_epoch": 3, "p": 4, "k": 3,
             "lr": 1e-3, "warmup_fraction": 0.2, "holdout_archs": "1", "max_train_models": 12, "max_val_models": 6,
             "val_queries": 5, "residual": "median"},
}


def make_config(preset: str = "paper", **overrides: Any) -> ExtractorConfig:
    """Preset values, then every override that is not None."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset '{preset}': use one of {', '.join(PRESETS)}")
    names = {f.name for f in fields(ExtractorConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise InputError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    cfg = ExtractorConfig(**values)
    cfg.validate()
    return cfg
