"""fp32 vs bf16 autocast, with and without channels_last, for the three heavy loops of fpt.

For each of (1) an extractor training step (ResNet on 128 px spectra, CE + triplet), (2) a
synthetic auto-encoder training step and (3) embedding crops with the shipped extractor, the
script times fp32, fp32 + channels_last, bf16 autocast and bf16 autocast + channels_last in the
same process and prints images/s and the ratio to plain fp32. For embedding it also prints the
worst 1 - cosine between bf16 and fp32 embeddings of the same crops (the numerical check that
decides whether bf16 may be used for embeddings). Last line: what ``--precision auto`` picks
on this machine (``fpforensics.device.resolve_precision``).

    python benchmarks/bench_precision.py --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from fpforensics.device import autocast, bf16_is_fast, resolve_precision
from fpforensics.extractor.losses import batch_hard_triplet
from fpforensics.extractor.network import FingerprintNet
from fpforensics.synthesis.architectures import ArchitectureSpec, build_autoencoder

VARIANTS = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))


def timed(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def layout(x: torch.Tensor, cl: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)


def bench_extractor_step(args, device) -> list[tuple[str, float]]:
    rows = []
    for precision, cl in VARIANTS:
        torch.manual_seed(0)
        net = FingerprintNet(args.backbone, 128, num_classes=64).to(device)
        if cl:
            net = net.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        x = layout(torch.randn(args.batch, 3, 128, 128, device=device), cl)
        y = torch.arange(args.batch, device=device) % (args.batch // 4)

        def step(net=net, opt=opt, x=x, y=y, precision=precision):
            with autocast(device, precision):
                emb, logits = net(x)
            loss = F.cross_entropy(logits.float(), y) + batch_hard_triplet(emb.float(), y, 0.3).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        sec = timed(step, 1, args.repeats)
        rows.append((f"{precision}{' + channels_last' if cl else ''}", args.batch / sec))
    return rows


def bench_synthesis_step(args, device, crop: int) -> list[tuple[str, float]]:
    rows = []
    spec = ArchitectureSpec.from_code(args.arch)
    for precision, cl in VARIANTS:
        model = build_autoencoder(spec, 0).to(device).train()
        if cl:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = layout(torch.rand(8, 3, crop, crop, device=device), cl)

        def step(model=model, opt=opt, x=x, precision=precision):
            with autocast(device, precision):
                out = model(x)
            loss = (out.float() - x).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        sec = timed(step, 2, args.repeats * 3)
        rows.append((f"{precision}{' + channels_last' if cl else ''}", 8 / sec))
    return rows


@torch.no_grad()
def bench_embedding(args, device, ext) -> tuple[list[tuple[str, float]], float]:
    crops = torch.rand(args.batch, 3, 128, 128, device=device)
    ref = F.normalize(ext.embed_crops(crops).float(), dim=1)
    rows, worst = [], 0.0
    for precision, cl in VARIANTS:
        # The whole extractor, not one network: a fused extractor holds several.
        ext.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        x = layout(crops, cl)

        def run(x=x, precision=precision):
            with autocast(device, precision):
                return ext.embed_crops(x)

        sec = timed(run, 1, args.repeats)
        emb = F.normalize(run().float(), dim=1)
        worst = max(worst, float((1 - (emb * ref).sum(1)).max()))
        rows.append((f"{precision}{' + channels_last' if cl else ''}", args.batch / sec))
        ext.to(memory_format=torch.contiguous_format)
    return rows, worst


def show(title: str, rows: list[tuple[str, float]]) -> None:
    base = rows[0][1]
    print(f"\n{title}")
    print("| variant | images/s | vs fp32 |\n|---|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:.1f} | {rate / base:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--extractor", default="default", help="extractor to embed with (name or checkpoint)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--arch", default="K2L1UnArNbSo", help="synthetic architecture code")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--parts", default="train,synthesis,embed",
                    help="which loops to time, comma-separated (train, synthesis, embed)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ext = None
    if "embed" in parts:  # load first: a bad --extractor is a one-line error before any timing
        from fpforensics.errors import FptError
        from fpforensics.extractor import load_extractor

        try:
            ext = load_extractor(args.extractor, device)
        except FptError as exc:
            sys.exit(f"error: {exc}")
    print(f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16: {bf16_is_fast(device)}")
    if "train" in parts:
        show(f"extractor training step ({args.backbone}, batch {args.batch}, 128 px)",
             bench_extractor_step(args, device))
    if "synthesis" in parts:
        for crop in (128, 64):
            show(f"synthetic auto-encoder training step ({args.arch}, batch 8, {crop} px)",
                 bench_synthesis_step(args, device, crop))
    if "embed" in parts:
        rows, worst = bench_embedding(args, device, ext)
        show(f"embedding with the extractor {args.extractor} (batch {args.batch} crops)", rows)
        print(f"\nbf16 vs fp32 embeddings: worst 1 - cosine = {worst:.2e}")
    print(f"--precision auto on this machine: {resolve_precision('auto', device)}")


if __name__ == "__main__":
    main()
