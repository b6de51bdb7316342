"""An output that cannot be written is one line, naming the path and why, before any work.

Read-only folders and files are denied with chmod for a normal user and through ``os.access``
for root (who could write them anyway): fpt's check is the same ``os.access`` either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error
from helpers import invoke, write_test_pool

from fpforensics.gallery import Gallery

WORK_MARKERS = ("before training", "extractors:", "enrolled", "embedded", "real images:", "wrote")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, images):
    root = tmp_path_factory.mktemp("inputs")
    return {"images": images, "pool": write_test_pool(root / "pool.h5", seeds=(0, 1))}


def command(name: str, out: Path, inp: dict, photo_dir: Path, model_set_dir: Path) -> list[str]:
    return {
        "gallery add": ["gallery", "add", "m", str(inp["images"]), "--gallery", str(out)],
        "gallery remove": ["gallery", "remove", "m", "--gallery", str(out)],
        "gallery calibrate": ["gallery", "calibrate", "--gallery", str(out)],
        "synthesize": ["synthesize", "--arch-grid", "K1L1UnArN0So", "--seeds", "1", "--max-steps", "1", "--real",
                       str(photo_dir), "--out", str(out)],
        "train extractor": ["train", "extractor", "--pool", str(inp["pool"]), "--real", str(photo_dir), "--preset",
                            "tiny", "--epochs", "1", "--out", str(out)],
        "train denoiser": ["train", "denoiser", "--real", str(photo_dir), "--steps", "1", "--out", str(out)],
        "embed": ["embed", str(inp["images"]), "--out", str(out)],
        "eval": ["eval", str(model_set_dir), "-e", "spectral", "--shots", "2", "--repeats", "1", "--out", str(out)],
        "artifact": ["artifact", str(model_set_dir), "--real", str(photo_dir), "--space", "rgb", "--out", str(out)],
    }[name]


OUT_NAME = {"gallery add": "g.h5", "gallery remove": "g.h5", "gallery calibrate": "g.h5", "synthesize": "pool.h5",
            "train extractor": "e.pt", "train denoiser": "d.pt", "embed": "e.h5", "eval": "report",
            "artifact": "a.h5"}
NEEDS_GALLERY = {"gallery remove", "gallery calibrate"}


def make_gallery(path: Path) -> None:
    Gallery.open(path, create=True).enroll("m", np.eye(2, 8, dtype=np.float32), ["a", "b"], "X")


@pytest.mark.parametrize("name", list(OUT_NAME))
@pytest.mark.parametrize("condition", ["read-only folder", "missing folder", "folder is a file"])
def test_unwritable_output_is_one_line_before_any_work(name, condition, inputs, photo_dir, model_set_dir, tmp_path,
                                                       deny_write):
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / OUT_NAME[name]
    if name in NEEDS_GALLERY or (name == "gallery add" and condition == "read-only folder"):
        make_gallery(out)
    if condition == "missing folder":
        out = tmp_path / "missing" / OUT_NAME[name]
    elif condition == "folder is a file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / OUT_NAME[name]
    else:
        if name == "eval":
            out.mkdir()
            deny_write(out)
        else:
            deny_write(folder)
    before = sorted(p.name for p in folder.rglob("*"))
    res = invoke(["--device", "cpu", *command(name, out, inputs, photo_dir, model_set_dir)])
    why = {"read-only folder": "not writable", "missing folder": "does not exist",
           "folder is a file": "not a folder"}[condition]
    if name in NEEDS_GALLERY and condition != "read-only folder":
        why = "no gallery here"  # nothing to remove or calibrate there: an input error, still one line
    line = one_line_error(res, why)
    assert str(out) in line or str(out.parent) in line
    assert not any(marker in res.stderr + res.stdout for marker in WORK_MARKERS), res.output
    assert sorted(p.name for p in folder.rglob("*")) == before


@pytest.mark.parametrize("name", ["gallery add", "gallery remove"])
def test_read_only_gallery_file(name, inputs, photo_dir, model_set_dir, tmp_path, deny_write):
    out = tmp_path / "g.h5"
    make_gallery(out)
    before = out.read_bytes()
    deny_write(out)
    res = invoke(["--device", "cpu", *command(name, out, inputs, photo_dir, model_set_dir)])
    one_line_error(res, str(out), "file is not writable")
    assert out.read_bytes() == before


@pytest.mark.parametrize("lock", ["folder", "read-only"])
def test_lock_file_that_cannot_be_opened(lock, inputs, photo_dir, model_set_dir, tmp_path, deny_write):
    out = tmp_path / "pool.h5"
    lock_path = tmp_path / "pool.h5.lock"
    if lock == "folder":
        lock_path.mkdir()
    else:
        lock_path.write_bytes(b"")
        deny_write(lock_path)
    res = invoke(["--device", "cpu", *command("synthesize", out, inputs, photo_dir, model_set_dir)])
    one_line_error(res, str(lock_path), "lock file")
    assert "real images:" not in res.stderr and not out.exists()


@pytest.mark.parametrize("name", ["embed", "gallery add", "identify --report"])
def test_folder_where_no_file_can_be_made(name, inputs, photo_dir, model_set_dir, tmp_path, monkeypatch):
    """A read-only mount (or /proc for root) passes os.access; making a file there fails: still one line, first."""
    import errno
    import tempfile

    import fpforensics.io.store as store

    folder = tmp_path / "mount"
    folder.mkdir()
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):  # noqa: A002 (tempfile's own name)
        if dir is not None and Path(dir).resolve() == folder.resolve():
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(store.tempfile, "mkstemp", mkstemp)
    out = folder / ("r.html" if name == "identify --report" else OUT_NAME[name])
    args = (["identify", str(inputs["images"]), "--report", str(out)] if name == "identify --report"
            else command(name, out, inputs, photo_dir, model_set_dir))
    res = invoke(["--device", "cpu", *args])
    line = one_line_error(res, "cannot create files in folder", "Read-only file system")
    assert str(out) in line
    assert not any(marker in res.stderr + res.stdout for marker in (*WORK_MARKERS, "attributed"))
    assert list(folder.iterdir()) == []
