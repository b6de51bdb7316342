"""Measure the residual statistics behind the "insufficient signal" rule (docs/verdicts.md).

Usage: python scripts/measure_signal.py [--data ../shared/data] [--per-generator 24] [--photos 20]
           [--json out.json] [--check-heldout]

Groups measured:
* real training photos (``real/BSDS500_train``, ``CBSD68``, ``CelebA_align_32``, ``FFHQ_256px_10``);
* ``generated/<model>``: ``--per-generator`` images per folder, spread over the sorted list;
* synthetic negatives made here from the first ``--photos`` BSDS500_train photos: gaussian blur at
  several sigmas, downsizing to 16-64 px, plus flat colours, gradients and rendered text screens;
* JPEG 50 re-compressions of the same photos, a positive control (weak but real signal).

Nothing is fitted here; the script prints percentiles per group and how many images of each
group the rule of :mod:`fpforensics.verdict.signal` flags. ``--check-heldout`` adds the held-out
test photos (``BSDS500_test``, ``Kodak24_500px``, ``McMaster18``) as a check of the chosen rule,
never as data to choose it from.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from fpforensics.images.decode import list_images, load_image
from fpforensics.verdict.signal import DEFAULT_RULE, judge, residual_stats

REAL_TRAIN = ("BSDS500_train", "CBSD68", "CelebA_align_32", "FFHQ_256px_10")
REAL_HELDOUT = ("BSDS500_test", "Kodak24_500px", "McMaster18")
STATS = ("rms", "flat_share", "crop_rms_min", "hf_share", "min_side")
PCTS = (0, 1, 5, 50, 95, 100)
BLUR_SIGMAS = (1, 2, 3, 5, 8)
SMALL_SIDES = (16, 24, 32, 48, 64)
TEXT = ("The quick brown fox jumps over the lazy dog. 0123456789", "Lorem ipsum dolor sit amet, consectetur",
        "def main(argv): return run(argv[1:])  # screenshot", "Invoice 2022-07-14  total: 1,234.56 EUR")


def spread(paths: list[Path], k: int) -> list[Path]:
    if k >= len(paths):
        return paths
    return [paths[int(round(i))] for i in np.linspace(0, len(paths) - 1, k)]


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def flat_images(rng: np.random.Generator) -> Iterator[Image.Image]:
    colours = [(255, 255, 255), (0, 0, 0), (128, 128, 128), (0, 200, 0), (220, 30, 30), (20, 40, 200)]
    colours += [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(6)]
    for i, c in enumerate(colours):
        yield Image.new("RGB", (512, 384) if i % 2 else (256, 256), c)


def gradient_images(rng: np.random.Generator) -> Iterator[Image.Image]:
    h, w = 384, 512
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fields = [xx / (w - 1), yy / (h - 1), (xx + yy) / (w + h - 2),
              np.hypot(xx - w / 2, yy - h / 2) / np.hypot(w / 2, h / 2)]
    for f in fields:
        for _ in range(3):
            a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            img = a[None, None, :] * (1 - f[..., None]) + b[None, None, :] * f[..., None]
            yield Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8))


def text_images() -> Iterator[Image.Image]:
    schemes = [((255, 255, 255), (0, 0, 0)), ((30, 30, 30), (220, 220, 220)), ((245, 245, 220), (20, 20, 120))]
    for size in (12, 16, 24):
        font = ImageFont.load_default(size=size)
        for bg, fg in schemes:
            img = Image.new("RGB", (800, 600), bg)
            draw = ImageDraw.Draw(img)
            y = 20
            while y < 560:
                draw.text((20, y), TEXT[(y // size) % len(TEXT)], fill=fg, font=font)
                y += int(size * 1.6)
            yield img


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def groups(data: Path, per_generator: int, n_photos: int, heldout: bool) -> Iterator[tuple[str, str, object]]:
    """Yield ``(group, kind, image)``; kind is "real", "generated", "negative" or "control"."""
    for name in REAL_TRAIN:
        for p in list_images(data / "real" / name):
            yield f"real/{name}", "real", p
    for d in sorted((data / "generated").iterdir()):
        for p in spread(list_images(d), per_generator):
            yield f"generated/{d.name}", "generated", p
    photos = [Image.open(p).convert("RGB") for p in list_images(data / "real" / "BSDS500_train")[:n_photos]]
    rng = np.random.default_rng(0)
    for img in photos:
        yield "control: photo JPEG q50", "control", jpeg(img, 50)
    for sigma in BLUR_SIGMAS:
        for img in photos:
            yield f"negative: blur sigma {sigma}", "negative", img.filter(ImageFilter.GaussianBlur(sigma))
    for side in SMALL_SIDES:
        for img in photos:
            w, h = img.size
            s = side / min(w, h)
            kind = "negative" if side < 64 else "control"
            yield f"{kind}: photo downsized to {side} px", kind, img.resize((max(1, round(w * s)), max(1, round(h * s))),
                                                                          Image.Resampling.LANCZOS)
    for img in flat_images(rng):
        yield "negative: flat colour", "negative", img
    for img in gradient_images(rng):
        yield "negative: gradient", "negative", img
    for img in text_images():
        yield "negative: text screen", "negative", img
    if heldout:
        for name in REAL_HELDOUT:
            for p in list_images(data / "real" / name):
                yield f"check (held out): real/{name}", "heldout", p


def measure(args) -> list[dict]:
    rows = []
    for group, kind, item in groups(args.data, args.per_generator, args.photos, args.check_heldout):
        tensor = load_image(item) if isinstance(item, Path) else pil_to_tensor(item)
        stats = residual_stats(tensor)
        rows.append({"group": group, "kind": kind, "path": str(item) if isinstance(item, Path) else "", **stats})
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per group, percentiles of RMS and flat share, and the images the rule flags."""
    out = ["| group | n | RMS p0 / p1 / p5 / p50 / p95 / p100 | flat share p0 / p1 / p5 / p50 / p95 / p100 | "
           "flagged by the rule |", "|---|---|---|---|---|"]
    names = list(dict.fromkeys(r["group"] for r in rows))
    for g in names:
        sel = [r for r in rows if r["group"] == g]
        cells = []
        for key in ("rms", "flat_share"):
            v = np.array([r[key] for r in sel])
            cells.append(" / ".join(f"{x:.2f}" for x in np.percentile(v, PCTS)))
        flagged = sum(not judge(r, DEFAULT_RULE).ok for r in sel)
        out.append(f"| {g} | {len(sel)} | {cells[0]} | {cells[1]} | {flagged} ({flagged / len(sel):.0%}) |")
    return "\n".join(out)


def summary(rows: list[dict]) -> str:
    lines = [f"rule: {DEFAULT_RULE.to_dict()}"]
    for kind in ("real", "generated", "control", "negative", "heldout"):
        sel = [r for r in rows if r["kind"] == kind]
        if sel:
            flagged = sum(not judge(r, DEFAULT_RULE).ok for r in sel)
            lines.append(f"{kind}: {flagged} of {len(sel)} flagged ({flagged / len(sel):.1%})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--per-generator", type=int, default=24)
    ap.add_argument("--photos", type=int, default=20)
    ap.add_argument("--json", type=Path, help="write every image's statistics here")
    ap.add_argument("--check-heldout", action="store_true", help="also measure the held-out test photos (a check)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = measure(args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))
    print()
    print(summary(rows))
    print(f"\n{len(rows)} images in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
