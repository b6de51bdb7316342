"""Evaluation: the ManiFPT attributor in ``fpt eval`` (``--manifpt SPACE --real DIR``), next to the extractors.

For each space the artifacts ``a(x) = phi(x) - phi(x*)`` of every dataset image against the real
manifold (:mod:`fpforensics.manifpt`) are computed once and cached in ``OUT/cache/`` (keyed by
space identity and settings, the real files and the dataset files). Identification then uses the
*same* seeded shot/query splits as the extractors (:func:`protocols.shot_split` with the same
stream), so the numbers are a paired comparison: per repeat an :class:`ArtifactClassifier` is
fitted on the shots' artifacts and predicts the queries. The attributor is a closed-set
classifier: it has no similarity score between two images, so verification, open set and
embedding quality do not apply; only clean images are evaluated.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from fpforensics.errors import InputError
from fpforensics.evaluation import protocols

SPACES = ("rgb", "freq")
SIZE = 64  # the `fpt artifact` default side of the rgb/freq image
CACHE_VERSION = 1


def parse_spaces(spaces: list[str]) -> list[str]:
    """Validate ``--manifpt`` values (rgb | freq), lower-cased, duplicates dropped, order kept."""
    out: list[str] = []
    for s in spaces:
        name = s.strip().lower()
        if name not in SPACES:
            raise InputError(f"--manifpt {s}: unknown space, use one of {', '.join(SPACES)}")
        if name not in out:
            out.append(name)
    return out


def label(space: str) -> str:
    return f"manifpt[{space}]"


def dataset_artifacts(space, paths: list[Path], files_signature: str, real_dir: Path, cache, device,
                      on_image: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Artifacts ``(N, D)`` of ``paths`` (rows of unreadable images are zero), readable mask, manifold info."""
    from fpforensics.images.decode import list_images
    from fpforensics.manifpt.artifacts import compute_artifacts
    from fpforensics.manifpt.manifold import load_or_build_manifold, paths_digest

    real_paths = list_images([real_dir])
    if not real_paths:
        raise InputError(f"--real {real_dir}: no images found")
    info = {"real": str(real_dir), "real_images": len(real_paths), "space_identity": space.identity,
            "space_settings": space.settings}
    key = json.dumps({"v": CACHE_VERSION, "manifpt": space.identity, "settings": space.settings,
                      "real": paths_digest(real_paths), "files": files_signature}, sort_keys=True)
    hit = cache.load(key)
    if hit is not None and hit[0].shape[0] == len(paths):
        if on_image:
            on_image(len(paths))
        return hit[0], hit[1].astype(bool), {**info, "cached": True}
    manifold = load_or_build_manifold(space, real_paths)
    result = compute_artifacts(space, {"all": list(paths)}, manifold, device=device, on_image=on_image)
    row = {p: i for i, p in enumerate(paths)}
    artifacts = np.zeros((len(paths), result.artifacts.shape[1]), np.float32)
    ok = np.zeros(len(paths), dtype=bool)
    idx = np.asarray([row[p] for p in result.paths], dtype=np.int64)
    artifacts[idx] = result.artifacts
    ok[idx] = True
    cache.save(key, artifacts, ok)
    return artifacts, ok, {**info, "real_images_used": len(manifold.paths), "cached": False}


def identification(artifacts: np.ndarray, labels: np.ndarray, shots: int, repeats: int, seed: int,
                   dim: int = 128, C: float = 1.0) -> protocols.IdentificationResult:
    """Closed-set identification by the attributor on the extractors' exact shot/query splits."""
    from fpforensics.manifpt.classifier import ArtifactClassifier

    labels = np.asarray(labels)
    n_models = int(labels.max()) + 1
    names = [f"{m:06d}" for m in range(n_models)]  # sortable names: classes come back in label order

    def class_probabilities(gal: np.ndarray, qry: np.ndarray) -> np.ndarray:
        with threadpool_limits(limits=1):
            clf = ArtifactClassifier(dim=dim, C=C, seed=seed).fit(artifacts[gal], [names[m] for m in labels[gal]])
            proba_fit = clf.predict_proba(artifacts[qry])
        proba = np.zeros((len(qry), n_models))
        proba[:, [int(c) for c in clf.classes]] = proba_fit
        return proba

    return protocols.scores_to_identification(labels, shots, repeats, seed, class_probabilities)


def evaluate(dataset, spaces: list[str], real_dir: Path, settings, cache, device,
             progress: Callable[[str, int], Callable[[int], None]] | None = None,
             warn: Callable[[str], None] | None = None) -> tuple[dict, list[dict]]:
    """``({label: {"clean": {...}}}, [attributor descriptions])`` for every ``--manifpt`` space.

    ``dataset`` is the one the extractors are scored on (after dropping unreadable images), so
    labels and splits are identical. An image the artifact space cannot read is fatal here
    rather than silently changing the splits.
    """
    from fpforensics.manifpt import build_space

    results: dict[str, dict] = {}
    described: list[dict] = []
    files = dataset.file_signature()
    for name in spaces:
        space = build_space(name, size=SIZE, fit="crop", device=device)
        advance = progress(f"artifacts ({name})", len(dataset.paths)) if progress else None
        artifacts, ok, info = dataset_artifacts(space, dataset.paths, files, Path(real_dir), cache, device, advance)
        if not ok.all():
            bad = [str(dataset.paths[i]) for i in np.flatnonzero(~ok)][:3]
            raise InputError(f"--manifpt {name}: could not read {int((~ok).sum())} image(s) the extractors read "
                             f"(e.g. {', '.join(bad)})")
        ident = identification(artifacts, dataset.labels, settings.shots, settings.repeats, settings.seed)
        results[label(name)] = {"clean": {"identification": ident.to_dict(), "verification": None,
                                          "embedding_quality": None, "open_set": None}}
        described.append({"label": label(name), "space": name, "artifact_dim": int(artifacts.shape[1]),
                          "classifier": {"kind": "standardize -> PCA -> logistic regression", "dim": 128, "C": 1.0},
                          **info})
    return results, described
