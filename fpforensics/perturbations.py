"""What happens to an image after its generator: the one perturbation module, for training and for the sweep.

Images are shared as 8-bit files, re-encoded as JPEG, resized with whatever kernel a platform
uses, and cropped. The same operations serve two purposes:

* the robustness sweep of ``fpt eval --perturb jpeg:90,75 --perturb resize:0.5`` (a fixed
  :class:`Perturbation` per strength, deterministic given ``(seed, image index)``, so every
  extractor sees the same perturbed image: a paired comparison);
* the "immunized" training of the extractor (METHOD 1.3): :class:`Augmenter` draws a random
  chain of them for every fingerprinted image.

Each kind registers itself in :data:`KINDS` with :func:`register`; a new one (say, blur) is one
class in this file, and both ``--perturb`` and the augmenter can use it.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fpforensics.errors import InputError
from fpforensics.images.decode import to_uint8

KINDS: dict[str, PerturbationKind] = {}


def register(cls: type[PerturbationKind]) -> type[PerturbationKind]:
    """Class decorator: make a perturbation kind available to ``--perturb`` and the augmenter."""
    KINDS[cls.name] = cls()
    return cls


def from_uint8_array(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(arr, dtype=np.float32).transpose(2, 0, 1) / 255.0))


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit grid, as every generated image is when it is saved (batched, any device)."""
    return images.clamp(0, 1).mul(255).round().div(255)


class PerturbationKind:
    """One kind of perturbation; ``strength`` means what ``unit`` says."""

    name: str = ""
    unit: str = ""
    identity_strength: float | None = None  # a strength that leaves the image unchanged

    def check(self, value: float, spec: str) -> float:
        return value

    def label(self, strength: float) -> str:
        return f"{self.name}:{strength:g}"

    def apply(self, image: torch.Tensor, strength: float, rng: np.random.Generator, kernel: str | None = None
              ) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


@register
class Jpeg(PerturbationKind):
    """In-memory JPEG round trip with PIL (libjpeg, 4:2:0 chroma as PIL's default): what platforms do."""

    name, unit = "jpeg", "quality 1..100"

    def check(self, value: float, spec: str) -> float:
        if not (1 <= value <= 100 and value == int(value)):
            raise InputError(f"--perturb '{spec}': JPEG quality must be an integer 1..100 (got {value:g})")
        return value

    def label(self, strength: float) -> str:
        return f"jpeg:{int(strength)}"

    def apply(self, image, strength, rng, kernel=None):
        buf = io.BytesIO()
        Image.fromarray(to_uint8(image)).save(buf, format="JPEG", quality=int(strength))
        buf.seek(0)
        with Image.open(buf) as img:
            return from_uint8_array(np.asarray(img.convert("RGB")))


# PIL's resampling filters: the kernels image platforms and libraries actually use.
RESIZE_KERNELS: dict[str, int] = {
    "nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX,
}


@register
class Resize(PerturbationKind):
    """Rescale by ``strength`` (both sides) with a PIL kernel (default bicubic); the sweep keeps the new size."""

    name, unit, identity_strength = "resize", "scale factor (0, 4]", 1.0

    def check(self, value: float, spec: str) -> float:
        if not 0 < value <= 4:
            raise InputError(f"--perturb '{spec}': resize factor must be in (0, 4] (got {value:g})")
        return value

    def apply(self, image, strength, rng, kernel=None):
        if strength == 1.0:
            return image
        h, w = image.shape[-2:]
        size = (max(1, round(w * strength)), max(1, round(h * strength)))
        resample = RESIZE_KERNELS[kernel or "bicubic"]
        return from_uint8_array(np.asarray(Image.fromarray(to_uint8(image)).resize(size, resample)))


@register
class Crop(PerturbationKind):
    """Crop a random window of ``strength`` of the area (aspect kept), resized back (bilinear, antialiased)."""

    name, unit, identity_strength = "crop", "area share (0, 1]", 1.0

    def check(self, value: float, spec: str) -> float:
        if not 0 < value <= 1:
            raise InputError(f"--perturb '{spec}': crop scale must be in (0, 1] (got {value:g})")
        return value

    def apply(self, image, strength, rng, kernel=None):
        if strength >= 1.0:
            return image
        h, w = image.shape[-2:]
        side = float(np.sqrt(strength))
        ch, cw = max(1, round(h * side)), max(1, round(w * side))
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        crop = image[..., top:top + ch, left:left + cw].unsqueeze(0)
        out = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return out.squeeze(0).clamp(0, 1)


