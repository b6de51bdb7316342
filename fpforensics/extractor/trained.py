"""A trained extractor rebuilt from one self-contained checkpoint (``fpt train extractor``).

The checkpoint (kind ``extractor``) holds the network weights, the backbone name, the embedding
size, the input transform and the residual extractor *with its weights* (the DnCNN state_dict is
embedded), so the file alone rebuilds the exact pipeline::

    crops -> residual -> log-magnitude spectrum -> ResNet -> projection -> embedding

It is loaded with ``torch.load(weights_only=True)`` via :func:`fpforensics.checkpoints.load_checkpoint`:
a foreign or malicious file is refused, never executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fpforensics.checkpoints import load_checkpoint, state_dict_digest
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.extractor.base import Extractor
from fpforensics.extractor.network import BACKBONES, INPUT_TRANSFORM, FingerprintNet
from fpforensics.spectral import (
    DnCNN,
    DnCNNResidual,
    MedianResidual,
    NoResidual,
    ResidualExtractor,
    log_magnitude_spectrum,
)


def residual_to_payload(residual: ResidualExtractor) -> dict[str, Any]:
    """Describe a residual extractor so that a checkpoint can rebuild it alone."""
    if isinstance(residual, DnCNNResidual):
        return {"kind": "dncnn", "identity": residual.identity, "depth": residual.net.depth,
                "channels": residual.net.channels,
                "state_dict": {k: v.detach().cpu() for k, v in residual.net.state_dict().items()}}
    if isinstance(residual, MedianResidual):
        return {"kind": "median", "identity": residual.identity}
    if isinstance(residual, NoResidual):
        return {"kind": "none", "identity": residual.identity}
    raise InputError(f"residual '{residual.identity}' cannot be stored in an extractor checkpoint")


def residual_from_payload(payload: dict[str, Any], path: str | Path = "") -> ResidualExtractor:
    kind = payload.get("kind")
    if kind == "median":
        return MedianResidual()
    if kind == "none":
        return NoResidual()
    if kind == "dncnn":
        net = DnCNN(depth=int(payload["depth"]), channels=int(payload["channels"]))
        try:
            net.load_state_dict({k: v.float() for k, v in payload["state_dict"].items()})
        except (RuntimeError, KeyError) as exc:
            raise IncompatibleError(f"{path}: embedded DnCNN weights do not match ({str(exc).splitlines()[0]})"
                                    ) from None
        for p in net.parameters():
            p.requires_grad_(False)
        return DnCNNResidual(net, identity=str(payload["identity"]))
    raise IncompatibleError(f"{path}: unknown residual kind '{kind}' in extractor checkpoint")


class TrainedExtractor(Extractor):
    """Residual -> log-magnitude spectrum -> :class:`FingerprintNet` embedding (raw; callers L2-normalise)."""

    def __init__(self, net: FingerprintNet, residual: ResidualExtractor, identity: str | None = None) -> None:
        super().__init__()
        self.net = net
        self.residual = residual
        self.embedding_dim = net.embedding_dim
        self.identity = identity or extractor_identity(net, residual)

    @torch.no_grad()
    def embed_crops(self, crops: torch.Tensor) -> torch.Tensor:
        return self.net.embed(log_magnitude_spectrum(self.residual(crops))).float()

    @classmethod
    def from_checkpoint(cls, path: str | Path, backbone: str | None = None) -> TrainedExtractor:
        """Rebuild from a checkpoint; refuse other kinds, unknown transforms or a backbone mismatch."""
        ckpt = load_checkpoint(path, kind="extractor")
        name = ckpt.get("backbone")
        if name not in BACKBONES:
            raise IncompatibleError(f"{path}: unknown backbone '{name}' (this version knows {', '.join(BACKBONES)})")
        if backbone is not None and name != backbone:
            raise IncompatibleError(f"{path}: is a {name} extractor, expected {backbone}")
        if ckpt.get("input_transform") != INPUT_TRANSFORM:
            raise IncompatibleError(f"{path}: input transform '{ckpt.get('input_transform')}' is not supported")
        net = FingerprintNet(name, int(ckpt["embedding_dim"]) if ckpt.get("projection", True) else 0, num_classes=0)
        state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()
                 if not k.startswith("classifier.")}
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise IncompatibleError(f"{path}: weights do not fit a {name} backbone with embedding size "
                                    f"{ckpt['embedding_dim']} ({str(exc).splitlines()[0][:120]})") from None
        residual = residual_from_payload(ckpt["residual"], path)
        for p in net.parameters():
            p.requires_grad_(False)
        return cls(net.eval(), residual.eval())


def identity_of_state(backbone: str, state: dict[str, torch.Tensor], residual_identity: str) -> str:
    """``<backbone>:<digest>``; the digest covers the inference weights and the residual identity."""
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    return f"{backbone}:{state_dict_digest({**state, f'residual={residual_identity}': torch.zeros(0)})}"


def extractor_identity(net: FingerprintNet, residual: ResidualExtractor) -> str:
    return identity_of_state(net.backbone_name, net.inference_state_dict(), residual.identity)
