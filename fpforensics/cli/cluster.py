"""CLI: ``fpt cluster``, images grouped by unknown source, each group named from the gallery, the groups enrolled."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fpforensics.cli import common, render
from fpforensics.cli.options import DEFAULTS, BatchSize, Choice, Extractor, Gallery, Grid, Precision
from fpforensics.cluster import DEFAULT_MIN_SIZE

METHODS = Choice("--method", "clustering method", lambda: ["auto", "agglomerative", "hdbscan"])


def cluster(
    inputs: Annotated[list[Path] | None, typer.Argument(metavar="IMAGES", show_default=False,
                                                        help="Image files and/or folders (searched recursively).")
                      ] = None,
    min_size: Annotated[int, typer.Option("--min-size", "-m", help="Smallest group kept; images of smaller groups "
                                          "are marked unplaced.")] = DEFAULT_MIN_SIZE,
    k: Annotated[int | None, typer.Option("--k", "-k", show_default="decided from the data, by silhouette",
                                          help="Force this number of groups.")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", "-t", show_default="none", help="Instead of the silhouette: merge groups while their mean "
        "cosine is at least this (e.g. the extractor's calibrated verification threshold).")] = None,
    method: Annotated[str, typer.Option("--method", parser=METHODS, help="auto = agglomerative (cosine, average "
                                        "linkage, cut by silhouette), HDBSCAN beyond the memory limit.")
                      ] = "auto",
    gallery: Gallery = None,
    enroll_prefix: Annotated[str | None, typer.Option(
        "--enroll-prefix", show_default="none", help="Enroll every group into the gallery as a new model NAME-1, "
        "NAME-2, ... (refused if a name exists).")] = None,
    examples: Annotated[int, typer.Option("--examples", help="Example file names printed per group (most typical "
                                          "first).")] = 3,
    embeddings: Annotated[Path | None, typer.Option(
        "--embeddings", show_default="none", help="Cluster an `fpt embed` .h5 file instead of images (embed once, "
        "cluster many ways).")] = None,
    extractor: Extractor = DEFAULTS.extractor,
    grid: Grid = DEFAULTS.grid,
    batch_size: BatchSize = DEFAULTS.embed_batch_size,
    precision: Precision = DEFAULTS.precision,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON: every image's group, every group's members.")
                        ] = False,
) -> None:
    """Group images by fingerprint without labels; name each group's nearest enrolled model or "unknown source"."""
    from fpforensics.errors import InputError
    from fpforensics.workflows import cluster as run_cluster

    if examples < 0:
        raise InputError(f"--examples must be 0 or more (got {examples})")
    with common.bar("embedding") as bar:
        result = run_cluster(inputs, embeddings, k, min_size, threshold, method, gallery, enroll_prefix, extractor,
                             grid, batch_size, common.get_device() if embeddings is None else "cpu", precision,
                             on_start=bar.start, on_image=bar.advance, on_skip=bar.skipped, warn=common.warn)
    render.clustered(result, examples, json_out)
