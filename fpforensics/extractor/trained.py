"""Stage 4, extractor: a trained extractor rebuilt from one self-contained checkpoint (``fpt train extractor``).

The checkpoint (kind ``extractor``) holds the network weights, the backbone name, the embedding
size, the input transform and the residual extractor *with its weights* (the DnCNN state_dict is
embedded), so the file alone rebuilds the exact pipeline::

    crops -> residual -> log-magnitude spectrum -> ResNet -> projection -> embedding

It is loaded with ``torch.load(weights_only=True)`` via :func:`fpforensics.checkpoints.load_checkpoint`:
a foreign or malicious file is refused, never executed.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fpforensics.checkpoints import load_checkpoint, state_dict_digest
from fpforensics.errors import IncompatibleError
from fpforensics.extractor import BACKBONES
from fpforensics.extractor.base import Extractor
from fpforensics.extractor.network import FUSED_KEY, INPUT_TRANSFORM, FingerprintNet
from fpforensics.residual import residual_from_payload
from fpforensics.residual.base import ResidualExtractor
from fpforensics.spectrum import log_magnitude_spectrum


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
        return cls.from_payload(load_checkpoint(path, kind="extractor"), path, backbone)

    @classmethod
    def from_payload(cls, ckpt: dict, path: str | Path = "", backbone: str | None = None) -> TrainedExtractor:
        """Rebuild from a loaded checkpoint dict (a file's, or one part of a fused extractor's)."""
        if FUSED_KEY in ckpt:
            raise IncompatibleError(f"{path}: is a fused extractor; load it with fpforensics.load_extractor")
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
        ext = cls(net.eval(), residual.eval())
        ext.calibration = ckpt.get("calibration")  # operating points fitted for these weights (fpt calibrate)
        ext.source = str(path)
        return ext


def identity_of_state(backbone: str, state: dict[str, torch.Tensor], residual_identity: str) -> str:
    """``<backbone>:<digest>``; the digest covers the inference weights and the residual identity."""
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    return f"{backbone}:{state_dict_digest({**state, f'residual={residual_identity}': torch.zeros(0)})}"


def extractor_identity(net: FingerprintNet, residual: ResidualExtractor) -> str:
    return identity_of_state(net.backbone_name, net.inference_state_dict(), residual.identity)
