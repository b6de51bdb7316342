"""Fit an extractor's whole calibration (both score kinds, the margin rule, the real-photo rule) from its sources.

:func:`fit_extractor_calibration` works on embeddings; :func:`calibrate_from_sources` first makes
them (held-out synthetic models applied to crops of the real photographs, the photographs
themselves, and optionally generators set aside for calibration: :mod:`fpforensics.verdict.sources`).
``fpt calibrate`` and the end of ``fpt train extractor`` call the latter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fpforensics.defaults import DEFAULTS
from fpforensics.errors import InputError
from fpforensics.metrics import l2_normalize
from fpforensics.verdict.fitting import _rng, fit_from_embeddings
from fpforensics.verdict.realphoto import DEFAULT_ACCEPT, DEFAULT_K, RealReference, fit_rule, model_weights
from fpforensics.verdict.stored import ExtractorCalibration

SYNTHETIC, GENERATORS = 0, 1
PARTNERS = 5  # random calibration images each photograph is paired with for the image-image rule


@dataclass
class CalibrationData:
    """Embeddings of calibration model images (``labels``: model, ``groups``: synthetic or generators) and photos."""

    embeddings: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    real: np.ndarray
    description: str
    real_description: str
    models: list[str] = field(default_factory=list)


def _fingerprint_rule_scores(emb: np.ndarray, labels: np.ndarray, real: np.ndarray, ref: RealReference, shots: int,
                             seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(s_pos, r_pos, query rows, s_neg, r_neg)``: best fingerprint cosine and real-photo score of the
    calibration queries (a seeded shot split) and of the photographs, against the same fingerprints."""
    from fpforensics.evaluation.protocols import fingerprints, shot_split

    n_models = int(labels.max()) + 1
    gal, qry = shot_split(labels, shots, _rng(seed, 8))
    fp = fingerprints(emb[gal], labels[gal], n_models)
    s_pos = (emb[qry] @ fp.T).max(axis=1)
    s_neg = (real @ fp.T).max(axis=1)
    return s_pos, ref.score(emb[qry]), qry, s_neg, ref.score(real, exclude_self=True)


