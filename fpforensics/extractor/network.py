"""The fingerprint network of METHOD 1.3: a torchvision ResNet on the residual spectrum, two heads.

* Input: the per-channel log-magnitude spectrum of the residual (``log_magnitude_spectrum``),
  ``(B, 3, 128, 128)``. Its values sit around -10..0, far from what a ResNet stem expects, so
  a ``BatchNorm2d(3)`` standardises it first (learned, frozen at inference like every BN).
* Backbone: ResNet-18/34/50 from torchvision, random init (``--init`` loads local weights in
  torchvision's format), ``fc`` removed: the pooled 512-d (18/34) or 2048-d (50) feature.
* Embedding head: a linear projection to ``embedding_dim`` (default 512), or the pooled feature
  itself with ``embedding_dim=0``. The triplet loss and attribution use it L2-normalised.
* Classifier head: a linear layer over the training models on the embedding (cross-entropy),
  only needed in training, dropped from shipped checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from fpforensics.errors import IncompatibleError, InputError

BACKBONES = ("resnet18", "resnet34", "resnet50")
INPUT_TRANSFORM = "logmag"  # fpforensics.spectral.log_magnitude_spectrum


def make_backbone(name: str) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its ``fc`` layer, and its pooled feature size."""
    import torchvision

    if name not in BACKBONES:
        raise InputError(f"unknown backbone '{name}': use one of {', '.join(BACKBONES)}")
    net = getattr(torchvision.models, name)(weights=None)
    feat_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, feat_dim


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


def load_backbone_init(net: FingerprintNet, path: str | Path) -> int:
    """Load starting weights: torchvision ResNet weights, or a previous fpt extractor checkpoint.

    A torchvision file (e.g. ``resnet50-*.pth``) fills the backbone; its ``fc`` layer is ignored.
    An fpt extractor checkpoint warm-starts the whole embedding network (input norm, backbone and,
    when the sizes match, the embedding head), so a shipped extractor can be trained further on a
    larger pool: its classifier over the old training models is never part of it. Anything else is
    from another architecture and is refused. Returns the number of tensors loaded.
    """
    from fpforensics.checkpoints import load_checkpoint, safe_torch_load

    path = Path(path)
    state = safe_torch_load(path, "weights file for --init")
    extra: dict[str, torch.Tensor] = {}
    if isinstance(state, dict) and "fpt_kind" in state:  # an fpt extractor checkpoint
        payload = load_checkpoint(path, kind="extractor")
        full = payload["state_dict"]
        extra = {k: v for k, v in full.items() if k.startswith("input_norm.")}
        head = {k: v for k, v in full.items() if k.startswith("head.")}
        own_head = {f"head.{k}": v for k, v in net.head.state_dict().items()}
        if head.keys() == own_head.keys() and all(head[k].shape == own_head[k].shape for k in head):
            extra.update(head)
        state = {k[len("backbone."):]: v for k, v in full.items() if k.startswith("backbone.")}
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state_dict of tensors (torchvision format expected)")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    expected = net.backbone.state_dict()
    missing = [k for k in expected if k not in state]
    bad = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or bad or len(state) != len(expected):
        raise IncompatibleError(f"{path}: weights are not a {net.backbone_name} backbone "
                                f"({len(missing)} missing, {len(bad)} mis-shaped, {len(state)} tensors vs {len(expected)})")
    net.backbone.load_state_dict(state)  # copy_ casts fp16 (shipped) weights to the net's dtype
    if extra:
        net.load_state_dict(extra, strict=False)
    return len(state) + len(extra)
