"""CLI: ``fpt gallery add | list | show | remove | calibrate``, the enrolled models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fpforensics.cli import common, render
from fpforensics.cli.options import DEFAULTS, BatchSize, Extractor, Gallery, Grid, Images, Json, Precision
from fpforensics.gallery import gallery_path

gallery_app = typer.Typer(cls=common.FptGroup, no_args_is_help=True,
                          help="Enrolled models (gallery file; default $FPT_GALLERY or "
                               "~/.local/share/fpforensics/gallery.h5).")
Name = Annotated[str, typer.Argument(metavar="NAME", help="Enrolled model name.")]


@gallery_app.command("add", cls=common.FptCommand)
def gallery_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Model name, e.g. sdxl.")],
    inputs: Images,
    shots: Annotated[int, typer.Option("--shots", "-n", min=0, help="Images enrolled, evenly spread over the sorted "
                                       "list (0 = all). Paper: 10.")] = DEFAULTS.shots,
    replace: Annotated[bool, typer.Option("--replace", help="Replace the model's images instead of appending.")
                       ] = False,
    gallery: Gallery = None,
    extractor: Extractor = DEFAULTS.extractor,
    grid: Grid = DEFAULTS.grid,
    batch_size: BatchSize = DEFAULTS.embed_batch_size,
    precision: Precision = DEFAULTS.precision,
    json_out: Json = False,
) -> None:
    """Enroll a model (or add images to it): appends its embeddings and updates its fingerprint."""
    from fpforensics.gallery import Gallery as Store

    path = gallery_path(gallery, for_writing=True)
    g = Store.open(path, create=True)  # a corrupt file fails here, before any work
    common.on_interrupt(lambda: f"{path} is unchanged: an enrollment is saved whole or not at all")
    with common.bar(f"enrolling {name}") as bar:
        info, e = g.add(name, inputs, extractor, shots, replace, grid, batch_size, common.get_device(), precision,
                        on_start=bar.start, on_image=bar.advance, on_skip=bar.skipped)
    from fpforensics.api import enrollment_photo_check

    render.enrolled(path, name, info, e, g, replace, json_out, enrollment_photo_check(g, name, e.extractor))


Builtin = Annotated[bool, typer.Option("--builtin", help="The built-in reference gallery that ships with fpt "
                                        "(read-only) instead of --gallery.")]


def _open(gallery: Path | None, builtin: bool, create: bool = False):
    """``--builtin`` (read-only), else ``--gallery`` or the default gallery."""
    from fpforensics.errors import InputError
    from fpforensics.gallery import Gallery as Store

    if not builtin:
        path = gallery_path(gallery)
        return path, Store.open(path, create=create)
    from fpforensics.gallery.builtin import builtin_gallery_path, open_builtin

    if gallery is not None:
        raise InputError("choose one of --builtin and --gallery")
    g = open_builtin()
    if g is None:
        raise InputError(f"this installation has no built-in gallery ({builtin_gallery_path()} is missing)")
    return g.path, g


@gallery_app.command("list", cls=common.FptCommand)
def gallery_list(gallery: Gallery = None, builtin: Builtin = False, json_out: Json = False) -> None:
    """List enrolled models: name, family, images, enrolled, extractor; --json adds the files that built each one."""
    path, g = _open(gallery, builtin, create=True)
    render.gallery_list(path, g, json_out, builtin)


@gallery_app.command("show", cls=common.FptCommand)
def gallery_show(name: Name, gallery: Gallery = None, builtin: Builtin = False, json_out: Json = False) -> None:
    """Show one enrolled model: metadata, provenance and its source images (path and sha256)."""
    render.model_details(_open(gallery, builtin)[1].model(name), json_out)


@gallery_app.command("remove", cls=common.FptCommand)
def gallery_remove(name: Name, gallery: Gallery = None) -> None:
    """Remove an enrolled model and its images."""
    from fpforensics.gallery import Gallery as Store

    path = gallery_path(gallery)
    g = Store.open(path)
    m = g.remove(name)
    render.say(f"removed '{name}' ({m.n_images} image(s)); {len(g)} model(s) left in {path}")


@gallery_app.command("calibrate", cls=common.FptCommand)
def gallery_calibrate(
    set_value: Annotated[float | None, typer.Option("--set", show_default="derived from the enrolled images",
                                                    help="Fix the threshold by hand instead (a cosine, -1..1).")
                         ] = None,
    gallery: Gallery = None,
    json_out: Json = False,
) -> None:
    """(Re)derive the open-set threshold from the enrolled images, or fix it with --set."""
    from fpforensics.gallery import Gallery as Store

    path = gallery_path(gallery)
    g = Store.open(path)
    render.calibration(path, g, g.calibrate(set_value), json_out)
