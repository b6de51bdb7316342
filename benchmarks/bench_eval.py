"""`fpt eval` speed: embedding cache (cold vs warm re-run) and single-threaded t-SNE.

Usage: python benchmarks/bench_eval.py [DATASET] [--models 6] [--images 12]

1. Cold run of the report (numbers only) vs the same report re-run with other protocol
   settings: the warm run reads every embedding from OUT/cache and only recomputes metrics.
   The naive way (no cache) costs the cold time again on every re-run.
2. t-SNE of 1000 points with sklearn's default OpenMP threads vs one thread (what figures.py
   does), on this machine as it is (shared cores make the default spin).
3. All protocol metrics (2 repeats of each protocol, 4000 pairs) on 72 x 3072-d embeddings with
   the default BLAS threads vs one thread (what report.py does).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", nargs="?", default="/work/shared/data/generated")
    ap.add_argument("--models", type=int, default=6)
    ap.add_argument("--images", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from fpforensics.evaluation.dataset import EvalDataset, EvalSettings
    from fpforensics.evaluation.run import resolve_extractors, run_report
    from fpforensics.perturbations import parse_perturbations

    tmp = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    try:
        data = tmp / "data"
        for sub in sorted(p for p in Path(args.dataset).iterdir() if p.is_dir())[: args.models]:
            (data / sub.name).mkdir(parents=True)
            for f in sorted(sub.iterdir())[: args.images]:
                (data / sub.name / f.name).symlink_to(f.resolve())
        settings = EvalSettings(shots=5, repeats=2, pairs=2000, perturbations=parse_perturbations(["jpeg:90"]),
                                figures=False)
        ds = EvalDataset.from_folder(data, settings)
        ext = resolve_extractors([], "cpu")
        t0 = time.perf_counter()
        run_report(ds, ext, settings, tmp / "out", "cpu")
        cold = time.perf_counter() - t0
        settings.repeats, settings.pairs = 3, 4000
        t0 = time.perf_counter()
        warm_report = run_report(ds, ext, settings, tmp / "out", "cpu").report
        warm = time.perf_counter() - t0
        assert warm_report["cache"]["computed"] == 0
        print(f"report, {len(ds.names)} models x {args.images} images, 2 extractors x 2 perturbations:")
        print(f"  cold (naive, every run): {cold:7.2f} s")
        print(f"  warm (cached embeddings): {warm:7.2f} s   speed-up x{cold / warm:.1f}")
        print(f"  warm run breakdown (s): {warm_report['timing_s']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.random.default_rng(0).normal(size=(1000, 64)).astype(np.float32)

    def compare_threads(title: str, work, fast_where: str) -> None:
        """Time ``work`` with the default thread pools, then with one thread (what fpt uses there)."""
        t = time.perf_counter()
        work()
        default = time.perf_counter() - t
        with threadpool_limits(limits=1):
            t = time.perf_counter()
            work()
            single = time.perf_counter() - t
        print(f"{title}:")
        print(f"  {'default threads:':<26}{default:7.2f} s")
        print(f"  {f'one thread ({fast_where}):':<26}{single:7.2f} s   speed-up x{default / single:.1f}")

    compare_threads("t-SNE, 1000 points x 64-d, 500 iterations", lambda: TSNE(
        perplexity=30, init="pca", metric="cosine", random_state=0, max_iter=500).fit_transform(x), "figures.py")

    import fpforensics.gallery.calibration  # noqa: F401  (imported once, outside the timing)
    from fpforensics.evaluation import protocols as P

    emb = np.random.default_rng(0).normal(size=(72, 3072)).astype(np.float32)
    lab = np.repeat(np.arange(6), 12)

    def metrics() -> None:
        for _ in range(2):
            P.identification(emb, lab, 5, 3)
            P.verification(emb, lab, 4000, 3)
            P.embedding_quality(emb, lab)
            P.open_set(emb, lab, 5, 3)

    compare_threads("protocol metrics, 72 x 3072-d embeddings", metrics, "evaluation/run.py")


if __name__ == "__main__":
    main()
