"""Stage 5, embedding: fingerprints of image files and folders with an extractor (``fpforensics.embed``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fpforensics.defaults import DEFAULTS
from fpforensics.errors import InputError
from fpforensics.extractor import load_extractor

Paths = str | Path | Sequence[str | Path]
OnImage = Callable[[int], None] | None
OnSkip = Callable[[Path, str], None] | None


@dataclass
class Embeddings:
    """Fingerprints of the images that loaded (rows L2-normalized, in input order) and what made them."""

    embeddings: np.ndarray
    paths: list[Path]
    extractor: Any
    grid: int
    found: int  # image files listed (all shards)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    positions: np.ndarray | None = None  # with a shard: each row's place in the whole sorted list
    shard: tuple[int, int] = (0, 1)
    signal: list[Any] | None = None  # with ``signal=True``: a SignalCheck per row (fpforensics.verdict.signal)

    @property
    def signal_ok(self) -> np.ndarray:
        """``(N,)`` bool: rows with enough residual signal to be scored (all True without the check)."""
        if self.signal is None:
            return np.ones(len(self.paths), bool)
        return np.array([c.ok for c in self.signal], bool)


def embed(inputs: Paths, extractor: Any = DEFAULTS.extractor, grid: int = DEFAULTS.grid,
          batch_size: int = DEFAULTS.embed_batch_size, device: Any = "auto", precision: str = DEFAULTS.precision,
          limit: int | None = None, shard: tuple[int, int] = (0, 1), on_start: OnImage = None,
          on_image: OnImage = None, on_skip: OnSkip = None, signal: bool = False) -> Embeddings:
    """Embed image files and folders (searched recursively, sorted) with the sliding window of METHOD 1.4.

    ``extractor``: a name (``default``, ``spectral``, ``pixels``), a checkpoint path, or a loaded
    extractor. ``limit``: at most that many images, evenly spread over the sorted list (unreadable
    ones replaced by their neighbours). ``shard=(i, n)``: only part ``i`` of ``n`` of the list
    (``fpt embed --shard``). A single named file that cannot be read is an error; in a batch,
    unreadable files are skipped and reported through ``on_skip``. ``on_start(n)``: ``n`` images
    to do; ``on_image(n)``: ``n`` more done. ``signal``: also judge each image's residual signal
    (:mod:`fpforensics.verdict.signal`) in the same loop, on the same decoded image.

    >>> e = fpforensics.embed(["photos/"], extractor="spectral")   # doctest: +SKIP
    >>> e.embeddings.shape, e.paths[0]                              # doctest: +SKIP
    """
    from fpforensics.embedding.loop import ExtractorEncoder, embed_files
    from fpforensics.images.decode import list_images, load_image
    from fpforensics.images.folders import spread_order
    from fpforensics.sharding import shard_items

    ext = load_extractor(extractor, device) if isinstance(extractor, str | Path) else extractor
    found = list_images(inputs)
    if len(found) == 1:  # a single file: a bad one is an error, not a skip
        load_image(found[0])
    mine = shard_items(list(range(len(found))), *shard)
    order = [mine[i] for i in spread_order(len(mine), limit)] if limit else mine
    if on_start:
        on_start(min(len(order), limit) if limit else len(order))
    encoders: list[Any] = [ExtractorEncoder(ext, grid)]
    if signal:
        from fpforensics.verdict.signal import SignalEncoder

        encoders.append(SignalEncoder(grid))
    done = embed_files(encoders, [found[i] for i in order], batch_size, precision, limit=limit,
                       on_image=on_image, on_skip=on_skip)
    if not len(done.paths):
        raise InputError(f"no readable images among {len(order)} file(s) ({len(done.skipped)} skipped)")
    positions = np.asarray(order, np.int64)[done.index]
    keep = np.argsort(positions, kind="stable")  # back to the sorted input order
    checks = None
    if signal:
        from fpforensics.verdict.signal import checks_from_rows

        checks = checks_from_rows(done.rows[1][keep])
    return Embeddings(done.rows[0][keep], [found[i] for i in positions[keep]], ext, grid, len(found), done.skipped,
                      positions[keep] if shard[1] > 1 else None, shard, checks)
