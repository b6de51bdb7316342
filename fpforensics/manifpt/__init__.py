"""Beside the stages, ManiFPT (METHOD 2): artifacts of generated images against the real-data manifold, and their attributor.

Pipeline, named after its modules:

1. ``spaces``: :func:`build_space` -> a feature space ``phi`` (``rgb``, ``freq``, ``sl``, ``ssl``;
   the registry :data:`SPACES`);
2. ``manifold``: the real images mapped into the space (optionally cached in an HDF5 file);
3. ``neighbors``: the exact nearest real sample ``x*`` of every generated one;
4. ``artifacts``: ``a(x_G) = phi(x_G) - phi(x*)``, per-model summaries, the artifacts file;
5. ``fdr``: the Frechet-distance ratio separability score; ``panels``: pictures of artifacts;
   ``classifier``: the ManiFPT attributor, a classifier trained on artifacts.

A new space is one function decorated with ``@SPACES.register("name")`` that takes
``(size, fit, weights, device)`` and returns a :class:`~fpforensics.manifpt.spaces.FeatureSpace`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fpforensics.defaults import DEFAULTS
from fpforensics.errors import InputError
from fpforensics.registry import Registry

if TYPE_CHECKING:
    from fpforensics.manifpt.spaces import FeatureSpace

SPACES: Registry[Callable[..., FeatureSpace]] = Registry("space", modules=("fpforensics.manifpt.spaces",),
                                                   builtins=("rgb", "freq", "sl", "ssl"))
FITS = ("crop", "resize")


def build_space(name: str, size: int = DEFAULTS.artifact_size, fit: str = DEFAULTS.artifact_fit,
                weights: str | Path | None = None, device: Any = "cpu") -> FeatureSpace:
    """Resolve ``--space`` (+ ``--size``, ``--fit``, ``--weights``) into a ready feature space.

    ``size``/``fit`` define the pixel spaces and the panels. ``sl`` without weights uses the
    project's extractor (``load_extractor("default")``); with a path it takes a torchvision
    ResNet-50 state_dict, or an fpforensics extractor checkpoint (``fpt train extractor``).
    ``ssl`` requires a Barlow Twins ResNet-50 state_dict (official ``resnet50.pth`` or the full
    training ``checkpoint.pth`` with ``module.backbone.`` keys).
    """
    factory = SPACES.get(name)
    if fit not in FITS:
        raise InputError(f"unknown fit '{fit}': use {' or '.join(FITS)}")
    if not 8 <= int(size) <= 1024:
        raise InputError(f"size {size} out of range: use 8..1024 pixels")
    return factory(int(size), fit, weights, device)
