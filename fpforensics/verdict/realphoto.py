"""Real photographs are not a model: the open-set rule that answers "closest to camera photographs".

An image that no enrolled model made can still score high against some model's fingerprint: a
camera photograph, with its own sensor and processing traces, is the most common such image.
The rule compares a query with a *real-photo reference*, the embeddings of real photographs kept
with the extractor's calibration (never the test photographs):

* ``r``, the real-photo score: the mean cosine of the query to its ``k`` nearest reference photographs;
* ``s``, the query's best model score: its cosine to the best enrolled fingerprint (``identify``,
  ``verify --model``) or to the other image (``verify A B``).

``z = w_s * s + w_r * r + b`` is the balanced log-odds of "camera photograph" from a logistic
regression fitted on calibration data: real photographs (scored against the reference without
themselves) against images of calibration models (held-out synthetic models, generators set
aside for calibration; each model weighs the same, and each of the two groups half). The query
is called a camera photograph when ``z > z_cut``, where ``z_cut`` keeps ``accept`` (default 95%)
of the calibration models' images. Both kinds of score (image-fingerprint, image-image) get their
own weights and cut, fitted on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fpforensics.errors import InputError
from fpforensics.metrics import l2_normalize

DEFAULT_K = 5
DEFAULT_ACCEPT = 0.95
DEFAULT_KEEP_ENROLLED = 0.90  # share of a gallery's enrolled images the "enrolled" cut keeps (chosen by CV, docs)
FORMAT_VERSION = 1
DIGITS = 5  # stored reference embeddings are rounded to this many decimals (cosines move by < 1e-4)


@dataclass(frozen=True)
class CameraRule:
    """``z = w_s * s + w_r * r + b``; "camera photograph" when ``z > cut`` (see the module docstring)."""

    w_s: float
    w_r: float
    b: float
    cut: float
    accept: float  # share of calibration model images kept (weighted) by the cut
    rejected: float  # share of calibration photographs called camera photographs
    auc: float  # of z, calibration photographs against calibration model images

    def z(self, s, r) -> np.ndarray:
        return self.w_s * np.asarray(s, np.float64) + self.w_r * np.asarray(r, np.float64) + self.b

    def to_dict(self) -> dict:
        return {k: float(getattr(self, k)) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict) -> CameraRule:
        return cls(**{k: float(d[k]) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class CameraCheck:
    """One query's outcome: ``camera`` True means "closest to camera photographs"."""

    camera: bool
    score: float  # r: mean cosine to the k nearest reference photographs
    probability: float  # P(camera photograph | s, r) for even prior odds

    def to_dict(self) -> dict:
        return {"camera": self.camera, "real_photo_score": round(self.score, 6),
                "camera_probability": round(self.probability, 6)}


