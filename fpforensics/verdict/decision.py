"""The verdict of one query: attributed, ambiguous, unknown or insufficient signal, from its ranking and the rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fpforensics.verdict.calibration import Calibration
from fpforensics.verdict.margin import MarginRule
from fpforensics.verdict.signal import SignalCheck

CAMERA = "closest to camera photographs"

ATTRIBUTED = "attributed"
AMBIGUOUS = "ambiguous"
UNKNOWN = "unknown"
INSUFFICIENT = "insufficient signal"
KINDS = (ATTRIBUTED, AMBIGUOUS, UNKNOWN, INSUFFICIENT)


@dataclass(frozen=True)
class Ranked:
    """One enrolled model in a query's ranking: its cosine and, with a calibration, P(same model)."""

    model: str
    cosine: float
    probability: float | None = None

    def to_dict(self) -> dict:
        return {"model": self.model, "cosine": self.cosine, "probability": self.probability}


@dataclass(frozen=True)
class Verdict:
    """``kind`` is one of :data:`KINDS`; ``models`` the model(s) it names; ``reason`` for insufficient signal
    (or :data:`CAMERA` for an unknown that looks like a photograph); ``family`` the family two ambiguous models share.
    """

    kind: str
    models: tuple[str, ...] = ()
    reason: str = ""
    margin: float | None = None
    family: str | None = None

    @property
    def text(self) -> str:
        if self.kind == ATTRIBUTED:
            return f"attributed to {self.models[0]}"
        if self.kind == AMBIGUOUS:
            fam = f" (both of the {self.family} family)" if self.family else ""
            return f"ambiguous between {self.models[0]} and {self.models[1]}{fam}"
        if self.kind == UNKNOWN:
            return f"unknown (not made by any enrolled model{'; ' + self.reason if self.reason else ''})"
        return f"insufficient signal: {self.reason}"

    def to_dict(self) -> dict:
        return {"verdict": self.kind, "models": list(self.models), "text": self.text, "reason": self.reason or None,
                "margin": self.margin, "family": self.family}


def rank(names: Sequence[str], cosines: Sequence[float] | np.ndarray, calibration: Calibration | None = None,
         prior: float = 0.5) -> list[Ranked]:
    """Models sorted by cosine, best first, each with its calibrated probability when a calibration is given."""
    cos = np.asarray(cosines, np.float64)
    order = np.argsort(-cos, kind="stable")
    probs = calibration.probability(cos, prior) if calibration is not None else None
    return [Ranked(str(names[j]), float(cos[j]), None if probs is None else float(probs[j])) for j in order]


def decide(ranking: Sequence[Ranked], threshold: float, margin_rule: MarginRule | float | None = None,
           signal: SignalCheck | None = None, camera=None) -> Verdict:
    """Apply, in order: the signal check, the real-photo rule, the open-set threshold on the top-1 cosine,
    the margin rule.

    ``ranking`` is best first. ``camera``: a :class:`~fpforensics.verdict.realphoto.CameraCheck`
    (its ``camera`` True makes the answer "unknown, closest to camera photographs"). The margin
    compares top-1 with the runner-up whatever the runner-up's own score: the rule was fitted on
    exactly that gap.
    """
    if signal is not None and not signal.ok:
        return Verdict(INSUFFICIENT, reason=signal.reason)
    if not ranking:
        return Verdict(UNKNOWN)
    top = ranking[0]
    margin = float(top.cosine - ranking[1].cosine) if len(ranking) > 1 else None
    if camera is not None and camera.camera:
        return Verdict(UNKNOWN, reason=CAMERA, margin=margin)
    if top.cosine < threshold:
        return Verdict(UNKNOWN, margin=margin)
    cut = margin_rule.ambiguous_margin if isinstance(margin_rule, MarginRule) else margin_rule
    if margin is not None and cut is not None and margin < cut:
        return Verdict(AMBIGUOUS, (top.model, ranking[1].model), margin=margin)
    return Verdict(ATTRIBUTED, (top.model,), margin=margin)
