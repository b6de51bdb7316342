"""Stage 4, extractor: crops -> fingerprint vectors; the registries of extractors and backbones, and the one loader.

``--extractor`` values: ``default`` (the trained extractor shipped in ``fpforensics/weights/``
when present, else ``spectral``), a registered name (``spectral``, ``pixels``: training-free
baselines in :mod:`fpforensics.extractor.baselines`), or the path of a checkpoint written by
``fpt train extractor``. ``--backbone`` values come from :data:`BACKBONES`
(:mod:`fpforensics.extractor.backbones`).

A new training-free extractor is one :class:`~fpforensics.extractor.base.Extractor` subclass
decorated with ``@EXTRACTORS.register("name")``; a new backbone is one function decorated with
``@BACKBONES.register("name")`` that returns ``(trunk module, feature size)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fpforensics.defaults import DEFAULTS
from fpforensics.registry import Registry

if TYPE_CHECKING:
    import torch

    from fpforensics.extractor.base import Extractor

EXTRACTORS: Registry[Callable[[], Extractor]] = Registry("extractor", modules=("fpforensics.extractor.baselines",),
                                                       builtins=("spectral", "pixels"))
BACKBONES: Registry[Callable[[], tuple[Any, int]]] = Registry("backbone", modules=("fpforensics.extractor.backbones",),
                                                              builtins=("resnet18", "resnet34", "resnet50"))
DEFAULT_EXTRACTOR_PATH = Path(__file__).resolve().parent.parent / "weights" / "extractor.pt"


def extractor_choices() -> list[str]:
    """Every name ``--extractor`` takes besides a checkpoint path."""
    return ["default", *EXTRACTORS.names()]


def load_extractor(spec: str | Path | None = DEFAULTS.extractor, device: torch.device | str = "cpu") -> Extractor:
    """Resolve an ``--extractor`` value (name or checkpoint path) into a ready, eval-mode extractor on ``device``.

    ``device``: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N`` or a ``torch.device``.
    """
    from fpforensics.device import resolve_device

    spec = "default" if spec is None else str(spec)
    if spec == "default":
        spec = str(DEFAULT_EXTRACTOR_PATH) if DEFAULT_EXTRACTOR_PATH.exists() else "spectral"
    if spec in EXTRACTORS:
        ext = EXTRACTORS.get(spec)()
    else:
        from fpforensics.extractor.loading import load_trained_extractor

        ext = load_trained_extractor(spec)
    return ext.to(resolve_device(device)).eval()
