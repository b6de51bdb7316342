"""Evaluation: the synthetic zero-shot benchmark of ``fpt eval --pool POOL --real DIR --holdout ...``.

Held-out synthetic models (architectures never used in training) turn the *same* seeded 128x128
crops of real photos into images, written as lossless PNGs to ``OUT/synthetic_dataset/<model>/``;
the ordinary report then runs on that folder. Because every model sees the same crops, content
cannot help: only a model's fingerprint can. A ``manifest.json`` records what the folder was
built from, so a re-run with the same inputs reuses it (and the embedding cache with it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fpforensics.defaults import DEFAULTS
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.images.crops import random_crop, upscale_to_min_side
from fpforensics.images.decode import iter_images, list_images, save_png
from fpforensics.synthesis.pool import open_pool

FOLDER = "synthetic_dataset"
CROP = DEFAULTS.crop_size
BATCH = 32


def holdout_ids(pool, holdout: str, extractor_specs: list[str]) -> tuple[list[int], str]:
    """Pool indices of the held-out models and a description of how they were chosen.

    ``checkpoint``: the ``heldout_model_ids`` stored by ``fpt train extractor`` in the first
    ``--extractor`` that is a checkpoint file (refused if it was trained on another pool).
    Anything else is an architecture grid expression (``U=deconv``, ``A=tanh|sigmoid``, codes).
    """
    from fpforensics.synthesis.architectures import parse_grid

    if holdout.strip().lower() == "checkpoint":
        from fpforensics.checkpoints import load_checkpoint

        paths = [s for s in extractor_specs if Path(s).is_file()]
        if not paths:
            raise InputError("--holdout checkpoint needs an --extractor that is a checkpoint file")
        ckpt = load_checkpoint(paths[0], kind="extractor")
        ids = ckpt.get("heldout_model_ids", ckpt.get("holdout_ids"))
        if not ids:
            raise InputError(f"{paths[0]}: the checkpoint records no held-out model ids; use a grid expression")
        theirs, ours = ckpt.get("pool_fingerprint"), getattr(pool, "fingerprint", None)
        if theirs and ours and str(theirs) != str(ours):
            raise IncompatibleError(f"{paths[0]} was trained on another pool (fingerprint {theirs}, this pool {ours})")
        ids = sorted(int(i) for i in ids)
        if ids[-1] >= len(pool):
            raise IncompatibleError(f"{paths[0]}: held-out id {ids[-1]} is outside the pool ({len(pool)} models)")
        return ids, f"checkpoint {paths[0]}"
    archs = set(parse_grid(holdout))
    ids = [i for i, e in enumerate(pool.entries) if e.arch in archs]
    if not ids:
        raise InputError(f"--holdout '{holdout}' selects no model of the pool")
    return ids, f"architectures {holdout}"


def real_crops(real: str | Path, n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """``n`` seeded random 128x128 crops of the real photos (cycling through them), in [0, 1]."""
    paths = list_images(real)
    photos = [(p, img) for p, img in iter_images(paths)]
    if not photos:
        raise InputError(f"{real}: no readable real image")
    rng = np.random.default_rng([seed, 13])
    order = rng.permutation(len(photos))
    crops, used = [], []
    for j in range(n):
        path, img = photos[order[j % len(photos)]]
        crop, top, left = random_crop(upscale_to_min_side(img, CROP), CROP, rng)
        crops.append(crop)
        used.append(f"{path}@{top},{left}")
    return torch.stack(crops), used


def _signature(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def build_pool_dataset(
    pool: Any, real: str | Path, holdout: str, out_dir: str | Path, extractor_specs: list[str],
    images_per_model: int = 20, max_models: int = 20, seed: int = 0, device: torch.device | str = "cpu",
    on_total: Callable[[int], None] | None = None, on_images: Callable[[int], None] | None = None,
) -> tuple[Path, dict]:
    """Write the held-out models' images under ``OUT/synthetic_dataset``; return it and the report's metadata."""
    pool_path = None if hasattr(pool, "apply") else Path(pool)
    pool = open_pool(pool)
    if images_per_model < 2:
        raise InputError("--pool-images must be at least 2")
    ids, how = holdout_ids(pool, holdout, extractor_specs)
    if len(ids) > max_models:
        ids = sorted(np.random.default_rng([seed, 17]).choice(ids, max_models, replace=False).tolist())
    if len(ids) < 2:
        raise InputError(f"--holdout '{holdout}' selects {len(ids)} model(s): the benchmark needs at least 2")
    real_files = [str(p) for p in list_images(real)]
    names = [f"{i:05d}_{pool.entries[i].arch.code}_s{int(pool.entries[i].seed)}" for i in ids]
    meta = {
        "pool": str(pool_path) if pool_path else repr(pool),
        "pool_fingerprint": str(getattr(pool, "fingerprint", "")),
        "pool_models": len(pool),
        "holdout": holdout, "selected_by": how, "models": len(ids), "model_ids": ids,
        "architectures": sorted({pool.entries[i].arch.code for i in ids}),
        "images_per_model": images_per_model, "real": str(real), "real_images": len(real_files), "seed": seed,
    }
    key = _signature({**meta, "real_files": real_files,
                      "pool_mtime": pool_path.stat().st_mtime_ns if pool_path and pool_path.exists() else None})
    folder = Path(out_dir) / FOLDER
    manifest = folder / "manifest.json"
    if manifest.exists():
        try:
            if json.loads(manifest.read_text()).get("key") == key:
                return folder, {"synthetic_benchmark": {**meta, "reused": True}}
        except (OSError, ValueError):
            pass
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if folder.exists():
        shutil.rmtree(folder)  # our own output, built from other inputs: rebuild it
    crops, used = real_crops(real, images_per_model, seed)
    if on_total:
        on_total(len(ids) * images_per_model)
    device = torch.device(device)
    with torch.no_grad():
        for mid, name in zip(ids, names, strict=True):
            d = folder / name
            d.mkdir(parents=True)
            for start in range(0, images_per_model, BATCH):
                batch = crops[start:start + BATCH].to(device)
                ids_t = torch.full((len(batch),), int(mid), dtype=torch.long, device=device)
                outs = pool.apply(ids_t, batch, device).float().clamp(0, 1).cpu()
                for j, img in enumerate(outs):
                    save_png(img, d / f"img_{start + j:04d}.png")
                if on_images:
                    on_images(len(batch))
    manifest.write_text(json.dumps({"key": key, **meta, "crops": used}, indent=2))
    return folder, {"synthetic_benchmark": {**meta, "reused": False}}
