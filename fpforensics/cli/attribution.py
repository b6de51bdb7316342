"""`fpt embed`, `fpt gallery add|list|show|remove|calibrate`, `fpt identify`, `fpt verify` (METHOD 1.4)."""

from __future__ import annotations

from pathlib import Path

import typer

from fpforensics.cli import common

gallery_app = typer.Typer(cls=common.FptGroup, no_args_is_help=True,
                          help="Enrolled models (HDF5 gallery; default $FPT_GALLERY or "
                               "~/.local/share/fpforensics/gallery.h5).")

EXTRACTOR_HELP = "default | spectral | pixels | PATH to a checkpoint from `fpt train`."
GALLERY_HELP = "Gallery file [default: $FPT_GALLERY, else $XDG_DATA_HOME/fpforensics/gallery.h5]."
GRID_HELP = "Sliding window: N x N grid of 128x128 crops per image, embeddings averaged."


def _say(msg: str) -> None:
    """A result line on stdout, printed verbatim (paths and identities may contain [brackets])."""
    common.out.print(msg, highlight=False, markup=False)


def _extractor_opt():
    return typer.Option("default", "--extractor", "-e", help=EXTRACTOR_HELP)


def _grid_opt():
    return typer.Option(3, "--grid", min=1, max=16, help=GRID_HELP)


def _batch_opt():
    return typer.Option(64, "--batch-size", "-b", min=1, help="Crops per forward pass.")


def _gallery_opt():
    return typer.Option(None, "--gallery", "-g", help=GALLERY_HELP, show_default=False)


def _gallery_path(path: Path | None, for_writing: bool = False) -> Path:
    from fpforensics.io.gallery import default_gallery_path

    if path is not None:
        return path
    path = default_gallery_path()
    if for_writing:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from fpforensics.errors import OutputError

            raise OutputError(f"{path.parent}: cannot create the gallery folder ({exc.strerror or exc})") from None
    return path


def _embed_inputs(inputs: list[Path], extractor_spec: str, grid: int, batch_size: int, what: str = "embedding",
                  limit: int | None = None, extractor=None):
    """List, then embed images with a progress bar -> (extractor, embedded paths, emb, skipped, found)."""
    from rich.markup import escape

    from fpforensics.attribution import embed_paths
    from fpforensics.errors import InputError
    from fpforensics.extractor.base import load_extractor
    from fpforensics.io.images import list_images, load_image

    device = common.get_device()
    paths = list_images(inputs)
    if len(paths) == 1:  # a single file: a bad one is an error, not a skip
        load_image(paths[0])
    if extractor is None:
        extractor = load_extractor(extractor_spec, device)
    common.debug(escape(f"extractor: {extractor.identity}"))
    total = min(len(paths), limit) if limit else len(paths)
    with common.progress() as bar:
        task = bar.add_task(what, total=total, rate="")
        ok, emb, report = embed_paths(
            extractor, paths, grid=grid, batch_size=batch_size, device=device, limit=limit,
            on_image=lambda n: bar.advance(task, n),
            on_skip=lambda p, why: common.warn(escape(f"skipped {why}")),
        )
    if not ok:
        raise InputError(f"no readable images among {len(paths)} file(s) ({len(report.skipped)} skipped)")
    return extractor, ok, emb, report.skipped, len(paths)


def embed(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output: .h5/.hdf5 (embeddings, paths, extractor) or .npy."),
    extractor: str = _extractor_opt(),
    grid: int = _grid_opt(),
    batch_size: int = _batch_opt(),
) -> None:
    """Embed images into L2-normalized fingerprint vectors (sliding window, batched)."""
    from fpforensics.io.embeddings import EmbeddingSet, output_format, save_embeddings
    from fpforensics.io.store import check_writable

    output_format(out)
    check_writable(out)
    ext, paths, emb, skipped, found = _embed_inputs(inputs, extractor, grid, batch_size)
    save_embeddings(out, EmbeddingSet(emb, [str(p) for p in paths], ext.identity, extractor, grid))
    _say(f"embedded {len(paths)} image(s) -> {out} ({emb.shape[1]}-d, extractor {ext.identity}, "
                     f"grid {grid}x{grid}){_skip_note(skipped)}")


