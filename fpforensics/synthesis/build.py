"""Building a pool file from the grid: sharding, resume after an interruption, atomic parts, the final merge.

``synthesize_pool`` plans which models of a shard are still missing, trains them pack by pack with
:func:`~fpforensics.synthesis.training.train_pack` and writes each pack as a complete pool file, so
a killed run loses at most the pack in progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fpforensics.errors import IncompatibleError, InputError
from fpforensics.sharding import shard_items
from fpforensics.synthesis.architectures import ArchitectureSpec
from fpforensics.synthesis.training import RealData, TrainConfig, TrainedModel, resolve_backend, train_pack


@dataclass
class SynthesisSummary:
    """What one ``synthesize_pool`` run did."""

    out: Path
    shard: tuple[int, int]
    planned: int  # models of this shard
    already_done: int  # found finished from an earlier run
    trained: list[TrainedModel] = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = False  # every model of the shard is in `out`

    @property
    def models_per_second(self) -> float:
        return len(self.trained) / self.seconds if self.seconds > 0 else 0.0

    @property
    def not_reached(self) -> list[str]:
        return [f"{m.spec.code}-s{m.seed}" for m in self.trained if not m.reached_eta]

    def to_dict(self) -> dict:
        losses = [m.final_loss for m in self.trained]
        evals = [m.eval_loss for m in self.trained]
        return {
            "out": str(self.out), "shard": f"{self.shard[0]}/{self.shard[1]}", "planned": self.planned,
            "already_done": self.already_done, "trained": len(self.trained),
            "reached_eta": sum(m.reached_eta for m in self.trained),
            "mean_final_loss": (sum(losses) / len(losses)) if losses else None,
            "mean_eval_loss": (sum(evals) / len(evals)) if evals else None,
            "mean_steps": (sum(m.steps for m in self.trained) / len(losses)) if losses else None,
            "seconds": self.seconds, "models_per_second": self.models_per_second,
            "not_reached_eta": self.not_reached, "complete": self.complete,
        }


def parts_dir(out: Path) -> Path:
    """Where finished packs of an unfinished run wait (each an atomic, complete pool file)."""
    return out.with_name(out.name + ".parts")


def synthesize_pool(
    real: str | Path | Sequence[str | Path] | RealData, out: str | Path, specs: Sequence[ArchitectureSpec],
    seeds: Sequence[int], cfg: TrainConfig = TrainConfig(), pack_size: int | None = None,
    device: torch.device | str = "cpu", shard: tuple[int, int] = (0, 1), backend: str = "auto",
    on_start: Callable[[int, int], None] | None = None, on_model: Callable[[TrainedModel], None] | None = None,
    on_pack: Callable[[list[TrainedModel]], None] | None = None,
    on_skip: Callable[[Path, str], None] | None = None, precision: str = "auto",
) -> SynthesisSummary:
    """Train the models ``specs x seeds`` of ``shard`` into the pool file ``out`` (resumable).

    Every finished pack is written atomically to ``<out>.parts/``; when the shard is complete the
    parts (and an earlier ``out``, if any) are merged atomically into ``out`` and the parts folder
    is removed. Re-running after an interruption skips the models already in ``out`` or the parts;
    a different config or real-image set than theirs is refused (IncompatibleError).
    ``on_start(total, already_done)`` is called once work is planned.
    """
    import shutil

    from fpforensics.io.store import Lock, check_writable
    from fpforensics.synthesis.pool import PoolRecord, SyntheticPool, flatten_state_dict, state_layout, write_pool

    cfg.validate()
    device = torch.device(device)
    backend = resolve_backend(backend, device)
    out = check_writable(out)
    seeds = sorted(set(int(s) for s in seeds))
    if not seeds:
        raise InputError("no seeds to train (use --seeds N with N >= 1)")
    if not specs:
        raise InputError("no architectures selected")
    if pack_size is None:
        pack_size = len(seeds) if device.type == "cuda" else 8
    if pack_size < 1:
        raise InputError(f"--pack-size must be at least 1 (got {pack_size})")
    all_models = [(spec, s) for spec in sorted(set(specs), key=lambda x: x.index) for s in seeds]
    mine = shard_items(all_models, *shard, group=lambda m: m[0])  # whole architectures: packs stay full
    data = real if isinstance(real, RealData) else RealData.from_folder(real, max(cfg.crop, cfg.calib_crop), on_skip=on_skip)
    config_json = cfg.to_json()

    parts = parts_dir(out)
    lock = Lock(out, wait=False, busy=f"{out}: another fpt synthesize is writing this pool (lock {out}.lock)")
    try:
        sources = ([out] if out.exists() else []) + (
            sorted(p for p in parts.glob("*.h5") if not p.name.startswith(".")) if parts.is_dir() else [])
        done_keys: set[tuple[int, int]] = set()
        for src in sources:
            existing = SyntheticPool.open(src)
            if existing.config_json != config_json or existing.data_fingerprint != data.fingerprint:
                what = "real images" if existing.config_json == config_json else "training settings"
                raise IncompatibleError(
                    f"{src}: was built with other {what} than this run "
                    f"(its config {existing.config_json}, data {existing.data_fingerprint}; "
                    f"this run {config_json}, data {data.fingerprint}); use another --out or the same settings")
            done_keys |= {e.key for e in existing.entries}
            existing.close()
        todo = [(spec, s) for spec, s in mine if (spec.index, s) not in done_keys]
        summary = SynthesisSummary(out=out, shard=shard, planned=len(mine), already_done=len(mine) - len(todo))
        if on_start:
            on_start(len(mine), summary.already_done)
        packs: list[tuple[ArchitectureSpec, list[int]]] = []
        for spec in sorted({sp for sp, _ in todo}, key=lambda x: x.index):
            spec_seeds = [s for sp, s in todo if sp == spec]
            packs += [(spec, spec_seeds[i:i + pack_size]) for i in range(0, len(spec_seeds), pack_size)]
        t0 = time.perf_counter()
        if packs:
            parts.mkdir(exist_ok=True)
        for spec, pack_seeds in packs:
            trained = train_pack(spec, pack_seeds, data, cfg, device, backend, on_model=on_model, precision=precision)
            layout = state_layout(spec, cfg.width)
            records = [PoolRecord(m.spec, m.seed, m.final_loss, m.eval_loss, m.steps, m.reached_eta,
                                  flatten_state_dict(m.state_dict, layout)) for m in trained]
            write_pool(parts / f"part-{spec.code}-s{pack_seeds[0]}-n{len(pack_seeds)}.h5", records, config_json,
                       data.fingerprint, cfg.width)
            summary.trained += trained
            summary.seconds = time.perf_counter() - t0
            if on_pack:
                on_pack(trained)
        # Merge: out (earlier run) + parts -> out, atomically; then drop the parts.
        if parts.is_dir():
            part_files = sorted(p for p in parts.glob("*.h5") if not p.name.startswith("."))
            if part_files:
                inputs = ([out] if out.exists() else []) + part_files
                pools = [SyntheticPool.open(p) for p in inputs]

                def records():
                    # A merge interrupted between writing `out` and removing the parts leaves models
                    # in both: same config and deterministic, so the first copy is kept.
                    seen: set[tuple[int, int]] = set()
                    for p in pools:
                        for i, e in enumerate(p.entries):
                            if e.key not in seen:
                                seen.add(e.key)
                                yield (e, p.weights(i))

                write_pool(out, records(), config_json, data.fingerprint, cfg.width)
                for p in pools:
                    p.close()
            shutil.rmtree(parts, ignore_errors=True)
        elif not out.exists():
            write_pool(out, [], config_json, data.fingerprint, cfg.width)
        summary.seconds = time.perf_counter() - t0
        final = SyntheticPool.open(out)
        summary.complete = {(s.index, sd) for s, sd in mine} <= {e.key for e in final.entries}
        final.close()
        return summary
    finally:
        lock.release()  # and its lock file removed
