"""CLI: ``fpt synthesize``, the pool of synthetic models (METHOD 1.2): packed, resumable, shardable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from fpforensics.cli import common, render
from fpforensics.cli.options import DEFAULTS, Json, Precision, Shard


def synthesize(
    out: Annotated[Path, typer.Option("--out", "-o", help="Pool file to write (.h5). With --shard, may be a folder: "
                                      "the shard file pool-shard-III-of-NNN.h5 goes inside.")],
    real: Annotated[list[Path] | None, typer.Option("--real", show_default="none; required to train",
                                                    help="Real images (files or folders) to reconstruct.")] = None,
    arch_grid: Annotated[str, typer.Option("--arch-grid", help="'all', or KEY=v1|v2 terms (K L U A N S), e.g. "
                                           "U=deconv,A=relu|tanh, or a list of codes.")] = "all",
    seeds: Annotated[int, typer.Option("--seeds", help="Models per architecture (seeds 0..N-1). Paper: 20.")
                     ] = DEFAULTS.synth_seeds,
    eta: Annotated[float, typer.Option("--eta", help="Stop a model at this reconstruction loss (paper: 0.005).")
                   ] = DEFAULTS.synth_eta,
    loss: Annotated[str, typer.Option("--loss", help="Reconstruction loss compared with eta: l2 (MSE) | l1.")] = "l2",
    max_steps: Annotated[int, typer.Option("--max-steps", help="Step budget (steps) of a model that never reaches eta.")
                         ] = DEFAULTS.synth_max_steps,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Real crops per step (all models of a pack see them).")
                          ] = DEFAULTS.synth_batch_size,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = DEFAULTS.synth_lr,
    data_seed: Annotated[int, typer.Option("--data-seed", help="Seed of the stream of real crops.")] = 0,
    crop: Annotated[int, typer.Option("--crop", help="Training crop side in pixels (the models are fully "
                                      "convolutional; 64 is about 3x cheaper per step on CPU). Batch-norm statistics "
                                      "are always measured at 128.")] = DEFAULTS.crop_size,
    plateau_window: Annotated[int, typer.Option("--plateau-window", help="Also stop a model whose mean loss improved "
                                                "by less than 2% over this many steps (converged); 0 = off.")] = 0,
    precision: Precision = DEFAULTS.precision,
    pack_size: Annotated[int, typer.Option("--pack-size", help="Models trained together (0: all seeds of an "
                                           "architecture on CUDA, 8 on CPU).")] = 0,
    backend: Annotated[str, typer.Option("--backend", help="auto | grouped (grouped convs, GPU) | looped (CPU).")
                       ] = "auto",
    shard: Shard = None,
    merge: Annotated[list[Path] | None, typer.Option("--merge", show_default="none", help="Instead of training: merge "
                                                     "these pool files/folders (e.g. shard files) into --out.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="With --merge: replace an existing pool at --out (a "
                                            "pool also given to --merge is extended without it). Without --merge an "
                                            "existing pool is resumed and extended, never replaced.")] = False,
    json_out: Json = False,
) -> None:
    """Train the synthetic-model pool: every architecture of the grid x seeds, stopped at eta."""
    from fpforensics.sharding import parse_shard
    from fpforensics.workflows import synthesize as run_synthesize

    if merge:
        from fpforensics.synthesis.pool import merge_pools

        return render.merged_pool(merge, out, merge_pools(list(merge), out, overwrite), json_out)
    t0, done, where = time.perf_counter(), [0], {}

    def on_plan(p: dict) -> None:
        where["out"] = Path(p["out"])
        common.info(f"real images: {p['real_images']} (fingerprint {p['fingerprint']}); {p['architectures']} "
                    f"architectures x {p['seeds']} seeds; shard {p['shard'][0]}/{p['shard'][1]}; "
                    f"precision {p['precision']}")

    common.on_interrupt(lambda: _saved(where.get("out")))
    hint = ("a GPU (--device cuda) or --shard i/n on several machines (then --merge) would shorten it; the run can be "
            "stopped and resumed at any time")
    with common.bar("models", transient=False, long_hint=hint) as bar:
        def on_start(total: int, already: int) -> None:
            _plan_eta(bar, where["out"], arch_grid, seeds, parse_shard(shard), crop)
            if already:
                common.info(f"resuming: {already} of {total} models already finished")

        def on_model(m) -> None:
            done[0] += 1
            bar.advance(1, rate=f"{done[0] / max(time.perf_counter() - t0, 1e-9):.3f} models/s",
                        group=_group(m.spec))

        summary = run_synthesize(real, out, arch_grid, seeds, common.get_device(), parse_shard(shard), pack_size or None,
                                 backend, precision, on_plan=on_plan, on_start=on_start, on_model=on_model,
                                 on_skip=common.skipped, eta=eta, loss=loss.lower(), max_steps=max_steps,
                                 batch_size=batch_size, lr=lr, data_seed=data_seed, crop=crop,
                                 plateau_window=plateau_window)
    render.synthesized(summary, eta, max_steps, json_out)


def _group(spec) -> str:
    """Models timed together for the ETA: K and L set the cost (K=2 models are about 3.5x slower)."""
    return f"K{spec.K}L{spec.L}"


def _finished(out: Path) -> tuple[set, set]:
    """Keys of the models in the pool file ``out`` and in its parts folder (an unfinished run's packs)."""
    from fpforensics.synthesis.build import parts_dir
    from fpforensics.synthesis.pool import SyntheticPool

    found: list[set] = []
    for src in (out, parts_dir(out)):
        keys: set = set()
        if src.is_file() or (src.is_dir() and any(src.glob("[!.]*.h5"))):
            pool = SyntheticPool.open(src)
            keys = {e.key for e in pool.entries}
            pool.close()
        found.append(keys)
    return found[0], found[1]


def _plan_eta(bar, out: Path, arch_grid: str, seeds: int, shard: tuple[int, int], crop: int) -> None:
    """The shard's models, each weighted by its cost (:func:`conv_macs`), those already finished marked done."""
    from fpforensics.sharding import shard_items
    from fpforensics.synthesis.architectures import conv_macs, parse_grid

    models = [(spec, seed) for spec in parse_grid(arch_grid) for seed in range(seeds)]
    mine = shard_items(models, *shard, group=lambda m: m[0])
    in_out, in_parts = _finished(out)
    bar.start(0)
    for spec, seed in mine:
        bar.start(1, group=_group(spec), cost=conv_macs(spec, size=crop))
        if (spec.index, seed) in in_out | in_parts:
            bar.already(1, group=_group(spec))


def _saved(out: Path | None) -> str:
    """After Ctrl-C: what is on disk, and the command that resumes."""
    again = common.command_line()
    if out is None:
        return f"nothing saved; run again with: {again}"
    from fpforensics.synthesis.build import parts_dir

    in_out, in_parts = _finished(out)
    new = len(in_parts - in_out)
    if not new and not in_out:
        return f"nothing saved yet (models are saved a pack at a time); run again with: {again}"
    kept = f"{new} model(s) of this run kept in {parts_dir(out)}" if new else "no model of this run finished"
    return f"{kept}, {len(in_out)} in {out}; resume with the same command: {again}"
