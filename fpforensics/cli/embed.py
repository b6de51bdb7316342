"""CLI: ``fpt embed`` (fingerprints of images, shardable), ``fpt identify`` (1:N) and ``fpt verify`` (1:1)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fpforensics.cli import common, render
from fpforensics.cli.options import DEFAULTS, BatchSize, Extractor, Gallery, Grid, Images, Json, Overwrite, Precision, Shard


def embed(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: .h5/.hdf5 (embeddings, paths, extractor) or .npy; "
                                      "with --shard, may be a folder (the shard's file goes inside).")],
    inputs: Annotated[list[Path] | None, typer.Argument(metavar="IMAGES", show_default=False,
                                                        help="Image files and/or folders (searched recursively).")
                      ] = None,
    extractor: Extractor = DEFAULTS.extractor,
    grid: Grid = DEFAULTS.grid,
    batch_size: BatchSize = DEFAULTS.embed_batch_size,
    precision: Precision = DEFAULTS.precision,
    shard: Shard = None,
    merge: Annotated[list[Path] | None, typer.Option(
        "--merge", show_default="none", help="Instead of embedding: merge these .h5 files of `fpt embed --shard` "
                                            "(repeatable) into --out, in the order of a single run.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Embed images into L2-normalized fingerprint vectors (sliding window, batched, shardable)."""
    from fpforensics.api import embed as run_embed
    from fpforensics.embedding.files import EmbeddingSet, check_output, merge_embeddings, save_embeddings
    from fpforensics.errors import InputError
    from fpforensics.sharding import parse_shard, shard_output

    if merge:
        check_output(out, overwrite=overwrite)
        merged = merge_embeddings(merge, warn=common.warn)
        save_embeddings(out, merged, overwrite)
        return render.merged_embeddings(merge, out, merged)
    if not inputs:
        raise InputError("missing IMAGES (files or folders to embed), or use --merge")
    part = parse_shard(shard)
    out = check_output(shard_output(out, part, "embeddings"), part, overwrite)
    common.on_interrupt(lambda: f"nothing written: {out} is written once every image is embedded; run again with: "
                                f"{common.command_line()}")
    with common.bar("embedding") as bar:
        e = run_embed(inputs, extractor, grid, batch_size, common.get_device(), precision, shard=part,
                      on_start=bar.start, on_image=bar.advance, on_skip=bar.skipped)
    save_embeddings(out, EmbeddingSet(e.embeddings, [str(p) for p in e.paths], e.extractor.identity, extractor, grid,
                                      e.positions, part if part[1] > 1 else None), overwrite)
    render.embedded(e, out, extractor)


def identify(
    inputs: Images,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Models listed per image.")] = DEFAULTS.top_k,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", "-t", show_default="the gallery's calibrated one",
        help='Open-set threshold on the cosine: below it, "unknown model".')] = None,
    gallery: Gallery = None,
    extractor: Extractor = DEFAULTS.extractor,
    grid: Grid = DEFAULTS.grid,
    batch_size: BatchSize = DEFAULTS.embed_batch_size,
    precision: Precision = DEFAULTS.precision,
    json_out: Json = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV (path,rank,model,cosine,prediction).")] = False,
) -> None:
    """1:N identification: rank the gallery's models per image; "unknown model" below the threshold."""
    from fpforensics.api import identify as run_identify
    from fpforensics.errors import InputError

    if json_out and csv_out:
        raise InputError("choose one of --json and --csv")
    with common.bar("identifying") as bar:
        result = run_identify(inputs, gallery, extractor, top_k, threshold, grid, batch_size, common.get_device(),
                              precision, on_start=bar.start, on_image=bar.advance, on_skip=bar.skipped)
    render.identified(result, json_out, csv_out)


def verify(
    a: Annotated[Path, typer.Argument(metavar="A", help="First image (or a folder: its images' mean embedding).")],
    b: Annotated[Path, typer.Argument(metavar="B", help="Second image (or folder).")],
    threshold: Annotated[float | None, typer.Option(
        "--threshold", "-t", show_default=f"{DEFAULTS.verify_threshold}, the paper's; extractor-specific",
        help="Same-model threshold on the cosine.")] = None,
    extractor: Extractor = DEFAULTS.extractor,
    grid: Grid = DEFAULTS.grid,
    batch_size: BatchSize = DEFAULTS.embed_batch_size,
    precision: Precision = DEFAULTS.precision,
    json_out: Json = False,
) -> None:
    """1:1 verification: cosine similarity of two images and a same-model / different-model verdict."""
    from fpforensics.api import verify as run_verify

    with common.bar("verifying") as bar:
        result = run_verify(a, b, extractor, threshold, grid, batch_size, common.get_device(), precision,
                            on_start=bar.start, on_image=bar.advance, on_skip=bar.skipped)
    render.verified(a, b, result, json_out)
