"""Shared fixtures: tiny real photographs (scikit-image's wheel) and model-set folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_periodic_models
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
    return write_periodic_models(tmp_path_factory.mktemp("models"), photos, (2, 4, 8), per_model=6, size=160,
                                 amplitude=12.0)


@pytest.fixture(scope="session")
def real_dir(tmp_path_factory, photos) -> Path:
    """A folder of real photos (200x200 crops, PNG): the manifold of the artifact tests."""
    root = tmp_path_factory.mktemp("real")
    for i, p in enumerate(photos):
        Image.fromarray(p[:200, :200]).save(root / f"real{i}.png")
    return root
