"""Stage 6, gallery: enrolled models as a store (``store``, ``legacy``) plus an index (``index``), and the threshold.

``Gallery`` (:mod:`fpforensics.gallery.gallery`) is the API; the default file is
``$FPT_GALLERY``, else ``$XDG_DATA_HOME/fpforensics/gallery.h5``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ENV_VAR = "FPT_GALLERY"


def default_gallery_path() -> Path:
    """``$FPT_GALLERY``, else ``$XDG_DATA_HOME/fpforensics/gallery.h5`` (``~/.local/share`` by default)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser() / "fpforensics" / "gallery.h5"


def gallery_path(path: str | Path | None = None, for_writing: bool = False) -> Path:
    """``path`` (a ``--gallery`` value), else :func:`default_gallery_path`, its folder created when about to write."""
    from fpforensics.errors import OutputError

    if path is not None:
        return Path(path)
    path = default_gallery_path()
    if for_writing:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{path.parent}: cannot create the gallery folder ({exc.strerror or exc})") from None
    return path


def __getattr__(name: str) -> Any:
    if name in ("Gallery", "ModelInfo"):
        from fpforensics.gallery import gallery

        return getattr(gallery, name)
    raise AttributeError(f"module 'fpforensics.gallery' has no attribute '{name}'")
