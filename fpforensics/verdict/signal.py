"""Weak-signal check: images whose residual is too faint or too sparse to carry a fingerprint get no score.

The fingerprint lives in the median residual ``r = x - median3x3(x)`` of the 128x128 crops of
the 3x3 grid (METHOD 1.4), the very crops the embedding uses. A flat colour, a smooth gradient,
a heavily blurred photo or a thumbnail brought up to 128 px leaves ``r`` almost zero, and the
extractor then embeds the spectrum of nothing: two such images match at cosine 1.0. A
screenshot of text leaves ``r`` zero everywhere but on glyph edges. The rule (thresholds chosen
from the distributions measured by ``scripts/measure_signal.py``, see ``docs/verdicts.md``):

* the image's short side is below ``min_side`` pixels (too little of it to hold any trace), or
* the residual RMS over the crops is below ``min_rms`` 8-bit levels (no energy), or
* more than ``max_flat_share`` of the pixels have a zero residual (energy only on a few edges).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from fpforensics.defaults import DEFAULTS
from fpforensics.images.crops import grid_crops
from fpforensics.residual.median import MedianResidual

CROP = int(DEFAULTS["crop_size"])
GRID = int(DEFAULTS["grid"])
FLAT_LEVEL = 0.5  # 8-bit levels: |r| below half a level in every channel is "no residual" at that pixel


@dataclass(frozen=True)
class SignalRule:
    """The thresholds of the check; stored with results so a verdict says which rule made it."""

    min_side: int = 32
    min_rms: float = 0.5
    max_flat_share: float = 0.85

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SignalRule:
        return cls(int(d["min_side"]), float(d["min_rms"]), float(d["max_flat_share"]))


DEFAULT_RULE = SignalRule()


@dataclass
class SignalCheck:
    """``ok`` False means "insufficient signal"; ``reason`` says which statistic failed, in words."""

    ok: bool
    reason: str
    stats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "reason": self.reason, "stats": dict(self.stats)}


def to_tensor(image) -> torch.Tensor:
    """PIL image, ``(H, W[, 3])`` uint8/float array or ``(3, H, W)`` tensor in [0, 1] -> ``(3, H, W)`` float32."""
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
    else:
        from PIL import Image

        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB"))
        arr = np.asarray(image)
        scale = 255.0 if arr.dtype == np.uint8 else 1.0
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        t = torch.from_numpy(np.ascontiguousarray(arr[..., :3].transpose(2, 0, 1))).float() / scale
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected an RGB image (3, H, W), got shape {tuple(t.shape)}")
    return t


@torch.no_grad()
def crop_stats(crops: torch.Tensor, min_side: int) -> dict:
    """Statistics of the median residual of ``(k, 3, 128, 128)`` crops in [0, 1], in 8-bit units.

    Takes the crops themselves so the embedding loop can check the very batch it embeds.
    ``rms``: residual RMS over every crop pixel and channel. ``crop_rms_min``: the weakest crop's RMS.
    ``flat_share``: share of crop pixels whose residual is below half a level in all channels.
    ``hf_share``: share of the (mean-removed, grey) crops' power above half the Nyquist frequency,
    a blur measure independent of the residual (measured, not used by the rule: it does not separate).
    ``min_side``: the image's short side before any resize, as given.
    """
    crops = crops.detach().float().cpu()
    r = MedianResidual()(crops) * 255.0
    per_crop = r.square().mean(dim=(1, 2, 3)).sqrt()
    flat = (r.abs() < FLAT_LEVEL).all(dim=1)
    grey = crops.mean(dim=1)
    grey = grey - grey.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(grey, norm="ortho").abs().square()
    fy, fx = torch.fft.fftfreq(crops.shape[-2]), torch.fft.fftfreq(crops.shape[-1])
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    total = power.sum().clamp_min(1e-12)
    return {
        "min_side": int(min_side),
        "rms": round(float(r.square().mean().sqrt()), 4),
        "crop_rms_min": round(float(per_crop.min()), 4),
        "flat_share": round(float(flat.float().mean()), 4),
        "hf_share": round(float(power[:, radius > 0.25].sum() / total), 4),
        "crops": int(crops.shape[0]),
    }


def residual_stats(image, grid: int = GRID) -> dict:
    """:func:`crop_stats` of an image's ``grid x grid`` crops of 128 px, as the embedding takes them."""
    img = to_tensor(image)
    return crop_stats(grid_crops(img, CROP, grid), min(img.shape[-2:]))


def judge(stats: dict, rule: SignalRule = DEFAULT_RULE) -> SignalCheck:
    """Apply ``rule`` to :func:`residual_stats`; the first failing test gives the reason."""
    if stats["min_side"] < rule.min_side:
        return SignalCheck(False, f"image too small ({stats['min_side']} px on its short side, "
                                  f"needs at least {rule.min_side})", stats)
    if stats["rms"] < rule.min_rms:
        return SignalCheck(False, f"residual too weak (RMS {stats['rms']:.2f} 8-bit levels, needs {rule.min_rms:g}): "
                                  "flat, smooth or blurred content", stats)
    if stats["flat_share"] > rule.max_flat_share:
        return SignalCheck(False, f"residual almost everywhere zero ({stats['flat_share']:.0%} of pixels, "
                                  f"at most {rule.max_flat_share:.0%} allowed): flat areas, text or graphics", stats)
    return SignalCheck(True, "", stats)


def check_signal(image, rule: SignalRule = DEFAULT_RULE, grid: int = GRID) -> SignalCheck:
    """Is there enough residual signal in ``image`` to attribute it? (see the module docstring)."""
    return judge(residual_stats(image, grid), rule)


STAT_KEYS = ("min_side", "rms", "crop_rms_min", "flat_share", "hf_share", "crops")


class SignalEncoder:
    """An encoder of the embedding loop whose row is an image's :func:`crop_stats`: the check rides along
    with the embedding, on the image the loop already decoded (never a second decode).

    Rows are ``STAT_KEYS`` in order; :func:`checks_from_rows` turns them into :class:`SignalCheck`.
    Computed in float32 on the CPU whatever the loop's precision: the thresholds are in 8-bit levels.
    """

    def __init__(self, grid: int = GRID) -> None:
        self.grid = int(grid)
        self.identity = f"signal-stats[{MedianResidual.identity},grid={self.grid}]"
        self.dim = len(STAT_KEYS)
        self.device = torch.device("cpu")

    def units(self, image: torch.Tensor) -> int:
        return 1

    def encode(self, images: list[torch.Tensor]) -> torch.Tensor:
        rows = []
        with torch.autocast("cpu", enabled=False):
            for im in images:
                im = im.detach().float().cpu()
                s = crop_stats(grid_crops(im, CROP, self.grid), min(im.shape[-2:]))
                rows.append([float(s[k]) for k in STAT_KEYS])
        return torch.tensor(rows, dtype=torch.float32)


def stats_from_row(row) -> dict:
    """One :class:`SignalEncoder` row back to the :func:`crop_stats` dict."""
    s = {k: round(float(v), 4) for k, v in zip(STAT_KEYS, row, strict=True)}
    s["min_side"], s["crops"] = int(s["min_side"]), int(s["crops"])
    return s


def checks_from_rows(rows, rule: SignalRule = DEFAULT_RULE) -> list[SignalCheck]:
    """:func:`judge` every row of a :class:`SignalEncoder` matrix."""
    return [judge(stats_from_row(r), rule) for r in rows]
