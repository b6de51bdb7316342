"""Evaluation: the papers' protocols (METHOD 1.5) on precomputed embeddings, each registered for ``fpt eval``.

Every function takes ``embeddings (N, D)`` and integer model ``labels (N,)`` and is seeded, so
two extractors evaluated with the same seed see exactly the same splits and pairs (paired
comparison). Scores are cosine similarities; "accept" means ``score >= threshold``.

* :func:`identification` (1:N): per model ``shots`` images -> fingerprint (normalized mean), the
  rest are queries; top-1 / top-5 accuracy and macro-F1 over ``repeats`` seeded splits.
* :func:`verification` (1:1): images split per model into a calibration half and a test half,
  seeded balanced pairs in each; ROC AUC, EER, TPR at FPR 1%, accuracy at the threshold chosen
  on the calibration pairs, and the *oracle* accuracy (best threshold on the test pairs
  themselves, what the reference code reports).
* :func:`embedding_quality`: silhouette (higher better) and Davies-Bouldin (lower better).
* :func:`open_set`: leave-models-out; AUROC of rejecting queries of models that are not
  enrolled, and the operating point of the threshold ``fpt gallery`` would calibrate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import (
    confusion_matrix,
    davies_bouldin_score,
    f1_score,
    roc_auc_score,
    roc_curve,
    silhouette_score,
)

from fpforensics.errors import InputError
from fpforensics.evaluation import PROTOCOLS
from fpforensics.metrics import l2_normalize

SILHOUETTE_MAX_POINTS = 5000
TARGET_FPR = 0.01


def mean_std(values: list[float] | np.ndarray) -> dict[str, float]:
    """``{"mean", "std"}`` (population std; 0 for one value) of per-repeat figures."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std())} if arr.size else {"mean": float("nan"), "std": 0.0}


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator per (seed, protocol, repeat): splits do not depend on call order."""
    return np.random.default_rng([int(seed), *[int(s) for s in stream]])


# ---------------------------------------------------------------------------- identification


def shot_split(labels: np.ndarray, shots: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per model, ``shots`` random images for the gallery and the rest as queries (sorted indices)."""
    labels = np.asarray(labels)
    gallery, queries = [], []
    for m in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == m))
        if len(idx) < shots + 1:
            raise InputError(f"model {m} has {len(idx)} images: needs --shots {shots} plus at least one query")
        gallery.append(idx[:shots])
        queries.append(idx[shots:])
    return np.sort(np.concatenate(gallery)), np.sort(np.concatenate(queries))


def fingerprints(embeddings: np.ndarray, labels: np.ndarray, n_models: int) -> np.ndarray:
    """One fingerprint per model: the L2-normalized mean of its (normalized) embeddings, ``(M, D)``."""
    emb = l2_normalize(embeddings, dtype=np.float64)
    sums = np.zeros((n_models, emb.shape[1]))
    np.add.at(sums, np.asarray(labels), emb)
    return l2_normalize(sums)


@dataclass
class IdentificationResult:
    top1: list[float]
    top5: list[float]
    macro_f1: list[float]
    k_top5: int
    queries: int
    confusion: np.ndarray  # (M, M) summed over repeats, rows = true model

    def to_dict(self) -> dict:
        return {
            "top1": mean_std(self.top1), "top5": mean_std(self.top5), "macro_f1": mean_std(self.macro_f1),
            "per_repeat": {"top1": self.top1, "top5": self.top5, "macro_f1": self.macro_f1},
            "top5_k": self.k_top5, "queries_per_repeat": self.queries,
            "confusion_matrix": self.confusion.astype(int).tolist(),
        }


