"""Training the fingerprint extractor on synthetic models (METHOD 1.3, ``fpt train extractor``).

One step:

1. a :class:`PKSampler` draws P training models x K real-image indices;
2. a random 128x128 crop of each real image (photos decoded once, kept in memory as uint8);
3. ``pool.apply`` passes each crop through its synthetic model, batched over models;
4. the output is rounded to 8 bits (every real generated image is saved that way), then optional
   augmentation (random resized crop, resize with a random factor and kernel, JPEG at a random
   quality) *after* the synthetic model, as an image shared on social media would be. With
   ``lowres_p`` a batch is generated small instead (the real crop is downscaled to 64-112 px,
   the synthetic model runs at that size) and brought up to 128 with the inference path for small
   images (bicubic), which is what every generator below 128 px goes through at identification;
5. residual (``--denoiser``) -> log-magnitude spectrum -> ResNet -> embedding + classifier;
6. loss = cross-entropy over training models + batch-hard triplet (margin 0.3) on the embedding.

Zero-shot validation: whole architectures and the last seeds of the others are held out of
training; every epoch, each held-out model turns the same fixed crops of held-out real photos
into images, a 10-shot gallery (mean of 10 embeddings per model) is built and the remaining
images are identified against it. Because every held-out model sees the same crops, content
cannot help: only the model's fingerprint can. Accuracy is reported overall, for unseen
architectures and for unseen seeds of seen architectures.

Every epoch the output checkpoint is rewritten (atomically) with the optimizer and scheduler
state; ``resume=True`` continues from it, with the same random draws as an uninterrupted run
(every random stream is re-seeded from (seed, epoch, rank)). The final file drops the
optimizer state and the classifier head, optionally stores fp16 weights.

Multi-GPU / multi-node: launched by ``torchrun`` (``WORLD_SIZE`` > 1), each process trains on
its own P x K batch under DistributedDataParallel; rank 0 validates, logs and saves.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from fpforensics.checkpoints import check_checkpoint_output, load_checkpoint, save_checkpoint
from fpforensics.device import autocast, resolve_precision
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.extractor.batches import (
    CROP,
    REAL_ID,
    RealCrops,
    StepTimer,
    draw_lowres,
    fingerprinted_spectra,
    make_augmenter,
)
from fpforensics.extractor.config import ExtractorConfig
from fpforensics.extractor.losses import batch_hard_triplet
from fpforensics.extractor.network import (
    INPUT_TRANSFORM,
    FingerprintNet,
    load_backbone_init,
    read_init_weights,
)
from fpforensics.extractor.sampler import PKSampler
from fpforensics.extractor.trained import identity_of_state
from fpforensics.extractor.validation import ModelSplit, check_init_keeps_zero_shot, split_models, zero_shot_validation
from fpforensics.images.real import load_photos
from fpforensics.residual import build_residual, residual_to_payload
from fpforensics.residual.base import ResidualExtractor
from fpforensics.synthesis.pool import open_pool

# Settings a resumed run must share with the run it continues.
_RESUME_KEYS = ("backbone", "embedding_dim", "epochs", "steps_per_epoch", "p", "k", "lr", "weight_decay",
                "warmup_fraction", "holdout_archs", "holdout_seeds", "max_train_models", "max_val_models", "seed",
                "residual", "augment", "jpeg_p", "jpeg_min_quality", "crop_p", "resize_p", "lowres_p", "quantize",
                "real_class")


# ------------------------------------------------------------------------------------ the step


def train_step(model: nn.Module, opt: torch.optim.Optimizer, spec: torch.Tensor, labels: torch.Tensor,
               cfg: ExtractorConfig, device: torch.device, timer: StepTimer | None = None,
               precision: str = "fp32") -> dict[str, float]:
    """One optimisation step on spectra; returns the numbers that are logged.

    channels_last is a memory layout only; its speed-up depends on the CPU (docs/benchmarks.md);
    ``precision`` ``bf16`` runs the network under autocast, losses in fp32.
    """
    spec = spec.contiguous(memory_format=torch.channels_last)
    with autocast(device, precision):
        emb, logits = model(spec)
    ce = F.cross_entropy(logits.float(), labels)
    trip = batch_hard_triplet(emb.float(), labels, cfg.margin)
    loss = ce + cfg.triplet_weight * trip.loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if timer is not None:
        timer.lap("backbone")
    value = float(loss.detach())
    if not math.isfinite(value):
        raise InputError(f"training diverged (loss {value}); try a smaller --lr")
    return {"loss": value, "ce": float(ce.detach()), "triplet": float(trip.loss.detach()),
            "valid_triplets": trip.valid_fraction, "active_triplets": trip.active_fraction,
            "train_acc": float((logits.argmax(1) == labels).float().mean())}



# ------------------------------------------------------------------------------------- training


@dataclass
class TrainCallbacks:
    on_start: Callable[[int, int], None] | None = None  # (total_steps, done_steps)
    on_step: Callable[[int, dict[str, float]], None] | None = None
    on_epoch: Callable[[dict[str, Any]], None] | None = None
    on_skip: Callable[[Path, str], None] | None = None
    warn: Callable[[str], None] | None = None


@dataclass
class TrainResult:
    path: Path
    epochs: int
    identity: str
    history: list[dict[str, Any]]
    log_path: Path | None

    def to_dict(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        first = self.history[0] if self.history and self.history[0].get("epoch") == 0 else {}
        return {"path": str(self.path), "epochs": self.epochs, "identity": self.identity,
                "log": str(self.log_path) if self.log_path else None, "val_acc_untrained": first.get("val_acc"),
                **{k: last.get(k) for k in ("loss", "val_acc", "val_acc_unseen_arch", "val_acc_unseen_seed",
                                             "val_chance", "valid_triplets", "images_per_s")}}


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def checkpoint_payload(net: FingerprintNet, residual: ResidualExtractor, cfg: ExtractorConfig, pool, split: ModelSplit,
                       epoch: int, history: list[dict[str, Any]], complete: bool,
                       train_state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to rebuild the extractor (and, with ``train_state``, to resume training)."""
    if complete:
        state = net.inference_state_dict()
        if cfg.half_weights:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    else:
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    payload: dict[str, Any] = {
        "state_dict": state, "backbone": cfg.backbone, "embedding_dim": net.embedding_dim,
        "projection": cfg.embedding_dim > 0, "input_transform": INPUT_TRANSFORM, "crop_size": CROP,
        "residual": residual_to_payload(residual), "pool_fingerprint": str(pool.fingerprint),
        "train_model_ids": list(split.train), "heldout_model_ids": list(split.val),
        "heldout_groups": list(split.val_group), "heldout_archs": list(split.holdout_archs),
        "heldout_seeds": list(split.holdout_seeds), "seen_archs": list(split.seen_archs),
        "config": asdict(cfg), "epoch": epoch, "complete": complete,
        "history": history, "identity": identity_of_state(cfg.backbone, state, residual.identity),
    }
    if train_state:
        payload.update(train_state)
    return payload


