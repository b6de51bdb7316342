"""Provenance of a result: which exact image, tool, extractor and operating point made a verdict, and when."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from fpforensics import __version__

CHUNK = 1 << 20


def utc_timestamp() -> str:
    """Now, UTC, ISO 8601 to the second with a ``Z``: ``2024-05-01T12:00:00Z``."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sha256_file(path: str | os.PathLike | bytes) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (images and checkpoints of any size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=8)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def sha256_file_cached(path: str | os.PathLike) -> str:
    """:func:`sha256_file`, remembered per (path, size, mtime): one extractor is hashed once per run, not per image."""
    st = os.stat(path)
    return _cached_sha256(os.fspath(path), st.st_size, st.st_mtime_ns)


def extractor_file(spec: str | os.PathLike | None) -> Path | None:
    """The weight file behind an ``--extractor`` value (as ``load_extractor`` resolves it), or None if built in."""
    from fpforensics.extractor import DEFAULT_EXTRACTOR_PATH

    spec = "default" if spec is None else os.fspath(spec)
    if spec == "default":
        return DEFAULT_EXTRACTOR_PATH if DEFAULT_EXTRACTOR_PATH.exists() else None
    if spec in ("spectral", "pixels"):
        return None
    return Path(spec)


@dataclass(frozen=True)
class ExtractorRef:
    """An extractor as results cite it: its ``identity`` (weights digest) and, for a file, the file's sha256."""

    identity: str
    file_sha256: str | None = None
    file_name: str | None = None

    @classmethod
    def of(cls, identity: str, spec: str | os.PathLike | None = None) -> ExtractorRef:
        path = extractor_file(spec)
        if path is None or not path.is_file():
            return cls(identity)
        return cls(identity, sha256_file_cached(path), path.name)


@dataclass
class Provenance:
    """Ties one result to the exact image bytes, tool version, extractor and operating point, at a UTC time."""

    image_sha256: str
    extractor: str
    extractor_sha256: str | None = None
    operating_point: dict = field(default_factory=dict)
    tool_version: str = __version__
    timestamp: str = field(default_factory=utc_timestamp)

    @classmethod
    def for_image(cls, path: str | os.PathLike, extractor: ExtractorRef, operating_point: dict | None = None,
                  image_sha256: str | None = None) -> Provenance:
        """Hash ``path`` (unless its sha256 is given) and stamp the time now."""
        return cls(image_sha256 or sha256_file(path), extractor.identity, extractor.file_sha256,
                   dict(operating_point or {}))

    def to_dict(self) -> dict:
        """JSON-ready; keys in the order a reader checks them."""
        d = asdict(self)
        return {k: d[k] for k in ("image_sha256", "tool_version", "extractor", "extractor_sha256", "operating_point",
                                  "timestamp")}
