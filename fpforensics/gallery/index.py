"""Stage 6, gallery: the index that ranks enrolled models for a query, behind one interface.

The built-in ``exact`` index is a plain matrix product: cosine similarity of every query with
every fingerprint, chunked over queries to bound memory, then an exact top-k. An approximate
index (FAISS or similar, for galleries of millions of models) is one more class with the same
``search`` registered in :data:`INDEXES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from fpforensics.metrics import l2_normalize
from fpforensics.registry import Registry


class GalleryIndex(Protocol):
    """Built from the model names and their L2-normalized fingerprints ``(M, D)``."""

    names: list[str]
    dim: int

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices (n, k) into names, cosine scores (n, k))``, best first."""
        ...


INDEXES: Registry[type[GalleryIndex]] = Registry("gallery index", modules=(__name__,))


@INDEXES.register("exact")
class ExactIndex:
    """Exact cosine search: one matrix product ``Q @ F.T`` per chunk of queries, then a partial sort."""

    def __init__(self, names: Sequence[str], fingerprints: np.ndarray, chunk_elements: int = 2**25) -> None:
        self.names = list(names)
        vectors = np.asarray(fingerprints, np.float32)
        self.vectors = vectors.reshape(len(self.names), -1) if len(self.names) else np.zeros((0, vectors.shape[-1]))
        self.dim = int(self.vectors.shape[1])
        self.chunk_elements = chunk_elements

    def __len__(self) -> int:
        return len(self.names)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = l2_normalize(np.atleast_2d(queries), dtype=np.float32)
        m = len(self.names)
        k = min(k, m)
        idx = np.empty((len(q), k), np.int64)
        scores = np.empty((len(q), k), np.float32)
        step = max(1, self.chunk_elements // max(1, m))
        for start in range(0, len(q), step):
            sim = q[start:start + step] @ self.vectors.T  # the whole gallery at once
            part = (np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < m
                    else np.broadcast_to(np.arange(m), sim.shape))
            part_scores = np.take_along_axis(sim, part, axis=1)
            order = np.argsort(-part_scores, axis=1, kind="stable")
            idx[start:start + len(sim)] = np.take_along_axis(part, order, axis=1)
            scores[start:start + len(sim)] = np.take_along_axis(part_scores, order, axis=1)
        return idx, scores
