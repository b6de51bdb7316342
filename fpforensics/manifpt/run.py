"""ManiFPT, the whole ``fpt artifact`` run in one call: space, manifold, artifacts, FDR, attributor, files, panels."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fpforensics.defaults import DEFAULTS
from fpforensics.errors import InputError


@dataclass
class ArtifactRun:
    """What :func:`artifacts` computed: the artifacts and, on request, FDR and the attributor's results."""

    result: Any  # ArtifactSet
    summary: list
    space: Any
    fdr: Any = None
    trained: dict | None = None
    applied: dict | None = None
    out: Path | None = None


def _check_outputs(out: Path | None, png: Path | None, manifold_cache: Path | None, train_classifier: Path | None,
                   dtype: str, overwrite: bool = False) -> None:
    """Every output checked before any work: writable, never a file fpt did not write or of another kind, and one
    of fpt's own only with ``overwrite``. The manifold cache is reused when it exists (and refused if foreign)."""
    from fpforensics.io.store import check_output, check_writable, open_h5
    from fpforensics.manifpt.artifacts import ARTIFACTS_KIND
    from fpforensics.manifpt.classifier import KIND as CLASSIFIER_KIND
    from fpforensics.manifpt.manifold import MANIFOLD_KIND

    if dtype not in ("float32", "float16"):
        raise InputError(f"unknown --dtype '{dtype}': use float32 or float16")
    if out is not None:
        check_output(out, ARTIFACTS_KIND, overwrite=overwrite)
    if train_classifier is not None:
        check_output(train_classifier, CLASSIFIER_KIND, overwrite=overwrite)
    if manifold_cache is not None:
        if manifold_cache.exists():
            with open_h5(manifold_cache, MANIFOLD_KIND):  # read, never replaced; a foreign file is refused here
                pass
        else:
            check_writable(manifold_cache)
    if png is not None and png.exists() and not png.is_dir():
        raise InputError(f"{png}: exists and is not a folder")


