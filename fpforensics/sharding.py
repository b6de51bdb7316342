"""Splitting one job over many processes or machines: ``--shard i/n``, torchrun and SLURM variables.

Used by ``fpt synthesize`` (models of the grid) and ``fpt embed`` (image files): each shard is a
disjoint part, the union of all shards is the whole job, and each shard writes its own file that
a merge combines.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import TypeVar

from fpforensics.errors import InputError

T = TypeVar("T")
ENVIRONMENTS = (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS"))


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"``; when None, from RANK/WORLD_SIZE (torchrun) or SLURM_PROCID/SLURM_NTASKS, else 0/1."""
    if text is None:
        for rank, world in ENVIRONMENTS:
            if os.environ.get(rank) is not None and os.environ.get(world) is not None:
                text = f"{os.environ[rank]}/{os.environ[world]}"
                break
        else:
            return (0, 1)
    try:
        i, n = (int(v) for v in text.strip().split("/"))
    except ValueError:
        raise InputError(f"--shard '{text}': expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard '{text}': expected 0 <= i < n")
    return (i, n)


def shard_items(items: Sequence[T], index: int, count: int, group: Callable[[T], Hashable] | None = None) -> list[T]:
    """Items of shard ``index`` of ``count``, in their order; disjoint, and their union over shards is ``items``.

    With ``group``, whole groups go round-robin (in order of first appearance) so that related
    items stay together (synthesis keeps an architecture's seeds in one pack), unless there are
    fewer groups than shards; then, as without ``group``, single items go round-robin.
    """
    if count < 1 or not 0 <= index < count:
        raise InputError(f"shard {index}/{count}: expected 0 <= i < n")
    if group is not None:
        groups = list(dict.fromkeys(group(item) for item in items))
        if count <= len(groups):
            mine = {g for pos, g in enumerate(groups) if pos % count == index}
            return [item for item in items if group(item) in mine]
    return [item for pos, item in enumerate(items) if pos % count == index]


def shard_output(out: Path, shard: tuple[int, int], stem: str, suffix: str = ".h5") -> Path:
    """With several shards and ``out`` a folder, each shard writes ``out/<stem>-shard-III-of-NNN<suffix>``."""
    i, n = shard
    if out.is_dir() and n > 1:
        return out / f"{stem}-shard-{i:03d}-of-{n:03d}{suffix}"
    return out
