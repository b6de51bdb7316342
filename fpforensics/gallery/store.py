"""Stage 6, gallery: the gallery file (format v3), a SQLite database to which enrollment appends.

One file, four tables:

* ``meta(key, value)``: ``fpt_format`` (``gallery``), ``fpt_format_version`` (3),
  ``tool_version``, ``extractor`` (identity of the extractor that made every embedding),
  ``extractor_spec`` (the ``--extractor`` value used, a hint for error messages),
  ``embedding_dim``, ``threshold`` (open-set threshold; empty when none), ``threshold_source``
  (``calibrated`` | ``single-model`` | ``default`` | ``manual`` | ``none``), ``threshold_info``
  (JSON), ``threshold_pending`` (changes since the threshold was computed), ``created``,
  ``updated`` (UTC ISO 8601), ``image_embeddings`` (``stored``, or ``dropped`` in a gallery
  that ships fingerprints only), ``info`` (JSON: what the gallery is, how it was built);
* ``models``: one row per enrolled model, in enrollment order: ``name`` (unique), ``created``,
  ``updated``, ``tool_version``, ``grid``, ``n_images``, its place in ``fingerprints``
  (``block``, ``slot``), ``sum`` (float64 sum of its normalized image embeddings) and ``meta``
  (JSON: family, source, provenance, anything the enroller records);
* ``images``: one row per enrolled image: ``model_id``, ``path``, ``added``, ``embedding``
  (float32; NULL when dropped), ``sha256`` (of the file's bytes at enrollment; NULL when the
  file could not be read then), ``tool_version``;
* ``fingerprints``: the index's data, models in blocks of 1024 (enrollment order): ``ids``
  (int64 model ids, -1 for a removed model), ``names`` (JSON list) and ``vectors`` (float32
  ``(n, D)``, each the normalized ``sum``). Identification reads these few rows only.

Every change is one SQLite transaction: writers queue on the database lock (``BEGIN IMMEDIATE``),
an interrupted write is rolled back from the journal on the next open, and adding a model
writes its rows and one block. SQLite ships with Python and is built for exactly this
(crash-safe appends to one file), so no storage engine is written here.

Format v2 (no ``models.meta``, ``images.sha256``, ``images.tool_version``) is read as it is and
upgraded in place, inside the transaction of its first change (:meth:`GalleryStore.upgrade`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from fpforensics import __version__
from fpforensics.errors import IncompatibleError, InputError, OutputError
from fpforensics.io.store import default_mode, utc_now
from fpforensics.metrics import l2_normalize

KIND = "gallery"
FORMAT_VERSION = 3
READS = (2, 3)  # format versions this code opens (v1, HDF5, is imported by fpforensics.gallery.legacy)
SQLITE_MAGIC = b"SQLite format 3\x00"
LOCK_TIMEOUT_S = 600.0
BLOCK = 1024  # models per row of the fingerprints table
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL, updated TEXT NOT NULL,
                     tool_version TEXT NOT NULL, grid INTEGER NOT NULL, n_images INTEGER NOT NULL,
                     block INTEGER, slot INTEGER, sum BLOB NOT NULL, meta TEXT NOT NULL DEFAULT '{}');
CREATE TABLE images (id INTEGER PRIMARY KEY, model_id INTEGER NOT NULL REFERENCES models(id), path TEXT NOT NULL,
                     added TEXT NOT NULL, embedding BLOB, sha256 TEXT, tool_version TEXT);
CREATE INDEX images_by_model ON images(model_id, id);
CREATE TABLE fingerprints (block INTEGER PRIMARY KEY, ids BLOB NOT NULL, names TEXT NOT NULL, vectors BLOB NOT NULL);
"""
_UPGRADE_FROM_V2 = """
ALTER TABLE models ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
ALTER TABLE images ADD COLUMN sha256 TEXT;
ALTER TABLE images ADD COLUMN tool_version TEXT;
"""


