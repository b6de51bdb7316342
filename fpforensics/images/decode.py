"""Stage 1, images in: finding and decoding image files.

Images become float32 tensors ``(3, H, W)`` in ``[0, 1]``. Pixels are decoded as stored: no
re-encoding and no resampling here (grey and palette images are expanded to RGB, alpha is
dropped, 16-bit samples are scaled to 8-bit range, and that is all).

* **Sample scales.** 8-bit samples are divided by 255. 16- and 32-bit integer samples by 65535
  when any exceeds 255, else by 255. 32-bit float samples (TIFF mode ``F``) are taken on their
  nominal scale: as they are when they all lie in ``[0, 1]`` (the usual convention for float
  images), divided by 255 when they lie in ``[0, 255]``; an image with negative, larger or
  non-finite samples has no known scale and is refused with its range (never rescaled per image,
  which would change the traces the extractor reads).
* **Size limit.** An image with more pixels than :func:`pixel_limit` (``--max-image-pixels``;
  default Pillow's, about 89 million) is refused before it is decoded: a possible decompression
  bomb. In a batch it is skipped with a warning that names it, like any unreadable file.
* **Folders** are walked recursively, following symlinked subfolders once each (a cycle is not
  walked twice); the list is sorted and free of duplicates.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fpforensics.errors import InputError


def _suffixes() -> frozenset[str]:
    """The image files a folder is searched for: AVIF too where this Pillow was built to read it (11.2+)."""
    from PIL import features

    base = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
    return frozenset(base | ({".avif"} if features.check("avif") else set()))


IMAGE_SUFFIXES = _suffixes()
PILLOW_PIXEL_LIMIT = Image.MAX_IMAGE_PIXELS  # Pillow's default, the default of --max-image-pixels


def pixel_limit() -> int | None:
    """The most pixels an image may have (None: no limit)."""
    return Image.MAX_IMAGE_PIXELS


def set_pixel_limit(pixels: int | None) -> None:
    """Images with more than ``pixels`` pixels are refused (``None`` or 0: no limit). Process-wide, as in Pillow."""
    if pixels is not None and pixels < 0:
        raise InputError(f"--max-image-pixels must be 0 (no limit) or more (got {pixels})")
    Image.MAX_IMAGE_PIXELS = int(pixels) if pixels else None


def _walk(folder: Path) -> Iterator[Path]:
    """Files under ``folder``, following symlinked subfolders; a folder reached twice (a cycle) is walked once."""
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in files:
            yield Path(root) / name


def list_images(inputs: Sequence[str | Path] | str | Path) -> list[Path]:
    """Expand files and folders (recursively) into a sorted, de-duplicated list of image paths.

    Folders are walked in sorted order so that every run sees the same list; symlinked
    subfolders are followed (once: a cycle of links is not walked again). A named file is
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
            candidates = sorted(p for p in _walk(path) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
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


def _float_to_unit(arr: np.ndarray) -> np.ndarray:
    """32-bit float samples on their nominal scale ([0, 1], else [0, 255]); anything else has no known scale."""
    if not np.isfinite(arr).all():
        raise ValueError("32-bit float samples that are not finite (NaN or infinity)")
    lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
    if lo >= 0.0 and hi <= 1.0:
        return arr
    if lo >= 0.0 and hi <= 255.0:
        return arr / 255.0
    raise ValueError(f"32-bit float samples in {lo:g}..{hi:g}, neither 0..1 nor 0..255: no known scale "
                     "(convert it to an 8- or 16-bit image)")


def _pil_to_array(img: Image.Image) -> np.ndarray:
    if img.mode == "F":
        arr = _float_to_unit(np.asarray(img, dtype=np.float32))
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / peak, 0.0, 1.0)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0


def _too_large(path: Path, exc: Exception) -> InputError:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    limit = pixel_limit()
    size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return InputError(f"{path}: {size}, more than the limit of {limit:,} (--max-image-pixels): refused as a "
                      "possible decompression bomb")


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
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(path, exc) from None
    except ValueError as exc:
        if "32-bit float" in str(exc):
            raise InputError(f"{path}: {exc}") from None
        raise InputError(f"{path}: corrupt or truncated image ({exc})") from None
    except (OSError, SyntaxError) as exc:
        raise InputError(f"{path}: corrupt or truncated image ({exc})") from None
    except MemoryError:
        raise InputError(f"{path}: too large to decode in memory") from None
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
