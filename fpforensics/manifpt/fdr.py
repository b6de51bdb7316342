"""ManiFPT, step 5: the Frechet-distance ratio, how separable artifacts (or any features) are by model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from fpforensics.errors import InputError
from fpforensics.metrics import features_to_statistics, statistics_to_frechet


@dataclass
class FDRResult:
    fdr: float
    inter: float
    intra: float
    classes: int
    dim: int
    reduced_from: int
    skipped_classes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def fdr(features: np.ndarray, labels: Sequence[str] | np.ndarray, dim: int | None = 32, seed: int = 0) -> FDRResult:
    """Frechet-distance ratio: mean inter-class FD / mean intra-class FD (ManiFPT F.4, Yu et al.).

    Intra-class FD: each class is shuffled (``seed``) and split into two halves; FD between them,
    averaged over classes. Inter-class FD: FD between every pair of different classes, averaged.
    Classes with fewer than 4 samples (halves of 2) are skipped. When the features have more
    than ``dim`` dimensions they are first projected by PCA (fitted on all features) to ``dim``,
    so covariances are estimated from far more samples than dimensions and the FD is cheap;
    ``dim=None`` keeps the full dimension.
    """
    x = np.asarray(features, np.float64)
    labels = np.asarray([str(v) for v in labels])
    if x.ndim != 2 or len(x) != len(labels):
        raise InputError("fdr needs a 2-D feature array with one label per row")
    names = list(dict.fromkeys(labels.tolist()))
    keep = [n for n in names if (labels == n).sum() >= 4]
    skipped = [n for n in names if n not in keep]
    if len(keep) < 2:
        raise InputError("FDR needs at least 2 classes with 4 or more samples each")
    reduced_from = x.shape[1]
    x = x[np.isin(labels, keep)]
    labels = labels[np.isin(labels, keep)]
    if dim is not None and x.shape[1] > dim:
        from sklearn.decomposition import PCA

        x = PCA(n_components=min(dim, len(x)), random_state=seed).fit_transform(x)
    rng = np.random.default_rng(seed)
    stats, intra = {}, []
    for n in keep:
        rows = x[labels == n]
        stats[n] = features_to_statistics(rows)
        perm = rng.permutation(len(rows))
        half = len(rows) // 2
        a, b = rows[perm[:half]], rows[perm[half:2 * half]]
        intra.append(statistics_to_frechet(features_to_statistics(a), features_to_statistics(b)))
    inter = [statistics_to_frechet(stats[a], stats[b]) for i, a in enumerate(keep) for b in keep[i + 1:]]
    mean_inter, mean_intra = float(np.mean(inter)), float(np.mean(intra))
    ratio = mean_inter / mean_intra if mean_intra > 0 else float("inf")
    return FDRResult(ratio, mean_inter, mean_intra, len(keep), int(x.shape[1]), reduced_from, skipped)

