"""Stage 2, residual: the DnCNN of METHOD 1.1 and its residual, the predicted noise ``x - denoise(x)``.

DnCNN (Zhang et al. 2017) is trained at sigma = 1/255 by ``fpt train denoiser``; with residual
learning it outputs the noise itself, so the residual is its output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from fpforensics.checkpoints import load_checkpoint, state_dict_digest
from fpforensics.defaults import DEFAULTS
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.residual import DEFAULT_DNCNN_PATH, RESIDUALS
from fpforensics.residual.base import ResidualExtractor


class DnCNN(nn.Module):
    """DnCNN: conv+ReLU, (depth-2) x conv+BN+ReLU, conv; predicts the noise."""

    def __init__(self, depth: int = DEFAULTS.dncnn_depth, channels: int = DEFAULTS.dncnn_channels,
                 image_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(image_channels, channels, 3, padding=1, bias=True), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(channels, image_channels, 3, padding=1, bias=False))
        self.body = nn.Sequential(*layers)
        self.depth, self.channels = depth, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


def _frozen(net: DnCNN) -> DnCNN:
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


@RESIDUALS.register("dncnn")
class DnCNNResidual(ResidualExtractor):
    """Residual from a trained DnCNN: its predicted noise, i.e. ``x - denoise(x)``."""

    name = "dncnn"

    def __init__(self, net: DnCNN, identity: str) -> None:
        super().__init__()
        self.net = net.eval()
        self.identity = identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @classmethod
    def create(cls) -> DnCNNResidual:
        """The DnCNN shipped with the install."""
        if not DEFAULT_DNCNN_PATH.exists():
            raise InputError("no trained DnCNN ships with this install yet: train one with `fpt train denoiser`")
        return load_dncnn(DEFAULT_DNCNN_PATH)

    def to_payload(self) -> dict[str, Any]:
        return {"depth": self.net.depth, "channels": self.net.channels,
                "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()}}

    @classmethod
    def from_payload(cls, payload: dict[str, Any], path: str | Path = "") -> DnCNNResidual:
        net = DnCNN(depth=int(payload["depth"]), channels=int(payload["channels"]))
        try:
            net.load_state_dict({k: v.float() for k, v in payload["state_dict"].items()})
        except (RuntimeError, KeyError) as exc:
            raise IncompatibleError(f"{path}: embedded DnCNN weights do not match ({str(exc).splitlines()[0]})"
                                    ) from None
        return cls(_frozen(net), identity=str(payload["identity"]))


def load_dncnn(path: str | Path) -> DnCNNResidual:
    """Load DnCNN weights written by ``fpt train denoiser``."""
    ckpt = load_checkpoint(path, kind="dncnn")
    net = DnCNN(depth=int(ckpt.get("depth", 17)), channels=int(ckpt.get("channels", 64)))
    try:
        net.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise InputError(f"{path}: DnCNN weights do not match the architecture ({str(exc).splitlines()[0]})") from None
    return DnCNNResidual(_frozen(net), identity=f"dncnn:{state_dict_digest(ckpt['state_dict'])}")