def _pair_rule_scores(emb: np.ndarray, labels: np.ndarray, real: np.ndarray, ref: RealReference, pairs: int,
                      seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The same for single-image pairs: both sides of genuine pairs, and photographs against random images."""
    from fpforensics.evaluation.protocols import sample_pairs

    rng = _rng(seed, 9)
    a, b, same = sample_pairs(labels, pairs, rng)
    a, b = a[same], b[same]
    s = np.einsum("ij,ij->i", emb[a], emb[b])
    r_all = ref.score(emb)
    sides = np.r_[a, b]
    partner = rng.integers(0, len(emb), (len(real), PARTNERS))
    s_neg = np.einsum("ij,ikj->ik", real, emb[partner]).ravel()
    r_neg = np.repeat(ref.score(real, exclude_self=True), PARTNERS)
    return np.r_[s, s], r_all[sides], sides, s_neg, r_neg


def fit_extractor_calibration(data: CalibrationData, extractor: str = "", shots: int = DEFAULTS.shots,
                              pairs: int = DEFAULTS.eval_pairs, seed: int = DEFAULTS.seed, k: int = DEFAULT_K,
                              accept: float = DEFAULT_ACCEPT) -> ExtractorCalibration:
    """Both score calibrations and the real-photo reference with its two rules (see the module docstrings).

    Every model of ``data`` is a calibration model; ``data.real`` are the reference photographs,
    scored against the reference without themselves.
    """
    emb = l2_normalize(np.asarray(data.embeddings, np.float64), dtype=np.float64)
    _, labels = np.unique(np.asarray(data.labels), return_inverse=True)
    real = l2_normalize(np.asarray(data.real, np.float64), dtype=np.float64)
    if len(real) < 3:
        raise InputError(f"the real-photo reference needs at least 3 readable photographs (got {len(real)})")
    k = min(k, len(real) - 2)  # a small run (a test, a smoke run) still gets a reference, with fewer neighbours
    image = fit_from_embeddings(emb, labels, pairs=pairs, seed=seed, reference="image", data=data.description,
                                extractor=extractor)
    fingerprint = fit_from_embeddings(emb, labels, pairs=pairs, seed=seed, reference="fingerprint", shots=shots,
                                      data=data.description, extractor=extractor)
    counts = np.bincount(labels)
    fp_shots = int(min(shots, counts.min() - 1))
    ref = RealReference(real, k, {}, data.real_description, len(real))
    weights_all = model_weights(labels, data.groups)
    rules = {}
    s_pos, r_pos, rows, s_neg, r_neg = _fingerprint_rule_scores(emb, labels, real, ref, fp_shots, seed)
    rules["image-fingerprint"] = fit_rule(s_pos, r_pos, model_weights(labels[rows], data.groups[rows]), s_neg, r_neg,
                                          accept)
    s_pos, r_pos, rows, s_neg, r_neg = _pair_rule_scores(emb, labels, real, ref, pairs, seed)
    rules["image-image"] = fit_rule(s_pos, r_pos, weights_all[rows], s_neg, r_neg, accept)
    ref.rules = rules
    ref.stats = {"calibration_models": int(len(counts)), "calibration_images": int(len(emb)),
                 "models_data": data.description}
    return ExtractorCalibration(image, fingerprint, ref)


# ---------------------------------------------------------------------------- from the sources


def gather(extractor: Any, checkpoint: dict, pool: Any, real: Sequence[str | Path], generators: str | Path | None = None,
           holdout: str = "checkpoint", images_per_model: int = DEFAULTS.pool_images, size: int = DEFAULTS.crop_size,
           seed: int = DEFAULTS.seed, device: Any = "cpu", grid: int = DEFAULTS.grid,
           batch_size: int = DEFAULTS.embed_batch_size, precision: str = DEFAULTS.precision,
           info: Callable[[str], None] | None = None, on_image: Callable[[int], None] | None = None,
           on_skip: Callable[[Path, str], None] | None = None,
           first_generators: int | None = None) -> CalibrationData:
    """Embed the calibration sources (see :mod:`fpforensics.verdict.sources`) into :class:`CalibrationData`.

    ``first_generators``: only the first N model folders of ``generators`` (sorted).
    """
    from fpforensics.embedding.loop import ExtractorEncoder, embed_files
    from fpforensics.images.decode import list_images
    from fpforensics.synthesis.pool import open_pool
    from fpforensics.verdict.sources import embed_tensors, folder_models, heldout_models, photo_crops, synthetic_images

    tell = info or (lambda _m: None)
    pool = open_pool(pool)
    ids, how = heldout_models(pool, checkpoint, holdout)
    photos = list_images(list(real))
    gen_paths, gen_labels, gen_names = (folder_models(generators, first_generators) if generators is not None
                                        else ([], None, []))
    tell(f"calibration: {len(ids)} held-out synthetic models ({how}) x {images_per_model} images of {size} px, "
         f"{len(photos)} real photographs" + (f", {len(gen_names)} generators ({len(gen_paths)} images)"
                                              if gen_names else ""))
    crops = photo_crops(photos, images_per_model, size, seed)
    images, syn_labels = synthetic_images(pool, ids, crops, device)
    syn = embed_tensors(extractor, images, grid, batch_size, precision, on_image=on_image)
    encoder = ExtractorEncoder(extractor, grid)
    done = embed_files([encoder], photos, batch_size, precision, on_image=on_image, on_skip=on_skip)
    real_emb = done.rows[0]
    parts, labels, groups = [syn], [syn_labels], [np.full(len(syn), SYNTHETIC)]
    n_archs = len({pool.entries[i].arch.code for i in ids})
    description = (f"{len(ids)} held-out synthetic models ({n_archs} architectures never trained on, "
                   f"{images_per_model} images each)")
    if gen_names:
        g = embed_files([encoder], gen_paths, batch_size, precision, on_image=on_image, on_skip=on_skip)
        parts.append(g.rows[0])
        labels.append(int(max(ids)) + 1 + gen_labels[g.index])
        groups.append(np.full(len(g.rows[0]), GENERATORS))
        description += f" and {len(gen_names)} generators set aside for calibration ({', '.join(gen_names)})"
    folders = sorted({p.parent.name for p in photos})
    return CalibrationData(np.concatenate(parts), np.concatenate(labels), np.concatenate(groups), real_emb,
                           description, f"{len(real_emb)} real photographs ({', '.join(folders)})",
                           [f"synthetic:{i}" for i in ids] + list(gen_names))


def calibrate_from_sources(extractor: Any, checkpoint: dict, pool: Any, real: Sequence[str | Path],
                           generators: str | Path | None = None, holdout: str = "checkpoint",
                           images_per_model: int = DEFAULTS.pool_images, size: int = DEFAULTS.crop_size,
                           seed: int = DEFAULTS.seed, shots: int = DEFAULTS.shots, pairs: int = DEFAULTS.eval_pairs,
                           accept: float = DEFAULT_ACCEPT, device: Any = "cpu", grid: int = DEFAULTS.grid,
                           batch_size: int = DEFAULTS.embed_batch_size, precision: str = DEFAULTS.precision,
                           info: Callable[[str], None] | None = None, on_image: Callable[[int], None] | None = None,
                           on_skip: Callable[[Path, str], None] | None = None,
                           first_generators: int | None = None) -> ExtractorCalibration:
    """:func:`gather` then :func:`fit_extractor_calibration`."""
    data = gather(extractor, checkpoint, pool, real, generators, holdout, images_per_model, size, seed, device, grid,
                  batch_size, precision, info, on_image, on_skip, first_generators)
    return fit_extractor_calibration(data, extractor.identity, shots, pairs, seed, accept=accept)


def calibrate_after_training(path: str | Path, pool: Any, real: Sequence[str | Path], device: Any = "cpu",
                             precision: str = DEFAULTS.precision, size: int = DEFAULTS.crop_size,
                             warn: Callable[[str], None] | None = None) -> ExtractorCalibration | None:
    """The last step of ``fpt train extractor``: calibrate the checkpoint just written, in place.

    The run's own held-out validation models (the checkpoint's ``heldout_model_ids``) and its real
    photographs are the calibration data. A run too small to calibrate (too few photographs or
    held-out models) keeps its checkpoint uncalibrated, with a warning, rather than failing.
    """
    from fpforensics.checkpoints import load_checkpoint
    from fpforensics.errors import FptError
    from fpforensics.extractor.loading import load_trained_extractor
    from fpforensics.verdict.stored import write_calibration

    try:
        checkpoint = load_checkpoint(path, kind="extractor")
        extractor = load_trained_extractor(path).to(device).eval()
        cal = calibrate_from_sources(extractor, checkpoint, pool, real, size=size, device=device, precision=precision)
        write_calibration(path, cal, overwrite=True)
        return cal
    except FptError as exc:
        if warn:
            warn(f"{path}: stored without a calibration ({exc}); run `fpt calibrate` on it")
        return None
