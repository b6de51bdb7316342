"""How much of each residual survives JPEG re-encoding (docs/accuracy.md, "The DnCNN residual under JPEG").

For the first ``--per-folder`` images of every model folder under ``FOLDER`` (sorted), takes the
centre ``--size`` crop, re-encodes it with JPEG at each ``--quality``, and compares the residual of
the clean crop with the residual of the re-encoded one: the rms kept, and the mean correlation of
the two log-magnitude spectra (the extractor's input). A fingerprint an extractor reads from a
residual that JPEG erases cannot survive re-encoding, whatever the extractor was trained on.

    python scripts/measure_residual_jpeg.py ../shared/data/generated --residual median --residual dncnn.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fpforensics.errors import FptError
from fpforensics.images.decode import list_images, load_image
from fpforensics.perturbations import Jpeg
from fpforensics.residual import build_residual
from fpforensics.spectrum import log_magnitude_spectrum


def centre_crops(folder: Path, per_folder: int, size: int) -> torch.Tensor:
    if not folder.is_dir():
        raise SystemExit(f"error: {folder}: not a folder of model folders")
    crops = []
    for model in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(list_images([model]))[:per_folder]:
            x = load_image(path)
            h, w = x.shape[-2:]
            if min(h, w) >= size:
                top, left = (h - size) // 2, (w - size) // 2
                crops.append(x[:, top:top + size, left:left + size])
    if not crops:
        raise SystemExit(f"no image of at least {size} px under {folder}")
    return torch.stack(crops)


def spectrum_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    sa, sb = (log_magnitude_spectrum(r).flatten(1) for r in (a, b))
    sa, sb = sa - sa.mean(1, keepdim=True), sb - sb.mean(1, keepdim=True)
    return float(torch.nn.functional.cosine_similarity(sa, sb).mean())


@torch.no_grad()
def measure(crops: torch.Tensor, residual_spec: str, residual, qualities: list[int]) -> dict:
    clean = residual(crops)
    rms = float(clean.pow(2).mean().sqrt()) * 255
    row = {"residual": residual_spec, "rms_clean": rms}
    for q in qualities:
        jpeg = torch.stack([Jpeg().apply(c, q, None) for c in crops])
        coded = residual(jpeg)
        row[f"rms_kept_jpeg{q}"] = float(coded.pow(2).mean().sqrt()) * 255 / rms
        row[f"spectrum_corr_jpeg{q}"] = spectrum_correlation(clean, coded)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a folder of model folders (e.g. ../shared/data/generated)")
    ap.add_argument("--residual", action="append", required=True, help="median, none, dncnn or a DnCNN .pt")
    ap.add_argument("--quality", type=int, action="append", help="JPEG qualities (default 90 and 75)")
    ap.add_argument("--per-folder", type=int, default=6)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    torch.manual_seed(0)
    try:  # every residual first: a missing or wrong-kind DnCNN file is a one-line error before any work
        residuals = [build_residual(spec).eval() for spec in args.residual]
    except FptError as exc:
        raise SystemExit(f"error: {exc}") from None
    crops = centre_crops(args.folder, args.per_folder, args.size)
    print(json.dumps({"images": len(crops)}))
    for spec, residual in zip(args.residual, residuals, strict=True):
        print(json.dumps(measure(crops, spec, residual, args.quality or [90, 75])), flush=True)


if __name__ == "__main__":
    main()
