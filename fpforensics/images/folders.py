"""Stage 1, inputs by model: folders of images grouped by generative model, orders and signatures of file lists."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fpforensics.errors import InputError
from fpforensics.images.decode import IMAGE_SUFFIXES, list_images


@dataclass
class ModelSet:
    """A set of models: model name -> its image paths (a folder with one subfolder per model)."""

    root: Path
    models: dict[str, list[Path]]

    @classmethod
    def from_folder(cls, root: str | Path) -> ModelSet:
        """``ROOT/<model>/<images>``; subfolders without images are left out."""
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


def group_by_model(inputs: Sequence[str | Path]) -> dict[str, list[Path]]:
    """Generated inputs -> model name -> image paths.

    A folder with subfolders: one model per subfolder (named after it; images found recursively);
    loose images in it belong to a model named after the folder. A folder without subfolders is
    one model (its name); a file belongs to the model named after its parent folder. Models of
    the same name from different inputs are merged.
    """
    models: dict[str, list[Path]] = {}
    seen: set[Path] = set()

    def add(name: str, paths: list[Path]) -> None:
        for p in paths:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                models.setdefault(name, []).append(p)

    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_file():
            add(path.resolve().parent.name, [path])
            continue
        name = path.resolve().name
        loose = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if loose:
            add(name, loose)
        for sub in sorted(p for p in path.iterdir() if p.is_dir()):
            try:
                add(sub.name, list_images(sub))
            except InputError:
                continue
    models = {k: v for k, v in models.items() if v}
    if not models:
        names = ", ".join(str(i) for i in inputs)
        raise InputError(f"no images found in {names} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return models


def spread_order(n: int, k: int) -> list[int]:
    """Indices ``0..n-1`` with ``k`` evenly spaced ones first, so "the first k that load" spans the list."""
    k = max(0, min(k, n))
    first = sorted({int(round(i)) for i in np.linspace(0, n - 1, k)}) if k else []
    taken = set(first)
    return first + [i for i in range(n) if i not in taken]


def files_digest(paths: Sequence[str | Path]) -> str:
    """SHA-256 of a list of files: resolved path, size and modification time of each, in order.

    The key of every cache (embeddings, manifolds): a changed, added or removed file changes it.
    A file that cannot be read counts as "missing" rather than failing here.
    """
    h = hashlib.sha256()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{Path(p).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


def file_sha256(path: str | Path) -> str | None:
    """SHA-256 of a file's bytes (hex), or None when it cannot be read: what a gallery records per enrolled image."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()
