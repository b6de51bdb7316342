"""CLI: ``fpt calibrate``, the operating points a trained extractor carries in its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fpforensics.cli import common, render
from fpforensics.cli.options import DEFAULTS, BatchSize, Grid, Json, Overwrite, Precision, Seed


def calibrate(
    extractor: Annotated[str, typer.Argument(metavar="EXTRACTOR", help="Checkpoint from `fpt train extractor`, or "
                                             "'default' (the shipped one).")],
    pool: Annotated[Path, typer.Option("--pool", help="Pool of synthetic models holding models the extractor never "
                                       "trained on (its own pool, or more seeds of its held-out architectures).")],
    real: Annotated[list[Path], typer.Option("--real", help="Real photographs (files/folders, repeatable): the "
                                             "content fed to the held-out models and the real-photo reference. Never "
                                             "the photographs you test on.")],
    generators: Annotated[Path | None, typer.Option("--generators", show_default="none", help="Generators set aside "
                                                    "for calibration: a folder with one subfolder of images each.")
                          ] = None,
    first_generators: Annotated[int | None, typer.Option("--first-generators", show_default="all", help="Only the "
                                                         "first N subfolders of --generators (sorted): the "
                                                         "calibration half; the other half stays for testing.")
                                ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", show_default="none", help="Write the calibrated "
                                             "extractor here (a new file); else --overwrite writes into EXTRACTOR.")
                   ] = None,
    overwrite: Overwrite = False,
    holdout: Annotated[str, typer.Option("--holdout", help="Held-out models: 'checkpoint' (those the checkpoint "
                                         "records, or every model of its held-out architectures in another pool) or "
                                         "a grid expression.")] = "checkpoint",
    pool_images: Annotated[int, typer.Option("--pool-images", min=2, help="Images per held-out model.")
                           ] = DEFAULTS.pool_images,
    size: Annotated[int, typer.Option("--size", min=DEFAULTS.crop_size, help="Side of the held-out models' images "
                                      "in pixels (one crop each; 256 gives nine, as for most real images, at ~9x the time).")
                ] = DEFAULTS.crop_size,
    accept: Annotated[float, typer.Option("--accept", min=0.5, max=0.999, help="Share of the calibration models' "
                                          "images the real-photo rule must keep.")] = 0.95,
    seed: Seed = DEFAULTS.seed,
    grid: Grid = DEFAULTS.grid,
    batch_size: BatchSize = DEFAULTS.embed_batch_size,
    precision: Precision = DEFAULTS.precision,
    json_out: Json = False,
) -> None:
    """Fit the extractor's operating points (verify and identify thresholds, probabilities, the ambiguity
    margin, the real-photo rule) and store them in its checkpoint; the weights are not changed."""
    from fpforensics.api import calibrate_extractor

    with common.bar("calibrating") as bar:
        path, cal = calibrate_extractor(extractor, pool, real, generators, out, overwrite, holdout, pool_images, size,
                                        accept, seed, grid, batch_size, common.get_device(), precision,
                                        info=common.info, on_image=bar.advance, on_skip=bar.skipped,
                                        first_generators=first_generators)
    render.calibrated(path, cal, json_out)
