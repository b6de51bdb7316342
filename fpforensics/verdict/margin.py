"""The identification margin rule: when top-1 and the runner-up are too close to tell, say "ambiguous".

On calibration queries whose model is enrolled, the top-1 answer is right or wrong, and the
margin ``cosine(top-1) - cosine(runner-up)`` tells how far apart the two were. P(top-1 right |
margin) is fitted with isotonic regression (it can only grow with the margin, and no curve shape
is assumed); the *ambiguous margin* is the margin below which top-1 was wrong more than
``max_error`` of the time on those queries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression

from fpforensics.errors import InputError

DEFAULT_MAX_ERROR = 0.3
NEVER_CONFIDENT = 2.0  # the largest possible cosine gap: every answer is ambiguous


@dataclass(frozen=True)
class MarginRule:
    """``margin < ambiguous_margin`` -> "ambiguous between A and B" (see the module docstring)."""

    ambiguous_margin: float
    max_error: float
    queries: int
    top1_accuracy: float
    ambiguous_share: float  # share of the calibration queries the rule calls ambiguous
    error_when_ambiguous: float  # top-1 error among those
    error_when_confident: float  # top-1 error among the others
    shots: int | None = None

    def is_ambiguous(self, margin: float) -> bool:
        return bool(margin < self.ambiguous_margin)

    def describe(self) -> str:
        return (f"ambiguous when the runner-up is within {self.ambiguous_margin:.4f} of the top-1 cosine: below that "
                f"margin top-1 was wrong more than {self.max_error:.0%} of the time on {self.queries:,} calibration "
                f"queries ({self.ambiguous_share:.0%} of them ambiguous; top-1 error {self.error_when_confident:.1%} "
                f"on the others)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MarginRule:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def fit_margin(margins: np.ndarray, correct: np.ndarray, max_error: float = DEFAULT_MAX_ERROR,
               shots: int | None = None) -> MarginRule:
    """The smallest margin at which the isotonic P(top-1 right | margin) reaches ``1 - max_error``.

    Between two fitted steps the crossing is interpolated linearly, as the isotonic curve predicts.
    """
    m = np.asarray(margins, np.float64).ravel()
    ok = np.asarray(correct, bool).ravel()
    if m.shape != ok.shape or len(m) < 2:
        raise InputError(f"the margin rule needs at least 2 queries with a right/wrong answer (got {len(m)})")
    if not 0.0 < max_error < 1.0:
        raise InputError(f"the tolerated top-1 error must be between 0 and 1 (got {max_error})")
    iso = IsotonicRegression(increasing=True, y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(m, ok.astype(float))
    xs, ys = iso.X_thresholds_, iso.y_thresholds_
    target = 1.0 - max_error
    above = np.flatnonzero(ys >= target - 1e-12)
    if not len(above):
        cut = NEVER_CONFIDENT
    elif above[0] == 0:
        cut = 0.0
    else:
        j = int(above[0])
        cut = float(xs[j - 1] + (target - ys[j - 1]) * (xs[j] - xs[j - 1]) / (ys[j] - ys[j - 1]))
    amb = m < cut
    return MarginRule(
        ambiguous_margin=float(cut), max_error=float(max_error), queries=int(len(m)),
        top1_accuracy=float(ok.mean()), ambiguous_share=float(amb.mean()),
        error_when_ambiguous=float((~ok[amb]).mean()) if amb.any() else 0.0,
        error_when_confident=float((~ok[~amb]).mean()) if (~amb).any() else 0.0, shots=shots)


def top2_margins(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(margin, top-1 right)`` per row of a ``(queries, models)`` cosine matrix (at least 2 models)."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise InputError("margins need at least two enrolled models")
    part = -np.partition(-scores, 1, axis=1)[:, :2]
    return part[:, 0] - part[:, 1], scores.argmax(axis=1) == np.asarray(truth)
