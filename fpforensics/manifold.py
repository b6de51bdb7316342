"""ManiFPT artifacts: deviations of generated images from the real-data manifold (METHOD 2).

Pipeline, named after its stages:

1. :func:`build_space` -> a :class:`FeatureSpace` (``rgb``, ``freq``, ``sl``, ``ssl``) mapping
   images to vectors ``phi(x)``.
2. :func:`embed_paths` maps the real images (the estimated manifold; optionally cached with
   :func:`load_or_build_manifold`) and the generated images into the space.
3. :func:`nearest_neighbors`: exact nearest real sample ``x*`` of every generated one (squared
   Euclidean distance), as chunked matrix products streaming the real features.
4. :func:`compute_artifacts`: ``a(x_G) = phi(x_G) - phi(x*)`` with index, path and distance;
   :func:`summarize` gives per-model size of the fingerprint (``d_FPT`` = largest artifact norm),
   :func:`fdr` the Frechet-distance ratio separability score.

Spaces (all inputs are decoded images in [0, 1]):

* ``rgb``: the image fitted to ``size x size`` (central crop by default, or resized), flattened:
  ``3*size*size`` values in [0, 1].
* ``freq``: per channel, ``log(|FFT2(x)| + 1e-4)`` of the same fitted image (orthonormal DFT,
  zero frequency centred): log-magnitude, phase dropped. ``3*size*size`` values.
* ``sl``: with ``weights``, the 2048-d pooled features of a torchvision ResNet-50 loaded from a
  local state_dict (ImageNet preprocessing: resize short side to 256, central 224 crop,
  ImageNet mean/std). Without weights, the project's own fingerprint extractor
  (``load_extractor("default")``) is the learned space; ``FeatureSpace.note`` says which.
* ``ssl``: the 2048-d pooled features of a Barlow Twins ResNet-50 from a local weights file
  (same preprocessing); required.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fpforensics.defaults import DEFAULTS
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.io.images import IMAGE_SUFFIXES, iter_images, list_images
from fpforensics.io.store import STR_DTYPE, atomic_h5, open_h5, read_str
from fpforensics.spectral import SPECTRUM_EPS
from fpforensics.transforms import center_crop

SPACES = ("rgb", "freq", "sl", "ssl")
FITS = ("crop", "resize")
ARTIFACTS_KIND = "artifacts"
MANIFOLD_KIND = "manifold"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# Geometry


def fit_image(image: torch.Tensor, size: int, fit: str = "crop") -> torch.Tensor:
    """``(3, H, W)`` -> ``(3, size, size)``.

    ``crop`` (default) keeps pixels as generated (central crop; upscaled only when smaller), so
    high-frequency traces survive; ``resize`` scales the short side to ``size`` (antialiased)
    and crops the centre, so the whole scene is kept at the cost of resampling the traces.
    """
    if fit == "crop":
        return center_crop(image, size).contiguous()
    if fit != "resize":
        raise InputError(f"unknown fit '{fit}': use {' or '.join(FITS)}")
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    if new != (h, w):
        image = F.interpolate(image.unsqueeze(0), size=new, mode="bilinear", antialias=True,
                              align_corners=False).squeeze(0).clamp(0, 1)
    return center_crop(image, size).contiguous()


def channel_log_spectrum(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` -> per-channel ``log(|FFT2| + eps)``, orthonormal, zero frequency centred."""
    mag = torch.fft.fft2(images.float(), norm="ortho").abs()
    return torch.fft.fftshift(torch.log(mag + SPECTRUM_EPS), dim=(-2, -1))


# --------------------------------------------------------------------------------------------
# Feature spaces


