"""`fpt cluster`: group images by unknown source, name each group from the gallery, enroll the groups."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from fpforensics.cli import common
from fpforensics.cli.attribution import (
    _batch_opt,
    _embed_inputs,
    _extractor_opt,
    _gallery_path,
    _grid_opt,
    _say,
    _skip_note,
)
from fpforensics.cluster import DEFAULT_MIN_SIZE


def cluster(
    inputs: list[Path] | None = typer.Argument(None, help="Folders (searched recursively) and/or image files.",
                                               show_default=False),
    min_size: int = typer.Option(DEFAULT_MIN_SIZE, "--min-size", "-m",
                                 help="Smallest group kept; images of smaller groups are marked unplaced."),
    k: int | None = typer.Option(None, "--k", "-k", show_default=False,
                                 help="Force this number of groups (default: decided from the data, by silhouette)."),
    threshold: float | None = typer.Option(
        None, "--threshold", "-t", show_default=False,
        help="Instead of the silhouette: merge groups while their mean cosine is at least this (e.g. the "
             "extractor's calibrated verification threshold)."),
    method: str = typer.Option("auto", "--method",
                               help="auto (agglomerative, cosine/average, cut by silhouette; HDBSCAN beyond the "
                                    "memory limit) | agglomerative | hdbscan."),
    gallery: Path | None = typer.Option(
        None, "--gallery", "-g", show_default=False,
        help="Gallery that names each group's nearest enrolled model (default: $FPT_GALLERY, else "
             "$XDG_DATA_HOME/fpforensics/gallery.h5, when it exists)."),
    enroll_prefix: str | None = typer.Option(
        None, "--enroll-prefix", show_default=False,
        help="Enroll every group into the gallery as a new model NAME-1, NAME-2, ... (refused if a name exists)."),
    examples: int = typer.Option(3, "--examples", help="Example file names printed per group (most typical first)."),
    embeddings: Path | None = typer.Option(
        None, "--embeddings", show_default=False,
        help="Cluster an `fpt embed` .h5 file instead of images (embed once, cluster many ways)."),
    extractor: str = _extractor_opt(),
    grid: int = _grid_opt(),
    batch_size: int = _batch_opt(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON: every image's group, every group's members."),
) -> None:
    """Group images by fingerprint without labels; name each group's nearest enrolled model or "unknown source"."""
    from fpforensics.attribution import Gallery
    from fpforensics.cluster import cluster_embeddings, name_groups, typical_members
    from fpforensics.errors import IncompatibleError, InputError
    from fpforensics.extractor.base import load_extractor
    from fpforensics.io.images import list_images

    # every check that needs no embedding runs before the embedding
    if min_size < 1:
        raise InputError(f"--min-size must be at least 1 (got {min_size})")
    if k is not None and k < 1:
        raise InputError(f"--k must be at least 1 (got {k})")
    if k is not None and threshold is not None:
        raise InputError("choose one of --k and --threshold")
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise InputError(f"--threshold {threshold} is not a cosine similarity (expected -1..1)")
    if threshold is not None and method == "hdbscan":
        raise InputError("--threshold cuts the agglomerative tree: it does not apply to --method hdbscan")
    if examples < 0:
        raise InputError(f"--examples must be 0 or more (got {examples})")
    if method not in ("auto", "agglomerative", "hdbscan"):
        raise InputError(f"--method must be auto, agglomerative or hdbscan (got '{method}')")
    if enroll_prefix is not None:
        enroll_prefix = enroll_prefix.strip()
        if not enroll_prefix:
            raise InputError("--enroll-prefix cannot be empty")
    if bool(inputs) == (embeddings is not None):
        raise InputError("give image folders/files or --embeddings FILE (one of the two)")
    if embeddings is not None:
        from fpforensics.io.embeddings import load_embeddings

        es = load_embeddings(embeddings)
        identity, dim, spec = es.extractor, int(es.embeddings.shape[1]), es.extractor_spec or ""
        grid = es.grid or grid
        n_found = len(es.paths)
    else:
        n_found = len(list_images(inputs))
    if k is not None and k > n_found:
        raise InputError(f"--k {k} is more than the {n_found} image(s) found")

    path = _gallery_path(gallery, for_writing=enroll_prefix is not None)
    explicit = gallery is not None or enroll_prefix is not None
    g = None
    if enroll_prefix is not None:
        from fpforensics.io.store import check_writable

        check_writable(path)
        g = Gallery.open(path, create=True)
        _refuse_taken(g, enroll_prefix, path)
    elif path.exists():
        g = Gallery.open(path)
    if embeddings is None:
        ext = load_extractor(extractor, common.get_device())
        identity, dim, spec = ext.identity, ext.embedding_dim or None, extractor
    if g is not None and identity is None:
        if explicit:
            raise InputError(f"{embeddings}: a .npy file does not say which extractor made it, so it cannot be "
                             "compared with a gallery (write .h5 with `fpt embed`)")
        g = None
    if g is not None and len(g):
        try:
            g.check_compatible(identity, dim)
        except IncompatibleError as exc:
            if explicit:
                raise
            common.warn(f"groups are not named: {exc}")
            g = None

    if embeddings is None:
        ext, paths, emb, skipped, found = _embed_inputs(inputs, extractor, grid, batch_size, extractor=ext)
    else:
        paths, emb, skipped, found = es.paths, es.embeddings, [], n_found
    if k is not None and k > len(paths):
        raise InputError(f"--k {k} is more than the {len(paths)} readable image(s)")
    common.info(f"clustering {len(paths)} image(s)")
    res = cluster_embeddings(emb, k=k, min_size=min_size, method=method, threshold=threshold)
    named = g is not None and len(g) > 0
    names, fps = g.fingerprints() if named else ([], None)
    thr = g.threshold if named else None
    matches = name_groups(emb, res, names, fps, thr)

    enrolled: list[str | None] = [None] * res.n_groups
    if enroll_prefix is not None and g is not None:
        _refuse_taken(g, enroll_prefix, path, [f"{enroll_prefix}-{i + 1}" for i in range(res.n_groups)])
        for i in range(res.n_groups):
            rows = res.members(i)
            info = g.enroll(f"{enroll_prefix}-{i + 1}", emb[rows], [paths[r] for r in rows], identity,
                            grid=grid, extractor_spec=spec)
            enrolled[i] = info.name
        if not res.n_groups:
            common.warn("no group to enroll: every image is unplaced")

    if json_out:
        group_of = {int(r): i + 1 for i in range(res.n_groups) for r in res.members(i)}
        common.emit_json({
            "extractor": identity, "gallery": str(path) if named or enroll_prefix else None,
            "threshold": thr, "images": len(paths), "found": found, "skipped": len(skipped),
            "clustering": res.to_dict(),
            "groups": [{"group": i + 1, "size": m.size, **m.to_dict(), "enrolled_as": enrolled[i],
                        "examples": [str(paths[r]) for r in typical_members(emb, res, i, examples)],
                        "members": [str(paths[r]) for r in res.members(i)]} for i, m in enumerate(matches)],
            "unplaced": [str(paths[r]) for r in res.unplaced],
            "assignments": [{"path": str(p), "group": group_of.get(r)} for r, p in enumerate(paths)],
        })
        return

    for i, m in enumerate(matches):
        if m.model is None:
            verdict = "unknown source (no gallery)"
        elif m.known:
            verdict = f"{m.model} (cosine {m.cosine:.4f}; {m.agreement:.0%} of its images identified as it)"
        else:
            at = f" at threshold {thr:.4f}" if thr is not None else ""
            verdict = (f"unknown source (nearest {m.model}, cosine {m.cosine:.4f}; only {m.agreement:.0%} of its "
                       f"images identified as it{at})")
        line = f"group {i + 1}: {m.size} image(s)  {verdict}"
        _say(line + (f"  enrolled as {enrolled[i]}" if enrolled[i] else ""))
        shown = typical_members(emb, res, i, examples)
        for r in shown:
            _say(f"    {paths[r]}")
        if m.size > len(shown):
            _say(f"    ... {m.size - len(shown)} more")
    if len(res.unplaced):
        _say(f"unplaced: {len(res.unplaced)} image(s) (no group of at least {min_size})")
        for r in res.unplaced[:examples]:
            _say(f"    {paths[r]}")
        if len(res.unplaced) > examples:
            _say(f"    ... {len(res.unplaced) - examples} more")
    cut = f", cut at cosine distance {res.distance_threshold:.4f}" if res.distance_threshold is not None else ""
    common.info(f"{len(paths)} image(s) -> {res.n_groups} group(s), {len(res.unplaced)} unplaced{_skip_note(skipped)}; "
                f"{res.method}: {res.criterion}{cut}")
    if not named:
        common.info(f"no enrolled models at {path}: groups are not named (pass --gallery)")
    if any(enrolled):
        common.info(f"enrolled {res.n_groups} group(s) into {path} as {enroll_prefix}-1..{enroll_prefix}-{res.n_groups}")


def _refuse_taken(g, prefix: str, path: Path, names: list[str] | None = None) -> None:
    """Enrolling must not add images to an existing model: refuse names already in the gallery."""
    from fpforensics.errors import InputError

    pattern = re.compile(re.escape(prefix) + r"-\d+")
    taken = [n for n in g.names() if (n in names if names is not None else pattern.fullmatch(n))]
    if taken:
        raise InputError(f"{path} already has model(s) {', '.join(taken[:5])}{' ...' if len(taken) > 5 else ''}: "
                         "choose another --enroll-prefix")
