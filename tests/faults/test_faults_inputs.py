"""Bad inputs: every failure is one clear line and never stops a batch.

Decompression bombs, 32-bit float TIFFs, file names that could act on a terminal or a
spreadsheet (or are not UTF-8), symlinked subfolders and their cycles. The inputs the suite
already covered elsewhere (corrupt, empty, truncated and non-image files, malicious pickles,
foreign and truncated galleries, pools and checkpoints) are listed, with their tests, in
docs/faults.md.
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import one_line_error, run_fpt, write_noise_images
from helpers import invoke, runner
from PIL import Image

from fpforensics.cli.app import app
from fpforensics.errors import InputError
from fpforensics.images.decode import list_images, load_image, pixel_limit, set_pixel_limit


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width`` x ``height`` pixels in a few bytes: a decompression bomb for the decoder."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


# ---------------------------------------------------------------------------------------- bombs


@pytest.mark.parametrize("side", [10_000, 30_000])  # above Pillow's limit (a warning), and above twice it (an error)
def test_a_decompression_bomb_is_one_line(tmp_path, side):
    bomb = png_header(tmp_path / "bomb.png", side, side)
    with pytest.raises(InputError, match="--max-image-pixels") as exc:
        load_image(bomb)
    assert str(bomb) in str(exc.value) and f"{side * side:,} pixels" in str(exc.value)


def test_a_bomb_in_a_batch_is_skipped_by_name_and_the_batch_goes_on(tmp_path):
    folder = write_noise_images(tmp_path / "imgs", n=3)
    bomb = png_header(folder / "bomb.png", 30_000, 30_000)
    res = invoke(["--device", "cpu", "embed", str(folder), "--out", str(tmp_path / "e.h5")])
    assert res.exit_code == 0, res.output
    assert f"warning: skipped {bomb}: 900,000,000 pixels" in res.stderr
    assert "embedded 3 image(s)" in res.stdout


def test_the_pixel_limit_is_an_option(tmp_path):
    folder = write_noise_images(tmp_path / "imgs", n=2, size=140)
    write_noise_images(folder, n=1, size=40, prefix="small")
    res = invoke(["--device", "cpu", "--max-image-pixels", "2000", "embed", str(folder), "--out",
                  str(tmp_path / "e.h5")])
    assert res.exit_code == 0, res.output
    assert res.stderr.count("more than the limit of 2,000 (--max-image-pixels)") == 2
    assert "embedded 1 image(s)" in res.stdout
    assert pixel_limit() == Image.MAX_IMAGE_PIXELS
    res = invoke(["--device", "cpu", "embed", str(folder), "--out", str(tmp_path / "f.h5")])  # back to Pillow's
    assert res.exit_code == 0 and "embedded 3 image(s)" in res.stdout
    set_pixel_limit(0)
    try:
        assert pixel_limit() is None
    finally:
        set_pixel_limit(89478485)


# ------------------------------------------------------------------------------------ float TIFF


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_float_tiff_decodes_on_its_nominal_scale(tmp_path, scale):
    rng = np.random.default_rng(0)
    arr = rng.random((24, 20)).astype(np.float32)
    Image.fromarray(arr * np.float32(scale), mode="F").save(tmp_path / "f.tif")
    img = load_image(tmp_path / "f.tif")
    assert img.shape == (3, 24, 20)
    torch.testing.assert_close(img[0], torch.from_numpy(arr), rtol=0, atol=1e-6)  # not black, not rescaled
    assert torch.equal(img[0], img[2])


def test_float_tiff_written_by_tifffile(tmp_path):
    tifffile = pytest.importorskip("tifffile")  # scikit-image's dependency: present wherever the suite runs
    arr = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    tifffile.imwrite(tmp_path / "t.tif", arr)
    torch.testing.assert_close(load_image(tmp_path / "t.tif")[1], torch.from_numpy(arr), rtol=0, atol=1e-6)


@pytest.mark.parametrize("values, words", [((-1.0, 3000.0), "-1..3000"), ((0.0, float("nan")), "not finite")])
def test_float_tiff_without_a_known_scale_is_refused_with_its_range(tmp_path, values, words):
    arr = np.full((8, 8), values[0], np.float32)
    arr[0, 0] = values[1]
    Image.fromarray(arr, mode="F").save(tmp_path / "hdr.tif")
    with pytest.raises(InputError, match="32-bit float") as exc:
        load_image(tmp_path / "hdr.tif")
    assert words in str(exc.value) and str(tmp_path / "hdr.tif") in str(exc.value)


# ------------------------------------------------------------------------------------------ names

NASTY = ["car\rriage.png", "line\nfeed.png", "\x1b[31mred\x1b[0m.png", "=cmd.png"]


@pytest.fixture(scope="module")
def nasty_dir(tmp_path_factory) -> Path:
    """Images whose names hold a carriage return, a newline, ANSI escapes, a formula and bytes that are not UTF-8."""
    folder = tmp_path_factory.mktemp("nasty") / "model\x1b[2J"
    write_noise_images(folder, n=1)
    good = (folder / "img0.png").read_bytes()
    for name in NASTY:
        (folder / name).write_bytes(good)
    with open(os.fsencode(folder) + b"/caf\xe9.png", "wb") as fh:
        fh.write(good)
    (folder / "broken\x1b]0;title\x07.png").write_bytes(b"not an image")
    return folder


def test_names_are_escaped_in_every_output(nasty_dir, tmp_path):
    """A real process writing to a pipe (strict UTF-8): a name that is not UTF-8 never ends the run, and no name
    acts on a terminal (table, warnings) or a spreadsheet (CSV); JSON keeps exact names with JSON's escapes."""
    gallery, model = tmp_path / "g.h5", "=m\x1b[1m"
    res = run_fpt("--device", "cpu", "gallery", "add", model, nasty_dir, "--shots", "0", "-e", "spectral",
                  "--gallery", gallery)
    assert res.returncode == 0, res.stderr
    assert "warning: skipped" in res.stderr and "broken\\x1b]0;title\\x07.png" in res.stderr
    res = run_fpt("--device", "cpu", "identify", nasty_dir, "-e", "spectral", "--gallery", gallery, "--csv")
    assert res.returncode == 0, res.stderr
    for stream in (res.stdout, res.stderr):
        assert "\x1b" not in stream and "\r" not in stream and "\x07" not in stream
    rows = list(csv.reader(io.StringIO(res.stdout)))
    columns = rows[0]
    assert columns[:3] == ["path", "rank", "model"]
    # one model enrolled, so one ranked row per image: no name splits a line or adds a cell
    assert len(rows) == 1 + 6 and all(len(r) == len(columns) for r in rows)
    assert {Path(r[0]).name for r in rows[1:]} == {"car\\rriage.png", "line\\nfeed.png", "\\x1b[31mred\\x1b[0m.png",
                                                   "=cmd.png", "caf\\xe9.png", "img0.png"}
    assert {r[2] for r in rows[1:]} == {"'=m\\x1b[1m"}  # escaped, and a formula never starts a cell
    for extra in ([], ["--json"]):
        res = invoke(["--device", "cpu", "identify", str(nasty_dir), "--gallery", str(gallery), *extra])
        assert res.exit_code == 0, res.output
        assert "\x1b" not in res.stdout + res.stderr and "\r" not in res.stdout + res.stderr
    assert {Path(r["path"]).name for r in json.loads(res.stdout)["results"]} >= {"car\rriage.png", "line\nfeed.png"}
    res = runner.invoke(app, ["identify", str(nasty_dir), "-e", "spectral", "--gallery", str(gallery)],
                        env={"COLUMNS": "400"})
    assert "car\\rriage.png" in res.stdout and "=m\\x1b[1m" in res.stdout
    res = invoke(["gallery", "show", model, "--gallery", str(gallery)])
    assert res.exit_code == 0 and "\x1b" not in res.stdout and "caf\\xe9.png" in res.stdout


