"""Stage 6, gallery: the built-in reference gallery shipped in ``fpforensics/weights/builtin-gallery.*``.

``identify`` and ``verify --model`` use it when no gallery is given and the user has none, so a
new user gets an answer without enrolling anything. It is read, never written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
PATTERN = "builtin-gallery.*"


def builtin_gallery_path() -> Path | None:
    """The shipped gallery file, or None when this install ships none."""
    found = sorted(p for p in WEIGHTS.glob(PATTERN) if p.is_file() and not p.name.endswith((".lock", ".tmp")))
    return found[0] if found else None


def open_builtin() -> Any:
    """The built-in reference :class:`~fpforensics.gallery.Gallery` (opened for reading), or None when not shipped."""
    from fpforensics.gallery import Gallery

    path = builtin_gallery_path()
    return Gallery.open(path) if path is not None else None
