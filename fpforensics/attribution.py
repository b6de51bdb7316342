"""Model attribution from embeddings: the gallery of enrolled models, 1:N identification with
open-set rejection, and 1:1 verification (METHOD 1.4).

* A **fingerprint** is the L2-normalized mean of a model's image embeddings.
* **Identification** ranks every enrolled model by cosine similarity to a query: one matrix
  product ``Q @ F.T`` over the whole gallery (queries processed in chunks to bound memory).
  When the best score is below the gallery's threshold the answer is "unknown model".
* **Verification** compares two embeddings by cosine similarity against a threshold (the
  paper's 0.81 by default, which belongs to the paper's extractor).
* The **threshold** is stored with the gallery, because it belongs to the extractor that made
  it. It is derived from the enrolled images (:func:`calibrate_threshold`): leave-one-out
  genuine scores (each image against its own model's fingerprint recomputed without it) vs
  leave-one-model-out impostor scores (each image's best score among the *other* models, i.e.
  the score it would get if its model were not enrolled); the threshold maximizes balanced
  accuracy between the two. With one model there are no impostors: the threshold is the 5th
  percentile of the genuine scores. With no model holding two images there is nothing to
  measure: the paper's 0.81 is used and marked as such.

A :class:`Gallery` bound to a file is a snapshot for reading; every change is a transaction:
lock the file, re-read it (to include other processes' changes), modify, write atomically.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fpforensics import __version__
from fpforensics.defaults import DEFAULTS
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.io.embeddings import utc_now
from fpforensics.io.gallery import GalleryData, read_gallery_file, write_gallery_file
from fpforensics.io.images import LoadReport, iter_images
from fpforensics.io.store import file_lock

PAPER_THRESHOLD = float(DEFAULTS["verify_threshold"])
SINGLE_MODEL_QUANTILE = 0.05
MAX_CALIBRATION_QUERIES = 5000


def normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


# ---------------------------------------------------------------------------- embedding files


def spread_order(n: int, k: int) -> list[int]:
    """Indices ``0..n-1`` with ``k`` evenly spaced ones first, so "the first k that load" spans the list."""
    k = max(0, min(k, n))
    first = sorted({int(round(i)) for i in np.linspace(0, n - 1, k)}) if k else []
    taken = set(first)
    return first + [i for i in range(n) if i not in taken]


def embed_paths(
    extractor,
    paths: Sequence[Path],
    grid: int = int(DEFAULTS["grid"]),
    batch_size: int = 64,
    device=None,
    limit: int | None = None,
    on_image: Callable[[int], None] | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
) -> tuple[list[Path], np.ndarray, LoadReport]:
    """Embed image files (sliding window, batched); unreadable files are skipped and reported.

    With ``limit``, images are taken in :func:`spread_order` until ``limit`` have loaded
    (bad files replaced by the next ones); rows come back in the input order.
    """
    from fpforensics.extractor.base import embed_images

    order = spread_order(len(paths), limit) if limit else list(range(len(paths)))
    ordered = [Path(paths[i]) for i in order]
    report = LoadReport()
    loaded: list[Path] = []

    def images():
        for p, img in itertools.islice(iter_images(ordered, report, on_skip), limit):
            loaded.append(p)
            yield img

    emb = embed_images(extractor, images(), grid=grid, batch_size=batch_size, device=device, on_image=on_image)
    rank = {p: i for i, p in enumerate(Path(p) for p in paths)}
    keep = sorted(range(len(loaded)), key=lambda i: rank[loaded[i]])
    return [loaded[i] for i in keep], emb[keep], report


# ---------------------------------------------------------------------------- calibration


@dataclass
class Calibration:
    threshold: float
    source: str  # calibrated | single-model | default | manual
    info: dict = field(default_factory=dict)


def genuine_scores(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Leave-one-out: each image against its model's fingerprint computed without it (models with >= 2 images)."""
    emb = normalize(embeddings).astype(np.float64)
    labels = np.asarray(labels)
    n_models = int(labels.max()) + 1 if len(labels) else 0
    counts = np.bincount(labels, minlength=n_models)
    sums = np.zeros((n_models, emb.shape[1]))
    np.add.at(sums, labels, emb)
    keep = counts[labels] >= 2
    rest = sums[labels[keep]] - emb[keep]
    return (np.einsum("ij,ij->i", emb[keep], rest) / np.maximum(np.linalg.norm(rest, axis=1), 1e-12))


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
    step = max(1, int(2**24 // max(1, len(fp))))
    for start in range(0, len(rows), step):
        r = rows[start:start + step]
        sim = normalize(embeddings[r]) @ fp.T
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


def calibrate_threshold(embeddings: np.ndarray, labels: np.ndarray, fingerprints: np.ndarray) -> Calibration:
    """Open-set threshold from enrolled images (scheme in the module docstring)."""
    gen = genuine_scores(embeddings, labels) if len(labels) else np.zeros(0)
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


# ---------------------------------------------------------------------------- gallery


@dataclass
class ModelInfo:
    """One enrolled model, as ``fpt gallery show`` reports it."""

    name: str
    n_images: int
    created: str
    updated: str
    tool_version: str
    grid: int
    extractor: str | None
    paths: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "images": self.n_images, "created": self.created, "updated": self.updated,
                "tool_version": self.tool_version, "grid": self.grid, "extractor": self.extractor,
                "paths": self.paths, "added": self.added}


class Gallery:
    """Enrolled models. ``Gallery.open(path)`` reads a file; ``Gallery()`` is in memory only."""

    def __init__(self, path: str | Path | None = None, data: GalleryData | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._data = data if data is not None else GalleryData()

    @classmethod
    def open(cls, path: str | Path, create: bool = False) -> Gallery:
        """Read the gallery at ``path``; a missing file is an error unless ``create`` (then empty)."""
        path = Path(path)
        if not path.exists():
            if create:
                return cls(path)
            raise InputError(f"{path}: no gallery here yet (enroll a model with `fpt gallery add NAME IMAGES`)")
        return cls(path, read_gallery_file(path))

    # -- reading
    @property
    def extractor(self) -> str | None:
        return self._data.extractor

    @property
    def extractor_spec(self) -> str:
        return self._data.extractor_spec

    @property
    def dim(self) -> int:
        return self._data.dim

    @property
    def threshold(self) -> float | None:
        return self._data.threshold

    @property
    def calibration(self) -> Calibration | None:
        d = self._data
        return None if d.threshold is None else Calibration(d.threshold, d.threshold_source, dict(d.threshold_info))

    def __len__(self) -> int:
        return len(self._data.names)

    def __contains__(self, name: object) -> bool:
        return name in self._data.names

    def names(self) -> list[str]:
        return list(self._data.names)

    def fingerprints(self) -> tuple[list[str], np.ndarray]:
        """``(names, (M, D) matrix)``: the whole gallery for :func:`identify`."""
        return list(self._data.names), self._data.fingerprints

    def models(self) -> list[ModelInfo]:
        return [self.model(n, with_paths=False) for n in self._data.names]

    def model(self, name: str, with_paths: bool = True) -> ModelInfo:
        d = self._data
        i = self._index(name)
        rows = np.flatnonzero(d.image_model == i)
        return ModelInfo(name, len(rows), d.created[i], d.updated[i], d.tool_versions[i], d.grids[i], d.extractor,
                         [d.image_paths[r] for r in rows] if with_paths else [],
                         [d.image_added[r] for r in rows] if with_paths else [])

    def embeddings(self, name: str) -> np.ndarray:
        return self._data.embeddings[self._data.image_model == self._index(name)]

    def _index(self, name: str) -> int:
        try:
            return self._data.names.index(name)
        except ValueError:
            import difflib

            close = difflib.get_close_matches(name, self._data.names, n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            where = f" in {self.path}" if self.path else ""
            raise InputError(f"no model named '{name}'{where}{hint}") from None

    def check_compatible(self, extractor_identity: str, dim: int | None = None) -> None:
        """Refuse embeddings from another extractor: they are not comparable with the gallery's."""
        check_compatible(self._data, extractor_identity, dim, self.path)

    # -- writing (each a locked read-modify-write transaction when bound to a file)
    def _transaction(self, change: Callable[[GalleryData], object]) -> object:
        if self.path is None:
            return change(self._data)
        with file_lock(self.path):
            data = read_gallery_file(self.path) if self.path.exists() else GalleryData()
            result = change(data)
            data.file_created = data.file_created or utc_now()
            data.file_updated = utc_now()
            write_gallery_file(self.path, data)
        self._data = data
        return result

    def enroll(self, name: str, embeddings: np.ndarray, paths: Sequence[str | Path], extractor_identity: str,
               replace: bool = False, grid: int = int(DEFAULTS["grid"]), extractor_spec: str = "") -> ModelInfo:
        """Add images of model ``name`` (appending, or replacing its images with ``replace``).

        The fingerprint is recomputed from all the model's stored embeddings and the threshold is
        recalibrated (unless it was set by hand).
        """
        name = name.strip()
        if not name:
            raise InputError("a model name cannot be empty")
        emb = normalize(np.asarray(embeddings, dtype=np.float32))
        if emb.ndim != 2 or emb.shape[0] != len(paths) or not len(paths):
            raise InputError(f"enrolling '{name}': need one embedding per image (got {emb.shape}, {len(paths)} paths)")

        def change(d: GalleryData) -> None:
            if len(d.names) == 0:  # an empty gallery takes the extractor of its first model
                d.extractor, d.dim, d.extractor_spec = extractor_identity, int(emb.shape[1]), extractor_spec
                d.fingerprints = np.zeros((0, d.dim), np.float32)
                d.embeddings = np.zeros((0, d.dim), np.float32)
            check_compatible(d, extractor_identity, int(emb.shape[1]), self.path)
            now = utc_now()
            if name in d.names:
                i = d.names.index(name)
                if replace:
                    _drop_images(d, d.image_model == i)
                d.updated[i], d.tool_versions[i], d.grids[i] = now, __version__, int(grid)
            else:
                i = len(d.names)
                d.names.append(name)
                d.created.append(now)
                d.updated.append(now)
                d.tool_versions.append(__version__)
                d.grids.append(int(grid))
                d.fingerprints = np.vstack([d.fingerprints, np.zeros((1, d.dim), np.float32)])
            d.embeddings = np.vstack([d.embeddings, emb])
            d.image_model = np.concatenate([d.image_model, np.full(len(emb), i, np.int32)])
            d.image_paths += [str(p) for p in paths]
            d.image_added += [now] * len(emb)
            d.fingerprints[i] = normalize(d.embeddings[d.image_model == i].mean(axis=0))
            _auto_calibrate(d)

        self._transaction(change)
        return self.model(name)

    def remove(self, name: str) -> ModelInfo:
        """Delete a model and its images; the threshold is recalibrated (unless set by hand)."""
        removed: list[ModelInfo] = []

        def change(d: GalleryData) -> None:
            snapshot = Gallery(None, d)
            removed.append(snapshot.model(name, with_paths=False))
            i = snapshot._index(name)
            _drop_images(d, d.image_model == i)
            for lst in (d.names, d.created, d.updated, d.tool_versions, d.grids):
                del lst[i]
            d.fingerprints = np.delete(d.fingerprints, i, axis=0)
            d.image_model = np.where(d.image_model > i, d.image_model - 1, d.image_model).astype(np.int32)
            _auto_calibrate(d)

        self._transaction(change)
        return removed[0]

    def calibrate(self, threshold: float | None = None) -> Calibration:
        """Recompute the threshold from the enrolled images, or fix it by hand (``threshold``)."""
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise InputError(f"threshold {threshold} is not a cosine similarity (expected -1..1)")

        def change(d: GalleryData) -> Calibration:
            if threshold is not None:
                d.threshold, d.threshold_source, d.threshold_info = float(threshold), "manual", {"method": "set by hand"}
            else:
                d.threshold_source = "auto"
                _auto_calibrate(d)
            return Calibration(d.threshold if d.threshold is not None else PAPER_THRESHOLD, d.threshold_source,
                               dict(d.threshold_info))

        return self._transaction(change)  # type: ignore[return-value]


def check_compatible(d: GalleryData, identity: str, dim: int | None, path: Path | None) -> None:
    if not d.names or d.extractor is None:
        return
    where = str(path) if path else "the gallery"
    if identity != d.extractor:
        hint = f" (it was made with --extractor {d.extractor_spec})" if d.extractor_spec else ""
        raise IncompatibleError(
            f"{where} was made with extractor '{d.extractor}', not the current '{identity}'{hint}: "
            "embeddings from different extractors are not comparable")
    if dim is not None and dim != d.dim:
        raise IncompatibleError(f"{where} holds {d.dim}-d embeddings, these are {dim}-d "
                                f"(extractor '{identity}'): not comparable")


def _drop_images(d: GalleryData, mask: np.ndarray) -> None:
    keep = ~mask
    d.embeddings = d.embeddings[keep]
    d.image_model = d.image_model[keep]
    d.image_paths = [p for p, k in zip(d.image_paths, keep, strict=True) if k]
    d.image_added = [p for p, k in zip(d.image_added, keep, strict=True) if k]


def _auto_calibrate(d: GalleryData) -> None:
    if d.threshold_source == "manual":
        return
    if not d.names:
        d.threshold, d.threshold_source, d.threshold_info = None, "none", {}
        return
    cal = calibrate_threshold(d.embeddings, d.image_model, d.fingerprints)
    d.threshold, d.threshold_source, d.threshold_info = cal.threshold, cal.source, cal.info


# ---------------------------------------------------------------------------- identify / verify


@dataclass
class Identification:
    """Top-k gallery models per query; ``predictions`` applies the open-set threshold."""

    names: list[str]
    indices: np.ndarray  # (n, k) rows into names, best first
    scores: np.ndarray  # (n, k) cosine similarities
    threshold: float | None

    @property
    def best_scores(self) -> np.ndarray:
        return self.scores[:, 0]

    @property
    def known(self) -> np.ndarray:
        if self.threshold is None:
            return np.ones(len(self.scores), bool)
        return self.scores[:, 0] >= self.threshold

    @property
    def predictions(self) -> list[str | None]:
        """Best model per query, or None for "unknown model" (best score below threshold)."""
        return [self.names[row[0]] if ok else None for row, ok in zip(self.indices, self.known, strict=True)]

    def ranking(self, i: int) -> list[tuple[int, str, float]]:
        pairs = zip(self.indices[i], self.scores[i], strict=True)
        return [(r + 1, self.names[j], float(s)) for r, (j, s) in enumerate(pairs)]


def identify(query_embeddings: np.ndarray, gallery: Gallery | tuple[Sequence[str], np.ndarray],
             top_k: int = 5, threshold: float | None = None, chunk_elements: int = 2**25) -> Identification:
    """Rank gallery models by cosine similarity for each query: one matrix product per chunk of queries.

    ``threshold`` None takes the gallery's stored threshold (a ``(names, matrix)`` pair has none:
    closed-set ranking).
    """
    if isinstance(gallery, Gallery):
        names, fp = gallery.fingerprints()
        if threshold is None:
            threshold = gallery.threshold
    else:
        names, fp = list(gallery[0]), np.asarray(gallery[1], np.float32)
    if not len(names):
        raise InputError("the gallery is empty: enroll models first (`fpt gallery add NAME IMAGES`)")
    q = normalize(np.atleast_2d(np.asarray(query_embeddings, np.float32)))
    if q.shape[1] != fp.shape[1]:
        raise IncompatibleError(f"queries are {q.shape[1]}-d, the gallery is {fp.shape[1]}-d: not comparable")
    if top_k < 1:
        raise InputError(f"--top-k must be at least 1 (got {top_k})")
    k = min(top_k, len(names))
    idx = np.empty((len(q), k), np.int64)
    scores = np.empty((len(q), k), np.float32)
    step = max(1, chunk_elements // len(names))
    for start in range(0, len(q), step):
        sim = q[start:start + step] @ fp.T  # the whole gallery at once
        if k < len(names):
            part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(len(names)), sim.shape)
        part_scores = np.take_along_axis(sim, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        idx[start:start + len(sim)] = np.take_along_axis(part, order, axis=1)
        scores[start:start + len(sim)] = np.take_along_axis(part_scores, order, axis=1)
    return Identification(list(names), idx, scores, threshold)


@dataclass
class Verification:
    cosine: float
    threshold: float

    @property
    def same_model(self) -> bool:
        return self.cosine >= self.threshold


def verify(a: np.ndarray, b: np.ndarray, threshold: float = PAPER_THRESHOLD) -> Verification:
    """Cosine similarity of two embeddings (symmetric) and the same-model verdict."""
    a64, b64 = (np.asarray(v, np.float64).ravel() for v in (a, b))
    if a64.shape != b64.shape:
        raise IncompatibleError(f"embeddings of different sizes ({a64.size} vs {b64.size}): not comparable")
    denom = max(np.linalg.norm(a64) * np.linalg.norm(b64), 1e-24)
    return Verification(float(np.clip(np.dot(a64, b64) / denom, -1.0, 1.0)), float(threshold))
