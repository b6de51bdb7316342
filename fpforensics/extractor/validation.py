"""Zero-shot validation of the extractor: which pool models are held out, and how well they are told apart.

Whole architectures and the last seeds of the others are held out of training; every epoch each
held-out model turns the same fixed crops of held-out photos into images, a 10-shot gallery is
built and the other images are identified against it (content cannot help: every model sees the
same crops). The loop embeds in-memory tensors made on the fly, so it calls the extractor's
``embed_crops`` directly rather than the file-based embedding loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from fpforensics.device import autocast
from fpforensics.errors import InputError
from fpforensics.extractor.batches import fingerprinted_images
from fpforensics.extractor.network import FingerprintNet, InitWeights
from fpforensics.extractor.trained import TrainedExtractor
from fpforensics.metrics import l2_normalize
from fpforensics.residual.base import ResidualExtractor

if TYPE_CHECKING:
    from fpforensics.extractor.config import ExtractorConfig


@dataclass
class ModelSplit:
    """Pool indices used for training (label = position) and held out for zero-shot validation."""

    train: list[int]
    val: list[int]
    val_group: list[str]  # per val model: "arch" (unseen architecture) or "seed" (unseen seed)
    holdout_archs: list[str] = field(default_factory=list)
    holdout_seeds: list[int] = field(default_factory=list)
    seen_archs: list[str] = field(default_factory=list)  # architectures that trained the net (--init's too)


def split_models(entries: Sequence[Any], cfg: ExtractorConfig, warn: Callable[[str], None] | None = None) -> ModelSplit:
    """Hold out whole architectures and the last seeds of the others; see the module docstring."""
    from fpforensics.synthesis.architectures import parse_grid

    archs = sorted({e.arch for e in entries}, key=lambda a: a.index)
    gen = torch.Generator().manual_seed(cfg.seed + 17)
    expr = str(cfg.holdout_archs).strip()
    if expr.isdigit():
        n = int(expr)
        if n >= len(archs) and n > 0:
            raise InputError(f"--holdout-archs {n} leaves no training architecture (the pool has {len(archs)})")
        held_archs = {archs[i] for i in torch.randperm(len(archs), generator=gen)[:n].tolist()}
    else:
        held_archs = set(parse_grid(expr)) & set(archs)
        if not held_archs:
            raise InputError(f"--holdout-archs '{expr}' matches no architecture of the pool")
        if held_archs == set(archs):
            raise InputError(f"--holdout-archs '{expr}' holds out every architecture of the pool")
    seeds = sorted({int(e.seed) for e in entries if e.arch not in held_archs})
    n_seeds = cfg.holdout_seeds
    if n_seeds >= len(seeds) and n_seeds > 0:
        if warn:
            warn(f"the pool has {len(seeds)} seed(s) per architecture: none held out (--holdout-seeds {n_seeds})")
        n_seeds = 0
    held_seeds = set(seeds[len(seeds) - n_seeds:]) if n_seeds else set()
    train, val, group = [], [], []
    for i, e in enumerate(entries):
        if e.arch in held_archs:
            val.append(i)
            group.append("arch")
        elif int(e.seed) in held_seeds:
            val.append(i)
            group.append("seed")
        else:
            train.append(i)
    if cfg.max_train_models and len(train) > cfg.max_train_models:
        keep = sorted(torch.randperm(len(train), generator=gen)[: cfg.max_train_models].tolist())
        train = [train[i] for i in keep]
    if cfg.max_val_models and len(val) > cfg.max_val_models:
        keep = sorted(torch.randperm(len(val), generator=gen)[: cfg.max_val_models].tolist())
        val, group = [val[i] for i in keep], [group[i] for i in keep]
    if len(train) < 2:
        raise InputError(f"only {len(train)} training model(s) left after holding out models for validation; "
                         "use a bigger pool or hold out fewer (--holdout-archs/--holdout-seeds)")
    if len(val) < 2:
        raise InputError(f"{len(val)} held-out model(s): zero-shot validation needs at least 2 "
                         "(use --holdout-archs/--holdout-seeds)")
    seen = sorted({entries[i].arch.code for i in train})
    return ModelSplit(train, val, group, sorted(a.code for a in held_archs), sorted(held_seeds), seen)


def check_init_keeps_zero_shot(init: InitWeights, split: ModelSplit, warn: Callable[[str], None] | None = None) -> None:
    """A warm start must not have trained on the architectures held out now, else validation is not zero-shot.

    An fpt extractor given to ``--init`` records the architectures that trained it (``seen_archs``);
    an overlap with this run's held-out architectures is refused. Older checkpoints only record their
    held-out architectures: holding out a subset of those is safe, anything else gets a warning.
    Records the union in ``split.seen_archs``.
    """
    if init.checkpoint is None:
        return  # torchvision weights: never saw a synthetic model
    held = set(split.holdout_archs)
    seen = init.checkpoint.get("seen_archs")
    if seen is not None:
        overlap = sorted(held & set(seen))
        if overlap:
            raise InputError(
                f"--init {init.path} was trained on {len(overlap)} of the architectures held out now "
                f"({', '.join(overlap[:4])}{', ...' if len(overlap) > 4 else ''}); zero-shot validation would be "
                f"contaminated: hold out architectures it never saw (--holdout-archs with codes)")
        split.seen_archs = sorted(set(split.seen_archs) | set(seen))
        return
    init_held = set(init.checkpoint.get("heldout_archs") or [])
    if not held <= init_held and warn:
        warn(f"--init {init.path} does not record its training architectures; only its held-out ones "
             f"({len(init_held)}) are known to be unseen, so validation on the others may not be zero-shot")


@torch.no_grad()
def zero_shot_validation(net: FingerprintNet, residual: ResidualExtractor, pool, split: ModelSplit,
                         val_crops: torch.Tensor, shots: int, device: torch.device,
                         batch_size: int = 64, precision: str = "fp32", to_8bit: bool = True) -> dict[str, float]:
    """10-shot identification among held-out models (the honest generalization signal)."""
    was_training = net.training
    net.eval()
    ext = TrainedExtractor(net, residual, identity="validation")
    n_crops = val_crops.shape[0]
    embs = []
    for pid in split.val:
        rows = []
        for start in range(0, n_crops, batch_size):
            chunk = val_crops[start:start + batch_size]
            ids = torch.full((chunk.shape[0],), pid, dtype=torch.long)
            x = fingerprinted_images(pool, ids, chunk, device, to_8bit=to_8bit)
            with autocast(device, precision):
                rows.append(ext.embed_crops(x).float().cpu())
        embs.append(l2_normalize(torch.cat(rows)))
    net.train(was_training)
    emb = torch.stack(embs)  # (M, n_crops, D)
    gallery = l2_normalize(emb[:, :shots].mean(dim=1))  # (M, D)
    queries = emb[:, shots:]  # (M, Q, D)
    pred = (queries @ gallery.t()).argmax(dim=-1)  # (M, Q)
    truth = torch.arange(len(split.val))[:, None]
    hit = (pred == truth).float()
    result = {"val_acc": float(hit.mean()), "val_models": len(split.val), "val_chance": 1.0 / len(split.val)}
    for name in ("arch", "seed"):
        rows = [i for i, g in enumerate(split.val_group) if g == name]
        result[f"val_acc_unseen_{name}"] = float(hit[rows].mean()) if rows else None
    return result
