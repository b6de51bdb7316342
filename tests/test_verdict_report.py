"""Verdict decisions and the self-contained HTML report (checked as text, then rendered by headless Chromium)."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from fpforensics.verdict.decision import AMBIGUOUS, ATTRIBUTED, INSUFFICIENT, UNKNOWN, Ranked, Verdict, decide, rank
from fpforensics.verdict.html_report import ReportEntry, write_html_report
from fpforensics.verdict.names import display_name
from fpforensics.verdict.provenance import ExtractorRef, Provenance
from fpforensics.verdict.signal import SignalCheck, check_signal

MODELS = ["StableDiffusion_DiscordBeta_Jul2022", "MajestyDiffusion", "DALLE2"]
LONG = "StyleGAN2-ADA_FFHQ1024_seeds__" + "a-long-prompt-that-must-wrap-and-not-be-cut-" * 4 + "seed0001.png"


def test_decide_order_and_texts():
    r = [Ranked("A", 0.95), Ranked("B", 0.90), Ranked("C", 0.5)]
    assert decide(r, 0.92, 0.01) == Verdict(ATTRIBUTED, ("A",), margin=pytest.approx(0.05))
    v = decide(r, 0.92, 0.08)
    assert v.kind == AMBIGUOUS and v.text == "ambiguous between A and B"
    assert decide(r, 0.96, 0.01).text == "unknown (not made by any enrolled model)"
    weak = SignalCheck(False, "residual too weak")
    assert decide(r, 0.5, None, weak).kind == INSUFFICIENT
    assert decide(r, 0.5, None, weak).text == "insufficient signal: residual too weak"
    assert decide([], 0.5).kind == UNKNOWN


def test_rank_sorts_and_adds_probabilities():
    r = rank(["a", "b", "c"], [0.2, 0.9, 0.5])
    assert [x.model for x in r] == ["b", "c", "a"] and r[0].probability is None


def make_images(tmp_path, photos):
    rng = np.random.default_rng(0)
    noise = np.clip(rng.normal(128, 30, (96, 96, 3)), 0, 255).astype(np.uint8)
    arrays = {LONG: photos[1][:120, :160], "evil\x1b[31m\r\nname.png": noise, "flat white.png": np.full((64, 64, 3), 255,
                                                                                                       np.uint8)}
    out = []
    for k, (name, arr) in enumerate(arrays.items()):
        path = tmp_path / f"img{k}.png"
        Image.fromarray(arr).save(path)
        out.append((name, path))
    return out


@pytest.fixture
def report(tmp_path, photos):
    """Three entries, given three ways: a dataclass with a PIL image, a dict with an array, a file to read."""
    entries, hashes, names = [], [], []
    ref = ExtractorRef.of("resnet18:cde89f2c38dc", "spectral")
    op = {"name": "calibrated", "threshold": 0.9, "source": "test"}
    for k, (name, path) in enumerate(make_images(tmp_path, photos)):
        ranking = rank(MODELS, [0.95 - 0.03 * k, 0.91, 0.80 + 0.05 * k])
        signal = check_signal(Image.open(path))
        verdict = decide(ranking, 0.9, 0.02, signal)
        prov = Provenance.for_image(path, ref, op)
        hashes.append(prov.image_sha256)
        if k == 0:
            entries.append(ReportEntry(name, ranking, verdict, 0.9, Image.open(path), prov, signal.stats))
        elif k == 1:
            entries.append({"path": name, "ranking": [(r.model, r.cosine, 0.5) for r in ranking],
                            "verdict": verdict.to_dict(), "threshold": 0.9, "image": np.asarray(Image.open(path)),
                            "provenance": prov.to_dict(), "signal": signal.stats})
        else:
            name = path
            entries.append(ReportEntry(path, ranking, verdict, 0.9, None, prov, signal.stats))
        names.append(name)
    out = write_html_report(tmp_path / "report.html", entries, notes=["threshold 0.900 (calibrated: test)"])
    return out, hashes, names


def test_report_is_self_contained_and_complete(report):
    path, hashes, names = report
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:|//)", text, re.I)
    assert "http://" not in text and "https://" not in text and "<script" not in text and "@import" not in text
    assert "default-src 'none'" in text
    assert text.count("data:image/") == 6  # thumbnail + spectrum for each image
    assert "\x1b" not in text and "\r" not in text
    assert html.escape(display_name("evil\x1b[31m\r\nname.png")) in text
    assert LONG in text
    for name in names:
        assert html.escape(display_name(name)) in text  # full names, never cut
    for h in hashes:
        assert h in text
    assert "attributed to StableDiffusion_DiscordBeta_Jul2022" in text
    assert "ambiguous between StableDiffusion_DiscordBeta_Jul2022 and MajestyDiffusion" in text
    assert "insufficient signal: residual too weak" in text
    assert "<svg" in text and "stroke-dasharray" in text


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def test_report_renders_in_headless_chromium(report, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    path, _, _ = report
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
           path.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    arr = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    assert arr.shape[:2] == (1600, 1200)
    assert arr.std() > 10  # not a blank page
    assert len(np.unique(arr.reshape(-1, 3) // 8, axis=0)) > 50  # pictures, not just text on white
    green = (arr[..., 1] > arr[..., 0] + 40) & (arr[..., 1] > arr[..., 2] + 20)
    assert green.sum() > 200  # the attributed verdict's green badge and top bar were drawn


def test_report_escapes_markup_and_survives_missing_images(tmp_path):
    evil = b"<script>alert(1)</script>\xff.png"
    entry = {"path": evil, "ranking": [("<b>model</b>", 0.95, None), ("B", 0.5, None)],
             "verdict": {"verdict": "attributed", "models": ["<b>model</b>"]}, "threshold": 0.9}
    text = write_html_report(tmp_path / "r.html", [entry]).read_text(encoding="utf-8")
    assert "<script" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\xff.png" in text
    assert "attributed to &lt;b&gt;model&lt;/b&gt;" in text and "image not readable" in text
