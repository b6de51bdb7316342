"""Operating points fitted from scores: thresholds at the EER or a maximum false-match rate, and calibrated probabilities.

A :class:`Calibration` is fitted from *genuine* cosines (same model) and *impostor* cosines
(different models) of data kept apart from any test, and is stored as a plain dict (inside an
extractor checkpoint or a gallery). It holds:

* the equal-error-rate (EER) threshold, the default operating point ("calibrated");
* a DET table (threshold -> false-match rate FMR, false non-match rate FNMR on the fit data), so
  any ``fmr:<rate>`` threshold and the error rates of a hand-set threshold are read off it;
* Platt scaling: ``log LR(s) = slope * s + intercept``, the likelihood ratio of "same model";
* optionally the identification :class:`~fpforensics.verdict.margin.MarginRule`.

``kind`` says which scores it was fitted on: ``image-image`` (two single images, ``verify A B``)
or ``image-fingerprint`` (an image against a model's mean of ``shots`` embeddings: ``identify``
and ``verify --model``). The two score distributions differ, so each use needs its own.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from fpforensics.defaults import DEFAULTS
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.verdict.margin import MarginRule
from fpforensics.verdict.provenance import utc_timestamp

PAPER_THRESHOLD = float(DEFAULTS["verify_threshold"])
FORMAT_VERSION = 1
FMR_GRID = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
KINDS = ("image-image", "image-fingerprint")
UNITS = {"image-image": "image pairs", "image-fingerprint": "image-to-fingerprint scores"}
CHOICES = "paper, calibrated, fmr:<rate> or a cosine"
GALLERY_CHOICES = "paper, calibrated, gallery, fmr:<rate> or a cosine"  # identify, verify --model


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold (accept "same model" when cosine >= threshold) and where it came from."""

    name: str  # paper | calibrated | fmr:<rate> | manual
    threshold: float
    fmr: float | None = None  # false-match rate on the calibration data at this threshold
    fnmr: float | None = None  # false non-match rate there
    source: str = ""

    def describe(self) -> str:
        """One line for the terminal: the threshold, its name and its origin."""
        return f"threshold {self.threshold:.3f} ({self.name}: {self.source})"

    def to_dict(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "fmr": self.fmr, "fnmr": self.fnmr,
                "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> OperatingPoint:
        return cls(str(d["name"]), float(d["threshold"]), d.get("fmr"), d.get("fnmr"), str(d.get("source", "")))


def _error_rates(genuine: np.ndarray, impostor: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(FMR, FNMR)`` at thresholds ``t``: impostors accepted (>= t) and genuine rejected (< t); inputs sorted."""
    fmr = 1.0 - np.searchsorted(impostor, t, "left") / len(impostor)
    fnmr = np.searchsorted(genuine, t, "left") / len(genuine)
    return fmr, fnmr


def fmr_threshold(impostor_sorted: np.ndarray, rate: float) -> float:
    """Lowest threshold accepting at most ``floor(rate * n)`` impostors: midway in the gap above the first rejected."""
    d = impostor_sorted[::-1]
    k = int(math.floor(rate * len(d) + 1e-9))
    if k >= len(d):
        return float(d[-1])
    mid = (d[k] + d[k - 1]) / 2 if k else d[k]
    return float(mid) if mid > d[k] else float(np.nextafter(d[k], np.inf))


def fnmr_threshold(genuine_sorted: np.ndarray, rate: float) -> float:
    """Highest threshold rejecting at most ``floor(rate * n)`` genuine scores (the mirror of :func:`fmr_threshold`)."""
    return -fmr_threshold(-genuine_sorted[::-1], rate)


def eer_point(genuine_sorted: np.ndarray, impostor_sorted: np.ndarray) -> tuple[float, float]:
    """``(threshold, EER)``: the threshold minimizing max(FMR, FNMR), midway below the first accepted score."""
    cands = np.unique(np.concatenate([genuine_sorted, impostor_sorted]))
    fmr, fnmr = _error_rates(genuine_sorted, impostor_sorted, cands)
    k = int(np.argmin(np.maximum(fmr, fnmr)))
    lower = cands[k - 1] if k > 0 else cands[k] - 1e-6
    return float((cands[k] + lower) / 2), float((fmr[k] + fnmr[k]) / 2)


def _platt(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of the balanced logistic fit of "same model" on the cosine (log LR, no prior)."""
    x = np.concatenate([genuine, impostor])
    y = np.concatenate([np.ones(len(genuine)), np.zeros(len(impostor))])
    mu, sd = float(x.mean()), float(x.std()) or 1.0
    lr = LogisticRegression(C=1e4, class_weight="balanced", max_iter=1000).fit(((x - mu) / sd)[:, None], y)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    return a / sd, b - a * mu / sd


def levels(n: int, count: int = 32) -> np.ndarray:
    """Error rates from one score in ``n`` to 1, evenly spaced in log: the rows of the DET table."""
    return np.geomspace(1.0 / n, 1.0, count)


@dataclass
class Calibration:
    """Everything fitted from one set of genuine/impostor scores (see the module docstring)."""

    kind: str
    data: str
    n_genuine: int
    n_impostor: int
    auc: float
    eer: float
    eer_threshold: float
    slope: float
    intercept: float
    p_floor: float
    det_threshold: list[float]
    det_fmr: list[float]
    det_fnmr: list[float]
    margin: MarginRule | None = None
    extractor: str = ""
    created: str = field(default_factory=utc_timestamp)
    version: int = FORMAT_VERSION

    # -- scores -> evidence
    def log_likelihood_ratio(self, cosine) -> np.ndarray:
        """Natural log of P(score | same model) / P(score | different models), affine in the cosine."""
        return self.slope * np.asarray(cosine, np.float64) + self.intercept

    def likelihood_ratio(self, cosine) -> np.ndarray:
        return np.exp(np.clip(self.log_likelihood_ratio(cosine), -700, 700))

    def probability(self, cosine, prior: float = 0.5) -> np.ndarray:
        """P(same model | cosine) for a prior P(same model); 0.5 = the balanced calibration data.

        Monotone in the cosine, and kept within [p_floor, 1 - p_floor]: no certainty beyond what
        the calibration data can show (one pair in ``min(n_genuine, n_impostor) + 2``).
        """
        if not 0.0 < prior < 1.0:
            raise InputError(f"a prior probability must be between 0 and 1 (got {prior})")
        z = self.log_likelihood_ratio(cosine) + math.log(prior / (1.0 - prior))
        return np.clip(1.0 / (1.0 + np.exp(-np.clip(z, -700, 700))), self.p_floor, 1.0 - self.p_floor)

    # -- error rates on the calibration data
    def fmr_at(self, threshold: float) -> float:
        return float(np.interp(threshold, self.det_threshold, self.det_fmr))

    def fnmr_at(self, threshold: float) -> float:
        return float(np.interp(threshold, self.det_threshold, self.det_fnmr))

    def threshold_at_fmr(self, rate: float) -> float:
        """The lowest tabulated threshold whose FMR on the calibration data is at most ``rate`` (no interpolation)."""
        ok = np.asarray(self.det_fmr) <= rate + 1e-12
        return float(np.asarray(self.det_threshold)[ok].min())

    def data_note(self) -> str:
        return f"{self.n_genuine + self.n_impostor:,} calibration {UNITS.get(self.kind, 'scores')} of {self.data}"

    # -- storage
    def to_dict(self) -> dict:
        """Plain types only: fits ``torch.load(weights_only=True)`` checkpoints, JSON and HDF5 attributes."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["margin"] = self.margin.to_dict() if self.margin else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        if int(d.get("version", 0)) > FORMAT_VERSION:
            raise IncompatibleError(f"calibration format {d.get('version')} is newer than this tool reads "
                                    f"({FORMAT_VERSION}): upgrade fpforensics")
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        kw["margin"] = MarginRule.from_dict(d["margin"]) if d.get("margin") else None
        for k in ("det_threshold", "det_fmr", "det_fnmr"):
            kw[k] = [float(v) for v in kw[k]]
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        return cls.from_dict(json.loads(text))


def fit(genuine: np.ndarray, impostor: np.ndarray, *, kind: str = "image-image", data: str = "calibration data",
        extractor: str = "", margin: MarginRule | None = None, fmr_rates: tuple[float, ...] = FMR_GRID) -> Calibration:
    """Fit a :class:`Calibration` from genuine and impostor cosines.

    Platt scaling (logistic regression on the cosine) rather than isotonic regression: it is
    strictly monotone (ranking by probability = ranking by cosine, no ties from flat steps), has
    two numbers to store, extrapolates smoothly beyond the fit range, and its log-odds under a
    balanced class weighting *is* the log likelihood ratio, so the LR comes for free. Cosines of
    two fixed models are close to two Gaussians of similar spread, for which the log LR is affine.
    """
    g = np.sort(np.asarray(genuine, np.float64).ravel())
    i = np.sort(np.asarray(impostor, np.float64).ravel())
    if len(g) < 2 or len(i) < 2:
        raise InputError(f"calibration needs at least 2 genuine and 2 impostor scores (got {len(g)} and {len(i)})")
    if kind not in KINDS:
        raise InputError(f"calibration kind must be one of {', '.join(KINDS)} (got {kind!r})")
    eer_t, eer = eer_point(g, i)
    slope, intercept = _platt(g, i)
    pooled = np.concatenate([g, i])
    table = np.unique(np.concatenate([
        [fmr_threshold(i, r) for r in (*fmr_rates, *levels(len(i)))],
        [fnmr_threshold(g, r) for r in (*fmr_rates, *levels(len(g)))],
        [eer_t, pooled.min() - 1e-6, pooled.max() + 1e-6], np.quantile(pooled, np.linspace(0, 1, 33)),
    ]))
    fmr, fnmr = _error_rates(g, i, table)
    y = np.concatenate([np.ones(len(g)), np.zeros(len(i))])
    return Calibration(
        kind=kind, data=data, n_genuine=len(g), n_impostor=len(i), auc=float(roc_auc_score(y, pooled)),
        eer=eer, eer_threshold=eer_t, slope=slope, intercept=intercept, p_floor=1.0 / (min(len(g), len(i)) + 2),
        det_threshold=table.tolist(), det_fmr=fmr.tolist(), det_fnmr=fnmr.tolist(), margin=margin,
        extractor=extractor)


# ---------------------------------------------------------------------------- choosing an operating point


def parse_choice(text: str | float | None, choices: str = CHOICES) -> tuple[str, float | None]:
    """``--threshold`` value -> ``(name, number)``: paper, calibrated (alias eer), fmr:<rate> (0.01 or 1%), or a cosine."""
    if text is None:
        return "calibrated", None
    if isinstance(text, int | float):
        return "manual", float(text)
    s = str(text).strip().lower()
    if s in ("paper", "calibrated", "eer"):
        return ("calibrated" if s == "eer" else s), None
    m = re.fullmatch(r"fmr:\s*([0-9.eE+-]+)\s*(%?)", s)
    if m:
        try:
            rate = float(m.group(1)) / (100.0 if m.group(2) else 1.0)
        except ValueError:
            rate = -1.0
        if not 0.0 < rate < 1.0:
            raise InputError(f"false-match rate in {text!r} must be between 0 and 1 (e.g. fmr:0.01 or fmr:1%)")
        return "fmr", rate
    try:
        return "manual", float(s)
    except ValueError:
        raise InputError(f"--threshold {text!r}: expected {choices}") from None


def resolve_operating_point(calibration: Calibration | None, threshold: str | float | None = None,
                            max_false_match_rate: float | None = None, choices: str = CHOICES) -> OperatingPoint:
    """The operating point for ``--threshold`` / ``--max-false-match-rate`` (default: the calibrated EER one).

    Without a calibration (an extractor that ships none), ``calibrated`` falls back to the paper's
    threshold and says so; ``fmr:`` needs a calibration.
    """
    if threshold is not None and max_false_match_rate is not None:
        raise InputError("choose one of --threshold and --max-false-match-rate")
    name, value = (("fmr", float(max_false_match_rate)) if max_false_match_rate is not None
                   else parse_choice(threshold, choices))
    if name == "fmr" and not 0.0 < float(value) < 1.0:  # type: ignore[arg-type]
        raise InputError(f"--max-false-match-rate must be between 0 and 1 (got {value})")
    cal = calibration

    def rates(t: float) -> tuple[float | None, float | None]:
        return (cal.fmr_at(t), cal.fnmr_at(t)) if cal else (None, None)

    def measured(t: float) -> str:
        if not cal:
            return ""
        f, n = rates(t)
        return f"; on {cal.data_note()} it accepts {f:.1%} of different-model and rejects {n:.1%} of same-model scores"

    if name == "manual":
        assert value is not None
        if not -1.0 <= value <= 1.0:
            raise InputError(f"--threshold {value} is not a cosine similarity (expected -1..1)")
        return OperatingPoint("manual", value, *rates(value), source="set with --threshold" + measured(value))
    if name == "paper" or (name == "calibrated" and cal is None):
        why = ("the paper's fixed value, chosen for the paper's extractor" if name == "paper"
               else "no calibration stored for this extractor, so the paper's fixed value")
        return OperatingPoint("paper", PAPER_THRESHOLD, *rates(PAPER_THRESHOLD),
                              source=why + measured(PAPER_THRESHOLD))
    if cal is None:
        raise InputError("a false-match-rate threshold needs a calibration, and this extractor stores none "
                         "(use --threshold with a cosine, or 'paper')")
    if name == "calibrated":
        t = cal.eer_threshold
        return OperatingPoint("calibrated", t, *rates(t), source=f"equal-error rate {cal.eer:.1%} on {cal.data_note()}")
    assert value is not None
    t = cal.threshold_at_fmr(value)
    f, n = rates(t)
    return OperatingPoint(f"fmr:{value:g}", t, f, n,
                          source=f"false-match rate at most {value:.2%} (measured {f:.2%}, false non-match "
                                 f"{n:.1%}) on {cal.data_note()}")
