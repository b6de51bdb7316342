"""``fpt eval`` orchestration: dataset -> cached embeddings -> protocols -> report.json, tables, figures.

Embeddings are computed once per (extractor, perturbation) and cached in ``OUT/cache/`` as
``.npz`` files keyed by a SHA-256 of the extractor identity, sliding-window grid, perturbation
(and its seed) and the exact file list (path, size, mtime). A re-run with other protocol
settings (shots, pairs, repeats) or more extractors only computes what is missing, and an
interrupted run resumes from the finished passes. Images are streamed in small chunks: each
image is decoded and perturbed once per perturbation and fed to every extractor that needs it.

Splits and pairs depend only on the seed and the dataset, so every extractor and perturbation
is evaluated on the same splits (paired comparison). Under a perturbation every image is
perturbed (gallery shots and queries alike).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from fpforensics import __version__
from fpforensics.defaults import DEFAULTS
from fpforensics.errors import InputError, OutputError
from fpforensics.evaluation import protocols
from fpforensics.io.images import load_image
from fpforensics.io.store import atomic_file
from fpforensics.perturbations import CLEAN, Perturbation

BASELINES = ("spectral", "pixels")
CHUNK = 16
CACHE_VERSION = 1


@dataclass
class EvalSettings:
    """Everything that defines a report's numbers (written verbatim into report.json)."""

    shots: int = int(DEFAULTS["shots"])
    repeats: int = 5
    pairs: int = 10000
    seed: int = 0
    grid: int = int(DEFAULTS["grid"])
    max_images_per_model: int | None = None
    perturbations: list[Perturbation] = field(default_factory=list)
    open_set_fraction: float = 0.25
    batch_size: int = 64
    tsne_max_points: int = 2000
    figures: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["perturbations"] = [p.label for p in self.all_perturbations]
        return d

    @property
    def all_perturbations(self) -> list[Perturbation]:
        return [CLEAN] + [p for p in self.perturbations if p != CLEAN]

    def validate(self) -> None:
        if self.shots < 1:
            raise InputError(f"--shots must be at least 1 (got {self.shots})")
        if self.repeats < 1:
            raise InputError(f"--repeats must be at least 1 (got {self.repeats})")
        if self.pairs < 2:
            raise InputError(f"--pairs must be at least 2 (got {self.pairs})")
        if self.grid < 1:
            raise InputError(f"--grid must be at least 1 (got {self.grid})")
        if self.max_images_per_model is not None and self.max_images_per_model < self.shots + 1:
            raise InputError(f"--max-images-per-model {self.max_images_per_model} leaves no query: "
                             f"needs at least --shots + 1 = {self.shots + 1}")
        if not 0 < self.open_set_fraction < 1:
            raise InputError("open-set fraction must be in (0, 1)")


# ---------------------------------------------------------------------------- dataset


