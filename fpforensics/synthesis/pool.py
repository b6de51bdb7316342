"""Synthesis: the pool of trained synthetic models (HDF5 format, reading API, merging, the one pool reader).

File layout (``fpt_format = "pool"``, ``fpt_format_version = 1``)::

    /                 attrs: fpt_format, fpt_format_version, tool_version,
                             config (JSON of TrainConfig), data_fingerprint (real images), width
    /index            compound table, one row per model, sorted by (architecture index, seed):
                      code (S12), seed (i8), final_loss (f8), eval_loss (f8), steps (i8),
                      reached_eta (u1), row (i8: row in /weights/<code>), digest (S16)
    /weights/<code>   float32 (n_models_of_code, P): each row the flattened state_dict of one
                      SyntheticAutoencoder(arch, width), keys in state_dict order (attr
                      ``layout``: JSON [[key, shape], ...]); ``num_batches_tracked`` stored as float

Pools are written whole and atomically (temp file + rename). A folder of such files (shards,
or the ``<out>.parts`` folder of an unfinished run) opens as one pool if all files share the
same config and no model appears twice; files that differ only in their stopping rules
(:data:`STOPPING_KEYS`) combine too, and the combined config lists the distinct rules.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from fpforensics.defaults import DEFAULTS
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.io.store import atomic_h5, check_output, open_h5, read_str
from fpforensics.synthesis.architectures import GRID_VERSION, ArchitectureSpec, SyntheticAutoencoder

POOL_KIND = "pool"
FORMAT_VERSION = 1
_INDEX_DTYPE = np.dtype([
    ("code", "S12"), ("seed", "<i8"), ("final_loss", "<f8"), ("eval_loss", "<f8"), ("steps", "<i8"),
    ("reached_eta", "u1"), ("row", "<i8"), ("digest", "S16"),
])


@dataclass(frozen=True)
class PoolEntry:
    """One model of a pool (metadata; weights are read on demand)."""

    arch: ArchitectureSpec
    seed: int
    final_loss: float
    steps: int
    reached_eta: bool
    eval_loss: float
    digest: str
    source: Path  # file holding the weights
    row: int  # row in /weights/<code> of that file

    @property
    def key(self) -> tuple[int, int]:
        return (self.arch.index, self.seed)

    @property
    def name(self) -> str:
        return f"{self.arch.code}-s{self.seed}"


@dataclass
class PoolRecord:
    """A model about to be written: metadata plus flat float32 weights."""

    arch: ArchitectureSpec
    seed: int
    final_loss: float
    eval_loss: float
    steps: int
    reached_eta: bool
    weights: np.ndarray

    @property
    def digest(self) -> str:
        return weights_digest(self.weights)


def weights_digest(weights: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(weights, dtype=np.float32).tobytes()).hexdigest()[:16]


def config_grid_version(config_json: str) -> int:
    """The architecture-grid version a pool was trained with (pools written before versions are v1)."""
    try:
        return int(json.loads(config_json).get("grid_version", 1))
    except (ValueError, AttributeError, TypeError):
        return 1


def state_layout(arch: ArchitectureSpec, width: int, grid_version: int = GRID_VERSION) -> list[tuple[str, tuple[int, ...]]]:
    """``[(key, shape), ...]`` of a SyntheticAutoencoder's state dict, the order of a flat weight row."""
    with torch.device("meta"):
        module = SyntheticAutoencoder(arch, width, grid_version)
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def flatten_state_dict(state_dict: dict[str, torch.Tensor], layout: Sequence[tuple[str, tuple[int, ...]]]) -> np.ndarray:
    parts = []
    for key, shape in layout:
        t = state_dict[key].detach().cpu().float().reshape(-1)
        if tuple(state_dict[key].shape) != tuple(shape):
            raise IncompatibleError(f"weight '{key}' has shape {tuple(state_dict[key].shape)}, expected {shape}")
        parts.append(t)
    return torch.cat(parts).numpy().astype(np.float32, copy=False)


def unflatten_state_dict(flat: np.ndarray, layout: Sequence[tuple[str, tuple[int, ...]]]) -> dict[str, torch.Tensor]:
    out, pos = {}, 0
    vec = torch.from_numpy(np.asarray(flat, dtype=np.float32))
    for key, shape in layout:
        n = int(np.prod(shape)) if shape else 1
        t = vec[pos:pos + n].reshape(shape).clone()
        out[key] = t.long() if key.endswith("num_batches_tracked") else t
        pos += n
    if pos != vec.numel():
        raise IncompatibleError(f"weight row has {vec.numel()} values, the architecture needs {pos}")
    return out


