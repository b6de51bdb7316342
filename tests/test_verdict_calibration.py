"""Calibration: thresholds, probabilities and margins recovered from score distributions whose answers are known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fpforensics.errors import InputError
from fpforensics.verdict.calibration import (
    PAPER_THRESHOLD,
    Calibration,
    fit,
    parse_choice,
    resolve_operating_point,
)
from fpforensics.verdict.fitting import fit_from_embeddings
from fpforensics.verdict.margin import fit_margin

MU_G, MU_I, SD = 0.90, 0.80, 0.03


def phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


@pytest.fixture(scope="module")
def gaussian() -> tuple[np.ndarray, np.ndarray, Calibration]:
    rng = np.random.default_rng(0)
    g, i = rng.normal(MU_G, SD, 20000), rng.normal(MU_I, SD, 20000)
    return g, i, fit(g, i, data="two gaussians")


def test_eer_threshold_and_rate_match_theory(gaussian):
    _, _, cal = gaussian
    # equal spreads: the EER threshold is the midpoint, EER = Phi(-(mu_g - mu_i) / (2 sd)) = 4.78%
    assert cal.eer_threshold == pytest.approx(0.85, abs=0.003)
    assert cal.eer == pytest.approx(phi(-(MU_G - MU_I) / (2 * SD)), abs=0.004)
    assert cal.auc == pytest.approx(phi((MU_G - MU_I) / (SD * math.sqrt(2))), abs=0.003)


def test_probability_monotone_half_at_eer_and_clipped(gaussian):
    _, _, cal = gaussian
    s = np.linspace(0.6, 1.0, 401)
    p = cal.probability(s)
    inner = (p > cal.p_floor) & (p < 1 - cal.p_floor)
    assert np.all(np.diff(p) >= 0) and np.all(np.diff(p[inner]) > 0)
    assert float(cal.probability(cal.eer_threshold)) == pytest.approx(0.5, abs=0.03)
    assert 0 < cal.p_floor <= float(cal.probability(-1.0)) and float(cal.probability(1.0)) <= 1 - cal.p_floor < 1
    # equal-variance gaussians: log LR is affine with slope (mu_g - mu_i) / sd^2 = 111
    assert cal.slope == pytest.approx((MU_G - MU_I) / SD**2, rel=0.08)
    assert float(cal.likelihood_ratio(0.85)) == pytest.approx(1.0, abs=0.15)
    # a prior moves the probability the Bayes way: odds multiply
    p_low = float(cal.probability(0.86, prior=0.1))
    p_bal = float(cal.probability(0.86))
    assert p_low / (1 - p_low) == pytest.approx(p_bal / (1 - p_bal) / 9, rel=1e-6)


@pytest.mark.parametrize("rate", [0.01, 0.001, 0.05])
def test_fmr_threshold_accepts_at_most_that_many_impostors(gaussian, rate):
    _, imp, cal = gaussian
    op = resolve_operating_point(cal, f"fmr:{rate}")
    accepted = float((imp >= op.threshold).mean())
    assert accepted <= rate
    assert accepted >= 0.8 * rate  # and not needlessly strict
    assert op.fmr == pytest.approx(accepted, abs=1e-9)


def test_fmr_threshold_on_skewed_small_sample():
    rng = np.random.default_rng(3)
    g, i = 1 - rng.beta(1, 12, 300), 1 - rng.beta(2, 6, 700)
    cal = fit(g, i)
    for rate in (0.01, 0.02, 0.1, 0.3):
        t = resolve_operating_point(cal, max_false_match_rate=rate).threshold
        assert (i >= t).mean() <= rate
    assert cal.fmr_at(cal.eer_threshold) == pytest.approx(cal.eer, abs=0.01)


def test_named_choices_and_descriptions(gaussian):
    _, _, cal = gaussian
    default = resolve_operating_point(cal)
    assert default.name == "calibrated" and default.threshold == cal.eer_threshold
    assert default.describe().startswith(f"threshold {cal.eer_threshold:.3f} (calibrated: equal-error rate 4.")
    assert "40,000 calibration image pairs of two gaussians" in default.describe()
    paper = resolve_operating_point(cal, "paper")
    assert paper.threshold == PAPER_THRESHOLD == 0.81
    assert paper.fmr == pytest.approx(1 - phi((0.81 - MU_I) / SD), abs=0.01)  # 37% of impostors accepted
    manual = resolve_operating_point(cal, "0.9")
    assert manual.name == "manual" and manual.threshold == 0.9 and "set with --threshold" in manual.describe()
    assert resolve_operating_point(cal, "fmr:1%").threshold == resolve_operating_point(cal, "fmr:0.01").threshold
    assert parse_choice("EER") == ("calibrated", None) and parse_choice(0.5) == ("manual", 0.5)


def test_without_calibration_the_paper_value_is_named_as_a_fallback():
    op = resolve_operating_point(None)
    assert op.name == "paper" and op.threshold == 0.81 and "no calibration stored" in op.source
    with pytest.raises(InputError, match="needs a calibration"):
        resolve_operating_point(None, "fmr:0.01")


@pytest.mark.parametrize("kwargs", [{"threshold": "fmr:0"}, {"threshold": "fmr:150%"}, {"threshold": "strict"},
                                    {"threshold": 1.5}, {"threshold": 0.9, "max_false_match_rate": 0.01},
                                    {"max_false_match_rate": 1.0}])
def test_bad_overrides_are_input_errors(gaussian, kwargs):
    with pytest.raises(InputError):
        resolve_operating_point(gaussian[2], **kwargs)


def test_roundtrip_json_and_torch_weights_only(gaussian, tmp_path):
    _, _, cal = gaussian
    cal.margin = fit_margin(np.linspace(0, 0.1, 50), np.linspace(0, 0.1, 50) > 0.02)
    back = Calibration.from_json(json.dumps(cal.to_dict()))
    assert back == cal
    torch.save({"calibration": cal.to_dict()}, tmp_path / "ckpt.pt")
    loaded = torch.load(tmp_path / "ckpt.pt", weights_only=True)["calibration"]
    assert Calibration.from_dict(loaded) == cal
    assert len(cal.to_json()) < 20000  # fits an HDF5 attribute comfortably


def test_margin_rule_finds_the_known_crossing():
    rng = np.random.default_rng(1)
    m = rng.uniform(0, 0.1, 20000)
    correct = rng.random(20000) < np.minimum(1.0, 0.4 + 10 * m)  # P(right) = 0.7 at m = 0.03
    rule = fit_margin(m, correct, max_error=0.3)
    assert rule.ambiguous_margin == pytest.approx(0.03, abs=0.004)
    assert rule.error_when_ambiguous > 0.3 > rule.error_when_confident
    assert rule.is_ambiguous(0.01) and not rule.is_ambiguous(0.05)
    assert fit_margin(m, np.ones_like(m, bool)).ambiguous_margin == 0.0  # never wrong: never ambiguous


def clusters(seed: int = 0, models: int = 12, per_model: int = 20, dim: int = 32, noise: float = 0.25):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(models, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    emb = np.repeat(centres, per_model, axis=0) + rng.normal(scale=noise, size=(models * per_model, dim))
    return emb, np.repeat([f"model-{k}" for k in range(models)], per_model)


def test_fit_from_embeddings_balanced_and_seeded():
    emb, labels = clusters()
    cal = fit_from_embeddings(emb, labels, pairs=4000, seed=0, data="clusters")
    assert cal.kind == "image-image" and cal.n_genuine == cal.n_impostor == 2000
    assert cal.auc > 0.9 and cal.margin is not None and cal.margin.shots == 10
    again = fit_from_embeddings(emb, labels, pairs=4000, seed=0, data="clusters")
    other = fit_from_embeddings(emb, labels, pairs=4000, seed=1, data="clusters")
    assert again.eer_threshold == cal.eer_threshold != other.eer_threshold
    fp = fit_from_embeddings(emb, labels, pairs=4000, reference="fingerprint", data="clusters")
    # a mean of 10 embeddings is closer to its model's centre than one image: higher genuine scores
    assert fp.kind == "image-fingerprint" and fp.eer_threshold > cal.eer_threshold and fp.eer < cal.eer
    assert "10 shots per fingerprint" in fp.data


def test_fit_needs_scores():
    with pytest.raises(InputError):
        fit(np.array([0.9]), np.array([0.1, 0.2]))