@dataclass
class EvalDataset:
    """The images evaluated: ``paths[i]`` belongs to model ``names[labels[i]]``."""

    root: Path
    names: list[str]
    paths: list[Path]
    labels: np.ndarray
    skipped_models: list[dict] = field(default_factory=list)
    skipped_images: list[dict] = field(default_factory=list)
    available: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_folder(cls, root: str | Path, settings: EvalSettings, warn: Callable[[str], None] | None = None) -> EvalDataset:
        """ROOT/<model>/<images>; models with fewer than shots + 1 images are skipped (and listed)."""
        from fpforensics.ffd import ModelSet

        ms = ModelSet.from_folder(root)
        names, paths, labels, skipped, available = [], [], [], [], {}
        need = settings.shots + 1
        for name, files in ms.models.items():
            available[name] = len(files)
            if len(files) < need:
                skipped.append({"model": name, "images": len(files), "reason": f"fewer than shots + 1 = {need} images"})
                if warn:
                    warn(f"model '{name}' has {len(files)} images, fewer than --shots + 1 = {need}: skipped")
                continue
            if settings.max_images_per_model and len(files) > settings.max_images_per_model:
                rng = np.random.default_rng([settings.seed, 11, len(names)])
                keep = np.sort(rng.choice(len(files), settings.max_images_per_model, replace=False))
                files = [files[i] for i in keep]
            labels += [len(names)] * len(files)
            names.append(name)
            paths += files
        ds = cls(Path(root), names, paths, np.asarray(labels, dtype=np.int64), skipped, [], available)
        ds.require_models()
        return ds

    def require_models(self) -> None:
        if len(self.names) < 2:
            raise InputError(f"{self.root}: needs at least 2 models with --shots + 1 images each "
                             f"(found {len(self.names)}); lower --shots or add images")

    def restrict(self, ok: np.ndarray, shots: int,
                 warn: Callable[[str], None] | None = None) -> tuple[EvalDataset, np.ndarray]:
        """Drop unreadable images, then models left with fewer than shots + 1 images; relabel.

        Returns the new dataset and the rows of this one it keeps.
        """
        for i in np.flatnonzero(~ok):
            self.skipped_images.append({"path": str(self.paths[i]), "reason": "unreadable"})
        counts = np.bincount(self.labels[ok], minlength=len(self.names))
        keep_models = [m for m in range(len(self.names)) if counts[m] >= shots + 1]
        for m in range(len(self.names)):
            if m not in keep_models:
                self.skipped_models.append({"model": self.names[m], "images": int(counts[m]),
                                            "reason": f"fewer than shots + 1 = {shots + 1} readable images"})
                if warn:
                    warn(f"model '{self.names[m]}' has {counts[m]} readable images, fewer than {shots + 1}: skipped")
        remap = -np.ones(len(self.names), dtype=np.int64)
        remap[keep_models] = np.arange(len(keep_models))
        rows = np.flatnonzero(ok & (remap[self.labels] >= 0))
        out = EvalDataset(self.root, [self.names[m] for m in keep_models], [self.paths[i] for i in rows],
                          remap[self.labels[rows]], self.skipped_models, self.skipped_images, self.available)
        out.require_models()
        return out, rows

    def file_signature(self) -> str:
        h = hashlib.sha256()
        for p in self.paths:
            try:
                st = os.stat(p)
                h.update(f"{Path(p).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{p}\0missing\n".encode())
        return h.hexdigest()


# ---------------------------------------------------------------------------- embedding passes


@dataclass
class Embedder:
    """Something that maps a chunk of images to rows: an extractor, or the residual spectrum."""

    label: str
    identity: str
    fn: Callable[[list[torch.Tensor]], np.ndarray]
    dim: int


def extractor_embedder(label: str, extractor, grid: int, batch_size: int, device) -> Embedder:
    from fpforensics.extractor.base import embed_images

    def fn(images: list[torch.Tensor]) -> np.ndarray:
        return embed_images(extractor, images, grid=grid, batch_size=batch_size, device=device)

    return Embedder(label, f"{extractor.identity}|grid={grid}", fn, int(extractor.embedding_dim))


