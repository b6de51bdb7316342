"""Evaluation: ``fpt eval`` orchestration: dataset -> cached embedding passes -> registered protocols -> report.json.

Embeddings are computed once per (extractor, perturbation) by the embedding loop and cached in
``OUT/cache/`` (:class:`~fpforensics.embedding.cache.EmbeddingCache`), keyed by the encoder
identity (extractor and sliding-window grid), the perturbation (and its seed) and the exact file
list (path, size, mtime). A re-run with other protocol settings (shots, pairs, repeats) or more
extractors only computes what is missing, and an interrupted run resumes from the finished
passes. Each image is decoded and perturbed once per perturbation and fed to every extractor.

Splits and pairs depend only on the seed and the dataset, so every extractor and perturbation
is evaluated on the same splits (paired comparison). Under a perturbation every image is
perturbed (gallery shots and queries alike).
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from fpforensics import __version__
from fpforensics.embedding.cache import EmbeddingCache
from fpforensics.embedding.loop import Encoder, ExtractorEncoder, SpectrumEncoder, embed_files
from fpforensics.errors import InputError, OutputError
from fpforensics.evaluation import PROTOCOLS
from fpforensics.evaluation.dataset import EvalDataset, EvalSettings
from fpforensics.io.store import utc_now, write_json
from fpforensics.perturbations import CLEAN, Perturbation

BASELINES = ("spectral", "pixels")
CACHE_VERSION = 1
NOTES = {
    "identification": "per model `shots` random images -> fingerprint (normalized mean); the rest are "
                      "queries; nearest fingerprint by cosine; mean +- std over `repeats` seeded splits",
    "verification": "images split per model into calibration/test halves; `pairs` seeded pairs in each "
                    "(half same-model); `accuracy` uses the threshold that maximizes accuracy on the "
                    "calibration pairs; `oracle_accuracy` picks the best threshold on the test pairs "
                    "themselves (as the reference code does); `tpr_at_fpr1` is the best TPR with FPR <= 1%",
    "embedding_quality": "silhouette (Euclidean on L2-normalized embeddings) and Davies-Bouldin",
    "open_set": "per repeat round(open_set_fraction * models) models left out of the gallery; AUROC of "
                "rejecting their images by max cosine; operating point at the threshold `fpt gallery` "
                "calibrates on the enrolled shots",
    "perturbations": "every image (gallery shots and queries) perturbed; crop position seeded per image",
    "shipped_operating_point": "verification.shipped: accuracy, false-match and false non-match rates on the same "
                               "test pairs at the threshold the extractor ships (its stored image-image calibration; "
                               "the paper's 0.81 without one), beside the calibrated and oracle thresholds",
    "real_photos": "--real-photos: a gallery of every model (shots per model, the identification splits); the other "
                   "images of the models should be accepted, the photographs rejected, at the extractor's operating "
                   "point (calibrated image-fingerprint threshold and real-photo rule); AUROC photographs against "
                   "model images by the rule's camera log-odds, and by the best cosine alone",
}
MANIFPT_NOTE = ("ManiFPT attributor (`attributors`): artifacts phi(x) - phi(x*) against the nearest real image in "
                "the rgb/freq space (64 px central crop); per repeat the SAME shot/query split as the extractors, a "
                "standardize -> PCA -> logistic-regression classifier fitted on the shots' artifacts predicts the "
                "queries; top-5 from its probabilities. Closed-set classifier: verification, open set and embedding "
                "quality are not applicable (null); clean images only")


@dataclass
class ExtractorEntry:
    spec: str
    label: str
    identity: str
    embedding_dim: int
    baseline: bool
    extractor: object = None


def resolve_extractors(specs: list[str], device, warn: Callable[[str], None] | None = None) -> list[ExtractorEntry]:
    """Load every ``--extractor`` (default: ``default``) and always add the two baselines."""
    from fpforensics.extractor import load_extractor

    specs = list(specs) or ["default"]
    specs += [b for b in BASELINES if b not in specs]
    loaded = [(spec, load_extractor(spec, device)) for spec in specs]
    baseline_ids = {ext.identity: spec for spec, ext in loaded if spec in BASELINES}
    entries: list[ExtractorEntry] = []
    for spec, ext in loaded:
        if any(e.identity == ext.identity for e in entries):
            if spec not in BASELINES and warn:
                warn(f"--extractor {spec} is the same extractor as one already listed ({ext.identity}): evaluated once")
            continue
        base = baseline_ids.get(ext.identity)  # e.g. `default` without shipped weights is `spectral`
        label = base or (spec if spec == "default" else Path(spec).stem)
        while any(e.label == label for e in entries):
            label += "'"
        entries.append(ExtractorEntry(spec, label, ext.identity, int(ext.embedding_dim), base is not None, ext))
    return entries


def cache_key(encoder: Encoder, perturbation: Perturbation, seed: int, files: str, precision: str) -> str:
    """What a pass's rows depend on (precision only when it is not fp32, so older caches stay valid)."""
    desc = {"v": CACHE_VERSION, "embedder": encoder.identity, "perturbation": perturbation.label,
            "seed": seed if perturbation.kind == "crop" else None, "files": files}
    if precision != "fp32":
        desc["precision"] = precision
    return json.dumps(desc, sort_keys=True)


