"""Evaluation: real photographs as the unknowns of open-set identification (``fpt eval --real-photos``).

A gallery of every model of the dataset (``shots`` images each, seeded splits as in the
identification protocol); the queries are the models' other images (they should be *accepted*:
attributed to an enrolled model, not answered "unknown") and the real photographs (they should
be *rejected*: "unknown"). At the extractor's operating point (its calibrated image-to-fingerprint
threshold and its real-photo rule; the paper's threshold without a calibration):

* ``real_rejection``: share of photographs answered "unknown";
* ``acceptance``: share of model images attributed to some model;
* ``top1_accepted`` and ``top1_all``: top-1 accuracy among the accepted images and among all
  (the closed-set figure the rule must not lower);
* ``auroc``: photographs against model images, scored by the rule's camera log-odds (or by the
  best cosine without a real-photo reference), and ``auroc_max_cosine`` by the best cosine alone.

``subsets`` reports the model-image figures again on named groups of models (e.g. the generators
not used for calibration). ``photo_cut`` (``calibrated`` or ``enrolled[:KEEP]``) is the real-photo
rule's cut as ``fpt identify --photo-cut`` applies it; ``enrolled`` is fitted on each split's gallery
images only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from fpforensics.evaluation.protocols import _rng, fingerprints, mean_std, shot_split
from fpforensics.metrics import l2_normalize


def defined_mean_std(values: Sequence[float]) -> dict:
    """:func:`mean_std` over the repeats where a figure is defined (top-1 among accepted images needs one
    accepted image); ``None`` when it is defined in none, so that a report stays valid JSON."""
    arr = np.asarray(values, np.float64)
    ok = np.isfinite(arr)
    if not ok.any():
        return {"mean": None, "std": None, "repeats": 0}
    out = mean_std(arr[ok])
    return out if ok.all() else {**out, "repeats": int(ok.sum())}


def real_photo_open_set(embeddings: np.ndarray, labels: np.ndarray, real: np.ndarray, calibration=None,
                        threshold: str | float | None = None, shots: int = 10, repeats: int = 5, seed: int = 0,
                        names: Sequence[str] | None = None, subsets: dict[str, Sequence[str]] | None = None,
                        photo_cut: str = "calibrated") -> dict:
    """The measures of the module docstring, mean ± std over ``repeats`` seeded splits."""
    from fpforensics.verdict.calibration import resolve_operating_point
    from fpforensics.verdict.realphoto import PhotoCut, enrolled_cut

    pc = PhotoCut.parse(photo_cut)

    emb = l2_normalize(np.asarray(embeddings, np.float64), dtype=np.float64)
    real = l2_normalize(np.asarray(real, np.float64), dtype=np.float64)
    labels = np.asarray(labels)
    n_models = int(labels.max()) + 1
    fp_cal = calibration.fingerprint if calibration is not None else None
    ref = calibration.real_reference if calibration is not None else None
    op = resolve_operating_point(fp_cal, threshold)
    r_real = ref.score(real) if ref is not None else None
    keys = ["real_rejection", "acceptance", "top1_accepted", "top1_all", "auroc", "auroc_max_cosine",
            "real_rejection_threshold_only", "cut"]
    per: dict[str, list[float]] = {k: [] for k in keys}
    groups = {name: np.isin(np.asarray(names)[labels], list(models)) for name, models in (subsets or {}).items()} \
        if names is not None else {}
    sub: dict[str, dict[str, list[float]]] = {g: {"acceptance": [], "top1_accepted": [], "top1_all": []}
                                              for g in groups}
    for rep in range(repeats):
        gal, qry = shot_split(labels, shots, _rng(seed, 1, rep))
        fp = fingerprints(emb[gal], labels[gal], n_models)
        sim_q, sim_r = emb[qry] @ fp.T, real @ fp.T
        s_q, s_r = sim_q.max(axis=1), sim_r.max(axis=1)
        right = sim_q.argmax(axis=1) == labels[qry]
        known_q, known_r = s_q >= op.threshold, s_r >= op.threshold
        if ref is not None:
            rule = ref.rules["image-fingerprint"]
            cut = rule.cut if pc.name == "calibrated" else enrolled_cut(ref, emb[gal], labels[gal], pc.keep)[0]
            per["cut"].append(float(cut))
            z_q, z_r = rule.z(s_q, ref.score(emb[qry])), rule.z(s_r, r_real)
            known_q &= z_q <= cut
            known_r &= z_r <= cut
            score_q, score_r = -z_q, -z_r
        else:
            score_q, score_r = s_q, s_r
        y = np.r_[np.ones(len(qry)), np.zeros(len(real))]
        per["real_rejection"].append(float((~known_r).mean()))
        per["real_rejection_threshold_only"].append(float((s_r < op.threshold).mean()))
        per["acceptance"].append(float(known_q.mean()))
        per["top1_accepted"].append(float(right[known_q].mean()) if known_q.any() else float("nan"))
        per["top1_all"].append(float(right.mean()))
        per["auroc"].append(float(roc_auc_score(y, np.r_[score_q, score_r])))
        per["auroc_max_cosine"].append(float(roc_auc_score(y, np.r_[s_q, s_r])))
        for g, mask in groups.items():
            m = mask[qry]
            sub[g]["acceptance"].append(float(known_q[m].mean()) if m.any() else float("nan"))
            sub[g]["top1_accepted"].append(float(right[m & known_q].mean()) if (m & known_q).any() else float("nan"))
            sub[g]["top1_all"].append(float(right[m].mean()) if m.any() else float("nan"))
    out = {k: defined_mean_std(v) for k, v in per.items() if v}
    out.update(photo_cut=pc.label if ref is not None else None, operating_point=op.to_dict(),
               real_photos=int(len(real)), queries=int(len(qry)), shots=shots, repeats=repeats,
               rule=ref.rules["image-fingerprint"].to_dict() if ref is not None else None)
    if groups:
        out["subsets"] = {g: {"models": list((subsets or {})[g]), **{k: defined_mean_std(v) for k, v in d.items()}}
                          for g, d in sub.items()}
    return out
