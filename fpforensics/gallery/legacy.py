"""Stage 6, gallery: the gallery format v1 (HDF5, rewritten whole on every change), read for migration to v2.

Galleries written before v2 (:mod:`fpforensics.gallery.store`) are read here: opened for reading
as they are, and migrated to v2 in place (atomically) by the first change. The writer is kept for
the migration tests and the benchmark that compares v2 with the old way.

Layout (``fpt_format = "gallery"``, version 1). Flat arrays, not one group per model:

* ``models/name`` ``(M,)`` str; ``models/fingerprint`` ``(M, D)`` float32 (L2-normalized mean of
  the model's image embeddings); ``models/created``, ``models/updated``, ``models/tool_version``
  ``(M,)`` str (UTC ISO 8601 times, version that last wrote the model); ``models/grid`` ``(M,)``
  int32 (sliding window used at enrollment).
* ``images/embedding`` ``(N, D)`` float32; ``images/model`` ``(N,)`` int32 (row in ``models/``);
  ``images/path`` ``(N,)`` str (source file); ``images/added`` ``(N,)`` str (UTC time).
* root attributes: ``extractor`` (identity of the extractor that made every embedding),
  ``extractor_spec`` (the ``--extractor`` value used, a hint for error messages),
  ``embedding_dim``, ``threshold`` (open-set threshold, NaN when none), ``threshold_source``
  (``calibrated`` | ``single-model`` | ``default`` | ``manual``), ``threshold_info`` (JSON with
  the calibration statistics), ``created``, ``updated``; plus the common fpt stamp.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fpforensics.errors import InputError
from fpforensics.io.store import STR_DTYPE, atomic_h5, open_h5, read_str

KIND = "gallery"
FORMAT_VERSION = 1
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass
class GalleryData:
    """Everything a gallery file holds, in memory."""

    extractor: str | None = None
    extractor_spec: str = ""
    dim: int = 0
    names: list[str] = field(default_factory=list)
    fingerprints: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    tool_versions: list[str] = field(default_factory=list)
    grids: list[int] = field(default_factory=list)
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    image_model: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    image_paths: list[str] = field(default_factory=list)
    image_added: list[str] = field(default_factory=list)
    threshold: float | None = None
    threshold_source: str = "none"
    threshold_info: dict = field(default_factory=dict)
    file_created: str = ""
    file_updated: str = ""


def _strs(ds) -> list[str]:
    return [read_str(v) for v in ds[()]]


def read_gallery_file(path: str | Path) -> GalleryData:
    """Load a v1 gallery; missing, corrupt, foreign or inconsistent files raise a one-line error."""
    path = Path(path)
    with open_h5(path, KIND, max_version=FORMAT_VERSION) as f:
        try:
            m, im = f["models"], f["images"]
            g = GalleryData(
                extractor=read_str(f.attrs["extractor"]) or None,
                extractor_spec=read_str(f.attrs.get("extractor_spec", "")),
                dim=int(f.attrs["embedding_dim"]),
                names=_strs(m["name"]),
                fingerprints=np.asarray(m["fingerprint"][()], dtype=np.float32),
                created=_strs(m["created"]), updated=_strs(m["updated"]),
                tool_versions=_strs(m["tool_version"]), grids=[int(v) for v in m["grid"][()]],
                embeddings=np.asarray(im["embedding"][()], dtype=np.float32),
                image_model=np.asarray(im["model"][()], dtype=np.int32),
                image_paths=_strs(im["path"]), image_added=_strs(im["added"]),
                threshold_source=read_str(f.attrs.get("threshold_source", "none")),
                threshold_info=json.loads(read_str(f.attrs.get("threshold_info", "{}")) or "{}"),
                file_created=read_str(f.attrs.get("created", "")),
                file_updated=read_str(f.attrs.get("updated", "")),
            )
            thr = float(f.attrs.get("threshold", math.nan))
        except (KeyError, ValueError, TypeError, OSError) as exc:
            raise InputError(f"{path}: corrupt gallery file ({exc.__class__.__name__}: {exc})") from None
    g.threshold = None if math.isnan(thr) else thr
    _check_consistent(g, path)
    return g


def _check_consistent(g: GalleryData, path: Path) -> None:
    n_models, n_images = len(g.names), len(g.image_paths)
    problems = []
    if g.fingerprints.shape != (n_models, g.dim) and n_models:
        problems.append(f"fingerprints {g.fingerprints.shape} for {n_models} models of dim {g.dim}")
    if any(len(lst) != n_models for lst in (g.created, g.updated, g.tool_versions, g.grids)):
        problems.append("model metadata lengths differ")
    if n_images and g.embeddings.shape != (n_images, g.dim):
        problems.append(f"embeddings {g.embeddings.shape} for {n_images} images of dim {g.dim}")
    if len(g.image_model) != n_images or len(g.image_added) != n_images:
        problems.append("image metadata lengths differ")
    if n_images and (g.image_model.min() < 0 or g.image_model.max() >= n_models):
        problems.append("image rows point to models that do not exist")
    if len(set(g.names)) != n_models:
        problems.append("duplicate model names")
    if problems:
        raise InputError(f"{path}: corrupt gallery file ({'; '.join(problems)})")
    if not n_models:
        g.fingerprints = np.zeros((0, g.dim), np.float32)
    if not n_images:
        g.embeddings = np.zeros((0, g.dim), np.float32)


def write_gallery_file(path: str | Path, g: GalleryData) -> None:
    """Write a whole v1 gallery atomically (temp file + rename): the old way, for tests and the benchmark."""
    dim = int(g.dim)
    with atomic_h5(path, KIND, copy_existing=False, format_version=FORMAT_VERSION) as f:
        f.attrs["extractor"] = g.extractor or ""
        f.attrs["extractor_spec"] = g.extractor_spec or ""
        f.attrs["embedding_dim"] = dim
        f.attrs["threshold"] = math.nan if g.threshold is None else float(g.threshold)
        f.attrs["threshold_source"] = g.threshold_source
        f.attrs["threshold_info"] = json.dumps(g.threshold_info)
        f.attrs["created"] = g.file_created
        f.attrs["updated"] = g.file_updated
        m = f.create_group("models")
        m.create_dataset("name", data=np.array(g.names, dtype=object), dtype=STR_DTYPE)
        m.create_dataset("fingerprint", data=np.asarray(g.fingerprints, np.float32).reshape(len(g.names), dim))
        for key, values in (("created", g.created), ("updated", g.updated), ("tool_version", g.tool_versions)):
            m.create_dataset(key, data=np.array(values, dtype=object), dtype=STR_DTYPE)
        m.create_dataset("grid", data=np.asarray(g.grids, np.int32))
        im = f.create_group("images")
        im.create_dataset("embedding", data=np.asarray(g.embeddings, np.float32).reshape(len(g.image_paths), dim))
        im.create_dataset("model", data=np.asarray(g.image_model, np.int32))
        im.create_dataset("path", data=np.array(g.image_paths, dtype=object), dtype=STR_DTYPE)
        im.create_dataset("added", data=np.array(g.image_added, dtype=object), dtype=STR_DTYPE)


def import_v1(g: GalleryData, store) -> None:
    """Copy a v1 gallery into an empty v2 store (inside the caller's transaction)."""
    from fpforensics.gallery.store import Meta

    store.write_meta(Meta(g.extractor, g.extractor_spec, g.dim, g.threshold, g.threshold_source, g.threshold_info,
                          created=g.file_created, updated=g.file_updated))
    for i, name in enumerate(g.names):
        rows = np.flatnonzero(g.image_model == i)
        model_id = store.insert_model(name, g.created[i], g.updated[i], g.tool_versions[i], g.grids[i], len(rows),
                                      g.embeddings[rows].astype(np.float64).sum(axis=0))
        store.insert_images(model_id, g.embeddings[rows], [g.image_paths[r] for r in rows],
                            [g.image_added[r] for r in rows])
