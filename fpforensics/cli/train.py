"""`fpt train denoiser` and `fpt train extractor`: the project trains every weight file it uses."""

from __future__ import annotations

from pathlib import Path

import typer

from fpforensics.cli import common

train_app = typer.Typer(cls=common.FptGroup, help="Train the denoiser and the fingerprint extractor.",
                        no_args_is_help=True)


@train_app.command("denoiser")
def denoiser(
    real: list[Path] = typer.Option(..., "--real", "-r", help="Real photos: files or folders (repeatable)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output weights file (.pt, kind 'dncnn')."),
    sigma: float = typer.Option(1.0, "--sigma", help="Gaussian noise std on the 0..255 scale (paper: 1)."),
    sigma_max: float = typer.Option(0.0, "--sigma-max", help="Blind training: each patch's noise std drawn in "
                                    "[--sigma, --sigma-max] (0..255 scale); 0 = off."),
    steps: int = typer.Option(3000, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Patches per step."),
    patch: int = typer.Option(40, "--patch", help="Training patch side (DnCNN paper: 40)."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate (cosine decay to 1% of it)."),
    depth: int = typer.Option(17, "--depth", help="Conv layers (paper: 17)."),
    channels: int = typer.Option(64, "--channels", help="Feature channels (paper: 64)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of photos held out for PSNR."),
    val_crops: int = typer.Option(64, "--val-crops", help="Held-out 64x64 crops the PSNR is measured on."),
    save_every: int = typer.Option(200, "--save-every", help="Steps between resumable checkpoints."),
    seed: int = typer.Option(0, "--seed", help="Random seed (split, patches, noise, init)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run written to --out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train the DnCNN residual denoiser (METHOD 1.1) on real photos; report held-out PSNR gain."""
    from fpforensics.extractor.denoiser_training import DenoiserConfig, train_denoiser
    from fpforensics.io.images import list_images

    cfg = DenoiserConfig(sigma=sigma, sigma_max=sigma_max, depth=depth, channels=channels, patch=patch,
                         batch_size=batch_size,
                         steps=steps, lr=lr, val_fraction=val_fraction, val_crops=val_crops, save_every=save_every,
                         seed=seed)
    cfg.validate()
    paths = list_images(real)
    device = common.get_device()
    common.info(f"{len(paths)} real photos; DnCNN depth {depth}, {channels} channels, sigma {sigma}/255, "
                f"{patch}x{patch} patches x {batch_size}, {steps} steps")
    with common.progress() as bar:
        task = bar.add_task("denoiser", total=steps, rate="")

        def on_step(step: int, loss: float) -> None:
            bar.update(task, completed=step, rate=f"loss {loss:.3f}")

        result = train_denoiser(paths, out, cfg, device=device, resume=resume, overwrite=overwrite, on_step=on_step,
                                on_skip=lambda p, why: common.warn(f"skipped {why}"),
                                on_start=lambda s: bar.update(task, completed=s))
    if json_out:
        common.emit_json(result.to_dict())
        return
    common.out.print(f"wrote {result.path}: {result.steps} steps, held-out PSNR {result.psnr_noisy:.2f} dB noisy -> "
                     f"{result.psnr_denoised:.2f} dB denoised (gain {result.psnr_gain:+.2f} dB) "
                     f"on {result.val_images} held-out photo(s)", highlight=False)
    if result.levels:
        from rich.table import Table

        table = Table(title="held-out PSNR (dB) by noise level: the denoiser pays off where it beats the median")
        for col in ("sigma (0..255)", "noisy", "median 3x3", "DnCNN", "DnCNN - median"):
            table.add_column(col, justify="right")
        for r in result.levels:
            table.add_row(f"{r['sigma']:g}", f"{r['noisy']:.2f}", f"{r['median3x3']:.2f}", f"{r['dncnn']:.2f}",
                          f"{r['dncnn'] - r['median3x3']:+.2f}")
        common.out.print(table)


@train_app.command("extractor")
def extractor(
    pool: Path = typer.Option(..., "--pool", help="Synthetic pool from `fpt synthesize` (.h5 or shard folder)."),
    real: list[Path] = typer.Option(..., "--real", "-r", help="Real photos: files or folders (repeatable)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output checkpoint (.pt, kind 'extractor')."),
    preset: str = typer.Option("paper", "--preset", help="paper (METHOD 1.3 settings) | tiny (~1 min on CPU)."),
    backbone: str | None = typer.Option(None, "--backbone", help="resnet50 (paper) | resnet34 | resnet18."),
    embedding_dim: int | None = typer.Option(None, "--embedding-dim", help="Projection size (512); 0 = pooled feature."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs (paper: 40)."),
    steps_per_epoch: int | None = typer.Option(None, "--steps-per-epoch",
                                               help="Steps per epoch; 0 = one pass over the training models."),
    models_per_batch: int | None = typer.Option(None, "--p", help="Models per batch (P); batch = P x K."),
    images_per_model: int | None = typer.Option(None, "--k", help="Images per model per batch (K)."),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b",
                                          help="Batch size (paper: 200): sets P = batch / K."),
    lr: float | None = typer.Option(None, "--lr", help="AdamW peak learning rate (paper: 1e-4), warm-up + cosine."),
    margin: float | None = typer.Option(None, "--margin", help="Triplet margin (paper: 0.3)."),
    denoiser: str | None = typer.Option(None, "--denoiser",
                                        help="Residual: default | median | none (spectrum of the image itself) | "
                                             "dncnn | PATH to DnCNN weights."),
    holdout_archs: str | None = typer.Option(None, "--holdout-archs",
                                             help="Architectures held out for zero-shot validation: a count or a "
                                                  "grid expression (e.g. U=deconv)."),
    holdout_seeds: int | None = typer.Option(None, "--holdout-seeds",
                                             help="Last N seeds of the other architectures held out."),
    max_train_models: int | None = typer.Option(None, "--max-train-models", help="Use at most N training models."),
    max_val_models: int | None = typer.Option(None, "--max-val-models", help="Validate on at most N held-out models."),
    no_augment: bool = typer.Option(False, "--no-augment", help="No augmentation at all (crop, resize, JPEG)."),
    jpeg_p: float | None = typer.Option(None, "--jpeg-p", help="Share of images re-encoded as JPEG [default: 0.5]."),
    jpeg_min_quality: int | None = typer.Option(None, "--jpeg-min-quality",
                                                help="JPEG quality is drawn from this..100 [default: 60]."),
    crop_p: float | None = typer.Option(None, "--crop-p", help="Share of images randomly cropped and resized back "
                                        "[default: 0.5]."),
    resize_p: float | None = typer.Option(None, "--resize-p", help="Share of images resized by a random factor "
                                          "0.5..2 with a random kernel (nearest, bilinear, bicubic, lanczos, box) "
                                          "[default: 0]."),
    lowres_p: float | None = typer.Option(None, "--lowres-p", help="Share of batches generated at 64-112 px and "
                                          "brought up to 128 as identification does for small images [default: 0]."),
    precision: str = typer.Option("auto", "--precision", help="auto | fp32 | bf16. auto: bf16 autocast only where "
                                  "the hardware runs bf16 natively (CUDA, CPUs with AVX-512 BF16/AMX)."),
    real_class: bool = typer.Option(False, "--real-class", help="Train real photos (through no synthetic model) as "
                                    "one more class in every batch, so that they embed apart from generators."),
    init: Path | None = typer.Option(
        None, "--init", help="Weights to start from: torchvision ResNet weights, or an fpt extractor (warm start)."),
    half_weights: bool = typer.Option(False, "--half-weights", help="Store the final weights in fp16 (half size)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    log: Path | None = typer.Option(None, "--log", help="JSONL log of every epoch (default: OUT with .jsonl)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run written to --out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train the fingerprint extractor on synthetic models (METHOD 1.3), with zero-shot validation.

    Launch with torchrun for several GPUs / nodes:
    `torchrun --nproc_per_node 4 $(which fpt) train extractor ...` (P x K is per process).
    """
    from fpforensics.errors import InputError
    from fpforensics.extractor.training import TrainCallbacks, make_config, open_pool, train_extractor
    from fpforensics.io.images import list_images

    if batch_size is not None:
        k = images_per_model or (3 if preset == "tiny" else 4)
        if batch_size % k or batch_size // k < 2:
            raise InputError(f"--batch-size {batch_size} must be a multiple of K={k} with at least 2 models")
        if models_per_batch is not None and models_per_batch * k != batch_size:
            raise InputError("give --batch-size or --p, not conflicting values of both")
        models_per_batch, images_per_model = batch_size // k, k
    cfg = make_config(preset, backbone=backbone, embedding_dim=embedding_dim, epochs=epochs,
                      steps_per_epoch=steps_per_epoch, p=models_per_batch, k=images_per_model, lr=lr, margin=margin,
                      residual=denoiser, holdout_archs=holdout_archs, holdout_seeds=holdout_seeds,
                      max_train_models=max_train_models, max_val_models=max_val_models,
                      augment=False if no_augment else None, half_weights=half_weights or None, seed=seed,
                      jpeg_p=jpeg_p, jpeg_min_quality=jpeg_min_quality, crop_p=crop_p, resize_p=resize_p,
                      lowres_p=lowres_p, real_class=real_class or None)
    paths = list_images(real)
    pool = open_pool(pool)  # a missing or foreign pool fails here, before any work is announced
    device = common.get_device()
    common.info(f"{len(paths)} real photos; {cfg.backbone}, batch {cfg.p} models x {cfg.k} images, "
                f"{cfg.epochs} epochs, residual {cfg.residual}, augmentation {'on' if cfg.augment else 'off'}")
    with common.progress(transient=False) as bar:
        task = bar.add_task("extractor", total=None, rate="")

        def on_start(total: int, done: int) -> None:
            bar.update(task, total=total, completed=done)

        def on_step(step: int, s: dict) -> None:
            bar.update(task, completed=step, rate=f"loss {s['loss']:.3f} lr {s['lr']:.1e} {s['images_per_s']:.0f} img/s")

        def on_epoch(r: dict) -> None:
            if r["epoch"] == 0:
                common.err.print(f"before training: zero-shot {cfg.val_shots}-shot acc {r['val_acc']:.1%} on "
                                 f"{r['val_models']} held-out models (chance {r['val_chance']:.1%})", highlight=False)
                return
            parts = [f"epoch {r['epoch']}/{cfg.epochs}", f"loss {r['loss']:.3f}", f"ce {r['ce']:.3f}",
                     f"triplet {r['triplet']:.3f}", f"valid triplets {r['valid_triplets']:.0%}",
                     f"zero-shot {cfg.val_shots}-shot acc {r['val_acc']:.1%} (chance {r['val_chance']:.1%}"]
            for name in ("arch", "seed"):
                if r.get(f"val_acc_unseen_{name}") is not None:
                    parts[-1] += f", unseen {name} {r[f'val_acc_unseen_{name}']:.1%}"
            parts[-1] += ")"
            common.err.print("  ".join(parts), highlight=False)

        result = train_extractor(pool, paths, out, cfg, device=device, resume=resume, overwrite=overwrite, init=init,
                                 precision=precision,
                                 log_path=log, callbacks=TrainCallbacks(
                                     on_start=on_start, on_step=on_step, on_epoch=on_epoch, warn=common.warn,
                                     on_skip=lambda p, why: common.warn(f"skipped {why}")))
    if json_out:
        common.emit_json(result.to_dict())
        return
    last = result.history[-1] if result.history else {}
    common.out.print(f"wrote {result.path} ({result.identity}): {result.epochs} epochs, zero-shot "
                     f"{cfg.val_shots}-shot identification {last.get('val_acc', float('nan')):.1%} on "
                     f"{last.get('val_models')} held-out models (chance {last.get('val_chance', float('nan')):.1%}); "
                     f"log {result.log_path}",
                     highlight=False)
