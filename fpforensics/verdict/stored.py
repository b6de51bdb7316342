"""The calibration an extractor checkpoint carries: both score calibrations and the real-photo reference.

``checkpoint["calibration"] = {"image": ..., "fingerprint": ..., "real_reference": ...}``, plain
types only, so the checkpoint still loads with ``torch.load(weights_only=True)``:

* ``image``: :class:`~fpforensics.verdict.calibration.Calibration` of single image against single
  image (``fpt verify A B``);
* ``fingerprint``: the same for an image against a model's fingerprint (``fpt identify``,
  ``fpt verify --model``), with the identification margin rule;
* ``real_reference``: :class:`~fpforensics.verdict.realphoto.RealReference`, the open-set rule
  that says "closest to camera photographs".

Adding a calibration never touches the weights: the extractor's identity stays the same, and
galleries made with it stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpforensics.errors import IncompatibleError, OutputError
from fpforensics.verdict.calibration import Calibration
from fpforensics.verdict.realphoto import RealReference

KEY = "calibration"


@dataclass
class ExtractorCalibration:
    """Everything fitted for one extractor (see the module docstring); each part may be missing."""

    image: Calibration | None = None
    fingerprint: Calibration | None = None
    real_reference: RealReference | None = None

    def for_kind(self, kind: str) -> Calibration | None:
        """``image`` for ``image-image`` scores, ``fingerprint`` for ``image-fingerprint`` ones."""
        return self.image if kind == "image-image" else self.fingerprint

    def to_dict(self) -> dict:
        return {"image": self.image.to_dict() if self.image else None,
                "fingerprint": self.fingerprint.to_dict() if self.fingerprint else None,
                "real_reference": self.real_reference.to_dict() if self.real_reference else None}

    @classmethod
    def from_dict(cls, d: dict | None) -> ExtractorCalibration | None:
        if not d:
            return None
        return cls(Calibration.from_dict(d["image"]) if d.get("image") else None,
                   Calibration.from_dict(d["fingerprint"]) if d.get("fingerprint") else None,
                   RealReference.from_dict(d["real_reference"]) if d.get("real_reference") else None)

    @classmethod
    def of(cls, extractor: Any) -> ExtractorCalibration | None:
        """The calibration a loaded extractor carries (None for the training-free ones and uncalibrated files)."""
        return cls.from_dict(getattr(extractor, "calibration", None))

    def summary(self) -> dict:
        """The numbers a person checks, without the tables: thresholds, error rates, rule parameters."""
        out: dict = {}
        for name, cal in (("image", self.image), ("fingerprint", self.fingerprint)):
            if cal is not None:
                out[name] = {"kind": cal.kind, "data": cal.data, "eer_threshold": round(cal.eer_threshold, 4),
                             "eer": round(cal.eer, 4), "auc": round(cal.auc, 4), "genuine": cal.n_genuine,
                             "impostor": cal.n_impostor,
                             "ambiguous_margin": round(cal.margin.ambiguous_margin, 4) if cal.margin else None}
        if self.real_reference is not None:
            out["real_reference"] = self.real_reference.summary()
        return out


def write_calibration(checkpoint: str | Path, calibration: ExtractorCalibration, out: str | Path | None = None,
                      overwrite: bool = False) -> Path:
    """Store ``calibration`` in a copy of ``checkpoint`` at ``out`` (or in place with ``overwrite``).

    The weights are copied as they are; the rebuilt extractor's identity is checked to be the
    same before the file replaces anything (written atomically).
    """
    from fpforensics.checkpoints import load_checkpoint, save_checkpoint
    from fpforensics.extractor.loading import load_trained_extractor

    src = Path(checkpoint)
    target = Path(out) if out is not None else src
    if target.resolve() == src.resolve() and not overwrite:
        raise OutputError(f"{src}: writing the calibration into the extractor itself needs --overwrite "
                          "(or give --out NEW.pt)")
    if target.exists() and target.resolve() != src.resolve() and not overwrite:
        raise OutputError(f"{target}: exists (use --overwrite to replace it)")
    payload = load_checkpoint(src, kind="extractor")
    before = load_trained_extractor(src).identity
    payload[KEY] = calibration.to_dict()
    payload.pop("fpt_kind", None)
    save_checkpoint(payload, target, kind="extractor")
    after = load_trained_extractor(target).identity
    if after != before:  # pragma: no cover - a copy of the same tensors cannot change them
        raise IncompatibleError(f"{target}: the extractor's identity changed ({before} -> {after})")
    return target
