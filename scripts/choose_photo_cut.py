"""Choose the real-photo rule's cut by cross-validation on calibration data only (never a test image).

The question: when a gallery enrolls a generator that the extractor's calibration never saw, how
many of its images does each cut keep, and how many photographs of a kind the reference never
held does it still reject? Each fold leaves out

* one of the calibration generators (``--generators``, first ``--first-generators`` folders): the
  real-photo rule is refitted without it (``fit_extractor_calibration``, the code of
  ``fpt calibrate``), but the gallery enrolls it (``--shots`` images, seeded splits);
* one folder of the reference photographs: the rule is refitted without it, and its photographs
  are the queries that must be answered "unknown".

The gallery is every calibration generator. For each cut (``calibrated``, ``enrolled:KEEP``) it
prints the acceptance of the left-out generator's other images, the mean acceptance over all the
gallery's generators, and the rejection of the left-out photographs. ::

    python scripts/choose_photo_cut.py --pool calpool.h5 --cache photo-cut-cv.npz

The embeddings (calibration models, generators, photographs) are made once with ``gather`` and
kept in ``--cache``.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
REAL = ("BSDS500_train", "CBSD68", "CelebA_align_32", "FFHQ_256px_10")
CACHE_KEYS = {"emb", "labels", "groups", "real", "folders"}


def load_or_gather(args) -> dict:
    if args.cache.exists():
        try:
            with np.load(args.cache, allow_pickle=False) as z:
                cached = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise SystemExit(f"error: {args.cache}: not a readable cache of this script ({exc.__class__.__name__}); "
                             "delete it or pass another --cache") from None
        missing = sorted(CACHE_KEYS - set(cached))
        if missing:
            raise SystemExit(f"error: {args.cache}: not a cache of this script (no {', '.join(missing)}); "
                             "delete it or pass another --cache")
        return cached
    from fpforensics.checkpoints import load_checkpoint
    from fpforensics.extractor import load_extractor
    from fpforensics.images.decode import list_images
    from fpforensics.verdict.calibrate import gather

    ext = load_extractor(args.extractor, "cpu")
    path = getattr(ext, "source", None) or args.extractor
    ckpt = load_checkpoint(path, kind="extractor")
    real = [DATA / "real" / f for f in REAL]
    data = gather(ext, ckpt, args.pool, real, args.generators, first_generators=args.first_generators,
                  info=lambda m: print(m, file=sys.stderr))
    folders = np.array([p.parent.name for p in list_images(real)])
    if len(folders) != len(data.real):
        raise SystemExit(f"{len(folders) - len(data.real)} reference photograph(s) could not be read: fix or remove them")
    out = dict(emb=data.embeddings, labels=data.labels, groups=data.groups, real=data.real, folders=folders,
               identity=np.array(ext.identity))
    try:
        np.savez(args.cache, **out)
    except OSError as exc:
        raise SystemExit(f"error: {args.cache}: could not write the cache ({exc.strerror})") from None
    return out


def cross_validate(d: dict, cuts: list[str], shots: int, repeats: int, seed: int) -> dict:
    from fpforensics.evaluation.protocols import _rng, fingerprints, shot_split
    from fpforensics.metrics import l2_normalize
    from fpforensics.verdict.calibrate import GENERATORS, CalibrationData, fit_extractor_calibration
    from fpforensics.verdict.realphoto import PhotoCut, enrolled_cut

    emb = l2_normalize(np.asarray(d["emb"], np.float64), dtype=np.float64)
    real = l2_normalize(np.asarray(d["real"], np.float64), dtype=np.float64)
    labels, groups, folders = d["labels"], d["groups"], d["folders"]
    gen_models = np.unique(labels[groups == GENERATORS])
    folder_names = sorted(set(folders.tolist()))
    res = {c: {"held": [], "all": [], "rejected": 0, "photos": 0} for c in cuts}
    for i, g in enumerate(gen_models):
        fold = folder_names[i % len(folder_names)]
        fit = labels != g
        keep_ref = folders != fold
        cal = fit_extractor_calibration(CalibrationData(emb[fit], labels[fit], groups[fit], real[keep_ref], "cv", "cv"),
                                        shots=shots, seed=seed)
        ref = cal.real_reference
        rule = ref.rules["image-fingerprint"]
        gm = np.isin(labels, gen_models)
        ge, gl = emb[gm], np.searchsorted(gen_models, labels[gm])
        held = real[~keep_ref]
        for rep in range(repeats):
            gal, qry = shot_split(gl, shots, _rng(seed, 1, rep))
            fp = fingerprints(ge[gal], gl[gal], len(gen_models))
            s_q, s_r = (ge[qry] @ fp.T).max(axis=1), (held @ fp.T).max(axis=1)
            z_q, z_r = rule.z(s_q, ref.score(ge[qry])), rule.z(s_r, ref.score(held))
            for c in cuts:
                pc = PhotoCut.parse(c)
                cut = rule.cut if pc.name == "calibrated" else enrolled_cut(ref, ge[gal], gl[gal], pc.keep)[0]
                ok = z_q <= cut
                res[c]["held"].append(float(ok[gl[qry] == i].mean()))
                res[c]["all"].append(float(np.mean([ok[gl[qry] == m].mean() for m in range(len(gen_models))])))
                res[c]["rejected"] += int((z_r > cut).sum())
                res[c]["photos"] += int(len(held))
        print(f"  fold {i + 1}/{len(gen_models)} done (photographs left out: {fold})", file=sys.stderr)
    n = len(gen_models)
    return {c: {"left_out_generator_accepted": float(np.mean(r["held"])),
                "worst_left_out_generator": float(np.min(np.reshape(r["held"], (n, repeats)).mean(axis=1))),
                "gallery_accepted": float(np.mean(r["all"])),
                "left_out_photos_rejected": r["rejected"] / max(1, r["photos"])} for c, r in res.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-e", "--extractor", default="default")
    ap.add_argument("--pool", type=Path, help="the calibration pool (held-out synthetic models), as for fpt calibrate")
    ap.add_argument("--generators", type=Path, default=DATA / "generated")
    ap.add_argument("--first-generators", type=int, default=9)
    ap.add_argument("--cache", type=Path, default=Path("photo-cut-cv.npz"))
    ap.add_argument("--cut", action="append", default=None,
                    help="cuts to compare (repeatable; default calibrated, enrolled:0.8, enrolled:0.9, enrolled:0.95)")
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.cache.exists() and args.pool is None:
        ap.error("--pool is needed to make the embeddings (none cached yet)")
    if not args.cache.exists() and not args.cache.parent.is_dir():
        ap.error(f"--cache {args.cache}: its folder does not exist")
    cuts = args.cut or ["calibrated", "enrolled:0.8", "enrolled:0.9", "enrolled:0.95"]
    res = cross_validate(load_or_gather(args), cuts, args.shots, args.repeats, args.seed)
    print(f"{'cut':16s} {'left-out generator accepted':>28s} {'worst':>7s} {'all accepted':>13s} "
          f"{'left-out photos rejected':>25s}")
    for c, r in res.items():
        print(f"{c:16s} {100 * r['left_out_generator_accepted']:27.1f}% {100 * r['worst_left_out_generator']:6.1f}% "
              f"{100 * r['gallery_accepted']:12.1f}% {100 * r['left_out_photos_rejected']:24.1f}%")
    return res


if __name__ == "__main__":
    from fpforensics.errors import FptError

    try:
        main()
    except FptError as exc:  # a missing or corrupt pool, extractor or photo folder; a bad --cut
        sys.exit(f"error: {exc}")
