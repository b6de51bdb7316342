"""The built-in reference gallery: shipped with the shipped extractor, its provenance, `fpt gallery list --builtin`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke, write_gratings

from fpforensics.errors import InputError
from fpforensics.gallery import Gallery
from fpforensics.gallery.builtin import Source, build, builtin_gallery_path, open_builtin

ROOT = Path(__file__).resolve().parent.parent
REBUILD = "python scripts/build_builtin_gallery.py (README, Release steps)"


def _script():
    spec = importlib.util.spec_from_file_location("build_builtin_gallery", ROOT / "scripts" / "build_builtin_gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shipped() -> Gallery:
    g = open_builtin()
    assert g is not None, f"{builtin_gallery_path()} is missing: build it with {REBUILD}"
    return g


def test_shipped_gallery_was_made_by_the_shipped_default_extractor(shipped):
    """A new default extractor cannot ship with fingerprints of the old one."""
    from fpforensics.extractor import DEFAULT_EXTRACTOR_PATH, load_extractor
    from fpforensics.images.folders import file_sha256

    assert DEFAULT_EXTRACTOR_PATH.exists()
    ext = load_extractor("default")
    assert shipped.extractor == ext.identity, f"the built-in gallery is stale: rebuild it with {REBUILD}"
    assert shipped.info["extractor_sha256"] == file_sha256(DEFAULT_EXTRACTOR_PATH), f"stale: rebuild with {REBUILD}"
    assert shipped.dim == ext.embedding_dim


def test_shipped_gallery_holds_the_24_generators_with_provenance(shipped):
    script = _script()
    assert shipped.names() == [s.name for s in script.SOURCES] and len(shipped) == 24
    assert shipped.read_only and not shipped.has_image_embeddings and shipped.threshold is not None
    for m in shipped.models(with_files=True):
        meta = m.meta
        assert m.n_images == meta["images"] == len(m.files), m.name
        assert meta["source"] and meta["origin"]["repository"] and meta["origin"]["commit"], m.name
        assert all(f.sha256 and len(f.sha256) == 64 for f in m.files), m.name
        assert all(not f.path.startswith(("/", "..")) and f.path.startswith(meta["set"] + "/" + m.name + "/")
                   for f in m.files), m.name
    assert sum(m.n_images for m in shipped.models()) == 902 + 90
    families = {}
    for name in shipped.names():
        family = shipped.model_meta(name).get("family")
        if family:
            families.setdefault(family, set()).add(name)
    assert families == {
        "CompVis-LDM": {"GLID-3-XL", "LatentDiffusion-LDM-txt2img"},
        "StyleGAN2-FFHQ1024": {"StyleGAN2-ADA_FFHQ1024_seeds", "StyleGAN2_FFHQ1024_configf_rosinality"},
        "PixArt-alpha": {"PixArt-alpha-XL-2-512", "PixArt-alpha-XL-2-1024-MS"},
        "CelebA64-DCGAN": {f"CelebA64_{g}" for g in ("BEGAN", "DRAGAN", "EBGAN", "GAN", "LSGAN", "WGAN", "WGAN_GP")},
    }
    assert shipped.model_meta("DALLE2").get("family") is None
    assert shipped.model_meta("Midjourney_Jul2022")["date_range"] == "2022-07"
    assert builtin_gallery_path().stat().st_size < 512 * 1024  # kilobytes, not megabytes


def test_shipped_gallery_is_package_data():
    text = (ROOT / "pyproject.toml").read_text()
    assert f'"weights/*{Path(builtin_gallery_path()).suffix}"' in text


def test_cli_gallery_list_builtin(shipped):
    res = invoke(["gallery", "list", "--builtin"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "built-in reference gallery" in out and "GLID-3-XL" in out and "family CompVis-LDM:" in out
    assert "family CelebA64-DCGAN:" in out and "threshold:" in out
    data = json.loads(invoke(["gallery", "list", "--builtin", "--json"]).stdout)
    assert data["builtin"] is True and data["image_embeddings"] is False and len(data["models"]) == 24
    glid = next(m for m in data["models"] if m["name"] == "GLID-3-XL")
    assert glid["meta"]["family"] == "CompVis-LDM" and len(glid["files"]) == 80
    assert {"path", "sha256", "added", "tool_version"} <= set(glid["files"][0])
    res = invoke(["gallery", "show", "Qwen-Image", "--builtin"])
    assert res.exit_code == 0 and "WaveSpeed" in res.stdout and "modern/Qwen-Image/" in res.stdout
    res = invoke(["gallery", "list", "--builtin", "--gallery", "x.h5"])
    assert res.exit_code == 2 and "one of --builtin and --gallery" in res.stderr
    res = invoke(["gallery", "calibrate", "--gallery", str(builtin_gallery_path()), "--set", "0.5"])
    assert res.exit_code == 2 and "fingerprints only" in res.stderr


def test_no_builtin_gallery_is_none(monkeypatch, tmp_path):
    from fpforensics.gallery import builtin

    monkeypatch.setattr(builtin, "builtin_gallery_path", lambda: tmp_path / "none.db")
    assert builtin.open_builtin() is None
    res = invoke(["gallery", "list", "--builtin"])
    assert res.exit_code == 2 and "no built-in gallery" in res.stderr


def test_provenance_table_follows_sources_md():
    """Every source of the build script names its folder, repository and commit; families as SOURCES.md says."""
    script = _script()
    names = [s.name for s in script.SOURCES]
    assert len(names) == len(set(names)) == 24
    assert sum(s.expected_images for s in script.SOURCES) == 992
    for s in script.SOURCES:
        assert s.folder == f"{s.meta['set']}/{s.name}" and s.meta["set"] in ("generated", "modern")
        assert len(s.meta["origin"]["commit"]) == 40
        if "family" in s.meta:
            assert s.meta["family_note"]
    sources_md = ROOT.parent / "shared" / "data" / "SOURCES.md"
    if sources_md.exists():  # the data stays outside the repository
        text = sources_md.read_text()
        for s in script.SOURCES:
            assert s.meta["origin"]["commit"] in text, s.name


def test_build_embeds_every_image_exports_relative_paths_and_resumes(tmp_path):
    data = tmp_path / "data"
    (data / "generated").mkdir(parents=True)
    write_gratings(data / "generated", (3, 4, 6), per_model=4, size=128)
    sources = [Source(f"p{p}", f"generated/p{p}", {"source": f"grating {p}", "family": "g" if p < 6 else None}, 4)
               for p in (3, 4, 6)]
    seen = []
    out, work = tmp_path / "built.db", tmp_path / "work.db"
    g = build(sources, data, out, "spectral", work, {"kind": "test"}, "cpu",
              on_model=lambda *a: seen.append(a), grid=1)
    assert g.read_only and g.names() == ["p3", "p4", "p6"] and [m.n_images for m in g.models()] == [4, 4, 4]
    assert g.model("p4").paths == [f"generated/p4/img{i}.png" for i in range(4)] and g.info == {"kind": "test"}
    assert g.model_meta("p3")["family"] == "g" and seen == [("p3", 4, False), ("p4", 4, False), ("p6", 4, False)]
    full = Gallery.open(work)
    np.testing.assert_allclose(g.fingerprints()[1], full.fingerprints()[1])
    assert g.threshold == pytest.approx(full.threshold)
    seen.clear()
    sources[0] = Source("p3", "generated/p3", {"source": "changed"}, 4)
    again = build(sources, data, out, "spectral", work, None, "cpu", on_model=lambda *a: seen.append(a), grid=1)
    assert [r for _, _, r in seen] == [True, True, True] and again.model_meta("p3") == {"source": "changed"}
    with pytest.raises(InputError, match="provenance says 5"):
        build([Source("p3", "generated/p3", {}, 5)], data, out, "spectral", work, device="cpu", grid=1)
    with pytest.raises(InputError, match="no such folder"):
        build([Source("x", "generated/x", {})], data, out, "spectral", work, device="cpu", grid=1)
    with pytest.raises(InputError, match="not 'pixels"):
        build(sources, data, out, "pixels", work, device="cpu", grid=1)
