"""Gallery at scale: ``gallery add`` and ``identify`` with 10, 10^3 and 10^5 enrolled models, v2 against v1, same run.

* v2 (fpt now): a SQLite store; ``add`` appends the model's rows and one index block, and
  recalibrates the threshold (from a bounded sample) once 1% of the models changed: the table
  shows a plain add, a recalibration, and their amortized sum; ``identify`` reads the index
  blocks only and ranks with the exact index (one matrix product).
* v1 (the old way, same machine, same data): an HDF5 file rewritten whole by every ``add``
  (read everything, append, recalibrate on every image, write a temp file, rename); ``identify``
  reads every stored image embedding to get at the fingerprints.

Galleries are filled with random unit fingerprints (``--images`` per model, ``--dim``-d): the
cost does not depend on the values. Each timing is the best of ``--repeats`` runs (the machine is
shared; the minimum is the least disturbed), and every ``add`` enrolls one more model.

Usage: ``python benchmarks/bench_gallery.py [--sizes 10,1000,100000] [--images 4] [--dim 128]``
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from fpforensics.gallery import Gallery
from fpforensics.gallery.calibration import calibrate_threshold
from fpforensics.gallery.gallery import RECALIBRATE_SHARE, finish_change
from fpforensics.gallery.legacy import GalleryData, read_gallery_file, write_gallery_file
from fpforensics.gallery.store import GalleryStore
from fpforensics.io.store import file_lock, utc_now
from fpforensics.metrics import l2_normalize
from fpforensics.verdict.match import identify

NOW = "2026-01-01T00:00:00+00:00"


def random_models(m: int, k: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    emb = l2_normalize(np.random.default_rng(seed).standard_normal((m * k, dim)), dtype=np.float32)
    fps = l2_normalize(emb.reshape(m, k, dim).mean(axis=1))
    return emb, fps


def build_v2(path: Path, m: int, k: int, dim: int) -> None:
    emb, fps = random_models(m, k, dim)
    GalleryStore.create(path)
    store = GalleryStore.open(path)
    with store.transaction():
        meta = store.meta()
        meta.extractor, meta.dim = "bench", dim
        for i in range(m):
            rows = emb[i * k:(i + 1) * k]
            mid = store.insert_model(f"m{i}", NOW, NOW, "bench", 3, k, rows.astype(np.float64).sum(0))
            store.insert_images(mid, rows, [f"/data/m{i}/{j}.png" for j in range(k)], NOW)
        finish_change(store, meta, NOW)
    store.close()


def build_v1(path: Path, m: int, k: int, dim: int) -> None:
    emb, fps = random_models(m, k, dim)
    write_gallery_file(path, GalleryData(
        extractor="bench", dim=dim, names=[f"m{i}" for i in range(m)], fingerprints=fps, created=[NOW] * m,
        updated=[NOW] * m, tool_versions=["bench"] * m, grids=[3] * m, embeddings=emb,
        image_model=np.repeat(np.arange(m, dtype=np.int32), k),
        image_paths=[f"/data/m{i}/{j}.png" for i in range(m) for j in range(k)], image_added=[NOW] * (m * k),
        threshold=0.5, threshold_source="calibrated", file_created=NOW, file_updated=NOW))


def add_v1(path: Path, name: str, emb: np.ndarray) -> None:
    """What `gallery add` did in format v1: lock, read the whole file, append, recalibrate, rewrite."""
    with file_lock(path):
        d = read_gallery_file(path)
        d.names.append(name)
        now = utc_now()
        d.created.append(now)
        d.updated.append(now)
        d.tool_versions.append("bench")
        d.grids.append(3)
        d.fingerprints = np.vstack([d.fingerprints, l2_normalize(emb.mean(axis=0))[None]])
        d.embeddings = np.vstack([d.embeddings, emb])
        d.image_model = np.concatenate([d.image_model, np.full(len(emb), len(d.names) - 1, np.int32)])
        d.image_paths += [f"/new/{name}/{j}.png" for j in range(len(emb))]
        d.image_added += [now] * len(emb)
        cal = calibrate_threshold(d.embeddings, d.image_model, d.fingerprints)
        d.threshold, d.threshold_source, d.threshold_info = cal.threshold, cal.source, cal.info
        write_gallery_file(path, d)


def identify_v1(path: Path, queries: np.ndarray, top_k: int):
    d = read_gallery_file(path)  # every image embedding comes along with the fingerprints
    return identify(queries, (d.names, d.fingerprints), top_k=top_k, threshold=d.threshold)


def identify_v2(path: Path, queries: np.ndarray, top_k: int):
    return identify(queries, Gallery.open(path), top_k=top_k)


def best_of(repeats: int, fn, *args) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best


def measure(work: Path, m: int, k: int, dim: int, n_queries: int, repeats: int, rng: np.random.Generator) -> str:
    """One row of the table: both formats filled with the same models, identify first, then add."""
    v1, v2 = work / f"v1-{m}.h5", work / f"v2-{m}.h5"
    build_v1(v1, m, k, dim)
    build_v2(v2, m, k, dim)
    sizes = f"{v1.stat().st_size / 1e6:.1f} / {v2.stat().st_size / 1e6:.1f}"
    q = l2_normalize(rng.standard_normal((n_queries, dim)), dtype=np.float32)
    id1, id2 = best_of(repeats, identify_v1, v1, q, 5), best_of(repeats, identify_v2, v2, q, 5)
    a, b = identify_v1(v1, q, 5), identify_v2(v2, q, 5)
    same = [a.names[j] for j in a.indices[0]] == [b.names[j] for j in b.indices[0]]
    new = l2_normalize(rng.standard_normal((k, dim)), dtype=np.float32)
    names = (f"new{i}" for i in range(10**9))
    add1 = best_of(repeats, lambda: add_v1(v1, next(names), new))
    add2 = best_of(repeats, lambda: Gallery(v2).enroll(next(names), new, ["/new.png"] * k, "bench"))
    recal = best_of(1, lambda: Gallery(v2).calibrate())
    every = RECALIBRATE_SHARE * m  # changes per recalibration; below 1 every add recalibrates (and add2 includes it)
    amortized = add2 if every <= 1 else add2 + recal / every
    v1.unlink()
    v2.unlink()
    return (f"| {m:,} | {sizes} | {add1:.3f} | {add2:.3f} | {recal:.3f} | {amortized:.3f} | {add1 / amortized:.0f}x | "
            f"{id1:.3f} | {id2:.3f} | {id1 / id2:.0f}x | {'yes' if same else 'NO'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,1000,100000")
    ap.add_argument("--images", type=int, default=4, help="Enrolled images per model.")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1, help="Images identified per `identify` call.")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    work = Path(tempfile.mkdtemp(prefix="bench_gallery_", dir=args.workdir))
    print(f"# bench_gallery: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy "
          f"{np.__version__}, 1 BLAS thread; {args.images} images x {args.dim}-d per model, "
          f"{args.queries} query per identify, best of {args.repeats}")
    print("| models | file v1 / v2 (MB) | add v1 (s) | add v2 (s) | v2 recalibration (s) | add v2 amortized (s) "
          "| add speed-up | identify v1 (s) | identify v2 (s) | identify speed-up | same ranking |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    rng = np.random.default_rng(1)
    try:
        for m in (int(s) for s in args.sizes.split(",")):
            repeats = args.repeats if m <= 10_000 else max(1, args.repeats - 1)
            print(measure(work, m, args.images, args.dim, args.queries, repeats, rng), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
