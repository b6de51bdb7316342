"""Calibration data: embeddings of images whose model is known and that no test ever sees.

Three sources feed :func:`fpforensics.verdict.stored.fit_extractor_calibration`:

* **held-out synthetic models**: models of a pool the extractor was never trained on (the
  ``heldout_model_ids`` of its checkpoint, or, for another pool, every model of its held-out
  architectures), each applied to the *same* seeded crops of the real photographs, quantized to
  8 bits as a generator saves its images, and embedded like any image;
* **real photographs**: the photographs themselves (no model), embedded with the sliding window:
  the real-photo reference and the negatives of the open-set rule;
* optionally **real generators set aside for calibration**: a folder with one subfolder per model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fpforensics.defaults import DEFAULTS
from fpforensics.errors import IncompatibleError, InputError


def heldout_models(pool: Any, checkpoint: dict, holdout: str = "checkpoint") -> tuple[list[int], str]:
    """Pool ids of models the extractor never trained on, and how they were chosen.

    ``checkpoint``: the checkpoint's ``heldout_model_ids`` when ``pool`` is its training pool;
    for another pool (e.g. more seeds of the held-out architectures), its models whose
    architecture is in the checkpoint's ``heldout_archs``. Anything else is a grid expression.
    """
    from fpforensics.synthesis.architectures import parse_grid

    if holdout.strip().lower() != "checkpoint":
        archs = set(parse_grid(holdout))
        ids = [i for i, e in enumerate(pool.entries) if e.arch in archs]
        how = f"architectures {holdout}"
    elif str(checkpoint.get("pool_fingerprint")) == str(pool.fingerprint) and checkpoint.get("heldout_model_ids"):
        ids = sorted(int(i) for i in checkpoint["heldout_model_ids"])
        how = "the checkpoint's held-out models"
    else:
        codes = set(checkpoint.get("heldout_archs") or [])
        if not codes:
            raise InputError("the extractor records no held-out architectures: pass --holdout with a grid expression")
        ids = [i for i, e in enumerate(pool.entries) if e.arch.code in codes]
        seen = set(checkpoint.get("seen_archs") or [])
        if any(pool.entries[i].arch.code in seen for i in ids):
            raise IncompatibleError("the pool's held-out architectures overlap the extractor's training architectures")
        how = f"models of the checkpoint's {len(codes)} held-out architectures"
    if len(ids) < 2:
        raise InputError(f"the pool has {len(ids)} held-out model(s) for this extractor: calibration needs at least 2")
    return ids, how


def synthetic_images(pool: Any, model_ids: Sequence[int], crops: torch.Tensor, device: torch.device | str = "cpu",
                     batch: int = 32) -> tuple[list[torch.Tensor], np.ndarray]:
    """Every model applied to every crop, rounded to 8 bits (the training batch's own path): ``(images, labels)``."""
    from fpforensics.extractor.batches import fingerprinted_images

    images, labels = [], []
    with torch.no_grad():
        for mid in model_ids:
            for start in range(0, len(crops), batch):
                x = crops[start:start + batch].float()
                ids = torch.full((len(x),), int(mid), dtype=torch.long)
                images += list(fingerprinted_images(pool, ids, x, torch.device(device)).cpu())
                labels += [int(mid)] * len(x)
    return images, np.asarray(labels, np.int64)


def embed_tensors(extractor: Any, images: Sequence[torch.Tensor], grid: int = DEFAULTS.grid,
                  batch_size: int = DEFAULTS.embed_batch_size, precision: str = DEFAULTS.precision,
                  on_image: Callable[[int], None] | None = None) -> np.ndarray:
    """Decoded images through the one embedding loop (sliding window), as ``(N, D)`` rows."""
    from fpforensics.embedding.loop import ExtractorEncoder, embed_images

    return embed_images(ExtractorEncoder(extractor, grid), images, batch_size, precision, on_image=on_image)


def photo_crops(paths: Sequence[Path], n: int, size: int, seed: int) -> torch.Tensor:
    """``n`` seeded ``size`` px crops of the photographs, cycling through them (the content the models see)."""
    from fpforensics.evaluation.synthetic import real_crops
    from fpforensics.images.crops import upscale_to_min_side

    if size == DEFAULTS.crop_size:
        return real_crops(list(paths), n, seed)[0]
    from fpforensics.images.crops import random_crop
    from fpforensics.images.decode import iter_images

    photos = [img for _, img in iter_images(list(paths))]
    if not photos:
        raise InputError("no readable real photograph")
    rng = np.random.default_rng([seed, 13])
    order = rng.permutation(len(photos))
    return torch.stack([random_crop(upscale_to_min_side(photos[order[j % len(photos)]], size), size, rng)[0]
                        for j in range(n)])


def folder_models(root: str | Path, first: int | None = None) -> tuple[list[Path], np.ndarray, list[str]]:
    """``ROOT/<model>/<images>``: image paths, their model labels and the model names (sorted).

    ``first``: only the first ``first`` model folders in sorted order (the calibration half of a
    set of generators whose other half is kept for testing).
    """
    from fpforensics.images.decode import list_images

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (expected one subfolder of images per generator)")
    names, paths, labels = [], [], []
    subs = sorted(p for p in root.iterdir() if p.is_dir())
    if first is not None:
        if first < 2:
            raise InputError(f"--first-generators must be at least 2 (got {first})")
        subs = subs[:first]
    for sub in subs:
        try:
            found = list_images(sub)
        except InputError:
            continue
        names.append(sub.name)
        paths += found
        labels += [len(names) - 1] * len(found)
    if len(names) < 2:
        raise InputError(f"{root}: needs at least 2 subfolders of images (one per generator), found {len(names)}")
    return paths, np.asarray(labels, np.int64), names
