"""Stage 7, verdict: the match of a query against a gallery (1:N, with open-set rejection) or another image (1:1).

* **Identification** ranks the enrolled models by cosine similarity to each query through the
  gallery's index; when the best score is below the gallery's threshold the answer is
  "unknown model".
* **Verification** compares two embeddings by cosine similarity against a threshold (the
  paper's 0.81 by default, which belongs to the paper's extractor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fpforensics.errors import IncompatibleError, InputError
from fpforensics.gallery.calibration import PAPER_THRESHOLD
from fpforensics.gallery.gallery import Gallery
from fpforensics.gallery.index import ExactIndex, GalleryIndex


@dataclass
class Identification:
    """Top-k gallery models per query; ``predictions`` applies the open-set threshold."""

    names: list[str]
    indices: np.ndarray  # (n, k) rows into names, best first
    scores: np.ndarray  # (n, k) cosine similarities
    threshold: float | None

    @property
    def best_scores(self) -> np.ndarray:
        return self.scores[:, 0]

    @property
    def known(self) -> np.ndarray:
        if self.threshold is None:
            return np.ones(len(self.scores), bool)
        return self.scores[:, 0] >= self.threshold

    @property
    def predictions(self) -> list[str | None]:
        """Best model per query, or None for "unknown model" (best score below threshold)."""
        return [self.names[row[0]] if ok else None for row, ok in zip(self.indices, self.known, strict=True)]

    def ranking(self, i: int) -> list[tuple[int, str, float]]:
        pairs = zip(self.indices[i], self.scores[i], strict=True)
        return [(r + 1, self.names[j], float(s)) for r, (j, s) in enumerate(pairs)]


def identify(query_embeddings: np.ndarray, gallery, top_k: int = 5, threshold: float | None = None
             ) -> Identification:
    """Rank the models of ``gallery`` (a :class:`~fpforensics.gallery.Gallery`, an index, or a
    ``(names, fingerprint matrix)`` pair) for each query embedding.

    ``threshold`` None takes the gallery's stored threshold (an index or a pair has none:
    closed-set ranking).
    """
    index: GalleryIndex
    if isinstance(gallery, Gallery):
        index = gallery.index()
        threshold = gallery.threshold if threshold is None else threshold
    elif hasattr(gallery, "search"):
        index = gallery
    else:
        names, fp = gallery
        index = ExactIndex(list(names), np.asarray(fp, np.float32))
    if not len(index.names):
        raise InputError("the gallery is empty: enroll models first (`fpt gallery add NAME IMAGES`)")
    q = np.atleast_2d(np.asarray(query_embeddings, np.float32))
    if q.shape[1] != index.dim:
        raise IncompatibleError(f"queries are {q.shape[1]}-d, the gallery is {index.dim}-d: not comparable")
    if top_k < 1:
        raise InputError(f"--top-k must be at least 1 (got {top_k})")
    idx, scores = index.search(q, top_k)
    return Identification(list(index.names), idx, scores, threshold)


@dataclass
class Verification:
    cosine: float
    threshold: float

    @property
    def same_model(self) -> bool:
        return self.cosine >= self.threshold


def verify(a: np.ndarray, b: np.ndarray, threshold: float = PAPER_THRESHOLD) -> Verification:
    """Cosine similarity of two embeddings (symmetric) and the same-model verdict."""
    a64, b64 = (np.asarray(v, np.float64).ravel() for v in (a, b))
    if a64.shape != b64.shape:
        raise IncompatibleError(f"embeddings of different sizes ({a64.size} vs {b64.size}): not comparable")
    denom = max(np.linalg.norm(a64) * np.linalg.norm(b64), 1e-24)
    return Verification(float(np.clip(np.dot(a64, b64) / denom, -1.0, 1.0)), float(threshold))

