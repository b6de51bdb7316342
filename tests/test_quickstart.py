"""The README quickstart must run as written: run its script end to end and check the answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fpforensics.gallery.builtin import builtin_gallery_path, open_builtin

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "quickstart.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_quickstart_script_runs_and_attributes_correctly(tmp_path):
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("FPT_GALLERY", None)
    env["HOME"] = str(tmp_path / "home")  # a new user: no gallery of their own, so identify uses the built-in one
    env["COLUMNS"] = "200"
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "built-in reference gallery" in out and "identification against 24 model(s)" in out
    assert "gallery: the built-in reference gallery (24 models" in proc.stderr + out  # said in one line
    assert "6 attributed, 0 unknown" in proc.stderr + out
    photo = SCRIPT.parent / "images" / "astronaut.png"
    ident = subprocess.run(["fpt", "-q", "identify", str(photo), "--gallery", str(builtin_gallery_path()), "--json"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert ident.returncode == 0, ident.stderr
    (answer,) = json.loads(ident.stdout)["results"]  # a real answer from the shipped gallery, right or wrong
    assert answer["ranking"][0]["model"] in open_builtin().names() and 0 < answer["best_score"] <= 1
    queries = sorted((tmp_path / "demo" / "generated" / "K1L1UdArN0So").glob("01[0-5].png"))
    ident = subprocess.run(["fpt", "-q", "identify", *map(str, queries), "--gallery", "demo/gallery.h5", "--json"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert ident.returncode == 0, ident.stderr
    answers = json.loads(ident.stdout)
    assert len(queries) == 6 and len(answers["results"]) == 6
    assert [r["prediction"] for r in answers["results"]] == ["K1L1UdArN0So"] * 6
    assert (tmp_path / "demo" / "gallery.h5").exists() and (tmp_path / "demo" / "pool.h5").exists()
    assert len(list((tmp_path / "demo" / "generated").iterdir())) == 3
    assert "0.0000" in out  # ffd of a set against itself
    demo = tmp_path / "demo" / "generated"
    verdicts = []
    for a, b in (("K1L1UdArN0So/011.png", "K1L1UdArN0So/012.png"), ("K1L1UdArN0So/011.png", "K1L1UbArN0So/011.png")):
        v = subprocess.run(["fpt", "-q", "verify", str(demo / a), str(demo / b), "--json"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert v.returncode == 0, v.stderr
        verdicts.append(json.loads(v.stdout)["verdict"])
    assert verdicts == ["same model", "different models"]  # the README's two verify lines