def train_extractor(
    pool_path: Any,
    real_paths: Sequence[Path],
    out: str | Path,
    cfg: ExtractorConfig | None = None,
    device: torch.device | str = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    init: str | Path | None = None,
    log_path: str | Path | None = None,
    callbacks: TrainCallbacks | None = None,
    precision: str = "auto",
    calibrate: bool = True,
) -> TrainResult:
    """Train an extractor and write it to ``out`` (kind ``extractor``); see the module docstring.

    ``calibrate``: at the end, store the operating points fitted on the run's held-out validation
    models and real photos in the checkpoint (:func:`fpforensics.verdict.calibrate.calibrate_after_training`).
    """
    cfg = cfg or ExtractorConfig()
    cfg.validate()
    cb = callbacks or TrainCallbacks()
    out = Path(out)
    rank, world, local_rank = _dist_info()
    device = torch.device(device)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main = rank == 0
    log_path = Path(log_path) if log_path else out.with_suffix(".jsonl")
    if main:
        check_checkpoint_output(out, "extractor", resume, overwrite, log=log_path)
    init_weights = read_init_weights(init) if init is not None else None  # a bad --init fails before any work

    pool = open_pool(pool_path)
    split = split_models(pool.entries, cfg, warn=cb.warn if main else None)
    photos = load_photos(real_paths, CROP, on_skip=cb.on_skip if main else None)
    if len(photos) < 2:
        raise InputError(f"need at least 2 readable real photos (some are held out for validation), got {len(photos)}")
    order = torch.randperm(len(photos), generator=torch.Generator().manual_seed(cfg.seed + 3)).tolist()
    n_val = min(len(photos) - 1, max(1, round(len(photos) * cfg.val_real_fraction)))
    train_real = RealCrops([photos[i] for i in order[n_val:]])
    val_real = RealCrops([photos[i] for i in order[:n_val]])
    vgen = torch.Generator().manual_seed(cfg.seed + 5)
    n_val_crops = cfg.val_shots + cfg.val_queries
    val_crops = val_real.crops(torch.randint(len(val_real), (n_val_crops,), generator=vgen).tolist(), vgen)

    residual = build_residual(cfg.residual).to(device).eval()
    torch.manual_seed(cfg.seed)
    net = FingerprintNet(cfg.backbone, cfg.embedding_dim, num_classes=len(split.train) + int(cfg.real_class))
    if init_weights is not None:
        check_init_keeps_zero_shot(init_weights, split, warn=cb.warn if main else None)
        load_backbone_init(net, init_weights)
    net = net.to(device).to(memory_format=torch.channels_last)
    precision = resolve_precision(precision, device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    p_eff = min(cfg.p, len(split.train))
    steps_per_epoch = cfg.steps_per_epoch or math.ceil(len(split.train) / p_eff)
    total = steps_per_epoch * cfg.epochs
    warmup = max(1, round(cfg.warmup_fraction * total)) if cfg.warmup_fraction > 0 else 0
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, warmup))

    start_epoch, history = 0, []
    if resume and out.exists():
        state = load_checkpoint(out, kind="extractor")
        if state.get("pool_fingerprint") != str(pool.fingerprint):
            raise IncompatibleError(f"{out}: was trained on another pool (fingerprint {state.get('pool_fingerprint')}, "
                                    f"this pool {pool.fingerprint})")
        if state.get("complete"):
            raise InputError(f"{out}: training already complete ({state.get('epoch')} epochs); nothing to resume")
        if "optimizer" not in state:
            raise InputError(f"{out}: has no optimizer state, cannot resume")
        saved = state.get("config", {})
        for key in _RESUME_KEYS:
            if key in saved and saved[key] != getattr(cfg, key):
                raise IncompatibleError(f"{out}: was started with {key}={saved[key]!r}, now {getattr(cfg, key)!r}; "
                                        "use the same settings to resume")
        try:
            net.load_state_dict(state["state_dict"])
        except RuntimeError as exc:
            raise IncompatibleError(f"{out}: weights do not fit ({str(exc).splitlines()[0][:120]})") from None
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, history = int(state["epoch"]), list(state.get("history", []))
        split.seen_archs = sorted(set(split.seen_archs) | set(state.get("seen_archs", [])))
    if main and start_epoch == 0:
        # Epoch 0: the untrained network's zero-shot accuracy, the baseline training must beat.
        history = [{"epoch": 0, "step": 0, **zero_shot_validation(net, residual, pool, split, val_crops,
                                                                   cfg.val_shots, device, precision=precision,
                                                                   to_8bit=cfg.quantize), "time": time.time()}]
        if cb.on_epoch:
            cb.on_epoch(history[0])
    if main:  # the log always matches the checkpoint: epochs after the last checkpoint are re-run
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")

    model: nn.Module = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    augmenter = make_augmenter(cfg)
    pool_ids = torch.tensor(split.train + ([REAL_ID] if cfg.real_class else []), dtype=torch.long)
    if main and cb.on_start:
        cb.on_start(total, start_epoch * steps_per_epoch)

    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        epoch_seed = (cfg.seed * 1_000_003 + epoch) * 1009 + rank
        gen = torch.Generator().manual_seed(epoch_seed)
        sampler = PKSampler(len(split.train), len(train_real), cfg.p - int(cfg.real_class), cfg.k, gen)
        if augmenter is not None:
            augmenter.reseed(epoch_seed)
        net.train()
        sums: dict[str, float] = {}
        t0, n_images = time.perf_counter(), 0
        for _ in range(steps_per_epoch):
            labels, img_idx = sampler.next_batch()
            if cfg.real_class:  # the real class is in every batch: K photos through no synthetic model
                labels = torch.cat([labels, torch.full((cfg.k,), len(split.train), dtype=torch.long)])
                img_idx = torch.cat([img_idx, torch.randint(len(train_real), (cfg.k,), generator=gen)])
            crops = train_real.crops(img_idx.tolist(), gen)
            spec = fingerprinted_spectra(pool, pool_ids[labels], crops, residual, device, augmenter,
                                         lowres=draw_lowres(cfg, gen), to_8bit=cfg.quantize)
            stats = train_step(model, opt, spec, labels.to(device), cfg, device, precision=precision)
            sched.step()
            step += 1
            n_images += len(labels)
            stats["lr"] = opt.param_groups[0]["lr"]
            stats["images_per_s"] = n_images * world / max(1e-9, time.perf_counter() - t0)
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            if main and cb.on_step:
                cb.on_step(step, stats)
        record: dict[str, Any] = {"epoch": epoch, "step": step,
                                  **{k: v / steps_per_epoch for k, v in sums.items() if k not in ("lr", "images_per_s")},
                                  "lr": opt.param_groups[0]["lr"],
                                  "images_per_s": n_images * world / max(1e-9, time.perf_counter() - t0)}
        if main:
            record.update(zero_shot_validation(net, residual, pool, split, val_crops, cfg.val_shots, device,
                                               precision=precision, to_8bit=cfg.quantize))
            record["time"] = time.time()
            history.append(record)
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            last = epoch == cfg.epochs
            train_state = None if last else {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
            save_checkpoint(checkpoint_payload(net, residual, cfg, pool, split, epoch, history, complete=last,
                                               train_state=train_state), out, kind="extractor")
            if cb.on_epoch:
                cb.on_epoch(record)
        if world > 1:
            import torch.distributed as dist

            dist.barrier()
    if main and calibrate:  # operating points for verify / identify, fitted on the held-out validation models
        from fpforensics.verdict.calibrate import calibrate_after_training

        calibrate_after_training(out, pool, real_paths, device, precision, warn=cb.warn)
    identity = str(load_checkpoint(out, kind="extractor")["identity"]) if main else ""
    return TrainResult(out, cfg.epochs, identity, history, log_path if main else None)
