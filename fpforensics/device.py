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


PRECISIONS = ("auto", "fp32", "bf16")


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bfloat16 runs natively here: CUDA with bf16 support, or a CPU with AVX-512 BF16/AMX.

    On a CPU without those instructions oneDNN emulates bf16 and autocast is several times
    *slower* than fp32 (measured: docs/benchmarks.md, "Precision"), so ``auto`` keeps fp32 there.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a torch build without oneDNN
            return False
    return False


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where :func:`bf16_is_fast`, else ``fp32``; explicit choices are kept."""
    precision = (precision or "auto").strip().lower()
    if precision not in PRECISIONS:
        raise FptError(f"unknown precision '{precision}': use {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """The one mixed-precision context: bf16 autocast on ``device`` for ``bf16``, a no-op for ``fp32``."""
    from contextlib import nullcontext

    if precision == "bf16" and device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()
