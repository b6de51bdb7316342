"""`fpt artifact` end to end through the CLI: .h5, panels, cache, FDR, classifier, errors."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from PIL import Image
from typer.testing import CliRunner

from fpforensics.cli.app import app

runner = CliRunner()




def test_cli_writes_h5_and_panels(model_set_dir, real_dir, tmp_path):
    out, png, cache = tmp_path / "art.h5", tmp_path / "panels", tmp_path / "cache.h5"
    args = ["--device", "cpu", "artifact", str(model_set_dir), "--real", str(real_dir), "--space", "rgb",
            "--size", "32", "--out", str(out), "--png", str(png), "--manifold-cache", str(cache), "--fdr", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["generated_images"] == 18 and data["real_images"] == 4
    assert [m["model"] for m in data["models"]] == ["model0", "model1", "model2"]
    assert all(m["n"] == 6 and m["max_norm"] >= m["mean_norm"] > 0 for m in data["models"])
    assert data["fdr"]["classes"] == 3 and data["fdr"]["fdr"] > 0
    with h5py.File(out, "r") as f:
        assert f.attrs["fpt_format"] == "artifacts" and f.attrs["space"] == "rgb"
        assert f["artifacts"].shape == (18, 3 * 32 * 32)
        assert f["nearest_index"].shape == (18,) and f["distance"].shape == (18,)
        assert set(f["model"].asstr()[()]) == {"model0", "model1", "model2"}
        assert all(Path(p).parent == real_dir for p in f["nearest_path"].asstr()[()])
        norms = np.linalg.norm(f["artifacts"][()].astype(np.float64), axis=1)
        np.testing.assert_allclose(norms, np.sqrt(f["distance"][()]), rtol=1e-5)
    for m in ("model0", "model1", "model2"):
        panels = sorted((png / m).glob("*.png"))
        assert len(panels) == 6
        with Image.open(panels[0]) as im:
            assert im.size[0] > 3 * im.size[1] / 2  # four tiles side by side
    # Second run reuses the cache (no "real images" work) and gives the same artifacts.
    # (--overwrite: the panels of the first run are fpt's own, replaced only when asked)
    res2 = runner.invoke(app, args[:-1] + ["--out", str(tmp_path / "art2.h5"), "--overwrite"])
    assert res2.exit_code == 0, res2.output
    assert "from cache" in res2.stderr and "d_FPT" in res2.stdout and "FDR =" in res2.stdout
    assert "rgb[crop32]" in res2.stdout
    with h5py.File(out, "r") as a, h5py.File(tmp_path / "art2.h5", "r") as b:
        np.testing.assert_array_equal(a["artifacts"][()], b["artifacts"][()])


def test_cli_cache_mismatch_is_clear_error(model_set_dir, real_dir, tmp_path):
    cache = tmp_path / "cache.h5"
    base = ["artifact", str(model_set_dir), "--real", str(real_dir), "--manifold-cache", str(cache), "--size", "16"]
    assert runner.invoke(app, base + ["--space", "freq"]).exit_code == 0
    res = runner.invoke(app, base + ["--space", "rgb"])
    assert res.exit_code == 2 and "does not match" in res.stderr and "Traceback" not in res.output


def test_cli_ssl_without_weights_exit_2(model_set_dir, real_dir):
    res = runner.invoke(app, ["artifact", str(model_set_dir), "--real", str(real_dir), "--space", "ssl"])
    assert res.exit_code == 2
    assert "--space ssl needs --weights" in res.stderr and "Traceback" not in res.output


def test_cli_sl_default_says_which_extractor(model_set_dir, real_dir):
    res = runner.invoke(app, ["artifact", str(model_set_dir / "model0"), "--real", str(real_dir), "--space", "sl", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert "project's own fingerprint extractor" in data["space_note"] and data["space_identity"].startswith("sl[")
    from fpforensics.extractor import load_extractor

    ident = load_extractor("default").identity  # shown verbatim (brackets are not Rich markup)
    assert "project's own fingerprint extractor" in res.stderr and f"'{ident}'" in res.stderr.replace("\n", "")


def test_cli_train_then_apply_classifier(model_set_dir, real_dir, tmp_path):
    clf = tmp_path / "clf.pt"
    base = ["artifact", str(model_set_dir), "--real", str(real_dir), "--space", "freq", "--size", "32"]
    res = runner.invoke(app, base + ["--train-classifier", str(clf), "--json"])
    assert res.exit_code == 0, res.output
    trained = json.loads(res.stdout)["classifier_trained"]
    assert clf.exists() and 0.0 <= trained["cv_accuracy"] <= 1.0 and trained["models"] == 3
    out = tmp_path / "pred.h5"
    res = runner.invoke(app, base + ["--classifier", str(clf), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    applied = json.loads(res.stdout)["classifier_applied"]
    assert applied["known"] == 18 and applied["accuracy"] == 1.0  # its own training artifacts
    with h5py.File(out, "r") as f:
        assert f["predicted"].shape == (18,)
    # A classifier trained in another space is refused.
    res = runner.invoke(app, ["artifact", str(model_set_dir), "--real", str(real_dir), "--space", "rgb", "--size", "32",
                              "--classifier", str(clf)])
    assert res.exit_code == 2 and "trained on" in res.stderr


def test_cli_refuses_to_overwrite_foreign_file(model_set_dir, real_dir, tmp_path):
    foreign = tmp_path / "notes.h5"
    foreign.write_text("my notes")
    res = runner.invoke(app, ["artifact", str(model_set_dir), "--real", str(real_dir), "--out", str(foreign)])
    assert res.exit_code == 2 and foreign.read_text() == "my notes"
    res = runner.invoke(app, ["artifact", str(model_set_dir), "--real", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no such file" in res.stderr


def test_cli_bad_options_are_clear_errors(model_set_dir, real_dir):
    base = ["artifact", str(model_set_dir), "--real", str(real_dir)]
    for extra, msg in ((["--space", "hsv"], "unknown space"), (["--fit", "warp"], "unknown fit"),
                       (["--dtype", "int8"], "unknown --dtype")):
        res = runner.invoke(app, base + extra)
        assert res.exit_code == 2 and msg in res.stderr, (extra, res.output)
    res = runner.invoke(app, ["artifact", str(model_set_dir / "model0"), "--real", str(real_dir), "--fdr"])
    assert res.exit_code == 2 and "at least 2 models" in res.stderr
