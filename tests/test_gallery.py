"""The HDF5 gallery: round trip, enrollment semantics, compatibility, corruption, concurrency, CLI."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import invoke, write_gratings

from fpforensics.errors import IncompatibleError, InputError
from fpforensics.gallery import Gallery, default_gallery_path
from fpforensics.gallery.calibration import PAPER_THRESHOLD
from fpforensics.gallery.store import GalleryStore
from fpforensics.metrics import l2_normalize as normalize

D = 16


def _emb(seed: int, n: int, center: np.ndarray | None = None, spread: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = center if center is not None else rng.standard_normal(D)
    return normalize(c + spread * rng.standard_normal((n, D)))


def _paths(name: str, n: int) -> list[str]:
    return [f"/data/{name}/img{i}.png" for i in range(n)]


def test_round_trip_and_fingerprint(tmp_path):
    path = tmp_path / "g.h5"
    g = Gallery.open(path, create=True)
    a, b = _emb(1, 4), _emb(2, 3)
    g.enroll("sdxl", a, _paths("sdxl", 4), "ext-A", grid=3, extractor_spec="spectral")
    g.enroll("midjourney/v5", b, _paths("mj", 3), "ext-A")  # '/' in a name is fine (flat layout)

    again = Gallery.open(path)
    names, fp = again.fingerprints()
    assert names == ["sdxl", "midjourney/v5"]
    np.testing.assert_allclose(fp[0], normalize(a.mean(axis=0)), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(fp, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(again.embeddings("midjourney/v5"), b, atol=1e-6)
    m = again.model("sdxl")
    assert m.n_images == 4 and m.paths == _paths("sdxl", 4) and m.extractor == "ext-A" and m.grid == 3
    assert m.created.endswith("+00:00") and m.tool_version
    assert again.extractor == "ext-A" and again.dim == D and again.extractor_spec == "spectral"
    assert again.threshold == pytest.approx(g.threshold) and again.calibration.source == "calibrated"
    store = GalleryStore.open(path)
    rows = dict(store.conn.execute("SELECT key, value FROM meta").fetchall())
    assert rows["fpt_format"] == "gallery" and int(rows["fpt_format_version"]) == 3
    assert store.fingerprints(D)[2].shape == (2, D) and store.count_images() == 7


def test_append_replace_remove(tmp_path):
    g = Gallery.open(tmp_path / "g.h5", create=True)
    g.enroll("a", _emb(1, 3), _paths("a", 3), "X")
    g.enroll("b", _emb(2, 2), _paths("b", 2), "X")
    g.enroll("a", _emb(3, 2), ["/new/1.png", "/new/2.png"], "X")
    assert g.model("a").n_images == 5
    np.testing.assert_allclose(g.fingerprints()[1][0], normalize(g.embeddings("a").mean(axis=0)), atol=1e-6)
    g.enroll("a", _emb(4, 2), ["/r/1.png", "/r/2.png"], "X", replace=True)
    assert Gallery.open(g.path).model("a").paths == ["/r/1.png", "/r/2.png"]
    removed = g.remove("a")
    assert removed.n_images == 2
    reread = Gallery.open(g.path)
    assert reread.names() == ["b"] and reread.model("b").n_images == 2
    assert reread.calibration.source == "single-model"
    with pytest.raises(InputError, match="no model named 'bb'.*did you mean 'b'"):
        reread.remove("bb")


def test_threshold_sources_and_manual_override(tmp_path):
    g = Gallery.open(tmp_path / "g.h5", create=True)
    g.enroll("one", _emb(1, 1), _paths("one", 1), "X")
    assert g.calibration.source == "default" and g.threshold == PAPER_THRESHOLD
    g.enroll("two", _emb(2, 1), _paths("two", 1), "X")
    assert g.calibration.source == "default"  # no model has 2 images: nothing to measure
    g.enroll("one", _emb(3, 3), _paths("one3", 3), "X")
    assert g.calibration.source == "calibrated"
    cal = g.calibrate(0.5)
    assert cal.source == "manual" and cal.threshold == 0.5
    g.enroll("three", _emb(4, 3), _paths("three", 3), "X")
    assert Gallery.open(g.path).threshold == 0.5  # a hand-set threshold survives enrollment
    assert g.calibrate().source == "calibrated"
    with pytest.raises(InputError, match="not a cosine"):
        g.calibrate(1.5)


def test_extractor_and_dim_mismatch_refused(tmp_path):
    g = Gallery.open(tmp_path / "g.h5", create=True)
    g.enroll("a", _emb(1, 2), _paths("a", 2), "spectral[median3x3]", extractor_spec="spectral")
    before = (tmp_path / "g.h5").read_bytes()
    with pytest.raises(IncompatibleError, match=r"spectral\[median3x3\].*pixels32.*--extractor spectral"):
        g.enroll("b", _emb(2, 2), _paths("b", 2), "pixels32")
    with pytest.raises(IncompatibleError, match="16-d.*8-d"):
        g.enroll("b", normalize(np.ones((2, 8))), _paths("b", 2), "spectral[median3x3]")
    assert (tmp_path / "g.h5").read_bytes() == before
    g.remove("a")  # an empty gallery takes the extractor of its next model
    g.enroll("b", _emb(2, 2), _paths("b", 2), "pixels32")
    assert Gallery.open(g.path).extractor == "pixels32"


@pytest.mark.parametrize("content", ["garbage", "truncated", "foreign"])
def test_corrupt_gallery_clear_error_and_untouched(tmp_path, content):
    path = tmp_path / "g.h5"
    if content == "garbage":
        path.write_bytes(b"this is not HDF5 at all" * 10)
    elif content == "truncated":
        Gallery.open(path, create=True).enroll("a", _emb(1, 3), _paths("a", 3), "X")
        path.write_bytes(path.read_bytes()[:1500])
    else:
        with h5py.File(path, "w") as f:
            f["x"] = np.arange(3)
    before = path.read_bytes()
    with pytest.raises((InputError, IncompatibleError)) as exc:
        Gallery.open(path)
    assert str(path) in str(exc.value)
    with pytest.raises((InputError, IncompatibleError)):
        Gallery(path).enroll("b", _emb(2, 2), _paths("b", 2), "X")
    res = invoke(["gallery", "list", "--gallery", str(path)])
    assert res.exit_code == 2 and "error:" in res.stderr and "Traceback" not in res.output
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".g.h5.*.tmp"))  # no temp file left behind


def _enroll_many(path: str, prefix: str, n: int, barrier) -> None:
    barrier.wait()
    for i in range(n):
        Gallery(path).enroll(f"{prefix}{i}", _emb(hash((prefix, i)) % 1000, 3), _paths(prefix, 3), "X")


def test_concurrent_adds_from_two_processes_all_land(tmp_path):
    path = tmp_path / "g.h5"
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_enroll_many, args=(str(path), p, 6, barrier)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    g = Gallery.open(path)
    assert sorted(g.names()) == sorted([f"a{i}" for i in range(6)] + [f"b{i}" for i in range(6)])
    assert sum(m.n_images for m in g.models()) == 36
    assert not list(tmp_path.glob(".g.h5.*.tmp"))


def test_default_gallery_path(monkeypatch, tmp_path):
    monkeypatch.setenv("FPT_GALLERY", str(tmp_path / "x.h5"))
    assert default_gallery_path() == tmp_path / "x.h5"
    monkeypatch.delenv("FPT_GALLERY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_gallery_path() == tmp_path / "data" / "fpforensics" / "gallery.h5"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_gallery_path() == Path.home() / ".local" / "share" / "fpforensics" / "gallery.h5"


# ------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def pattern_dirs(tmp_path_factory) -> Path:
    """Folders of 128x128 'generated' images: noise plus a model-specific periodic grating."""
    return write_gratings(tmp_path_factory.mktemp("patterns"), (3, 4, 6, 5), per_model=4, size=128)


def test_cli_gallery_add_list_show_remove_calibrate(pattern_dirs, tmp_path, monkeypatch):
    gal = tmp_path / "sub" / "gallery.h5"
    monkeypatch.setenv("FPT_GALLERY", str(gal))  # the env var picks the file when --gallery is absent
    (tmp_path / "sub").mkdir()
    res = invoke(["--device", "cpu", "gallery", "add", "p3", str(pattern_dirs / "p3"), "--shots", "3"])
    assert res.exit_code == 0, res.output
    assert "enrolled 'p3': 3 of 4 image(s)" in res.stdout and gal.exists()
    res = invoke(["gallery", "add", "p4", str(pattern_dirs / "p4"), "--gallery", str(gal), "--json"])
    data = json.loads(res.stdout)
    assert data["enrolled"] == 4 and data["models"] == 2 and data["threshold_source"] == "calibrated"

    res = invoke(["gallery", "list"])
    assert res.exit_code == 0 and "p3" in res.stdout and "p4" in res.stdout and "threshold" in res.stdout
    data = json.loads(invoke(["gallery", "list", "--json"]).stdout)
    assert [m["name"] for m in data["models"]] == ["p3", "p4"] and data["models"][0]["images"] == 3
    assert data["extractor"].startswith("spectral")

    res = invoke(["gallery", "show", "p3", "--json"])
    shown = json.loads(res.stdout)
    assert shown["images"] == 3 and all(p.endswith(".png") for p in shown["paths"])
    res = invoke(["gallery", "show", "p9"])
    assert res.exit_code == 2 and "no model named 'p9'" in res.stderr

    res = invoke(["gallery", "calibrate", "--set", "0.6"])
    assert res.exit_code == 0 and "0.6000 (manual)" in res.stdout
    res = invoke(["gallery", "calibrate", "--json"])
    assert json.loads(res.stdout)["source"] == "calibrated"

    res = invoke(["gallery", "add", "p3", str(pattern_dirs / "p3"), "--replace", "--shots", "0"])
    assert res.exit_code == 0 and "model now has 4 image(s)" in res.stdout
    res = invoke(["gallery", "remove", "p3"])
    assert res.exit_code == 0 and "1 model(s) left" in res.stdout
    assert Gallery.open(gal).names() == ["p4"]


def test_cli_gallery_add_other_extractor_refused_untouched(pattern_dirs, tmp_path):
    gal = tmp_path / "g.h5"
    assert invoke(["gallery", "add", "p3", str(pattern_dirs / "p3"), "-g", str(gal)]).exit_code == 0
    before = gal.read_bytes()
    res = invoke(["gallery", "add", "p4", str(pattern_dirs / "p4"), "-g", str(gal), "-e", "pixels"])
    assert res.exit_code == 2 and "'pixels32'" in res.stderr and "spectral[" in res.stderr  # both named, verbatim
    assert gal.read_bytes() == before


def test_cli_gallery_list_missing_and_bad_single_file(pattern_dirs, tmp_path):
    res = invoke(["gallery", "list", "-g", str(tmp_path / "none.h5")])
    assert res.exit_code == 0 and "no models enrolled" in res.stdout
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    res = invoke(["gallery", "add", "x", str(bad), "-g", str(tmp_path / "g.h5")])
    assert res.exit_code == 2 and "bad.png" in res.stderr and not (tmp_path / "g.h5").exists()


def test_cli_two_gallery_add_processes_at_once(pattern_dirs, tmp_path):
    """Two real `fpt gallery add` processes on one gallery: both models land, file stays valid."""
    import subprocess
    import sys

    gal = tmp_path / "g.h5"
    cmds = [[sys.executable, "-m", "fpforensics.cli.app", "-q", "--device", "cpu", "gallery", "add", name,
             str(pattern_dirs / name), "-g", str(gal), "--grid", "1", "-e", "spectral"] for name in ("p3", "p4", "p6")]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    g = Gallery.open(gal)
    assert sorted(g.names()) == ["p3", "p4", "p6"] and all(m.n_images == 4 for m in g.models())


def test_cli_default_gallery_in_xdg_data_home(pattern_dirs, tmp_path, monkeypatch):
    monkeypatch.delenv("FPT_GALLERY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    res = invoke(["gallery", "add", "p3", str(pattern_dirs / "p3"), "--grid", "1"])
    assert res.exit_code == 0, res.output
    assert Gallery.open(tmp_path / "xdg" / "fpforensics" / "gallery.h5").names() == ["p3"]


# ------------------------------------------------------------------------------------------- format v1 and scale


def _v1_gallery(path: Path) -> None:
    """A gallery as fpt wrote it before format v2 (HDF5, rewritten whole on every change)."""
    from fpforensics.gallery.legacy import GalleryData, write_gallery_file

    a, b = _emb(1, 3), _emb(2, 2)
    emb = np.vstack([a, b])
    fps = normalize(np.stack([a.mean(0), b.mean(0)]))
    write_gallery_file(path, GalleryData(
        extractor="ext-A", extractor_spec="spectral", dim=D, names=["a", "b"], fingerprints=fps,
        created=["2025-01-01T00:00:00+00:00"] * 2, updated=["2025-01-02T00:00:00+00:00"] * 2,
        tool_versions=["0.0.9"] * 2, grids=[3, 1], embeddings=emb, image_model=np.array([0, 0, 0, 1, 1], np.int32),
        image_paths=_paths("a", 3) + _paths("b", 2), image_added=["2025-01-01T00:00:00+00:00"] * 5,
        threshold=0.42, threshold_source="manual", threshold_info={"method": "set by hand"},
        file_created="2025-01-01T00:00:00+00:00", file_updated="2025-01-02T00:00:00+00:00"))


def test_v1_gallery_is_read_as_is_and_migrated_by_its_first_change(tmp_path):
    path = tmp_path / "old.h5"
    _v1_gallery(path)
    before = path.read_bytes()
    g = Gallery.open(path)
    assert g.names() == ["a", "b"] and g.threshold == 0.42 and g.model("b").grid == 1
    assert g.model("a").tool_version == "0.0.9" and g.embeddings("a").shape == (3, D)
    res = invoke(["gallery", "list", "-g", str(path), "--json"])
    assert res.exit_code == 0 and [m["name"] for m in json.loads(res.stdout)["models"]] == ["a", "b"]
    assert path.read_bytes() == before  # reading never rewrites
    with pytest.raises(IncompatibleError):
        g.enroll("c", _emb(3, 2), _paths("c", 2), "ext-B")
    assert path.read_bytes() == before  # a refused change does not migrate either
    g.enroll("c", _emb(3, 2), _paths("c", 2), "ext-A")
    assert path.read_bytes()[:16] == b"SQLite format 3\x00"
    again = Gallery.open(path)
    assert again.names() == ["a", "b", "c"] and again.threshold == 0.42 and again.model("a").created.startswith("2025")
    np.testing.assert_allclose(again.fingerprints()[1][:2], Gallery.open(path).fingerprints()[1][:2])
    assert not list(tmp_path.glob(".old.h5.*"))


def test_calibration_of_a_large_gallery_reads_a_sample(tmp_path, monkeypatch):
    """Above MAX images the threshold comes from a fixed sample; below it, from every image (as before)."""
    from fpforensics.gallery.calibration import calibrate_threshold
    from fpforensics.gallery.gallery import calibrate_store

    g = Gallery(tmp_path / "g.h5")
    rng = np.random.default_rng(0)
    centers = normalize(rng.standard_normal((12, D)))
    for m in range(12):
        g.enroll(f"m{m}", normalize(centers[m] + 0.3 * rng.standard_normal((5, D))), _paths(f"m{m}", 5), "X")
    store = g._reader()
    full = calibrate_store(store, D)
    emb = np.vstack([g.embeddings(f"m{m}") for m in range(12)])
    exact = calibrate_threshold(emb, np.repeat(np.arange(12), 5), g.fingerprints()[1])
    assert full.threshold == pytest.approx(exact.threshold) and "sampled_images" not in full.info
    sampled = calibrate_store(store, D, max_images=20)
    assert sampled.info["sampled_images"] == 20 and sampled.info["genuine_pairs"] == 20
    assert abs(sampled.threshold - full.threshold) < 0.2
    assert sampled.threshold == calibrate_store(store, D, max_images=20).threshold  # a fixed sample


def test_index_blocks_follow_adds_updates_and_removals(monkeypatch):
    from fpforensics.gallery import store as store_module

    monkeypatch.setattr(store_module, "BLOCK", 4)  # several blocks with a few models
    g = Gallery()
    embs = {f"m{i}": _emb(i, 2) for i in range(10)}
    for name, e in embs.items():
        g.enroll(name, e, _paths(name, 2), "X")
    g.enroll("m3", _emb(99, 3), _paths("m3b", 3), "X")  # an update rewrites one block in place
    embs["m3"] = np.vstack([embs["m3"], _emb(99, 3)])
    for name in ("m0", "m5", "m6", "m7", "m8"):  # enough removals to compact the blocks
        g.remove(name)
        del embs[name]
    names, fp = g.fingerprints()
    assert names == list(embs) == g.names()
    for name, vec in zip(names, fp, strict=True):
        np.testing.assert_allclose(vec, normalize(embs[name].mean(axis=0)), atol=1e-6)
    slots = g._reader().conn.execute("SELECT SUM(LENGTH(ids)) / 8 FROM fingerprints").fetchone()[0]
    assert slots == len(names)  # compacted: no free slot left
    g.enroll("m10", _emb(10, 2), _paths("m10", 2), "X")
    assert g.fingerprints()[0][-1] == "m10"


def test_threshold_of_a_large_gallery_is_recalibrated_after_one_percent_changed():
    from fpforensics.gallery.gallery import RECALIBRATE_SHARE

    assert RECALIBRATE_SHARE == 0.01
    g = Gallery()
    for i in range(150):
        g.enroll(f"m{i}", _emb(i, 2), _paths(f"m{i}", 2), "X")
    assert g.calibration.info["genuine_pairs"] == 300
    g.enroll("late", _emb(1000, 2), _paths("late", 2), "X")  # 1 change of 151 models: below 1%, kept
    assert g.calibration.info["genuine_pairs"] == 300 and g.meta.pending == 1
    g.enroll("later", _emb(1001, 2), _paths("later", 2), "X")  # 2 changes >= 1.52: recomputed
    assert g.calibration.info["genuine_pairs"] == 304 and g.meta.pending == 0
    g.enroll("last", _emb(1002, 2), _paths("last", 2), "X")
    assert g.meta.pending == 1 and g.calibrate().source == "calibrated" and g.meta.pending == 0


# ------------------------------------------------------------------------------------------- format v3: provenance


def test_model_meta_and_file_hashes_are_recorded(tmp_path, pattern_dirs):
    import hashlib

    from fpforensics import __version__

    files = sorted((pattern_dirs / "p3").glob("*.png"))
    g = Gallery.open(tmp_path / "g.h5", create=True)
    g.enroll("p3", _emb(1, len(files)), files, "X", meta={"family": "gratings", "source": "tests", "images": 4})
    g.enroll("other", _emb(2, 2), _paths("other", 2), "X")  # no such files: no hash, no meta
    again = Gallery.open(tmp_path / "g.h5")
    assert again.model_meta("p3") == {"family": "gratings", "source": "tests", "images": 4}
    assert again.model_meta("other") == {} and again.model("p3").family == "gratings"
    m = again.model("p3")
    assert [f.sha256 for f in m.files] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in files]
    assert [f.path for f in m.files] == [str(p) for p in files] and {f.tool_version for f in m.files} == {__version__}
    assert [f.sha256 for f in again.model("other").files] == [None, None]
    g.enroll("p3", _emb(3, 1), files[:1], "X")  # appending without meta keeps it
    assert again.model_meta("p3")["family"] == "gratings"
    g.set_model_meta("p3", {"family": "renamed"})
    assert again.model_meta("p3") == {"family": "renamed"}
    with pytest.raises(InputError, match="meta must be"):
        g.enroll("bad", _emb(4, 1), _paths("bad", 1), "X", meta={"x": object()})
    with pytest.raises(InputError, match="no model named"):
        g.model_meta("nope")


def test_cli_gallery_list_json_shows_the_files_that_built_each_fingerprint(pattern_dirs, tmp_path):
    import hashlib

    gal = tmp_path / "g.h5"
    assert invoke(["gallery", "add", "p3", str(pattern_dirs / "p3"), "-g", str(gal), "--shots", "2"]).exit_code == 0
    data = json.loads(invoke(["gallery", "list", "-g", str(gal), "--json"]).stdout)
    (m,) = data["models"]
    assert data["builtin"] is False and data["image_embeddings"] is True and m["meta"] == {}
    assert len(m["files"]) == 2
    for f in m["files"]:
        assert f["sha256"] == hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest() and f["added"] and f["tool_version"]
    shown = invoke(["gallery", "show", "p3", "-g", str(gal)])
    assert shown.exit_code == 0 and m["files"][0]["sha256"] in shown.stdout


V2_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL, updated TEXT NOT NULL,
                     tool_version TEXT NOT NULL, grid INTEGER NOT NULL, n_images INTEGER NOT NULL,
                     block INTEGER, slot INTEGER, sum BLOB NOT NULL);
CREATE TABLE images (id INTEGER PRIMARY KEY, model_id INTEGER NOT NULL REFERENCES models(id), path TEXT NOT NULL,
                     added TEXT NOT NULL, embedding BLOB NOT NULL);
CREATE INDEX images_by_model ON images(model_id, id);
CREATE TABLE fingerprints (block INTEGER PRIMARY KEY, ids BLOB NOT NULL, names TEXT NOT NULL, vectors BLOB NOT NULL);
"""


