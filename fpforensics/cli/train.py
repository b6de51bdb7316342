"""CLI: ``fpt train denoiser`` and ``fpt train extractor``, the project trains every weight file it uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fpforensics.cli import common, render
from fpforensics.cli.options import DEFAULTS, Backbone, Denoiser, Json, Overwrite, Precision, Resume

train_app = typer.Typer(cls=common.FptGroup, help="Train the denoiser and the fingerprint extractor.",
                        no_args_is_help=True)
Real = Annotated[list[Path], typer.Option("--real", "-r", show_default=False,
                                          help="Real photos: files or folders (repeatable).")]
PRESET = "preset's"


def _opt(flag: str, help: str, default_shown: str = PRESET, *short: str):
    """A setting whose default comes from the chosen --preset (None here)."""
    return typer.Option(flag, *short, help=help, show_default=default_shown)


@train_app.command("denoiser", cls=common.FptCommand)
def denoiser(
    real: Real,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output weights file (.pt, kind 'dncnn').")],
    sigma: Annotated[float, typer.Option("--sigma", help="Gaussian noise std on the 0..255 scale (paper: 1).")
                     ] = DEFAULTS.denoiser_sigma,
    sigma_max: Annotated[float, typer.Option("--sigma-max", help="Blind training: each patch's noise std is drawn "
                                             "in [--sigma, --sigma-max] (0..255 scale); 0 = off.")] = 0.0,
    jpeg_p: Annotated[float, typer.Option("--jpeg-p", help="Share of patches JPEG-compressed before the noise is "
                                          "added, so block artifacts count as content (0..1).")] = 0.0,
    jpeg_min_quality: Annotated[int, typer.Option("--jpeg-min-quality", help="JPEG quality is drawn between "
                                                  "this and 100.")] = 60,
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps.")] = DEFAULTS.denoiser_steps,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Patches per step.")
                          ] = DEFAULTS.denoiser_batch_size,
    patch: Annotated[int, typer.Option("--patch", help="Training patch side in pixels (DnCNN paper: 40).")
                     ] = DEFAULTS.denoiser_patch,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (cosine decay to 1/100 of it).")
                  ] = DEFAULTS.denoiser_lr,
    depth: Annotated[int, typer.Option("--depth", help="Conv layers (paper: 17).")] = DEFAULTS.dncnn_depth,
    channels: Annotated[int, typer.Option("--channels", help="Feature channels (paper: 64).")] = DEFAULTS.dncnn_channels,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of photos held out for PSNR (0..1).")
                            ] = 0.1,
    val_crops: Annotated[int, typer.Option("--val-crops", help="Held-out 64x64 crops the PSNR is measured on.")] = 64,
    save_every: Annotated[int, typer.Option("--save-every", help="Steps between resumable checkpoints.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (split, patches, noise, init).")] = DEFAULTS.seed,
    resume: Resume = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
) -> None:
    """Train the DnCNN residual denoiser (METHOD 1.1) on real photos; report held-out PSNR gain."""
    from fpforensics.extractor.denoiser_training import DenoiserConfig, train_denoiser
    from fpforensics.images.decode import list_images

    cfg = DenoiserConfig(sigma=sigma, sigma_max=sigma_max, jpeg_p=jpeg_p, jpeg_min_quality=jpeg_min_quality,
                         depth=depth, channels=channels, patch=patch,
                         batch_size=batch_size,
                         steps=steps, lr=lr, val_fraction=val_fraction, val_crops=val_crops, save_every=save_every,
                         seed=seed)
    cfg.validate()
    paths = list_images(real)
    common.on_interrupt(lambda: _saved(out, "dncnn", "steps", steps))
    device = common.get_device()
    common.info(f"{len(paths)} real photos; DnCNN depth {depth}, {channels} channels, sigma {sigma}/255, "
                f"{patch}x{patch} patches x {batch_size}, {steps} steps")
    with common.bar("denoiser", steps) as bar:
        result = train_denoiser(
            paths, out, cfg, device=device, resume=resume, overwrite=overwrite, on_skip=common.skipped,
            on_step=lambda step, loss: bar.set(step, rate=f"loss {loss:.3f}"), on_start=bar.set)
    render.denoiser(result, json_out)


@train_app.command("extractor", cls=common.FptCommand)
def extractor(
    pool: Annotated[Path, typer.Option("--pool", help="Synthetic pool from `fpt synthesize` (.h5 or shard folder).")],
    real: Real,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output checkpoint (.pt, kind 'extractor').")],
    preset: Annotated[str, typer.Option("--preset", help="paper (METHOD 1.3 settings) | tiny (~1 min on CPU).")
                      ] = "paper",
    backbone: Backbone = None,
    embedding_dim: Annotated[int | None, _opt("--embedding-dim", "Embedding size; 0 = the pooled backbone feature.")
                             ] = None,
    epochs: Annotated[int | None, _opt("--epochs", "Epochs (paper: 40).")] = None,
    steps_per_epoch: Annotated[int | None, _opt("--steps-per-epoch", "Steps per epoch; 0 = one pass over the "
                                                "training models.")] = None,
    models_per_batch: Annotated[int | None, _opt("--p", "Models per batch (P); batch = P x K images.")] = None,
    images_per_model: Annotated[int | None, _opt("--k", "Images per model per batch (K).")] = None,
    batch_size: Annotated[int | None, _opt("--batch-size", "Images per batch (paper: 200): sets P = batch / K.",
                                           PRESET, "-b")] = None,
    lr: Annotated[float | None, _opt("--lr", "AdamW peak learning rate (paper: 1e-4), warm-up + cosine.")] = None,
    margin: Annotated[float | None, _opt("--margin", "Triplet margin on L2 distances (paper: 0.3).")] = None,
    denoiser: Denoiser = None,
    holdout_archs: Annotated[str | None, _opt("--holdout-archs", "Architectures held out for zero-shot validation: "
                                              "a count or a grid expression (e.g. U=deconv).")] = None,
    holdout_seeds: Annotated[int | None, _opt("--holdout-seeds", "Last N seeds of the other architectures held out.")
                             ] = None,
    max_train_models: Annotated[int | None, _opt("--max-train-models", "Use at most N training models (0 = all).")
                                ] = None,
    max_val_models: Annotated[int | None, _opt("--max-val-models", "Validate on at most N held-out models.")] = None,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="No augmentation at all (crop, resize, JPEG).")
                          ] = False,
    jpeg_p: Annotated[float | None, _opt("--jpeg-p", "Share of images re-encoded as JPEG (0..1).")] = None,
    jpeg_min_quality: Annotated[int | None, _opt("--jpeg-min-quality", "JPEG quality is drawn from this..100.")
                                ] = None,
    crop_p: Annotated[float | None, _opt("--crop-p", "Share of images randomly cropped and resized back (0..1).")
                      ] = None,
    resize_p: Annotated[float | None, _opt("--resize-p", "Share of images resized by a random factor 0.5..2 with a "
                                           "random kernel: nearest, bilinear, bicubic, lanczos, box (0..1).")] = None,
    lowres_p: Annotated[float | None, _opt("--lowres-p", "Share of batches generated at 64-112 px and brought up "
                                           "to 128 px as identification does for small images (0..1).")] = None,
    no_quantize: Annotated[bool, typer.Option("--no-quantize", help="Keep synthetic outputs as floats instead of "
                                              "rounding them to 8 bits as saved images are (ablation).")] = False,
    real_class: Annotated[bool, typer.Option("--real-class", help="Train real photos (through no synthetic model) "
                                             "as one more class in every batch, so that photographs embed apart "
                                             "from generators.")] = False,
    precision: Precision = "auto",
    init: Annotated[Path | None, typer.Option("--init", show_default="random weights", help="Weights to start "
                                              "from: torchvision ResNet weights, or an fpt extractor (warm start).")
                    ] = None,
    half_weights: Annotated[bool, typer.Option("--half-weights", help="Store the final weights in fp16 (half size).")
                            ] = False,
    seed: Annotated[int | None, _opt("--seed", "Random seed.")] = None,
    log: Annotated[Path | None, typer.Option("--log", show_default="OUT with .jsonl",
                                             help="JSONL log of every epoch.")] = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    no_calibration: Annotated[bool, typer.Option("--no-calibration", help="Do not store operating points fitted on "
                                                 "the held-out models at the end (`fpt calibrate` does it later).")
                              ] = False,
    json_out: Json = False,
) -> None:
    """Train the fingerprint extractor on synthetic models (METHOD 1.3), with zero-shot validation.

    Launch with torchrun for several GPUs / nodes:
    `torchrun --nproc_per_node 4 $(which fpt) train extractor ...` (P x K is per process).
    """
    from fpforensics.extractor.training import TrainCallbacks
    from fpforensics.workflows import train_extractor

    settings = dict(backbone=backbone, embedding_dim=embedding_dim, epochs=epochs, steps_per_epoch=steps_per_epoch,
                    p=models_per_batch, k=images_per_model, batch_size=batch_size, lr=lr, margin=margin,
                    residual=denoiser,
                    holdout_archs=holdout_archs, holdout_seeds=holdout_seeds, max_train_models=max_train_models,
                    max_val_models=max_val_models, augment=False if no_augment else None,
                    half_weights=half_weights or None, seed=seed, jpeg_p=jpeg_p, jpeg_min_quality=jpeg_min_quality,
                    crop_p=crop_p, resize_p=resize_p, lowres_p=lowres_p, real_class=real_class or None,
                    quantize=False if no_quantize else None)
    plan: dict = {}

    def on_plan(cfg, photos: int) -> None:
        plan["cfg"] = cfg
        common.info(render.training_plan(cfg, photos))

    common.on_interrupt(lambda: _saved(out, "extractor", "epoch", plan["cfg"].epochs if "cfg" in plan else None))
    hint = "a GPU (--device cuda; torchrun for several) would shorten it; --resume continues an interrupted run"
    with common.bar("extractor", transient=False, long_hint=hint) as bar:
        callbacks = TrainCallbacks(
            on_start=lambda total, done: bar.set(done, total=total),
            on_step=lambda step, s: bar.set(step, rate=render.step_rate(s)),
            on_epoch=lambda r: common.status(render.epoch_line(r, plan["cfg"])), warn=common.warn,
            on_skip=common.skipped)
        result = train_extractor(pool, real, out, preset, common.get_device(), resume, overwrite, init, log, callbacks,
                                 on_plan=on_plan, precision=precision, calibrate=not no_calibration, **settings)
    render.trained(result, plan["cfg"], json_out)


def _saved(out: Path, kind: str, unit: str, total: int | None) -> str:
    """After Ctrl-C: what the checkpoint at ``out`` holds, and the exact command that resumes (or restarts)."""
    from fpforensics.checkpoints import load_checkpoint
    from fpforensics.errors import FptError

    restart = common.command_line(drop=["--resume"])
    try:
        state = load_checkpoint(out, kind=kind) if out.is_file() else None
    except FptError:
        state = None
    if state is None:
        return f"no checkpoint saved yet; start again with: {restart}"
    done = state.get("epoch" if unit == "epoch" else "steps")
    of = f" of {total}" if total else ""
    if state.get("complete"):
        return f"{out} is complete ({unit} {done}{of})"
    resume = common.command_line(add=["--resume"], drop=["--overwrite"])
    return f"saved: {out} holds {unit} {done}{of}; resume with: {resume}"


@train_app.command("fuse", cls=common.FptCommand)
def fuse(
    extractors: Annotated[list[Path], typer.Argument(metavar="EXTRACTOR...", help="Two or more extractor checkpoints.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output checkpoint (.pt, kind 'extractor').")],
    weights: Annotated[str | None, typer.Option("--weights", "-w", show_default="equal", help="Comma-separated "
                                                "weight per extractor (rescaled to sum to 1), e.g. 0.75,0.25.")] = None,
    overwrite: Overwrite = False,
    json_out: Json = False,
) -> None:
    """Fuse extractors side by side into one (no training): cosine = weighted mean of theirs.

    For extractors that read different residuals (median, DnCNN): docs/accuracy.md. Run
    `fpt calibrate` on the result before using its verdicts.
    """
    from fpforensics.errors import InputError
    from fpforensics.extractor.fused import fuse_checkpoints

    try:
        values = [float(w) for w in weights.split(",")] if weights else None
    except ValueError:
        raise InputError(f"--weights '{weights}': expected comma-separated numbers, e.g. 0.75,0.25") from None
    fused = fuse_checkpoints(extractors, values, out, overwrite=overwrite)
    render.fused(fused, out, json_out)

