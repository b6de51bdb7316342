"""Verdicts of whole queries: identification rows and verification pairs judged with every rule, with provenance.

The API (:mod:`fpforensics.api`) embeds and searches; this module turns scores into what an
analyst reads: for each query its ranking with calibrated probabilities, the verdict
(:mod:`fpforensics.verdict.decision`), the weak-signal check, the real-photo check, the family
of an ambiguous pair, and the provenance block. The CLI and the HTML report only show these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fpforensics.verdict.calibration import Calibration, OperatingPoint
from fpforensics.verdict.decision import AMBIGUOUS, ATTRIBUTED, INSUFFICIENT, Ranked, Verdict, decide, rank
from fpforensics.verdict.margin import MarginRule
from fpforensics.verdict.provenance import ExtractorRef, Provenance
from fpforensics.verdict.realphoto import CameraCheck, RealReference
from fpforensics.verdict.signal import SignalCheck

SAME, DIFFERENT = "same model", "different models"


def extractor_ref(extractor: Any) -> ExtractorRef:
    """How results cite ``extractor``: its identity, and the sha256 of the checkpoint it came from (if any)."""
    return ExtractorRef.of(extractor.identity, getattr(extractor, "source", None) or "spectral")


@dataclass
class QueryResult:
    """One identification query as the analyst gets it (see the module docstring)."""

    path: Path
    ranking: list[Ranked]
    verdict: Verdict
    signal: SignalCheck | None = None
    camera: CameraCheck | None = None
    provenance: dict = field(default_factory=dict)

    @property
    def prediction(self) -> str | None:
        """The model it is attributed to (None: unknown, ambiguous or insufficient signal)."""
        return self.verdict.models[0] if self.verdict.kind == ATTRIBUTED else None

    def to_dict(self) -> dict:
        scored = self.verdict.kind != INSUFFICIENT
        return {"path": str(self.path), **self.verdict.to_dict(), "prediction": self.prediction,
                "known": self.verdict.kind in (ATTRIBUTED, AMBIGUOUS),
                "best_score": self.ranking[0].cosine if scored and self.ranking else None,
                "ranking": [{"rank": i + 1, **r.to_dict()} for i, r in enumerate(self.ranking)] if scored else [],
                "signal": self.signal.to_dict() if self.signal else None,
                "real_photo": self.camera.to_dict() if self.camera else None,
                "provenance": self.provenance}


def judge_identification(paths: Sequence[Path], embeddings: np.ndarray, names: Sequence[str], indices: np.ndarray,
                         scores: np.ndarray, op: OperatingPoint, calibration: Calibration | None,
                         margin_rule: MarginRule | None, reference: RealReference | None,
                         signal: Sequence[SignalCheck] | None, ref: ExtractorRef, top_k: int,
                         family: Callable[[str], str | None] = lambda _m: None, camera_cut: float | None = None,
                         camera_cut_info: dict | None = None) -> list[QueryResult]:
    """Verdicts for rows of an identification (``indices``/``scores`` best first, at least 2 columns when possible).

    ``camera_cut`` replaces the real-photo rule's own cut; ``camera_cut_info`` (what it is) joins
    the operating point in each provenance block.
    """
    cameras = reference.check(embeddings, scores[:, 0], "image-fingerprint", cut=camera_cut) \
        if reference is not None and len(paths) else [None] * len(paths)
    point = op.to_dict() if camera_cut_info is None else {**op.to_dict(), "real_photo_cut": camera_cut_info}
    out = []
    for i, path in enumerate(paths):
        ranking = rank([names[j] for j in indices[i]], scores[i], calibration)
        check = signal[i] if signal is not None else None
        verdict = decide(ranking, op.threshold, margin_rule, check, cameras[i])
        if verdict.kind == AMBIGUOUS:
            fa, fb = family(verdict.models[0]), family(verdict.models[1])
            if fa and fa == fb:
                verdict = Verdict(AMBIGUOUS, verdict.models, verdict.reason, verdict.margin, fa)
        prov = Provenance.for_image(path, ref, point).to_dict()
        out.append(QueryResult(Path(path), ranking[:top_k], verdict, check, cameras[i], prov))
    return out


@dataclass
class PairVerdict:
    """A 1:1 verdict: ``same model``, ``different models`` or ``insufficient signal``, and why."""

    kind: str
    reason: str = ""

    @property
    def text(self) -> str:
        return f"{self.kind}: {self.reason}" if self.reason else self.kind


def judge_pair(cosine: float, op: OperatingPoint, signals: Sequence[SignalCheck | None],
               cameras: Sequence[CameraCheck | None], labels: Sequence[str]) -> PairVerdict:
    """Signal first (either side too weak: no verdict), then the real-photo rule, then the threshold."""
    for label, check in zip(labels, signals, strict=True):
        if check is not None and not check.ok:
            return PairVerdict(INSUFFICIENT, f"{label}: {check.reason}")
    flagged = [label for label, c in zip(labels, cameras, strict=True) if c is not None and c.camera]
    if flagged:
        who = " and ".join(flagged)
        return PairVerdict(DIFFERENT, f"{who} {'is' if len(flagged) == 1 else 'are'} closest to camera photographs, "
                                      "not to a generator")
    return PairVerdict(SAME if cosine >= op.threshold else DIFFERENT)