def embedding_passes(dataset: EvalDataset, encoders: dict[str, Encoder], spectrum: Encoder | None,
                     settings: EvalSettings, cache: EmbeddingCache, progress=None) -> tuple[dict, np.ndarray, dict]:
    """``{(label, perturbation label): (N, D)}`` for every extractor and perturbation (and the clean spectra).

    One pass of the embedding loop per perturbation; crop:1.0 and other identities reuse the
    clean rows. Returns the rows, the mask of images every pass read, and cache statistics.
    """
    from fpforensics.device import resolve_precision

    files, n = dataset.file_signature(), len(dataset.paths)
    passes = [p for p in settings.all_perturbations if p == CLEAN or not p.is_identity]
    advance = progress("embedding images", n * len(passes)) if progress else None
    rows: dict[tuple[str, str], np.ndarray] = {}
    ok = np.ones(n, dtype=bool)
    stats = {"cached": 0, "computed": 0}
    for pert in passes:
        labelled = list(encoders.items()) + ([("residual-spectrum", spectrum)] if spectrum and pert == CLEAN else [])
        done = embed_files(
            [e for _, e in labelled], dataset.paths, settings.batch_size, settings.precision,
            transform=None if pert == CLEAN else (lambda img, i, p=pert: p.apply(img, settings.seed, i)),
            cache=cache, cache_key=lambda e, p=pert: cache_key(e, p, settings.seed, files,
                                                               resolve_precision(settings.precision, e.device)),
            on_image=advance)
        stats["cached"] += sum(done.cached)
        stats["computed"] += len(labelled) - sum(done.cached)
        for i, (label, _) in enumerate(labelled):
            rows[(label, pert.label)] = done.positional(i, n)
        ok &= done.mask(n)
    for p in settings.all_perturbations:
        for label in encoders:
            rows.setdefault((label, p.label), rows[(label, CLEAN.label)])
    return rows, ok, stats


def score(embeddings: np.ndarray, labels: np.ndarray, settings: EvalSettings) -> dict:
    """Every registered protocol on one set of embeddings: ``{protocol name: result}``."""
    # small matrices: multi-threaded BLAS only spins (7x slower measured on 2 busy cores)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", RuntimeWarning)
        return {name: PROTOCOLS.get(name)(embeddings, labels, settings) for name in PROTOCOLS}


def as_dict(result) -> dict | None:
    return result.to_dict() if hasattr(result, "to_dict") else result


@dataclass
class EvalOutput:
    report: dict
    path: Path
    figures: list[Path]


