"""Exact nearest-neighbour search of `fpt artifact`: chunked matrix products vs brute-force numpy.

For each real-set size N and feature dimension D (random float32 features), times
:func:`fpforensics.manifold.nearest_neighbors` on ``--queries`` generated features and the naive
reference (per query, a float64 ``sum((r - q)^2)`` scan of all N rows and ``argmin``; the scan goes
through the reference in blocks of 8192 rows so its float64 temporaries stay bounded, which changes
nothing in the work done) on the first ``--ref-queries`` of them, checks the answers agree, and prints
queries/s and the speed-up. ``--full`` also runs 100k real x 10k generated at D=2048 and reports the
process's peak memory.

    python benchmarks/bench_artifact.py                      # sizes 1e3,1e4,1e5 x dims 2048,12288
    python benchmarks/bench_artifact.py --sizes 1000,10000 --dims 2048 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
import torch

from fpforensics.manifpt.neighbors import nearest_neighbors


def brute_force(queries: np.ndarray, reference: np.ndarray, block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    index = np.empty(len(queries), np.int64)
    dist = np.empty(len(queries), np.float64)
    for i, q in enumerate(queries.astype(np.float64)):
        best, arg = np.inf, -1
        for r0 in range(0, len(reference), block):
            d = ((reference[r0:r0 + block].astype(np.float64) - q) ** 2).sum(axis=1)
            j = int(d.argmin())
            if d[j] < best:
                best, arg = float(d[j]), r0 + j
        index[i], dist[i] = arg, best
    return index, dist


def random_features(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, d), np.float32)
    for r0 in range(0, n, 8192):
        out[r0:r0 + 8192] = rng.standard_normal((min(8192, n - r0), d), dtype=np.float32)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--dims", default="2048,12288")
    ap.add_argument("--queries", type=int, default=1000, help="generated features searched by the chunked method")
    ap.add_argument("--ref-queries", type=int, default=10, help="of those, how many the brute-force reference runs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--full", action="store_true", help="also 100k real x 10k generated at D=2048")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {args.threads}, device {args.device}")
    print(f"{'N real':>8} {'D':>6} {'chunked q/s':>12} {'numpy q/s':>10} {'speed-up':>9} {'agree':>6}")
    rng = np.random.default_rng(0)
    for d in [int(v) for v in args.dims.split(",")]:
        for n in [int(v) for v in args.sizes.split(",")]:
            ref = random_features(n, d, rng)
            # Queries near real samples (as generated images near the manifold) plus fresh points.
            q = np.concatenate([ref[rng.integers(0, n, args.queries // 2)] +
                                0.3 * rng.standard_normal((args.queries // 2, d), dtype=np.float32),
                                rng.standard_normal((args.queries - args.queries // 2, d), dtype=np.float32)])
            q = q[rng.permutation(len(q))]
            t0 = time.perf_counter()
            idx, dist = nearest_neighbors(q, ref, device=args.device)
            t_chunk = time.perf_counter() - t0
            m = min(args.ref_queries, len(q))
            t0 = time.perf_counter()
            bidx, bdist = brute_force(q[:m], ref)
            t_brute = time.perf_counter() - t0
            agree = bool((idx[:m] == bidx).all() and np.allclose(dist[:m], bdist, rtol=1e-9))
            qs_chunk, qs_brute = len(q) / t_chunk, m / t_brute
            print(f"{n:>8} {d:>6} {qs_chunk:>12.1f} {qs_brute:>10.2f} {qs_chunk / qs_brute:>8.0f}x {agree!s:>6}",
                  flush=True)
            del ref, q
    if args.full:
        ref = random_features(100_000, 2048, rng)
        q = random_features(10_000, 2048, rng)
        t0 = time.perf_counter()
        nearest_neighbors(q, ref, device=args.device)
        took = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"full: 100000 real x 10000 generated, D=2048: {took:.1f} s ({10_000 / took:.0f} q/s), "
              f"peak RSS {peak:.0f} MiB (features alone: {(ref.nbytes + q.nbytes) / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
