import numpy as np
import pytest

from fpforensics.ffd import ffd_between_folders, frechet_frequency_distance
from fpforensics.metrics import features_to_statistics, frechet_distance


def test_frechet_self_is_zero_and_singular_is_finite():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 64))  # 5 models, 64 bins: singular covariance
    s = features_to_statistics(x)
    assert abs(frechet_distance(s.mu, s.sigma, s.mu, s.sigma)) < 1e-6
    y = rng.normal(size=(7, 64)) + 0.5
    t = features_to_statistics(y)
    d = frechet_distance(s.mu, s.sigma, t.mu, t.sigma)
    assert np.isfinite(d) and isinstance(d, float) and d > 0


def test_frechet_closed_form_gaussians():
    # Commuting covariances: FD = |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2 over eigenvalues.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.0])
    expected = 5.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)
    # Non-commuting 2-D case against scipy's sqrtm
    from scipy.linalg import sqrtm

    s1 = np.array([[2.0, 0.5], [0.5, 1.0]])
    s2 = np.array([[1.0, -0.3], [-0.3, 3.0]])
    ref = np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert frechet_distance(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(ref, rel=1e-8)


def test_frechet_shape_mismatch():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_ffd_folders_self_zero_and_shift_positive(model_set_dir, tmp_path):
    res = ffd_between_folders(model_set_dir, model_set_dir, images_per_model=4)
    assert res.ffd < 1e-6 and res.models_a == 3 and res.images_per_model == 4
    assert "median3x3" in res.preprocessing
    # a set made only of model0 and model1 differs from the full set
    sub = tmp_path / "sub"
    sub.mkdir()
    for name in ("model0", "model1"):
        (sub / name).symlink_to(model_set_dir / name)
    assert ffd_between_folders(model_set_dir, sub, images_per_model=4).ffd > 0


def test_ffd_skips_small_models_and_errors(model_set_dir, tmp_path):
    from fpforensics.errors import InputError

    with pytest.raises(InputError, match="no model has"):
        ffd_between_folders(model_set_dir, model_set_dir, images_per_model=50)
    with pytest.raises(InputError, match="missing"):
        ffd_between_folders(model_set_dir, model_set_dir / "missing", images_per_model=2)
    # a set whose model 'small' has 2 readable images (and one broken file) among 3: skipped with warnings
    small = tmp_path / "set" / "small"
    small.mkdir(parents=True)
    for name in ("a.png", "b.png"):
        (small / name).write_bytes((model_set_dir / "model0" / "img0.png").read_bytes())
    (small / "c_broken.png").write_bytes(b"not an image")
    (tmp_path / "set" / "model1").symlink_to(model_set_dir / "model1")
    warnings: list[str] = []
    res = ffd_between_folders(model_set_dir, tmp_path / "set", images_per_model=3, warn=warnings.append)
    assert res.skipped_models == ["small"] and res.skipped_images == 1 and res.models_b == 1
    assert any("c_broken.png" in w and "unreadable" in w for w in warnings)
    assert any("'small' has 2 readable images, fewer than 3: skipped" in w for w in warnings)


def test_ffd_is_permutation_invariant():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 8)), rng.normal(size=(9, 8))
    assert frechet_frequency_distance(a, b) == pytest.approx(frechet_frequency_distance(a[::-1], b[::-1]))
