"""The one embedding loop: rows independent of the batch size, the cache, sharded runs and their merge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import invoke

import fpforensics
from fpforensics.embedding.cache import EmbeddingCache
from fpforensics.embedding.files import load_embeddings, merge_embeddings, save_embeddings
from fpforensics.embedding.loop import ExtractorEncoder, SpectrumEncoder, embed_files, embed_images
from fpforensics.errors import IncompatibleError
from fpforensics.extractor import load_extractor
from fpforensics.extractor.network import FingerprintNet
from fpforensics.extractor.trained import TrainedExtractor
from fpforensics.images.decode import list_images
from fpforensics.residual.median import MedianResidual


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    """Images of several sizes: 1, 4, 9 crops each under the 3x3 window (and one smaller than a crop)."""
    gen = torch.Generator().manual_seed(0)
    sizes = [(128, 128), (200, 150), (300, 260), (96, 140), (128, 400), (260, 300), (150, 150), (512, 384)]
    return [torch.rand(3, h, w, generator=gen) for h, w in sizes] * 2


def resnet_extractor() -> TrainedExtractor:
    torch.manual_seed(0)
    net = FingerprintNet("resnet18", 16).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return TrainedExtractor(net, MedianResidual(), identity="random-resnet18")


@pytest.mark.parametrize("kind", ["spectral", "resnet"])
def test_embeddings_do_not_depend_on_the_batch_size(images, kind):
    """The same image gives the same embedding in batches of 1, 7 and 64 crops."""
    ext = load_extractor("spectral") if kind == "spectral" else resnet_extractor()
    encoder = ExtractorEncoder(ext, grid=3)
    rows = {b: embed_images(encoder, images, batch_size=b) for b in (1, 7, 64)}
    assert rows[1].shape == (len(images), ext.embedding_dim)
    for b in (7, 64):
        np.testing.assert_allclose(rows[b], rows[1], rtol=0, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(rows[1], axis=1), 1.0, atol=1e-5)
    alone = embed_images(encoder, images[2:3], batch_size=64)
    np.testing.assert_allclose(alone[0], rows[64][2], rtol=0, atol=2e-6)


def test_spectrum_encoder_batches_and_several_encoders_share_one_decode(model_set_dir, tmp_path):
    paths = list_images(model_set_dir)
    spectral = ExtractorEncoder(load_extractor("spectral"), grid=1)
    spectrum = SpectrumEncoder(MedianResidual(), "cpu")
    both = embed_files([spectral, spectrum], paths, batch_size=5)
    alone = embed_files([spectrum], paths, batch_size=1)
    assert both.rows[1].shape == (len(paths), 64) and both.cached == [False, False]
    np.testing.assert_allclose(both.rows[1], alone.rows[0], rtol=0, atol=1e-6)


def test_cache_transform_and_unreadable_files(model_set_dir, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    paths = [*list_images(model_set_dir / "model0"), bad]
    encoder = ExtractorEncoder(load_extractor("spectral"), grid=1)
    cache = EmbeddingCache(tmp_path / "cache")
    transformed = []

    def stripe(img: torch.Tensor, pos: int) -> torch.Tensor:
        # Every other column brightened: a periodic trace the spectral extractor must see. (A flip
        # would not do: the radial spectrum of the median residual is nearly flip-invariant.)
        transformed.append(pos)
        out = img.clone()
        out[..., ::2] = (out[..., ::2] + 0.1).clamp(max=1.0)
        return out

    first = embed_files([encoder], paths, cache=cache, cache_key=lambda e: e.identity + "|stripe", transform=stripe)
    assert first.cached == [False] and transformed == list(range(6)) and first.mask(7).tolist() == [True] * 6 + [False]
    assert [p for p, _ in first.skipped] == [bad]
    again = embed_files([encoder], paths, cache=cache, cache_key=lambda e: e.identity + "|stripe", transform=stripe)
    assert again.cached == [True] and len(transformed) == 6  # nothing decoded the second time
    np.testing.assert_array_equal(again.rows[0], first.rows[0])
    plain = embed_files([encoder], paths)
    assert not np.allclose(plain.rows[0], first.rows[0])  # the transform was applied


def test_sharded_embedding_merges_to_a_single_run(model_set_dir, tmp_path):
    whole = fpforensics.embed([model_set_dir], "spectral", grid=1)
    parts = [fpforensics.embed([model_set_dir], "spectral", grid=1, shard=(i, 3)) for i in range(3)]
    assert sum(len(p.paths) for p in parts) == len(whole.paths) == whole.found == 18
    files = []
    for i, part in enumerate(parts):
        from fpforensics.embedding.files import EmbeddingSet

        files.append(save_embeddings(tmp_path / f"s{i}.h5", EmbeddingSet(
            part.embeddings, [str(p) for p in part.paths], part.extractor.identity, "spectral", 1, part.positions,
            part.shard)))
    merged = merge_embeddings(list(reversed(files)))
    assert merged.paths == [str(p) for p in whole.paths]
    np.testing.assert_allclose(merged.embeddings, whole.embeddings, rtol=0, atol=1e-6)
    warned: list[str] = []
    merge_embeddings(files[:2], warn=warned.append)
    assert warned and "shard(s) 2 missing" in warned[0]
    with pytest.raises(IncompatibleError, match="same image"):
        merge_embeddings([files[0], files[0]])


def test_cli_embed_shards_from_environment_and_merge(model_set_dir, tmp_path, monkeypatch):
    out = tmp_path / "parts"
    out.mkdir()
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        res = invoke(["--device", "cpu", "embed", str(model_set_dir), "-o", str(out), "--grid", "1"])
        assert res.exit_code == 0 and f"shard {rank}/2" in res.stdout, res.output
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    shards = sorted(out.iterdir())
    assert [p.name for p in shards] == ["embeddings-shard-000-of-002.h5", "embeddings-shard-001-of-002.h5"]
    merge = [a for p in shards for a in ("--merge", str(p))]
    res = invoke(["embed", *merge, "-o", str(tmp_path / "all.h5")])
    assert res.exit_code == 0 and "18 image(s)" in res.stdout, res.output
    single = tmp_path / "single.h5"
    assert invoke(["embed", str(model_set_dir), "-o", str(single), "--grid", "1"]).exit_code == 0
    a, b = load_embeddings(tmp_path / "all.h5"), load_embeddings(single)
    assert a.paths == b.paths and a.extractor == b.extractor and a.grid == 1
    np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=0, atol=1e-6)
    res = invoke(["embed", str(model_set_dir), "-o", str(tmp_path / "x.npy"), "--shard", "0/2"])
    assert res.exit_code == 2 and "HDF5" in res.stderr
