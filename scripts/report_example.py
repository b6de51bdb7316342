"""Write the example HTML report of docs/verdicts.md and, with Chromium installed, its screenshot.

Usage: python scripts/report_example.py OUT_DIR [--screenshot docs/figures/report-example.png]

The queries are scikit-image's sample photographs plus a flat image; the model names are real
generator names, but the **scores are made up** to show each verdict: the page shows the layout,
not a measurement. Once ``fpt identify --report`` exists, a real report replaces this one.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from fpforensics.verdict.calibration import fit, resolve_operating_point
from fpforensics.verdict.decision import decide, rank
from fpforensics.verdict.html_report import write_html_report
from fpforensics.verdict.margin import fit_margin
from fpforensics.verdict.provenance import ExtractorRef, Provenance
from fpforensics.verdict.signal import check_signal

MODELS = ["StableDiffusion_DiscordBeta_Jul2022", "GLID-3-XL", "LatentDiffusion-LDM-txt2img", "DALLE2",
          "StyleGAN2-ADA_FFHQ1024_seeds"]
COSINES = {  # made up, one row per verdict
    "astronaut__prompt-a-portrait-of-an-astronaut-in-a-white-suit-holding-a-helmet__stab-3.png":
        [0.968, 0.921, 0.917, 0.884, 0.861],
    "coffee__prompt-a-cup-of-coffee-on-a-saucer-seen-from-above__glid3-7.png": [0.903, 0.937, 0.935, 0.872, 0.850],
    "chelsea-the-cat.png": [0.902, 0.897, 0.889, 0.880, 0.861],
    "blank-white-screenshot.png": [1.0, 0.99, 0.99, 0.98, 0.97],
}


def images() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut()[:320, 60:380], data.coffee()[:300, 100:400], data.chelsea()[:280, :320],
            np.full((240, 320, 3), 255, np.uint8)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--screenshot", type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)  # a made-up calibration too: two gaussians and a margin curve
    m = rng.uniform(0, 0.05, 4000)
    cal = fit(rng.normal(0.95, 0.02, 2000), rng.normal(0.89, 0.025, 2000), kind="image-fingerprint",
              data="made-up scores (example)", margin=fit_margin(m, rng.random(4000) < np.minimum(1, 0.5 + 40 * m)))
    op = resolve_operating_point(cal)
    entries = []
    for (name, cosines), arr in zip(COSINES.items(), images(), strict=True):
        path = args.out / name
        Image.fromarray(arr).save(path)
        ranking = rank(MODELS, cosines, cal)
        signal = check_signal(arr)
        entries.append({"path": path.name, "image": arr, "ranking": ranking, "threshold": op.threshold,
                        "verdict": decide(ranking, op.threshold, cal.margin, signal), "signal": signal.stats,
                        "provenance": Provenance.for_image(path, ExtractorRef.of("resnet18:cde89f2c38dc", "default"),
                                                           op.to_dict())})
    report = write_html_report(args.out / "report.html", entries, title="fpt identify report (example: made-up scores)",
                               notes=[op.describe(), cal.margin.describe()])
    print(report)
    chromium = shutil.which("chromium")
    if args.screenshot and chromium:
        with tempfile.TemporaryDirectory() as profile:
            shot = Path(profile) / "shot.png"
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1200,1900",
                            report.resolve().as_uri()], capture_output=True, timeout=120, check=False)
            img = Image.open(shot).convert("RGB").resize((900, 1425), Image.Resampling.LANCZOS)
            img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.screenshot, optimize=True)
        print(args.screenshot, args.screenshot.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
