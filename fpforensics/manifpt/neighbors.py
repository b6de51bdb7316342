"""ManiFPT, step 3: the exact nearest real sample of every generated one, streamed in chunks (float64 re-rank)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from fpforensics.errors import IncompatibleError, InputError


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