def _v2_gallery(path: Path) -> np.ndarray:
    """A gallery as fpt wrote format v2 (before per-model meta and per-image hashes): model 'a', 3 images."""
    import sqlite3

    a = _emb(1, 3)
    conn = sqlite3.connect(path)
    conn.executescript(V2_SCHEMA)
    now = "2025-06-01T00:00:00+00:00"
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("fpt_format", "gallery"), ("fpt_format_version", "2"), ("tool_version", "0.0.9"), ("extractor", "ext-A"),
        ("extractor_spec", ""), ("embedding_dim", str(D)), ("threshold", "0.5"), ("threshold_source", "manual"),
        ("threshold_info", "{}"), ("threshold_pending", "0"), ("created", now), ("updated", now)])
    total = a.astype(np.float64).sum(0)
    conn.execute("INSERT INTO models VALUES (1, 'a', ?, ?, '0.0.9', 3, 3, 0, 0, ?)", (now, now, total.tobytes()))
    conn.executemany("INSERT INTO images (model_id, path, added, embedding) VALUES (1, ?, ?, ?)",
                     [(p, now, e.astype(np.float32).tobytes()) for p, e in zip(_paths("a", 3), a, strict=True)])
    conn.execute("INSERT INTO fingerprints VALUES (0, ?, '[\"a\"]', ?)",
                 (np.array([1], np.int64).tobytes(), normalize(total).astype(np.float32).tobytes()))
    conn.commit()
    conn.close()
    return a


