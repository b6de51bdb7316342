"""`fpt eval`: the papers' evaluation protocols side by side, with report.json, tables and figures."""

from __future__ import annotations

from pathlib import Path

import typer

from fpforensics.cli import common

EXTRACTOR_HELP = ("default | spectral | pixels | PATH to a checkpoint from `fpt train` (repeatable). "
                  "The spectral and pixels baselines are always added.")


def evaluate(
    dataset: Path = typer.Argument(None, help="Folder with one subfolder of images per generative model "
                                              "(omit with --pool)."),
    extractor: list[str] = typer.Option(None, "--extractor", "-e", help=EXTRACTOR_HELP, show_default=False),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Report folder (report.json, PNG figures, cache/)."),
    shots: int = typer.Option(10, "--shots", help="Images per model building its gallery fingerprint (paper: 10)."),
    repeats: int = typer.Option(5, "--repeats", help="Seeded repetitions of every split (mean ± std)."),
    pairs: int = typer.Option(10000, "--pairs", help="Verification pairs (half same-model), test and calibration."),
    seed: int = typer.Option(0, "--seed", help="Seed of splits, pairs, crops and t-SNE."),
    grid: int = typer.Option(3, "--grid", min=1, max=16, help="Sliding window: N x N grid of 128x128 crops."),
    max_images: int = typer.Option(None, "--max-images-per-model", "-n", min=1, show_default=False,
                                   help="Use at most this many images per model (seeded choice) to keep runs short."),
    perturb: list[str] = typer.Option(None, "--perturb", "-p", show_default=False,
                                      help="Robustness sweep, repeatable: jpeg:100,90,80 (quality), resize:0.5 (factor, "
                                           "bicubic) or crop:1.0,0.9 (area share)."),
    no_figures: bool = typer.Option(False, "--no-figures", help="Skip the PNG figures (numbers only)."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1, help="Crops per forward pass."),
    pool: Path = typer.Option(None, "--pool", help="Synthetic benchmark: pool file from `fpt synthesize`.",
                              show_default=False),
    real: Path = typer.Option(None, "--real", help="With --pool: folder of real images fed to the held-out models. "
                                                   "With --manifpt: the real images whose manifold defines the "
                                                   "artifacts.", show_default=False),
    manifpt: list[str] = typer.Option(None, "--manifpt", show_default=False,
                                      help="Also score the ManiFPT attributor (artifact classifier) in this space, "
                                           "rgb | freq (repeatable; needs --real; identification only)."),
    holdout: str = typer.Option(None, "--holdout", show_default=False,
                                help="With --pool: held-out architectures (grid expression, e.g. U=deconv) or "
                                     "'checkpoint' (the held-out model ids stored in the first --extractor checkpoint)."),
    pool_images: int = typer.Option(20, "--pool-images", min=2, help="With --pool: images per held-out model."),
    pool_models: int = typer.Option(20, "--pool-models", min=2, help="With --pool: at most this many held-out models."),
    json_out: bool = typer.Option(False, "--json", help="Print report.json to stdout instead of tables."),
) -> None:
    """Identification, verification, embedding quality, open-set and robustness of extractors on a dataset."""
    import shlex
    import sys

    from rich.markup import escape

    from fpforensics.errors import InputError
    from fpforensics.evaluation.report import EvalDataset, EvalSettings, resolve_extractors, rich_tables, run_report
    from fpforensics.perturbations import parse_perturbations

    settings = EvalSettings(shots=shots, repeats=repeats, pairs=pairs, seed=seed, grid=grid,
                            max_images_per_model=max_images, perturbations=parse_perturbations(perturb or []),
                            batch_size=batch_size, figures=not no_figures)
    settings.validate()
    if manifpt:
        from fpforensics.evaluation.manifpt import parse_spaces

        parse_spaces(manifpt)
        if real is None:
            raise InputError("--manifpt needs --real DIR (the real images whose manifold defines the artifacts)")
        if not real.is_dir():
            raise InputError(f"--real {real}: no such folder")
        if pool is not None:
            raise InputError("--manifpt is for a DATASET folder, not --pool")
    if pool is None and (holdout is not None or (real is not None and not manifpt)):
        raise InputError("--holdout goes with --pool, and --real with --pool or --manifpt")
    if pool is not None and dataset is not None:
        raise InputError("give either DATASET or --pool, not both")
    if pool is None and dataset is None:
        raise InputError("missing DATASET (a folder with one subfolder per model), or use --pool")
    device = common.get_device()
    entries = resolve_extractors(list(extractor or []), device, warn=common.warn)
    common.info("extractors: " + ", ".join(f"{e.label} = {e.identity}" for e in entries))
    extra = None
    if pool is not None:
        from fpforensics.evaluation.synthetic import build_pool_dataset

        if real is None or holdout is None:
            raise InputError("--pool needs --real DIR and --holdout (grid expression or 'checkpoint')")
        with common.progress() as bar:
            task = bar.add_task("synthesizing held-out images", total=None, rate="")
            dataset, extra = build_pool_dataset(
                pool, real, holdout, out, [e.spec for e in entries], images_per_model=pool_images,
                max_models=pool_models, seed=seed, device=device,
                on_total=lambda n: bar.update(task, total=n), on_images=lambda n: bar.advance(task, n))
        common.info(f"synthetic benchmark: {extra['synthetic_benchmark']['models']} held-out models "
                    f"written to {escape(str(dataset))}")
    extra = {**(extra or {}), "command": " ".join(shlex.quote(a) for a in ["fpt", *sys.argv[1:]])}
    ds = EvalDataset.from_folder(dataset, settings, warn=common.warn)
    common.info(f"dataset: {len(ds.names)} models, {len(ds.paths)} images")
    with common.progress() as bar:
        def make_task(what: str, total: int):
            task = bar.add_task(what, total=total, rate="")
            return lambda n: bar.advance(task, n)

        result = run_report(ds, entries, settings, out, device, progress=make_task, warn=common.warn, extra=extra,
                            manifpt=list(manifpt or []), real=real)
    if json_out:
        common.emit_json(result.report)
        return
    for table in rich_tables(result.report):
        common.out.print(table)
    common.info(f"report: {escape(str(result.path))}"
                + (f"; {len(result.figures)} figures in {escape(str(out))}" if result.figures else ""))
