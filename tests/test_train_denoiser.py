"""`fpt train denoiser`: learns, writes a loadable checkpoint, resumes exactly, refuses bad input."""

import json

import pytest
import torch
from typer.testing import CliRunner

from fpforensics.checkpoints import load_checkpoint, save_checkpoint
from fpforensics.cli.app import app
from fpforensics.errors import IncompatibleError, InputError, OutputError
from fpforensics.extractor.denoiser_training import (
    JPEG_GRID,
    DenoiserConfig,
    jpeg_patches,
    psnr,
    random_patches,
    train_denoiser,
)
from fpforensics.images.decode import list_images
from fpforensics.residual import build_residual
from fpforensics.residual.dncnn import load_dncnn

runner = CliRunner()
TINY = dict(depth=4, channels=8, patch=24, batch_size=8, val_crops=8, val_size=32)


def test_psnr_and_patches():
    a = torch.zeros(1, 3, 4, 4)
    assert psnr(a, a + 0.1) == pytest.approx(20.0)
    photos = [torch.randint(0, 256, (3, 50, 60), dtype=torch.uint8)]
    p = random_patches(photos, 5, 16, torch.Generator().manual_seed(0))
    assert p.shape == (5, 3, 16, 16) and 0 <= p.min() and p.max() <= 1
    q = random_patches(photos, 5, 16, torch.Generator().manual_seed(0))
    assert torch.equal(p, q)


def test_denoiser_learns_at_visible_noise(photo_dir, tmp_path):
    """At sigma 25 a few dozen steps must already beat the noisy input on held-out photos."""
    cfg = DenoiserConfig(sigma=25, steps=60, lr=3e-3, val_fraction=0.25, **TINY)
    res = train_denoiser(list_images(photo_dir), tmp_path / "d.pt", cfg)
    assert res.psnr_noisy == pytest.approx(20 * torch.log10(torch.tensor(255 / 25)).item(), abs=0.3)
    assert res.psnr_gain > 1.0
    assert res.train_images == 3 and res.val_images == 1
    ckpt = load_checkpoint(tmp_path / "d.pt", kind="dncnn")
    assert ckpt["complete"] and "optimizer" not in ckpt
    assert ckpt["depth"] == 4 and ckpt["channels"] == 8 and ckpt["sigma"] == 25 and ckpt["steps"] == 60
    assert ckpt["psnr_gain"] == pytest.approx(res.psnr_gain)
    residual = load_dncnn(tmp_path / "d.pt")
    assert build_residual(tmp_path / "d.pt").identity == residual.identity
    x = torch.rand(1, 3, 32, 32)
    assert residual(x).shape == x.shape


