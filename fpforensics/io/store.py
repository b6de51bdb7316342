"""Files: how fpforensics reads and writes its files (HDF5 stamps, atomic replacement, locks, safe names).

Every file written by the tool carries root attributes ``fpt_format`` (what it is: ``pool``,
``gallery``, ``embeddings``, ``artifacts``, ...), ``fpt_format_version`` and ``tool_version``.
Writers never modify a user's file in place: they write a temporary file beside it and
atomically rename it over the original (``os.replace``), so an interrupted write leaves the old
file intact. Writers that read-modify-write also hold an advisory lock so two processes queue
instead of losing each other's update.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import h5py

from fpforensics import __version__
from fpforensics.errors import IncompatibleError, InputError, OutputError


def default_mode() -> int:
    """Permissions a plain ``open()`` would give (mkstemp makes files owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def check_writable(path: str | Path) -> Path:
    """Fail early, before any work, when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, expected a file path")
    if not parent.exists():
        raise OutputError(f"{path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{path}: folder {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{path}: file is not writable")
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


@contextlib.contextmanager
def file_lock(path: str | Path, timeout: float | None = None) -> Iterator[None]:
    """Advisory exclusive lock on ``<path>.lock``: concurrent writers wait their turn."""
    lock_path = Path(str(path) + ".lock")
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is fsynced and renamed over ``path``.

    The one way fpforensics replaces a file: an interrupted or failed write leaves the old file
    intact and no temp file behind. ``suffix`` keeps writers that append an extension (``np.save``)
    writing to the temp path itself.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        os.chmod(tmp, default_mode())
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: could not write ({exc.strerror or exc})") from None
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


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
            f = h5py.File(tmp, "r+")
        else:
            f = h5py.File(tmp, "w")
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
