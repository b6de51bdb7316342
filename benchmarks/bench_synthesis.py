"""Packed vs one-at-a-time training of synthetic models: models/second and their ratio.

Trains the same set of models (architectures x seeds, a fixed number of steps: eta is set
unreachable so every model does exactly --steps updates) twice in one run:
  * one at a time: a plain SyntheticAutoencoder and its own Adam, model after model;
  * packed: all seeds of an architecture at once (backend looped on CPU, grouped on CUDA;
    --backends to choose several).
Runs on CPU and, when CUDA exists, also on GPU (--devices).

    python benchmarks/bench_synthesis.py                     # CPU, defaults below
    python benchmarks/bench_synthesis.py --devices cuda --seeds 20 --steps 50 --batch-size 8
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    from fpforensics.synthesis.architectures import parse_grid
    from fpforensics.synthesis.training import RealData, TrainConfig, train_pack

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default="/work/shared/data/real")
    ap.add_argument("--arch-grid", default="K1L1UnArNbSo,K1L2UdAtNiSe,K2L1UbAsN0So")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backends", default="auto", help="comma list of auto|looped|grouped for the packed run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    specs = parse_grid(args.arch_grid)
    data = RealData.from_folder(args.real)
    cfg = TrainConfig(eta=1e-12, max_steps=args.steps, batch_size=args.batch_size, calib_batches=1)
    n_models = len(specs) * args.seeds
    print(f"torch {torch.__version__}, threads {args.threads}; {len(specs)} architectures x {args.seeds} seeds = "
          f"{n_models} models, {args.steps} steps, batch {args.batch_size}, crop {cfg.crop}")
    for dev in args.devices.split(","):
        device = torch.device(dev)
        if device.type == "cuda" and not torch.cuda.is_available():
            print(f"{dev}: not available, skipped")
            continue

        def sync(device: torch.device = device) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        train_pack(specs[0], [0], data, TrainConfig(eta=1e-12, max_steps=1, batch_size=args.batch_size,
                                                    calib_batches=1), device)  # warm-up
        sync()
        t = time.perf_counter()
        for spec in specs:
            for seed in range(args.seeds):
                train_pack(spec, [seed], data, cfg, device, backend="looped")
        sync()
        alone = n_models / (time.perf_counter() - t)
        print(f"{dev}: one at a time        {alone:8.3f} models/s")
        for backend in args.backends.split(","):
            t = time.perf_counter()
            for spec in specs:
                train_pack(spec, range(args.seeds), data, cfg, device, backend=backend)
            sync()
            packed = n_models / (time.perf_counter() - t)
            print(f"{dev}: packed ({backend:7s})     {packed:8.3f} models/s   ratio packed/alone {packed / alone:.2f}x")


if __name__ == "__main__":
    main()
