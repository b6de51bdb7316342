"""ManiFPT, the attributor: a classifier trained on artifact vectors (METHOD 2, ManiFPT 2.3).

The paper trains a ResNet-50 on artifacts; here the attributor is deliberately small so it
trains in seconds on a CPU from a few dozen artifacts per model: standardize -> PCA (at most
``dim`` components, fitted on the training artifacts) -> multinomial logistic regression
(scikit-learn, L2, ``C``). It is fitted with scikit-learn and stored as plain tensors in an
fpforensics checkpoint (kind ``artifact_classifier``, loaded with ``weights_only=True``);
prediction is a few numpy matrix products. The checkpoint records the artifact space identity, so
artifacts from another space are refused.

API: ``ArtifactClassifier(dim, C).fit(X, y, space_identity)``, ``.predict(X)``,
``.predict_proba(X)``, ``.save(path)``, ``ArtifactClassifier.load(path)``, and
:func:`cross_validate` for an honest accuracy estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fpforensics.checkpoints import load_checkpoint, save_checkpoint
from fpforensics.errors import IncompatibleError, InputError

KIND = "artifact_classifier"


class ArtifactClassifier:
    """Attributes artifact vectors to model names (fit / predict / save / load)."""

    def __init__(self, dim: int = 128, C: float = 1.0, max_iter: int = 2000, seed: int = 0) -> None:
        self.dim, self.C, self.max_iter, self.seed = int(dim), float(C), int(max_iter), int(seed)
        self.classes: list[str] = []
        self.space_identity = ""
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def fitted(self) -> bool:
        return bool(self._arrays)

    def fit(self, features: np.ndarray, labels: Sequence[str], space_identity: str = "") -> ArtifactClassifier:
        """Fit on ``(N, D)`` artifacts with one model name per row (at least 2 models)."""
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(features, np.float64)
        y = np.asarray([str(v) for v in labels])
        if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
            raise InputError("classifier needs a non-empty 2-D feature array with one label per row")
        classes = sorted(set(y.tolist()))
        if len(classes) < 2:
            raise InputError("classifier needs artifacts of at least 2 models")
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-12] = 1.0
        z = (x - mean) / scale
        k = max(1, min(self.dim, z.shape[1], len(z) - 1))
        pca = PCA(n_components=k, random_state=self.seed, svd_solver="auto").fit(z)
        lr = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)
        lr.fit(pca.transform(z), y)
        coef, intercept = lr.coef_, lr.intercept_
        if len(lr.classes_) == 2:  # sklearn stores one row for binary problems
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        self.classes = [str(c) for c in lr.classes_]
        self.space_identity = space_identity
        self._arrays = {"mean": mean, "scale": scale, "pca_mean": pca.mean_, "components": pca.components_,
                        "coef": coef, "intercept": intercept}
        return self

    def _check(self, features: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise InputError("classifier is not fitted")
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != self._arrays["mean"].shape[0]:
            raise IncompatibleError(f"artifacts have {x.shape[-1]} dims, the classifier expects "
                                    f"{self._arrays['mean'].shape[0]}")
        return x

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        a = self._arrays
        z = ((self._check(features) - a["mean"]) / a["scale"] - a["pca_mean"]) @ a["components"].T
        return z @ a["coef"].T + a["intercept"]

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        logits = self.decision_function(features)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes)[self.decision_function(features).argmax(axis=1)]

    def score(self, features: np.ndarray, labels: Sequence[str]) -> float:
        return float((self.predict(features) == np.asarray([str(v) for v in labels])).mean())

    def save(self, path: str | Path) -> Path:
        if not self.fitted:
            raise InputError("classifier is not fitted")
        payload = {
            "arrays": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self._arrays.items()},
            "classes": list(self.classes), "space_identity": self.space_identity,
            "hyper": {"dim": self.dim, "C": self.C, "max_iter": self.max_iter, "seed": self.seed},
        }
        return save_checkpoint(payload, path, KIND)

    @classmethod
    def load(cls, path: str | Path, space_identity: str | None = None) -> ArtifactClassifier:
        """Load a saved classifier; with ``space_identity`` refuse one trained in another space."""
        payload = load_checkpoint(path, KIND)
        hyper = payload.get("hyper", {})
        clf = cls(int(hyper.get("dim", 128)), float(hyper.get("C", 1.0)), int(hyper.get("max_iter", 2000)),
                  int(hyper.get("seed", 0)))
        clf.classes = [str(c) for c in payload["classes"]]
        clf.space_identity = str(payload.get("space_identity", ""))
        clf._arrays = {k: v.numpy().astype(np.float64) for k, v in payload["arrays"].items()}
        if space_identity is not None and clf.space_identity and clf.space_identity != space_identity:
            raise IncompatibleError(f"{path}: classifier was trained on '{clf.space_identity}' artifacts, "
                                    f"these are '{space_identity}'")
        return clf


def cross_validate(features: np.ndarray, labels: Sequence[str], folds: int = 5, dim: int = 128, C: float = 1.0,
                   seed: int = 0) -> tuple[float, int]:
    """Stratified k-fold accuracy of :class:`ArtifactClassifier` (k = min(folds, smallest class)).

    Returns ``(accuracy, k)``; models with a single artifact are kept in training folds only.
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray([str(v) for v in labels])
    x = np.asarray(features)
    counts = {c: int((y == c).sum()) for c in set(y.tolist())}
    usable = np.asarray([counts[c] >= 2 for c in y])
    if len({c for c, n in counts.items() if n >= 2}) < 2:
        raise InputError("cross-validation needs at least 2 models with 2 or more artifacts")
    k = max(2, min(folds, min(n for n in counts.values() if n >= 2)))
    idx = np.flatnonzero(usable)
    correct = 0
    for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(idx, y[idx]):
        train_idx = np.concatenate([idx[train], np.flatnonzero(~usable)])
        clf = ArtifactClassifier(dim, C, seed=seed).fit(x[train_idx], y[train_idx])
        correct += int((clf.predict(x[idx[test]]) == y[idx[test]]).sum())
    return correct / len(idx), k