def run_report(
    dataset: EvalDataset, extractors: list[ExtractorEntry], settings: EvalSettings, out_dir: str | Path, device,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    warn: Callable[[str], None] | None = None, extra: dict | None = None,
    manifpt: list[str] | None = None, real: str | Path | None = None, overwrite: bool = False,
) -> EvalOutput:
    """Compute every protocol for every extractor x perturbation; write report.json and figures.

    ``manifpt`` spaces (with the ``real`` folder) add the ManiFPT attributor, scored by
    identification on the same splits (:mod:`fpforensics.evaluation.manifpt`).
    """
    settings.validate()
    out_dir = Path(out_dir)
    prepare_out(out_dir, overwrite)
    cache = EmbeddingCache(out_dir / "cache")
    t0 = time.perf_counter()
    encoders = {e.label: ExtractorEncoder(e.extractor, settings.grid, device) for e in extractors}
    spectrum = None
    if settings.figures:
        from fpforensics.residual import build_residual

        spectrum = SpectrumEncoder(build_residual("default").to(device).eval(), device)
    embeddings, ok, cache_stats = embedding_passes(dataset, encoders, spectrum, settings, cache, progress)
    timing = {"embeddings": round(time.perf_counter() - t0, 2)}
    dataset, rows = dataset.restrict(ok, settings.shots, warn)
    labels = dataset.labels

    t1 = time.perf_counter()
    results: dict[str, dict[str, dict]] = {}
    figure_data: dict[str, dict] = {}
    for e in extractors:
        results[e.label] = {}
        for p in settings.all_perturbations:
            emb = embeddings[(e.label, p.label)][rows]
            raw = score(emb, labels, settings)
            results[e.label][p.label] = {name: as_dict(r) for name, r in raw.items()}
            if p == CLEAN:
                figure_data[e.label] = {"embeddings": emb, **raw}
    shipped_verification(extractors, embeddings, rows, labels, settings, results)
    if settings.real_photos:
        real_photo_results(dataset, extractors, encoders, embeddings, rows, settings, cache, results, progress)
    timing["metrics"] = round(time.perf_counter() - t1, 2)
    attributors: list[dict] = []
    if manifpt:
        from fpforensics.evaluation import manifpt as mf

        if real is None:
            raise InputError("--manifpt needs --real DIR (the real images whose manifold defines the artifacts)")
        t3 = time.perf_counter()
        mf_results, attributors = mf.evaluate(dataset, mf.parse_spaces(manifpt), Path(real), settings, cache, device,
                                              progress, warn)
        results.update(mf_results)
        timing["manifpt"] = round(time.perf_counter() - t3, 2)
    report = _report(dataset, extractors, settings, results, attributors, timing, cache_stats, extra)
    figures: list[Path] = []
    if settings.figures:
        t2 = time.perf_counter()
        from fpforensics.evaluation import figures as figs

        spectra = embeddings[("residual-spectrum", CLEAN.label)][rows]
        figures = figs.write_all(out_dir, report, figure_data, labels, dataset.names, spectra,
                                 settings.tsne_max_points, settings.seed)
        report["figures"] = [p.name for p in figures]
        timing["figures"] = round(time.perf_counter() - t2, 2)
    timing["total"] = round(time.perf_counter() - t0, 2)
    path = write_json(out_dir / "report.json", report)
    return EvalOutput(report, path, figures)


def shipped_operating_point(extractor) -> tuple[object, object]:
    """``(calibration, operating point)`` an extractor ships: its stored calibration's default, else the paper's."""
    from fpforensics.verdict.calibration import resolve_operating_point
    from fpforensics.verdict.stored import ExtractorCalibration

    cal = ExtractorCalibration.of(extractor)
    return cal, resolve_operating_point(cal.image if cal else None)


def shipped_verification(extractors: list[ExtractorEntry], embeddings: dict, rows: np.ndarray, labels: np.ndarray,
                         settings: EvalSettings, results: dict) -> None:
    """``verification.shipped`` for every extractor and perturbation (see ``NOTES``)."""
    from fpforensics.evaluation.protocols import verification_at

    for e in extractors:
        _, op = shipped_operating_point(e.extractor)
        for p in settings.all_perturbations:
            v = results[e.label][p.label].get("verification")
            if isinstance(v, dict):
                emb = embeddings[(e.label, p.label)][rows]
                v["shipped"] = {**verification_at(emb, labels, op.threshold, settings.pairs, settings.repeats,
                                                  settings.seed), "operating_point": op.name, "source": op.source}


