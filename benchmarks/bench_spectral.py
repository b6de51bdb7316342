"""Residual + radial spectrum throughput: sorting-network median vs the naive unfold+torch.median.

Usage: python benchmarks/bench_spectral.py [--batch 64] [--repeats 5] [--device cpu]
Both ways run in the same process on the same tensors; the ratio is what to read.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from fpforensics.device import resolve_device
from fpforensics.residual.median import median3x3
from fpforensics.spectrum import radial_log_power


def naive_median3x3(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    patches = F.unfold(F.pad(x, (1, 1, 1, 1), mode="reflect").reshape(b * c, 1, h + 2, w + 2), 3)
    return patches.median(dim=1).values.reshape(b, c, h, w)


def best_of(fn, x: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        if x.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    x = torch.rand(args.batch, 3, 128, 128, device=device)
    assert torch.equal(median3x3(x), naive_median3x3(x))
    naive = best_of(lambda t: radial_log_power(t - naive_median3x3(t)), x, args.repeats)
    fast = best_of(lambda t: radial_log_power(t - median3x3(t)), x, args.repeats)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, device {device}, "
          f"threads {torch.get_num_threads()}, batch {args.batch}x3x128x128, best of {args.repeats}")
    print(f"naive  (unfold + torch.median): {args.batch / naive:8.1f} crops/s")
    print(f"fpt    (sorting network)      : {args.batch / fast:8.1f} crops/s")
    print(f"ratio: {naive / fast:.1f}x")


if __name__ == "__main__":
    main()
