"""`fpt cluster` and fpforensics.cluster: grouping without labels, naming groups, enrolling them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import invoke
from PIL import Image
from sklearn.metrics import adjusted_rand_score

from fpforensics.cluster import (
    UNPLACED,
    cluster_embeddings,
    dense_limit,
    name_groups,
    relabel,
    typical_members,
)
from fpforensics.errors import InputError


def blobs(sizes: list[int], dim: int = 32, noise: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around random, nearly orthogonal centres: well-separated sources."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[labels] + noise * rng.normal(size=(len(labels), dim))
    perm = rng.permutation(len(labels))  # no help from the input order
    return (x / np.linalg.norm(x, axis=1, keepdims=True))[perm].astype(np.float32), labels[perm]


# ---------------------------------------------------------------------------- library


def test_auto_recovers_well_separated_sources_exactly():
    x, y = blobs([30, 20, 12, 8, 6])
    res = cluster_embeddings(x)
    assert res.method == "agglomerative" and res.n_groups == 5
    assert adjusted_rand_score(y, res.labels) == 1.0 and not len(res.unplaced)
    assert [len(res.members(g)) for g in range(5)] == [30, 20, 12, 8, 6]  # numbered largest first
    assert 0.0 < res.distance_threshold < 1.0 and res.silhouette > 0.8


def test_forced_k_gives_k_groups():
    x, y = blobs([20, 20, 20, 20])
    two = cluster_embeddings(x, k=2, min_size=1)
    assert two.n_groups == 2 and "forced" in two.criterion
    # each forced group is a union of true sources: no source is split
    assert all(len(set(two.labels[y == s])) == 1 for s in range(4))
    assert cluster_embeddings(x, k=4).n_groups == 4
    assert adjusted_rand_score(y, cluster_embeddings(x, k=4).labels) == 1.0


def test_min_size_marks_small_groups_unplaced():
    x, y = blobs([25, 25, 25, 2])
    res = cluster_embeddings(x, min_size=5)
    assert res.n_groups == 3
    assert set(res.unplaced) == set(np.flatnonzero(y == 3))
    assert (res.labels[y == 3] == UNPLACED).all()
    keep = cluster_embeddings(x, k=4, min_size=1)
    assert keep.n_groups == 4 and not len(keep.unplaced)


def test_relabel_orders_by_size_and_drops_small_and_noise():
    out = relabel(np.array([7, 7, 3, 3, 3, -1, 9]), min_size=2)
    assert out.tolist() == [1, 1, 0, 0, 0, UNPLACED, UNPLACED]


def test_fallbacks_above_the_dense_limit():
    x, y = blobs([30, 30, 30])
    auto = cluster_embeddings(x, max_dense=50)  # 90 images > 50: no dense matrix
    assert auto.method == "hdbscan" and "exceed" in auto.criterion
    assert adjusted_rand_score(y, auto.labels) == 1.0
    forced = cluster_embeddings(x, k=3, max_dense=50)
    assert forced.method == "minibatch-kmeans" and adjusted_rand_score(y, forced.labels) == 1.0
    with pytest.raises(InputError, match="limited to 50 images"):
        cluster_embeddings(x, method="agglomerative", max_dense=50)


def test_dense_limit_is_computed_from_the_budget():
    assert dense_limit(2 * 2**30) == 16384
    assert dense_limit(8 * 100**2) == 100


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"min_size": 0}, "--min-size"), ({"k": 0}, "--k 0"), ({"k": 11}, "--k 11"), ({"method": "kmeans"}, "method")])
def test_bad_arguments_are_input_errors(kwargs, message):
    x, _ = blobs([5, 5])
    with pytest.raises(InputError, match=message):
        cluster_embeddings(x, **kwargs)


def test_tiny_inputs():
    x, _ = blobs([1, 1])
    assert cluster_embeddings(x, min_size=1).n_groups == 1
    assert cluster_embeddings(x[:1], min_size=2).n_groups == 0


def test_name_groups_nearest_model_and_threshold():
    x, y = blobs([20, 20, 20])
    res = cluster_embeddings(x)
    # enrolled: sources 0 and 1 (fingerprints from their images); source 2 is not enrolled
    fps = np.stack([x[y == s].mean(axis=0) for s in (0, 1)])
    matches = name_groups(x, res, ["alpha", "beta"], fps, threshold=0.8)
    by_source = {int(y[res.members(m.group)[0]]): m for m in matches}
    assert by_source[0].verdict == "alpha" and by_source[0].cosine > 0.99 and by_source[0].agreement == 1.0
    assert by_source[1].verdict == "beta"
    assert by_source[2].verdict == "unknown source" and by_source[2].model in ("alpha", "beta")
    assert all(m.verdict == "unknown source" and m.model is None for m in name_groups(x, res))


def test_a_group_is_named_only_when_its_images_are():
    """A group whose mean sits near a fingerprint, but whose images each score below the threshold, is unknown."""
    rng = np.random.default_rng(1)
    fp = np.zeros(64, np.float32)
    fp[0] = 1.0
    x = fp + 0.12 * rng.normal(size=(40, 64)).astype(np.float32)  # single images: cosine about 0.6
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    res = cluster_embeddings(x, k=1)
    single = (x @ fp).max()
    (m,) = name_groups(x, res, ["near"], fp[None], threshold=0.9)
    assert single < 0.9 < m.cosine  # the group mean would pass the threshold, no image does
    assert m.model == "near" and m.agreement == 0.0 and m.verdict == "unknown source"
    (m,) = name_groups(x, res, ["near"], fp[None], threshold=0.3)
    assert m.verdict == "near" and m.agreement == 1.0


def test_typical_members_are_closest_to_the_group_mean():
    x, _ = blobs([10, 10])
    res = cluster_embeddings(x, k=2)
    rows = typical_members(x, res, 0, 3)
    centre = x[res.members(0)].mean(axis=0)
    sims = x[res.members(0)] @ centre
    assert len(rows) == 3 and set(rows) <= set(res.members(0))
    assert (x[rows] @ centre).min() >= np.sort(sims)[-3] - 1e-6


# ---------------------------------------------------------------------------- CLI (tiny images, spectral)


@pytest.fixture(scope="module")
def sources_dir(tmp_path_factory):
    """ROOT/p<period>/: 3 'sources' x 6 images of 128x128 noise plus a source-specific grating."""
    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    for period in (3, 4, 6):
        d = root / f"p{period}"
        d.mkdir()
        grating = 0.05 * (np.cos(2 * np.pi * xx / period) + np.cos(2 * np.pi * yy / period))
        for i in range(6):
            img = 0.5 + 0.06 * rng.standard_normal((128, 128, 3)) + grating[..., None]
            Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(d / f"image_{i}.png")
    return root


@pytest.fixture()
def no_default_gallery(tmp_path, monkeypatch):
    monkeypatch.setenv("FPT_GALLERY", str(tmp_path / "absent.h5"))


def _truth(paths: list[str]) -> list[str]:
    return [p.split("/")[-2] for p in paths]


def test_cli_json_groups_the_periodic_models(sources_dir, no_default_gallery):
    res = invoke(["cluster", str(sources_dir), "-e", "spectral", "--grid", "1", "--min-size", "2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["images"] == 18 and out["extractor"].startswith("spectral[") and out["gallery"] is None
    assert out["clustering"]["groups"] == len(out["groups"]) == 3
    paths = [a["path"] for a in out["assignments"]]
    assert sorted(paths) == sorted(str(p) for p in sources_dir.rglob("*.png"))
    truth, pred = _truth(paths), [a["group"] for a in out["assignments"]]
    assert adjusted_rand_score(truth, [-1 if g is None else g for g in pred]) == 1.0
    for g in out["groups"]:
        assert g["size"] == len(g["members"]) == 6 and g["source"] == "unknown source"
        assert {"nearest_model", "cosine", "known", "agreement", "enrolled_as", "examples"} <= set(g)
        assert len(g["examples"]) == 3 and set(g["examples"]) <= set(g["members"])
    assert out["unplaced"] == []


def test_cli_text_forced_k_and_min_size(sources_dir, no_default_gallery):
    res = invoke(["cluster", str(sources_dir), "-e", "spectral", "--grid", "1", "--k", "3", "--min-size", "7"])
    assert res.exit_code == 0, res.output
    # three groups of 6 images, all below --min-size 7: every image unplaced, names printed whole
    assert "unplaced: 18 image(s)" in res.stdout and "group 1" not in res.stdout
    assert str(next(iter(sorted(sources_dir.rglob("*.png"))))).split("/")[-1] in res.stdout
    res = invoke(["cluster", str(sources_dir), "-e", "spectral", "--grid", "1", "--k", "2", "--min-size", "1"])
    assert res.exit_code == 0 and "group 2:" in res.stdout and "group 3:" not in res.stdout
    assert "unknown source (no gallery)" in res.stdout


def test_cli_names_groups_and_enrolls_them(sources_dir, tmp_path):
    from fpforensics.gallery import Gallery

    gal = tmp_path / "g.h5"
    add = invoke(["gallery", "add", "known0", str(sources_dir / "p3"), "--gallery", str(gal)])
    assert add.exit_code == 0, add.output
    res = invoke(["cluster", str(sources_dir), "-e", "spectral", "--grid", "1", "--min-size", "2",
                  "--gallery", str(gal), "--enroll-prefix", "found", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    named = [g for g in out["groups"] if g["source"] == "known0"]
    assert len(named) == 1 and all(p.split("/")[-2] == "p3" for p in named[0]["members"])
    assert [g["enrolled_as"] for g in out["groups"]] == ["found-1", "found-2", "found-3"]
    g = Gallery.open(gal)
    assert g.names() == ["known0", "found-1", "found-2", "found-3"]
    assert g.model("found-2").n_images == out["groups"][1]["size"]
    before = gal.read_bytes()
    again = invoke(["cluster", str(sources_dir), "-e", "spectral", "--grid", "1", "--gallery", str(gal),
                    "--enroll-prefix", "found"])
    assert again.exit_code == 2 and "already has model(s) found-1" in again.stderr
    assert gal.read_bytes() == before


def test_cli_gallery_of_another_extractor_is_refused(sources_dir, tmp_path):
    gal = tmp_path / "g.h5"
    assert invoke(["gallery", "add", "m", str(sources_dir / "p3"), "--gallery", str(gal)]).exit_code == 0
    res = invoke(["cluster", str(sources_dir), "-e", "pixels", "--gallery", str(gal)])
    assert res.exit_code == 2 and "not comparable" in res.stderr


def _one_line_error(res) -> bool:
    lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith("device:")]
    return res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in res.output


@pytest.mark.parametrize("case", ["missing", "empty", "unreadable", "min-size-0", "k-too-big", "k-0", "prefix",
                                  "threshold"])
def test_cli_bad_input_is_one_line_exit_2(case, sources_dir, tmp_path, no_default_gallery):
    folder = str(sources_dir)
    args = {
        "missing": [str(tmp_path / "nope")],
        "empty": [str(tmp_path)],
        "unreadable": [str(tmp_path / "bad")],
        "min-size-0": [folder, "--min-size", "0"],
        "k-too-big": [folder, "--k", "19"],
        "k-0": [folder, "--k", "0"],
        "prefix": [folder, "--enroll-prefix", " ", "--gallery", str(tmp_path / "g.h5")],
        "threshold": [folder, "--threshold", "1.5"],
    }[case]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    if case == "empty":
        (tmp_path / "bad" / "x.png").unlink()
        (tmp_path / "bad").rmdir()
    res = invoke(["-q", "cluster", *args, "-e", "spectral"])
    assert _one_line_error(res), (res.exit_code, res.stderr)


def test_cli_mixed_sizes_are_all_read(tmp_path, photos, no_default_gallery):
    """Images of different sizes and formats in one folder cluster fine (one group of 4 real photos)."""
    for i, p in enumerate(photos):
        Image.fromarray(p[: 150 + 10 * i, : 170]).save(tmp_path / f"p{i}.png")
    res = invoke(["cluster", str(tmp_path), "-e", "spectral", "--k", "1", "--min-size", "1", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["groups"][0]["size"] == 4


def test_cli_clusters_an_embeddings_file_like_the_images(sources_dir, tmp_path, no_default_gallery):
    emb = tmp_path / "e.h5"
    assert invoke(["embed", str(sources_dir), "--grid", "1", "-o", str(emb)]).exit_code == 0
    direct = invoke(["cluster", str(sources_dir), "-e", "spectral", "--grid", "1", "--min-size", "2", "--json"])
    cached = invoke(["cluster", "--embeddings", str(emb), "--min-size", "2", "--json"])
    assert cached.exit_code == 0, cached.output
    a, b = json.loads(direct.stdout), json.loads(cached.stdout)
    assert a["assignments"] == b["assignments"] and a["extractor"] == b["extractor"]
    both = invoke(["-q", "cluster", str(sources_dir), "--embeddings", str(emb)])
    assert _one_line_error(both) and "one of the two" in both.stderr
    npy = tmp_path / "e.npy"
    assert invoke(["embed", str(sources_dir), "--grid", "1", "-o", str(npy)]).exit_code == 0
    assert invoke(["cluster", "--embeddings", str(npy), "--min-size", "2"]).exit_code == 0
    res = invoke(["-q", "cluster", "--embeddings", str(npy), "--gallery", str(tmp_path / "g.h5"), "--enroll-prefix", "x"])
    assert _one_line_error(res) and "does not say which extractor" in res.stderr


def test_threshold_cuts_where_the_mean_cosine_falls_below_it():
    x, y = blobs([20, 20, 20], noise=0.05)
    res = cluster_embeddings(x, threshold=0.8)
    assert res.n_groups == 3 and adjusted_rand_score(y, res.labels) == 1.0 and res.distance_threshold == 0.2
    assert cluster_embeddings(x, threshold=-1.0, min_size=1).n_groups == 1  # everything merges
    with pytest.raises(InputError, match="one of --k and --threshold"):
        cluster_embeddings(x, k=2, threshold=0.5)
    with pytest.raises(InputError, match="not a cosine"):
        cluster_embeddings(x, threshold=1.5)
