"""Real photographs are not a model: measure the open-set rule of an extractor's stored calibration.

A gallery of every generator of ``--generated`` (``--shots`` images each, seeded splits), then:

* **rejection**: the share of the held-out test photographs (``--photos``, never used to fit or
  calibrate anything) answered "unknown", overall and per folder;
* **acceptance**: the share of the generators' other images attributed to an enrolled model (not
  "unknown"), over all generators, over the calibration half (the first ``--calibration-models``
  folders in sorted order, which ``fpt calibrate --generators`` may have seen) and over the rest;
* **top-1** among the accepted images against top-1 over all of them (closed set);
* **AUROC** of photographs against generator images, by the rule's score and by the best cosine;
* the same rates **before**: the gallery's own open-set threshold (fitted on its enrolled
  images, the previous default) and no real-photo rule;
* the same rates with the **enrolled cut** (``fpt identify --photo-cut enrolled``: the rule's cut
  raised until ``--keep`` of each split's gallery images, scored without themselves, pass).

Run it again on a new extractor after ``fpt calibrate`` (or training, which calibrates at its end)::

    python scripts/measure_open_set.py -e NEW.pt --json open-set.json

Embeddings are cached in ``--cache`` (keyed by extractor, grid and the file list), so a re-run
with other settings only scores. ``--generated`` and ``--photos`` also take ``.h5`` files of
``fpt embed`` (made with the same extractor; a generator is its images' folder name)::

    fpt embed ../shared/data/generated -o gen.h5
    python scripts/measure_open_set.py --generated gen.h5 --photos bsds.h5 kodak.h5 mcmaster.h5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
TEST_PHOTOS = ("BSDS500_test", "Kodak24_500px", "McMaster18")


def embed_cached(extractor, paths: list[Path], cache, grid: int, batch_size: int) -> np.ndarray:
    """Rows of ``paths`` (every file must load) through the embedding loop, read from / written to ``cache``."""
    from fpforensics.embedding.loop import ExtractorEncoder, embed_files
    from fpforensics.images.folders import files_digest

    encoder = ExtractorEncoder(extractor, grid)
    key = json.dumps({"embedder": encoder.identity, "files": files_digest(paths)}, sort_keys=True)
    done = embed_files([encoder], paths, batch_size, "fp32", cache=cache, cache_key=lambda _e: key)
    if len(done.index) != len(paths):
        raise SystemExit(f"{len(paths) - len(done.index)} unreadable image(s): {done.skipped[:3]}")
    return done.rows[0]


def embeddings_file(path: Path, extractor) -> tuple[np.ndarray, list[str]]:
    """Rows and paths of an ``fpt embed`` .h5 file, refused when another extractor made it."""
    from fpforensics.embedding.files import load_embeddings

    e = load_embeddings(path)
    if e.extractor != extractor.identity:
        raise SystemExit(f"{path}: made by extractor {e.extractor}, not {extractor.identity}")
    return e.embeddings, e.paths


def gallery_threshold_rates(emb: np.ndarray, labels: np.ndarray, photos: np.ndarray, shots: int, repeats: int,
                            seed: int) -> dict:
    """Before: the gallery's own calibrated threshold, no real-photo rule (what `fpt identify` used to do)."""
    from fpforensics.evaluation.protocols import _rng, fingerprints, mean_std, shot_split
    from fpforensics.gallery.calibration import calibrate_threshold

    n = int(labels.max()) + 1
    rej, acc = [], []
    for rep in range(repeats):
        gal, qry = shot_split(labels, shots, _rng(seed, 1, rep))
        fp = fingerprints(emb[gal], labels[gal], n)
        thr = calibrate_threshold(emb[gal].astype(np.float32), labels[gal], fp.astype(np.float32)).threshold
        rej.append(float(((photos @ fp.T).max(axis=1) < thr).mean()))
        acc.append(float(((emb[qry] @ fp.T).max(axis=1) >= thr).mean()))
    return {"real_rejection": mean_std(rej), "acceptance": mean_std(acc)}


