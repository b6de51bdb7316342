"""Stage 5, embedding: the cache of computed rows, ``<folder>/emb-<hash>.npz`` files keyed by what made them.

A key is a string that names everything the rows depend on (encoder identity, perturbation,
seed, the signature of the file list); an entry holds ``emb (N, D)``, ``ok (N,)`` (which images
loaded) and the key itself, so a hash collision or a damaged file is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from fpforensics.io.store import atomic_file


class EmbeddingCache:
    """Rows by key in ``folder`` (``None``: a cache that never hits and stores nothing)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / f"emb-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"

    def load(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        if self.folder is None:
            return None
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != key:
                    return None
                return z["emb"], z["ok"]
        except (OSError, ValueError, KeyError):
            return None  # a damaged cache entry is recomputed, never trusted

    def save(self, key: str, emb: np.ndarray, ok: np.ndarray) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(self._path(key), suffix=".tmp.npz") as tmp:
            np.savez(tmp, emb=emb.astype(np.float32), ok=ok, key=np.array(key))