@dataclass
class RealReference:
    """Reference photographs' embeddings and one :class:`CameraRule` per kind of score."""

    embeddings: np.ndarray  # (n, D), L2-normalized
    k: int
    rules: dict[str, CameraRule]
    data: str = ""
    photos: int = 0
    version: int = FORMAT_VERSION
    stats: dict = field(default_factory=dict)

    def score(self, queries: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """``r``: mean cosine of each query to its ``k`` nearest reference photographs.

        ``exclude_self``: the queries *are* the reference (in order); each leaves itself out.
        """
        q = l2_normalize(np.atleast_2d(np.asarray(queries, np.float64)), dtype=np.float64)
        sim = q @ self.embeddings.T
        if exclude_self:
            np.fill_diagonal(sim, -np.inf)
        k = min(self.k, sim.shape[1] - int(exclude_self))
        return np.sort(sim, axis=1)[:, -k:].mean(axis=1)

    def check(self, queries: np.ndarray, best: np.ndarray, kind: str = "image-fingerprint",
              cut: float | None = None) -> list[CameraCheck]:
        """The rule of ``kind`` on queries and their best model scores ``s``; ``cut`` replaces the rule's own."""
        rule = self.rules.get(kind)
        if rule is None:
            raise InputError(f"the real-photo reference has no rule for {kind} scores")
        cut = rule.cut if cut is None else float(cut)
        r = self.score(queries)
        z = rule.z(best, r)
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))
        return [CameraCheck(bool(zi > cut), float(ri), float(pi)) for zi, ri, pi in zip(z, r, p, strict=True)]

    def describe(self, kind: str = "image-fingerprint") -> str:
        rule = self.rules[kind]
        return (f"real photographs: a query is closest to camera photographs when its {self.k} nearest of "
                f"{len(self.embeddings)} reference photographs outweigh its best model score (cut fitted to keep "
                f"{rule.accept:.0%} of calibration model images; it calls {rule.rejected:.0%} of the calibration "
                f"photographs camera photographs)")

    def summary(self) -> dict:
        return {"photos": int(len(self.embeddings)), "k": self.k, "data": self.data,
                "rules": {kind: {k: round(v, 4) for k, v in r.to_dict().items()} for kind, r in self.rules.items()},
                **self.stats}

    def to_dict(self) -> dict:
        """Plain types: the reference as nested lists rounded to ``DIGITS`` decimals."""
        return {"version": self.version, "k": self.k, "data": self.data, "photos": self.photos,
                "embeddings": np.round(self.embeddings, DIGITS).tolist(),
                "rules": {kind: r.to_dict() for kind, r in self.rules.items()}, "stats": dict(self.stats)}

    @classmethod
    def from_dict(cls, d: dict) -> RealReference:
        from fpforensics.errors import IncompatibleError

        if int(d.get("version", 0)) > FORMAT_VERSION:
            raise IncompatibleError(f"real-photo reference format {d.get('version')} is newer than this tool reads "
                                    f"({FORMAT_VERSION}): upgrade fpforensics")
        emb = l2_normalize(np.asarray(d["embeddings"], np.float64), dtype=np.float64)
        return cls(emb, int(d["k"]), {kind: CameraRule.from_dict(r) for kind, r in d["rules"].items()},
                   str(d.get("data", "")), int(d.get("photos", len(emb))), int(d.get("version", FORMAT_VERSION)),
                   dict(d.get("stats", {})))


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value at or below which a share ``q`` of the total weight lies."""
    order = np.argsort(values, kind="stable")
    v, w = np.asarray(values, np.float64)[order], np.asarray(weights, np.float64)[order]
    cum = np.cumsum(w) / w.sum()
    return float(v[min(int(np.searchsorted(cum, q - 1e-12)), len(v) - 1)])


def fit_rule(s_pos: np.ndarray, r_pos: np.ndarray, w_pos: np.ndarray, s_neg: np.ndarray, r_neg: np.ndarray,
             accept: float = DEFAULT_ACCEPT) -> CameraRule:
    """Logistic regression of "camera photograph" on ``(s, r)``; the cut keeps ``accept`` of the positives.

    Positives are calibration model images (weights ``w_pos``), negatives real photographs (equal
    weights); both classes weigh the same in total. Features are standardized for the fit.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    if not 0.0 < accept < 1.0:
        raise InputError(f"the share of model images to keep must be between 0 and 1 (got {accept})")
    if len(s_pos) < 2 or len(s_neg) < 2:
        raise InputError(f"the real-photo rule needs at least 2 model images and 2 photographs "
                         f"(got {len(s_pos)} and {len(s_neg)})")
    x = np.c_[np.r_[s_pos, s_neg], np.r_[r_pos, r_neg]].astype(np.float64)
    y = np.r_[np.zeros(len(s_pos)), np.ones(len(s_neg))]
    w = np.r_[np.asarray(w_pos, np.float64) / np.sum(w_pos), np.full(len(s_neg), 1.0 / len(s_neg))]
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    lr = LogisticRegression(C=100.0, max_iter=5000).fit((x - mu) / sd, y, sample_weight=w * len(y) / 2)
    a = lr.coef_[0] / sd
    b = float(lr.intercept_[0] - np.sum(lr.coef_[0] * mu / sd))
    z = x @ a + b
    z_pos, z_neg = z[:len(s_pos)], z[len(s_pos):]
    cut = weighted_quantile(z_pos, w[:len(s_pos)], accept)
    return CameraRule(w_s=float(a[0]), w_r=float(a[1]), b=b, cut=cut, accept=float(accept),
                      rejected=float((z_neg > cut).mean()), auc=float(roc_auc_score(y, z, sample_weight=w)))


