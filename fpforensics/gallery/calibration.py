"""Stage 6, gallery: the open-set threshold, derived from the enrolled images.

Genuine scores are leave-one-out (each image against its own model's fingerprint recomputed
without it); impostor scores are leave-one-model-out (each image's best score among the *other*
models, the score it would get if its model were not enrolled). The threshold maximizes balanced
accuracy between the two. With one model there are no impostors: the threshold is the 5th
percentile of the genuine scores. With no model holding two images there is nothing to measure:
the paper's 0.81 is used and marked as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fpforensics.defaults import DEFAULTS
from fpforensics.metrics import l2_normalize

PAPER_THRESHOLD = DEFAULTS.verify_threshold
SINGLE_MODEL_QUANTILE = 0.05
MAX_CALIBRATION_QUERIES = 5000
SIMILARITY_BLOCK = 2**24  # similarities computed at once (64 MB of float32), whatever the gallery's size


@dataclass
class Calibration:
    threshold: float
    source: str  # calibrated | single-model | default | manual
    info: dict = field(default_factory=dict)


def genuine_scores(embeddings: np.ndarray, labels: np.ndarray, row_sums: np.ndarray | None = None,
                   row_counts: np.ndarray | None = None) -> np.ndarray:
    """Leave-one-out: each image against its model's fingerprint computed without it (models with >= 2 images).

    ``row_sums`` / ``row_counts``: the sum of the normalized embeddings and the image count of each
    row's model, when ``embeddings`` is only a sample of the model's images (large galleries).
    """
    emb = l2_normalize(embeddings, dtype=np.float32).astype(np.float64)
    labels = np.asarray(labels)
    if row_sums is None or row_counts is None:
        n_models = int(labels.max()) + 1 if len(labels) else 0
        counts = np.bincount(labels, minlength=n_models)
        sums = np.zeros((n_models, emb.shape[1]))
        np.add.at(sums, labels, emb)
        row_sums, row_counts = sums[labels], counts[labels]
    keep = np.asarray(row_counts) >= 2
    rest = np.asarray(row_sums, np.float64)[keep] - emb[keep]
    return np.einsum("ij,ij->i", emb[keep], rest) / np.maximum(np.linalg.norm(rest, axis=1), 1e-12)


def impostor_scores(embeddings: np.ndarray, labels: np.ndarray, fingerprints: np.ndarray,
                    max_queries: int = MAX_CALIBRATION_QUERIES, seed: int = 0) -> np.ndarray:
    """Leave-one-model-out: each image's best score among the other models' fingerprints.

    That is the score an image of a non-enrolled model gets, i.e. what the threshold must reject.
    At most ``max_queries`` images (a fixed random sample) are used, so large galleries stay fast.
    """
    labels = np.asarray(labels)
    if len(fingerprints) < 2 or not len(labels):
        return np.zeros(0)
    rows = np.arange(len(labels))
    if len(rows) > max_queries:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_queries, replace=False))
    out = np.empty(len(rows))
    fp = np.asarray(fingerprints, np.float32)
    step = max(1, int(SIMILARITY_BLOCK // max(1, len(fp))))
    for start in range(0, len(rows), step):
        r = rows[start:start + step]
        sim = l2_normalize(embeddings[r], dtype=np.float32) @ fp.T
        sim[np.arange(len(r)), labels[r]] = -np.inf
        out[start:start + len(r)] = sim.max(axis=1)
    return out


def best_threshold(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """Threshold (accept if score >= t) maximizing balanced accuracy, placed midway in the gap."""
    g, i = np.sort(genuine), np.sort(impostor)
    cands = np.unique(np.concatenate([g, i]))
    tpr = 1.0 - np.searchsorted(g, cands, "left") / len(g)
    tnr = np.searchsorted(i, cands, "left") / len(i)
    bal = (tpr + tnr) / 2
    k = int(np.argmax(bal))
    lower = cands[k - 1] if k > 0 else cands[k] - 1e-3
    return float((cands[k] + lower) / 2), float(bal[k])


def calibrate_threshold(embeddings: np.ndarray, labels: np.ndarray, fingerprints: np.ndarray,
                        row_sums: np.ndarray | None = None, row_counts: np.ndarray | None = None) -> Calibration:
    """Open-set threshold from enrolled images (scheme in the module docstring).

    ``labels`` index ``fingerprints``; ``row_sums`` / ``row_counts`` as in :func:`genuine_scores`.
    """
    gen = genuine_scores(embeddings, labels, row_sums, row_counts) if len(labels) else np.zeros(0)
    imp = impostor_scores(embeddings, labels, fingerprints)
    info: dict = {"genuine_pairs": int(len(gen)), "impostor_queries": int(len(imp))}
    if len(gen):
        info["genuine_mean"] = round(float(gen.mean()), 4)
    if len(imp):
        info["impostor_mean"] = round(float(imp.mean()), 4)
    if len(gen) and len(imp):
        thr, bal = best_threshold(gen, imp)
        info.update(method="leave-one-out genuine vs leave-one-model-out impostor, max balanced accuracy",
                    balanced_accuracy=round(bal, 4))
        return Calibration(thr, "calibrated", info)
    if len(gen):
        info["method"] = f"one model: {SINGLE_MODEL_QUANTILE:.0%} quantile of leave-one-out genuine scores"
        return Calibration(float(np.quantile(gen, SINGLE_MODEL_QUANTILE)), "single-model", info)
    info["method"] = "too few images to calibrate (no model has 2): the paper's verification threshold"
    return Calibration(PAPER_THRESHOLD, "default", info)
