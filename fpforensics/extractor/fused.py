"""Stage 4, extractor: trained extractors side by side as one embedding (``fpt train fuse``).

Why: extractors trained on different residuals read different bands of the spectrum. The DnCNN
residual's fine band gives the best clean identification and is erased by JPEG; the median
residual's middle band survives re-encoding (docs/accuracy.md, "Fusing the two residuals"). The
fused embedding concatenates each part's L2-normalised embedding scaled by ``sqrt(weight)``
(weights sum to 1). The cosine of two fused embeddings is then exactly the weighted mean of the
parts' cosines, so each part keeps its meaning and the weights say how much each one counts.

The fused checkpoint (kind ``extractor``) holds every part's checkpoint whole, so it is one
self-contained file like any other extractor. It records the held-out architectures that *no*
part trained on, so the held-out synthetic protocols stay zero-shot. Its own calibration is
fitted by ``fpt calibrate`` as for any extractor. The parts' calibrations are dropped, because
they are not the fused extractor's.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from fpforensics.checkpoints import check_checkpoint_output, load_checkpoint, save_checkpoint
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.extractor.base import Extractor
from fpforensics.extractor.network import FUSED_KEY
from fpforensics.extractor.trained import TrainedExtractor

FORMAT_VERSION = 1
# What a part's checkpoint does not need inside a fused file: its own operating points (not the
# fused extractor's) and the training state (history, optimizer).
DROPPED_PART_KEYS = ("calibration", "optimizer", "scheduler", "history", "fpt_kind")


def normalized_weights(weights: Sequence[float], n_parts: int) -> tuple[float, ...]:
    """Positive weights, one per part, rescaled to sum to 1."""
    if n_parts < 2:
        raise InputError(f"fusing needs at least 2 extractors (got {n_parts})")
    if len(weights) != n_parts:
        raise InputError(f"--weights has {len(weights)} value(s) for {n_parts} extractors")
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise InputError(f"--weights must all be > 0 (got {', '.join(f'{w:g}' for w in weights)})")
    total = float(sum(weights))
    return tuple(float(w) / total for w in weights)


def fused_identity(parts: Sequence[Extractor], weights: Sequence[float]) -> str:
    """``fused:<digest>`` of the parts' identities and weights: any change gives another identity."""
    desc = json.dumps([[p.identity, round(float(w), 6)] for p, w in zip(parts, weights, strict=True)])
    return f"fused:{hashlib.sha256(desc.encode()).hexdigest()[:12]}"


class FusedExtractor(Extractor):
    """``concat(sqrt(w_i) * normalize(part_i(crops)))``: cosines are the weighted mean of the parts' cosines."""

    def __init__(self, parts: Sequence[TrainedExtractor], weights: Sequence[float]) -> None:
        super().__init__()
        self.weights = normalized_weights(weights, len(parts))
        self.parts = nn.ModuleList(parts)
        self.embedding_dim = sum(int(p.embedding_dim) for p in parts)
        self.identity = fused_identity(parts, self.weights)

    @torch.no_grad()
    def embed_crops(self, crops: torch.Tensor) -> torch.Tensor:
        return torch.cat([math.sqrt(w) * F.normalize(part.embed_crops(crops).float(), dim=1)
                          for part, w in zip(self.parts, self.weights, strict=True)], dim=1)

    @classmethod
    def from_payload(cls, ckpt: dict[str, Any], path: str | Path = "") -> FusedExtractor:
        spec = ckpt[FUSED_KEY]
        if int(spec.get("format", 0)) > FORMAT_VERSION:
            raise IncompatibleError(f"{path}: fused extractor format {spec.get('format')} is newer than this "
                                    f"version reads ({FORMAT_VERSION})")
        parts = [TrainedExtractor.from_payload(p, f"{path} (part {i + 1})") for i, p in enumerate(spec["parts"])]
        ext = cls(parts, [float(w) for w in spec["weights"]])
        ext.calibration = ckpt.get("calibration")
        ext.source = str(path)
        return ext


def _common_heldout(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Held-out bookkeeping that stays true for the fused extractor: what no part trained on."""
    held = [set(p.get("heldout_archs") or []) for p in parts]
    seen = set().union(*(set(p.get("seen_archs") or []) for p in parts))
    out: dict[str, Any] = {"heldout_archs": sorted(set.intersection(*held) - seen), "seen_archs": sorted(seen)}
    prints = {p.get("pool_fingerprint") for p in parts}
    ids = {tuple(sorted(int(i) for i in p.get("heldout_model_ids") or [])) for p in parts}
    if len(prints) == 1 and len(ids) == 1 and None not in prints:  # one pool, one split: the model ids hold too
        out["pool_fingerprint"] = parts[0]["pool_fingerprint"]
        out["heldout_model_ids"] = list(next(iter(ids)))
    return out


def fuse_checkpoints(paths: Sequence[str | Path], weights: Sequence[float] | None, out: str | Path,
                     overwrite: bool = False) -> FusedExtractor:
    """Write one fused extractor checkpoint of the extractor checkpoints ``paths`` to ``out`` and return it.

    ``weights`` default to equal. Fused checkpoints cannot be parts (fuse the plain extractors instead).
    """
    weights = normalized_weights(list(weights) if weights else [1.0] * len(paths), len(paths))
    out = Path(out)
    if out.exists() and any(Path(p).resolve() == out.resolve() for p in paths):
        raise InputError(f"{out}: is one of the extractors being fused; write the fused one to a new file")
    check_checkpoint_output(out, "extractor", overwrite=overwrite)
    payloads = []
    for p in paths:
        ckpt = load_checkpoint(p, kind="extractor")
        if FUSED_KEY in ckpt:
            raise InputError(f"{p}: is already a fused extractor; fuse the plain extractors it is made of")
        payloads.append({k: v for k, v in ckpt.items() if k not in DROPPED_PART_KEYS})
    parts = [TrainedExtractor.from_payload(c, p) for c, p in zip(payloads, paths, strict=True)]
    fused = FusedExtractor(parts, weights)
    save_checkpoint({FUSED_KEY: {"format": FORMAT_VERSION, "weights": list(fused.weights), "parts": payloads,
                                 "sources": [str(p) for p in paths]},
                     "identity": fused.identity, "embedding_dim": fused.embedding_dim, "complete": True,
                     **_common_heldout(payloads)}, out, kind="extractor")
    fused.source = str(out)
    return fused
