"""The ``fpt embed`` output format: embeddings with the provenance needed to reuse them.

HDF5 (``.h5`` / ``.hdf5``), ``fpt_format = "embeddings"``, version 1:

* ``embeddings``: ``(N, D)`` float32, L2-normalized, one row per image
* ``paths``: ``(N,)`` UTF-8 strings, the image each row came from
* root attributes ``extractor`` (identity string), ``extractor_spec`` (the ``--extractor``
  value), ``grid`` (sliding-window size), ``embedding_dim``, ``created`` (UTC, ISO 8601), plus
  the ``fpt_format`` / ``fpt_format_version`` / ``tool_version`` stamp of every fpt file.

``.npy``: the bare ``(N, D)`` float32 matrix, rows in the sorted input order (no provenance:
use HDF5 when the file must later be matched to an extractor).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fpforensics.errors import InputError, OutputError
from fpforensics.io.store import STR_DTYPE, atomic_file, atomic_h5, check_writable, open_h5, read_str

KIND = "embeddings"
FORMAT_VERSION = 1
H5_SUFFIXES = (".h5", ".hdf5")


@dataclass
class EmbeddingSet:
    """Embeddings and where they came from (``extractor`` is None for a bare ``.npy``)."""

    embeddings: np.ndarray
    paths: list[str]
    extractor: str | None = None
    extractor_spec: str | None = None
    grid: int | None = None


def output_format(path: str | Path) -> str:
    """``h5`` or ``npy`` from the file suffix; anything else is refused before any work is done."""
    suffix = Path(path).suffix.lower()
    if suffix in H5_SUFFIXES:
        return "h5"
    if suffix == ".npy":
        return "npy"
    raise OutputError(f"{path}: unknown output format '{suffix or '(none)'}' (use .h5, .hdf5 or .npy)")


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def save_embeddings(path: str | Path, data: EmbeddingSet) -> Path:
    """Write ``data`` atomically as HDF5 or ``.npy`` (chosen by suffix)."""
    path = check_writable(path)
    emb = np.ascontiguousarray(data.embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(data.paths):
        raise ValueError(f"embeddings {emb.shape} do not match {len(data.paths)} paths")
    if output_format(path) == "npy":
        with atomic_file(path, suffix=".tmp.npy") as tmp:
            np.save(tmp, emb)
        return path
    with atomic_h5(path, KIND, copy_existing=False, format_version=FORMAT_VERSION) as f:
        f.create_dataset("embeddings", data=emb)
        f.create_dataset("paths", data=np.array(data.paths, dtype=object), dtype=STR_DTYPE)
        f.attrs["extractor"] = data.extractor or ""
        f.attrs["extractor_spec"] = data.extractor_spec or ""
        f.attrs["grid"] = int(data.grid or 0)
        f.attrs["embedding_dim"] = int(emb.shape[1])
        f.attrs["created"] = utc_now()
    return path


def load_embeddings(path: str | Path) -> EmbeddingSet:
    """Read a file written by :func:`save_embeddings`, with clear errors for anything else."""
    path = Path(path)
    if output_format(path) == "npy":
        if not path.exists():
            raise InputError(f"{path}: no such file")
        try:
            emb = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable .npy file ({exc})") from None
        if emb.ndim != 2:
            raise InputError(f"{path}: expected an (N, D) matrix, found shape {emb.shape}")
        return EmbeddingSet(emb.astype(np.float32), [f"{path}[{i}]" for i in range(len(emb))])
    with open_h5(path, KIND, max_version=FORMAT_VERSION) as f:
        try:
            emb = np.asarray(f["embeddings"][()], dtype=np.float32)
            paths = [read_str(p) for p in f["paths"][()]]
        except KeyError as exc:
            raise InputError(f"{path}: corrupt embeddings file (missing {exc})") from None
        if emb.ndim != 2 or emb.shape[0] != len(paths):
            raise InputError(f"{path}: corrupt embeddings file ({emb.shape} embeddings for {len(paths)} paths)")
        return EmbeddingSet(emb, paths, read_str(f.attrs.get("extractor", "")) or None,
                            read_str(f.attrs.get("extractor_spec", "")) or None,
                            int(f.attrs.get("grid", 0)) or None)
