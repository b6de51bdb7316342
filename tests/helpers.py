"""Helpers shared by several test files (imported as a module: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from fpforensics.cli.app import app
from fpforensics.synthesis.architectures import build_autoencoder, parse_grid

runner = CliRunner()
EXTRACTING = {"embed", "identify", "verify", "add"}


def invoke(args: list[str]):
    """Run fpt; commands that embed get ``-e spectral`` unless they name an extractor (stable if weights ship)."""
    if EXTRACTING & set(args[:4]) and "-e" not in args and "--extractor" not in args:
        args = [*args, "-e", "spectral"]
    return runner.invoke(app, args)


def write_periodic_models(root: Path, photos: list[np.ndarray], periods: tuple[int, ...], per_model: int,
                          size: int, amplitude: float, name: str = "img{i}.png") -> Path:
    """ROOT/model<m>/: real crops plus a dot grid of period ``periods[m]``, one distinct trace per 'model'."""
    rng = np.random.default_rng(0)
    for m, period in enumerate(periods):
        d = root / f"model{m}"
        d.mkdir()
        for i in range(per_model):
            p = photos[i % len(photos)]
            y, x = rng.integers(0, p.shape[0] - size), rng.integers(0, p.shape[1] - size)
            crop = p[y:y + size, x:x + size].astype(np.float32)
            grid = np.zeros((size, size), np.float32)
            grid[::period, ::period] = amplitude
            Image.fromarray(np.clip(crop + grid[..., None], 0, 255).astype(np.uint8)).save(d / name.format(i=i))
    return root


def write_gratings(root: Path, periods: tuple[int, ...], per_model: int, size: int) -> Path:
    """ROOT/p<period>/img<i>.png: noise plus a model-specific periodic grating (a spectral fingerprint)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for period in periods:
        d = root / f"p{period}"
        d.mkdir()
        grating = 0.05 * (np.cos(2 * np.pi * xx / period) + np.cos(2 * np.pi * yy / period))
        for i in range(per_model):
            img = 0.5 + 0.06 * rng.standard_normal((size, size, 3)) + grating[..., None]
            Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(d / f"img{i}.png")
    return root


POOL_GRID = "K=1,L=1,N=none,S=post,U=nearest|deconv,A=relu|tanh"  # 4 architectures


def write_test_pool(path, seeds=(0, 1, 2), grid=POOL_GRID):
    """A real pool file (SyntheticPool format) of freshly initialised models: fast, deterministic."""
    from fpforensics.synthesis.pool import PoolRecord, flatten_state_dict, state_layout, write_pool

    records = []
    for arch in parse_grid(grid):
        layout = state_layout(arch, 32)
        for seed in seeds:
            w = flatten_state_dict(build_autoencoder(arch, seed).state_dict(), layout)
            records.append(PoolRecord(arch, seed, 0.004, 0.004, 10, True, w))
    return write_pool(path, records, json.dumps({"test": True}), "test-data", 32)