def write_pool(path: str | Path, records: Iterable[PoolRecord | tuple[PoolEntry, np.ndarray]], config_json: str,
               data_fingerprint: str, width: int) -> Path:
    """Write a complete pool file atomically (records may be new models or entries of other pools)."""
    rows: list[tuple[ArchitectureSpec, int, float, float, int, bool, np.ndarray, str]] = []
    for rec in records:
        if isinstance(rec, PoolRecord):
            rows.append((rec.arch, rec.seed, rec.final_loss, rec.eval_loss, rec.steps, rec.reached_eta,
                         rec.weights, rec.digest))
        else:
            entry, w = rec
            rows.append((entry.arch, entry.seed, entry.final_loss, entry.eval_loss, entry.steps, entry.reached_eta,
                         w, entry.digest))
    rows.sort(key=lambda r: (r[0].index, r[1]))
    keys = [(r[0].index, r[1]) for r in rows]
    if len(set(keys)) != len(keys):
        raise IncompatibleError("pool would hold the same (architecture, seed) twice")
    path = Path(path)
    with atomic_h5(path, POOL_KIND, copy_existing=False, format_version=FORMAT_VERSION) as f:
        f.attrs["config"] = config_json
        f.attrs["data_fingerprint"] = data_fingerprint
        f.attrs["width"] = int(width)
        index = np.zeros(len(rows), dtype=_INDEX_DTYPE)
        by_code: dict[str, list[int]] = OrderedDict()
        for i, r in enumerate(rows):
            by_code.setdefault(r[0].code, []).append(i)
        wgroup = f.create_group("weights")
        for code, members in by_code.items():
            layout = state_layout(ArchitectureSpec.from_code(code), width, config_grid_version(config_json))
            n_values = sum(int(np.prod(s)) if s else 1 for _, s in layout)
            ds = wgroup.create_dataset(code, shape=(len(members), n_values), dtype="float32")
            ds.attrs["layout"] = json.dumps([[k, list(s)] for k, s in layout])
            for row, i in enumerate(members):
                arch, seed, final_loss, eval_loss, steps, reached, w, digest = rows[i]
                if w.shape != (n_values,):
                    raise IncompatibleError(f"{code}-s{seed}: weight row of {w.shape} values, expected {n_values}")
                ds[row] = w
                index[i] = (code.encode(), seed, final_loss, eval_loss, steps, int(bool(reached)), row,
                            digest.encode())
        f.create_dataset("index", data=index)
    return path


def _read_file(path: Path) -> tuple[dict, list[PoolEntry]]:
    with open_h5(path, POOL_KIND, max_version=FORMAT_VERSION) as f:
        try:
            meta = {
                "config": read_str(f.attrs["config"]),
                "data_fingerprint": read_str(f.attrs["data_fingerprint"]),
                "width": int(f.attrs["width"]),
            }
            index = f["index"][()]
        except KeyError as exc:
            raise InputError(f"{path}: incomplete pool file (missing {exc})") from None
    entries = [
        PoolEntry(arch=ArchitectureSpec.from_code(read_str(r["code"])), seed=int(r["seed"]),
                  final_loss=float(r["final_loss"]), steps=int(r["steps"]), reached_eta=bool(r["reached_eta"]),
                  eval_loss=float(r["eval_loss"]), digest=read_str(r["digest"]), source=path, row=int(r["row"]))
        for r in index
    ]
    return meta, entries


# Settings that only decide *when* a model stops training. Each model records where it stopped
# (``steps``, ``reached_eta``), so pools that differ only in these can be combined: a K=2 run with a
# smaller step budget joins a K=1 run, for example. Everything else defines the models and must match.
STOPPING_KEYS = ("eta", "max_steps", "plateau_window", "plateau_tol")


