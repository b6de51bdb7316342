"""CLI: ``fpt artifact``, ManiFPT artifacts of generated images against a real-image manifold."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fpforensics.cli import common, render
from fpforensics.cli.options import DEFAULTS, Json, Overwrite, Space


def artifact(
    generated: Annotated[list[Path], typer.Argument(metavar="GENERATED", help="Generated images: files or folders "
                                                    "(a subfolder per model).")],
    real: Annotated[Path, typer.Option("--real", help="Folder (or file) of real images: the estimated data manifold.")],
    space: Space = DEFAULTS.artifact_space,
    out: Annotated[Path | None, typer.Option("--out", "-o", show_default="not written",
                                             help="Write the artifacts to this HDF5 file.")] = None,
    png: Annotated[Path | None, typer.Option("--png", show_default="none", help="Folder for one panel per generated "
                                             "image (a subfolder per model).")] = None,
    size: Annotated[int, typer.Option("--size", help="Side of the rgb/freq image (and of the panels), pixels.")
                    ] = DEFAULTS.artifact_size,
    fit: Annotated[str, typer.Option("--fit", help="crop (central crop, keeps traces) | resize (whole scene).")
                   ] = DEFAULTS.artifact_fit,
    weights: Annotated[Path | None, typer.Option("--weights", show_default="sl: the shipped extractor", help="sl: "
                                                 "ResNet-50 state_dict or extractor checkpoint; ssl: Barlow Twins "
                                                 "ResNet-50 (required).")] = None,
    manifold_cache: Annotated[Path | None, typer.Option("--manifold-cache", show_default="none",
                                                        help="HDF5 file storing/reusing the real features.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="Stored artifact precision: float32 | float16.")] = "float32",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per feature batch.")
                          ] = DEFAULTS.artifact_batch_size,
    chunk: Annotated[int, typer.Option("--chunk", min=1, help="Real features per nearest-neighbour block (rows).")
                     ] = DEFAULTS.neighbour_chunk,
    fdr: Annotated[bool, typer.Option("--fdr", help="Report the FDR separability of artifacts by model.")] = False,
    fdr_dim: Annotated[int, typer.Option("--fdr-dim", min=1, help="PCA dimensions for FDR when features are larger.")
                       ] = DEFAULTS.fdr_dim,
    train_classifier: Annotated[Path | None, typer.Option("--train-classifier", show_default="none", help="Fit the "
                                                          "artifact attributor on these artifacts; save it here.")
                                ] = None,
    classifier: Annotated[Path | None, typer.Option("--classifier", show_default="none",
                                                    help="Attribute these artifacts with a saved attributor.")] = None,
    overwrite: Overwrite = False,
    json_out: Json = False,
) -> None:
    """ManiFPT artifacts: each generated image minus its nearest real image in a feature space."""
    from fpforensics.manifpt.run import artifacts

    with common.tasks() as add:
        run = artifacts(generated, real, space, out, png, size, fit, weights, manifold_cache, dtype, batch_size, chunk,
                        fdr, fdr_dim, train_classifier, classifier, common.get_device(), progress=add,
                        on_skip=common.skipped, info=common.info, warn=common.warn, overwrite=overwrite)
    render.artifacts(run, json_out)
