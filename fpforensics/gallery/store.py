"""Stage 6, gallery: the gallery file (format v2), a SQLite database to which enrollment appends.

One file, three tables:

* ``meta(key, value)``: ``fpt_format`` (``gallery``), ``fpt_format_version`` (2),
  ``tool_version``, ``extractor`` (identity of the extractor that made every embedding),
  ``extractor_spec`` (the ``--extractor`` value used, a hint for error messages),
  ``embedding_dim``, ``threshold`` (open-set threshold; empty when none), ``threshold_source``
  (``calibrated`` | ``single-model`` | ``default`` | ``manual`` | ``none``), ``threshold_info``
  (JSON), ``created``, ``updated`` (UTC ISO 8601);
* ``models``: one row per enrolled model in enrollment order: ``name`` (unique), ``created``,
  ``updated``, ``tool_version``, ``grid``, ``n_images``, ``sum`` (float64 sum of its normalized
  image embeddings) and ``fingerprint`` (float32, the normalized sum);
* ``images``: one row per enrolled image: ``model_id``, ``path``, ``added``, ``embedding`` (float32).

Every change is one SQLite transaction: writers queue on the database lock (``BEGIN IMMEDIATE``),
an interrupted write is rolled back from the journal on the next open, and adding a model
writes its rows only. Identification reads ``models`` alone. SQLite ships with Python and is
built for exactly this (crash-safe appends to one file), so no storage code is written here.
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

KIND = "gallery"
FORMAT_VERSION = 2
SQLITE_MAGIC = b"SQLite format 3\x00"
LOCK_TIMEOUT_S = 600.0
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL, updated TEXT NOT NULL,
                     tool_version TEXT NOT NULL, grid INTEGER NOT NULL, n_images INTEGER NOT NULL,
                     sum BLOB NOT NULL, fingerprint BLOB NOT NULL);
CREATE TABLE images (id INTEGER PRIMARY KEY, model_id INTEGER NOT NULL REFERENCES models(id), path TEXT NOT NULL,
                     added TEXT NOT NULL, embedding BLOB NOT NULL);
CREATE INDEX images_by_model ON images(model_id, id);
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
    created: str = ""
    updated: str = ""

    def to_rows(self) -> list[tuple[str, str]]:
        return [("extractor", self.extractor or ""), ("extractor_spec", self.extractor_spec),
                ("embedding_dim", str(int(self.dim))),
                ("threshold", "" if self.threshold is None else repr(float(self.threshold))),
                ("threshold_source", self.threshold_source), ("threshold_info", json.dumps(self.threshold_info)),
                ("created", self.created), ("updated", self.updated)]

    @classmethod
    def from_rows(cls, rows: dict[str, str]) -> Meta:
        thr = rows.get("threshold", "")
        return cls(extractor=rows.get("extractor") or None, extractor_spec=rows.get("extractor_spec", ""),
                   dim=int(rows.get("embedding_dim", "0") or 0),
                   threshold=None if thr in ("", "nan") or math.isnan(float(thr)) else float(thr),
                   threshold_source=rows.get("threshold_source", "none"),
                   threshold_info=json.loads(rows.get("threshold_info") or "{}"),
                   created=rows.get("created", ""), updated=rows.get("updated", ""))


@dataclass
class ModelRow:
    id: int
    name: str
    created: str
    updated: str
    tool_version: str
    grid: int
    n_images: int


def vector(blob: bytes, dtype=np.float32) -> np.ndarray:
    return np.frombuffer(blob, dtype=dtype)


class GalleryStore:
    """A connection to a gallery database (a file, or ``:memory:`` for a gallery that is never saved)."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None) -> None:
        self.conn, self.path = conn, path

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
    def open(cls, path: Path) -> GalleryStore:
        """An existing v2 gallery file; anything else is refused with a one-line error, untouched."""
        try:
            conn = cls._connect(f"file:{quote(str(path.resolve()))}?mode=rw")  # mode=rw: never creates a file
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
        return cls(conn, path)

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
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    # -- reading
    def meta(self) -> Meta:
        return Meta.from_rows(dict(self.conn.execute("SELECT key, value FROM meta").fetchall()))

    def model_rows(self) -> list[ModelRow]:
        cur = self.conn.execute("SELECT id, name, created, updated, tool_version, grid, n_images FROM models "
                                "ORDER BY id")
        return [ModelRow(*r) for r in cur.fetchall()]

    def model_row(self, name: str) -> ModelRow | None:
        r = self.conn.execute("SELECT id, name, created, updated, tool_version, grid, n_images FROM models "
                              "WHERE name = ?", (name,)).fetchone()
        return ModelRow(*r) if r else None

    def fingerprints(self, dim: int) -> tuple[list[str], np.ndarray]:
        """Names and the ``(M, D)`` fingerprint matrix, in enrollment order: all identification reads."""
        rows = self.conn.execute("SELECT name, fingerprint FROM models ORDER BY id").fetchall()
        matrix = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), dim)
        return [r[0] for r in rows], matrix

    def images(self, model_id: int) -> tuple[list[str], list[str], list[bytes]]:
        rows = self.conn.execute("SELECT path, added, embedding FROM images WHERE model_id = ? ORDER BY id",
                                 (model_id,)).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]

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
                     total: np.ndarray, fingerprint: np.ndarray) -> int:
        cur = self.conn.execute(
            "INSERT INTO models (name, created, updated, tool_version, grid, n_images, sum, fingerprint) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, created, updated, tool_version, int(grid), int(n_images), np.asarray(total, np.float64).tobytes(),
             np.asarray(fingerprint, np.float32).tobytes()))
        return int(cur.lastrowid)

    def insert_images(self, model_id: int, embeddings: np.ndarray, paths: Sequence[str], added: str | Sequence[str]
                      ) -> None:
        times = [added] * len(paths) if isinstance(added, str) else list(added)
        self.conn.executemany(
            "INSERT INTO images (model_id, path, added, embedding) VALUES (?, ?, ?, ?)",
            [(model_id, str(p), t, np.ascontiguousarray(e, np.float32).tobytes())
             for p, t, e in zip(paths, times, embeddings, strict=True)])

    def delete_images(self, model_id: int) -> None:
        self.conn.execute("DELETE FROM images WHERE model_id = ?", (model_id,))

    def delete_model(self, model_id: int) -> None:
        self.delete_images(model_id)
        self.conn.execute("DELETE FROM models WHERE id = ?", (model_id,))

    def update_model(self, model_id: int, now: str, grid: int, n_images: int, total: np.ndarray,
                     fingerprint: np.ndarray) -> None:
        self.conn.execute(
            "UPDATE models SET updated = ?, tool_version = ?, grid = ?, n_images = ?, sum = ?, fingerprint = ? "
            "WHERE id = ?", (now, __version__, int(grid), int(n_images), np.asarray(total, np.float64).tobytes(),
                             np.asarray(fingerprint, np.float32).tobytes(), model_id))

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


def is_sqlite(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
