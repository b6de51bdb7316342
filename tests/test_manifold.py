"""ManiFPT library: spaces, exact nearest neighbours, artifacts, cache, FDR, artifact classifier."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from fpforensics.embedding.loop import embed_files
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.images.decode import load_image
from fpforensics.images.folders import group_by_model
from fpforensics.manifpt import build_space
from fpforensics.manifpt.artifacts import compute_artifacts, load_artifacts, save_artifacts, summarize
from fpforensics.manifpt.classifier import ArtifactClassifier, cross_validate
from fpforensics.manifpt.fdr import fdr
from fpforensics.manifpt.manifold import load_or_build_manifold
from fpforensics.manifpt.neighbors import brute_force_nearest, nearest_neighbors
from fpforensics.manifpt.spaces import ExtractorSpace


def test_nearest_neighbors_match_brute_force():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((1234, 48)).astype(np.float32)
    q = rng.standard_normal((301, 48)).astype(np.float32)
    idx, d = nearest_neighbors(q, ref, ref_chunk=100, query_chunk=64)  # chunks not dividing the sizes
    bidx, bd = brute_force_nearest(q, ref)
    np.testing.assert_array_equal(idx, bidx)
    np.testing.assert_allclose(d, bd, rtol=1e-12)


def test_nearest_neighbors_large_offset_and_hdf5_reference(tmp_path):
    # A large common offset defeats naive float32 |a|^2+|b|^2-2ab; the result must stay exact.
    rng = np.random.default_rng(2)
    ref = (100.0 + 0.01 * rng.standard_normal((600, 256))).astype(np.float32)
    q = ref[::3] + (1e-3 * rng.standard_normal((200, 256))).astype(np.float32)
    with h5py.File(tmp_path / "ref.h5", "w") as f:
        f["x"] = ref
    with h5py.File(tmp_path / "ref.h5", "r") as f:
        idx, d = nearest_neighbors(q, f["x"], ref_chunk=128, query_chunk=50)
    bidx, bd = brute_force_nearest(q, ref)
    np.testing.assert_array_equal(idx, bidx)
    np.testing.assert_array_equal(idx, np.arange(0, 600, 3))
    np.testing.assert_allclose(d, bd, rtol=1e-9)


def test_nearest_neighbors_ties_go_to_lowest_index():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], np.float32)
    idx, d = nearest_neighbors(np.array([[1.0, 0.0], [0.0, 0.0]], np.float32), ref)
    assert idx.tolist() == [0, 0] and d.tolist() == [0.0, 1.0]


@pytest.mark.parametrize("name", ["rgb", "freq"])
def test_pixel_space_shapes(name, photos):
    space = build_space(name, size=32)
    imgs = [torch.from_numpy(p.transpose(2, 0, 1).copy()).float() / 255 for p in photos[:2]]
    feats = space.features(imgs)
    assert feats.shape == (2, 3 * 32 * 32) and space.feature_shape == (3, 32, 32) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all()
    if name == "rgb":
        assert float(feats.min()) >= 0 and float(feats.max()) <= 1
    else:  # log-magnitude: DC of an image in [0,1] is positive and large
        assert space.identity == "freq[logmag,crop32]"


def test_sl_without_weights_uses_project_extractor(photos):
    space = build_space("sl")
    assert isinstance(space, ExtractorSpace) and "project's own fingerprint extractor" in space.note
    imgs = [torch.from_numpy(p.transpose(2, 0, 1).copy()).float() / 255 for p in photos[:2]]
    feats = space.features(imgs)
    assert feats.shape == (2, space.dim) and space.dim > 0
    np.testing.assert_allclose(feats.norm(dim=1).numpy(), 1.0, rtol=1e-5)  # extractor embeddings are L2-normalized


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory) -> dict[str, Path]:
    import torchvision

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    sd = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(sd, root / "resnet50_tv.pth")  # torchvision layout, with fc
    barlow = {f"module.backbone.{k}": v for k, v in sd.items() if not k.startswith("fc.")}
    barlow["module.projector.0.weight"] = torch.zeros(4, 2048)  # training checkpoint extras are ignored
    torch.save({"epoch": 1, "model": barlow}, root / "barlow_checkpoint.pth")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, root / "partial.pth")
    return {"tv": root / "resnet50_tv.pth", "barlow": root / "barlow_checkpoint.pth", "partial": root / "partial.pth"}


def test_resnet_spaces_shapes_and_layouts(resnet_weights, photos):
    imgs = [torch.from_numpy(p.transpose(2, 0, 1).copy()).float() / 255 for p in photos[:2]]
    sl = build_space("sl", weights=resnet_weights["tv"])
    ssl = build_space("ssl", weights=resnet_weights["barlow"])
    f_sl, f_ssl = sl.features(imgs), ssl.features(imgs)
    assert f_sl.shape == (2, 2048) and f_ssl.shape == (2, 2048)
    # Same trunk tensors in both files -> same features and the same weights digest.
    torch.testing.assert_close(f_sl, f_ssl)
    assert sl.digest == ssl.digest and sl.identity.startswith("sl[") and ssl.identity.startswith("ssl[")
    with pytest.raises(IncompatibleError, match="trunk tensors missing"):
        build_space("ssl", weights=resnet_weights["partial"])


def test_ssl_without_weights_is_clear_error():
    with pytest.raises(InputError, match="--space ssl needs --weights"):
        build_space("ssl")
    with pytest.raises(InputError, match="unknown space"):
        build_space("hsv")


def test_generated_equal_to_real_has_zero_artifact(real_dir, tmp_path):
    gen = tmp_path / "gen" / "copycat"
    gen.mkdir(parents=True)
    real_files = sorted(real_dir.iterdir())
    (gen / "copy.png").write_bytes(real_files[2].read_bytes())
    for name in ("rgb", "freq"):
        space = build_space(name, size=32)
        manifold = load_or_build_manifold(space, real_files)
        res = compute_artifacts(space, [tmp_path / "gen"], manifold)
        assert res.models == ["copycat"] and res.nearest_path == [real_files[2]]
        assert res.nearest_index.tolist() == [2] and res.distance.tolist() == [0.0]
        assert not np.any(res.artifacts)


def test_artifact_is_difference_to_nearest(real_dir, model_set_dir):
    space = build_space("rgb", size=32)
    manifold = load_or_build_manifold(space, sorted(real_dir.iterdir()))
    res = compute_artifacts(space, [model_set_dir], manifold)
    gen_feats = embed_files([space], res.paths).rows[0]
    real = np.asarray(manifold.features)
    np.testing.assert_allclose(res.artifacts, gen_feats - real[res.nearest_index], atol=1e-6)
    bidx, bd = brute_force_nearest(gen_feats, real)
    np.testing.assert_array_equal(res.nearest_index, bidx)
    np.testing.assert_allclose(res.norms, np.linalg.norm(res.artifacts.astype(np.float64), axis=1), rtol=1e-5)
    summary = {s.model: s for s in summarize(res)}
    assert set(summary) == {"model0", "model1", "model2"} and all(s.n == 6 for s in summary.values())
    m0 = np.asarray(res.models) == "model0"
    assert summary["model0"].max_norm == pytest.approx(res.norms[m0].max())


def test_group_by_model(tmp_path, photos):
    root = tmp_path / "gen"
    (root / "a" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    for target in (root / "loose.png", root / "a" / "deep" / "x.png", root / "b" / "y.png", root / "b" / "z.png"):
        Image.fromarray(photos[0][:64, :64]).save(target)
    models = group_by_model([root])
    assert {k: len(v) for k, v in models.items()} == {"gen": 1, "a": 1, "b": 2}
    assert list(group_by_model([root / "b" / "y.png"])) == ["b"]
    with pytest.raises(InputError):
        group_by_model([tmp_path / "missing"])


def test_manifold_cache_round_trip(real_dir, tmp_path):
    paths = sorted(real_dir.iterdir())
    space = build_space("freq", size=32)
    cache = tmp_path / "cache.h5"
    first = load_or_build_manifold(space, paths, cache)
    feats = np.asarray(first.features)
    first.features.file.close()
    second = load_or_build_manifold(space, paths, cache)
    assert second.from_cache and second.paths == paths
    np.testing.assert_array_equal(np.asarray(second.features), feats)
    direct = embed_files([space], paths).rows[0]
    np.testing.assert_array_equal(feats, direct)
    second.features.file.close()
    with pytest.raises(IncompatibleError, match="does not match"):
        load_or_build_manifold(build_space("freq", size=16), paths, cache)
    with pytest.raises(IncompatibleError, match="real images differ"):
        load_or_build_manifold(space, paths[:-1], cache)


def test_save_and_load_artifacts(real_dir, model_set_dir, tmp_path):
    space = build_space("rgb", size=16)
    res = compute_artifacts(space, [model_set_dir], load_or_build_manifold(space, sorted(real_dir.iterdir())))
    out = save_artifacts(res, tmp_path / "a.h5", dtype="float16")
    back = load_artifacts(out)
    assert back.models == res.models and back.paths == res.paths and back.feature_shape == (3, 16, 16)
    np.testing.assert_allclose(back.artifacts, res.artifacts, atol=2e-3)
    np.testing.assert_array_equal(back.nearest_index, res.nearest_index)
    (tmp_path / "foreign.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError):
        save_artifacts(res, tmp_path / "foreign.h5")
    assert (tmp_path / "foreign.h5").read_bytes() == b"not hdf5"


def test_fdr_separated_vs_same_distribution():
    rng = np.random.default_rng(0)
    same = rng.standard_normal((300, 5))
    labels = np.repeat(["a", "b", "c"], 100)
    low = fdr(same, labels)
    sep = same + np.repeat(np.eye(5)[:3] * 8.0, 100, axis=0)
    high = fdr(sep, labels)
    # Indistinguishable classes: about 0.5, not 1 (intra FD comes from half-size sets: twice the bias).
    assert 0.3 < low.fdr < 1.0 and high.fdr > 50 * low.fdr
    assert high.classes == 3 and high.dim == 5 and high.reduced_from == 5
    big = fdr(np.hstack([sep, rng.standard_normal((300, 95))]), labels, dim=8)
    assert big.dim == 8 and big.reduced_from == 100 and big.fdr > 10
    with pytest.raises(InputError):
        fdr(same[:6], ["a"] * 6)


def test_artifact_classifier_fit_predict_save_load(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 40)) * 3
    y = np.repeat(["m0", "m1", "m2"], 30)
    x = centers[np.repeat(np.arange(3), 30)] + rng.standard_normal((90, 40))
    clf = ArtifactClassifier(dim=16).fit(x, y, space_identity="rgb[crop32]")
    assert clf.score(x, y) == 1.0
    path = clf.save(tmp_path / "clf.pt")
    back = ArtifactClassifier.load(path, space_identity="rgb[crop32]")
    np.testing.assert_allclose(back.predict_proba(x), clf.predict_proba(x), rtol=1e-6)
    assert back.classes == ["m0", "m1", "m2"]
    with pytest.raises(IncompatibleError, match="trained on"):
        ArtifactClassifier.load(path, space_identity="freq[logmag,crop32]")
    with pytest.raises(IncompatibleError, match="dims"):
        back.predict(x[:, :10])
    acc, k = cross_validate(x, y, folds=3, dim=16)
    assert k == 3 and acc > 0.9
    noise_acc, _ = cross_validate(rng.standard_normal((90, 40)), y, folds=3, dim=16)
    assert noise_acc < 0.7


def test_load_image_view_matches_space(real_dir):
    space = build_space("rgb", size=32, fit="resize")
    img = load_image(sorted(real_dir.iterdir())[0])
    assert space.view(img).shape == (3, 32, 32)


def test_gather_rows_from_hdf5_many_rows(tmp_path):
    from fpforensics.manifpt.neighbors import gather_rows

    a = np.random.default_rng(3).random((20000, 3)).astype(np.float32)
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["x"] = a
    idx = np.random.default_rng(4).integers(0, 20000, 3000)  # > 1024 unique rows: block-pass branch
    with h5py.File(tmp_path / "g.h5", "r") as f:
        np.testing.assert_array_equal(gather_rows(f["x"], idx), a[idx].astype(np.float64))
        np.testing.assert_array_equal(gather_rows(f["x"], idx[:5], np.float32), a[idx[:5]])
