"""Demo data for the README quickstart, made only from what the install brings.

    python examples/demo_data.py photos demo/real
        writes the colour photographs bundled in scikit-image's wheel as PNG files.
    python examples/demo_data.py render demo/pool.h5 demo/real demo/generated --per-model 16
        passes random 128x128 crops of those photos through every model of a pool made by
        `fpt synthesize`, writing demo/generated/<architecture code>/NNN.png (lossless).

The rendered folders behave like the output of real generative models: each model leaves its
own trace, which `fpt gallery add` / `fpt identify` / `fpt ffd` can pick up.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def write_photos(out: Path) -> None:
    from PIL import Image
    from skimage import data

    out.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        Image.fromarray(getattr(data, name)()[..., :3]).save(out / f"{name}.png")
    print(f"wrote {len(PHOTOS)} photos to {out}")


def render(pool_path: Path, photos: Path, out: Path, per_model: int, seed: int) -> None:
    import torch

    from fpforensics.images.crops import random_crop, upscale_to_min_side
    from fpforensics.images.decode import list_images, load_image, save_png
    from fpforensics.synthesis.pool import SyntheticPool

    pool = SyntheticPool.open(pool_path)
    images = [upscale_to_min_side(load_image(p), 128) for p in list_images(photos)]
    gen = torch.Generator().manual_seed(seed)
    for model_id, entry in enumerate(pool.entries):
        crops = []
        for _ in range(per_model):
            img = images[int(torch.randint(len(images), (1,), generator=gen))]
            crops.append(random_crop(img, 128, gen)[0])
        ids = torch.full((per_model,), model_id, dtype=torch.long)
        fake = pool.apply(ids, torch.stack(crops), torch.device("cpu"))
        folder = out / entry.arch.code
        for i, image in enumerate(fake):
            save_png(image, folder / f"{i:03d}.png")
    print(f"wrote {per_model} images for each of {len(pool.entries)} models to {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("photos")
    p.add_argument("out", type=Path)
    r = sub.add_parser("render")
    r.add_argument("pool", type=Path)
    r.add_argument("photos", type=Path)
    r.add_argument("out", type=Path)
    r.add_argument("--per-model", type=int, default=16)
    r.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "photos":
        write_photos(args.out)
    else:
        render(args.pool, args.photos, args.out, args.per_model, args.seed)


if __name__ == "__main__":
    main()
