from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fpforensics.errors import InputError
from fpforensics.images.decode import LoadReport, iter_images, list_images, load_image, save_png, to_uint8


def test_list_images_recursive_sorted_deterministic(photo_dir):
    found = list_images([photo_dir])
    assert [p.name for p in found] == ["photo0.png", "photo1.jpg", "photo2.png", "photo3.png"]
    assert found[-1].parent.name == "sub"
    assert list_images([photo_dir]) == found
    # duplicates across inputs are removed
    assert list_images([photo_dir, found[0]]) == found


def test_list_images_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list_images([tmp_path / "missing"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no images found"):
        list_images([tmp_path])


def test_load_png_is_exact(tmp_path, photos):
    path = tmp_path / "a.png"
    Image.fromarray(photos[0]).save(path)
    img = load_image(path)
    assert img.shape == (3, *photos[0].shape[:2]) and img.dtype == torch.float32
    np.testing.assert_array_equal(to_uint8(img), photos[0])  # no resampling, no re-encoding


@pytest.mark.parametrize("fmt,ext", [("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif")])
def test_load_other_formats(tmp_path, photos, fmt, ext):
    path = tmp_path / f"a.{ext}"
    Image.fromarray(photos[1]).save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    np.testing.assert_array_equal(to_uint8(load_image(path)), photos[1])


def test_avif_files_are_found_where_pillow_reads_them(tmp_path, photos):
    from PIL import features

    from fpforensics.images.decode import IMAGE_SUFFIXES, list_images

    assert (".avif" in IMAGE_SUFFIXES) == features.check("avif")
    if not features.check("avif"):
        pytest.skip("this Pillow was built without AVIF")
    Image.fromarray(photos[1]).save(tmp_path / "b.avif", quality=90)
    Image.fromarray(photos[0]).save(tmp_path / "a.png")
    assert [p.name for p in list_images([tmp_path])] == ["a.png", "b.avif"]
    img = load_image(tmp_path / "b.avif")  # lossy: close to the source, not equal
    assert img.shape == (3, *photos[1].shape[:2])
    assert np.abs(to_uint8(img).astype(int) - photos[1].astype(int)).mean() < 8


def test_grey_and_rgba_become_rgb(tmp_path):
    Image.fromarray(np.full((8, 9), 200, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.full((8, 9, 4), 100, np.uint8)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "g.png").shape == (3, 8, 9)
    assert load_image(tmp_path / "a.png").shape == (3, 8, 9)


def test_bad_files_raise_one_line_errors(tmp_path, photos):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("not an image")
    good = tmp_path / "good.jpg"
    Image.fromarray(photos[0]).save(good, format="JPEG")
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    for path, pattern in [(empty, "empty"), (text, "not an image"), (trunc, "truncated"),
                          (tmp_path / "nope.png", "no such file"), (tmp_path, "folder")]:
        with pytest.raises(InputError, match=pattern) as info:
            load_image(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_iter_images_skips_and_counts(tmp_path, photos):
    Image.fromarray(photos[0]).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_text("junk")
    report, skipped = LoadReport(), []
    got = list(iter_images(sorted(tmp_path.iterdir()), report, on_skip=lambda p, r: skipped.append(p)))
    assert [p.name for p, _ in got] == ["a.png"]
    assert report.loaded == 1 and len(report.skipped) == 1 and skipped == [tmp_path / "b.png"]


def test_save_png_round_trip(tmp_path):
    img = torch.rand(3, 17, 23)
    save_png(img, tmp_path / "x" / "y.png")
    back = load_image(tmp_path / "x" / "y.png")
    assert torch.allclose(back, img, atol=0.5 / 255 + 1e-6)
    assert isinstance(Path(tmp_path / "x" / "y.png"), Path)
