"""CLI: ``fpt ffd``, the Frechet Frequency Distance between two sets of models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fpforensics.cli import common, render
from fpforensics.cli.options import DEFAULTS, Json, Residual


def ffd(
    set_a: Annotated[Path, typer.Argument(metavar="SET_A", help="Folder with one subfolder of images per model.")],
    set_b: Annotated[Path, typer.Argument(metavar="SET_B", help="Second folder of the same shape.")],
    images_per_model: Annotated[int, typer.Option("--images-per-model", "-n", min=1,
                                                  help="Images used per model (paper: 100).")
                                ] = DEFAULTS.ffd_images_per_model,
    residual: Residual = DEFAULTS.residual,
    json_out: Json = False,
) -> None:
    """Frechet Frequency Distance between two sets of generative models (lower = more alike)."""
    from fpforensics.ffd import ffd_between_folders
    from fpforensics.images.folders import ModelSet

    total = sum(len(ModelSet.from_folder(p).models) for p in (set_a, set_b))
    with common.bar("models", total) as bar:
        result = ffd_between_folders(set_a, set_b, images_per_model, residual, common.get_device(),
                                     on_model=lambda _name: bar.advance(), warn=common.warn)
    render.ffd(set_a, set_b, result, json_out)