def artifacts(
    generated: Sequence[str | Path], real: str | Path, space: str = DEFAULTS.artifact_space,
    out: Path | None = None, png: Path | None = None, size: int = DEFAULTS.artifact_size,
    fit: str = DEFAULTS.artifact_fit, weights: Path | None = None, manifold_cache: Path | None = None,
    dtype: str = "float32", batch_size: int = DEFAULTS.artifact_batch_size, chunk: int = DEFAULTS.neighbour_chunk,
    fdr: bool = False, fdr_dim: int = DEFAULTS.fdr_dim, train_classifier: Path | None = None,
    classifier: Path | None = None, device: Any = "cpu", progress: Callable[[str, int], Any] | None = None,
    on_skip: Callable[[Path, str], None] | None = None, info: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None, overwrite: bool = False,
) -> ArtifactRun:
    """ManiFPT artifacts of generated images (a subfolder per model) against the manifold of ``real``.

    ``progress(what, total)`` returns an ``advance(n)`` callback; ``info`` receives status lines and
    ``warn`` what does not stop the run (FDR or cross-validation that cannot be computed). Outputs that
    exist are replaced only with ``overwrite`` and only when fpt wrote them (the manifold cache is reused).
    """
    from fpforensics.images.decode import list_images
    from fpforensics.images.folders import group_by_model
    from fpforensics.manifpt import build_space
    from fpforensics.manifpt.artifacts import compute_artifacts, save_artifacts, summarize
    from fpforensics.manifpt.manifold import load_or_build_manifold

    def tell(msg: str) -> None:
        if info and msg:
            info(msg)

    def caution(msg: str) -> None:
        if warn:
            warn(msg)

    def bar(what: str, total: int):
        return progress(what, total) if progress else None

    _check_outputs(out, png, manifold_cache, train_classifier, dtype, overwrite)
    models = group_by_model(generated)
    if png is not None:
        from fpforensics.manifpt.panels import check_panels

        check_panels(png, models, overwrite)
    if (fdr or train_classifier is not None) and len(models) < 2:
        raise InputError(f"--fdr and --train-classifier need images of at least 2 models, found {len(models)} "
                         f"({', '.join(models)}); give a folder with one subfolder per model")
    real_paths = list_images(real)
    space_obj = build_space(space, size=size, fit=fit, weights=weights, device=device)
    (caution if weights is None and space == "sl" else tell)(space_obj.note)
    cached = manifold_cache is not None and manifold_cache.exists()
    manifold = load_or_build_manifold(space_obj, real_paths, manifold_cache, batch_size,
                                      on_image=None if cached else bar("real images", len(real_paths)), on_skip=on_skip)
    tell(f"real manifold: {len(manifold.paths)} features from cache {manifold_cache}" if cached else
         f"real features cached in {manifold_cache}" if manifold_cache is not None else "")
    try:
        result = compute_artifacts(space_obj, models, manifold, device=device, batch_size=batch_size, ref_chunk=chunk,
                                   on_image=bar("generated images", sum(len(v) for v in models.values())),
                                   on_chunk=bar("nearest neighbours", len(manifold.paths)), on_skip=on_skip)
    finally:
        if hasattr(manifold.features, "file"):
            manifold.features.file.close()
    if len(result.paths) == 0:
        raise InputError("no readable generated images")
    run = ArtifactRun(result, summarize(result), space_obj, out=out)
    labels = result.labels()
    if fdr:
        _fdr(run, labels, fdr_dim, caution)
    if train_classifier is not None:
        _train(run, labels, train_classifier, caution)
        tell(f"artifact classifier saved to {train_classifier}")
    extra = _apply(run, labels, classifier) if classifier is not None else {}
    if out is not None:
        attrs = {"space_note": space_obj.note}
        if run.fdr is not None:
            attrs.update(fdr=run.fdr.fdr, fdr_dim=run.fdr.dim)
        save_artifacts(result, out, dtype=dtype, summary=run.summary, extra_attrs=attrs, extra_datasets=extra)
        tell(f"wrote {len(result.paths)} artifacts to {out}")
    if png is not None:
        from fpforensics.manifpt.panels import write_panels

        write_panels(result, space_obj, png, bar("panels", len(result.paths)), overwrite=overwrite, warn=caution)
    return run


def _fdr(run: ArtifactRun, labels: np.ndarray, dim: int, warn: Callable[[str], None]) -> None:
    from fpforensics.manifpt.fdr import fdr

    try:
        run.fdr = fdr(run.result.artifacts, labels, dim=dim)
    except InputError as exc:
        warn(f"FDR not computed: {exc}")
        return
    if run.fdr.skipped_classes:
        warn(f"FDR leaves out models with fewer than 4 images: {', '.join(run.fdr.skipped_classes)}")


def _train(run: ArtifactRun, labels: np.ndarray, path: Path, warn: Callable[[str], None]) -> None:
    from fpforensics.manifpt.classifier import ArtifactClassifier, cross_validate

    try:
        cv_acc, folds = cross_validate(run.result.artifacts, labels)
    except InputError as exc:
        warn(f"no cross-validated accuracy: {exc}")
        cv_acc, folds = None, 0
    ArtifactClassifier().fit(run.result.artifacts, labels, run.result.space_identity).save(path)
    run.trained = {"path": str(path), "cv_accuracy": cv_acc, "folds": folds, "models": len(set(labels))}


def _apply(run: ArtifactRun, labels: np.ndarray, path: Path) -> dict:
    """Attribute the artifacts with a saved attributor; returns the per-image columns for the artifacts file."""
    from fpforensics.manifpt.classifier import ArtifactClassifier

    clf = ArtifactClassifier.load(path, run.result.space_identity)
    proba = clf.predict_proba(run.result.artifacts)
    predicted = np.asarray(clf.classes)[proba.argmax(axis=1)]
    known = np.isin(labels, clf.classes)
    run.applied = {"path": str(path), "known": int(known.sum()),
                   "accuracy": float((predicted[known] == labels[known]).mean()) if known.any() else None}
    return {"predicted": [str(p) for p in predicted], "confidence": proba.max(axis=1)}
