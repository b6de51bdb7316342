"""Stage 4, extractor: the fingerprint network of METHOD 1.3, a registered backbone on the residual spectrum with two heads.

* Input: the per-channel log-magnitude spectrum of the residual (``log_magnitude_spectrum``),
  ``(B, 3, 128, 128)``. Its values sit around -10..0, far from what a ResNet stem expects, so
  a ``BatchNorm2d(3)`` standardises it first (learned, frozen at inference like every BN).
* Backbone: any of :data:`fpforensics.extractor.BACKBONES` (built in: ResNet-18/34/50 from
  torchvision), random init (``--init`` loads local weights in torchvision's format), ``fc``
  removed: the pooled 512-d (18/34) or 2048-d (50) feature.
* Embedding head: a linear projection to ``embedding_dim`` (default 512), or the pooled feature
  itself with ``embedding_dim=0``. The triplet loss and attribution use it L2-normalised.
* Classifier head: a linear layer over the training models on the embedding (cross-entropy),
  only needed in training, dropped from shipped checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from fpforensics.errors import IncompatibleError, InputError
from fpforensics.extractor import BACKBONES

INPUT_TRANSFORM = "logmag"  # fpforensics.spectrum.log_magnitude_spectrum
FUSED_KEY = "fused"  # the checkpoint key that marks a fused extractor (fpforensics.extractor.fused)


def make_backbone(name: str) -> tuple[nn.Module, int]:
    """The registered backbone ``name`` (trunk without classifier) and its pooled feature size."""
    return BACKBONES.get(name)()


class FingerprintNet(nn.Module):
    """Spectrum ``(B, 3, H, W)`` -> (embedding ``(B, D)``, logits ``(B, C)`` or None)."""

    def __init__(self, backbone: str = "resnet50", embedding_dim: int = 512, num_classes: int = 0) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.input_norm = nn.BatchNorm2d(3)
        self.backbone, self.feature_dim = make_backbone(backbone)
        if embedding_dim < 0:
            raise InputError("--embedding-dim must be >= 0 (0 = the pooled backbone feature)")
        self.embedding_dim = embedding_dim or self.feature_dim
        self.head = nn.Linear(self.feature_dim, embedding_dim) if embedding_dim else nn.Identity()
        self.classifier = nn.Linear(self.embedding_dim, num_classes) if num_classes else None

    def embed(self, spectrum: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.input_norm(spectrum)))

    def forward(self, spectrum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        emb = self.embed(spectrum)
        return emb, (self.classifier(emb) if self.classifier is not None else None)

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights needed to embed (the classifier over training models is left out)."""
        return {k: v.detach().cpu() for k, v in self.state_dict().items() if not k.startswith("classifier.")}


@dataclass
class InitWeights:
    """Starting weights for ``--init``, read once: checked for zero-shot safety, then loaded."""

    path: Path
    backbone: dict[str, torch.Tensor]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # input_norm.* and head.* of an fpt extractor
    checkpoint: dict[str, Any] | None = None  # an fpt extractor's metadata (no weights); None for torchvision


def read_init_weights(path: str | Path) -> InitWeights:
    """Read torchvision ResNet weights or a previous fpt extractor checkpoint (one-line errors on bad files).

    A torchvision file (e.g. ``resnet50-*.pth``) gives the backbone; its ``fc`` layer is ignored.
    An fpt extractor warm-starts the whole embedding network (input norm, backbone, embedding
    head), so a shipped extractor can be trained further on a larger pool; its classifier over the
    old training models is never part of it.
    """
    from fpforensics.checkpoints import load_checkpoint, safe_torch_load

    path = Path(path)
    state = safe_torch_load(path, "weights file for --init")
    extra: dict[str, torch.Tensor] = {}
    meta = None
    if isinstance(state, dict) and "fpt_kind" in state:
        payload = load_checkpoint(path, kind="extractor")
        if FUSED_KEY in payload:
            raise InputError(f"{path}: is a fused extractor; --init takes one of the extractors it is made of")
        full = payload["state_dict"]
        extra = {k: v for k, v in full.items() if k.startswith(("input_norm.", "head."))}
        state = {k[len("backbone."):]: v for k, v in full.items() if k.startswith("backbone.")}
        meta = {k: v for k, v in payload.items() if k != "state_dict"}
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state_dict of tensors (torchvision format expected)")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    return InitWeights(path, state, extra, meta)


def load_backbone_init(net: FingerprintNet, init: str | Path | InitWeights) -> int:
    """Load ``--init`` weights into ``net``; another architecture's weights are refused. Returns tensors loaded.

    The embedding head of an fpt extractor is taken only when its size matches this net's.
    """
    init = init if isinstance(init, InitWeights) else read_init_weights(init)
    expected = net.backbone.state_dict()
    missing = [k for k in expected if k not in init.backbone]
    bad = [k for k in expected if k in init.backbone and init.backbone[k].shape != expected[k].shape]
    if missing or bad or len(init.backbone) != len(expected):
        raise IncompatibleError(f"{init.path}: weights are not a {net.backbone_name} backbone ({len(missing)} missing, "
                                f"{len(bad)} mis-shaped, {len(init.backbone)} tensors vs {len(expected)})")
    net.backbone.load_state_dict(init.backbone)  # copy_ casts fp16 (shipped) weights to the net's dtype
    head = {k: v for k, v in init.extra.items() if k.startswith("head.")}
    own_head = {k: v for k, v in net.state_dict().items() if k.startswith("head.")}
    head_fits = head.keys() == own_head.keys() and all(head[k].shape == own_head[k].shape for k in head)
    extra = {k: v for k, v in init.extra.items() if head_fits or not k.startswith("head.")}
    if extra:
        net.load_state_dict(extra, strict=False)
    return len(init.backbone) + len(extra)