@dataclass
class Meta:
    """The gallery-wide settings (the ``meta`` table, typed)."""

    extractor: str | None = None
    extractor_spec: str = ""
    dim: int = 0
    threshold: float | None = None
    threshold_source: str = "none"
    threshold_info: dict = field(default_factory=dict)
    pending: int = 0  # changes since the threshold was computed
    created: str = ""
    updated: str = ""
    image_embeddings: str = "stored"  # stored | dropped (a gallery that ships fingerprints only)
    info: dict = field(default_factory=dict)  # what the gallery is and how it was built

    def to_rows(self) -> list[tuple[str, str]]:
        return [("extractor", self.extractor or ""), ("extractor_spec", self.extractor_spec),
                ("embedding_dim", str(int(self.dim))),
                ("threshold", "" if self.threshold is None else repr(float(self.threshold))),
                ("threshold_source", self.threshold_source), ("threshold_info", json.dumps(self.threshold_info)),
                ("threshold_pending", str(int(self.pending))), ("created", self.created), ("updated", self.updated),
                ("image_embeddings", self.image_embeddings), ("info", json.dumps(self.info))]

    @classmethod
    def from_rows(cls, rows: dict[str, str]) -> Meta:
        thr = rows.get("threshold", "")
        return cls(extractor=rows.get("extractor") or None, extractor_spec=rows.get("extractor_spec", ""),
                   dim=int(rows.get("embedding_dim", "0") or 0),
                   threshold=None if thr in ("", "nan") or math.isnan(float(thr)) else float(thr),
                   threshold_source=rows.get("threshold_source", "none"),
                   threshold_info=json.loads(rows.get("threshold_info") or "{}"),
                   pending=int(rows.get("threshold_pending", "0") or 0),
                   created=rows.get("created", ""), updated=rows.get("updated", ""),
                   image_embeddings=rows.get("image_embeddings") or "stored", info=json.loads(rows.get("info") or "{}"))


@dataclass
class ModelRow:
    id: int
    name: str
    created: str
    updated: str
    tool_version: str
    grid: int
    n_images: int
    meta: dict = field(default_factory=dict)


@dataclass
class ImageRecord:
    """Where one enrolled image came from: its path, the sha256 of its bytes, when and by which version it was added."""

    path: str
    sha256: str | None
    added: str
    tool_version: str | None

    def to_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "added": self.added, "tool_version": self.tool_version}


def vector(blob: bytes, dtype=np.float32) -> np.ndarray:
    return np.frombuffer(blob, dtype=dtype)