# ------------------------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class Perturbation:
    """A fixed perturbation of the sweep: ``kind`` (``none`` or a key of :data:`KINDS`) at ``strength``."""

    kind: str
    strength: float

    @property
    def label(self) -> str:
        return "clean" if self.kind == "none" else KINDS[self.kind].label(self.strength)

    @property
    def is_identity(self) -> bool:
        return self.kind == "none" or KINDS[self.kind].identity_strength == self.strength

    def apply(self, image: torch.Tensor, seed: int = 0, index: int = 0) -> torch.Tensor:
        """Deterministic in ``(seed, index)``: the same image is perturbed the same way for every extractor."""
        if self.kind == "none":
            return image
        return KINDS[self.kind].apply(image, self.strength, np.random.default_rng([int(seed), 7, int(index)]))


CLEAN = Perturbation("none", 0.0)


def parse_perturb(spec: str) -> list[Perturbation]:
    """``jpeg:100,90`` / ``resize:0.5`` / ``crop:1.0,0.8`` -> perturbations; bad values are a one-line InputError."""
    kind, sep, values = spec.strip().partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS or not values.strip():
        kinds = ", ".join(f"{k}:V1,V2 ({c.unit})" for k, c in KINDS.items())
        raise InputError(f"--perturb '{spec}': expected one of {kinds}, e.g. jpeg:90,75")
    out = []
    for raw in values.split(","):
        try:
            v = float(raw)
        except ValueError:
            raise InputError(f"--perturb '{spec}': '{raw}' is not a number") from None
        out.append(Perturbation(kind, KINDS[kind].check(v, spec)))
    return out


def parse_perturbations(specs: list[str]) -> list[Perturbation]:
    """All ``--perturb`` options, de-duplicated in order (``clean`` is implicit and always first)."""
    seen: list[Perturbation] = []
    for spec in specs:
        for p in parse_perturb(spec):
            if p not in seen:
                seen.append(p)
    return seen


# ---------------------------------------------------------------------- training augmentation


@dataclass
class AugmentConfig:
    """Probabilities and ranges of the training chain: crop, then resize, then JPEG (as platforms do)."""

    crop_p: float = 0.5
    crop_scale: tuple[float, float] = (0.5, 1.0)
    resize_p: float = 0.0
    resize_factor: tuple[float, float] = (0.5, 2.0)  # drawn log-uniformly
    resize_kernels: tuple[str, ...] = tuple(RESIZE_KERNELS)
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (60, 100)


class Augmenter:
    """Random perturbation chains for training batches, with its own seeded RNG (resume draws the same).

    Every image keeps its size: after a resize, a larger image is cropped back at a random
    position, and a smaller one is brought back up with ``fit`` (the inference path for small
    images, so training sees exactly what identification will see).
    """

    def __init__(self, cfg: AugmentConfig | None = None, seed: int = 0,
                 fit: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> None:
        self.cfg = cfg or AugmentConfig()
        self.rng = random.Random(seed)
        if fit is None:
            from fpforensics.images.crops import upscale_to_min_side as fit
        self.fit = fit

    def reseed(self, seed: int) -> None:
        self.rng.seed(seed)

    def _np_rng(self) -> np.random.Generator:
        return np.random.default_rng(self.rng.getrandbits(63))

    def one(self, img: torch.Tensor) -> torch.Tensor:
        cfg, rng = self.cfg, self.rng
        _, h, w = img.shape
        if rng.random() < cfg.crop_p:
            img = KINDS["crop"].apply(img, rng.uniform(*cfg.crop_scale), self._np_rng())
        if rng.random() < cfg.resize_p:
            lo, hi = np.log(cfg.resize_factor[0]), np.log(cfg.resize_factor[1])
            factor = float(np.exp(rng.uniform(lo, hi)))
            img = KINDS["resize"].apply(img, factor, None, kernel=rng.choice(cfg.resize_kernels))
            nh, nw = img.shape[-2:]
            if nh < h or nw < w:
                img = self.fit(img, min(h, w))
                nh, nw = img.shape[-2:]
            top, left = rng.randint(0, nh - h), rng.randint(0, nw - w)
            img = img[:, top:top + h, left:left + w]
        if rng.random() < cfg.jpeg_p:
            img = KINDS["jpeg"].apply(img, rng.randint(*cfg.jpeg_quality), None)
        return img

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        device = images.device
        return torch.stack([self.one(img) for img in images.detach().float().cpu()]).to(device)
