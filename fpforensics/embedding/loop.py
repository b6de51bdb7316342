"""Stage 5, embedding: the one loop from images to rows, for embed, gallery, identify, verify, eval, FFD and ManiFPT.

An :class:`Encoder` maps a list of decoded images to one row each: an extractor with its
sliding window (:class:`ExtractorEncoder`), the residual spectrum (:class:`SpectrumEncoder`) or
a ManiFPT feature space. The loop decodes each image once (unreadable files are skipped and
reported), applies an optional per-image ``transform`` (a perturbation), packs images into
batches of about ``batch_size`` units (crops for an extractor, images otherwise), runs every
encoder on the batch on its device under the chosen precision, reports progress, and can read
and fill an :class:`~fpforensics.embedding.cache.EmbeddingCache`. Rows never depend on the batch
size: every image is embedded alone, only the forward passes are shared.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from fpforensics.defaults import DEFAULTS
from fpforensics.device import autocast, resolve_precision
from fpforensics.images.crops import center_crop, grid_crops, grid_size
from fpforensics.images.decode import LoadReport, iter_images
from fpforensics.metrics import l2_normalize
from fpforensics.spectrum import radial_log_power

CROP = DEFAULTS.crop_size


class Encoder(Protocol):
    """Images -> rows. ``identity`` changes whenever rows would (it keys caches); ``dim`` is the row size."""

    identity: str
    dim: int
    device: torch.device

    def units(self, image: torch.Tensor) -> int:
        """What one image costs in a batch (crops for an extractor, 1 otherwise)."""
        ...

    def encode(self, images: list[torch.Tensor]) -> torch.Tensor:
        """``(len(images), dim)`` rows."""
        ...


def _device_of(module: torch.nn.Module) -> torch.device:
    return next((p.device for p in module.parameters()), torch.device("cpu"))


class ExtractorEncoder:
    """An extractor with the sliding window of METHOD 1.4.

    Each image is covered by the equally spaced ``grid x grid`` crops of 128 px; their raw
    embeddings are L2-normalized, averaged and normalized again. The crops of all the batch's
    images go through the extractor in one forward pass.
    """

    def __init__(self, extractor: Any, grid: int = DEFAULTS.grid, device: torch.device | str | None = None) -> None:
        self.extractor, self.grid = extractor, int(grid)
        self.device = torch.device(device) if device is not None else _device_of(extractor)
        self.identity = f"{extractor.identity}|grid={self.grid}"
        self.dim = int(extractor.embedding_dim)

    def units(self, image: torch.Tensor) -> int:
        return grid_size(image.shape[-2], image.shape[-1], CROP, self.grid)

    def encode(self, images: list[torch.Tensor]) -> torch.Tensor:
        crops = [grid_crops(im, CROP, self.grid) for im in images]
        emb = self.extractor.embed_crops(torch.cat(crops).to(self.device)).float().cpu()
        per_image = torch.split(emb, [len(c) for c in crops])
        return torch.stack([l2_normalize(l2_normalize(chunk).mean(dim=0)) for chunk in per_image])


class SpectrumEncoder:
    """Per image: the log10 radial power spectrum of the residual of its central 128 crop (the unit of FFD)."""

    def __init__(self, residual: Any, device: torch.device | str | None = None, crop: int = CROP) -> None:
        self.residual, self.crop = residual, int(crop)
        self.device = torch.device(device) if device is not None else _device_of(residual)
        self.identity = f"spectrum[{residual.identity}]"
        self.dim = self.crop // 2

    def units(self, image: torch.Tensor) -> int:
        return 1

    def encode(self, images: list[torch.Tensor]) -> torch.Tensor:
        batch = torch.stack([center_crop(im, self.crop) for im in images]).to(self.device)
        return radial_log_power(self.residual(batch))


@dataclass
class Embedded:
    """What :func:`embed_files` produced: one row matrix per encoder, rows in the order of ``index``.

    ``index`` holds the positions (in the input list) of the images that loaded; ``paths`` their
    files; ``skipped`` the unreadable files and why.
    """

    rows: list[Any]
    index: np.ndarray
    paths: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    cached: list[bool] = field(default_factory=list)  # per encoder: rows read from the cache

    def mask(self, n: int) -> np.ndarray:
        """``(n,)`` bool: which of the ``n`` input positions have a row."""
        ok = np.zeros(n, dtype=bool)
        ok[self.index] = True
        return ok

    def positional(self, i: int, n: int) -> np.ndarray:
        """Rows of encoder ``i`` at their input positions (zeros where an image did not load)."""
        full = np.zeros((n, self.rows[i].shape[1]), np.float32)
        full[self.index] = self.rows[i]
        return full


def _batches(items: Iterable[tuple[int, torch.Tensor]], encoders: Sequence[Encoder], batch_size: int
             ) -> Iterator[list[tuple[int, torch.Tensor]]]:
    """Consecutive images until their cost reaches ``batch_size`` units (at least one image per batch)."""
    batch: list[tuple[int, torch.Tensor]] = []
    cost = 0
    for item in items:
        batch.append(item)
        cost += max(e.units(item[1]) for e in encoders)
        if cost >= batch_size:
            yield batch
            batch, cost = [], 0
    if batch:
        yield batch


@torch.no_grad()
def _run(encoders: Sequence[Encoder], items: Iterable[tuple[int, torch.Tensor]], batch_size: int, precision: str,
         outs: Sequence[Any] | None = None, on_batch: Callable[[int], None] | None = None
         ) -> tuple[list[Any], list[int]]:
    """The loop itself: rows of every encoder, in item order, and the positions they belong to."""
    targets = list(outs) if outs is not None else [[] for _ in encoders]
    contexts = [autocast(e.device, resolve_precision(precision, e.device)) for e in encoders]
    positions: list[int] = []
    for batch in _batches(items, encoders, batch_size):
        images = [img for _, img in batch]
        start = len(positions)
        for encoder, context, target in zip(encoders, contexts, targets, strict=True):
            with context:
                rows = encoder.encode(images).float().cpu().numpy()
            if outs is None:
                target.append(rows)
            else:
                if hasattr(target, "resize") and target.shape[0] < start + len(rows):
                    target.resize((start + len(rows), encoder.dim))
                target[start:start + len(rows)] = rows
        positions += [pos for pos, _ in batch]
        if on_batch:
            on_batch(len(batch))
    if outs is None:
        targets = [np.concatenate(t) if t else np.zeros((0, e.dim), np.float32) for t, e in zip(targets, encoders,
                                                                                                strict=True)]
    else:
        for target, encoder in zip(targets, encoders, strict=True):
            if hasattr(target, "resize"):
                target.resize((len(positions), encoder.dim))
    return targets, positions


def embed_images(encoders: Encoder | Sequence[Encoder], images: Iterable[torch.Tensor],
                 batch_size: int = DEFAULTS.embed_batch_size, precision: str = DEFAULTS.precision,
                 on_image: Callable[[int], None] | None = None) -> Any:
    """Rows of decoded images ``(3, H, W)`` in [0, 1]: one ``(N, dim)`` float32 array per encoder (or one array)."""
    single = not isinstance(encoders, Sequence)
    encoder_list = [encoders] if single else list(encoders)
    rows, _ = _run(encoder_list, enumerate(images), batch_size, precision, on_batch=on_image)
    return rows[0] if single else rows


def embed_files(
    encoders: Sequence[Encoder], paths: Sequence[str | Path], batch_size: int = DEFAULTS.embed_batch_size,
    precision: str = DEFAULTS.precision, limit: int | None = None,
    transform: Callable[[torch.Tensor, int], torch.Tensor] | None = None, outs: Sequence[Any] | None = None,
    cache: Any = None, cache_key: Callable[[Encoder], str] | None = None,
    on_image: Callable[[int], None] | None = None, on_skip: Callable[[Path, str], None] | None = None,
) -> Embedded:
    """Embed image files with every encoder, decoding each file once.

    ``limit``: stop after that many images have loaded (in the given order; unreadable ones are
    replaced by the next). ``transform(image, position)``: applied to each decoded image (e.g. a
    seeded perturbation). ``outs``: one array-like per encoder to write the rows into (e.g. an
    HDF5 dataset, resized to the rows written), for sets larger than memory. ``cache`` with
    ``cache_key(encoder)``: rows found there are not computed again, and computed ones are saved
    (rows kept where every encoder has one). ``on_image(n)``: ``n`` more images embedded.
    """
    paths = [Path(p) for p in paths]
    n = len(paths)
    hits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if cache is not None:
        for i, encoder in enumerate(encoders):
            hit = cache.load(cache_key(encoder))
            if hit is not None and hit[0].shape[0] == n:
                hits[i] = (hit[0], hit[1].astype(bool))
    todo = [e for i, e in enumerate(encoders) if i not in hits]
    report = LoadReport()
    computed: list[Any] = []
    index = np.flatnonzero(next(iter(hits.values()))[1]) if hits and not todo else np.zeros(0, np.int64)
    if todo:
        loaded = itertools.islice(_decode(paths, report, on_skip), limit)  # stops decoding at the limit
        items = ((pos, transform(img, pos) if transform else img) for pos, img in loaded)
        computed, positions = _run(todo, items, batch_size, precision, outs, on_batch=on_image)
        index = np.asarray(positions, dtype=np.int64)
        if cache is not None:
            ok = np.zeros(n, dtype=bool)
            ok[index] = True
            for encoder, rows in zip(todo, computed, strict=True):
                full = np.zeros((n, encoder.dim), np.float32)
                full[index] = rows
                cache.save(cache_key(encoder), full, ok)
    elif on_image:
        on_image(n)
    if hits:  # keep the rows every encoder has: cached ones may come from a run that read other files
        for _, ok in hits.values():
            keep = ok[index]
            computed = [rows[keep] for rows in computed]
            index = index[keep]
    rows, pending = [], iter(computed)
    for i in range(len(encoders)):
        rows.append(hits[i][0][index] if i in hits else next(pending))
    loaded_paths = [paths[i] for i in index]
    return Embedded(rows, index, loaded_paths, report.skipped, [i in hits for i in range(len(encoders))])


def _decode(paths: list[Path], report: LoadReport, on_skip: Callable[[Path, str], None] | None
            ) -> Iterator[tuple[int, torch.Tensor]]:
    """``(position in paths, image)`` of the files that decode, in order; the others go to ``report``."""
    for pos, path in enumerate(paths):
        for _, img in iter_images([path], report, on_skip):
            yield pos, img

