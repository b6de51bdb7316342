"""Stage 4, extractor: the backbones a fingerprint network can use, one registered function each.

Each function returns ``(trunk, feature size)``: a network mapping ``(B, 3, H, W)`` to pooled
features ``(B, feature size)``, randomly initialised (``--init`` loads weights). torchvision is
imported inside the functions, so listing the names costs nothing.
"""

from __future__ import annotations

from typing import Any

from fpforensics.extractor import BACKBONES


def _torchvision_resnet(name: str) -> tuple[Any, int]:
    """A torchvision ResNet without its ``fc`` layer, and its pooled feature size."""
    import torch.nn as nn
    import torchvision

    net = getattr(torchvision.models, name)(weights=None)
    feat_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, feat_dim


@BACKBONES.register("resnet18")
def resnet18() -> tuple[Any, int]:
    return _torchvision_resnet("resnet18")


@BACKBONES.register("resnet34")
def resnet34() -> tuple[Any, int]:
    return _torchvision_resnet("resnet34")


@BACKBONES.register("resnet50")
def resnet50() -> tuple[Any, int]:
    return _torchvision_resnet("resnet50")