def test_v2_gallery_is_read_as_is_and_upgraded_by_its_first_change(tmp_path):
    path = tmp_path / "v2.h5"
    a = _v2_gallery(path)
    before = path.read_bytes()
    g = Gallery.open(path)
    assert g.names() == ["a"] and g.model_meta("a") == {} and g.threshold == 0.5
    assert [f.sha256 for f in g.model("a").files] == [None] * 3 and g.model("a").paths == _paths("a", 3)
    np.testing.assert_allclose(g.embeddings("a"), a, atol=1e-6)
    assert json.loads(invoke(["gallery", "list", "-g", str(path), "--json"]).stdout)["models"][0]["files"][0]["sha256"] \
        is None
    assert path.read_bytes() == before  # reading never rewrites
    g.enroll("b", _emb(2, 2), _paths("b", 2), "ext-A", meta={"family": "f"})
    store = GalleryStore.open(path)
    assert dict(store.conn.execute("SELECT key, value FROM meta").fetchall())["fpt_format_version"] == "3"
    again = Gallery.open(path)
    assert again.names() == ["a", "b"] and again.model_meta("b") == {"family": "f"} and again.model_meta("a") == {}
    assert again.model("a").created == "2025-06-01T00:00:00+00:00"


def test_a_newer_format_is_refused_clearly(tmp_path):
    path = tmp_path / "g.h5"
    Gallery.open(path, create=True).enroll("a", _emb(1, 2), _paths("a", 2), "X")
    store = GalleryStore.open(path)
    store.conn.execute("UPDATE meta SET value = '9' WHERE key = 'fpt_format_version'")
    store.close()
    with pytest.raises(IncompatibleError, match="v9 is newer than this fpt reads"):
        Gallery.open(path)


