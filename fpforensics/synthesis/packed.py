"""M synthetic models of one architecture packed into one module (grouped convolutions).

Training the 5760 models one at a time wastes a GPU on kernel-launch overhead: each model is
tiny. :class:`PackedAutoencoder` holds M models of the same :class:`ArchitectureSpec` as one
network whose every layer is channel-wise independent between models:

* convolutions and the transposed convolution become grouped ones (``groups=M``), model m owning
  channel block m;
* batch norm and instance norm normalise per channel, so per-model statistics are kept exactly
  (a packed BatchNorm2d(M*C) is M independent BatchNorm2d(C));
* pooling, up-sampling and activations act per channel anyway.

The input (B, 3, H, W) is repeated M times along channels, so every model of the pack sees the
same batch; the output is (B, M, 3, H, W). Parameter names are those of
:class:`SyntheticAutoencoder` and every tensor packs along dim 0 (``num_batches_tracked`` is
shared), so :func:`pack_state_dicts` / :func:`unpack_state_dict` convert exactly between the two:
a model trained in a pack and alone ends with the same weights (``tests/test_synthesis.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from fpforensics.defaults import DEFAULTS
from fpforensics.synthesis.architectures import (
    ArchitectureSpec,
    activation_layer,
    build_autoencoder,
    norm_layer,
    output_norm,
    upsample_layer,
)

_SHARED_SUFFIX = "num_batches_tracked"


def _conv(c_in: int, c_out: int, m: int) -> nn.Conv2d:
    return nn.Conv2d(c_in * m, c_out * m, 3, padding=1, groups=m)


def _down_block(c_in: int, c_out: int, m: int) -> nn.Sequential:
    # Same layout (and so the same state_dict keys) as architectures.down_block.
    return nn.Sequential(
        nn.AvgPool2d(2),
        _conv(c_in, c_out, m), nn.BatchNorm2d(c_out * m), nn.ReLU(),
        _conv(c_out, c_out, m), nn.BatchNorm2d(c_out * m),
    )


def _up_block(spec: ArchitectureSpec, c_in: int, c_out: int, m: int) -> nn.Sequential:
    # Same layout as architectures.up_block.
    layers: list[nn.Module] = []
    channels = [c_in] + [c_out] * spec.L
    for i in range(spec.L):
        conv = _conv(channels[i], channels[i + 1], m)
        if spec.S == "post":
            if i == 0:
                layers.append(upsample_layer(spec.U, c_in * m, groups=m))
            is_output = c_out == 3 and i == spec.L - 1
            layers += [conv, norm_layer(output_norm(spec, is_output), channels[i + 1] * m), activation_layer(spec.A)]
        else:
            layers += [norm_layer(spec.N, channels[i] * m), activation_layer(spec.A)]
            if i == 0:
                layers.append(upsample_layer(spec.U, c_in * m, groups=m))
            layers.append(conv)
    return nn.Sequential(*layers)


class PackedAutoencoder(nn.Module):
    """``m`` independent :class:`SyntheticAutoencoder` of one architecture as one grouped network."""

    def __init__(self, spec: ArchitectureSpec, m: int, width: int = int(DEFAULTS["synth_width"])) -> None:
        super().__init__()
        if m < 1:
            raise ValueError("a pack holds at least one model")
        self.spec, self.m, self.width = spec, m, width
        widths = [3] + [width * 2**i for i in range(spec.K)]
        self.down = nn.Sequential(*[_down_block(widths[i], widths[i + 1], m) for i in range(spec.K)])
        self.up = nn.Sequential(*[_up_block(spec, widths[i], widths[i - 1] if i > 1 else 3, m)
                                  for i in range(spec.K, 0, -1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, m, 3, H, W)``: every model applied to the same batch."""
        b, _, h, w = x.shape
        y = self.up(self.down(x.repeat(1, self.m, 1, 1)))
        return y.view(b, self.m, 3, h, w)

    @classmethod
    def from_state_dicts(cls, spec: ArchitectureSpec, state_dicts: Sequence[dict[str, torch.Tensor]],
                         width: int = int(DEFAULTS["synth_width"])) -> PackedAutoencoder:
        module = cls(spec, len(state_dicts), width)
        module.load_state_dict(pack_state_dicts(state_dicts))
        return module

    @classmethod
    def from_seeds(cls, spec: ArchitectureSpec, seeds: Sequence[int],
                   width: int = int(DEFAULTS["synth_width"])) -> PackedAutoencoder:
        """Pack freshly initialised models: the same initial weights as ``build_autoencoder`` alone."""
        return cls.from_state_dicts(spec, [build_autoencoder(spec, s, width).state_dict() for s in seeds], width)

    def unpack(self) -> list[dict[str, torch.Tensor]]:
        """Per-model state dicts (detached copies), loadable into ``SyntheticAutoencoder``."""
        return unpack_state_dict(self.state_dict(), self.m)


def pack_tensors(key: str, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Pack one state-dict entry of M models (all tensors concatenate along dim 0)."""
    if key.endswith(_SHARED_SUFFIX) or tensors[0].dim() == 0:
        return tensors[0].clone()
    return torch.cat(list(tensors), dim=0)


def unpack_tensor(key: str, packed: torch.Tensor, m: int) -> list[torch.Tensor]:
    """Inverse of :func:`pack_tensors`: M detached copies."""
    if key.endswith(_SHARED_SUFFIX) or packed.dim() == 0:
        return [packed.detach().clone() for _ in range(m)]
    return [t.detach().clone() for t in packed.chunk(m, dim=0)]


def pack_state_dicts(state_dicts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: pack_tensors(key, [sd[key] for sd in state_dicts]) for key in state_dicts[0]}


def unpack_state_dict(packed: dict[str, torch.Tensor], m: int) -> list[dict[str, torch.Tensor]]:
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(m)]
    for key, value in packed.items():
        for i, t in enumerate(unpack_tensor(key, value, m)):
            out[i][key] = t
    return out


def select_models(key: str, packed: torch.Tensor, m: int, keep: Sequence[int]) -> torch.Tensor:
    """Packed tensor of the models ``keep`` only (to drop finished models from a pack)."""
    if key.endswith(_SHARED_SUFFIX) or packed.dim() == 0:
        return packed.detach().clone()
    chunks = packed.detach().chunk(m, dim=0)
    return torch.cat([chunks[i] for i in keep], dim=0).clone()
