"""CLI: the ``fpt`` application, its global options and its list of commands.

Each command lives in its own module of this package and imports its heavy dependencies inside
the function body, so ``fpt --help`` does not import torch.
"""

from __future__ import annotations

import typer

from fpforensics import __version__
from fpforensics.cli import artifact, calibrate, cluster, common, embed, evaluate, ffd, gallery, synthesize, train
from fpforensics.cli.options import Device

app = typer.Typer(
    name="fpt",
    cls=common.FptGroup,
    help="fpforensics: tell which generative model made an image, including models never seen in training.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fpt {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    device: Device = "auto",
    verbose: int = typer.Option(0, "-v", "--verbose", count=True, help="More detail (tracebacks on internal errors); "
                                "repeatable."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only results and errors."),
    max_image_pixels: int | None = typer.Option(
        None, "--max-image-pixels", min=0, show_default="Pillow's, 89478485 pixels",
        help="Largest image decoded, in pixels (width x height); a larger one is skipped with a warning (a possible "
             "decompression bomb). 0 = no limit."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    common.reset_state()
    common.STATE.device, common.STATE.verbose, common.STATE.quiet = device, verbose, quiet
    if max_image_pixels is not None:
        from fpforensics.images.decode import set_pixel_limit

        set_pixel_limit(max_image_pixels)


for name, command in (("synthesize", synthesize.synthesize), ("embed", embed.embed), ("identify", embed.identify),
                      ("verify", embed.verify), ("cluster", cluster.cluster), ("ffd", ffd.ffd),
                      ("artifact", artifact.artifact), ("eval", evaluate.evaluate), ("calibrate", calibrate.calibrate)):
    app.command(name, cls=common.FptCommand)(command)
app.add_typer(train.train_app, name="train")
app.add_typer(gallery.gallery_app, name="gallery")


def main() -> None:
    app(prog_name="fpt")  # `python -m fpforensics.cli.app` reads as `fpt` in usage lines too


if __name__ == "__main__":  # pragma: no cover
    main()
