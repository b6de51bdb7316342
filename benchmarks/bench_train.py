"""Extractor training throughput, and where the time goes.

One training step = synthetic models (pool.apply) -> augmentation -> residual + spectrum ->
backbone forward/backward. This script times each stage over a few steps of the real training
code (:func:`fingerprinted_spectra`, :func:`train_step`) and prints images/s and the share of
each stage. It also compares applying the synthetic models batched over models (each model runs
once on all its images of the batch, what training does) with the naive way (one forward per
image, as a reference implementation that draws one model per image does) and prints the ratio.

Usage (CPU here; on a GPU machine pass --device cuda and the paper's batch):

    python benchmarks/bench_train.py --device cpu --backbone resnet18 --p 4 --k 4 --steps 3
    python benchmarks/bench_train.py --device cuda --backbone resnet50 --p 50 --k 4 --steps 20

``--pool PATH`` uses a pool file from ``fpt synthesize``; without it, untrained synthetic models
of a few architectures are built in memory (same architectures, same cost per forward).
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch

from fpforensics.extractor.batches import StepTimer, fingerprinted_spectra
from fpforensics.extractor.config import ExtractorConfig
from fpforensics.extractor.network import FingerprintNet
from fpforensics.extractor.training import train_step
from fpforensics.perturbations import Augmenter
from fpforensics.residual.dncnn import DnCNN, DnCNNResidual
from fpforensics.residual.median import MedianResidual
from fpforensics.synthesis.architectures import all_architectures, build_autoencoder


class InMemoryPool:
    """Pool-contract stand-in: untrained models; apply runs each model once on its images."""

    def __init__(self, n_models: int, device: torch.device) -> None:
        archs = all_architectures()
        step = max(1, len(archs) // n_models)
        self.entries = [SimpleNamespace(arch=archs[(i * step) % len(archs)], seed=i // len(archs))
                        for i in range(n_models)]
        self.modules = [build_autoencoder(e.arch, e.seed).eval().to(device) for e in self.entries]
        self.fingerprint = "in-memory"

    @torch.no_grad()
    def apply(self, ids: torch.Tensor, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        images = images.to(device)
        out = torch.empty_like(images)
        ids = ids.to(device)
        for m in ids.unique().tolist():
            mask = ids == m
            out[mask] = self.modules[m](images[mask]).clamp(0, 1)
        return out

    @torch.no_grad()
    def apply_naive(self, ids: torch.Tensor, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        images = images.to(device)
        return torch.cat([self.modules[int(m)](images[i:i + 1]).clamp(0, 1) for i, m in enumerate(ids.tolist())])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--p", type=int, default=4)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--models", type=int, default=24, help="in-memory models (without --pool)")
    ap.add_argument("--pool", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-augment", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.pool:
        from fpforensics.synthesis.pool import SyntheticPool

        pool = SyntheticPool.open(args.pool)
        naive = None
    else:
        pool = InMemoryPool(args.models, device)
        naive = pool.apply_naive
    n_models = len(pool.entries)
    batch = args.p * args.k
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, backbone {args.backbone}, "
          f"batch {args.p} x {args.k} = {batch}, {n_models} models, {args.steps} timed steps")

    # 1. synthetic models: batched over models vs one forward per image
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(n_models, (batch,), generator=gen)
    crops = torch.rand(batch, 3, 128, 128, generator=gen)
    pool.apply(ids, crops, device)  # warm-up
    if naive is not None:
        naive(ids, crops, device)
        # P x K batches hold P models; the naive way costs the same whatever the grouping.
        pk_ids = torch.arange(args.p).repeat_interleave(args.k) % n_models
        t = time.perf_counter()
        for _ in range(args.steps):
            naive(pk_ids, crops, device)
        sync(device)
        t_naive = (time.perf_counter() - t) / args.steps
        t = time.perf_counter()
        for _ in range(args.steps):
            pool.apply(pk_ids, crops, device)
        sync(device)
        t_batched = (time.perf_counter() - t) / args.steps
        print(f"synthetic forward per batch: naive (one image at a time) {t_naive * 1000:.1f} ms, "
              f"batched over models {t_batched * 1000:.1f} ms, speed-up x{t_naive / t_batched:.2f}")

    # 2. full training steps, per stage, for both residuals
    for res_name in ("median", "dncnn"):
        residual = (MedianResidual() if res_name == "median" else DnCNNResidual(DnCNN(), "dncnn:random")).to(device)
        residual.eval()
        cfg = ExtractorConfig(backbone=args.backbone, p=args.p, k=args.k, lr=1e-4)
        torch.manual_seed(0)
        net = FingerprintNet(args.backbone, 512, num_classes=n_models).to(device)
        if device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)
        augmenter = None if args.no_augment else Augmenter(seed=0)
        timer = StepTimer(device, enabled=True)
        labels = torch.arange(args.p).repeat_interleave(args.k) % n_models
        for i in range(args.steps + 1):
            if i == 1:  # first step is warm-up
                timer.seconds.clear()
                t0 = time.perf_counter()
            timer.start()
            spec = fingerprinted_spectra(pool, labels, crops, residual, device, augmenter, timer)
            train_step(net, opt, spec, labels.to(device), cfg, device, timer)
        sync(device)
        total = time.perf_counter() - t0
        shares = ", ".join(f"{k} {v / total:.0%}" for k, v in timer.seconds.items())
        print(f"residual {res_name:6s}: {batch * args.steps / total:7.1f} images/s "
              f"({total / args.steps * 1000:.0f} ms/step); time: {shares}")


if __name__ == "__main__":
    main()
