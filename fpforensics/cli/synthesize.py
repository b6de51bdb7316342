"""`fpt synthesize`: train the pool of synthetic models (METHOD 1.2), packed, resumable, shardable."""

from __future__ import annotations

from pathlib import Path

import typer

from fpforensics.cli import common


def synthesize(
    out: Path = typer.Option(..., "--out", "-o", help="Pool file to write (.h5). With --shard, may be a folder: "
                             "the shard file pool-shard-I-of-N.h5 goes inside."),
    real: list[Path] = typer.Option(None, "--real", help="Real images (files or folders) to reconstruct."),
    arch_grid: str = typer.Option("all", "--arch-grid", help="'all', or KEY=v1|v2 terms (K L U A N S), e.g. "
                                  "U=deconv,A=relu|tanh, or a list of codes."),
    seeds: int = typer.Option(20, "--seeds", help="Models per architecture (seeds 0..N-1). Paper: 20."),
    eta: float = typer.Option(0.005, "--eta", help="Stop a model at this reconstruction loss (paper: 0.005)."),
    loss: str = typer.Option("l2", "--loss", help="Reconstruction loss compared with eta: l2 (MSE) | l1."),
    max_steps: int = typer.Option(1000, "--max-steps", help="Step budget for models that never reach eta."),
    batch_size: int = typer.Option(8, "--batch-size", help="Real crops per step (all models of a pack see them)."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    data_seed: int = typer.Option(0, "--data-seed", help="Seed of the stream of real crops."),
    crop: int = typer.Option(128, "--crop", help="Training crop size in pixels (the models are fully convolutional; "
                             "64 is about 3x cheaper per step on CPU). Batch-norm statistics are always measured at 128."),
    plateau_window: int = typer.Option(0, "--plateau-window", help="Also stop a model whose mean loss improved by "
                                       "less than 2%% over this many steps (converged); 0 = off."),
    precision: str = typer.Option("auto", "--precision", help="auto | fp32 | bf16. auto: bf16 autocast only where "
                                  "the hardware runs bf16 natively (CUDA, CPUs with AVX-512 BF16/AMX)."),
    pack_size: int = typer.Option(0, "--pack-size", help="Models trained together (0: all seeds of an "
                                  "architecture on CUDA, 8 on CPU)."),
    backend: str = typer.Option("auto", "--backend", help="auto | grouped (grouped convs, GPU) | looped (CPU)."),
    shard: str = typer.Option(None, "--shard", help="Build part i of n (i/n); default from RANK/WORLD_SIZE or "
                              "SLURM_PROCID/SLURM_NTASKS, else the whole grid."),
    merge: list[Path] = typer.Option(None, "--merge", help="Instead of training: merge these pool files/folders "
                                     "(e.g. shard files) into --out."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Train the synthetic-model pool: every architecture of the grid x seeds, stopped at eta."""
    from fpforensics.errors import InputError
    from fpforensics.io.store import check_writable

    if merge:
        from fpforensics.synthesis.pool import merge_pools

        check_writable(out)
        pool = merge_pools(list(merge), out)
        n_eta = sum(e.reached_eta for e in pool.entries)
        if json_out:
            common.emit_json({"out": str(out), "models": len(pool), "reached_eta": n_eta,
                              "fingerprint": pool.fingerprint})
        else:
            common.out.print(f"merged {len(merge)} input(s) into {out}: {len(pool)} models "
                             f"({n_eta} reached eta), fingerprint {pool.fingerprint}")
        return

    from fpforensics.synthesis.architectures import parse_grid
    from fpforensics.synthesis.training import RealData, TrainConfig, parse_shard, synthesize_pool

    # Every check before any work: grid, settings, shard, output, real images.
    specs = parse_grid(arch_grid)
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1 (got {seeds})")
    cfg = TrainConfig(eta=eta, loss=loss.lower(), max_steps=max_steps, batch_size=batch_size, lr=lr,
                      data_seed=data_seed, crop=crop, plateau_window=plateau_window)
    cfg.validate()
    shard_i, shard_n = parse_shard(shard)
    if out.is_dir() and shard_n > 1:
        out = out / f"pool-shard-{shard_i:03d}-of-{shard_n:03d}.h5"
    check_writable(out)
    if not real:
        raise InputError("--real is required: real images for the models to reconstruct")
    device = common.get_device()
    from fpforensics.synthesis.training import resolve_backend

    resolve_backend(backend, device)
    from fpforensics.device import resolve_precision

    precision = resolve_precision(precision, device)
    data = RealData.from_folder(real, max(cfg.crop, cfg.calib_crop), on_skip=lambda p, why: common.warn(f"skipped {why}"))
    common.info(f"real images: {len(data.images)} (fingerprint {data.fingerprint}); "
                f"{len(specs)} architectures x {seeds} seeds; shard {shard_i}/{shard_n}; precision {precision}")

    import time

    with common.progress(transient=False) as bar:
        state = {"task": None, "t0": time.perf_counter(), "n": 0}

        def on_start(total: int, done: int) -> None:
            state["task"] = bar.add_task("models", total=total, completed=done, rate="")
            if done:
                common.info(f"resuming: {done} of {total} models already finished")

        def on_model(_m) -> None:
            state["n"] += 1
            rate = state["n"] / max(time.perf_counter() - state["t0"], 1e-9)
            bar.update(state["task"], advance=1, rate=f"{rate:.3f} models/s")

        summary = synthesize_pool(data, out, specs, range(seeds), cfg, pack_size=pack_size or None, device=device,
                                  shard=(shard_i, shard_n), backend=backend, on_start=on_start, on_model=on_model,
                                  precision=precision)
    result = summary.to_dict()
    if json_out:
        common.emit_json(result)
        return
    from rich.table import Table

    table = Table(title=f"Synthetic models -> {out}")
    for col in ("models", "trained now", "reached eta", "mean final loss", "mean eval loss", "mean steps",
                "time (s)", "models/s"):
        table.add_column(col, justify="right")

    def fmt(v, spec=".4f"):
        return "-" if v is None else format(v, spec)

    table.add_row(str(summary.planned), str(result["trained"]), f"{result['reached_eta']}/{result['trained']}",
                  fmt(result["mean_final_loss"]), fmt(result["mean_eval_loss"]), fmt(result["mean_steps"], ".1f"),
                  f"{summary.seconds:.1f}", f"{summary.models_per_second:.3f}")
    common.out.print(table)
    if summary.not_reached:
        shown = ", ".join(summary.not_reached[:10]) + (" ..." if len(summary.not_reached) > 10 else "")
        common.warn(f"{len(summary.not_reached)} model(s) did not reach eta={eta} within {max_steps} steps "
                    f"(kept, marked reached_eta=False): {shown}")
