"""CLI: ``fpt eval``, the papers' evaluation protocols side by side, with report.json, tables and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fpforensics.cli import common, render
from fpforensics.cli.options import DEFAULTS, BatchSize, Extractors, Grid, Precision, Seed


def evaluate(
    dataset: Annotated[Path | None, typer.Argument(metavar="DATASET", show_default=False, help="Folder with one "
                                                   "subfolder of images per generative model (omit with --pool).")
                       ] = None,
    extractor: Extractors = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (report.json, PNG figures, cache/).")
                   ] = Path("report"),
    shots: Annotated[int, typer.Option("--shots", help="Images per model building its gallery fingerprint "
                                       "(paper: 10).")] = DEFAULTS.shots,
    repeats: Annotated[int, typer.Option("--repeats", help="Seeded repetitions of every split (mean ± std).")
                       ] = DEFAULTS.eval_repeats,
    pairs: Annotated[int, typer.Option("--pairs", help="Verification pairs (half same-model), test and calibration.")
                     ] = DEFAULTS.eval_pairs,
    seed: Seed = DEFAULTS.seed,
    grid: Grid = DEFAULTS.grid,
    max_images: Annotated[int | None, typer.Option("--max-images-per-model", "-n", min=1, show_default="all",
                                                   help="Use at most this many images per model (seeded choice).")
                          ] = None,
    perturb: Annotated[list[str] | None, typer.Option("--perturb", "-p", show_default="clean only", help="Robustness "
                                                      "sweep, repeatable: jpeg:100,90,80 (quality), resize:0.5 "
                                                      "(factor, bicubic) or crop:1.0,0.9 (area).")] = None,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Skip the PNG figures (numbers only).")] = False,
    batch_size: BatchSize = DEFAULTS.embed_batch_size,
    precision: Precision = DEFAULTS.precision,
    pool: Annotated[Path | None, typer.Option("--pool", show_default="none", help="Synthetic benchmark: pool file from "
                                              "`fpt synthesize`.")] = None,
    real: Annotated[Path | None, typer.Option("--real", show_default="none", help="With --pool: real images fed to the "
                                              "held-out models. With --manifpt: the real images whose manifold "
                                              "defines the artifacts.")] = None,
    manifpt: Annotated[list[str] | None, typer.Option("--manifpt", show_default="none", help="Also score the ManiFPT "
                                                      "attributor in this space, rgb | freq (repeatable; needs --real; "
                                                      "identification only).")] = None,
    holdout: Annotated[str | None, typer.Option("--holdout", show_default="none", help="With --pool: held-out "
                                                "architectures (grid expression, e.g. U=deconv) or 'checkpoint' (the "
                                                "held-out ids stored in the first --extractor checkpoint).")] = None,
    pool_images: Annotated[int, typer.Option("--pool-images", min=2, help="With --pool: images per held-out model.")
                           ] = DEFAULTS.pool_images,
    pool_models: Annotated[int, typer.Option("--pool-models", min=2, help="With --pool: held-out models at most.")
                           ] = DEFAULTS.pool_models,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the report (report.json and figures) that "
                                            "an earlier fpt eval wrote to --out; files fpt did not write are never "
                                            "replaced.")] = False,
    real_photos: Annotated[list[Path] | None, typer.Option("--real-photos", show_default="none", help="Real "
                                                           "photographs (files/folders, repeatable) scored as unknowns: "
                                                           "rejection rate and open-set AUROC at the extractor's "
                                                           "operating point.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print report.json on stdout instead of tables.")] = False,
) -> None:
    """Identification, verification, embedding quality, open-set and robustness of extractors on a dataset."""
    import shlex
    import sys

    from fpforensics.perturbations import parse_perturbations
    from fpforensics.workflows import evaluate as run_evaluate

    common.on_interrupt(lambda: f"no report written; the embedding passes finished so far are cached in {out / 'cache'} and "
                                f"reused by: {common.command_line()}")
    with common.tasks() as add:
        result = run_evaluate(
            dataset, list(extractor or []), out, pool, real, holdout, list(manifpt or []), pool_images, pool_models,
            common.get_device(), progress=add, warn=common.warn, info=common.info,
            extra={"command": " ".join(shlex.quote(a) for a in ["fpt", *sys.argv[1:]])}, overwrite=overwrite, shots=shots,
            repeats=repeats, pairs=pairs, seed=seed, grid=grid, max_images_per_model=max_images,
            perturbations=parse_perturbations(perturb or []), batch_size=batch_size, precision=precision,
            figures=not no_figures, real_photos=[str(p) for p in real_photos or []])
    render.evaluated(result, out, json_out)
