"""Files: how fpforensics reads and writes its files (stamps, the one check before writing, atomic replacement, locks).

Every file written by the tool carries its kind: HDF5 and gallery files a root ``fpt_format``
(``pool``, ``gallery``, ``embeddings``, ``artifacts``, ...) with ``fpt_format_version`` and
``tool_version``; checkpoints an ``fpt_kind``; reports an ``fpt_report`` key; figures and panels a
PNG text chunk ``fpt_format``. :func:`file_kind` reads it back, and :func:`check_output`, the one
check every command makes before any work, uses it: an existing file that fpt did not write, or
of another kind, is never replaced; one of fpt's own of the same kind only with ``--overwrite``
(or when the command appends to it).

Writers never modify a user's file in place: they write a temporary file beside it
(``.<name>.fpt-XXXXXXXX.tmp``, locked while it is written) and atomically rename it over the
original (``os.replace``), so an interrupted write leaves the old file intact. A temporary whose
lock is not held and that is older than the current run is a leftover of a killed run: the next
write of the same file (and the check before it) removes it. Writers that read-modify-write hold
an advisory lock (``<name>.lock``, removed when released) so two processes queue instead of
losing each other's update.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import h5py

from fpforensics import __version__
from fpforensics.errors import IncompatibleError, InputError, OutputError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
SQLITE_MAGIC = b"SQLite format 3\x00"
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EMPTY = "empty"  # file_kind of a zero-byte file: nothing in it to lose
TEMP_MARK = "fpt-"
# ".<name>.fpt-XXXXXXXX.tmp[.npy|.npz]"; without "fpt-": the temporaries of earlier versions (never locked).
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?:fpt-)?[a-z0-9_]{8}\.tmp(?:\.npy|\.npz)?$")
_run_started = time.time()


def begin_run() -> None:
    """Mark the start of a run: temporaries older than this whose lock is free are leftovers (the CLI calls it)."""
    global _run_started
    _run_started = time.time()


def default_mode() -> int:
    """Permissions a plain ``open()`` would give (mkstemp makes files owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def lock_path_of(path: str | Path) -> Path:
    return Path(str(path) + ".lock")


def check_writable(path: str | Path, lock: bool = False) -> Path:
    """Fail early, before any work, when ``path`` (and with ``lock`` its lock file) cannot be written.

    The message names the path and why: a folder where a file goes, a missing or read-only
    folder, a read-only file, a lock file that cannot be opened.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, expected a file path")
    if not parent.exists():
        missing = next((p for p in reversed([parent, *parent.parents]) if not p.exists()), parent)
        if missing.parent.exists() and not missing.parent.is_dir():
            raise OutputError(f"{path}: {missing.parent} is a file, not a folder")
        raise OutputError(f"{path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"{path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: folder {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{path}: file is not writable")
    # os.access says yes to root everywhere; a read-only mount or /proc only shows when a file is made
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".fpt-probe-")
    except OSError as exc:
        raise OutputError(f"{path}: cannot create files in folder {parent} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    if lock:
        lp = lock_path_of(path)
        if lp.is_dir():
            raise OutputError(f"{lp}: the lock file is a folder; remove it")
        if lp.exists() and not os.access(lp, os.R_OK | os.W_OK):
            raise OutputError(f"{lp}: the lock file is not writable (left by another user?); remove it if no "
                              "fpt process is running")
    return path


def _head(path: Path, n: int = 16) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def file_kind(path: str | Path) -> str | None:
    """What fpt wrote at ``path``: its kind (``pool``, ``gallery``, ``embeddings``, ``extractor``, ``report``, ...).

    ``None`` when fpt did not write it (or it cannot be read); :data:`EMPTY` for a zero-byte file.
    A ``.npy`` file carries no stamp: a 2-D float32 matrix (what ``fpt embed`` writes) is ``npy``.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return EMPTY
    except OSError:
        return None
    head = _head(path)
    try:
        if head.startswith(HDF5_MAGIC):
            with h5py.File(path, "r", locking=False) as f:
                found = f.attrs.get("fpt_format")
            return read_str(found) if found is not None else None
        if head.startswith(SQLITE_MAGIC):
            import sqlite3
            from urllib.parse import quote

            def meta_format(mode: str):
                conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode={mode}", uri=True)
                try:
                    return conn.execute("SELECT value FROM meta WHERE key = 'fpt_format'").fetchone()
                finally:
                    conn.close()

            try:
                row = meta_format("ro")
            except sqlite3.OperationalError:  # a hot journal (a killed writer): SQLite rolls it back on a rw open
                row = meta_format("rw")
            return str(row[0]) if row else None
        if head.startswith(_ZIP_MAGIC):
            import warnings

            import torch

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            return str(payload["fpt_kind"]) if isinstance(payload, dict) and "fpt_kind" in payload else None
        if head.startswith(_NPY_MAGIC):
            import numpy as np

            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            return "npy" if arr.ndim == 2 and arr.dtype == np.float32 else None
        if head.startswith(_PNG_MAGIC):
            from PIL import Image

            with Image.open(path) as im:
                found = im.text.get("fpt_format") if hasattr(im, "text") else None
            return found or None
        return _text_kind(path)
    except Exception:  # unreadable, corrupt or foreign: not a file fpt can vouch for
        return None


_HTML_STAMP = re.compile(r'<meta\s+name="fpt_format"\s+content="([\w.-]+)"', re.IGNORECASE)


def html_stamp(kind: str) -> str:
    """The ``<meta>`` tag that marks an HTML file as fpt's own of ``kind`` (:func:`file_kind` reads it)."""
    return f'<meta name="fpt_format" content="{kind}">'


def _text_kind(path: Path) -> str | None:
    """``report`` (``fpt eval``'s report.json), ``training-log`` (``fpt train extractor``'s JSONL log), or the kind
    of an HTML file stamped with :func:`html_stamp` in its head."""
    if path.stat().st_size > 256 << 20:
        return None
    text = path.read_text(encoding="utf-8")
    if text.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
        found = _HTML_STAMP.search(text[:8192])
        return found.group(1) if found else None
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and "fpt_report" in doc:
            return "report"
    except ValueError:
        pass
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    if lines and all(isinstance(r, dict) and "epoch" in r and "step" in r for r in lines):
        return "training-log"
    return None


def describe(path: Path) -> str:
    """A few words on a file fpt did not write, for the refusal message."""
    head = _head(path, 512)
    if head.startswith(HDF5_MAGIC):
        return "an HDF5 file"
    if head.startswith(SQLITE_MAGIC):
        return "a SQLite database"
    if head.startswith(_ZIP_MAGIC):
        return "a zip or torch file"
    if head.startswith(_NPY_MAGIC):
        return "a .npy file that is not a float32 matrix"
    if head.startswith(_PNG_MAGIC):
        return "a PNG image"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "a file"


def check_output(path: str | Path, kind: str | Sequence[str], overwrite: bool = False, append: bool = False,
                 lock: bool = False, exists_hint: str = "pass --overwrite to replace it") -> Path:
    """The one check before a command writes ``path`` (of ``kind``), made before any work.

    * the path must be writable (:func:`check_writable`; with ``lock`` its lock file too);
    * an existing file that fpt did not write, or of another kind, is refused, whatever the flags;
    * one of fpt's own of the same kind is refused unless ``overwrite``, or ``append`` (the
      command adds to it: a gallery, a pool, a resumed checkpoint); a zero-byte file is replaced.

    Leftover temporaries of ``path`` from killed runs are removed. Returns ``path``.
    """
    path = check_writable(path, lock=lock)
    clean_stale_temporaries(path)
    if not path.exists():
        return path
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    found = file_kind(path)
    if found == EMPTY:
        return path
    if found is None:
        raise OutputError(f"{path}: exists and is {describe(path)} that fpt did not write; refusing to replace "
                          "it (choose another path)")
    if found not in kinds:
        raise OutputError(f"{path}: is an fpt '{found}' file, not '{kinds[0]}'; refusing to replace it "
                          "(choose another path)")
    if not (append or overwrite):
        raise OutputError(f"{path}: exists (an fpt '{found}' file); {exists_hint}")
    return path


def open_h5(path: str | Path, kind: str | None = None, max_version: int | None = None) -> h5py.File:
    """Open an fpforensics HDF5 file for reading, with a clear error for anything wrong.

    ``max_version``: the newest ``fpt_format_version`` the caller can read; a newer file is refused.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an HDF5 file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file (corrupt or truncated?) [{exc.__class__.__name__}]") from None
    if kind is not None:
        try:
            require_kind(f, kind, path)
            version = int(f.attrs.get("fpt_format_version", 0))
            if max_version is not None and version > max_version:
                raise IncompatibleError(f"{path}: {kind} format v{version} is newer than this fpt reads "
                                        f"(v{max_version}): upgrade fpforensics")
        except Exception:
            f.close()
            raise
    return f


def require_kind(f: h5py.File, kind: str, path: str | Path = "") -> None:
    found = f.attrs.get("fpt_format")
    if found is None:
        raise IncompatibleError(f"{path}: HDF5 file was not written by fpforensics (no fpt_format attribute)")
    if isinstance(found, bytes):
        found = found.decode()
    if found != kind:
        raise IncompatibleError(f"{path}: is an fpforensics '{found}' file, expected '{kind}'")


def stamp(f: h5py.File, kind: str, format_version: int = 1) -> None:
    """Mark a file as written by this tool."""
    f.attrs["fpt_format"] = kind
    f.attrs["fpt_format_version"] = format_version
    f.attrs["tool_version"] = __version__


class Lock:
    """An exclusive advisory lock on ``<path>.lock``, held until :meth:`release`, which removes the lock file."""

    def __init__(self, path: str | Path, wait: bool = True, busy: str | None = None) -> None:
        self.path = lock_path_of(path)
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot open the lock file ({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                raise OutputError(busy or f"{path}: another fpt process is writing it (lock {self.path})") from None
            try:  # a holder that finished removed the file we waited on: lock the current one instead
                current = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                current = False
            if current:
                self.fd: int | None = fd
                return
            os.close(fd)

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still held: a waiter then sees the file gone and retries
        os.close(self.fd)
        self.fd = None


@contextlib.contextmanager
def file_lock(path: str | Path, wait: bool = True, busy: str | None = None) -> Iterator[Path]:
    """Exclusive advisory lock on ``<path>.lock`` for the block: concurrent writers wait their turn
    (or, with ``wait=False``, fail at once with ``busy``). No lock file is left after the block."""
    lock = Lock(path, wait, busy)
    try:
        yield lock.path
    finally:
        lock.release()


def _try_remove_stale(tmp: Path) -> bool:
    try:
        fd = os.open(tmp, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False  # held: a live writer
    try:
        if os.fstat(fd).st_mtime >= _run_started:
            return False  # made during this run, maybe a writer between creating and locking it
        os.unlink(tmp)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def clean_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove fpt's leftover temporaries: of the file ``path`` (beside it), or every one in the folder ``path``.

    A leftover is named like fpt's temporaries, its lock is free and it is older than this run;
    a temporary that a live process is writing is never touched. Returns what was removed.
    """
    path = Path(path)
    folder, name = (path, None) if path.is_dir() else (path.parent, path.name)
    if not folder.is_dir():
        return []
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m and (name is None or m["name"] == name) and entry.is_file(follow_symlinks=False):
            if _try_remove_stale(Path(entry.path)):
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def temporary_beside(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A new temporary file beside ``path``, locked (so no cleaner takes it for a leftover) and removed
    at the end unless the block moved it; leftovers of ``path`` from killed runs are removed first."""
    path = Path(path)
    clean_stale_temporaries(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{TEMP_MARK}", suffix=suffix, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.chmod(tmp, default_mode())
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is fsynced and renamed over ``path``.

    The one way fpforensics replaces a file: an interrupted or failed write leaves the old file
    intact and no temp file behind (a killed one leaves a temporary that the next write removes).
    ``suffix`` keeps writers that append an extension (``np.save``) writing to the temp path itself.
    """
    path = Path(path)
    try:
        with temporary_beside(path, suffix) as tmp:
            yield tmp
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: could not write ({exc.strerror or exc})") from None


@contextlib.contextmanager
def atomic_h5(path: str | Path, kind: str, copy_existing: bool = True, format_version: int = 1) -> Iterator[h5py.File]:
    """Write an HDF5 file atomically: changes go to a temp copy, renamed over the original on success.

    With ``copy_existing`` the temp file starts as a copy of the current file (checked first to
    be a readable file of ``kind``), so callers can modify it; otherwise it starts empty.
    """
    path = check_writable(path)
    with atomic_file(path) as tmp:
        if copy_existing and path.exists():
            with open_h5(path, kind):
                pass
            shutil.copyfile(path, tmp)
            f = h5py.File(tmp, "r+", locking=False)  # the temporary is already locked by us
        else:
            f = h5py.File(tmp, "w", locking=False)
        try:
            stamp(f, kind, format_version)
            yield f
            f.flush()
        finally:
            f.close()


def read_str(value: object) -> str:
    """HDF5 strings come back as bytes or str depending on how they were written."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


STR_DTYPE = h5py.string_dtype("utf-8")


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second: every file's ``created`` / ``updated`` stamp."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def safe_name(text: str, fallback: str = "item") -> str:
    """``text`` as a portable file name part: runs of anything but ASCII letters, digits, ``_.-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or fallback


def json_default(o: object):
    """``json.dump`` fallback for numpy values and paths: the one JSON encoding of fpt's results."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_json(path: Path, obj: dict) -> Path:
    """Write ``obj`` as indented JSON atomically; a NaN is refused rather than written as invalid JSON."""
    try:
        with atomic_file(path) as tmp, open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, default=json_default, allow_nan=False)
            fh.write("\n")
    except ValueError as exc:
        raise OutputError(f"{path}: could not write ({exc})") from None
    return path
