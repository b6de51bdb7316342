"""Stage 5, embedding: the ``fpt embed`` file format (embeddings with their provenance) and the merge of shard files.

HDF5 (``.h5`` / ``.hdf5``), ``fpt_format = "embeddings"``, version 1:

* ``embeddings``: ``(N, D)`` float32, L2-normalized, one row per image
* ``paths``: ``(N,)`` UTF-8 strings, the image each row came from
* ``position`` (only in shard files): ``(N,)`` int64, each row's place in the whole sorted input
  list, so that merged shards come back in the order of a single run
* ``sha256`` (files of ``fpt embed``): ``(N,)`` strings, the sha256 of each image file's bytes
* ``signal`` (files of ``fpt embed``): ``(N,)`` strings, empty when the image has enough residual
  signal, else why it has not ("insufficient signal", :mod:`fpforensics.verdict.signal`)
* root attributes ``extractor`` (identity string), ``extractor_spec`` (the ``--extractor``
  value), ``grid`` (sliding-window size), ``embedding_dim``, ``created`` (UTC, ISO 8601),
  ``shard`` (``i/n``, shard files only), ``extractor_sha256`` (sha256 of the checkpoint file, when
  there is one), plus the ``fpt_format`` / ``fpt_format_version`` / ``tool_version`` stamp of every fpt file.

``.npy``: the bare ``(N, D)`` float32 matrix, rows in the sorted input order (no provenance:
use HDF5 when the file must later be matched to an extractor or merged).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fpforensics.errors import IncompatibleError, InputError, OutputError
from fpforensics.io.names import stored_name
from fpforensics.io.store import STR_DTYPE, atomic_file, atomic_h5, open_h5, read_str, utc_now
from fpforensics.io.store import check_output as store_check_output

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
    positions: np.ndarray | None = None  # a shard's rows: their places in the whole input list
    shard: tuple[int, int] | None = None
    sha256: list[str] | None = None  # per row: the image file's sha256
    signal: list[str] | None = None  # per row: "" (enough residual signal) or why not
    extractor_sha256: str | None = None


def output_format(path: str | Path) -> str:
    """``h5`` or ``npy`` from the file suffix; anything else is refused before any work is done."""
    suffix = Path(path).suffix.lower()
    if suffix in H5_SUFFIXES:
        return "h5"
    if suffix == ".npy":
        return "npy"
    raise OutputError(f"{path}: unknown output format '{suffix or '(none)'}' (use .h5, .hdf5 or .npy)")


def check_output(path: str | Path, shard: tuple[int, int] | None = None, overwrite: bool = False) -> Path:
    """Refuse, before any work, an output of unknown format, not writable, a shard without provenance (.npy),
    a file fpt did not write or of another kind, and an embeddings file of fpt's without ``overwrite``."""
    fmt = output_format(path)
    if fmt == "npy" and shard is not None and shard[1] > 1:
        raise OutputError(f"{path}: a shard needs an HDF5 output (.h5) to be merged later")
    return store_check_output(path, KIND if fmt == "h5" else "npy", overwrite=overwrite)


