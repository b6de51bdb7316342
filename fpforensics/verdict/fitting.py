"""Calibrations fitted from embeddings of labelled images: balanced image pairs, image-to-fingerprint scores, margins.

The sampling reuses the evaluation protocols (:func:`~fpforensics.evaluation.protocols.sample_pairs`,
``shot_split``, ``fingerprints``), so a calibration sees data drawn exactly as ``fpt eval`` draws it.
Feed it embeddings of data kept apart from every test: held-out synthetic models, generators set
aside for calibration.
"""

from __future__ import annotations

import numpy as np

from fpforensics.errors import InputError
from fpforensics.evaluation.protocols import fingerprints, pair_scores, sample_pairs, shot_split
from fpforensics.metrics import l2_normalize
from fpforensics.verdict.calibration import Calibration, fit
from fpforensics.verdict.margin import DEFAULT_MAX_ERROR, fit_margin, top2_margins


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *stream])


REFERENCES = {"image": "image-image", "fingerprint": "image-fingerprint"}


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= n else x[rng.choice(len(x), n, replace=False)]


def image_pair_scores(embeddings: np.ndarray, labels: np.ndarray, pairs: int, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(genuine, impostor)`` cosines of ``pairs`` seeded balanced single-image pairs."""
    a, b, same = sample_pairs(labels, pairs, _rng(seed, 5))
    s = pair_scores(embeddings, a, b)
    return s[same], s[~same]


def fingerprint_scores(embeddings: np.ndarray, labels: np.ndarray, shots: int, repeats: int = 5, seed: int = 0
                       ) -> dict[str, np.ndarray]:
    """Queries against fingerprints of ``shots`` images per model, over ``repeats`` seeded splits.

    Returns ``genuine`` (query vs its own model), ``impostor`` (query vs every other model),
    ``margin`` (top-1 minus runner-up cosine) and ``correct`` (top-1 is the query's model).
    """
    n_models = int(labels.max()) + 1
    emb = l2_normalize(embeddings, dtype=np.float64)
    out: dict[str, list[np.ndarray]] = {"genuine": [], "impostor": [], "margin": [], "correct": []}
    for r in range(repeats):
        gal, qry = shot_split(labels, shots, _rng(seed, 6, r))
        sim = emb[qry] @ fingerprints(emb[gal], labels[gal], n_models).T
        truth = labels[qry]
        own = np.zeros(sim.shape, bool)
        own[np.arange(len(qry)), truth] = True
        margin, correct = top2_margins(sim, truth)
        for key, value in (("genuine", sim[own]), ("impostor", sim[~own]), ("margin", margin), ("correct", correct)):
            out[key].append(value)
    return {k: np.concatenate(v) for k, v in out.items()}


def fit_from_embeddings(embeddings: np.ndarray, labels, *, pairs: int = 10000, seed: int = 0,
                        reference: str = "image", shots: int = 10, repeats: int = 5,
                        data: str = "calibration data", extractor: str = "",
                        max_error: float = DEFAULT_MAX_ERROR) -> Calibration:
    """Fit a :class:`Calibration` (with the identification margin rule) from labelled embeddings.

    ``reference="image"``: genuine/impostor cosines of ``pairs`` balanced single-image pairs
    (for ``verify A B``). ``reference="fingerprint"``: each query against fingerprints of ``shots``
    images per model (for ``identify`` and ``verify --model``); at most ``pairs // 2`` scores of
    each class are kept. The margin rule always uses the fingerprint splits; with fewer than two
    models, or a model of a single image, there is none. ``shots`` shrinks to fit the smallest model.
    """
    if reference not in REFERENCES:
        raise InputError(f"reference must be one of {', '.join(REFERENCES)} (got {reference!r})")
    _, labels = np.unique(np.asarray(labels), return_inverse=True)
    labels = labels.astype(np.int64)
    emb = np.asarray(embeddings, np.float64)
    if emb.ndim != 2 or len(emb) != len(labels):
        raise InputError(f"need one label per embedding (got {emb.shape} and {len(labels)} labels)")
    counts = np.bincount(labels)
    k = int(min(shots, counts.min() - 1))
    fp = fingerprint_scores(emb, labels, k, repeats, seed) if k >= 1 and len(counts) >= 2 else None
    rng = _rng(seed, 7)
    if reference == "image":
        genuine, impostor = image_pair_scores(emb, labels, pairs, seed)
    elif fp is None:
        raise InputError("fingerprint calibration needs two models and a query beyond one shot in each")
    else:
        genuine, impostor = _subsample(fp["genuine"], pairs // 2, rng), _subsample(fp["impostor"], pairs // 2, rng)
    margin = fit_margin(fp["margin"], fp["correct"], max_error, shots=k) if fp is not None else None
    note = data if reference == "image" else f"{data} ({k} shots per fingerprint)"
    return fit(genuine, impostor, kind=REFERENCES[reference], data=note, extractor=extractor, margin=margin)
