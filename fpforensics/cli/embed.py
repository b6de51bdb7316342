"""CLI: ``fpt embed`` (fingerprints of images, shardable), ``fpt identify`` (1:N) and ``fpt verify`` (1:1)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fpforensics.cli import common, render
from fpforensics.cli.options import (
    DEFAULTS,
    BatchSize,
    Extractor,
    Gallery,
    Grid,
    Images,
    Json,
    MaxFalseMatchRate,
    Overwrite,
    PhotoCut,
    Precision,
    Shard,
    Threshold,
    WithBuiltin,
)


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
    json_out: Annotated[bool, typer.Option("--json", help="Print each image's residual-signal check and provenance "
                                                          "(sha256, tool, extractor, time) as JSON.")] = False,
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
                      on_start=bar.start, on_image=bar.advance, on_skip=bar.skipped, signal=True)
    prov = image_provenance(e)
    save_embeddings(out, EmbeddingSet(e.embeddings, [str(p) for p in e.paths], e.extractor.identity, extractor, grid,
                                      e.positions, part if part[1] > 1 else None,
                                      sha256=[p["image_sha256"] for p in prov],
                                      signal=[c.reason for c in e.signal or []],
                                      extractor_sha256=prov[0]["extractor_sha256"] if prov else None), overwrite)
    render.embedded_images(e, out, prov, json_out)


def image_provenance(e) -> list[dict]:
    """Provenance of each embedded image (no operating point: embedding gives no verdict)."""
    from fpforensics.verdict.provenance import Provenance
    from fpforensics.verdict.results import extractor_ref

    ref = extractor_ref(e.extractor)
    return [Provenance.for_image(p, ref).to_dict() for p in e.paths]


def identify(
    inputs: Images,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Models listed per image.")] = DEFAULTS.top_k,
    threshold: Threshold = None,
    max_false_match_rate: MaxFalseMatchRate = None,
    photo_cut: PhotoCut = None,
    gallery: Gallery = None,
    with_builtin: WithBuiltin = False,
    extractor: Extractor = DEFAULTS.extractor,
    grid: Grid = DEFAULTS.grid,
    batch_size: BatchSize = DEFAULTS.embed_batch_size,
    precision: Precision = DEFAULTS.precision,
    json_out: Json = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV: one row per ranked model, with the verdict "
                                          "and the provenance.")] = False,
    report: Annotated[Path | None, typer.Option("--report", show_default="none", help="Also write a self-contained "
                                                "HTML report (thumbnails, residual spectra, ranking bars, verdicts, "
                                                "provenance) to this file.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """1:N identification: rank the gallery's models per image and give a verdict: attributed, ambiguous,
    unknown (also "closest to camera photographs") or insufficient signal.

    Without --gallery and without a gallery of yours, the built-in reference gallery is used.
    """
    from fpforensics.api import identify as run_identify
    from fpforensics.errors import InputError
    from fpforensics.io.store import check_output
    from fpforensics.verdict.html_report import REPORT_KIND

    if json_out and csv_out:
        raise InputError("choose one of --json and --csv")
    if report is not None:
        check_output(report, REPORT_KIND, overwrite)
    with common.bar("identifying") as bar:
        result = run_identify(inputs, gallery, extractor, top_k, threshold, grid, batch_size, common.get_device(),
                              precision, on_start=bar.start, on_image=bar.advance, on_skip=bar.skipped,
                              max_false_match_rate=max_false_match_rate, with_builtin=with_builtin,
                              photo_cut=photo_cut)
    render.identified(result, json_out, csv_out)
    if report is not None:
        from fpforensics.api import write_report

        common.info(f"report: {write_report(result, report, overwrite=overwrite)}")


def verify(
    a: Annotated[Path, typer.Argument(metavar="A", help="First image (or a folder: its images' mean embedding).")],
    b: Annotated[Path | None, typer.Argument(metavar="B", show_default=False,
                                             help="Second image (or folder); omit with --model.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", show_default="none", help="Instead of B: an enrolled "
                                              "model (made by it or not, against its fingerprint).")] = None,
    gallery: Gallery = None,
    with_builtin: WithBuiltin = False,
    threshold: Threshold = None,
    max_false_match_rate: MaxFalseMatchRate = None,
    photo_cut: PhotoCut = None,
    extractor: Extractor = DEFAULTS.extractor,
    grid: Grid = DEFAULTS.grid,
    batch_size: BatchSize = DEFAULTS.embed_batch_size,
    precision: Precision = DEFAULTS.precision,
    json_out: Json = False,
) -> None:
    """1:1 verification: same model or not, for two images (A B) or an image and an enrolled model (A --model NAME).

    The verdict is "same model", "different models" (also when a side is closest to camera
    photographs) or "insufficient signal".
    """
    from fpforensics.api import verify as run_verify
    from fpforensics.api import verify_model
    from fpforensics.errors import InputError

    if (b is None) == (model is None):
        raise InputError("give a second image B, or --model NAME (an enrolled model), not both")
    if model is None and (gallery is not None or with_builtin or photo_cut is not None):
        raise InputError("--gallery, --with-builtin and --photo-cut go with --model")
    with common.bar("verifying") as bar:
        if model is not None:
            result = verify_model(a, model, gallery, extractor, threshold, grid, batch_size, common.get_device(),
                                  precision, on_start=bar.start, on_image=bar.advance, on_skip=bar.skipped,
                                  max_false_match_rate=max_false_match_rate, with_builtin=with_builtin,
                                  photo_cut=photo_cut)
        else:
            result = run_verify(a, b, extractor, threshold, grid, batch_size, common.get_device(), precision,
                                on_start=bar.start, on_image=bar.advance, on_skip=bar.skipped,
                                max_false_match_rate=max_false_match_rate)
    render.verified(a, b, result, json_out)
