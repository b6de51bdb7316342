"""Shared fixtures: tiny real photographs (scikit-image's wheel) and model-set folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def _skimage_photos() -> list[np.ndarray]:
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    return [p[..., :3] for p in photos]


@pytest.fixture(scope="session")
def photos() -> list[np.ndarray]:
    """Real RGB photographs as uint8 arrays (HxWx3)."""
    return _skimage_photos()


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory, photos) -> Path:
    """A folder of real photos: PNG and JPEG, one in a subfolder."""
    root = tmp_path_factory.mktemp("photos")
    (root / "sub").mkdir()
    for i, p in enumerate(photos):
        target = root / "sub" if i == 3 else root
        fmt, ext = ("JPEG", "jpg") if i == 1 else ("PNG", "png")
        Image.fromarray(p).save(target / f"photo{i}.{ext}", format=fmt)
    return root


@pytest.fixture(scope="session")
def model_set_dir(tmp_path_factory, photos) -> Path:
    """ROOT/<model>/<images>: 3 'models' = real crops with distinct periodic traces."""
    root = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    for m, period in enumerate((2, 4, 8)):
        d = root / f"model{m}"
        d.mkdir()
        for i in range(6):
            p = photos[i % len(photos)]
            y = rng.integers(0, p.shape[0] - 160)
            x = rng.integers(0, p.shape[1] - 160)
            crop = p[y:y + 160, x:x + 160].astype(np.float32)
            grid = np.zeros((160, 160), np.float32)
            grid[::period, ::period] = 12.0
            img = np.clip(crop + grid[..., None], 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"img{i}.png")
    return root
