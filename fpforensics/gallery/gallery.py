"""Stage 6, gallery: enrolled models as a store (the gallery file) plus an index (the fingerprint matrix).

* A **fingerprint** is the L2-normalized mean of a model's image embeddings.
* Enrolling appends the model's rows to the store (:mod:`fpforensics.gallery.store`) and
  recalibrates the open-set threshold (:mod:`fpforensics.gallery.calibration`) unless it was set
  by hand; the threshold is stored with the gallery because it belongs to the extractor that
  made it.
* Identification reads only the fingerprints, through an index (:mod:`fpforensics.gallery.index`).
* Each model carries a ``meta`` dict (family, source, provenance: :meth:`Gallery.model_meta`) and
  each enrolled image the sha256 of its file, so a gallery says which files built each fingerprint.
* :meth:`Gallery.export_fingerprints` writes a copy without image embeddings (fingerprints,
  counts, file hashes, provenance): a gallery small enough to ship, which can be read but not changed.

Every change is one transaction on the file: concurrent writers queue, an interrupted change
leaves the gallery as it was. Galleries of formats v1 (HDF5) and v2 are read as they are and
migrated to v3 by their first change.
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
from fpforensics.gallery.store import KIND, GalleryStore, ImageRecord, Meta, is_sqlite, vector
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
    meta: dict = field(default_factory=dict)
    files: list[ImageRecord] = field(default_factory=list)  # path, sha256, added, tool version of each image

    @property
    def family(self) -> str | None:
        return self.meta.get("family")

    def to_dict(self) -> dict:
        return {"name": self.name, "images": self.n_images, "created": self.created, "updated": self.updated,
                "tool_version": self.tool_version, "grid": self.grid, "extractor": self.extractor,
                "meta": self.meta, "paths": self.paths, "added": self.added, "files": [f.to_dict() for f in self.files]}


class Gallery:
    """Enrolled models. ``Gallery.open(path)`` reads a gallery file; ``Gallery()`` lives in memory only.

    Reads are live: they see every committed change, other processes' included. A gallery opened
    ``read_only`` (the built-in one) refuses every change.
    """

    def __init__(self, path: str | Path | None = None, read_only: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.read_only = read_only
        self._store: GalleryStore | None = GalleryStore.memory() if self.path is None else None
        self._pid = os.getpid()
        self._index: tuple[str, int, Any] | None = None

    @classmethod
    def open(cls, path: str | Path, create: bool = False, read_only: bool = False) -> Gallery:
        """The gallery at ``path``, checked now; a missing file is an error unless ``create`` (then empty)."""
        path = Path(path)
        if not path.exists() and (not create or read_only):
            raise InputError(f"{path}: no gallery here yet (enroll a model with `fpt gallery add NAME IMAGES`)")
        gallery = cls(path, read_only=read_only)
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
        self._store = _open_store(self.path, self.read_only)
        return self._store

    def check_output(self) -> None:
        """Refuse, before any work, a gallery path that cannot be written or holds a file that is not a gallery."""
        if self.path is not None:
            from fpforensics.io.store import check_output

            if self.path.is_file():
                self._reader()  # a file that is not a gallery is refused as such (one line, untouched)
            check_output(self.path, KIND, append=True, lock=self.path.is_file() and not is_sqlite(self.path))

    def _refuse_changes(self) -> None:
        """A read-only gallery, or one of fingerprints only, cannot be changed: say why, before any work."""
        where = self.path or "this gallery"
        if self.read_only:
            raise InputError(f"{where} is read-only (the built-in gallery cannot be changed): enroll models into a "
                             "gallery of your own (`fpt gallery add NAME IMAGES --gallery FILE`)")
        if (self.path is None or self.path.exists()) and not self.has_image_embeddings:
            raise InputError(f"{where} holds fingerprints only (no image embeddings), so it cannot be changed or "
                             "recalibrated: enroll models into a gallery of your own (`fpt gallery add NAME IMAGES`)")

    def _write(self, change: Callable[[GalleryStore], Any]) -> Any:
        """Apply ``change`` in one transaction (creating the file, or migrating a v1 or v2 file, first)."""
        self._refuse_changes()
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
            store.upgrade()  # a v2 file becomes v3 with its first change
            result = change(store)
        self._index = None
        return result

    def _migrate(self, change: Callable[[GalleryStore], Any]) -> None:
        """Rewrite a v1 (HDF5) gallery as v3, atomically, after checking on a copy that ``change`` applies."""
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

    @property
    def info(self) -> dict:
        """What the gallery is and how it was built (JSON kept in the file; empty for a gallery of one's own)."""
        return self.meta.info

    @property
    def has_image_embeddings(self) -> bool:
        """False for a gallery of fingerprints only (:meth:`export_fingerprints`)."""
        return self.meta.image_embeddings != "dropped"

    def models(self, with_files: bool = False) -> list[ModelInfo]:
        """Every model in enrollment order; ``with_files`` adds each image's path, sha256, time and tool version."""
        store, extractor = self._reader(), self.extractor
        return [self._info(store, r, extractor, with_files) for r in store.model_rows()]

    def model(self, name: str, with_paths: bool = True) -> ModelInfo:
        store = self._reader()
        return self._info(store, self._row(store, name), self.extractor, with_paths)

    @staticmethod
    def _info(store: GalleryStore, r, extractor: str | None, with_files: bool) -> ModelInfo:
        files = store.image_records(r.id) if with_files else []
        return ModelInfo(r.name, r.n_images, r.created, r.updated, r.tool_version, r.grid, extractor,
                         [f.path for f in files], [f.added for f in files], dict(r.meta), files)

    def model_meta(self, name: str) -> dict:
        """The model's metadata (``family``, ``source``, provenance, ...; ``{}`` when none was recorded)."""
        store = self._reader()
        return dict(self._row(store, name).meta)

    def embeddings(self, name: str) -> np.ndarray:
        store = self._reader()
        row = self._row(store, name)
        if not self.has_image_embeddings:
            raise InputError(f"{self.path or 'the gallery'} holds fingerprints only: no image embeddings of '{name}'")
        blobs = store.images(row.id)[2]
        return np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), self.dim)

    def enrolled_sample(self, max_images: int = MAX_CALIBRATION_QUERIES) -> EnrolledSample:
        """The enrolled images' embeddings as rows ready for leave-one-out scoring (:func:`sample_enrolled`)."""
        if not self.has_image_embeddings:
            raise InputError(f"{self.path or 'the gallery'} holds fingerprints only: its enrolled images' embeddings "
                             "were not kept, so nothing can be fitted on them")
        if not len(self):
            raise InputError(f"{self.path or 'the gallery'} is empty")
        return sample_enrolled(self._reader(), self.dim, max_images)

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
            on_image: Callable[[int], None] | None = None, on_skip: Callable[[Path, str], None] | None = None,
            meta: dict | None = None) -> tuple[ModelInfo, Any]:
        """Embed images of model ``name`` (files and folders) and enroll them; returns the model and the embeddings.

        ``shots`` images are enrolled, evenly spread over the sorted list (0 = all; the paper's 10).
        The gallery file is checked (writable, same extractor) before any image is embedded.
        ``meta``: the model's metadata (see :meth:`enroll`).
        """
        from fpforensics.embedding.embed import embed
        from fpforensics.extractor import load_extractor

        self._refuse_changes()
        self.check_output()
        ext = load_extractor(extractor, device) if isinstance(extractor, str | Path) else extractor
        self.check_compatible(ext.identity, ext.embedding_dim or None)
        embedded = embed(inputs, ext, grid, batch_size, device, precision, limit=shots or None, on_start=on_start,
                         on_image=on_image, on_skip=on_skip)
        info = self.enroll(name, embedded.embeddings, embedded.paths, ext.identity, replace=replace, grid=grid,
                           extractor_spec=str(extractor) if isinstance(extractor, str | Path) else "", meta=meta)
        return info, embedded

    def enroll(self, name: str, embeddings: np.ndarray, paths: Sequence[str | Path], extractor_identity: str,
               replace: bool = False, grid: int = DEFAULTS.grid, extractor_spec: str = "", meta: dict | None = None,
               sha256: Sequence[str | None] | None = None) -> ModelInfo:
        """Add images of model ``name`` (appending, or replacing its images with ``replace``).

        The fingerprint is updated from the model's running sum of embeddings and the threshold
        is recalibrated (unless it was set by hand). ``meta`` (a JSON-able dict: ``family``,
        ``source``, ...) replaces the model's metadata; None keeps it. ``sha256``: the digest of
        each image file; None reads the files at ``paths`` (None for a file that cannot be read).
        """
        from fpforensics.images.folders import file_sha256

        name = name.strip()
        if not name:
            raise InputError("a model name cannot be empty")
        emb = l2_normalize(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(paths) or not len(paths):
            raise InputError(f"enrolling '{name}': need one embedding per image (got {emb.shape}, {len(paths)} paths)")
        model_meta = None if meta is None else _json_object(meta, f"enrolling '{name}'")
        digests = [file_sha256(p) for p in paths] if sha256 is None else list(sha256)
        if len(digests) != len(paths):
            raise InputError(f"enrolling '{name}': need one sha256 per image (got {len(digests)}, {len(paths)} paths)")

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
                model_id = store.insert_model(name, now, now, __version__, grid, len(emb), added, model_meta)
            else:
                model_id, n = row.id, len(emb)
                if replace:
                    store.delete_images(model_id)
                else:
                    added, n = added + store.model_sum(model_id), n + row.n_images
                store.update_model(model_id, now, grid, n, added)
                if model_meta is not None:
                    store.set_model_meta(model_id, model_meta)
            store.insert_images(model_id, emb, [str(p) for p in paths], now, digests)
            finish_change(store, meta, now)

        self._write(change)
        return self.model(name)

    def set_model_meta(self, name: str, meta: dict) -> None:
        """Replace a model's metadata (its images and fingerprint stay as they are)."""
        meta = _json_object(meta, f"'{name}'")

        def change(store: GalleryStore) -> None:
            store.set_model_meta(self._row(store, name).id, meta)

        self._write(change)

    def export_fingerprints(self, out: str | Path, relative_to: str | Path | None = None, info: dict | None = None
                            ) -> Gallery:
        """Write a copy of fingerprints only: per model its fingerprint, sum, count and ``meta``, per image its
        path, sha256, time and tool version, the threshold; no image embedding. Returns it, opened read-only.

        Such a gallery is small enough to ship (the built-in one) and can be read and identified
        against, but not changed. ``relative_to``: image paths are written relative to this folder
        (an image outside it is refused), so no path of the machine that built it is kept. ``info``
        is merged into the gallery's ``info`` (what it is, how it was built).
        """
        from fpforensics.io.store import atomic_file, check_output

        # a file fpt did not write, or that is not a gallery, is never replaced; an earlier export is (a rebuild)
        out = check_output(out, KIND, overwrite=True)
        if self.path is not None and out.exists() and out.resolve() == self.path.resolve():
            raise InputError(f"{out}: is the gallery being exported; write the copy elsewhere")
        root = Path(relative_to).resolve() if relative_to is not None else None

        def place(path: str) -> str:
            if root is None:
                return path
            try:
                return Path(path).resolve().relative_to(root).as_posix()
            except ValueError:
                raise InputError(f"{path}: is not inside {relative_to}, which the exported paths are relative to"
                                 ) from None

        src = self._reader()
        meta = src.meta()
        meta.image_embeddings, meta.pending, meta.updated = "dropped", 0, utc_now()
        meta.info = {**meta.info, **(info or {})}
        with atomic_file(out) as tmp:
            dst = GalleryStore.initialize(tmp)
            try:
                with dst.transaction():
                    dst.write_meta(meta)
                    for r in src.model_rows():
                        new = dst.insert_model(r.name, r.created, r.updated, r.tool_version, r.grid, r.n_images,
                                               src.model_sum(r.id), r.meta)
                        files = src.image_records(r.id)
                        dst.insert_images(new, None, [place(f.path) for f in files], [f.added for f in files],
                                          [f.sha256 for f in files], [f.tool_version for f in files])
                dst.conn.execute("VACUUM")
            finally:
                dst.close()
        return Gallery.open(out, read_only=True)

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


def _json_object(meta: Any, what: str) -> dict:
    """``meta`` as stored: a dict that survives JSON unchanged (strings, numbers, lists, dicts), else an InputError."""
    import json

    try:
        out = json.loads(json.dumps(meta, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: meta must be plain JSON ({exc})") from None
    if not isinstance(out, dict):
        raise InputError(f"{what}: meta must be a dict, got {type(meta).__name__}")
    return out


def _open_store(path: Path, read_only: bool = False) -> GalleryStore:
    """A v2 or v3 file as it is; a v1 (HDF5) file as an in-memory v3 copy; anything else refused."""
    if is_sqlite(path):
        return GalleryStore.open(path, read_only)
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


@dataclass
class EnrolledSample:
    """Enrolled images as rows with what scoring them leave-one-out needs (a fixed sample of a large gallery).

    ``labels`` index ``fingerprints`` (every model, enrollment order); ``row_sums`` / ``row_counts``
    are each row's model sum and image count, so a sample is scored as if the whole gallery were read.
    """

    embeddings: np.ndarray
    labels: np.ndarray
    fingerprints: np.ndarray
    row_sums: np.ndarray
    row_counts: np.ndarray
    total: int  # enrolled images in the gallery (>= len(embeddings))


def sample_enrolled(store: GalleryStore, dim: int, max_images: int = MAX_CALIBRATION_QUERIES) -> EnrolledSample:
    """All stored image embeddings up to ``max_images``, else a fixed random sample of them.

    A sample reads ``max_images`` embeddings and their models' stored sums, so scoring a gallery of
    10^5 models reads about as much as one of 10^3.
    """
    fp_ids, _, fingerprints = store.fingerprints(dim)
    position = {int(m): i for i, m in enumerate(fp_ids)}
    model_ids, counts = store.model_counts()
    total = int(counts.sum())
    if total <= max_images:
        owners, blobs = store.all_image_rows()
        emb = np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), dim)
        labels = np.array([position[m] for m in owners], np.int64)
        sums = {int(m): vector(v, np.float64) for m, v in store.sums(np.unique(owners).tolist()).items()} \
            if len(owners) else {}
        by_id = dict(zip(model_ids.tolist(), counts.tolist(), strict=True))
        row_sums = np.stack([sums[int(m)] for m in owners]) if len(owners) else np.zeros((0, dim))
        return EnrolledSample(emb, labels, fingerprints, row_sums, np.array([by_id[int(m)] for m in owners]), total)
    picks = np.sort(np.random.default_rng(0).choice(total, max_images, replace=False))
    ends = np.cumsum(counts)
    rows = np.searchsorted(ends, picks, side="right")
    offsets = picks - (ends - counts)[rows]
    emb = np.stack([vector(store.image_row(int(model_ids[m]), int(o))) for m, o in zip(rows, offsets, strict=True)])
    sums = {k: vector(v, np.float64) for k, v in store.sums(np.unique(model_ids[rows]).tolist()).items()}
    row_sums = np.stack([sums[int(model_ids[m])] for m in rows])
    labels = np.array([position[int(model_ids[m])] for m in rows], np.int64)
    return EnrolledSample(emb, labels, fingerprints, row_sums, counts[rows], total)


def calibrate_store(store: GalleryStore, dim: int, max_images: int = MAX_CALIBRATION_QUERIES) -> Calibration:
    """:func:`calibrate_threshold` on the stored images (:func:`sample_enrolled`)."""
    sample = sample_enrolled(store, dim, max_images)
    if sample.total <= max_images:
        return calibrate_threshold(sample.embeddings, sample.labels, sample.fingerprints)
    cal = calibrate_threshold(sample.embeddings, sample.labels, sample.fingerprints, sample.row_sums, sample.row_counts)
    cal.info["sampled_images"] = int(max_images)
    return cal