def model_weights(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per image: every model weighs the same within its group, and every group the same."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    w = np.zeros(len(labels))
    uniq_groups = np.unique(groups)
    for g in uniq_groups:
        in_g = groups == g
        models = np.unique(labels[in_g])
        for m in models:
            sel = in_g & (labels == m)
            w[sel] = 1.0 / (sel.sum() * len(models) * len(uniq_groups))
    return w


def leave_one_out_best(embeddings: np.ndarray, labels: np.ndarray, fingerprints: np.ndarray | None = None,
                       row_sums: np.ndarray | None = None, row_counts: np.ndarray | None = None) -> np.ndarray:
    """Each enrolled image's best fingerprint cosine, its own model's fingerprint made without it.

    ``labels`` index ``fingerprints`` (the normalized sums of each model's normalized image
    embeddings, as a gallery stores them; made from ``embeddings`` when None). ``row_sums`` /
    ``row_counts``: each row's model sum and image count, when ``embeddings`` is a sample of a
    large gallery. An image whose model has no other image is scored against the other models only.
    """
    from fpforensics.gallery.calibration import genuine_scores, impostor_scores

    # the gallery threshold's own leave-one-out (own model) and leave-one-model-out (the others) scores
    emb = l2_normalize(np.asarray(embeddings, np.float64), dtype=np.float64)
    labels = np.asarray(labels)
    if fingerprints is None:
        sums = np.zeros((int(labels.max()) + 1, emb.shape[1]))
        np.add.at(sums, labels, emb)
        fingerprints = l2_normalize(sums, dtype=np.float64)
    best = np.full(len(emb), -1.0)
    if len(fingerprints) >= 2:
        best = impostor_scores(emb, labels, fingerprints, max_queries=len(emb))
    counts = np.bincount(labels)[labels] if row_counts is None else np.asarray(row_counts)
    own = counts >= 2
    best[own] = np.maximum(best[own], genuine_scores(emb, labels, row_sums, row_counts))
    return best


def enrolled_z(rule: CameraRule, reference: RealReference, embeddings: np.ndarray, labels: np.ndarray,
               fingerprints: np.ndarray | None = None, row_sums: np.ndarray | None = None,
               row_counts: np.ndarray | None = None) -> np.ndarray:
    """The rule's ``z`` of enrolled images, each scored as a query (:func:`leave_one_out_best`)."""
    return rule.z(leave_one_out_best(embeddings, labels, fingerprints, row_sums, row_counts),
                  reference.score(embeddings))


def enrolled_cut(reference: RealReference, embeddings: np.ndarray, labels: np.ndarray,
                 keep: float = DEFAULT_KEEP_ENROLLED, kind: str = "image-fingerprint",
                 fingerprints: np.ndarray | None = None, row_sums: np.ndarray | None = None,
                 row_counts: np.ndarray | None = None) -> tuple[float, dict]:
    """The "enrolled" cut: the rule's cut raised (never lowered) until ``keep`` of a gallery's own images pass.

    Why: the rule's own cut keeps 95% of the *calibration* models' images, and generators unlike
    them (photo-like diffusion models) lose more. A gallery's enrolled images are the best
    evidence of what its models' images look like. Each is scored as a query would be (against
    the fingerprints, its own model's made without it) and the cut is set so that ``keep`` of
    them are not called camera photographs. Raising the cut can only accept more: of the models'
    images and of photographs alike (docs/verdicts.md gives both rates). Returns the cut and
    what it was fitted on.
    """
    if not 0.0 < keep < 1.0:
        raise InputError(f"the share of enrolled images to keep must be between 0 and 1 (got {keep})")
    rule = reference.rules.get(kind)
    if rule is None:
        raise InputError(f"the real-photo reference has no rule for {kind} scores")
    labels = np.asarray(labels)
    if len(labels) < 2:
        raise InputError(f"the enrolled cut needs at least 2 enrolled images (got {len(labels)})")
    z = enrolled_z(rule, reference, embeddings, labels, fingerprints, row_sums, row_counts)
    raised = weighted_quantile(z, np.ones(len(z)), keep)
    cut = max(rule.cut, raised)
    return cut, {"keep": float(keep), "images": int(len(z)), "models": int(len(np.unique(labels))),
                 "calibration_cut": float(rule.cut), "cut": float(cut), "raised": bool(raised > rule.cut)}


def camera_like_enrolled(reference: RealReference, embeddings: np.ndarray, fingerprints: np.ndarray, label: int,
                         kind: str = "image-fingerprint") -> dict:
    """How many of one enrolled model's images the rule calls camera photographs, each scored as a query.

    Why: told at enrollment, an analyst knows before any query that a photo-like generator's images
    will often be answered "closest to camera photographs" (and that ``--photo-cut enrolled`` exists).
    ``embeddings`` are all of the model's images, ``fingerprints`` the gallery's (row ``label`` is
    the model's); each image meets its own model's fingerprint made without it.
    """
    rule = reference.rules.get(kind)
    if rule is None:
        raise InputError(f"the real-photo reference has no rule for {kind} scores")
    z = enrolled_z(rule, reference, embeddings, np.full(len(embeddings), int(label)), fingerprints)
    camera = z > rule.cut
    return {"images": int(len(z)), "camera_like": int(camera.sum()), "share": float(camera.mean()) if len(z) else 0.0,
            "cut": float(rule.cut)}


@dataclass(frozen=True)
class PhotoCut:
    """The real-photo rule's cut: ``calibrated`` (its own) or ``enrolled`` (keep a share of a gallery's images)."""

    name: str  # calibrated | enrolled
    keep: float | None = None

    @classmethod
    def parse(cls, spec: str | PhotoCut | None) -> PhotoCut:
        """``calibrated`` (default), ``enrolled`` or ``enrolled:0.9``; anything else is a one-line InputError."""
        if isinstance(spec, PhotoCut):
            return spec
        text = (spec or "calibrated").strip().lower()
        name, _, value = text.partition(":")
        if name == "calibrated" and not value:
            return cls("calibrated")
        if name == "enrolled":
            if not value:
                return cls("enrolled", DEFAULT_KEEP_ENROLLED)
            try:
                keep = float(value)
            except ValueError:
                keep = -1.0
            if 0.0 < keep < 1.0:
                return cls("enrolled", keep)
        raise InputError(f"--photo-cut '{spec}': expected calibrated, enrolled or enrolled:KEEP with KEEP "
                         f"between 0 and 1 (e.g. enrolled:{DEFAULT_KEEP_ENROLLED})")

    @property
    def label(self) -> str:
        return self.name if self.keep is None else f"{self.name}:{self.keep:g}"
