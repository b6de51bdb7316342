"""Helpers shared by several test files (imported as a module: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from fpforensics.cli.app import app

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