def scores_to_identification(labels: np.ndarray, shots: int, repeats: int, seed: int,
                             score_fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> IdentificationResult:
    """Top-1/top-5/macro-F1 over ``repeats`` seeded shot/query splits.

    ``score_fn(gallery_idx, query_idx)`` returns a ``(queries, models)`` score matrix (higher = more
    likely) for one split: cosine to fingerprints for extractors, class probabilities for the
    ManiFPT attributor, so every method is scored on the very same splits.
    """
    labels = np.asarray(labels)
    n_models = int(labels.max()) + 1
    k = min(5, n_models)
    top1, top5, f1s = [], [], []
    confusion = np.zeros((n_models, n_models), dtype=np.int64)
    n_queries = 0
    for r in range(repeats):
        gal, qry = shot_split(labels, shots, _rng(seed, 1, r))
        scores = score_fn(gal, qry)
        truth = labels[qry]
        pred = scores.argmax(axis=1)
        true_score = scores[np.arange(len(qry)), truth]
        rank = (scores >= true_score[:, None]).sum(axis=1) - 1  # ties count against the true model
        top1.append(float((pred == truth).mean()))
        top5.append(float((rank < k).mean()))
        f1s.append(float(f1_score(truth, pred, labels=np.arange(n_models), average="macro", zero_division=0)))
        confusion += confusion_matrix(truth, pred, labels=np.arange(n_models))
        n_queries = len(qry)
    return IdentificationResult(top1, top5, f1s, k, n_queries, confusion)


def identification(embeddings: np.ndarray, labels: np.ndarray, shots: int = 10, repeats: int = 5,
                   seed: int = 0) -> IdentificationResult:
    """Closed-set 1:N identification: a query goes to the most similar fingerprint (mean of the shots)."""
    labels = np.asarray(labels)
    n_models = int(labels.max()) + 1
    emb = l2_normalize(embeddings, dtype=np.float64)

    def cosine_to_fingerprints(gal: np.ndarray, qry: np.ndarray) -> np.ndarray:
        return emb[qry] @ fingerprints(emb[gal], labels[gal], n_models).T

    return scores_to_identification(labels, shots, repeats, seed, cosine_to_fingerprints)


# ---------------------------------------------------------------------------- verification


def sample_pairs(labels: np.ndarray, n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded balanced pairs: ``n_pairs // 2`` same-model, the rest different-model.

    Same-model pairs: an anchor drawn uniformly among images whose model has at least two,
    and a different image of that model. Different-model pairs: an anchor drawn uniformly, and
    an image of any other model. Drawn with replacement (small sets repeat pairs).
    Returns index arrays ``a``, ``b`` and the boolean ``same``.
    """
    labels = np.asarray(labels)
    n_same = n_pairs // 2
    n_diff = n_pairs - n_same
    counts = np.bincount(labels)
    eligible = np.flatnonzero(counts[labels] >= 2)
    if n_same and not len(eligible):
        raise InputError("verification needs at least one model with two images")
    if n_diff and len(np.unique(labels)) < 2:
        raise InputError("verification needs at least two models")
    order = np.argsort(labels, kind="stable")  # images grouped by model
    starts = np.concatenate([[0], np.cumsum(counts)])
    a_same = rng.choice(eligible, n_same)
    m = labels[a_same]
    # a random *other* member of the anchor's model: offset 1..count-1 from the anchor's position
    pos = np.empty(len(labels), dtype=np.int64)
    pos[order] = np.arange(len(labels))
    within = pos[a_same] - starts[m]
    other = (within + rng.integers(1, counts[m])) % counts[m]
    b_same = order[starts[m] + other]
    a_diff = rng.integers(0, len(labels), n_diff)
    ma = labels[a_diff]
    pick = rng.integers(0, len(labels) - counts[ma])  # index among images not of the anchor's model
    shifted = pick + (pick >= starts[ma]) * counts[ma]  # skip the anchor model's block
    b_diff = order[shifted]
    a = np.concatenate([a_same, a_diff])
    b = np.concatenate([b_same, b_diff])
    same = np.concatenate([np.ones(n_same, bool), np.zeros(n_diff, bool)])
    return a, b, same


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """EER from a ROC curve: where FPR = 1 - TPR, linearly interpolated between ROC points."""
    diff = (1.0 - tpr) - fpr  # decreasing from 1 to -1
    i = int(np.argmax(diff <= 0))
    if i == 0:
        return float(fpr[0])
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float = TARGET_FPR) -> float:
    """Best TPR among ROC points with FPR <= target (conservative: no interpolation)."""
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def best_accuracy_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Threshold maximizing accuracy on these pairs (accept if score >= t), and that accuracy.

    The threshold sits midway in the gap below the last accepted score, so it transfers to new
    pairs without favouring either side (same rule as the gallery calibration).
    """
    fpr, tpr, thr = roc_curve(same, scores, drop_intermediate=False)
    pos, neg = same.sum(), (~same).sum()
    acc = (tpr * pos + (1 - fpr) * neg) / (pos + neg)
    k = int(np.argmax(acc))
    if not np.isfinite(thr[k]):  # reject everything
        return float(scores.max()) + 1e-6, float(acc[k])
    lower = thr[k + 1] if k + 1 < len(thr) else thr[k] - 1e-3
    return float((thr[k] + lower) / 2), float(acc[k])


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(((scores >= threshold) == same).mean())


GRAM_MAX_IMAGES = 8000


def pair_scores(embeddings: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of pairs ``(a[k], b[k])``.

    Gathering two (pairs, D) matrices is slow for wide embeddings (3072-d pixels: 200 MB for
    10,000 pairs), so up to ``GRAM_MAX_IMAGES`` images the Gram matrix is computed once and indexed.
    """
    emb = l2_normalize(embeddings, dtype=np.float64)
    if len(emb) <= GRAM_MAX_IMAGES:
        return (emb @ emb.T)[a, b]
    out = np.empty(len(a))
    for s in range(0, len(a), 4096):
        out[s:s + 4096] = np.einsum("ij,ij->i", emb[a[s:s + 4096]], emb[b[s:s + 4096]])
    return out


def calibration_split(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per model, half the images (floor) for threshold calibration and the rest for testing."""
    labels = np.asarray(labels)
    calib, test = [], []
    for m in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == m))
        half = len(idx) // 2
        calib.append(idx[:half])
        test.append(idx[half:])
    return np.sort(np.concatenate(calib)), np.sort(np.concatenate(test))


@dataclass
class VerificationResult:
    auc: list[float]
    eer: list[float]
    tpr_at_fpr1: list[float]
    accuracy: list[float]
    threshold: list[float]
    oracle_accuracy: list[float]
    oracle_threshold: list[float]
    pairs: int
    calibration_pairs: int
    fmr: list[float] = field(default_factory=list)  # false-match rate on the test pairs at ``threshold``
    oracle_fmr: list[float] = field(default_factory=list)
    # first repeat, for figures
    roc: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: (np.zeros(0), np.zeros(0)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    same: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def to_dict(self) -> dict:
        keys = ("auc", "eer", "tpr_at_fpr1", "accuracy", "threshold", "oracle_accuracy", "oracle_threshold", "fmr",
                "oracle_fmr")
        out = {k: mean_std(getattr(self, k)) for k in keys}
        out["per_repeat"] = {k: getattr(self, k) for k in keys}
        out.update(test_pairs=self.pairs, calibration_pairs=self.calibration_pairs,
                   same_model_fraction=0.5 if self.pairs else 0.0)
        return out


def false_match_rate(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Share of different-model pairs accepted (score >= threshold)."""
    return float((scores[~same] >= threshold).mean()) if (~same).any() else 0.0


def verification_splits(embeddings: np.ndarray, labels: np.ndarray, pairs: int, repeats: int, seed: int):
    """Per repeat ``(calibration scores, calibration same, test scores, test same)``: the pairs of
    :func:`verification`, drawn once here so that every operating point is scored on the same pairs."""
    labels = np.asarray(labels)
    if pairs < 2:
        raise InputError(f"--pairs must be at least 2 (got {pairs})")
    for r in range(repeats):
        rng = _rng(seed, 2, r)
        calib, test = calibration_split(labels, rng)
        ca, cb, csame = sample_pairs(labels[calib], pairs, rng)
        cscores = pair_scores(embeddings[calib], ca, cb)
        ta, tb, same = sample_pairs(labels[test], pairs, rng)
        yield cscores, csame, pair_scores(embeddings[test], ta, tb), same


def verification(embeddings: np.ndarray, labels: np.ndarray, pairs: int = 10000, repeats: int = 5,
                 seed: int = 0) -> VerificationResult:
    """1:1 verification; the threshold is chosen on pairs of a disjoint calibration set of images."""
    res = VerificationResult([], [], [], [], [], [], [], pairs, pairs)
    for r, (cscores, csame, scores, same) in enumerate(verification_splits(embeddings, labels, pairs, repeats, seed)):
        thr, _ = best_accuracy_threshold(cscores, csame)
        fpr, tpr, _ = roc_curve(same, scores)
        res.auc.append(float(roc_auc_score(same, scores)))
        res.eer.append(equal_error_rate(fpr, tpr))
        res.tpr_at_fpr1.append(tpr_at_fpr(fpr, tpr))
        res.threshold.append(thr)
        res.accuracy.append(accuracy_at(scores, same, thr))
        res.fmr.append(false_match_rate(scores, same, thr))
        o_thr, o_acc = best_accuracy_threshold(scores, same)
        res.oracle_threshold.append(o_thr)
        res.oracle_accuracy.append(o_acc)
        res.oracle_fmr.append(false_match_rate(scores, same, o_thr))
        if r == 0:
            res.roc, res.scores, res.same = (fpr, tpr), scores, same
    return res


def verification_at(embeddings: np.ndarray, labels: np.ndarray, threshold: float, pairs: int = 10000,
                    repeats: int = 5, seed: int = 0) -> dict:
    """Accuracy, false-match and false non-match rates of a fixed threshold on the test pairs of :func:`verification`."""
    acc, fmr, fnmr = [], [], []
    for _, _, scores, same in verification_splits(embeddings, labels, pairs, repeats, seed):
        acc.append(accuracy_at(scores, same, threshold))
        fmr.append(false_match_rate(scores, same, threshold))
        fnmr.append(float((scores[same] < threshold).mean()) if same.any() else 0.0)
    return {"threshold": float(threshold), "accuracy": mean_std(acc), "fmr": mean_std(fmr), "fnmr": mean_std(fnmr)}


# ---------------------------------------------------------------------------- embedding quality


def embedding_quality(embeddings: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """Silhouette (Euclidean on L2-normalized embeddings; sampled above 5000 points) and Davies-Bouldin."""
    labels = np.asarray(labels)
    emb = l2_normalize(embeddings, dtype=np.float64)
    n_labels = len(np.unique(labels))
    if n_labels < 2 or n_labels >= len(labels):
        return {"silhouette": None, "davies_bouldin": None, "note": "needs 2 <= models < images"}
    sample = SILHOUETTE_MAX_POINTS if len(labels) > SILHOUETTE_MAX_POINTS else None
    return {
        "silhouette": float(silhouette_score(emb, labels, sample_size=sample, random_state=seed)),
        "davies_bouldin": float(davies_bouldin_score(emb, labels)),
        "silhouette_points": int(sample or len(labels)),
    }


# ---------------------------------------------------------------------------- open set


def open_set(embeddings: np.ndarray, labels: np.ndarray, shots: int = 10, repeats: int = 5, seed: int = 0,
             holdout_fraction: float = 0.25) -> dict:
    """Leave-models-out: enroll some models, query with the rest; AUROC of rejecting the unenrolled.

    Per repeat, ``round(holdout_fraction * M)`` models (at least 1, leaving at least 2 enrolled)
    are left out. Known queries are the non-shot images of enrolled models; unknown queries are
    all images of left-out models. The rejection score is ``-max cosine`` to the enrolled
    fingerprints. The operating point uses the threshold ``fpt gallery`` calibrates from the
    enrolled images (:func:`fpforensics.gallery.calibration.calibrate_threshold`).
    """
    from fpforensics.gallery.calibration import calibrate_threshold

    labels = np.asarray(labels)
    n_models = int(labels.max()) + 1
    if n_models < 3:
        return {"auroc": None, "note": "needs at least 3 models (2 enrolled + 1 left out)"}
    n_out = int(min(max(1, round(holdout_fraction * n_models)), n_models - 2))
    emb = l2_normalize(embeddings, dtype=np.float64)
    keys = ("auroc", "threshold", "known_accept_rate", "unknown_reject_rate", "known_accuracy", "open_set_accuracy")
    runs: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(repeats):
        rng = _rng(seed, 3, r)
        out_models = rng.choice(n_models, n_out, replace=False)
        is_out = np.isin(labels, out_models)
        enrolled = np.setdiff1d(np.arange(n_models), out_models)
        remap = -np.ones(n_models, dtype=np.int64)
        remap[enrolled] = np.arange(len(enrolled))
        known_idx = np.flatnonzero(~is_out)
        gal, qry = shot_split(labels[known_idx], shots, rng)
        gal, qry = known_idx[gal], known_idx[qry]
        fp = fingerprints(emb[gal], remap[labels[gal]], len(enrolled))
        unknown = np.flatnonzero(is_out)
        queries = np.concatenate([qry, unknown])
        sim = emb[queries] @ fp.T
        best = sim.max(axis=1)
        is_unknown = np.concatenate([np.zeros(len(qry), bool), np.ones(len(unknown), bool)])
        runs["auroc"].append(float(roc_auc_score(is_unknown, -best)))
        cal = calibrate_threshold(emb[gal].astype(np.float32), remap[labels[gal]], fp.astype(np.float32))
        thr = float(cal.threshold)
        accept = best >= thr
        correct_model = sim.argmax(axis=1) == np.concatenate([remap[labels[qry]], -np.ones(len(unknown), np.int64)])
        runs["threshold"].append(thr)
        runs["known_accept_rate"].append(float(accept[~is_unknown].mean()))
        runs["unknown_reject_rate"].append(float((~accept[is_unknown]).mean()))
        runs["known_accuracy"].append(float((accept & correct_model)[~is_unknown].mean()))
        right = np.where(is_unknown, ~accept, accept & correct_model)
        runs["open_set_accuracy"].append(float(right.mean()))
    out = {k: mean_std(v) for k, v in runs.items()}
    out.update(per_repeat=runs, models_left_out=n_out, models_enrolled=n_models - n_out,
               threshold_method="fpt gallery calibration on the enrolled shots")
    return out


# ---------------------------------------------------------------------------- the registered protocols
# Each takes (embeddings, labels, settings) with the settings of `fpt eval` (EvalSettings).


@PROTOCOLS.register("identification")
def identification_protocol(embeddings: np.ndarray, labels: np.ndarray, s) -> IdentificationResult:
    return identification(embeddings, labels, s.shots, s.repeats, s.seed)


@PROTOCOLS.register("verification")
def verification_protocol(embeddings: np.ndarray, labels: np.ndarray, s) -> VerificationResult:
    return verification(embeddings, labels, s.pairs, s.repeats, s.seed)


@PROTOCOLS.register("embedding_quality")
def embedding_quality_protocol(embeddings: np.ndarray, labels: np.ndarray, s) -> dict:
    return embedding_quality(embeddings, labels, s.seed)


@PROTOCOLS.register("open_set")
def open_set_protocol(embeddings: np.ndarray, labels: np.ndarray, s) -> dict:
    return open_set(embeddings, labels, s.shots, s.repeats, s.seed, s.open_set_fraction)