def _skip_note(skipped: list) -> str:
    return f"; skipped {len(skipped)} unreadable file(s)" if skipped else ""


# ----------------------------------------------------------------------------- gallery


def _short_time(iso: str) -> str:
    """``2026-11-23T20:10:54+00:00`` -> ``2026-11-23 20:10`` (UTC) for tables; JSON keeps the full time."""
    return iso[:16].replace("T", " ")


@gallery_app.command("add")
def gallery_add(
    name: str = typer.Argument(..., help="Model name, e.g. sdxl."),
    inputs: list[Path] = typer.Argument(..., help="Images of that model: files and/or folders."),
    shots: int = typer.Option(10, "--shots", "-n", min=0,
                              help="Images enrolled (evenly spread over the sorted list; 0 = all). Paper: 10."),
    replace: bool = typer.Option(False, "--replace", help="Replace the model's images instead of appending."),
    gallery: Path | None = _gallery_opt(),
    extractor: str = _extractor_opt(),
    grid: int = _grid_opt(),
    batch_size: int = _batch_opt(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Enroll a model (or add images to it): stores embeddings and the model fingerprint."""
    from fpforensics.attribution import Gallery
    from fpforensics.extractor.base import load_extractor
    from fpforensics.io.store import check_writable

    path = _gallery_path(gallery, for_writing=True)
    check_writable(path)
    g = Gallery.open(path, create=True)  # a corrupt file fails here, before any work
    ext = load_extractor(extractor, common.get_device())
    g.check_compatible(ext.identity, ext.embedding_dim or None)
    ext, paths, emb, skipped, found = _embed_inputs(inputs, extractor, grid, batch_size, what=f"enrolling {name}",
                                                    limit=shots or None, extractor=ext)
    info = g.enroll(name, emb, paths, ext.identity, replace=replace, grid=grid, extractor_spec=extractor)
    cal = g.calibration
    if json_out:
        common.emit_json({"gallery": str(path), "model": name, "enrolled": len(paths), "found": found,
                          "skipped": len(skipped), "model_images": info.n_images, "models": len(g),
                          "threshold": cal.threshold if cal else None, "threshold_source": cal.source if cal else None})
        return
    verb = "replaced" if replace else "enrolled"
    _say(f"{verb} '{name}': {len(paths)} of {found} image(s){_skip_note(skipped)}; model now has "
                     f"{info.n_images} image(s); gallery {path} has {len(g)} model(s)")
    if cal:
        common.info(f"threshold {cal.threshold:.4f} ({cal.source})")


@gallery_app.command("list")
def gallery_list(
    gallery: Path | None = _gallery_opt(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List enrolled models: name, images, enrolled, extractor."""
    from fpforensics.attribution import Gallery

    path = _gallery_path(gallery)
    g = Gallery.open(path, create=True)
    models = g.models()
    cal = g.calibration
    if json_out:
        common.emit_json({"gallery": str(path), "extractor": g.extractor, "threshold": cal.threshold if cal else None,
                          "threshold_source": cal.source if cal else None,
                          "models": [m.to_dict() | {"paths": None, "added": None} for m in models]})
        return
    if not models:
        _say(f"gallery {path}: no models enrolled (`fpt gallery add NAME IMAGES`)")
        return
    from rich.markup import escape as esc
    from rich.table import Table

    table = Table(title=esc(f"{path} ({len(models)} models)"))
    for col, just in (("name", "left"), ("images", "right"), ("enrolled", "left"), ("updated", "left"),
                      ("extractor", "left")):
        table.add_column(col, justify=just)
    for m in models:
        table.add_row(esc(m.name), str(m.n_images), _short_time(m.created), _short_time(m.updated),
                      esc(m.extractor or ""))
    common.out.print(table)
    if cal:
        _say(f"threshold: {cal.threshold:.4f} ({cal.source})")


@gallery_app.command("show")
def gallery_show(
    name: str = typer.Argument(..., help="Enrolled model name."),
    gallery: Path | None = _gallery_opt(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Show one enrolled model: metadata and its source images."""
    from fpforensics.attribution import Gallery

    g = Gallery.open(_gallery_path(gallery))
    m = g.model(name)
    if json_out:
        common.emit_json(m.to_dict())
        return
    o = common.out
    o.print(m.name, style="bold", highlight=False, markup=False)
    for key, value in (("images", m.n_images), ("enrolled", m.created), ("updated", m.updated),
                       ("extractor", m.extractor), ("grid", f"{m.grid}x{m.grid}"), ("tool version", m.tool_version)):
        _say(f"  {key:<13}{value}")
    o.print("  sources:")
    for p, t in zip(m.paths, m.added, strict=True):
        _say(f"    {t}  {p}")


@gallery_app.command("remove")
def gallery_remove(
    name: str = typer.Argument(..., help="Enrolled model name."),
    gallery: Path | None = _gallery_opt(),
) -> None:
    """Remove an enrolled model and its images."""
    from fpforensics.attribution import Gallery

    path = _gallery_path(gallery)
    g = Gallery.open(path)
    m = g.remove(name)
    _say(f"removed '{name}' ({m.n_images} image(s)); {len(g)} model(s) left in {path}")


@gallery_app.command("calibrate")
def gallery_calibrate(
    set_value: float | None = typer.Option(None, "--set", help="Fix the threshold by hand instead (cosine)."),
    gallery: Path | None = _gallery_opt(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """(Re)derive the open-set threshold from the enrolled images, or fix it with --set."""
    from fpforensics.attribution import Gallery

    path = _gallery_path(gallery)
    g = Gallery.open(path)
    cal = g.calibrate(set_value)
    if json_out:
        common.emit_json({"gallery": str(path), "threshold": cal.threshold, "source": cal.source, **cal.info})
        return
    _say(f"threshold {cal.threshold:.4f} ({cal.source}) for extractor {g.extractor}")
    for k, v in cal.info.items():
        _say(f"  {k}: {v}")


# ----------------------------------------------------------------------------- identify / verify


def identify(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Models listed per image."),
    threshold: float | None = typer.Option(None, "--threshold", "-t",
                                           help="Open-set threshold [default: the gallery's calibrated one]."),
    gallery: Path | None = _gallery_opt(),
    extractor: str = _extractor_opt(),
    grid: int = _grid_opt(),
    batch_size: int = _batch_opt(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    csv_out: bool = typer.Option(False, "--csv", help="Print CSV (path,rank,model,cosine,prediction)."),
) -> None:
    """1:N identification: rank the gallery's models per image; "unknown model" below the threshold."""
    from fpforensics.attribution import Gallery
    from fpforensics.attribution import identify as run_identify
    from fpforensics.errors import InputError
    from fpforensics.extractor.base import load_extractor

    if json_out and csv_out:
        raise InputError("choose one of --json and --csv")
    path = _gallery_path(gallery)
    g = Gallery.open(path)
    if not len(g):
        raise InputError(f"{path}: the gallery is empty (enroll models with `fpt gallery add NAME IMAGES`)")
    ext = load_extractor(extractor, common.get_device())
    g.check_compatible(ext.identity, ext.embedding_dim or None)
    ext, paths, emb, skipped, found = _embed_inputs(inputs, extractor, grid, batch_size, what="identifying",
                                                    extractor=ext)
    res = run_identify(emb, g, top_k=top_k, threshold=threshold)
    thr = res.threshold
    preds = res.predictions
    if json_out:
        common.emit_json({
            "gallery": str(path), "extractor": ext.identity, "threshold": thr, "skipped": len(skipped),
            "results": [{"path": str(p), "prediction": preds[i], "known": preds[i] is not None,
                         "best_score": float(res.scores[i, 0]),
                         "ranking": [{"rank": r, "model": n, "cosine": round(s, 6)} for r, n, s in res.ranking(i)]}
                        for i, p in enumerate(paths)]})
        return
    if csv_out:
        import csv
        import sys

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["path", "rank", "model", "cosine", "prediction"])
        for i, p in enumerate(paths):
            for r, n, s in res.ranking(i):
                w.writerow([str(p), r, n, f"{s:.6f}", preds[i] if preds[i] is not None else "unknown model"])
        sys.stdout.flush()
        return
    from rich.markup import escape as esc
    from rich.table import Table

    thr_note = f"threshold {thr:.4f}" if thr is not None else "no threshold"
    table = Table(title=f"identification against {len(g)} model(s), {thr_note}")
    for col, just in (("image", "left"), ("rank", "right"), ("model", "left"), ("cosine", "right"),
                      ("verdict", "left")):
        table.add_column(col, justify=just)
    for i, p in enumerate(paths):
        verdict = f"[green]{esc(preds[i])}[/green]" if preds[i] is not None else "[yellow]unknown model[/yellow]"
        for r, n, s in res.ranking(i):
            table.add_row(esc(str(p)) if r == 1 else "", str(r), esc(n), f"{s:.4f}", verdict if r == 1 else "",
                          end_section=r == len(res.ranking(i)))
    common.out.print(table)
    n_known = sum(p is not None for p in preds)
    common.info(f"{len(paths)} image(s): {n_known} attributed, {len(paths) - n_known} unknown model"
                f"{_skip_note(skipped)}")


def verify(
    a: Path = typer.Argument(..., help="First image (or a folder: its images' mean embedding)."),
    b: Path = typer.Argument(..., help="Second image (or folder)."),
    threshold: float | None = typer.Option(
        None, "--threshold", "-t", show_default=False,
        help="Same-model threshold on the cosine [default: 0.81, the paper's; extractor-specific]."),
    extractor: str = _extractor_opt(),
    grid: int = _grid_opt(),
    batch_size: int = _batch_opt(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """1:1 verification: cosine similarity of two images and a same-model / different-model verdict."""
    from fpforensics.attribution import PAPER_THRESHOLD, normalize
    from fpforensics.attribution import verify as run_verify
    from fpforensics.extractor.base import PixelExtractor, SpectralExtractor, load_extractor

    ext = load_extractor(extractor, common.get_device())
    sides = []
    for side in (a, b):
        _, paths, emb, skipped, _found = _embed_inputs([side], extractor, grid, batch_size, what=f"embedding {side}",
                                                       extractor=ext)
        sides.append((normalize(emb.mean(axis=0)), len(paths), len(skipped)))
    thr = PAPER_THRESHOLD if threshold is None else threshold
    res = run_verify(sides[0][0], sides[1][0], thr)
    note = None
    if threshold is None and isinstance(ext, SpectralExtractor | PixelExtractor):
        note = (f"0.81 is the paper's threshold for its trained extractor; '{ext.identity}' is a different "
                "(training-free) extractor, so pass a --threshold calibrated for it (`fpt gallery calibrate`)")
    verdict = "same model" if res.same_model else "different models"
    if json_out:
        common.emit_json({"a": str(a), "b": str(b), "cosine": res.cosine, "threshold": thr, "same_model": res.same_model,
                          "verdict": verdict, "extractor": ext.identity, "images": [sides[0][1], sides[1][1]],
                          "note": note})
        return
    _say(f"cosine {res.cosine:.4f}  threshold {thr:.4f}  -> {verdict}")
    if note:
        _say(f"note: {note}")