def spectrum_embedder(device) -> Embedder:
    """Per image: log10 radial power spectrum of the residual of the central 128 crop (the FFD unit)."""
    from fpforensics.spectral import build_residual, radial_log_power
    from fpforensics.transforms import center_crop

    residual = build_residual("default").to(device).eval()
    crop = int(DEFAULTS["crop_size"])

    @torch.no_grad()
    def fn(images: list[torch.Tensor]) -> np.ndarray:
        batch = torch.stack([center_crop(im, crop) for im in images]).to(device)
        return radial_log_power(residual(batch)).float().cpu().numpy()

    return Embedder("residual-spectrum", f"spectrum[{residual.identity}]", fn, crop // 2)


class EmbeddingCache:
    """``cache/emb-<key>.npz`` files holding ``emb (N, D)``, ``ok (N,)`` and the key they were made for."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    @staticmethod
    def key(embedder: Embedder, perturbation: Perturbation, seed: int, files: str) -> str:
        desc = {"v": CACHE_VERSION, "embedder": embedder.identity, "perturbation": perturbation.label,
                "seed": seed if perturbation.kind == "crop" else None, "files": files}
        return json.dumps(desc, sort_keys=True)

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / f"emb-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"

    def load(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        if self.folder is None:
            return None
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != key:
                    return None
                return z["emb"], z["ok"]
        except (OSError, ValueError, KeyError):
            return None  # a damaged cache entry is recomputed, never trusted

    def save(self, key: str, emb: np.ndarray, ok: np.ndarray) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        with atomic_file(path, suffix=".tmp.npz") as tmp:
            np.savez(tmp, emb=emb.astype(np.float32), ok=ok, key=np.array(key))


def compute_embeddings(
    dataset: EvalDataset, jobs: list[tuple[Embedder, Perturbation]], seed: int, cache: EmbeddingCache,
    on_start: Callable[[int], None] | None = None, on_images: Callable[[int], None] | None = None,
) -> tuple[dict[tuple[str, str], np.ndarray], np.ndarray, dict]:
    """Embeddings for every (embedder, perturbation) job, from the cache or by streaming the images.

    Returns ``{(embedder label, perturbation label): (N, D)}``, the readable-image mask and stats.
    """
    files = dataset.file_signature()
    n = len(dataset.paths)
    results: dict[tuple[str, str], np.ndarray] = {}
    ok_all = np.ones(n, dtype=bool)
    todo: dict[Perturbation, list[tuple[Embedder, str]]] = {}
    stats = {"cached": 0, "computed": 0}
    for emb, pert in jobs:
        key = EmbeddingCache.key(emb, pert, seed, files)
        hit = cache.load(key)
        if hit is not None and hit[0].shape[0] == n:
            results[(emb.label, pert.label)] = hit[0]
            ok_all &= hit[1].astype(bool)
            stats["cached"] += 1
        else:
            todo.setdefault(pert, []).append((emb, key))
    if on_start:
        on_start(n * len(todo))
    for pert, embedders in todo.items():
        rows: dict[str, np.ndarray] = {e.label: np.zeros((n, e.dim), np.float32) for e, _ in embedders}
        ok = np.zeros(n, dtype=bool)
        for start in range(0, n, CHUNK):
            idx, images = [], []
            for i in range(start, min(n, start + CHUNK)):
                try:
                    img = load_image(dataset.paths[i])
                except InputError:
                    continue
                idx.append(i)
                images.append(pert.apply(img, seed, i))
            if images:
                ok[idx] = True
                for e, _ in embedders:
                    rows[e.label][idx] = e.fn(images)
            if on_images:
                on_images(min(n, start + CHUNK) - start)
        for e, key in embedders:
            cache.save(key, rows[e.label], ok)
            results[(e.label, pert.label)] = rows[e.label]
            stats["computed"] += 1
        ok_all &= ok
    return results, ok_all, stats


# ---------------------------------------------------------------------------- the report


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
    from fpforensics.extractor.base import load_extractor

    specs = list(specs) or ["default"]
    specs += [b for b in BASELINES if b not in specs]
    baseline_ids: dict[str, str] = {}
    entries: list[ExtractorEntry] = []
    loaded = []
    for spec in specs:
        ext = load_extractor(spec, device)
        loaded.append((spec, ext))
        if spec in BASELINES:
            baseline_ids[ext.identity] = spec
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


@dataclass
class EvalOutput:
    report: dict
    path: Path
    figures: list[Path]


def run_report(
    dataset: EvalDataset, extractors: list[ExtractorEntry], settings: EvalSettings, out_dir: str | Path, device,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    warn: Callable[[str], None] | None = None, extra: dict | None = None,
    manifpt: list[str] | None = None, real: str | Path | None = None,
) -> EvalOutput:
    """Compute every protocol for every extractor x perturbation; write report.json and figures.

    ``manifpt`` spaces (with the ``real`` folder) add the ManiFPT attributor, scored by
    identification on the same splits (:mod:`fpforensics.evaluation.manifpt`).
    """
    settings.validate()
    out_dir = Path(out_dir)
    _prepare_out(out_dir)
    t0 = time.perf_counter()
    embedders = [extractor_embedder(e.label, e.extractor, settings.grid, settings.batch_size, device) for e in extractors]
    spectrum = spectrum_embedder(device) if settings.figures else None
    # crop:1.0 changes nothing: it reuses the clean embeddings instead of computing them again
    jobs = [(emb, p) for p in settings.all_perturbations if p == CLEAN or not p.is_identity for emb in embedders]
    if spectrum is not None:
        jobs.append((spectrum, CLEAN))
    advance: Callable[[int], None] | None = None

    def on_start(total: int) -> None:
        nonlocal advance
        if progress and total:
            advance = progress("embedding images", total)

    embeddings, ok, cache_stats = compute_embeddings(
        dataset, jobs, settings.seed, EmbeddingCache(out_dir / "cache"), on_start=on_start,
        on_images=lambda k: advance(k) if advance else None)
    for p in settings.all_perturbations:
        for emb in embedders:
            embeddings.setdefault((emb.label, p.label), embeddings[(emb.label, CLEAN.label)])
    t_embed = time.perf_counter() - t0
    dataset, rows = dataset.restrict(ok, settings.shots, warn)
    labels = dataset.labels

    t1 = time.perf_counter()
    results: dict[str, dict[str, dict]] = {}
    figure_data: dict[str, dict] = {}
    for e in extractors:
        results[e.label] = {}
        for p in settings.all_perturbations:
            emb = embeddings[(e.label, p.label)][rows]
            # small matrices: multi-threaded BLAS only spins (7x slower measured on 2 busy cores)
            with warnings.catch_warnings(), threadpool_limits(limits=1):
                warnings.simplefilter("ignore", RuntimeWarning)
                ident = protocols.identification(emb, labels, settings.shots, settings.repeats, settings.seed)
                ver = protocols.verification(emb, labels, settings.pairs, settings.repeats, settings.seed)
                quality = protocols.embedding_quality(emb, labels, settings.seed)
                opens = protocols.open_set(emb, labels, settings.shots, settings.repeats, settings.seed,
                                           settings.open_set_fraction)
            results[e.label][p.label] = {"identification": ident.to_dict(), "verification": ver.to_dict(),
                                         "embedding_quality": quality, "open_set": opens}
            if p == CLEAN:
                figure_data[e.label] = {"embeddings": emb, "identification": ident, "verification": ver}
    t_metrics = time.perf_counter() - t1
    attributors: list[dict] = []
    if manifpt:
        from fpforensics.evaluation import manifpt as mf

        if real is None:
            raise InputError("--manifpt needs --real DIR (the real images whose manifold defines the artifacts)")
        t3 = time.perf_counter()
        mf_results, attributors = mf.evaluate(dataset, mf.parse_spaces(manifpt), Path(real), settings,
                                              EmbeddingCache(out_dir / "cache"), device, progress, warn)
        results.update(mf_results)
        t_manifpt = round(time.perf_counter() - t3, 2)

    report = {
        "fpt_report": "eval",
        "tool_version": __version__,
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
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
        "protocol_notes": {
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
            **({"manifpt": "ManiFPT attributor (`attributors`): artifacts phi(x) - phi(x*) against the nearest "
                           "real image in the rgb/freq space (64 px central crop); per repeat the SAME shot/query "
                           "split as the extractors, a standardize -> PCA -> logistic-regression classifier fitted "
                           "on the shots' artifacts predicts the queries; top-5 from its probabilities. Closed-set "
                           "classifier: verification, open set and embedding quality are not applicable (null); "
                           "clean images only"} if attributors else {}),
        },
        "timing_s": {"embeddings": round(t_embed, 2), "metrics": round(t_metrics, 2)},
        "cache": cache_stats,
    }
    if attributors:
        report["attributors"] = attributors
        report["timing_s"]["manifpt"] = t_manifpt
    if extra:
        report.update(extra)
    figures: list[Path] = []
    if settings.figures:
        t2 = time.perf_counter()
        from fpforensics.evaluation import figures as figs

        spectra = embeddings[(spectrum.label, CLEAN.label)][rows] if spectrum is not None else None
        figures = figs.write_all(out_dir, report, figure_data, labels, dataset.names, spectra,
                                 settings.tsne_max_points, settings.seed)
        report["figures"] = [p.name for p in figures]
        report["timing_s"]["figures"] = round(time.perf_counter() - t2, 2)
    report["timing_s"]["total"] = round(time.perf_counter() - t0, 2)
    path = write_json_atomic(out_dir / "report.json", report)
    return EvalOutput(report, path, figures)


def _prepare_out(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    if not out_dir.parent.exists():
        raise OutputError(f"{out_dir}: parent folder {out_dir.parent} does not exist")
    try:
        out_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create the report folder ({exc.strerror or exc})") from None
    if not os.access(out_dir, os.W_OK):
        raise OutputError(f"{out_dir}: folder is not writable")


def write_json_atomic(path: Path, obj: dict) -> Path:
    try:
        with atomic_file(path) as tmp, open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, default=_json_default, allow_nan=False)
            fh.write("\n")
    except ValueError as exc:  # a NaN in the report: refuse rather than write invalid JSON
        raise OutputError(f"{path}: could not write ({exc})") from None
    return path


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


# ---------------------------------------------------------------------------- tables


def _pm(d: dict | None, pct: bool = True, digits: int = 1) -> str:
    if not d or d.get("mean") is None or not np.isfinite(d["mean"]):
        return "-"
    scale = 100.0 if pct else 1.0
    m, s = d["mean"] * scale, d["std"] * scale
    return f"{m:.{digits}f} ± {s:.{digits}f}" if s > 0 else f"{m:.{digits}f}"


def _num(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _auroc(o: dict) -> str:
    return _pm(o.get("auroc")) if o.get("auroc") is not None else "-"


def _name(e: dict) -> str:
    return e["label"] + (" (baseline)" if e["baseline"] else "")


IDENT_COLUMNS = ["extractor", "top-1 %", "top-5 %", "macro-F1 %", "silhouette", "Davies-Bouldin"]
VERIF_COLUMNS = ["extractor", "AUC %", "EER %", "TPR@FPR1% %", "acc (calibrated) %", "acc (oracle) %",
                 "open-set AUROC %"]
ROBUST_COLUMNS = ["extractor", "perturbation", "top-1 %", "macro-F1 %", "AUC %", "EER %", "acc (calibrated) %",
                  "open-set AUROC %"]


def identification_rows(report: dict, perturbation: str = "clean") -> list[list[str]]:
    """Identification (1:N) and embedding quality, one row per extractor (percent, mean ± std)."""
    rows = []
    for e in report["extractors"]:
        r = report["results"][e["label"]][perturbation]
        i, q = r["identification"], r["embedding_quality"]
        rows.append([_name(e), _pm(i["top1"]), _pm(i["top5"]), _pm(i["macro_f1"]),
                     _num(q.get("silhouette")), _num(q.get("davies_bouldin"), 2)])
    if perturbation == "clean":
        for a in report.get("attributors", []):
            i = report["results"][a["label"]]["clean"]["identification"]
            rows.append([a["label"] + " (attributor)", _pm(i["top1"]), _pm(i["top5"]), _pm(i["macro_f1"]),
                         "n/a", "n/a"])
    return rows


def verification_rows(report: dict, perturbation: str = "clean") -> list[list[str]]:
    """Verification (1:1) and open-set rejection, one row per extractor."""
    rows = []
    for e in report["extractors"]:
        r = report["results"][e["label"]][perturbation]
        v = r["verification"]
        rows.append([_name(e), _pm(v["auc"]), _pm(v["eer"]), _pm(v["tpr_at_fpr1"]), _pm(v["accuracy"]),
                     _pm(v["oracle_accuracy"]), _auroc(r["open_set"])])
    return rows


def robustness_rows(report: dict) -> list[list[str]]:
    rows = []
    for e in report["extractors"]:
        for p in report["perturbations"]:
            r = report["results"][e["label"]][p]
            i, v = r["identification"], r["verification"]
            rows.append([e["label"], p, _pm(i["top1"]), _pm(i["macro_f1"]), _pm(v["auc"]), _pm(v["eer"]),
                         _pm(v["accuracy"]), _auroc(r["open_set"])])
    return rows


def _sections(report: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    ds, s = report["dataset"], report["settings"]
    head = (f"{len(ds['models'])} models, {ds['images']} images, shots {s['shots']}, {s['repeats']} repeats")
    out = [
        (f"Identification (1:N) and embedding quality: {head}", IDENT_COLUMNS, identification_rows(report)),
        (f"Verification (1:1, {s['pairs']} test pairs) and open set", VERIF_COLUMNS, verification_rows(report)),
    ]
    if len(report["perturbations"]) > 1:
        out.append(("Robustness (every image perturbed)", ROBUST_COLUMNS, robustness_rows(report)))
    return out


def rich_tables(report: dict) -> list:
    """The terminal view: identification, verification and (with --perturb) robustness tables."""
    from rich.markup import escape
    from rich.table import Table

    tables = []
    for title, columns, rows in _sections(report):
        t = Table(title=title, caption="mean ± std over repeats")
        for c in columns:
            t.add_column(c, justify="left" if c in ("extractor", "perturbation") else "right")
        for row in rows:
            t.add_row(*(escape(c) for c in row))  # labels such as manifpt[freq] are not markup
        tables.append(t)
    return tables


def markdown_tables(report: dict) -> str:
    """The same tables in Markdown (for docs / README results sections)."""
    lines: list[str] = []
    for title, columns, rows in _sections(report):
        lines += [f"**{title}** (mean ± std over repeats)", "", "| " + " | ".join(columns) + " |",
                  "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    return "\n".join(lines)
