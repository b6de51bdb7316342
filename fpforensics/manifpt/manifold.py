"""ManiFPT, step 2: the real-data manifold, real images mapped into a feature space (cached in HDF5 on request)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fpforensics.defaults import DEFAULTS
from fpforensics.embedding.loop import embed_files
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.images.folders import files_digest
from fpforensics.io.names import stored_name
from fpforensics.io.store import STR_DTYPE, atomic_h5, open_h5, read_str

MANIFOLD_KIND = "manifold"


@dataclass
class Manifold:
    """The estimated real-data manifold: features (array or HDF5 dataset) and their paths."""

    features: np.ndarray | object
    paths: list[Path]
    digest: str
    identity: str
    from_cache: bool = False


def paths_digest(paths: Sequence[Path]) -> str:
    """Short fingerprint of a set of real files (paths, sizes, modification times): the key of a manifold cache."""
    return files_digest(paths)[:16]


def _settings_json(space) -> str:
    return json.dumps(space.settings, sort_keys=True)


def load_or_build_manifold(
    space, real_paths: Sequence[Path], cache: str | Path | None = None,
    batch_size: int = DEFAULTS.artifact_batch_size, on_image: Callable[[int], None] | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
) -> Manifold:
    """Real features, from ``cache`` when it matches, else computed (and written to ``cache``).

    A cache matches when its space identity, settings and the fingerprint of the real files
    (paths, sizes, modification times) equal the current ones. A cache that exists but does not
    match is an :class:`IncompatibleError` (never silently overwritten: it may be costly to redo).
    With a cache, features are written to it batch by batch and streamed from it afterwards, so
    the real set need not fit in memory.
    """
    real_paths = list(real_paths)
    digest = paths_digest(real_paths)
    if cache is not None and Path(cache).exists():
        f = open_h5(cache, MANIFOLD_KIND)
        problems = []
        if read_str(f.attrs.get("identity", "")) != space.identity:
            problems.append(f"space {read_str(f.attrs.get('identity', ''))} != {space.identity}")
        if read_str(f.attrs.get("settings", "")) != _settings_json(space):
            problems.append(f"settings {read_str(f.attrs.get('settings', ''))} != {_settings_json(space)}")
        if read_str(f.attrs.get("real_digest", "")) != digest:
            problems.append(f"real images differ (cached {int(f.attrs.get('listed', -1))} files, "
                            f"now {len(real_paths)}, or files changed)")
        if problems:
            f.close()
            raise IncompatibleError(f"{cache}: manifold cache does not match this run: {'; '.join(problems)} "
                                    "(use another --manifold-cache file or delete this one)")
        paths = [Path(read_str(p)) for p in f["paths"][()]]
        return Manifold(f["features"], paths, digest, space.identity, from_cache=True)
    if cache is None:
        done = embed_files([space], real_paths, batch_size, on_image=on_image, on_skip=on_skip)
        if len(done.paths) == 0:
            raise InputError("no readable real images")
        return Manifold(done.rows[0], done.paths, digest, space.identity)
    with atomic_h5(cache, MANIFOLD_KIND, copy_existing=False) as f:
        ds = f.create_dataset("features", shape=(len(real_paths), space.dim), maxshape=(None, space.dim),
                              dtype="f4", chunks=(max(1, min(256, (1 << 20) // (4 * space.dim))), space.dim))
        done = embed_files([space], real_paths, batch_size, outs=[ds], on_image=on_image, on_skip=on_skip)
        if len(done.paths) == 0:
            raise InputError("no readable real images")
        f.create_dataset("paths", data=[stored_name(p) for p in done.paths], dtype=STR_DTYPE)
        f.attrs.update({"identity": space.identity, "settings": _settings_json(space), "real_digest": digest,
                        "listed": len(real_paths)})
    f = open_h5(cache, MANIFOLD_KIND)
    return Manifold(f["features"], done.paths, digest, space.identity)