def combine_configs(configs: Sequence[str]) -> str | None:
    """One config for pools built with ``configs``; None when they differ beyond the stopping rules.

    Equal configs give that config; configs that differ only in :data:`STOPPING_KEYS` give the shared
    settings plus ``"stopping"``: the list of distinct stopping rules, so the file stays honest.
    """
    distinct = list(dict.fromkeys(configs))
    if len(distinct) == 1:
        return distinct[0]
    parsed = [json.loads(c) for c in distinct]
    shared = [{k: v for k, v in c.items() if k not in STOPPING_KEYS and k != "stopping"} for c in parsed]
    if any(s != shared[0] for s in shared):
        return None
    stopping: list[dict] = []
    for c in parsed:
        for rule in c.get("stopping") or [{k: c[k] for k in STOPPING_KEYS if k in c}]:
            if rule not in stopping:
                stopping.append(rule)
    return json.dumps({**shared[0], "stopping": stopping}, sort_keys=True)


def pool_files(path: str | Path) -> list[Path]:
    """The pool files of ``path``: the file itself, or the ``*.h5`` files directly inside a folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such pool file or folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".h5" and not p.name.startswith("."))
        if not files:
            raise InputError(f"{path}: folder holds no pool files (*.h5)")
        return files
    return [path]


class SyntheticPool:
    """Read access to a pool: entries, modules, and batched application to images.

    ``entries[i]`` is model id ``i``; ids follow (architecture index, seed) order.
    """

    def __init__(self, entries: list[PoolEntry], config_json: str, data_fingerprint: str, width: int,
                 cache_size: int = 512) -> None:
        self.entries = entries
        self.config_json = config_json
        self.data_fingerprint = data_fingerprint
        self.width = width
        self.cache_size = cache_size
        self._files: dict[Path, h5py.File] = {}
        self._files_pid = os.getpid()
        self._layouts: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
        self._modules: OrderedDict[tuple[int, str], SyntheticAutoencoder] = OrderedDict()
        self.grid_version = config_grid_version(config_json)  # models of older pools keep their architecture

    # construction ----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, cache_size: int = 512) -> SyntheticPool:
        """Open a pool file, or a folder of pool files (shards) read as one pool."""
        files = pool_files(path)
        config = fingerprint = None
        width = None
        entries: list[PoolEntry] = []
        for file in files:
            meta, file_entries = _read_file(file)
            if config is None:
                config, fingerprint, width = meta["config"], meta["data_fingerprint"], meta["width"]
            else:
                combined = combine_configs([config, meta["config"]])
                if combined is None or (meta["data_fingerprint"], meta["width"]) != (fingerprint, width):
                    raise IncompatibleError(f"{file}: built with other settings or real images than {files[0]} "
                                            "(config or data fingerprint differ); these pools cannot be combined")
                config = combined
            entries += file_entries
        seen: dict[tuple[int, int], Path] = {}
        for e in entries:
            if e.key in seen:
                raise IncompatibleError(f"model {e.name} is in both {seen[e.key]} and {e.source}")
            seen[e.key] = e.source
        entries.sort(key=lambda e: e.key)
        return cls(entries, config or "{}", fingerprint or "", int(width or DEFAULTS["synth_width"]), cache_size)

    def subset(self, ids: Sequence[int]) -> SyntheticPool:
        """A pool of the models ``ids`` only (renumbered 0..len(ids)-1 in the given order)."""
        entries = [self.entries[int(i)] for i in ids]
        return SyntheticPool(entries, self.config_json, self.data_fingerprint, self.width, self.cache_size)

    # metadata --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    @property
    def config(self) -> dict:
        return json.loads(self.config_json)

    @property
    def fingerprint(self) -> str:
        """Short hash of the pool content: which models, in which order, with which weights."""
        h = hashlib.sha256(f"width={self.width}".encode())
        for e in self.entries:
            h.update(f"{e.arch.code}-{e.seed}:{e.digest};".encode())
        return h.hexdigest()[:16]

    def index_of(self, arch: ArchitectureSpec, seed: int) -> int:
        for i, e in enumerate(self.entries):
            if e.arch == arch and e.seed == seed:
                return i
        raise KeyError(f"{arch.code}-s{seed} is not in the pool")

    # weights ---------------------------------------------------------------------------------
    def _file(self, path: Path) -> h5py.File:
        if self._files_pid != os.getpid():  # forked (DataLoader worker): never share HDF5 handles
            self._files, self._files_pid = {}, os.getpid()
        if path not in self._files:
            self._files[path] = open_h5(path, POOL_KIND)
        return self._files[path]

    def weights(self, i: int) -> np.ndarray:
        e = self.entries[i]
        return np.asarray(self._file(e.source)["weights"][e.arch.code][e.row], dtype=np.float32)

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        code = self.entries[i].arch.code
        if code not in self._layouts:
            self._layouts[code] = state_layout(self.entries[i].arch, self.width, self.grid_version)
        return unflatten_state_dict(self.weights(i), self._layouts[code])

    def load_module(self, i: int) -> SyntheticAutoencoder:
        """Model ``i`` as an eval-mode cpu module without gradients."""
        module = SyntheticAutoencoder(self.entries[i].arch, self.width, self.grid_version)
        module.load_state_dict(self.state_dict(i))
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        return module

    def _module_on(self, i: int, device: torch.device) -> SyntheticAutoencoder:
        key = (i, str(device))
        if key in self._modules:
            self._modules.move_to_end(key)
            return self._modules[key]
        module = self.load_module(i).to(device)
        self._modules[key] = module
        while len(self._modules) > self.cache_size:
            self._modules.popitem(last=False)
        return module

    @torch.no_grad()
    def apply(self, model_ids: torch.Tensor, images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """Pass image ``b`` through model ``model_ids[b]``; ``(B, 3, H, W)`` in [0, 1] -> same, clamped.

        Images are grouped by model (one forward per distinct model); modules stay cached on
        ``device`` (LRU, ``cache_size`` modules).
        """
        device = torch.device(device)
        ids = torch.as_tensor(model_ids).long().cpu()
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"pool.apply expects images (B, 3, H, W), got {tuple(images.shape)}")
        if ids.shape != (images.shape[0],):
            raise InputError(f"pool.apply: {ids.numel()} model ids for {images.shape[0]} images")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(self)):
            raise InputError(f"pool.apply: model id out of range 0..{len(self) - 1}")
        images = images.to(device)
        out = torch.empty_like(images)
        for i in torch.unique(ids).tolist():
            sel = (ids == i).nonzero(as_tuple=True)[0].to(device)
            out[sel] = self._module_on(i, device)(images[sel]).clamp_(0, 1)
        return out

    def close(self) -> None:
        for f in self._files.values():
            try:
                f.close()
            except Exception:  # noqa: BLE001 - closing a dead handle is harmless
                pass
        self._files = {}

    def __del__(self) -> None:  # pragma: no cover - best effort
        self.close()


def open_pool(pool: Any) -> SyntheticPool:
    """The one pool reader: a path (pool file or folder of shards) is opened; an open pool-like object
    (anything with ``entries`` and ``apply``) passes through."""
    if hasattr(pool, "apply") and hasattr(pool, "entries"):
        return pool
    return SyntheticPool.open(pool)


def merge_pools(inputs: Sequence[str | Path], out: str | Path, overwrite: bool = False) -> SyntheticPool:
    """Combine pool files/folders (e.g. shards) into one pool file; settings must match.

    An existing ``out`` must be a pool: one of the inputs (the merge extends it), or replaced only with ``overwrite``.
    """
    out = Path(out)
    extends = out.exists() and any(Path(p).resolve() == out.resolve() for p in inputs)
    check_output(out, POOL_KIND, overwrite=overwrite, append=extends,
                 exists_hint="pass --overwrite to replace it, or give it to --merge too to extend it")
    pools = [SyntheticPool.open(p) for p in inputs]
    first = pools[0]
    config = first.config_json
    for p, src in zip(pools[1:], inputs[1:], strict=True):
        config = combine_configs([config, p.config_json])
        if config is None or (p.data_fingerprint, p.width) != (first.data_fingerprint, first.width):
            raise IncompatibleError(f"{src}: built with other settings or real images than {inputs[0]} "
                                    "(only the stopping rules eta / --max-steps / --plateau-window may differ)")
    seen: set[tuple[int, int]] = set()
    for p in pools:
        for e in p.entries:
            if e.key in seen:
                raise IncompatibleError(f"model {e.name} appears in more than one input")
            seen.add(e.key)

    def records():
        for p in pools:
            for i, e in enumerate(p.entries):
                yield (e, p.weights(i))

    write_pool(out, records(), config, first.data_fingerprint, first.width)
    for p in pools:
        p.close()
    return SyntheticPool.open(out)
