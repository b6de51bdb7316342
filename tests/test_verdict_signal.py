"""Weak-signal check: flat, tiny, blurred and text images are "insufficient signal"; photos are not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from fpforensics.verdict.signal import DEFAULT_RULE, SignalRule, check_signal, judge, residual_stats


@pytest.fixture(scope="module")
def photo(photos) -> np.ndarray:
    return photos[0][:256, :256]  # astronaut: a real photograph


@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 200, 0)])
def test_flat_images_are_insufficient(colour):
    check = check_signal(Image.new("RGB", (300, 200), colour))
    assert not check.ok and "residual too weak" in check.reason
    assert check.stats["rms"] == 0.0 and check.stats["flat_share"] == 1.0


def test_tiny_image_is_insufficient(photo):
    small = Image.fromarray(photo).resize((16, 16), Image.Resampling.LANCZOS)
    check = check_signal(small)
    assert not check.ok and "too small (16 px" in check.reason


def test_photo_crop_has_signal(photo):
    check = check_signal(photo)
    assert check.ok and check.reason == ""
    assert check.stats["rms"] > 4 * DEFAULT_RULE.min_rms and check.stats["flat_share"] < 0.5
    assert check.stats["crops"] == 9 and check.stats["min_side"] == 256


def test_heavy_blur_and_text_are_insufficient(photo):
    blurred = Image.fromarray(photo).filter(ImageFilter.GaussianBlur(8))
    assert not check_signal(blurred).ok
    text = Image.new("RGB", (640, 400), "white")
    draw = ImageDraw.Draw(text)
    for y in range(10, 390, 26):
        draw.text((10, y), "Screenshot of some text, 0123456789", fill="black", font=ImageFont.load_default(size=16))
    check = check_signal(text)
    assert check.stats["rms"] > DEFAULT_RULE.min_rms  # glyph edges carry energy...
    assert not check.ok and "almost everywhere zero" in check.reason  # ...but nowhere else


def test_inputs_agree_and_rule_is_data(photo):
    as_tensor = torch.from_numpy(photo.transpose(2, 0, 1).copy()).float() / 255
    assert residual_stats(photo) == residual_stats(Image.fromarray(photo)) == residual_stats(as_tensor)
    stats = residual_stats(photo)
    strict = SignalRule(min_side=32, min_rms=stats["rms"] + 0.01, max_flat_share=0.85)
    assert not judge(stats, strict).ok and judge(stats).ok
    assert SignalRule.from_dict(strict.to_dict()) == strict
