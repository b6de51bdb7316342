"""Stage 6, gallery: enrolled models as a store (the gallery file) plus an index (the fingerprint matrix).

* A **fingerprint** is the L2-normalized mean of a model's image embeddings.
* Enrolling appends the model's rows to the store (:mod:`fpforensics.gallery.store`) and
  recalibrates the open-set threshold (:mod:`fpforensics.gallery.calibration`) unless it was set
  by hand; the threshold is stored with the gallery because it belongs to the extractor that
  made it.
* Identification reads only the fingerprints, through an index (:mod:`fpforensics.gallery.index`).

Every change is one transaction on the file: concurrent writers queue, an interrupted change
leaves the gallery as it was. Galleries of format v1 (HDF5) are read as they are and migrated to
v2 by their first change.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fpforensics import __version__
from fpforensics.defaults import DEFAULTS
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.gallery.calibration import MAX_CALIBRATION_QUERIES, PAPER_THRESHOLD, Calibration, calibrate_threshold
from fpforensics.gallery.index import INDEXES, GalleryIndex
from fpforensics.gallery.store import KIND, GalleryStore, Meta, is_sqlite, vector
from fpforensics.io.store import utc_now
from fpforensics.metrics import l2_normalize

RECALIBRATE_SHARE = 0.01  # recompute the threshold once this share of the models changed


@dataclass
class ModelInfo:
    """One enrolled model, as ``fpt gallery show`` reports it."""

    name: str
    n_images: int
    created: str
    updated: str
    tool_version: str
    grid: int
    extractor: str | None
    paths: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "images": self.n_images, "created": self.created, "updated": self.updated,
                "tool_version": self.tool_version, "grid": self.grid, "extractor": self.extractor,
                "paths": self.paths, "added": self.added}


class Gallery:
    """Enrolled models. ``Gallery.open(path)`` reads a gallery file; ``Gallery()`` lives in memory only.

    Reads are live: they see every committed change, other processes' included.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._store: GalleryStore | None = GalleryStore.memory() if self.path is None else None
        self._pid = os.getpid()
        self._index: tuple[str, int, Any] | None = None

    @classmethod
    def open(cls, path: str | Path, create: bool = False) -> Gallery:
        """The gallery at ``path``, checked now; a missing file is an error unless ``create`` (then empty)."""
        path = Path(path)
        if not path.exists() and not create:
            raise InputError(f"{path}: no gallery here yet (enroll a model with `fpt gallery add NAME IMAGES`)")
        gallery = cls(path)
        gallery._reader()
        return gallery

    # -- the store behind the gallery
    def _reader(self) -> GalleryStore:
        """The store to read: the file, an in-memory copy of a v1 file, or an empty store for a file not yet made."""
        if self._store is not None and (self.path is None or self._pid == os.getpid()):
            return self._store
        self._pid = os.getpid()  # after a fork, never share the parent's connection
        if not self.path.exists():
            return GalleryStore.memory()
        self._store = _open_store(self.path)
        return self._store

    def check_output(self) -> None:
        """Refuse, before any work, a gallery path that cannot be written or holds a file that is not a gallery."""
        if self.path is not None:
            from fpforensics.io.store import check_output

            if self.path.is_file():
                self._reader()  # a file that is not a gallery is refused as such (one line, untouched)
            check_output(self.path, KIND, append=True, lock=self.path.is_file() and not is_sqlite(self.path))

    def _write(self, change: Callable[[GalleryStore], Any]) -> Any:
        """Apply ``change`` in one transaction (creating the file, or migrating a v1 file, first)."""
        self.check_output()
        if self.path is not None:
            if not self.path.exists():
                GalleryStore.create(self.path)
            elif not is_sqlite(self.path):
                self._migrate(change)
            if self._store is not None and self._store.path is None:  # an in-memory copy of a v1 file
                self._store = None
        store = self._reader()
        with store.transaction():
            result = change(store)
        self._index = None
        return result

    def _migrate(self, change: Callable[[GalleryStore], Any]) -> None:
        """Rewrite a v1 (HDF5) gallery as v2, atomically, after checking on a copy that ``change`` applies."""
        from fpforensics.gallery.legacy import import_v1, read_gallery_file
        from fpforensics.io.store import atomic_file, file_lock

        assert self.path is not None
        probe = _open_store(self.path)  # an in-memory copy: a refused change leaves the file untouched
        with probe.transaction():
            change(probe)
        with file_lock(self.path):
            if is_sqlite(self.path):  # another process migrated it meanwhile
                return
            data = read_gallery_file(self.path)
            with atomic_file(self.path) as tmp:
                store = GalleryStore.initialize(tmp)
                with store.transaction():
                    import_v1(data, store)
                store.close()

    # -- reading
    @property
    def meta(self) -> Meta:
        return self._reader().meta()

    @property
    def extractor(self) -> str | None:
        return self.meta.extractor

    @property
    def extractor_spec(self) -> str:
        return self.meta.extractor_spec

    @property
    def dim(self) -> int:
        return self.meta.dim

    @property
    def threshold(self) -> float | None:
        return self.meta.threshold

    @property
    def calibration(self) -> Calibration | None:
        m = self.meta
        return None if m.threshold is None else Calibration(m.threshold, m.threshold_source, dict(m.threshold_info))

    def __len__(self) -> int:
        return self._reader().count_models()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._reader().model_row(name) is not None

    def names(self) -> list[str]:
        return [r.name for r in self._reader().model_rows()]

    def fingerprints(self) -> tuple[list[str], np.ndarray]:
        """``(names, (M, D) matrix)`` in enrollment order: what identification reads (no image embedding)."""
        _, names, matrix = self._reader().fingerprints(self.dim)
        return names, matrix

    def index(self, kind: str = "exact") -> GalleryIndex:
        """The search index over the fingerprints (built once, rebuilt after any change)."""
        store = self._reader()
        version = store.version()
        if self._index is None or self._index[:2] != (kind, version):
            self._index = (kind, version, INDEXES.get(kind)(*self.fingerprints()))
        return self._index[2]

    def models(self) -> list[ModelInfo]:
        extractor = self.extractor
        return [ModelInfo(r.name, r.n_images, r.created, r.updated, r.tool_version, r.grid, extractor)
                for r in self._reader().model_rows()]

    def model(self, name: str, with_paths: bool = True) -> ModelInfo:
        store = self._reader()
        r = self._row(store, name)
        paths, added = (store.images(r.id)[:2]) if with_paths else ([], [])
        return ModelInfo(r.name, r.n_images, r.created, r.updated, r.tool_version, r.grid, self.extractor,
                         paths, added)

    def embeddings(self, name: str) -> np.ndarray:
        store = self._reader()
        blobs = store.images(self._row(store, name).id)[2]
        return np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), self.dim)

    def _row(self, store: GalleryStore, name: str):
        row = store.model_row(name)
        if row is None:
            close = difflib.get_close_matches(name, [r.name for r in store.model_rows()], n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            where = f" in {self.path}" if self.path else ""
            raise InputError(f"no model named '{name}'{where}{hint}")
        return row

    def check_compatible(self, extractor_identity: str, dim: int | None = None) -> None:
        """Refuse embeddings from another extractor: they are not comparable with the gallery's."""
        store = self._reader()
        check_compatible(store.meta(), store.count_models(), extractor_identity, dim, self.path)

    # -- writing
    def add(self, name: str, inputs: Any, extractor: Any = DEFAULTS.extractor, shots: int = DEFAULTS.shots,
            replace: bool = False, grid: int = DEFAULTS.grid, batch_size: int = DEFAULTS.embed_batch_size,
            device: Any = "auto", precision: str = DEFAULTS.precision, on_start: Callable[[int], None] | None = None,
            on_image: Callable[[int], None] | None = None, on_skip: Callable[[Path, str], None] | None = None
            ) -> tuple[ModelInfo, Any]:
        """Embed images of model ``name`` (files and folders) and enroll them; returns the model and the embeddings.

        ``shots`` images are enrolled, evenly spread over the sorted list (0 = all; the paper's 10).
        The gallery file is checked (writable, same extractor) before any image is embedded.
        """
        from fpforensics.embedding.embed import embed
        from fpforensics.extractor import load_extractor

        self.check_output()
        ext = load_extractor(extractor, device) if isinstance(extractor, str | Path) else extractor
        self.check_compatible(ext.identity, ext.embedding_dim or None)
        embedded = embed(inputs, ext, grid, batch_size, device, precision, limit=shots or None, on_start=on_start,
                         on_image=on_image, on_skip=on_skip)
        info = self.enroll(name, embedded.embeddings, embedded.paths, ext.identity, replace=replace, grid=grid,
                           extractor_spec=str(extractor) if isinstance(extractor, str | Path) else "")
        return info, embedded

    def enroll(self, name: str, embeddings: np.ndarray, paths: Sequence[str | Path], extractor_identity: str,
               replace: bool = False, grid: int = DEFAULTS.grid, extractor_spec: str = "") -> ModelInfo:
        """Add images of model ``name`` (appending, or replacing its images with ``replace``).

        The fingerprint is updated from the model's running sum of embeddings and the threshold
        is recalibrated (unless it was set by hand).
        """
        name = name.strip()
        if not name:
            raise InputError("a model name cannot be empty")
        emb = l2_normalize(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(paths) or not len(paths):
            raise InputError(f"enrolling '{name}': need one embedding per image (got {emb.shape}, {len(paths)} paths)")

        def change(store: GalleryStore) -> None:
            meta = store.meta()
            n_models = store.count_models()
            if n_models == 0:  # an empty gallery takes the extractor of its first model
                meta.extractor, meta.dim, meta.extractor_spec = extractor_identity, int(emb.shape[1]), extractor_spec
            check_compatible(meta, n_models, extractor_identity, int(emb.shape[1]), self.path)
            now = utc_now()
            row = store.model_row(name)
            added = emb.astype(np.float64).sum(axis=0)
            if row is None:
                model_id = store.insert_model(name, now, now, __version__, grid, len(emb), added)
            else:
                model_id, n = row.id, len(emb)
                if replace:
                    store.delete_images(model_id)
                else:
                    added, n = added + store.model_sum(model_id), n + row.n_images
                store.update_model(model_id, now, grid, n, added)
            store.insert_images(model_id, emb, [str(p) for p in paths], now)
            finish_change(store, meta, now)

        self._write(change)
        return self.model(name)

    def remove(self, name: str) -> ModelInfo:
        """Delete a model and its images; the threshold is recalibrated (unless set by hand)."""
        removed = self.model(name, with_paths=False)

        def change(store: GalleryStore) -> None:
            store.delete_model(self._row(store, name).id)
            finish_change(store, store.meta(), utc_now())

        self._write(change)
        return removed

    def calibrate(self, threshold: float | None = None) -> Calibration:
        """Recompute the threshold from the enrolled images, or fix it by hand (``threshold``)."""
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise InputError(f"threshold {threshold} is not a cosine similarity (expected -1..1)")

        def change(store: GalleryStore) -> Calibration:
            meta = store.meta()
            if threshold is not None:
                meta.threshold, meta.threshold_source, meta.threshold_info = float(threshold), "manual", {
                    "method": "set by hand"}
            else:
                meta.threshold_source = "auto"
            finish_change(store, meta, utc_now(), recalibrate=True)
            return Calibration(meta.threshold if meta.threshold is not None else PAPER_THRESHOLD,
                               meta.threshold_source, dict(meta.threshold_info))

        return self._write(change)


def _open_store(path: Path) -> GalleryStore:
    """A v2 file as it is; a v1 (HDF5) file as an in-memory v2 copy; anything else refused."""
    if is_sqlite(path):
        return GalleryStore.open(path)
    from fpforensics.gallery.legacy import HDF5_MAGIC, import_v1, read_gallery_file

    with open(path, "rb") as fh:
        if fh.read(len(HDF5_MAGIC)) != HDF5_MAGIC:
            raise InputError(f"{path}: not a gallery file (neither an fpt gallery database nor HDF5)")
    store = GalleryStore.memory()
    with store.transaction():
        import_v1(read_gallery_file(path), store)
    return store


def check_compatible(meta: Meta, n_models: int, identity: str, dim: int | None, path: Path | None) -> None:
    if not n_models or meta.extractor is None:
        return
    where = str(path) if path else "the gallery"
    if identity != meta.extractor:
        hint = f" (it was made with --extractor {meta.extractor_spec})" if meta.extractor_spec else ""
        raise IncompatibleError(
            f"{where} was made with extractor '{meta.extractor}', not the current '{identity}'{hint}: "
            "embeddings from different extractors are not comparable")
    if dim is not None and dim != meta.dim:
        raise IncompatibleError(f"{where} holds {meta.dim}-d embeddings, these are {dim}-d "
                                f"(extractor '{identity}'): not comparable")


def finish_change(store: GalleryStore, meta: Meta, now: str, recalibrate: bool = False) -> None:
    """After a change: stamp the times and recalibrate the threshold (unless set by hand).

    The threshold is recomputed when the models changed since it was computed number at least
    ``RECALIBRATE_SHARE`` of the gallery (every change below 100 models), or on request: one
    enrollment barely moves the threshold of a large gallery, and this keeps the cost of an add
    bounded whatever the gallery's size.
    """
    if meta.threshold_source != "manual":
        n_models = store.count_models()
        meta.pending += 1
        if not n_models:
            meta.threshold, meta.threshold_source, meta.threshold_info, meta.pending = None, "none", {}, 0
        elif recalibrate or meta.threshold is None or meta.pending >= max(1, RECALIBRATE_SHARE * n_models):
            cal = calibrate_store(store, meta.dim)
            meta.threshold, meta.threshold_source, meta.threshold_info, meta.pending = cal.threshold, cal.source, \
                cal.info, 0
    meta.created, meta.updated = meta.created or now, now
    store.write_meta(meta)


def calibrate_store(store: GalleryStore, dim: int, max_images: int = MAX_CALIBRATION_QUERIES) -> Calibration:
    """:func:`calibrate_threshold` on the stored images: all of them up to ``max_images``, else a fixed sample.

    A sample reads ``max_images`` embeddings and their models' stored sums, so recalibrating a
    gallery of 10^5 models reads about as much as one of 10^3.
    """
    fp_ids, _, fingerprints = store.fingerprints(dim)
    position = {int(m): i for i, m in enumerate(fp_ids)}
    model_ids, counts = store.model_counts()
    total = int(counts.sum())
    if total <= max_images:
        owners, blobs = store.all_image_rows()
        emb = np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), dim)
        return calibrate_threshold(emb, np.array([position[m] for m in owners], np.int64), fingerprints)
    picks = np.sort(np.random.default_rng(0).choice(total, max_images, replace=False))
    ends = np.cumsum(counts)
    rows = np.searchsorted(ends, picks, side="right")
    offsets = picks - (ends - counts)[rows]
    emb = np.stack([vector(store.image_row(int(model_ids[m]), int(o))) for m, o in zip(rows, offsets, strict=True)])
    sums = {k: vector(v, np.float64) for k, v in store.sums(np.unique(model_ids[rows]).tolist()).items()}
    row_sums = np.stack([sums[int(model_ids[m])] for m in rows])
    labels = np.array([position[int(model_ids[m])] for m in rows], np.int64)
    cal = calibrate_threshold(emb, labels, fingerprints, row_sums, counts[rows])
    cal.info["sampled_images"] = int(max_images)
    return cal
