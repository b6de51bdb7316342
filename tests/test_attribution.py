"""Identification, verification, calibration, embedding files, and the embed/identify/verify CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import invoke, write_gratings

from fpforensics import Gallery, embed, load_extractor
from fpforensics.embedding.files import EmbeddingSet, load_embeddings, save_embeddings
from fpforensics.errors import IncompatibleError, InputError, OutputError
from fpforensics.gallery.calibration import best_threshold, calibrate_threshold
from fpforensics.gallery.index import ExactIndex
from fpforensics.images.decode import list_images
from fpforensics.images.folders import spread_order
from fpforensics.metrics import l2_normalize as normalize
from fpforensics.verdict.match import identify, verify

ENROLLED = (3, 4, 6)  # grating periods of the enrolled "models"
UNKNOWN = 5


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """ROOT/p<period>/img<i>.png: noise plus a model-specific periodic grating (a spectral fingerprint).

    Images 0-3 enroll, 4-5 are held out. 144 px so the 3x3 window really slides (4 distinct crops).
    """
    return write_gratings(tmp_path_factory.mktemp("gen"), (*ENROLLED, UNKNOWN), per_model=6, size=144)


@pytest.fixture(scope="module")
def spectral():
    return load_extractor("spectral", "cpu")


@pytest.fixture(scope="module")
def enrolled(models_dir, spectral) -> Gallery:
    g = Gallery()
    for p in ENROLLED:
        paths = list_images(models_dir / f"p{p}")[:4]
        e = embed(paths, spectral, grid=3)
        g.enroll(f"p{p}", e.embeddings, e.paths, spectral.identity)
    return g


def test_identify_held_out_images_and_rejects_unknown(models_dir, spectral, enrolled):
    held = [p for m in ENROLLED for p in list_images(models_dir / f"p{m}")[4:]]
    res = identify(embed(held, spectral, grid=3).embeddings, enrolled, top_k=2)
    assert res.predictions == [f"p{m}" for m in ENROLLED for _ in range(2)]
    assert res.indices.shape == (6, 2) and np.all(res.scores[:, 0] >= res.scores[:, 1])
    assert enrolled.calibration.source == "calibrated" and enrolled.calibration.info["balanced_accuracy"] == 1.0

    unknown = embed(list_images(models_dir / f"p{UNKNOWN}"), spectral, grid=3).embeddings
    res = identify(unknown, enrolled)
    assert res.predictions == [None] * 6 and np.all(res.best_scores < enrolled.threshold)
    # closed set (threshold -1): always the best model
    assert all(p is not None for p in identify(unknown, enrolled, threshold=-1.0).predictions)


def test_identify_is_the_naive_loop(tmp_path):
    rng = np.random.default_rng(0)
    fp = normalize(rng.standard_normal((50, 8)))
    names = [f"m{i}" for i in range(50)]
    q = normalize(rng.standard_normal((7, 8)))
    res = identify(q, ExactIndex(names, fp, chunk_elements=100), top_k=4)  # several chunks
    for i, query in enumerate(q):
        naive = sorted(((float(query @ f), j) for j, f in enumerate(fp)), reverse=True)[:4]
        assert [j for _, j in naive] == list(res.indices[i])
        np.testing.assert_allclose([s for s, _ in naive], res.scores[i], atol=1e-6)
    assert identify(q, (names[:3], fp[:3]), top_k=10).indices.shape == (7, 3)
    with pytest.raises(IncompatibleError, match="8-d"):
        identify(np.ones((1, 4)), (names, fp))
    with pytest.raises(InputError, match="empty"):
        identify(q, ([], np.zeros((0, 8))))


def test_verify_symmetric_and_verdict():
    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = rng.standard_normal(64), rng.standard_normal(64)
        assert verify(a, b).cosine == verify(b, a).cosine
    v = verify(np.array([1.0, 0.0]), np.array([1.0, 0.1]))
    assert v.same_model and v.cosine == pytest.approx(1 / np.sqrt(1.01)) and v.threshold == 0.81
    assert not verify(np.array([1.0, 0.0]), np.array([0.0, 1.0])).same_model
    with pytest.raises(IncompatibleError):
        verify(np.ones(3), np.ones(4))


def test_calibration_schemes():
    thr, bal = best_threshold(np.array([0.9, 0.95, 0.97]), np.array([0.3, 0.5, 0.6]))
    assert thr == pytest.approx(0.75) and bal == 1.0
    rng = np.random.default_rng(0)
    centers = normalize(rng.standard_normal((3, 32)))
    emb = normalize(np.repeat(centers, 5, axis=0) + 0.05 * rng.standard_normal((15, 32)))
    labels = np.repeat(np.arange(3), 5)
    fps = normalize(np.stack([emb[labels == i].mean(0) for i in range(3)]))
    cal = calibrate_threshold(emb, labels, fps)
    assert cal.source == "calibrated" and cal.info["genuine_pairs"] == 15 and cal.info["impostor_queries"] == 15
    assert cal.info["impostor_mean"] < cal.threshold < cal.info["genuine_mean"]
    one = calibrate_threshold(emb[:5], labels[:5], fps[:1])
    assert one.source == "single-model" and one.threshold < one.info["genuine_mean"]


def test_spread_order_and_embed_skips(models_dir, spectral, tmp_path):
    assert spread_order(10, 3) == [0, 4, 9, 1, 2, 3, 5, 6, 7, 8]
    assert sorted(spread_order(7, 3)) == list(range(7)) and spread_order(3, 0) == [0, 1, 2]
    bad = tmp_path / "a_bad.png"
    bad.write_bytes(b"broken")
    paths = [bad] + list_images(models_dir / "p3")
    skipped = []
    e = embed(paths, spectral, grid=1, limit=3, on_skip=lambda p, why: skipped.append(p))
    ok, emb = e.paths, e.embeddings
    assert len(ok) == 3 and bad not in ok and emb.shape == (3, 64) and skipped == [bad]
    assert len(e.skipped) == 1 and ok == sorted(ok)  # rows back in input order
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_embeddings_file_round_trip(tmp_path):
    emb = normalize(np.random.default_rng(0).standard_normal((3, 5)))
    data = EmbeddingSet(emb, ["a.png", "b.png", "ü.png"], "spectral[median3x3]", "spectral", 3)
    back = load_embeddings(save_embeddings(tmp_path / "e.h5", data))
    np.testing.assert_allclose(back.embeddings, emb, atol=1e-7)
    assert back.paths == data.paths and back.extractor == data.extractor and back.grid == 3
    npy = load_embeddings(save_embeddings(tmp_path / "e.npy", data))
    np.testing.assert_allclose(npy.embeddings, emb, atol=1e-7)
    with pytest.raises(OutputError, match="unknown output format"):
        save_embeddings(tmp_path / "e.txt", data)
    (tmp_path / "bad.h5").write_bytes(b"xx")
    with pytest.raises(InputError, match="not a readable HDF5"):
        load_embeddings(tmp_path / "bad.h5")


# ------------------------------------------------------------------------------------------- CLI


def test_cli_embed_h5_npy_and_bad_files(models_dir, tmp_path):
    out = tmp_path / "e.h5"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"broken")
    res = invoke(["--device", "cpu", "embed", str(models_dir / "p3"), str(bad), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "embedded 6 image(s)" in res.stdout and "skipped 1" in res.stdout and "bad.png" in res.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["fpt_format"] == "embeddings" and f["embeddings"].shape == (6, 64)
        assert f.attrs["extractor"].startswith("spectral") and int(f.attrs["grid"]) == 3
        assert f["paths"].asstr()[0].endswith("img0.png")
    res = invoke(["embed", str(models_dir / "p3" / "img0.png"), "-o", str(tmp_path / "e.npy"),
                              "--grid", "1"])
    assert res.exit_code == 0 and np.load(tmp_path / "e.npy").shape == (1, 64)
    res = invoke(["embed", str(bad), "-o", str(tmp_path / "x.h5")])
    assert res.exit_code == 2 and "bad.png" in res.stderr and len(res.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "x.h5").exists()
    res = invoke(["embed", str(models_dir / "p3"), "-o", str(tmp_path / "x.txt")])
    assert res.exit_code == 2 and "unknown output format" in res.stderr


@pytest.fixture(scope="module")
def cli_gallery(models_dir, tmp_path_factory) -> Path:
    gal = tmp_path_factory.mktemp("cligal") / "g.h5"
    for p in ENROLLED:
        res = invoke(["gallery", "add", f"p{p}", str(models_dir / f"p{p}"), "--shots", "4",
                                  "-g", str(gal)])
        assert res.exit_code == 0, res.output
    return gal


def test_cli_identify_json_csv_table(models_dir, cli_gallery):
    queries = [str(models_dir / "p4" / "img5.png"), str(models_dir / f"p{UNKNOWN}" / "img0.png")]
    res = invoke(["identify", *queries, "-g", str(cli_gallery), "--json", "-k", "2"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    preds = [r["prediction"] for r in data["results"]]
    assert preds == ["p4", None] and data["results"][1]["known"] is False
    assert [r["rank"] for r in data["results"][0]["ranking"]] == [1, 2]
    assert data["results"][0]["best_score"] >= data["threshold"] > data["results"][1]["best_score"]

    res = invoke(["identify", *queries, "-g", str(cli_gallery), "--csv", "-k", "3"])
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == 6 and rows[0]["model"] == "p4" and rows[3]["prediction"] == "unknown model"

    res = invoke(["identify", *queries, "-g", str(cli_gallery)])
    assert res.exit_code == 0 and "unknown (not" in res.stdout and "p4" in res.stdout
    assert "1 attributed, 1 unknown model" in res.stderr

    # --threshold overrides the gallery's: -1 accepts everything
    res = invoke(["identify", queries[1], "-g", str(cli_gallery), "--json", "-t", "-1"])
    assert json.loads(res.stdout)["results"][0]["prediction"] is not None


def test_cli_identify_refuses_other_extractor_and_missing_gallery(models_dir, cli_gallery, tmp_path):
    img = str(models_dir / "p3" / "img0.png")
    res = invoke(["identify", img, "-g", str(cli_gallery), "--extractor", "pixels"])
    assert res.exit_code == 2 and "'pixels32'" in res.stderr and "spectral[" in res.stderr
    res = invoke(["identify", img, "-g", str(tmp_path / "none.h5")])
    assert res.exit_code == 2 and "no gallery here yet" in res.stderr


def test_cli_verify(models_dir):
    a, b, c = (str(models_dir / p) for p in ("p3/img0.png", "p3/img5.png", "p6/img0.png"))
    ab = json.loads(invoke(["verify", a, b, "--json"]).stdout)
    ba = json.loads(invoke(["verify", b, a, "--json"]).stdout)
    assert ab["cosine"] == ba["cosine"] and ab["same_model"] and ab["threshold"] == 0.81
    assert "training-free" in ab["note"]
    res = invoke(["verify", a, c])
    assert res.exit_code == 0 and "different models" in res.stdout and "note:" in res.stdout
    res = invoke(["verify", a, c, "--threshold", "-1", "--json"])
    assert json.loads(res.stdout)["same_model"] is True and json.loads(res.stdout)["note"] is None
    folder = json.loads(invoke(["verify", str(models_dir / "p3"), a, "--json"]).stdout)
    assert folder["images"] == [6, 1] and folder["same_model"]
