"""Stage 2, residual: ``r = x - denoise(x)``, the registry of residual extractors and the one way to build one.

Built-in residuals (``--residual`` / ``--denoiser`` values):

* ``median`` (training-free): ``r = x - median3x3(x)`` (:mod:`fpforensics.residual.median`);
* ``none``: no denoiser, the image itself (:mod:`fpforensics.residual.none`; the ablation);
* ``dncnn``: the predicted noise of the DnCNN of METHOD 1.1 shipped in ``fpforensics/weights/``
  (:mod:`fpforensics.residual.dncnn`);
* ``default``: the shipped DnCNN when present, else ``median``;
* a path: DnCNN weights written by ``fpt train denoiser``.

A new residual is one :class:`~fpforensics.residual.base.ResidualExtractor` subclass decorated with
``@RESIDUALS.register("name")``; it then works everywhere a residual is chosen, and extractor
checkpoints store and rebuild it through its ``to_payload`` / ``from_payload``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fpforensics.errors import IncompatibleError, InputError
from fpforensics.registry import Registry

if TYPE_CHECKING:
    from fpforensics.residual.base import ResidualExtractor

RESIDUALS: Registry[type[ResidualExtractor]] = Registry(
    "residual", modules=("fpforensics.residual.median", "fpforensics.residual.none", "fpforensics.residual.dncnn"),
    builtins=("median", "none", "dncnn"))
DEFAULT_DNCNN_PATH = Path(__file__).resolve().parent.parent / "weights" / "dncnn.pt"


def build_residual(spec: str | Path | None = "default") -> ResidualExtractor:
    """``default`` (shipped DnCNN when present, else median), a registered name, or a DnCNN weights path."""
    spec = "default" if spec is None else str(spec)
    if spec == "default":
        spec = "dncnn" if DEFAULT_DNCNN_PATH.exists() else "median"
    if spec in RESIDUALS:
        return RESIDUALS.get(spec).create()
    from fpforensics.residual.dncnn import load_dncnn

    return load_dncnn(spec)


def residual_to_payload(residual: ResidualExtractor) -> dict[str, Any]:
    """Describe a residual so that a checkpoint can rebuild it alone (its weights included)."""
    if residual.name not in RESIDUALS:
        raise InputError(f"residual '{residual.identity}' cannot be stored in an extractor checkpoint")
    return {"kind": residual.name, "identity": residual.identity, **residual.to_payload()}


def residual_from_payload(payload: dict[str, Any], path: str | Path = "") -> ResidualExtractor:
    """The residual a checkpoint describes (:func:`residual_to_payload`)."""
    kind = str(payload.get("kind"))
    if kind not in RESIDUALS:
        raise IncompatibleError(f"{path}: unknown residual kind '{kind}' in extractor checkpoint")
    return RESIDUALS.get(kind).from_payload(payload, path)