def test_resume_continues_exactly(photo_dir, tmp_path):
    cfg = DenoiserConfig(steps=6, save_every=3, **TINY)
    paths = list_images(photo_dir)
    train_denoiser(paths, tmp_path / "full.pt", cfg)

    def interrupt(step, _loss):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_denoiser(paths, tmp_path / "cut.pt", cfg, on_step=interrupt)
    partial = load_checkpoint(tmp_path / "cut.pt", kind="dncnn")
    assert partial["steps"] == 3 and not partial["complete"] and "optimizer" in partial
    with pytest.raises(OutputError, match="--resume"):
        train_denoiser(paths, tmp_path / "cut.pt", cfg)
    starts = []
    resumed = train_denoiser(paths, tmp_path / "cut.pt", cfg, resume=True, on_start=starts.append)
    assert starts == [3] and resumed.steps == 6
    a = load_checkpoint(tmp_path / "full.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "cut.pt")["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    with pytest.raises(InputError, match="already complete"):
        train_denoiser(paths, tmp_path / "cut.pt", cfg, resume=True)
    other = DenoiserConfig(steps=6, save_every=3, **{**TINY, "channels": 4})
    with pytest.raises(InputError):
        train_denoiser(paths, tmp_path / "cut.pt", other, resume=True)
    save_checkpoint({**partial, "config": {**partial["config"], "sigma": 9.0}}, tmp_path / "mis.pt", "dncnn")
    with pytest.raises(IncompatibleError, match="sigma"):
        train_denoiser(paths, tmp_path / "mis.pt", cfg, resume=True)


def test_cli_denoiser_json(photo_dir, tmp_path):
    out = tmp_path / "cli.pt"
    args = ["--device", "cpu", "train", "denoiser", "--real", str(photo_dir), "--out", str(out), "--steps", "3",
            "--depth", "3", "--channels", "4", "--batch-size", "4", "--patch", "16", "--val-crops", "4", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["steps"] == 3 and data["psnr_noisy"] == pytest.approx(48.13, abs=0.2)
    assert load_dncnn(out).identity.startswith("dncnn:")
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.stderr


@pytest.mark.parametrize("extra, message", [
    (["--sigma", "0"], "--sigma"),
    (["--steps", "0"], "--steps"),
    (["--jpeg-p", "1.5"], "--jpeg-p"),
    (["--jpeg-min-quality", "0"], "--jpeg-min-quality"),
])
def test_cli_denoiser_bad_options(photo_dir, tmp_path, extra, message):
    res = runner.invoke(app, ["train", "denoiser", "--real", str(photo_dir), "--out", str(tmp_path / "x.pt"), *extra])
    assert res.exit_code == 2 and message in res.stderr and "Traceback" not in res.output


def test_cli_denoiser_needs_two_photos(photo_dir, tmp_path):
    one = next(photo_dir.glob("*.png"))
    res = runner.invoke(app, ["train", "denoiser", "--real", str(one), "--out", str(tmp_path / "x.pt")])
    assert res.exit_code == 2 and "at least 2" in res.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["train", "denoiser", "--real", str(empty), "--out", str(tmp_path / "x.pt")])
    assert res.exit_code == 2 and "no images found" in res.stderr


def test_blind_training_reports_psnr_per_level_against_the_median(photo_dir, tmp_path):
    cfg = DenoiserConfig(sigma=10, sigma_max=30, steps=60, lr=3e-3, val_fraction=0.25, **TINY)
    res = train_denoiser(list_images(photo_dir), tmp_path / "b.pt", cfg)
    by_sigma = {r["sigma"]: r for r in res.levels}
    assert set(by_sigma) == {1.0, 2.0, 3.0, 5.0, 10.0, 30.0}
    # The noisy PSNR follows the noise level; at sigma 30 even a tiny blind DnCNN beats doing nothing.
    assert by_sigma[30.0]["noisy"] == pytest.approx(20 * torch.log10(torch.tensor(255 / 30)).item(), abs=0.3)
    assert by_sigma[30.0]["dncnn"] > by_sigma[30.0]["noisy"] + 0.5
    assert all(r["median3x3"] > 0 for r in res.levels)
    assert load_checkpoint(tmp_path / "b.pt", kind="dncnn")["levels"] == res.levels
    with pytest.raises(InputError, match="sigma-max"):
        DenoiserConfig(sigma=5, sigma_max=2).validate()


def test_train_denoiser_prints_the_psnr_table(photo_dir, tmp_path):
    """The command shows the per-level table, not only the one-line summary."""
    res = runner.invoke(app, ["--device", "cpu", "train", "denoiser", "--real", str(photo_dir), "--out",
                              str(tmp_path / "d.pt"), "--steps", "3", "--depth", "3", "--channels", "8",
                              "--batch-size", "4", "--val-fraction", "0.25", "--val-crops", "4"])
    assert res.exit_code == 0, res.output
    assert "held-out PSNR (dB) by noise level" in res.stdout and "DnCNN - median" in res.stdout


def test_jpeg_patches_compress_the_share_asked_at_a_random_grid_phase():
    x = torch.rand(64, 3, 16 + JPEG_GRID, 16 + JPEG_GRID)
    plain = jpeg_patches(x, 0.0, 60, torch.Generator().manual_seed(0), 16)
    assert plain.shape == (64, 3, 16, 16)
    # p = 0: every patch is an exact crop of its input, at offsets that vary across the batch.
    offsets = set()
    for i in range(64):
        hits = [(dy, dx) for dy in range(JPEG_GRID + 1) for dx in range(JPEG_GRID + 1)
                if torch.equal(plain[i], x[i, :, dy:dy + 16, dx:dx + 16])]
        assert hits
        offsets.add(hits[0])
    assert len(offsets) > 10
    # p = 1: no patch is a crop of its input (noise does not survive JPEG), and the draw is seeded.
    jpeg = jpeg_patches(x, 1.0, 60, torch.Generator().manual_seed(0), 16)
    assert all((jpeg[i] - plain[i]).abs().mean() > 0.05 for i in range(64))
    assert torch.equal(jpeg, jpeg_patches(x, 1.0, 60, torch.Generator().manual_seed(0), 16))
    # Quantized to the 8-bit grid, as a decoded JPEG is.
    assert torch.allclose(jpeg * 255, (jpeg * 255).round(), atol=1e-4)


def test_jpeg_training_reports_psnr_on_jpeg_crops_and_resumes_only_with_the_same_share(photo_dir, tmp_path):
    cfg = DenoiserConfig(sigma=10, steps=4, save_every=2, jpeg_p=0.5, val_fraction=0.25, **TINY)
    paths = list_images(photo_dir)
    res = train_denoiser(paths, tmp_path / "j.pt", cfg)
    assert res.psnr_jpeg["quality"] == 75 and res.psnr_jpeg["sigma"] == 10
    # The noise PSNR at sigma 10 does not depend on the content; the median is scored against the JPEG crop.
    assert res.psnr_jpeg["noisy"] == pytest.approx(20 * torch.log10(torch.tensor(255 / 10)).item(), abs=0.3)
    ckpt = load_checkpoint(tmp_path / "j.pt", kind="dncnn")
    assert ckpt["psnr_jpeg"] == res.psnr_jpeg and ckpt["config"]["jpeg_p"] == 0.5
    assert train_denoiser(paths, tmp_path / "n.pt", DenoiserConfig(sigma=10, steps=1, **TINY)).psnr_jpeg is None

    def interrupt(step, _loss):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_denoiser(paths, tmp_path / "cut.pt", cfg, on_step=interrupt)
    with pytest.raises(IncompatibleError, match="jpeg_p"):
        train_denoiser(paths, tmp_path / "cut.pt", DenoiserConfig(**{**cfg.__dict__, "jpeg_p": 0.2}), resume=True)
    resumed = train_denoiser(paths, tmp_path / "cut.pt", cfg, resume=True)
    a, b = load_checkpoint(tmp_path / "j.pt")["state_dict"], load_checkpoint(tmp_path / "cut.pt")["state_dict"]
    assert resumed.steps == 4 and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
