"""`fpt cluster` against the truth it never sees: ARI, AMI, groups found, share unplaced.

The data are ``ROOT/<model>/<images>``; the folder names are the labels, used only for scoring
(``fpt cluster`` is given the images, never the folders' names). For each extractor the images
are embedded once with ``fpt embed``, then every variant runs as ``fpt cluster --embeddings``,
through the command line, exactly as printed.

    python benchmarks/bench_cluster.py score ../shared/data/generated -e default -e spectral --work /tmp/bc
    python benchmarks/bench_cluster.py render POOL.h5 PHOTOS OUT --min 10 --max 60
    python benchmarks/bench_cluster.py naming /tmp/bc/embeddings-default.h5

``naming`` checks the group verdicts against a gallery of every other model.
``render`` makes held-out *synthetic* generators with uneven image counts from a pool built by
``fpt synthesize`` (docs/cluster.md uses it to choose the automatic rule without the test set).

Scores: unplaced images count as singletons, so leaving an image out is never counted as
agreement (a clustering that places nothing scores 0). "ARI placed" scores the placed images only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

DEFAULT_VARIANTS = ("", "--method hdbscan", "--k {k}")


def fpt(args: list[str]) -> str:
    """Run ``fpt ARGS`` (this checkout's code) and return stdout; print the command."""
    print("$ fpt " + " ".join(shlex.quote(a) for a in args), file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", "fpforensics.cli.app", "-q", *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"fpt {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def scores(truth: list[str], groups: list[int | None]) -> dict:
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    pred = np.array([g if g is not None else -1 - i for i, g in enumerate(groups)])  # unplaced: singletons
    placed = np.array([g is not None for g in groups])
    t = np.array(truth)
    return {
        "ari": float(adjusted_rand_score(t, pred)),
        "ami": float(adjusted_mutual_info_score(t, pred)),
        "ari_placed": float(adjusted_rand_score(t[placed], pred[placed])) if placed.sum() > 1 else float("nan"),
        "groups": int(len({g for g in groups if g is not None})),
        "unplaced": float(1.0 - placed.mean()),
    }


def score(root: Path, extractors: list[str], variants: list[str], work: Path, grid: int = 3) -> list[dict]:
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in extractors:
        emb = work / f"embeddings-{Path(spec).stem if spec not in ('default', 'spectral', 'pixels') else spec}.h5"
        if not emb.exists():
            fpt(["embed", str(root), "-e", spec, "-o", str(emb), "--grid", str(grid)])
        for variant in variants:
            out = json.loads(fpt(["cluster", "--embeddings", str(emb), "--json",
                                  *shlex.split(variant.format(k=len(_models(root))))]))
            truth = [Path(a["path"]).relative_to(root).parts[0] for a in out["assignments"]]
            row = {"extractor": spec, "variant": variant.format(k=len(_models(root))) or "(automatic)",
                   "models": len(set(truth)), "images": len(truth),
                   **scores(truth, [a["group"] for a in out["assignments"]]),
                   "rule": out["clustering"]["criterion"]}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def _models(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def table(rows: list[dict]) -> str:
    lines = ["| extractor | `fpt cluster` options | ARI | AMI | ARI placed | groups found / true | unplaced |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['extractor']} | `{r['variant']}` | {r['ari']:.3f} | {r['ami']:.3f} | {r['ari_placed']:.3f} "
                     f"| {r['groups']} / {r['models']} | {r['unplaced']:.1%} |")
    return "\n".join(lines)


def naming(embeddings: Path, shots: int = 10) -> str:
    """Enroll every other model (``shots`` images each), cluster everything, and check each group's verdict.

    A group's truth is its majority model. A group of an enrolled model should be named after it;
    a group of a model left out should be "unknown source". Two rules, on the same groups and
    gallery: the one ``fpt cluster`` uses (most members identified as the model, one by one, at
    the gallery's threshold) and the group mean's cosine against the threshold.
    """
    from collections import Counter

    from fpforensics.cluster import cluster_embeddings, group_fingerprints, name_groups
    from fpforensics.embedding.files import load_embeddings
    from fpforensics.gallery import Gallery
    from fpforensics.images.folders import spread_order

    es = load_embeddings(embeddings)
    emb, truth = es.embeddings, np.array([Path(p).parent.name for p in es.paths])
    models = sorted(set(truth))
    enrolled = set(models[::2])
    g = Gallery()
    for m in sorted(enrolled):
        rows = np.flatnonzero(truth == m)
        pick = rows[spread_order(len(rows), shots)[:shots]]
        g.enroll(m, emb[pick], [es.paths[i] for i in pick], es.extractor or "unknown")
    names, fps = g.fingerprints()
    lines = [f"gallery: {len(enrolled)} of {len(models)} models, {shots} images each, threshold {g.threshold:.4f}", "",
             "| groups | rule | enrolled: named right | enrolled: wrong or unknown | left out: unknown (right) "
             "| left out: named (wrong) |", "|---|---|---|---|---|---|"]
    for k in (None, len(models)):
        res = cluster_embeddings(emb, k=k)
        members_rule = name_groups(emb, res, names, fps, g.threshold)
        mean_cos = group_fingerprints(emb, res) @ fps.T
        for rule in ("members identified (fpt cluster)", "group mean >= threshold"):
            c: Counter = Counter()
            for i, m in enumerate(members_rule):
                major = Counter(truth[res.members(i)]).most_common(1)[0][0]
                known = m.known if rule.startswith("members") else bool(mean_cos[i].max() >= g.threshold)
                if major in enrolled:
                    c["right" if known and m.model == major else "wrong"] += 1
                else:
                    c["unknown" if not known else "named"] += 1
            what = f"{res.n_groups} (`--k {k}`)" if k else f"{res.n_groups} (automatic)"
            lines.append(f"| {what} | {rule} | {c['right']} | {c['wrong']} | {c['unknown']} | {c['named']} |")
    return "\n".join(lines)


def render(pool_path: Path, photos: Path, out: Path, low: int, high: int, seed: int) -> None:
    """Each pool model turns random 128x128 crops of the photos into 'its' images (uneven counts)."""
    import torch

    from fpforensics.images.crops import upscale_to_min_side
    from fpforensics.images.decode import list_images, load_image, save_png
    from fpforensics.synthesis.pool import SyntheticPool

    pool = SyntheticPool.open(pool_path)
    images = [upscale_to_min_side(load_image(p), 128) for p in list_images(photos)]
    gen = torch.Generator().manual_seed(seed)
    counts = np.random.default_rng(seed).integers(low, high + 1, len(pool.entries))
    for model_id, (entry, count) in enumerate(zip(pool.entries, counts, strict=True)):
        crops = []
        for _ in range(int(count)):
            img = images[int(torch.randint(len(images), (1,), generator=gen))]
            top = int(torch.randint(img.shape[1] - 127, (1,), generator=gen))
            left = int(torch.randint(img.shape[2] - 127, (1,), generator=gen))
            crops.append(img[:, top:top + 128, left:left + 128])
        with torch.no_grad():
            fake = pool.apply(torch.full((len(crops),), model_id, dtype=torch.long), torch.stack(crops),
                              torch.device("cpu"))
        folder = out / f"{entry.arch.code}-s{entry.seed}"
        for i, image in enumerate(fake):
            save_png(image, folder / f"{i:03d}.png")
    print(f"wrote {int(counts.sum())} images of {len(pool.entries)} models ({low}-{high} each) to {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score", help="cluster ROOT/<model>/ images with the labels hidden, score against them")
    s.add_argument("root", type=Path)
    s.add_argument("-e", "--extractor", action="append", help="repeatable (default: default and spectral)")
    s.add_argument("--variant", action="append",
                   help=f"fpt cluster options, repeatable; {{k}} = number of folders (default: {DEFAULT_VARIANTS})")
    s.add_argument("--work", type=Path, default=Path("bench-cluster"), help="embeddings are cached here")
    s.add_argument("--grid", type=int, default=3, help="fpt embed --grid (1 for 128x128 images: 9 equal crops)")
    s.add_argument("--json", type=Path, help="also write the rows here")
    n = sub.add_parser("naming", help="group verdicts against a gallery of every other model")
    n.add_argument("embeddings", type=Path, help="an fpt embed .h5 of ROOT/<model>/ images")
    n.add_argument("--shots", type=int, default=10)
    r = sub.add_parser("render", help="held-out synthetic generators with uneven image counts")
    r.add_argument("pool", type=Path)
    r.add_argument("photos", type=Path)
    r.add_argument("out", type=Path)
    r.add_argument("--min", type=int, default=10)
    r.add_argument("--max", type=int, default=60)
    r.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "naming":
        print(naming(args.embeddings, args.shots))
        return
    if args.cmd == "render":
        render(args.pool, args.photos, args.out, args.min, args.max, args.seed)
        return
    rows = score(args.root, args.extractor or ["default", "spectral"], args.variant or list(DEFAULT_VARIANTS),
                 args.work, args.grid)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