class FeatureSpace:
    """Maps a list of decoded images to feature rows ``(B, D)`` (float32, CPU).

    ``identity`` changes whenever features would change (space, settings, weights): manifold
    caches and classifiers store it and refuse to mix identities. ``note`` is a human line saying
    what was used (shown by the CLI).
    """

    name: str = "space"
    identity: str = "space"
    dim: int = 0
    note: str = ""

    def __init__(self, size: int, fit: str, device: torch.device) -> None:
        self.size, self.fit, self.device = int(size), fit, torch.device(device)

    @property
    def settings(self) -> dict:
        return {"space": self.name, "size": self.size, "fit": self.fit}

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one feature vector before flattening (image-shaped for rgb/freq)."""
        return (self.dim,)

    def view(self, image: torch.Tensor) -> torch.Tensor:
        """The image as shown in panels (and as used by the pixel spaces)."""
        return fit_image(image, self.size, self.fit)

    def features(self, images: Sequence[torch.Tensor]) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class RGBSpace(FeatureSpace):
    name = "rgb"

    def __init__(self, size: int = 64, fit: str = "crop", device: torch.device | str = "cpu") -> None:
        super().__init__(size, fit, device)
        self.dim = 3 * self.size * self.size
        self.identity = f"rgb[{self.fit}{self.size}]"

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return (3, self.size, self.size)

    @torch.no_grad()
    def features(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([self.view(im) for im in images]).flatten(1).float()


class FreqSpace(RGBSpace):
    name = "freq"

    def __init__(self, size: int = 64, fit: str = "crop", device: torch.device | str = "cpu") -> None:
        super().__init__(size, fit, device)
        self.identity = f"freq[logmag,{self.fit}{self.size}]"

    @torch.no_grad()
    def features(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        batch = torch.stack([self.view(im) for im in images]).to(self.device)
        return channel_log_spectrum(batch).flatten(1).float().cpu()


def _resnet50_trunk(state: dict, path: Path, flavour: str) -> tuple[torch.nn.Module, str]:
    """torchvision ResNet-50 (fc = Identity) from a state_dict; prefixes of common wrappers removed."""
    import torchvision

    from fpforensics.checkpoints import state_dict_digest

    for key in ("state_dict", "model", "backbone"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise IncompatibleError(f"{path}: not a state_dict (no tensors found)")
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone.", "encoder.", "model."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        cleaned[key] = value
    model = torchvision.models.resnet50(weights=None)
    model.fc = torch.nn.Identity()
    wanted = model.state_dict()
    trunk = {k: v for k, v in cleaned.items() if k in wanted}
    missing = sorted(set(wanted) - set(trunk))
    if missing:
        raise IncompatibleError(
            f"{path}: not a ResNet-50 {flavour} state_dict ({len(missing)} of {len(wanted)} trunk tensors missing, "
            f"e.g. {missing[0]})")
    bad = [k for k in trunk if tuple(trunk[k].shape) != tuple(wanted[k].shape)]
    if bad:
        raise IncompatibleError(f"{path}: tensor {bad[0]} has shape {tuple(trunk[bad[0]].shape)}, "
                                f"expected {tuple(wanted[bad[0]].shape)} for a ResNet-50")
    model.load_state_dict(trunk, strict=True)
    return model.eval(), state_dict_digest(trunk)


def _load_raw_state(path: Path) -> dict:
    from fpforensics.checkpoints import safe_torch_load

    return safe_torch_load(path, "weights file")


class ResNetSpace(FeatureSpace):
    """Pooled 2048-d features of a ResNet-50 trunk (ImageNet preprocessing at 224)."""

    dim = 2048

    def __init__(self, name: str, weights: str | Path, size: int = 64, fit: str = "crop",
                 device: torch.device | str = "cpu", batch_size: int = 16, state: dict | None = None) -> None:
        super().__init__(size, fit, device)
        self.name = name
        self.batch_size = batch_size
        path = Path(weights)
        flavour = "supervised" if name == "sl" else "Barlow Twins"
        model, digest = _resnet50_trunk(state if state is not None else _load_raw_state(path), path, flavour)
        self.model = model.to(self.device)
        self.digest = digest
        self.identity = f"{name}[resnet50:{digest}]"
        self.note = f"{name}: ResNet-50 ({flavour}) from {path} (digest {digest}), pooled 2048-d features"
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @property
    def settings(self) -> dict:
        # size/fit only shape the panels here, so they are not part of the feature settings.
        return {"space": self.name, "input": "resize256-crop224-imagenet", "weights_digest": self.digest}

    @torch.no_grad()
    def features(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        rows = []
        for start in range(0, len(images), self.batch_size):
            part = images[start:start + self.batch_size]
            batch = torch.stack([fit_image(im, 256, "resize")[:, 16:240, 16:240] for im in part])
            batch = (batch.to(self.device) - self._mean) / self._std
            rows.append(self.model(batch).float().cpu())
        return torch.cat(rows) if rows else torch.zeros(0, self.dim)


class ExtractorSpace(FeatureSpace):
    """The project's fingerprint extractor (sliding window, L2-normalized) as the learned space."""

    name = "sl"

    def __init__(self, spec: str = "default", size: int = 64, fit: str = "crop",
                 device: torch.device | str = "cpu") -> None:
        from fpforensics.extractor.base import DEFAULT_EXTRACTOR_PATH, load_extractor

        super().__init__(size, fit, device)
        self.extractor = load_extractor(spec, self.device)
        self.dim = int(self.extractor.embedding_dim)
        self.identity = f"sl[extractor:{self.extractor.identity}]"
        if spec == "default":
            what = ("trained default weights " + str(DEFAULT_EXTRACTOR_PATH)) if DEFAULT_EXTRACTOR_PATH.exists() else \
                "no trained default weights ship yet, so 'default' is the training-free spectral extractor"
            self.note = (f"sl: no --weights given: using the project's own fingerprint extractor "
                         f"'{self.extractor.identity}' ({what}), {self.dim}-d")
        else:
            self.note = f"sl: fpforensics extractor checkpoint {spec} ('{self.extractor.identity}'), {self.dim}-d"

    @property
    def settings(self) -> dict:
        return {"space": self.name, "extractor": self.extractor.identity, "grid": int(DEFAULTS["grid"])}

    @torch.no_grad()
    def features(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        from fpforensics.extractor.base import embed_images

        return torch.from_numpy(embed_images(self.extractor, list(images), device=self.device))


def build_space(name: str, size: int = 64, fit: str = "crop", weights: str | Path | None = None,
                device: torch.device | str = "cpu") -> FeatureSpace:
    """Resolve ``--space`` (+ ``--size``, ``--fit``, ``--weights``) into a ready feature space.

    ``size``/``fit`` define the pixel spaces and the panels. ``sl`` without weights uses the
    project's extractor (``load_extractor("default")``); with a path it takes a torchvision
    ResNet-50 state_dict, or an fpforensics extractor checkpoint (``fpt train extractor``).
    ``ssl`` requires a Barlow Twins ResNet-50 state_dict (official ``resnet50.pth`` or the full
    training ``checkpoint.pth`` with ``module.backbone.`` keys).
    """
    name = name.lower()
    if name not in SPACES:
        raise InputError(f"unknown space '{name}': use one of {', '.join(SPACES)}")
    if fit not in FITS:
        raise InputError(f"unknown fit '{fit}': use {' or '.join(FITS)}")
    if not 8 <= int(size) <= 1024:
        raise InputError(f"size {size} out of range: use 8..1024 pixels")
    if name == "rgb":
        return RGBSpace(size, fit, device)
    if name == "freq":
        return FreqSpace(size, fit, device)
    if name == "ssl" and weights is None:
        raise InputError("--space ssl needs --weights PATH: a local Barlow Twins ResNet-50 state_dict "
                         "(e.g. resnet50.pth from facebookresearch/barlowtwins); nothing is downloaded")
    if name == "sl" and weights is None:
        return ExtractorSpace("default", size, fit, device)
    path = Path(weights)
    state = _load_raw_state(path)
    if name == "sl" and isinstance(state, dict) and "fpt_kind" in state:
        if state["fpt_kind"] != "extractor":
            raise IncompatibleError(f"{path}: is a '{state['fpt_kind']}' checkpoint, expected ResNet-50 weights "
                                    "or an extractor checkpoint")
        return ExtractorSpace(str(path), size, fit, device)
    return ResNetSpace(name, path, size, fit, device, state=state)


# --------------------------------------------------------------------------------------------
# Inputs


def group_by_model(inputs: Sequence[str | Path]) -> dict[str, list[Path]]:
    """Generated inputs -> model name -> image paths.

    A folder with subfolders: one model per subfolder (named after it; images found recursively);
    loose images in it belong to a model named after the folder. A folder without subfolders is
    one model (its name); a file belongs to the model named after its parent folder. Models of
    the same name from different inputs are merged.
    """
    models: dict[str, list[Path]] = {}
    seen: set[Path] = set()

    def add(name: str, paths: list[Path]) -> None:
        for p in paths:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                models.setdefault(name, []).append(p)

    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_file():
            add(path.resolve().parent.name, [path])
            continue
        name = path.resolve().name
        loose = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if loose:
            add(name, loose)
        for sub in sorted(p for p in path.iterdir() if p.is_dir()):
            try:
                add(sub.name, list_images(sub))
            except InputError:
                continue
    models = {k: v for k, v in models.items() if v}
    if not models:
        names = ", ".join(str(i) for i in inputs)
        raise InputError(f"no images found in {names} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return models


def paths_digest(paths: Sequence[Path]) -> str:
    """Fingerprint of a set of files: resolved path, size and modification time of each, in order."""
    h = hashlib.sha256()
    for p in paths:
        st = Path(p).stat()
        h.update(f"{Path(p).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def embed_paths(
    space: FeatureSpace, paths: Sequence[Path], batch_size: int = 32, out: object | None = None,
    on_image: Callable[[int], None] | None = None, on_skip: Callable[[Path, str], None] | None = None,
) -> tuple[np.ndarray | object, list[Path]]:
    """Features of the readable images among ``paths``, and those paths (unreadable ones skipped).

    Rows are written into ``out`` (e.g. an HDF5 dataset with ``maxshape=(None, D)``, resized to
    the number of readable images at the end) or, when ``out`` is None, into a new float32 array.
    Memory holds one batch of images at a time.
    """
    target = np.zeros((len(paths), space.dim), np.float32) if out is None else out
    kept: list[Path] = []
    pending: list[torch.Tensor] = []
    pending_paths: list[Path] = []
    row = 0

    def flush() -> None:
        nonlocal row
        if not pending:
            return
        feats = space.features(pending).numpy().astype(np.float32, copy=False)
        target[row:row + len(pending)] = feats
        row += len(pending)
        kept.extend(pending_paths)
        if on_image:
            on_image(len(pending))
        pending.clear()
        pending_paths.clear()

    def skipped(path: Path, reason: str) -> None:
        if on_skip:
            on_skip(path, reason)
        if on_image:
            on_image(1)

    for path, image in iter_images(list(paths), on_skip=skipped):
        pending.append(image)
        pending_paths.append(path)
        if len(pending) >= batch_size:
            flush()
    flush()
    if out is None:
        return target[:row], kept
    if hasattr(target, "resize"):
        target.resize((row, space.dim))
    return target, kept


# --------------------------------------------------------------------------------------------
# Manifold cache


@dataclass
class Manifold:
    """The estimated real-data manifold: features (array or HDF5 dataset) and their paths."""

    features: np.ndarray | object
    paths: list[Path]
    digest: str
    identity: str
    from_cache: bool = False


def _settings_json(space: FeatureSpace) -> str:
    return json.dumps(space.settings, sort_keys=True)


def load_or_build_manifold(
    space: FeatureSpace, real_paths: Sequence[Path], cache: str | Path | None = None, batch_size: int = 32,
    on_image: Callable[[int], None] | None = None, on_skip: Callable[[Path, str], None] | None = None,
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
        feats, kept = embed_paths(space, real_paths, batch_size, None, on_image, on_skip)
        if len(kept) == 0:
            raise InputError("no readable real images")
        return Manifold(feats, kept, digest, space.identity)
    with atomic_h5(cache, MANIFOLD_KIND, copy_existing=False) as f:
        ds = f.create_dataset("features", shape=(len(real_paths), space.dim), maxshape=(None, space.dim),
                              dtype="f4", chunks=(max(1, min(256, (1 << 20) // (4 * space.dim))), space.dim))
        _, kept = embed_paths(space, real_paths, batch_size, ds, on_image, on_skip)
        if len(kept) == 0:
            raise InputError("no readable real images")
        f.create_dataset("paths", data=[str(p) for p in kept], dtype=STR_DTYPE)
        f.attrs.update({"identity": space.identity, "settings": _settings_json(space), "real_digest": digest,
                        "listed": len(real_paths)})
    f = open_h5(cache, MANIFOLD_KIND)
    return Manifold(f["features"], kept, digest, space.identity)


# --------------------------------------------------------------------------------------------
# Exact nearest neighbours


def _rows(array: object, start: int, stop: int) -> np.ndarray:
    return np.asarray(array[start:stop], dtype=np.float32)


def gather_rows(array: object, index: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """``array[index]`` for numpy arrays and HDF5 datasets (which need sorted unique indices)."""
    index = np.asarray(index, dtype=np.int64)
    if isinstance(array, np.ndarray):
        return array[index].astype(dtype, copy=False)
    uniq, inverse = np.unique(index, return_inverse=True)
    if len(uniq) <= 1024:
        rows = np.asarray(array[uniq], dtype=dtype)
    else:  # many scattered rows: one sequential pass over blocks beats HDF5 point selection
        rows = np.empty((len(uniq),) + tuple(array.shape[1:]), dtype)
        block = 8192
        for start in range(0, int(uniq[-1]) + 1, block):
            lo, hi = np.searchsorted(uniq, [start, start + block])
            if hi > lo:
                rows[lo:hi] = np.asarray(array[start:start + block], dtype=dtype)[uniq[lo:hi] - start]
    return rows[inverse.reshape(index.shape)]


@torch.no_grad()
def nearest_neighbors(
    queries: np.ndarray, reference: object, device: torch.device | str = "cpu", query_chunk: int = 4096,
    ref_chunk: int = 8192, candidates: int = 8, on_chunk: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest reference row of every query: ``(index int64 (Q,), squared distance float64 (Q,))``.

    Pass 1 streams ``reference`` (numpy array, memmap or HDF5 dataset) in chunks of ``ref_chunk``
    rows and, per chunk of ``query_chunk`` queries, scores ``|r|^2 - 2 q.r`` (+ ``|q|^2``) with one
    float32 matrix product on ``device``, keeping the running ``candidates`` smallest per query.
    Pass 2 re-ranks those candidates with the exact float64 ``sum((q - r)^2)``, so the result is
    the float64 argmin (ties go to the lowest index, as ``numpy.argmin``) unless float32 round-off
    exceeds the gap between the true neighbour and the ``candidates``-th one. Memory is bounded by
    one query chunk x reference chunk block, whatever the sizes.
    """
    device = torch.device(device)
    queries = np.asarray(queries, dtype=np.float32)
    nq, nr = len(queries), len(reference)
    if nr == 0:
        raise InputError("empty reference set: no real features to search")
    if nq == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    if queries.shape[1] != reference.shape[1]:
        raise IncompatibleError(f"feature sizes differ: queries {queries.shape[1]}, reference {reference.shape[1]}")
    k = max(1, min(candidates, nr))
    # Distances do not change under a common shift; centring on the first chunk's mean removes
    # the large common offset (e.g. of log-spectra) that float32 |r|^2 - 2 q.r would cancel badly.
    shift = torch.from_numpy(_rows(reference, 0, ref_chunk).astype(np.float64).mean(axis=0).astype(np.float32)).to(device)
    best_val = torch.full((nq, k), float("inf"), device=device)
    best_idx = torch.zeros((nq, k), dtype=torch.int64, device=device)
    on_device = device.type != "cpu" and queries.nbytes <= (1 << 31)
    q_all = torch.from_numpy(queries).to(device) - shift if on_device else None
    for r0 in range(0, nr, ref_chunk):
        ref = torch.from_numpy(_rows(reference, r0, r0 + ref_chunk)).to(device) - shift
        r2 = (ref * ref).sum(dim=1)
        kk = min(k, ref.shape[0])
        for q0 in range(0, nq, query_chunk):
            q = q_all[q0:q0 + query_chunk] if q_all is not None else \
                torch.from_numpy(queries[q0:q0 + query_chunk]).to(device) - shift
            # |q|^2 is constant per row, so it does not change the ranking: left out here.
            scores = torch.addmm(r2.unsqueeze(0), q, ref.T, beta=1.0, alpha=-2.0)
            vals, idx = torch.topk(scores, kk, dim=1, largest=False)
            merged_val = torch.cat([best_val[q0:q0 + query_chunk], vals], dim=1)
            merged_idx = torch.cat([best_idx[q0:q0 + query_chunk], idx + r0], dim=1)
            top_val, pos = torch.topk(merged_val, k, dim=1, largest=False)
            best_val[q0:q0 + query_chunk] = top_val
            best_idx[q0:q0 + query_chunk] = torch.gather(merged_idx, 1, pos)
        if on_chunk:
            on_chunk(ref.shape[0])
    cand = torch.sort(best_idx.cpu(), dim=1).values.numpy()  # sorted: argmin ties -> lowest index
    dim = queries.shape[1]
    step = max(1, (64 << 20) // (8 * k * dim))  # ~64 MB of float64 per refinement block
    index = np.empty(nq, np.int64)
    dist = np.empty(nq, np.float64)
    for q0 in range(0, nq, step):
        c = cand[q0:q0 + step]
        rows = gather_rows(reference, c.reshape(-1)).reshape(c.shape[0], k, dim)
        d = ((rows - queries[q0:q0 + step, None, :].astype(np.float64)) ** 2).sum(axis=2)
        pick = d.argmin(axis=1)
        index[q0:q0 + step] = c[np.arange(len(c)), pick]
        dist[q0:q0 + step] = d[np.arange(len(c)), pick]
    return index, dist


def brute_force_nearest(queries: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference implementation: per query, float64 ``sum((r - q)^2)`` over all rows, argmin."""
    ref = np.asarray(reference, np.float64)
    index = np.empty(len(queries), np.int64)
    dist = np.empty(len(queries), np.float64)
    for i, q in enumerate(np.asarray(queries, np.float64)):
        d = ((ref - q) ** 2).sum(axis=1)
        index[i] = int(d.argmin())
        dist[i] = d[index[i]]
    return index, dist


# --------------------------------------------------------------------------------------------
# Artifacts


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
    space: FeatureSpace, generated: dict[str, list[Path]] | Sequence[str | Path], manifold: Manifold,
    device: torch.device | str = "cpu", batch_size: int = 32, ref_chunk: int = 8192, query_chunk: int = 4096,
    on_image: Callable[[int], None] | None = None, on_chunk: Callable[[int], None] | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
) -> ArtifactSet:
    """ManiFPT artifacts of generated images (grouped by model) against ``manifold`` in ``space``."""
    if not isinstance(generated, dict):
        generated = group_by_model(generated)
    flat = [(m, p) for m, ps in generated.items() for p in ps]
    model_of = {p: m for m, p in flat}
    skipped: list[tuple[Path, str]] = []

    def skip(path: Path, reason: str) -> None:
        skipped.append((path, reason))
        if on_skip:
            on_skip(path, reason)

    feats, kept = embed_paths(space, [p for _, p in flat], batch_size, None, on_image, skip)
    index, dist = nearest_neighbors(feats, manifold.features, device, query_chunk, ref_chunk, on_chunk=on_chunk)
    artifacts = np.empty_like(feats)
    step = 4096
    for q0 in range(0, len(feats), step):
        nearest = gather_rows(manifold.features, index[q0:q0 + step], np.float32)
        artifacts[q0:q0 + step] = feats[q0:q0 + step] - nearest
    return ArtifactSet(
        artifacts=artifacts, paths=kept, models=[model_of[p] for p in kept], nearest_index=index,
        nearest_path=[manifold.paths[i] for i in index], distance=dist, real_paths=list(manifold.paths),
        space_identity=space.identity, settings=space.settings, feature_shape=space.feature_shape,
        real_digest=manifold.digest, skipped=skipped,
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


# --------------------------------------------------------------------------------------------
# FDR


@dataclass
class FDRResult:
    fdr: float
    inter: float
    intra: float
    classes: int
    dim: int
    reduced_from: int
    skipped_classes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def fdr(features: np.ndarray, labels: Sequence[str] | np.ndarray, dim: int | None = 32, seed: int = 0) -> FDRResult:
    """Frechet-distance ratio: mean inter-class FD / mean intra-class FD (ManiFPT F.4, Yu et al.).

    Intra-class FD: each class is shuffled (``seed``) and split into two halves; FD between them,
    averaged over classes. Inter-class FD: FD between every pair of different classes, averaged.
    Classes with fewer than 4 samples (halves of 2) are skipped. When the features have more
    than ``dim`` dimensions they are first projected by PCA (fitted on all features) to ``dim``,
    so covariances are estimated from far more samples than dimensions and the FD is cheap;
    ``dim=None`` keeps the full dimension.
    """
    from fpforensics.metrics import features_to_statistics, statistics_to_frechet

    x = np.asarray(features, np.float64)
    labels = np.asarray([str(v) for v in labels])
    if x.ndim != 2 or len(x) != len(labels):
        raise InputError("fdr needs a 2-D feature array with one label per row")
    names = list(dict.fromkeys(labels.tolist()))
    keep = [n for n in names if (labels == n).sum() >= 4]
    skipped = [n for n in names if n not in keep]
    if len(keep) < 2:
        raise InputError("FDR needs at least 2 classes with 4 or more samples each")
    reduced_from = x.shape[1]
    x = x[np.isin(labels, keep)]
    labels = labels[np.isin(labels, keep)]
    if dim is not None and x.shape[1] > dim:
        from sklearn.decomposition import PCA

        x = PCA(n_components=min(dim, len(x)), random_state=seed).fit_transform(x)
    rng = np.random.default_rng(seed)
    stats, intra = {}, []
    for n in keep:
        rows = x[labels == n]
        stats[n] = features_to_statistics(rows)
        perm = rng.permutation(len(rows))
        half = len(rows) // 2
        a, b = rows[perm[:half]], rows[perm[half:2 * half]]
        intra.append(statistics_to_frechet(features_to_statistics(a), features_to_statistics(b)))
    inter = [statistics_to_frechet(stats[a], stats[b]) for i, a in enumerate(keep) for b in keep[i + 1:]]
    mean_inter, mean_intra = float(np.mean(inter)), float(np.mean(intra))
    ratio = mean_inter / mean_intra if mean_intra > 0 else float("inf")
    return FDRResult(ratio, mean_inter, mean_intra, len(keep), int(x.shape[1]), reduced_from, skipped)


# --------------------------------------------------------------------------------------------
# Files


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
        f.create_dataset("path", data=[str(p) for p in result.paths], dtype=STR_DTYPE)
        f.create_dataset("model", data=list(result.models), dtype=STR_DTYPE)
        f.create_dataset("nearest_index", data=result.nearest_index.astype(np.int64))
        f.create_dataset("nearest_path", data=[str(p) for p in result.nearest_path], dtype=STR_DTYPE)
        f.create_dataset("distance", data=result.distance.astype(np.float64))
        f.create_dataset("norm", data=result.norms.astype(np.float64))
        f.create_dataset("real_paths", data=[str(p) for p in result.real_paths], dtype=STR_DTYPE)
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


# --------------------------------------------------------------------------------------------
# Panels


def _to_pil(arr: np.ndarray, tile: int):
    from PIL import Image

    img = Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return img.resize((tile, tile), Image.NEAREST) if img.size != (tile, tile) else img


def artifact_panel(generated: torch.Tensor, nearest: torch.Tensor, tile: int = 192, caption: str = ""):
    """A readable picture: generated | nearest real | artifact (rgb) | artifact log-spectrum (freq).

    Both images are the space's view (``fit_image`` at ``size``). The rgb artifact is
    ``x_G - x*`` scaled so its largest absolute value reaches full range (grey = 0); the freq
    artifact is the channel-mean of ``log|FFT(x_G)| - log|FFT(x*)|`` (zero frequency centred),
    shown with a diverging colour map (white = 0, red = more energy in the generated image).
    """
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    g, r = generated.float().cpu(), nearest.float().cpu()
    diff = (g - r).numpy().transpose(1, 2, 0)
    peak = float(np.abs(diff).max())
    rgb_art = diff / (2 * peak) + 0.5 if peak > 0 else np.full_like(diff, 0.5)
    spec = (channel_log_spectrum(g[None]) - channel_log_spectrum(r[None]))[0].mean(0).numpy()
    speak = float(np.abs(spec).max())
    spec_img = colormaps["RdBu_r"](spec / (2 * speak) + 0.5 if speak > 0 else np.full_like(spec, 0.5))[..., :3]
    tiles = [_to_pil(g.numpy().transpose(1, 2, 0), tile), _to_pil(r.numpy().transpose(1, 2, 0), tile),
             _to_pil(rgb_art, tile), _to_pil(spec_img, tile)]
    labels = ["generated", "nearest real", f"artifact rgb (x{0.5 / peak:.1f})" if peak > 0 else "artifact rgb (0)",
              f"artifact log-spectrum (+-{speak:.2f})"]
    head, foot = 16, 16 if caption else 0
    canvas = Image.new("RGB", (4 * tile + 3 * 4, tile + head + foot), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (t, label) in enumerate(zip(tiles, labels, strict=True)):
        x = i * (tile + 4)
        canvas.paste(t, (x, head))
        draw.text((x + 2, 2), label, fill="black")
    if caption:
        draw.text((2, head + tile + 2), caption[: 4 * tile // 6], fill="black")
    return canvas


def safe_name(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return keep.strip("._") or "model"