def save_embeddings(path: str | Path, data: EmbeddingSet, overwrite: bool = False) -> Path:
    """Write ``data`` atomically as HDF5 or ``.npy`` (chosen by suffix); an existing file only with ``overwrite``."""
    path = check_output(path, data.shard, overwrite)
    emb = np.ascontiguousarray(data.embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(data.paths):
        raise ValueError(f"embeddings {emb.shape} do not match {len(data.paths)} paths")
    if output_format(path) == "npy":
        with atomic_file(path, suffix=".tmp.npy") as tmp:
            np.save(tmp, emb)
        return path
    with atomic_h5(path, KIND, copy_existing=False, format_version=FORMAT_VERSION) as f:
        f.create_dataset("embeddings", data=emb)
        f.create_dataset("paths", data=np.array([stored_name(p) for p in data.paths], dtype=object), dtype=STR_DTYPE)
        if data.positions is not None:
            f.create_dataset("position", data=np.asarray(data.positions, np.int64))
        if data.shard is not None:
            f.attrs["shard"] = f"{data.shard[0]}/{data.shard[1]}"
        for key in ("sha256", "signal"):
            values = getattr(data, key)
            if values is not None:
                f.create_dataset(key, data=np.array(values, dtype=object), dtype=STR_DTYPE)
        if data.extractor_sha256:
            f.attrs["extractor_sha256"] = data.extractor_sha256
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
            positions = np.asarray(f["position"][()], np.int64) if "position" in f else None
            extra = {k: [read_str(v) for v in f[k][()]] if k in f else None for k in ("sha256", "signal")}
        except KeyError as exc:
            raise InputError(f"{path}: corrupt embeddings file (missing {exc})") from None
        if emb.ndim != 2 or emb.shape[0] != len(paths) or (positions is not None and len(positions) != len(paths)):
            raise InputError(f"{path}: corrupt embeddings file ({emb.shape} embeddings for {len(paths)} paths)")
        shard = read_str(f.attrs.get("shard", ""))
        return EmbeddingSet(emb, paths, read_str(f.attrs.get("extractor", "")) or None,
                            read_str(f.attrs.get("extractor_spec", "")) or None,
                            int(f.attrs.get("grid", 0)) or None, positions,
                            tuple(int(v) for v in shard.split("/")) if shard else None,  # type: ignore[arg-type]
                            extra["sha256"], extra["signal"], read_str(f.attrs.get("extractor_sha256", "")) or None)


def merge_embeddings(inputs: Sequence[str | Path], warn: Callable[[str], None] | None = None) -> EmbeddingSet:
    """One set from the files of ``fpt embed --shard i/n`` (or any embedding files of one extractor and grid).

    Shard files come back in the order of the whole input list; other files are concatenated in
    the order given. Files of other extractors, grids or sizes are refused, and so is a row that
    two shards both hold.
    """
    if not inputs:
        raise InputError("--merge needs at least one embeddings file")
    sets = [load_embeddings(p) for p in inputs]
    first = sets[0]
    for s, path in zip(sets, inputs, strict=True):
        if s.extractor is None:
            raise InputError(f"{path}: a .npy file has no provenance to merge on; use the .h5 files of `fpt embed`")
        if (s.extractor, s.grid, s.embeddings.shape[1]) != (first.extractor, first.grid, first.embeddings.shape[1]):
            raise IncompatibleError(f"{path}: made with extractor '{s.extractor}', grid {s.grid}, "
                                    f"{s.embeddings.shape[1]}-d; {inputs[0]} with '{first.extractor}', grid "
                                    f"{first.grid}, {first.embeddings.shape[1]}-d: not comparable")
    emb = np.concatenate([s.embeddings for s in sets])
    paths = [p for s in sets for p in s.paths]
    extra = {k: [v for s in sets for v in getattr(s, k)] if all(getattr(s, k) is not None for s in sets) else None
             for k in ("sha256", "signal")}
    if all(s.positions is not None and s.shard is not None for s in sets):
        counts = {s.shard[1] for s in sets}  # type: ignore[index]
        positions = np.concatenate([s.positions for s in sets])  # type: ignore[misc]
        if len(np.unique(positions)) != len(positions):
            raise IncompatibleError("two of the files hold the same image (a shard given twice?)")
        got = {s.shard[0] for s in sets}  # type: ignore[index]
        if len(counts) == 1 and warn and got != set(range(next(iter(counts)))):
            missing = sorted(set(range(next(iter(counts)))) - got)
            warn(f"merging {len(got)} of {next(iter(counts))} shards: shard(s) {', '.join(map(str, missing))} missing")
        order = np.argsort(positions, kind="stable")
        emb, paths = emb[order], [paths[i] for i in order]
        extra = {k: [v[i] for i in order] if v is not None else None for k, v in extra.items()}
    return EmbeddingSet(emb, paths, first.extractor, first.extractor_spec, first.grid, sha256=extra["sha256"],
                        signal=extra["signal"], extractor_sha256=first.extractor_sha256)