def test_export_fingerprints_ships_no_embeddings_and_cannot_be_changed(tmp_path, pattern_dirs):
    from fpforensics.verdict.match import identify

    root = pattern_dirs
    g = Gallery.open(tmp_path / "full.h5", create=True)
    for name in ("p3", "p4", "p6"):
        files = sorted((root / name).glob("*.png"))
        g.enroll(name, _emb(hash(name) % 100, len(files)), files, "ext-A", meta={"family": "gratings"})
    out = tmp_path / "ship.db"
    shipped = g.export_fingerprints(out, relative_to=root, info={"kind": "test"})
    assert shipped.read_only and not shipped.has_image_embeddings and shipped.info == {"kind": "test"}
    assert shipped.names() == g.names() and shipped.threshold == pytest.approx(g.threshold)
    np.testing.assert_array_equal(shipped.fingerprints()[1], g.fingerprints()[1])
    m = shipped.model("p4")
    assert m.n_images == 4 and m.meta == {"family": "gratings"} and m.paths == [f"p4/img{i}.png" for i in range(4)]
    assert [f.sha256 for f in m.files] == [f.sha256 for f in g.model("p4").files]
    blobs = shipped._reader().conn.execute("SELECT COUNT(*) FROM images WHERE embedding IS NOT NULL").fetchone()[0]
    assert blobs == 0
    q = g.embeddings("p6")
    assert identify(q, shipped).predictions == identify(q, g).predictions
    before = out.read_bytes()
    for change in (lambda x: x.enroll("new", _emb(7, 2), _paths("new", 2), "ext-A"), lambda x: x.remove("p3"),
                   lambda x: x.calibrate(), lambda x: x.set_model_meta("p3", {}), lambda x: x.embeddings("p3")):
        with pytest.raises(InputError, match="read-only|fingerprints only"):
            change(shipped)
        with pytest.raises(InputError, match="fingerprints only"):  # a writable copy refuses changes too
            change(Gallery.open(out))
    assert out.read_bytes() == before
    with pytest.raises(InputError, match="not inside"):
        g.export_fingerprints(tmp_path / "elsewhere.db", relative_to=root / "p3")
    assert not (tmp_path / "elsewhere.db").exists()
    res = invoke(["gallery", "add", "x", str(root / "p3"), "-g", str(out)])
    assert res.exit_code == 2 and "fingerprints only" in res.stderr and out.read_bytes() == before


def test_read_only_gallery_refuses_changes_before_any_work(tmp_path):
    path = tmp_path / "g.h5"
    Gallery.open(path, create=True).enroll("a", _emb(1, 2), _paths("a", 2), "X")
    before = path.read_bytes()
    ro = Gallery.open(path, read_only=True)
    assert ro.names() == ["a"]
    with pytest.raises(InputError, match="read-only"):
        ro.enroll("b", _emb(2, 2), _paths("b", 2), "X")
    with pytest.raises(InputError, match="read-only"):
        ro.add("b", [str(tmp_path / "missing")])  # refused before the inputs are even looked at
    with pytest.raises(InputError, match="no gallery here"):
        Gallery.open(tmp_path / "none.db", create=True, read_only=True)
    assert path.read_bytes() == before
