"""ManiFPT, step 4: artifacts ``phi(x_G) - phi(x*)`` of generated images, their per-model summary, the artifacts file."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from fpforensics.defaults import DEFAULTS
from fpforensics.embedding.loop import embed_files
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.images.folders import group_by_model
from fpforensics.io.names import stored_name
from fpforensics.io.store import STR_DTYPE, atomic_h5, open_h5, read_str
from fpforensics.manifpt.manifold import Manifold
from fpforensics.manifpt.neighbors import gather_rows, nearest_neighbors

ARTIFACTS_KIND = "artifacts"


@dataclass
class ArtifactSet:
    """Artifacts of generated images against one real manifold, in one space."""

    artifacts: np.ndarray  # (N, D) float32: phi(x_G) - phi(x*)
    paths: list[Path]  # generated images (readable ones)
    models: list[str]  # model name of each
    nearest_index: np.ndarray  # (N,) index into real_paths
    nearest_path: list[Path]
    distance: np.ndarray  # (N,) squared Euclidean distance to x* (float64)
    real_paths: list[Path]
    space_identity: str
    settings: dict
    feature_shape: tuple[int, ...]
    real_digest: str = ""
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def norms(self) -> np.ndarray:
        """``||a||`` (equals ``sqrt(distance)``: the artifact is the difference to the nearest point)."""
        return np.sqrt(self.distance)

    def labels(self) -> np.ndarray:
        return np.asarray(self.models)


def compute_artifacts(
    space, generated: dict[str, list[Path]] | Sequence[str | Path], manifold: Manifold,
    device: torch.device | str = "cpu", batch_size: int = DEFAULTS.artifact_batch_size,
    ref_chunk: int = DEFAULTS.neighbour_chunk, query_chunk: int = 4096,
    on_image: Callable[[int], None] | None = None, on_chunk: Callable[[int], None] | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
) -> ArtifactSet:
    """ManiFPT artifacts of generated images (grouped by model) against ``manifold`` in ``space``."""
    if not isinstance(generated, dict):
        generated = group_by_model(generated)
    flat = [(m, p) for m, ps in generated.items() for p in ps]
    done = embed_files([space], [p for _, p in flat], batch_size, on_image=on_image, on_skip=on_skip)
    feats, kept = done.rows[0], done.paths
    index, dist = nearest_neighbors(feats, manifold.features, device, query_chunk, ref_chunk, on_chunk=on_chunk)
    artifacts = np.empty_like(feats)
    step = 4096
    for q0 in range(0, len(feats), step):
        nearest = gather_rows(manifold.features, index[q0:q0 + step], np.float32)
        artifacts[q0:q0 + step] = feats[q0:q0 + step] - nearest
    return ArtifactSet(
        artifacts=artifacts, paths=kept, models=[flat[i][0] for i in done.index], nearest_index=index,
        nearest_path=[manifold.paths[i] for i in index], distance=dist, real_paths=list(manifold.paths),
        space_identity=space.identity, settings=space.settings, feature_shape=space.feature_shape,
        real_digest=manifold.digest, skipped=done.skipped,
    )


@dataclass
class ModelSummary:
    model: str
    n: int
    mean_norm: float
    max_norm: float  # d_FPT: the largest artifact norm
    mean_sq_distance: float
    distinct_nearest: int  # how many different real images serve as x*


def summarize(result: ArtifactSet) -> list[ModelSummary]:
    """Per-model fingerprint size: count, mean and max (``d_FPT``) artifact norm, mean squared distance."""
    models = np.asarray(result.models)
    rows = []
    for name in dict.fromkeys(result.models):
        sel = models == name
        norms = np.sqrt(result.distance[sel])
        rows.append(ModelSummary(name, int(sel.sum()), float(norms.mean()), float(norms.max()),
                                 float(result.distance[sel].mean()), int(len(np.unique(result.nearest_index[sel])))))
    return rows



def save_artifacts(result: ArtifactSet, path: str | Path, dtype: str = "float32",
                   summary: list[ModelSummary] | None = None, extra_attrs: dict | None = None,
                   extra_datasets: dict[str, Sequence] | None = None) -> Path:
    """Write an ``artifacts`` HDF5 file atomically (layout in docs/artifact.md).

    ``extra_datasets`` adds per-image columns (strings or numbers), e.g. classifier predictions.
    """
    if dtype not in ("float32", "float16"):
        raise InputError(f"unknown dtype '{dtype}': use float32 or float16")
    path = Path(path)
    if path.exists():
        with open_h5(path, ARTIFACTS_KIND):  # refuse to overwrite a file that is not ours
            pass
    summary = summary if summary is not None else summarize(result)
    n, d = result.artifacts.shape
    with atomic_h5(path, ARTIFACTS_KIND, copy_existing=False) as f:
        chunk = (max(1, min(n, (1 << 20) // max(1, 4 * d))), d) if n else None
        f.create_dataset("artifacts", data=result.artifacts.astype(dtype), chunks=chunk,
                         compression="gzip" if n else None, compression_opts=4 if n else None)
        f.create_dataset("path", data=[stored_name(p) for p in result.paths], dtype=STR_DTYPE)
        f.create_dataset("model", data=[stored_name(m) for m in result.models], dtype=STR_DTYPE)
        f.create_dataset("nearest_index", data=result.nearest_index.astype(np.int64))
        f.create_dataset("nearest_path", data=[stored_name(p) for p in result.nearest_path], dtype=STR_DTYPE)
        f.create_dataset("distance", data=result.distance.astype(np.float64))
        f.create_dataset("norm", data=result.norms.astype(np.float64))
        f.create_dataset("real_paths", data=[stored_name(p) for p in result.real_paths], dtype=STR_DTYPE)
        f.attrs.update({
            "space": result.settings.get("space", ""), "space_identity": result.space_identity,
            "settings": json.dumps(result.settings, sort_keys=True), "feature_shape": list(result.feature_shape),
            "distance": "squared_euclidean", "real_digest": result.real_digest, "real_count": len(result.real_paths),
            "artifact_dtype": dtype, "summary": json.dumps([asdict(s) for s in summary]),
            **(extra_attrs or {}),
        })
        for key, values in (extra_datasets or {}).items():
            values = list(values)
            if values and isinstance(values[0], str):
                f.create_dataset(key, data=values, dtype=STR_DTYPE)
            else:
                f.create_dataset(key, data=np.asarray(values))
    return path


def load_artifacts(path: str | Path) -> ArtifactSet:
    """Read an ``artifacts`` file back (artifact rows as float32)."""
    with open_h5(path, ARTIFACTS_KIND) as f:
        try:
            return ArtifactSet(
                artifacts=np.asarray(f["artifacts"][()], np.float32),
                paths=[Path(read_str(p)) for p in f["path"][()]], models=[read_str(m) for m in f["model"][()]],
                nearest_index=np.asarray(f["nearest_index"][()]),
                nearest_path=[Path(read_str(p)) for p in f["nearest_path"][()]],
                distance=np.asarray(f["distance"][()], np.float64),
                real_paths=[Path(read_str(p)) for p in f["real_paths"][()]],
                space_identity=read_str(f.attrs["space_identity"]), settings=json.loads(read_str(f.attrs["settings"])),
                feature_shape=tuple(int(v) for v in f.attrs["feature_shape"]), real_digest=read_str(f.attrs["real_digest"]),
            )
        except KeyError as exc:
            raise IncompatibleError(f"{path}: artifacts file is missing {exc}") from None


