"""Stage 1, images in: finding and decoding image files.

Images become float32 tensors ``(3, H, W)`` in ``[0, 1]``. Pixels are decoded as stored: no
re-encoding and no resampling here (grey and palette images are expanded to RGB, alpha is
dropped, 16-bit samples are scaled to 8-bit range, and that is all).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fpforensics.errors import InputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})


def list_images(inputs: Sequence[str | Path] | str | Path) -> list[Path]:
    """Expand files and folders (recursively) into a sorted, de-duplicated list of image paths.

    Folders are walked in sorted order so that every run sees the same list. A named file is
    taken whatever its suffix (it fails later if it is not an image); inside folders only known
    image suffixes are taken.
    """
    if isinstance(inputs, str | Path):
        inputs = [inputs]
    found: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            candidates = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            candidates = [path]
        for p in candidates:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                found.append(p)
    if not found:
        names = ", ".join(str(i) for i in inputs)
        raise InputError(f"no images found in {names} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def _pil_to_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / peak, 0.0, 1.0)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0


def load_image(path: str | Path) -> torch.Tensor:
    """Decode one image file to ``(3, H, W)`` float32 in ``[0, 1]``; bad files raise InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an image file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # force full decode: truncated files fail here, not later
                arr = _pil_to_array(img)
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file (or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{path}: corrupt or truncated image ({exc})") from None
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"{path}: image has no pixels")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


@dataclass
class LoadReport:
    """What a batch load read and what it skipped (path, reason)."""

    loaded: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def iter_images(
    paths: Sequence[Path],
    report: LoadReport | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
) -> Iterator[tuple[Path, torch.Tensor]]:
    """Yield ``(path, image)``; unreadable files are skipped, counted in ``report`` and announced."""
    for path in paths:
        try:
            img = load_image(path)
        except InputError as exc:
            if report is not None:
                report.skipped.append((Path(path), str(exc)))
            if on_skip is not None:
                on_skip(Path(path), str(exc))
            continue
        if report is not None:
            report.loaded += 1
        yield Path(path), img


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float in [0, 1] -> ``(H, W, 3)`` uint8, rounding to nearest."""
    arr = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return arr.transpose(1, 2, 0)


def save_png(image: torch.Tensor, path: str | Path) -> None:
    """Save losslessly (PNG) so that a saved image keeps its fingerprint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path, format="PNG")
