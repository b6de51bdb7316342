"""`fpt train fuse`: extractors side by side; cosines are the weighted mean of the parts' cosines."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from helpers import write_test_pool
from typer.testing import CliRunner

from fpforensics.checkpoints import load_checkpoint
from fpforensics.cli.app import app
from fpforensics.embedding.loop import ExtractorEncoder, embed_images
from fpforensics.errors import InputError, OutputError
from fpforensics.extractor import load_extractor
from fpforensics.extractor.config import make_config
from fpforensics.extractor.fused import FusedExtractor, fuse_checkpoints
from fpforensics.extractor.network import read_init_weights
from fpforensics.extractor.trained import TrainedExtractor
from fpforensics.extractor.training import train_extractor
from fpforensics.images.decode import list_images

runner = CliRunner()
MICRO = dict(backbone="resnet18", embedding_dim=8, epochs=1, steps_per_epoch=1, p=2, k=2, lr=1e-3,
             holdout_archs="1", max_train_models=6, max_val_models=4, val_shots=2, val_queries=1)


@pytest.fixture(scope="module")
def parts(tmp_path_factory, photo_dir):
    """Two micro extractors on different residuals (median, a small DnCNN), as `fpt train extractor` writes them."""
    from fpforensics.checkpoints import save_checkpoint
    from fpforensics.residual.dncnn import DnCNN
    from fpforensics.synthesis.pool import SyntheticPool

    root = tmp_path_factory.mktemp("fuse")
    pool = SyntheticPool.open(write_test_pool(root / "pool.h5"))
    torch.manual_seed(0)
    dncnn = save_checkpoint({"state_dict": DnCNN(depth=3, channels=4).state_dict(), "depth": 3, "channels": 4},
                            root / "d.pt", "dncnn")
    out = []
    for name, residual in (("median", "median"), ("dncnn", str(dncnn))):
        path = root / f"{name}.pt"
        train_extractor(pool, list_images(photo_dir), path, make_config("paper", **MICRO, residual=residual),
                        calibrate=False)
        out.append(path)
    return out


def test_fused_embedding_is_the_weighted_concatenation(parts, tmp_path):
    fused = fuse_checkpoints(parts, [3, 1], tmp_path / "f.pt")
    assert fused.weights == pytest.approx((0.75, 0.25)) and fused.embedding_dim == 16
    loaded = load_extractor(tmp_path / "f.pt")
    assert isinstance(loaded, FusedExtractor) and loaded.identity == fused.identity
    a, b = (TrainedExtractor.from_checkpoint(p) for p in parts)
    crops = torch.rand(4, 3, 128, 128)
    ea, eb, ef = (F.normalize(m.embed_crops(crops), dim=1) for m in (a, b, loaded))
    assert torch.allclose(ef[:, :8], 0.75 ** 0.5 * ea, atol=1e-5)
    assert torch.allclose(ef[:, 8:], 0.25 ** 0.5 * eb, atol=1e-5)
    # The cosine of two fused embeddings is the weighted mean of the parts' cosines.
    assert float(ef[0] @ ef[1]) == pytest.approx(0.75 * float(ea[0] @ ea[1]) + 0.25 * float(eb[0] @ eb[1]), abs=1e-5)
    # Through the embedding loop as every command uses it: unit-norm rows of the fused size.
    emb = embed_images(ExtractorEncoder(loaded, grid=3), [torch.rand(3, 128, 128), torch.rand(3, 150, 200)])
    assert emb.shape == (2, 16) and torch.allclose(torch.from_numpy(emb).norm(dim=1), torch.ones(2), atol=1e-5)


def test_fused_checkpoint_is_self_contained_and_keeps_only_common_held_out_archs(parts, tmp_path):
    fused = fuse_checkpoints(parts, None, tmp_path / "f.pt")
    assert fused.weights == pytest.approx((0.5, 0.5))
    other = fuse_checkpoints(parts, [0.9, 0.1], tmp_path / "g.pt")
    assert fused.identity.startswith("fused:") and other.identity != fused.identity
    assert fused.identity not in {TrainedExtractor.from_checkpoint(p).identity for p in parts}
    ckpt = load_checkpoint(tmp_path / "f.pt", kind="extractor")
    held = [set(load_checkpoint(p)["heldout_archs"]) for p in parts]
    assert set(ckpt["heldout_archs"]) == held[0] & held[1] and ckpt["heldout_archs"]
    assert not set(ckpt["heldout_archs"]) & set(ckpt["seen_archs"])
    assert ckpt["heldout_model_ids"] == load_checkpoint(parts[0])["heldout_model_ids"]  # one pool, one split
    moved = [p.rename(p.with_suffix(".moved")) for p in parts]
    try:
        assert load_extractor(tmp_path / "f.pt").identity == fused.identity
    finally:
        for m, p in zip(moved, parts, strict=True):
            m.rename(p)


def test_fuse_refuses_bad_input(parts, tmp_path):
    with pytest.raises(InputError, match="at least 2"):
        fuse_checkpoints(parts[:1], None, tmp_path / "x.pt")
    with pytest.raises(InputError, match="3 value"):
        fuse_checkpoints(parts, [1, 2, 3], tmp_path / "x.pt")
    with pytest.raises(InputError, match="> 0"):
        fuse_checkpoints(parts, [1, -1], tmp_path / "x.pt")
    fuse_checkpoints(parts, None, tmp_path / "f.pt")
    with pytest.raises(OutputError):
        fuse_checkpoints(parts, None, tmp_path / "f.pt")
    with pytest.raises(InputError, match="one of the extractors"):
        fuse_checkpoints(parts, None, parts[0], overwrite=True)
    with pytest.raises(InputError, match="already a fused"):
        fuse_checkpoints([parts[0], tmp_path / "f.pt"], None, tmp_path / "y.pt")
    with pytest.raises(InputError, match="fused"):
        read_init_weights(tmp_path / "f.pt")


def test_cli_fuse(parts, tmp_path):
    out = tmp_path / "f.pt"
    res = runner.invoke(app, ["train", "fuse", *map(str, parts), "-w", "3,1", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["embedding_dim"] == 16 and [p["weight"] for p in data["parts"]] == pytest.approx([0.75, 0.25])
    assert data["parts"][0]["residual"] == "median3x3" and data["parts"][1]["residual"].startswith("dncnn:")
    assert data["identity"] == load_extractor(out).identity
    again = runner.invoke(app, ["train", "fuse", *map(str, parts), "-o", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    bad = runner.invoke(app, ["train", "fuse", *map(str, parts), "-w", "a,b", "-o", str(tmp_path / "g.pt")])
    assert bad.exit_code == 2 and "comma-separated" in bad.stderr and "Traceback" not in bad.output
    text = runner.invoke(app, ["train", "fuse", *map(str, parts), "-o", str(tmp_path / "h.pt")])
    assert text.exit_code == 0 and "fpt calibrate" in text.stdout