class GalleryStore:
    """A connection to a gallery database (a file, or ``:memory:`` for a gallery that is never saved)."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None, version: int = FORMAT_VERSION) -> None:
        self.conn, self.path, self.format_version = conn, path, version

    # -- opening
    @staticmethod
    def _connect(target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(target, timeout=LOCK_TIMEOUT_S, isolation_level=None, uri=target.startswith("file:"))
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @classmethod
    def memory(cls) -> GalleryStore:
        """An empty gallery in memory."""
        return cls.initialize(":memory:")

    @classmethod
    def initialize(cls, target: str | Path) -> GalleryStore:
        """An empty gallery in a new (or empty) database file, or ``:memory:``."""
        conn = cls._connect(str(target))
        conn.executescript(_SCHEMA)
        now = utc_now()
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                         [("fpt_format", KIND), ("fpt_format_version", str(FORMAT_VERSION)),
                          ("tool_version", __version__), *Meta(created=now, updated=now).to_rows()])
        return cls(conn, None if str(target) == ":memory:" else Path(target))

    @classmethod
    def open(cls, path: Path, read_only: bool = False) -> GalleryStore:
        """An existing v2 or v3 gallery file; anything else is refused with a one-line error, untouched.

        ``read_only`` opens it so that no change can be written (a gallery shipped inside the package).
        """
        mode = "ro" if read_only else "rw"  # neither mode ever creates a file
        try:
            conn = cls._connect(f"file:{quote(str(path.resolve()))}?mode={mode}")
            rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{path}: corrupt gallery file ({exc})") from None
        found = rows.get("fpt_format")
        if found is None:
            conn.close()
            raise IncompatibleError(f"{path}: database was not written by fpforensics (no fpt_format)")
        if found != KIND:
            conn.close()
            raise IncompatibleError(f"{path}: is an fpforensics '{found}' file, expected '{KIND}'")
        version = int(rows.get("fpt_format_version", "0"))
        if version > FORMAT_VERSION:
            conn.close()
            raise IncompatibleError(f"{path}: gallery format v{version} is newer than this fpt reads "
                                    f"(v{FORMAT_VERSION}): upgrade fpforensics")
        if version not in READS:
            conn.close()
            raise IncompatibleError(f"{path}: gallery format v{version} in a SQLite file is not one this fpt reads "
                                    f"({', '.join(f'v{v}' for v in READS)})")
        return cls(conn, path, version)

    def upgrade(self) -> None:
        """Bring a v2 file to v3 (new columns, empty): run inside the transaction of its first change."""
        if self.format_version >= FORMAT_VERSION:
            return
        for statement in filter(str.strip, _UPGRADE_FROM_V2.split(";")):
            self.conn.execute(statement)
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('fpt_format_version', ?)",
                          (str(FORMAT_VERSION),))
        self.format_version = FORMAT_VERSION

    @classmethod
    def create(cls, path: Path) -> None:
        """Create an empty gallery file at ``path`` atomically, unless one appeared there meanwhile."""
        tmp: Path | None = None
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmp = Path(tmp_name)
            cls.initialize(tmp).close()
            os.chmod(tmp, default_mode())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # never replaces a gallery another process just created
        except OSError as exc:
            raise OutputError(f"{path}: could not write ({exc.strerror or exc})") from None
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def close(self) -> None:
        self.conn.close()

    # -- transactions
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic change: waits for other writers, commits on success, rolls back on any error."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise OutputError(f"{self.path}: could not lock the gallery for writing ({exc})") from None
        try:
            yield
            self.conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:  # disk full, read-only file or folder, I/O error
            self._rollback()
            raise OutputError(f"{self.path or 'the gallery'}: could not write ({exc})") from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    # -- reading
    def meta(self) -> Meta:
        return Meta.from_rows(dict(self.conn.execute("SELECT key, value FROM meta").fetchall()))

    def _model_columns(self) -> str:
        meta = "meta" if self.format_version >= 3 else "'{}'"  # v2: no meta column yet
        return f"id, name, created, updated, tool_version, grid, n_images, {meta}"

    def model_rows(self) -> list[ModelRow]:
        cur = self.conn.execute(f"SELECT {self._model_columns()} FROM models ORDER BY id")
        return [ModelRow(*r[:-1], json.loads(r[-1])) for r in cur.fetchall()]

    def model_row(self, name: str) -> ModelRow | None:
        r = self.conn.execute(f"SELECT {self._model_columns()} FROM models WHERE name = ?", (name,)).fetchone()
        return ModelRow(*r[:-1], json.loads(r[-1])) if r else None

    def fingerprints(self, dim: int) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Model ids, names and the ``(M, D)`` fingerprint matrix in enrollment order: what identification reads."""
        ids, names, vectors = [], [], []
        for block_ids, block_names, block_vectors in self.conn.execute(
                "SELECT ids, names, vectors FROM fingerprints ORDER BY block"):
            alive = vector(block_ids, np.int64) >= 0
            ids.append(vector(block_ids, np.int64)[alive])
            names += [n for n, ok in zip(json.loads(block_names), alive, strict=True) if ok]
            vectors.append(vector(block_vectors).reshape(-1, dim)[alive])
        if not ids:
            return np.zeros(0, np.int64), [], np.zeros((0, dim), np.float32)
        return np.concatenate(ids), names, np.concatenate(vectors)

    def images(self, model_id: int) -> tuple[list[str], list[str], list[bytes]]:
        rows = self.conn.execute("SELECT path, added, embedding FROM images WHERE model_id = ? ORDER BY id",
                                 (model_id,)).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]

    def image_records(self, model_id: int) -> list[ImageRecord]:
        """Provenance of a model's images, in enrollment order (no embedding is read)."""
        extra = "sha256, tool_version" if self.format_version >= 3 else "NULL, NULL"
        rows = self.conn.execute(f"SELECT path, {extra}, added FROM images WHERE model_id = ? ORDER BY id",
                                 (model_id,)).fetchall()
        return [ImageRecord(path, digest, added, version) for path, digest, version, added in rows]

    def count_images(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def all_image_rows(self) -> tuple[list[int], list[bytes]]:
        """``(model id, embedding)`` of every image, in storage order."""
        rows = self.conn.execute("SELECT model_id, embedding FROM images ORDER BY model_id, id").fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    def image_row(self, model_id: int, offset: int) -> bytes:
        return self.conn.execute("SELECT embedding FROM images WHERE model_id = ? ORDER BY id LIMIT 1 OFFSET ?",
                                 (model_id, offset)).fetchone()[0]

    def sums(self, model_ids: Sequence[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        ids = list(model_ids)
        for start in range(0, len(ids), 900):  # SQLite limits the parameters of one statement
            part = ids[start:start + 900]
            marks = ",".join("?" * len(part))
            out.update(self.conn.execute(f"SELECT id, sum FROM models WHERE id IN ({marks})", part).fetchall())
        return out

    # -- writing (inside a transaction)
    def write_meta(self, meta: Meta) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                              [*meta.to_rows(), ("tool_version", __version__)])

    def insert_model(self, name: str, created: str, updated: str, tool_version: str, grid: int, n_images: int,
                     total: np.ndarray, meta: dict | None = None) -> int:
        """A new model (its fingerprint, the normalized ``total``, appended to the index blocks)."""
        cur = self.conn.execute(
            "INSERT INTO models (name, created, updated, tool_version, grid, n_images, sum, meta) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, created, updated, tool_version, int(grid), int(n_images), np.asarray(total, np.float64).tobytes(),
             json.dumps(meta or {})))
        model_id = int(cur.lastrowid)
        self._append_fingerprint(model_id, name, total)
        return model_id

    def set_model_meta(self, model_id: int, meta: dict) -> None:
        self.conn.execute("UPDATE models SET meta = ? WHERE id = ?", (json.dumps(meta), model_id))

    def insert_images(self, model_id: int, embeddings: np.ndarray | None, paths: Sequence[str],
                      added: str | Sequence[str], sha256: Sequence[str | None] | None = None,
                      tool_version: str | Sequence[str | None] = __version__) -> None:
        """Rows of one model's images; ``embeddings`` None stores none (a gallery of fingerprints only)."""
        n = len(paths)
        times = [added] * n if isinstance(added, str) else list(added)
        versions = [tool_version] * n if isinstance(tool_version, str) or tool_version is None else list(tool_version)
        digests = list(sha256) if sha256 is not None else [None] * n
        blobs = [None] * n if embeddings is None else [np.ascontiguousarray(e, np.float32).tobytes() for e in embeddings]
        if not len(times) == len(versions) == len(digests) == len(blobs) == n:
            raise ValueError("insert_images: one value per image expected")
        self.conn.executemany(
            "INSERT INTO images (model_id, path, added, embedding, sha256, tool_version) VALUES (?, ?, ?, ?, ?, ?)",
            [(model_id, str(p), t, b, d, v) for p, t, b, d, v in zip(paths, times, blobs, digests, versions, strict=True)])

    def delete_images(self, model_id: int) -> None:
        self.conn.execute("DELETE FROM images WHERE model_id = ?", (model_id,))

    def update_model(self, model_id: int, now: str, grid: int, n_images: int, total: np.ndarray) -> None:
        """New images for a model: its sum, count and fingerprint (one index block rewritten)."""
        self.conn.execute("UPDATE models SET updated = ?, tool_version = ?, grid = ?, n_images = ?, sum = ? WHERE id = ?",
                          (now, __version__, int(grid), int(n_images), np.asarray(total, np.float64).tobytes(),
                           model_id))
        block, slot = self.conn.execute("SELECT block, slot FROM models WHERE id = ?", (model_id,)).fetchone()
        ids, names, vectors = self._block(block)
        vectors[slot] = _unit(total)
        self._write_block(block, ids, names, vectors)

    def delete_model(self, model_id: int) -> None:
        """Remove a model and its images; its index slot is marked free (blocks are compacted when half free)."""
        self.delete_images(model_id)
        block, slot = self.conn.execute("SELECT block, slot FROM models WHERE id = ?", (model_id,)).fetchone()
        self.conn.execute("DELETE FROM models WHERE id = ?", (model_id,))
        ids, names, vectors = self._block(block)
        ids[slot] = -1
        self._write_block(block, ids, names, vectors)
        slots = self.conn.execute("SELECT COALESCE(SUM(LENGTH(ids)), 0) / 8 FROM fingerprints").fetchone()[0]
        if slots >= max(BLOCK, 2 * self.count_models()):
            self.rebuild_fingerprints()

    def model_sum(self, model_id: int) -> np.ndarray:
        return vector(self.conn.execute("SELECT sum FROM models WHERE id = ?", (model_id,)).fetchone()[0], np.float64)

    def count_models(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM models").fetchone()[0])

    def model_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Model ids and image counts, in enrollment order."""
        rows = self.conn.execute("SELECT id, n_images FROM models ORDER BY id").fetchall()
        return np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64)

    def version(self) -> int:
        """Changes whenever another connection commits a change (SQLite's ``data_version``)."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # -- the index blocks
    def _block(self, block: int) -> tuple[np.ndarray, list[str], np.ndarray]:
        ids, names, vectors = self.conn.execute("SELECT ids, names, vectors FROM fingerprints WHERE block = ?",
                                                (block,)).fetchone()
        ids = vector(ids, np.int64).copy()
        return ids, json.loads(names), vector(vectors).reshape(len(ids), -1).copy()

    def _write_block(self, block: int, ids: np.ndarray, names: list[str], vectors: np.ndarray) -> None:
        self.conn.execute("INSERT OR REPLACE INTO fingerprints (block, ids, names, vectors) VALUES (?, ?, ?, ?)",
                          (block, np.asarray(ids, np.int64).tobytes(), json.dumps(names),
                           np.ascontiguousarray(vectors, np.float32).tobytes()))

    def _append_fingerprint(self, model_id: int, name: str, total: np.ndarray) -> None:
        last = self.conn.execute("SELECT MAX(block) FROM fingerprints").fetchone()[0]
        if last is not None:
            ids, names, vectors = self._block(last)
        if last is None or len(ids) >= BLOCK:
            last, ids, names, vectors = (last + 1 if last is not None else 0), np.zeros(0, np.int64), [], None
        slot = len(ids)
        new = _unit(total)[None]
        vectors = new if vectors is None else np.vstack([vectors, new])
        self._write_block(last, np.append(ids, model_id), [*names, name], vectors)
        self.conn.execute("UPDATE models SET block = ?, slot = ? WHERE id = ?", (last, slot, model_id))

    def rebuild_fingerprints(self) -> None:
        """Rewrite the index blocks from the models' sums, without free slots (after many removals)."""
        self.conn.execute("DELETE FROM fingerprints")
        rows = self.conn.execute("SELECT id, name, sum FROM models ORDER BY id").fetchall()
        for start in range(0, len(rows), BLOCK):
            part = rows[start:start + BLOCK]
            block = start // BLOCK
            self._write_block(block, np.array([r[0] for r in part], np.int64), [r[1] for r in part],
                              np.stack([_unit(vector(r[2], np.float64)) for r in part]))
            self.conn.executemany("UPDATE models SET block = ?, slot = ? WHERE id = ?",
                                  [(block, slot, r[0]) for slot, r in enumerate(part)])


def _unit(total: np.ndarray) -> np.ndarray:
    """A fingerprint: the normalized sum of a model's normalized embeddings."""
    return l2_normalize(np.asarray(total, np.float64)).astype(np.float32)


def is_sqlite(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