def real_photo_results(dataset: EvalDataset, extractors: list[ExtractorEntry], encoders: dict, embeddings: dict,
                       rows: np.ndarray, settings: EvalSettings, cache: EmbeddingCache, results: dict,
                       progress=None) -> None:
    """``results[label]["clean"]["real_photos"]``: the photographs of ``--real-photos`` as unknowns."""
    from fpforensics.device import resolve_precision
    from fpforensics.evaluation.realphotos import real_photo_open_set
    from fpforensics.images.decode import list_images
    from fpforensics.images.folders import files_digest

    photos = list_images(settings.real_photos)
    files = files_digest(photos)
    advance = progress("embedding real photographs", len(photos)) if progress else None
    done = embed_files(list(encoders.values()), photos, settings.batch_size, settings.precision, cache=cache,
                       cache_key=lambda enc: cache_key(enc, CLEAN, settings.seed, files,
                                                       resolve_precision(settings.precision, enc.device)),
                       on_image=advance)
    for i, e in enumerate(extractors):
        cal, _ = shipped_operating_point(e.extractor)
        args = (embeddings[(e.label, CLEAN.label)][rows], dataset.labels, done.rows[i], cal)
        common = dict(shots=settings.shots, repeats=settings.repeats, seed=settings.seed)
        out = real_photo_open_set(*args, **common)
        if cal is not None and cal.real_reference is not None:  # the other cut fpt identify offers, on the same splits
            out["enrolled_cut"] = real_photo_open_set(*args, photo_cut="enrolled", **common)
        out["folders"] = list(settings.real_photos)
        results[e.label][CLEAN.label]["real_photos"] = out


def _report(dataset: EvalDataset, extractors: list[ExtractorEntry], settings: EvalSettings, results: dict,
            attributors: list[dict], timing: dict, cache_stats: dict, extra: dict | None) -> dict:
    labels = dataset.labels
    report = {
        "fpt_report": "eval",
        "tool_version": __version__,
        "created": utc_now(),
        "settings": settings.to_dict(),
        "dataset": {
            "root": str(dataset.root),
            "models": {name: int((labels == m).sum()) for m, name in enumerate(dataset.names)},
            "images": len(dataset.paths),
            "images_available": dataset.available,
            "skipped_models": dataset.skipped_models,
            "skipped_images": dataset.skipped_images,
        },
        "extractors": [{"label": e.label, "spec": e.spec, "identity": e.identity, "embedding_dim": e.embedding_dim,
                        "baseline": e.baseline} for e in extractors],
        "perturbations": [p.label for p in settings.all_perturbations],
        "results": results,
        "protocol_notes": {**NOTES, **({"manifpt": MANIFPT_NOTE} if attributors else {})},
        "timing_s": timing,
        "cache": cache_stats,
    }
    if attributors:
        report["attributors"] = attributors
    if extra:
        report.update(extra)
    return report


FIGURE_NAME = re.compile(r"^(?:(?:confusion|tsne|similarity)_.+|roc|robustness|spectra)\.png$")


def prepare_out(out_dir: Path, overwrite: bool = False) -> None:
    """The report folder, created (its parent must exist) and writable, before any work.

    An existing ``report.json`` that fpt wrote is replaced only with ``overwrite``, together with
    the figures beside it; a report or figure file that fpt did not write is never replaced.
    Leftover temporaries of killed runs (report, embedding cache) are removed.
    """
    from fpforensics.io.store import EMPTY, check_output, clean_stale_temporaries, file_kind

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    if out_dir.parent.exists() and not out_dir.parent.is_dir():
        raise OutputError(f"{out_dir}: {out_dir.parent} is a file, not a folder")
    if not out_dir.parent.exists():
        raise OutputError(f"{out_dir}: parent folder {out_dir.parent} does not exist")
    try:
        out_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create the report folder ({exc.strerror or exc})") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise OutputError(f"{out_dir}: folder is not writable")
    report = out_dir / "report.json"
    check_output(report, "report", overwrite=overwrite)
    ours = report.exists() and file_kind(report) == "report"  # an fpt report folder: its figures are fpt's
    for fig in sorted(p for p in out_dir.iterdir() if FIGURE_NAME.match(p.name) and p.is_file()):
        kind = file_kind(fig)
        if kind not in ("figure", EMPTY) and not ours:
            raise OutputError(f"{fig}: exists and is not a figure fpt wrote; refusing to replace it (choose another "
                              "--out)")
        if kind == "figure" and not overwrite:
            raise OutputError(f"{fig}: exists (an fpt figure); pass --overwrite to replace the report")
    clean_stale_temporaries(out_dir / "cache")
