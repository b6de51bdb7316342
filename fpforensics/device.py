"""The one way to pick a torch device."""

from __future__ import annotations

import re

import torch

from fpforensics.errors import FptError

_CUDA_RE = re.compile(r"^cuda(:\d+)?$")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N`` into a device; ``auto`` means CUDA when present, else CPU."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if _CUDA_RE.match(spec):
        if not torch.cuda.is_available():
            raise FptError(f"device '{spec}' requested but CUDA is not available on this machine")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise FptError(f"device '{spec}' requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device(spec)
    raise FptError(f"unknown device '{spec}': use auto, cpu, cuda or cuda:N")