def test_a_name_that_is_not_utf8_is_stored_and_embedded(nasty_dir, tmp_path):
    import h5py

    res = invoke(["--device", "cpu", "embed", str(nasty_dir), "--out", str(tmp_path / "e.h5")])
    assert res.exit_code == 0, res.output
    assert "embedded 6 image(s)" in res.stdout
    with h5py.File(tmp_path / "e.h5") as f:
        stored = [p.decode() for p in f["paths"][()]]
    assert any(p.endswith("caf\\xe9.png") for p in stored)


def test_error_messages_escape_names(tmp_path):
    res = invoke(["ffd", str(tmp_path / "a\x1b[2Jb"), str(tmp_path)])
    line = one_line_error(res, "a\\x1b[2Jb")
    assert "\x1b" not in line


# ------------------------------------------------------------------------------------- symlinks


def test_symlinked_subfolders_are_followed_once_even_in_a_cycle(tmp_path):
    outside = write_noise_images(tmp_path / "outside", n=2, prefix="out")
    root = write_noise_images(tmp_path / "root", n=1)
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "sub").mkdir()
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)  # a cycle back to the top
    (outside / "back").symlink_to(root, target_is_directory=True)  # and another through the link
    found = list_images(root)
    assert sorted(p.name for p in found) == ["img0.png", "out0.png", "out1.png"]
    assert list_images(root) == found  # deterministic
    res = invoke(["--device", "cpu", "embed", str(root), "--out", str(tmp_path / "e.h5")])
    assert res.exit_code == 0 and "embedded 3 image(s)" in res.stdout
