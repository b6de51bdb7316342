"""Fidelity of small synthetic pools: FFD (METHOD 1.6) against the real generators.

Trains small pools (one per loss, l2 and l1), applies every model to the same real crops,
and prints the FFD between the pool's models and the real generator models, for the whole pool
and for ablations that remove one option family (the paper's Table II idea, small scale):
w/o U (U=bilinear only), w/o A (A=none only), w/o N (N=none only).

    python benchmarks/fidelity_synthesis.py --grid 'K=1,L=1,N=none|batch,S=post' --steps 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    from fpforensics.ffd import frechet_frequency_distance, images_to_model_spectrum, model_set_spectra
    from fpforensics.images.crops import center_crop
    from fpforensics.images.decode import iter_images, list_images
    from fpforensics.images.folders import ModelSet
    from fpforensics.residual import build_residual
    from fpforensics.synthesis.architectures import parse_grid
    from fpforensics.synthesis.build import synthesize_pool
    from fpforensics.synthesis.pool import SyntheticPool
    from fpforensics.synthesis.training import RealData, TrainConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default="/work/shared/data/real")
    ap.add_argument("--generated", default="/work/shared/data/generated")
    ap.add_argument("--grid", default="K=1,L=1,N=none|batch,S=post")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--images", type=int, default=20, help="images per model for the spectra")
    ap.add_argument("--losses", default="l2,l1")
    ap.add_argument("--workdir", default="/tmp/fpt_fidelity")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from pathlib import Path

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    residual = build_residual("default").eval()
    device = torch.device("cpu")
    gen_spectra, _, _ = model_set_spectra(ModelSet.from_folder(args.generated), residual, device, args.images)
    real_gen = np.stack(list(gen_spectra.values()))
    crops = [center_crop(img, 128) for _, img in iter_images(list_images(args.real)[: args.images])]
    real_self = images_to_model_spectrum(crops, residual, device)
    specs = parse_grid(args.grid)
    data = RealData.from_folder(args.real)
    print(f"residual={residual.identity}; {len(gen_spectra)} real generators x {args.images} images; grid "
          f"'{args.grid}' = {len(specs)} architectures x {args.seeds} seeds, {args.steps} steps, batch "
          f"{args.batch_size}")
    for loss in args.losses.split(","):
        cfg = TrainConfig(loss=loss, max_steps=args.steps, batch_size=args.batch_size)
        out = work / f"pool-{loss}.h5"
        t = time.perf_counter()
        synthesize_pool(data, out, specs, range(args.seeds), cfg)
        pool = SyntheticPool.open(out)
        x = torch.stack(crops)
        spectra = []
        for i in range(len(pool)):
            y = pool.apply(torch.full((len(crops),), i, dtype=torch.long), x, device)
            spectra.append(images_to_model_spectrum(list(y), residual, device))
        spectra = np.stack(spectra)
        reached = sum(e.reached_eta for e in pool.entries)
        print(f"\nloss={loss}: {len(pool)} models ({reached} reached eta) in {time.perf_counter() - t:.0f}s; "
              f"mean final loss {np.mean([e.final_loss for e in pool.entries]):.4f}")
        rows = {"all": None, "w/o U (bilinear only)": ("U", "bilinear"), "w/o A (none only)": ("A", "none"),
                "w/o N (none only)": ("N", "none")}
        for label, keep in rows.items():
            idx = [i for i, e in enumerate(pool.entries) if keep is None or getattr(e.arch, keep[0]) == keep[1]]
            if len(idx) < 2:
                continue
            ffd = frechet_frequency_distance(spectra[idx], real_gen)
            print(f"  {label:24s} models {len(idx):3d}  FFD vs real generators {ffd:.4f}")
        identity = frechet_frequency_distance(np.stack([real_self, real_self + 1e-6]), real_gen)
        print(f"  (reference: unmodified real crops as one 'model', FFD {identity:.4f})")


if __name__ == "__main__":
    main()
