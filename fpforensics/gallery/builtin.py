"""Stage 6, gallery: the built-in reference gallery that ships inside the package.

It holds the fingerprints of public generators (the 24 of ``../shared/data/generated`` and
``../shared/data/modern``) made by the shipped default extractor, with each model's provenance
in its ``meta`` (``family``, ``source``, ``images``, ``date_range``, ``origin``, ...) and the
sha256 of every image that built it. It stores no image embedding and no image, so it is small
(:meth:`~fpforensics.gallery.Gallery.export_fingerprints`), and it is opened read-only.

``scripts/build_builtin_gallery.py`` rebuilds it in one command (README, "Release steps"); the
test suite fails when it was made by another extractor than the shipped default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpforensics.gallery.gallery import Gallery

BUILTIN_FILE = "builtin-gallery.db"


def builtin_gallery_path() -> Path:
    """Where the package keeps the built-in gallery (``fpforensics/weights/builtin-gallery.db``)."""
    return Path(__file__).resolve().parent.parent / "weights" / BUILTIN_FILE


def open_builtin() -> Gallery | None:
    """The built-in reference gallery, read-only; None when this installation has none."""
    path = builtin_gallery_path()
    return Gallery.open(path, read_only=True) if path.exists() else None


@dataclass(frozen=True)
class Source:
    """One generator to enroll: its gallery name, its folder under the data root, what is known about it."""

    name: str
    folder: str  # relative to the data root, e.g. "generated/DALLE-mini"
    meta: dict
    expected_images: int | None = None  # the count the provenance states; a different folder is refused


def build(sources: Sequence[Source], data_root: str | Path, out: str | Path, extractor: Any = "default",
          work: str | Path | None = None, info: dict | None = None, device: Any = "auto",
          on_model: Callable[[str, int, bool], None] | None = None, **embed_options: Any) -> Gallery:
    """Enroll every image of every source into ``work`` (a full gallery, kept between runs), then export
    its fingerprints to ``out`` with paths relative to ``data_root``; returns ``out`` opened read-only.

    A model already in ``work`` with as many images as its folder holds is not embedded again,
    so an interrupted build resumes. ``on_model(name, images, reused)`` is called per model.
    ``embed_options``: ``grid``, ``batch_size``, ``precision`` of :meth:`Gallery.add`.
    """
    import tempfile

    from fpforensics.errors import InputError
    from fpforensics.extractor import load_extractor
    from fpforensics.images.decode import list_images
    from fpforensics.io.store import check_writable

    root = Path(data_root)
    check_writable(out)
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise InputError("two sources share a name")
    files = {}
    for s in sources:  # every folder checked before any embedding
        folder = root / s.folder
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder (is --data the folder that holds SOURCES.md?)")
        files[s.name] = list_images(folder)
        if s.expected_images is not None and len(files[s.name]) != s.expected_images:
            raise InputError(f"{folder}: {len(files[s.name])} images, its provenance says {s.expected_images}")
    ext = load_extractor(extractor, device) if isinstance(extractor, str | Path) else extractor
    with tempfile.TemporaryDirectory() as tmp:
        g = Gallery.open(Path(work) if work is not None else Path(tmp) / "full.db", create=True)
        if len(g) and g.extractor != ext.identity:
            raise InputError(f"{g.path}: holds embeddings of extractor '{g.extractor}', not '{ext.identity}': "
                             "remove it or pass another --work")
        for s in sources:
            reused = s.name in g and g.model(s.name, with_paths=False).n_images == len(files[s.name])
            if reused:
                g.set_model_meta(s.name, s.meta)
            else:
                g.add(s.name, files[s.name], ext, shots=0, replace=True, device=device, meta=s.meta, **embed_options)
            if on_model:
                on_model(s.name, len(files[s.name]), reused)
        for extra in [n for n in g.names() if n not in set(names)]:
            g.remove(extra)
        g.calibrate()  # the open-set threshold of exactly these models, from all their images
        return g.export_fingerprints(out, relative_to=root, info=info)