def pct(d: dict) -> str:
    if d.get("mean") is None:
        return "- (no accepted image)"
    return f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-e", "--extractor", default="default", help="extractor (a calibrated checkpoint, or default)")
    ap.add_argument("--generated", type=Path, default=DATA / "generated", help="one subfolder of images per generator")
    ap.add_argument("--photos", type=Path, nargs="+", default=[DATA / "real" / f for f in TEST_PHOTOS],
                    help="held-out test photographs (folders)")
    ap.add_argument("--calibration-models", type=int, default=9,
                    help="the first N generator folders (sorted) form the calibration half")
    ap.add_argument("--threshold", default=None, help="operating point (default: the calibrated one)")
    ap.add_argument("--keep", type=float, default=None,
                    help="share of the gallery images the enrolled cut keeps (default: fpt identify's)")
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--cache", type=Path, default=Path("open-set-cache"))
    ap.add_argument("--json", type=Path, default=None, help="write every number here (a new file)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = ap.parse_args(argv)
    if args.json is not None:
        if args.json.exists() and not args.overwrite:
            raise SystemExit(f"error: {args.json} exists: pass --overwrite to replace it")
        if not args.json.parent.is_dir():
            raise SystemExit(f"error: {args.json}: its folder does not exist")

    import torch

    from fpforensics.embedding.cache import EmbeddingCache
    from fpforensics.evaluation.realphotos import real_photo_open_set
    from fpforensics.extractor import load_extractor
    from fpforensics.images.decode import list_images
    from fpforensics.verdict.sources import folder_models
    from fpforensics.verdict.stored import ExtractorCalibration

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    t0 = time.time()
    ext = load_extractor(args.extractor, "cpu")
    cal = ExtractorCalibration.of(ext)
    if cal is None:
        print(f"note: {args.extractor} stores no calibration: paper threshold, no real-photo rule", file=sys.stderr)
    cache = EmbeddingCache(args.cache)
    if args.generated.suffix in (".h5", ".hdf5"):
        emb, files = embeddings_file(args.generated, ext)
        names = sorted({Path(f).parent.name for f in files})
        labels = np.array([names.index(Path(f).parent.name) for f in files])
    else:
        paths, labels, names = folder_models(args.generated)
        emb = embed_cached(ext, paths, cache, args.grid, args.batch_size)
    photo_rows = {}
    for p in args.photos:
        if p.suffix in (".h5", ".hdf5"):
            rows, files = embeddings_file(p, ext)
            photo_rows[Path(files[0]).parent.name if files else p.stem] = rows
        else:
            photo_rows[p.name] = embed_cached(ext, list_images(p), cache, args.grid, args.batch_size)
    photos = np.concatenate(list(photo_rows.values()))
    k = args.calibration_models
    subsets = {"calibration half": names[:k], "test half": names[k:]} if 0 < k < len(names) else {}
    common = dict(shots=args.shots, repeats=args.repeats, seed=args.seed, names=names)
    res = real_photo_open_set(emb, labels, photos, cal, args.threshold, subsets=subsets, **common)
    res["per_folder"] = {name: real_photo_open_set(emb, labels, rows, cal, args.threshold, **common)["real_rejection"]
                         for name, rows in photo_rows.items()}
    res["before"] = gallery_threshold_rates(emb, labels, photos, args.shots, args.repeats, args.seed)
    if cal is not None and cal.real_reference is not None:
        spec = "enrolled" if args.keep is None else f"enrolled:{args.keep}"
        res["enrolled_cut"] = real_photo_open_set(emb, labels, photos, cal, args.threshold, subsets=subsets,
                                                  photo_cut=spec, **common)
        res["enrolled_cut"]["per_folder"] = {
            name: real_photo_open_set(emb, labels, rows, cal, args.threshold, photo_cut=spec, **common)["real_rejection"]
            for name, rows in photo_rows.items()}
    res.update(extractor=ext.identity, generators=names, photos={n: len(r) for n, r in photo_rows.items()},
               calibration=cal.summary() if cal else None, seconds=round(time.time() - t0, 1))

    print(f"extractor {ext.identity}: gallery of {len(names)} generators x {args.shots} shots, "
          f"{len(photos)} test photographs, {args.repeats} splits; operating point "
          f"{res['operating_point']['threshold']:.4f} ({res['operating_point']['name']})")
    print(f"  photographs answered unknown: {pct(res['real_rejection'])} %  "
          f"(" + ", ".join(f"{n} {pct(v)}" for n, v in res["per_folder"].items()) + ")")
    print(f"  generator images accepted:    {pct(res['acceptance'])} %  (all {len(names)} generators)")
    for g, d in res.get("subsets", {}).items():
        print(f"    {g} ({len(d['models'])} generators): accepted {pct(d['acceptance'])} %, top-1 among accepted "
              f"{pct(d['top1_accepted'])} % vs all {pct(d['top1_all'])} %")
    print(f"  top-1 among accepted: {pct(res['top1_accepted'])} %  (closed set, all images: {pct(res['top1_all'])} %)")
    print(f"  open-set AUROC, photographs as unknowns: {pct(res['auroc'])} % by the rule, "
          f"{pct(res['auroc_max_cosine'])} % by the best cosine alone")
    print(f"  before (gallery threshold, no real-photo rule): photographs unknown {pct(res['before']['real_rejection'])}"
          f" %, generator images accepted {pct(res['before']['acceptance'])} %")
    if "enrolled_cut" in res:
        e = res["enrolled_cut"]
        print(f"  with --photo-cut {e['photo_cut']} (cut {e['cut']['mean']:.3f} vs {res['rule']['cut']:.3f}): "
              f"photographs unknown {pct(e['real_rejection'])} % ("
              + ", ".join(f"{n} {pct(v)}" for n, v in e["per_folder"].items()) + f"), generator images accepted "
              f"{pct(e['acceptance'])} %, top-1 among accepted {pct(e['top1_accepted'])} %")
        for g, d in e.get("subsets", {}).items():
            print(f"    {g}: accepted {pct(d['acceptance'])} %, top-1 among accepted {pct(d['top1_accepted'])} %")
    if args.json:
        try:
            args.json.write_text(json.dumps(res, indent=2, default=str))
        except OSError as exc:
            raise SystemExit(f"error: {args.json}: could not write ({exc.strerror})") from None
    return res


if __name__ == "__main__":
    from fpforensics.errors import FptError

    try:
        main()
    except FptError as exc:  # a missing or corrupt extractor, folder or .h5 file; a bad --keep or --threshold
        sys.exit(f"error: {exc}")
