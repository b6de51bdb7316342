"""P models x K images per batch, so that every anchor of the triplet loss has positives (METHOD 1.3)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from fpforensics.errors import InputError


class PKSampler:
    """Draws batches of ``p`` distinct model labels, each repeated ``k`` times, with ``k`` image indices.

    Models are visited in a random permutation (refreshed when exhausted), so within an epoch of
    ``ceil(n_models / p)`` steps every model is seen. Image indices for one model are drawn without
    replacement when there are at least ``k`` images. Deterministic given ``generator``.
    """

    def __init__(self, n_models: int, n_images: int, p: int, k: int, generator: torch.Generator) -> None:
        if p < 2:
            raise InputError("--p must be at least 2 (a triplet needs a negative model)")
        if k < 2:
            raise InputError("--k must be at least 2 (a triplet needs a positive image)")
        if n_models < 2:
            raise InputError(f"need at least 2 training models, got {n_models}")
        if n_images < 1:
            raise InputError("no real images to draw from")
        self.n_models, self.n_images, self.k = n_models, n_images, k
        self.p = min(p, n_models)
        self.gen = generator
        self._queue: list[int] = []

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def _next_models(self) -> list[int]:
        chosen: list[int] = []
        while len(chosen) < self.p:
            if not self._queue:
                self._queue = torch.randperm(self.n_models, generator=self.gen).tolist()
            m = self._queue.pop()
            if m not in chosen:
                chosen.append(m)
        return chosen

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(labels (p*k,), image_indices (p*k,))`` as LongTensors, grouped by model."""
        labels, images = [], []
        for m in self._next_models():
            if self.n_images >= self.k:
                idx = torch.randperm(self.n_images, generator=self.gen)[: self.k]
            else:
                idx = torch.randint(self.n_images, (self.k,), generator=self.gen)
            labels += [m] * self.k
            images.append(idx)
        return torch.tensor(labels, dtype=torch.long), torch.cat(images)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()
