"""Perturbations of the robustness sweep: JPEG re-compression and random resized crop.

``--perturb jpeg:100,90,80`` and ``--perturb crop:1.0,0.9`` expand into one
:class:`Perturbation` per strength. Each is deterministic given ``(seed, image index)``, so the
same image gets the same crop for every extractor (paired comparison) and on every run (cache).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fpforensics.errors import InputError
from fpforensics.images.decode import to_uint8

KINDS = ("jpeg", "crop")


@dataclass(frozen=True)
class Perturbation:
    """``kind`` is ``none``, ``jpeg`` (strength = quality 1..100) or ``crop`` (strength = area scale (0, 1])."""

    kind: str
    strength: float

    @property
    def label(self) -> str:
        if self.kind == "none":
            return "clean"
        if self.kind == "jpeg":
            return f"jpeg:{int(self.strength)}"
        return f"crop:{self.strength:g}"

    @property
    def is_identity(self) -> bool:
        return self.kind == "none" or (self.kind == "crop" and self.strength >= 1.0)

    def apply(self, image: torch.Tensor, seed: int = 0, index: int = 0) -> torch.Tensor:
        if self.kind == "jpeg":
            return jpeg_compress(image, int(self.strength))
        if self.kind == "crop":
            return random_resized_crop(image, float(self.strength), np.random.default_rng([int(seed), 7, int(index)]))
        return image


CLEAN = Perturbation("none", 0.0)


def parse_perturb(spec: str) -> list[Perturbation]:
    """``jpeg:100,90`` / ``crop:1.0,0.8`` -> perturbations; bad values are a one-line InputError."""
    kind, sep, values = spec.strip().partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS or not values.strip():
        raise InputError(f"--perturb '{spec}': expected jpeg:Q1,Q2,... or crop:S1,S2,... (e.g. jpeg:90,75)")
    out = []
    for raw in values.split(","):
        try:
            v = float(raw)
        except ValueError:
            raise InputError(f"--perturb '{spec}': '{raw}' is not a number") from None
        if kind == "jpeg" and not (1 <= v <= 100 and v == int(v)):
            raise InputError(f"--perturb '{spec}': JPEG quality must be an integer 1..100 (got {raw})")
        if kind == "crop" and not (0 < v <= 1):
            raise InputError(f"--perturb '{spec}': crop scale must be in (0, 1] (got {raw})")
        out.append(Perturbation(kind, v))
    return out


def parse_perturbations(specs: list[str]) -> list[Perturbation]:
    """All ``--perturb`` options, de-duplicated in order (``clean`` is implicit and always first)."""
    seen: list[Perturbation] = []
    for spec in specs:
        for p in parse_perturb(spec):
            if p not in seen:
                seen.append(p)
    return seen


def jpeg_compress(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Re-encode as JPEG at ``quality`` in memory (PIL, 4:2:0 as PIL's default) and decode."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as img:
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def random_resized_crop(image: torch.Tensor, scale: float, rng: np.random.Generator) -> torch.Tensor:
    """Crop a random window of ``scale`` of the area (aspect kept) and resize it back to the input size.

    ``scale = 1`` returns the image unchanged. Resizing is bilinear with antialiasing, as in
    torchvision's ``RandomResizedCrop``.
    """
    if scale >= 1.0:
        return image
    h, w = image.shape[-2:]
    side = float(np.sqrt(scale))
    ch, cw = max(1, round(h * side)), max(1, round(w * side))
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    crop = image[..., top:top + ch, left:left + cw].unsqueeze(0)
    out = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return out.squeeze(0).clamp(0, 1)
