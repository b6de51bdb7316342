"""`fpt train extractor`: losses, sampler, augmentation, network, checkpoint, training loop, resume."""

import io
import json
from types import SimpleNamespace

import pytest
import torch
from helpers import write_test_pool
from PIL import Image

from fpforensics.checkpoints import load_checkpoint, save_checkpoint
from fpforensics.embedding.loop import ExtractorEncoder, embed_images
from fpforensics.errors import IncompatibleError, InputError, OutputError
from fpforensics.extractor import load_extractor
from fpforensics.extractor.config import ExtractorConfig, make_config
from fpforensics.extractor.losses import batch_hard_triplet
from fpforensics.extractor.network import FingerprintNet, load_backbone_init
from fpforensics.extractor.sampler import PKSampler
from fpforensics.extractor.trained import TrainedExtractor
from fpforensics.extractor.training import TrainCallbacks, train_extractor
from fpforensics.extractor.validation import split_models
from fpforensics.images.decode import list_images
from fpforensics.perturbations import KINDS, AugmentConfig, Augmenter, Perturbation, parse_perturb, quantize


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory):
    return write_test_pool(tmp_path_factory.mktemp("pool") / "pool.h5")


@pytest.fixture(scope="module")
def pool(pool_file):
    from fpforensics.synthesis.pool import SyntheticPool

    return SyntheticPool.open(pool_file)


MICRO = dict(backbone="resnet18", embedding_dim=16, epochs=2, steps_per_epoch=1, p=2, k=2, lr=1e-3,
             holdout_archs="1", max_train_models=6, max_val_models=4, val_shots=2, val_queries=1, residual="median")


@pytest.fixture(scope="module")
def full_run(pool, photo_dir, tmp_path_factory):
    """One uninterrupted micro run, shared by the checkpoint and the resume tests."""
    path = tmp_path_factory.mktemp("ext") / "full.pt"
    epochs = []
    res = train_extractor(pool, list_images(photo_dir), path, make_config("paper", **MICRO),
                          callbacks=TrainCallbacks(on_epoch=epochs.append))
    return path, res, epochs


# ----------------------------------------------------------------------------------- pieces


def test_batch_hard_triplet_values():
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    st = batch_hard_triplet(emb, labels, margin=0.3)
    assert st.valid_fraction == 1.0 and st.active_fraction == 0.0 and st.loss.item() == pytest.approx(0.0, abs=1e-5)
    swapped = batch_hard_triplet(emb, torch.tensor([0, 1, 0, 1]), margin=0.3)
    # hardest positive at distance sqrt(2), hardest negative at 0: loss sqrt(2) + 0.3
    assert swapped.loss.item() == pytest.approx(2 ** 0.5 + 0.3, abs=1e-4) and swapped.active_fraction == 1.0
    lonely = batch_hard_triplet(emb, torch.tensor([0, 1, 2, 3]))
    assert lonely.valid_fraction == 0.0 and lonely.loss.item() == 0.0
    half = batch_hard_triplet(emb, torch.tensor([0, 0, 1, 2]))
    assert half.valid_fraction == 0.5


def test_triplet_gradient_flows():
    emb = torch.randn(6, 8, requires_grad=True)
    batch_hard_triplet(emb, torch.tensor([0, 0, 1, 1, 2, 2]), margin=1.0).loss.backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_pk_sampler_batches():
    s = PKSampler(n_models=7, n_images=5, p=3, k=2, generator=torch.Generator().manual_seed(0))
    seen = set()
    for _ in range(3):
        labels, images = s.next_batch()
        assert labels.shape == images.shape == (6,)
        groups = labels.view(3, 2)
        assert (groups[:, 0] == groups[:, 1]).all() and len(set(groups[:, 0].tolist())) == 3
        assert all(len(set(images.view(3, 2)[i].tolist())) == 2 for i in range(3))
        seen |= set(labels.tolist())
    assert seen == set(range(7))  # one permutation of the models covers all of them in ceil(7/3) batches
    with pytest.raises(InputError, match="--k"):
        PKSampler(5, 5, 3, 1, torch.Generator())
    with pytest.raises(InputError, match="training models"):
        PKSampler(1, 5, 3, 2, torch.Generator())


def test_augmentations():
    import numpy as np

    img = torch.rand(3, 64, 64)
    jp = KINDS["jpeg"].apply(img, 50, None)
    assert jp.shape == img.shape and 0 < (jp - img).abs().mean() < 0.3
    buf = io.BytesIO()
    Image.fromarray((img * 255).round().byte().permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=50)
    ref = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1).float() / 255
    assert torch.allclose(jp, ref)
    crop = KINDS["crop"].apply(img, 0.4, np.random.default_rng(0))
    assert crop.shape == img.shape and not torch.allclose(crop, img)
    half = KINDS["resize"].apply(img, 0.5, None, kernel="lanczos")
    assert half.shape == (3, 32, 32)
    pil = Image.fromarray((img * 255).round().byte().permute(1, 2, 0).numpy()).resize((32, 32), Image.LANCZOS)
    assert torch.allclose(half, torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255)
    batch = torch.rand(4, 3, 32, 32)
    assert torch.equal(Augmenter(AugmentConfig(jpeg_p=0, crop_p=0))(batch), batch)
    a, b = Augmenter(seed=3)(batch), Augmenter(seed=3)(batch)
    assert torch.equal(a, b) and not torch.equal(a, batch)
    # A resize chain keeps the size: shrunk images come back up, enlarged ones are cropped.
    every = Augmenter(AugmentConfig(jpeg_p=0, crop_p=0, resize_p=1.0), seed=1)
    out = every(batch)
    assert out.shape == batch.shape and not torch.equal(out, batch)
    assert torch.equal(quantize(torch.tensor([0.1234, 1.2, -0.1])), torch.tensor([31 / 255, 1.0, 0.0]))


def test_sweep_perturbations_parse_and_are_seeded():
    assert [p.label for p in parse_perturb("resize:0.5,1")] == ["resize:0.5", "resize:1"]
    assert parse_perturb("resize:1")[0].is_identity and not parse_perturb("jpeg:100")[0].is_identity
    img = torch.rand(3, 40, 40)
    crop = Perturbation("crop", 0.5)
    assert torch.equal(crop.apply(img, seed=1, index=2), crop.apply(img, seed=1, index=2))
    assert not torch.equal(crop.apply(img, seed=1, index=2), crop.apply(img, seed=1, index=3))
    assert Perturbation("resize", 0.5).apply(img).shape == (3, 20, 20)
    for bad in ("resize:0", "resize:9", "jpeg:101", "blur:2", "jpeg"):
        with pytest.raises(InputError):
            parse_perturb(bad)


def test_network_heads_and_init(tmp_path):
    import torchvision

    net = FingerprintNet("resnet18", embedding_dim=32, num_classes=5)
    emb, logits = net(torch.randn(2, 3, 64, 64))
    assert emb.shape == (2, 32) and logits.shape == (2, 5)
    pooled = FingerprintNet("resnet18", embedding_dim=0)
    assert pooled.embedding_dim == 512 and pooled(torch.randn(2, 3, 64, 64))[1] is None
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    assert load_backbone_init(net, tmp_path / "r18.pth") == len(ref.state_dict()) - 2  # fc dropped
    assert torch.equal(net.backbone.conv1.weight, ref.conv1.weight)
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(IncompatibleError, match="resnet18"):
        load_backbone_init(net, tmp_path / "r34.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(InputError):
        load_backbone_init(net, tmp_path / "junk.pth")



def test_init_from_extractor_checkpoint_warm_starts_embedding(tmp_path):
    from fpforensics.checkpoints import save_checkpoint

    old = FingerprintNet("resnet18", embedding_dim=32, num_classes=3)
    with torch.no_grad():
        old.input_norm.running_mean.fill_(-5.0)
        old.head.weight.normal_()
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in old.inference_state_dict().items()}
    save_checkpoint({"state_dict": half}, tmp_path / "old.pt", kind="extractor")
    new = FingerprintNet("resnet18", embedding_dim=32, num_classes=7)  # another pool: new classifier
    assert load_backbone_init(new, tmp_path / "old.pt") == len(half)
    assert torch.equal(new.head.weight, half["head.weight"].float())
    assert torch.equal(new.input_norm.running_mean, torch.full((3,), -5.0))
    assert new.classifier.weight.shape == (7, 32) and new.head.weight.dtype == torch.float32
    other_dim = FingerprintNet("resnet18", embedding_dim=16, num_classes=7)  # head does not fit: backbone only
    assert load_backbone_init(other_dim, tmp_path / "old.pt") == len(half) - 2
    assert torch.equal(other_dim.backbone.conv1.weight, half["backbone.conv1.weight"].float())
    save_checkpoint({"state_dict": {}}, tmp_path / "den.pt", kind="denoiser")
    with pytest.raises(IncompatibleError, match="denoiser"):
        load_backbone_init(new, tmp_path / "den.pt")

def test_split_models(pool):
    cfg = ExtractorConfig(holdout_archs="1", holdout_seeds=1)
    split = split_models(pool.entries, cfg)
    assert len(split.train) + len(split.val) == len(pool) == 12
    held_arch = [pool.entries[i].arch for i, g in zip(split.val, split.val_group, strict=True) if g == "arch"]
    assert len(held_arch) == 3 and len(set(held_arch)) == 1
    assert all(pool.entries[i].arch != held_arch[0] and pool.entries[i].seed != 2 for i in split.train)
    assert split.val_group.count("seed") == 3 and split.holdout_seeds == [2]
    grid = split_models(pool.entries, ExtractorConfig(holdout_archs="U=deconv", holdout_seeds=0))
    assert all(pool.entries[i].arch.U == "deconv" for i in grid.val) and len(grid.train) == 6
    with pytest.raises(InputError, match="no training"):
        split_models(pool.entries, ExtractorConfig(holdout_archs="4"))
    with pytest.raises(InputError, match="matches no"):
        split_models(pool.entries, ExtractorConfig(holdout_archs="K=2"))
    warned = []
    split_models(pool.entries, ExtractorConfig(holdout_archs="1", holdout_seeds=3), warn=warned.append)
    assert warned and "none held out" in warned[0]


def test_make_config_presets():
    assert make_config().backbone == "resnet50" and make_config().p * make_config().k == 200
    tiny = make_config("tiny", lr=5e-4)
    assert tiny.backbone == "resnet18" and tiny.lr == 5e-4
    with pytest.raises(InputError, match="preset"):
        make_config("huge")
    with pytest.raises(InputError, match="--backbone"):
        make_config(backbone="vgg")


# ------------------------------------------------------------------------------ training loop


def test_train_checkpoint_and_load(full_run, pool, photo_dir, tmp_path):
    path, res, epochs = full_run
    assert [r["epoch"] for r in epochs] == [0, 1, 2] and "loss" not in epochs[0]
    for r in epochs[1:]:
        assert r["valid_triplets"] == 1.0 and 0.0 <= r["val_acc"] <= 1.0 and r["val_models"] == 4
        assert r["val_chance"] == 0.25 and r["images_per_s"] > 0 and r["loss"] > 0
    log = [json.loads(line) for line in path.with_suffix(".jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2] and log[2]["val_acc"] == pytest.approx(epochs[2]["val_acc"])

    ckpt = load_checkpoint(path, kind="extractor")
    assert ckpt["complete"] and "optimizer" not in ckpt and ckpt["backbone"] == "resnet18"
    assert ckpt["embedding_dim"] == 16 and ckpt["input_transform"] == "logmag" and ckpt["residual"]["kind"] == "median"
    assert ckpt["pool_fingerprint"] == pool.fingerprint and len(ckpt["heldout_model_ids"]) == 4
    assert not set(ckpt["heldout_model_ids"]) & set(ckpt["train_model_ids"])
    assert all(v.dtype == torch.float32 for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert not any(k.startswith("classifier.") for k in ckpt["state_dict"])
    cal = ckpt["calibration"]  # fitted at the end on the run's own held-out validation models
    assert {"image", "fingerprint", "real_reference"} <= set(cal) and cal["fingerprint"]["extractor"] == ckpt["identity"]
    assert "held-out synthetic models" in cal["fingerprint"]["data"]

    ext = load_extractor(path)
    assert isinstance(ext, TrainedExtractor) and ext.identity == res.identity == ckpt["identity"]
    assert ext.identity.startswith("resnet18:") and ext.embedding_dim == 16
    emb = embed_images(ExtractorEncoder(ext, grid=3), [torch.rand(3, 128, 128), torch.rand(3, 200, 150)])
    assert emb.shape == (2, 16) and torch.allclose(torch.from_numpy(emb).norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(IncompatibleError, match="resnet50"):
        TrainedExtractor.from_checkpoint(path, backbone="resnet50")
    bad = {k: v for k, v in ckpt.items() if k not in ("fpt_kind", "tool_version")}
    save_checkpoint({**bad, "backbone": "resnet34"}, tmp_path / "lie.pt", "extractor")
    with pytest.raises(IncompatibleError, match="resnet34"):
        TrainedExtractor.from_checkpoint(tmp_path / "lie.pt")
    with pytest.raises(IncompatibleError, match="dncnn"):
        TrainedExtractor.from_checkpoint(_dncnn_file(tmp_path))
    with pytest.raises(OutputError, match="--resume"):
        train_extractor(pool, list_images(photo_dir), path, make_config("paper", **MICRO))


def _dncnn_file(tmp_path):
    from fpforensics.residual.dncnn import DnCNN

    net = DnCNN(depth=3, channels=4)
    return save_checkpoint({"state_dict": net.state_dict(), "depth": 3, "channels": 4}, tmp_path / "d.pt", "dncnn")


def test_dncnn_residual_is_embedded(pool, photo_dir, tmp_path):
    path = _dncnn_file(tmp_path)
    cfg = make_config("paper", **{**MICRO, "epochs": 1, "steps_per_epoch": 1, "residual": str(path)})
    train_extractor(pool, list_images(photo_dir), tmp_path / "e.pt", cfg, calibrate=False)
    path.unlink()  # the extractor file must be self-contained
    ext = TrainedExtractor.from_checkpoint(tmp_path / "e.pt")
    assert ext.residual.identity.startswith("dncnn:") and ext.embed_crops(torch.rand(2, 3, 128, 128)).shape == (2, 16)


def test_resume_matches_uninterrupted_run(full_run, pool, photo_dir, tmp_path):
    cfg = make_config("paper", **MICRO)
    paths = list_images(photo_dir)

    def stop(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_extractor(pool, paths, tmp_path / "cut.pt", cfg, callbacks=TrainCallbacks(on_epoch=stop))
    partial = load_checkpoint(tmp_path / "cut.pt", kind="extractor")
    assert partial["epoch"] == 1 and not partial["complete"] and "optimizer" in partial
    # the partial file is already a usable extractor
    assert TrainedExtractor.from_checkpoint(tmp_path / "cut.pt").embedding_dim == 16
    other = SimpleNamespace(entries=pool.entries, apply=pool.apply, fingerprint="other")
    with pytest.raises(IncompatibleError, match="another pool"):
        train_extractor(other, paths, tmp_path / "cut.pt", cfg, resume=True)
    with pytest.raises(IncompatibleError, match="lr"):
        train_extractor(pool, paths, tmp_path / "cut.pt", make_config("paper", **{**MICRO, "lr": 1e-2}), resume=True)
    # half_weights only changes the exported file, so it may differ from the interrupted run
    train_extractor(pool, paths, tmp_path / "cut.pt", make_config("paper", **MICRO, half_weights=True), resume=True,
                    calibrate=False)
    a = load_checkpoint(full_run[0])
    b = load_checkpoint(tmp_path / "cut.pt")
    assert a["identity"] != b["identity"] and set(a["state_dict"]) == set(b["state_dict"])
    for key, value in a["state_dict"].items():
        if value.is_floating_point():
            assert b["state_dict"][key].dtype == torch.float16
            assert torch.equal(value.half(), b["state_dict"][key]), key
        else:
            assert torch.equal(value, b["state_dict"][key])
    assert TrainedExtractor.from_checkpoint(tmp_path / "cut.pt").identity == b["identity"]
    assert [r["epoch"] for r in b["history"]] == [0, 1, 2]
    assert [json.loads(x)["epoch"] for x in (tmp_path / "cut.jsonl").read_text().splitlines()] == [0, 1, 2]
    with pytest.raises(InputError, match="already complete"):
        train_extractor(pool, paths, tmp_path / "cut.pt", cfg, resume=True)



def test_warm_start_keeps_validation_zero_shot(full_run, pool, photo_dir, tmp_path):
    first = load_checkpoint(full_run[0], kind="extractor")
    held, seen = set(first["heldout_archs"]), set(first["seen_archs"])
    assert held and seen and not held & seen
    assert seen == {pool.entries[i].arch.code for i in first["train_model_ids"]}
    paths = list_images(photo_dir)
    # holding out an architecture the init trained on is refused before any work
    taken = sorted(seen)[0]
    cfg = make_config("paper", **{**MICRO, "holdout_archs": taken})
    with pytest.raises(InputError, match="contaminated"):
        train_extractor(pool, paths, tmp_path / "bad.pt", cfg, init=full_run[0])
    assert not (tmp_path / "bad.pt").exists()
    # the init's own held-out architectures stay valid; the new file records both runs' architectures
    cfg = make_config("paper", **{**MICRO, "epochs": 1, "holdout_archs": ",".join(sorted(held))})
    train_extractor(pool, paths, tmp_path / "warm.pt", cfg, init=full_run[0], calibrate=False)
    warm = load_checkpoint(tmp_path / "warm.pt", kind="extractor")
    assert set(warm["seen_archs"]) >= seen and not set(warm["seen_archs"]) & held
    # a bad --init is reported before any pool or photo is read
    with pytest.raises(InputError, match="no such weights file for --init"):
        train_extractor(tmp_path / "no-pool.h5", paths, tmp_path / "x.pt", cfg, init=tmp_path / "nope.pt")

def test_bad_real_input(pool, tmp_path, photo_dir):
    one = list_images(photo_dir)[:1]
    with pytest.raises(InputError, match="at least 2"):
        train_extractor(pool, one, tmp_path / "x.pt", make_config("paper", **MICRO))


# ------------------------------------------------------------------------------------------ CLI


def test_cli_tiny_preset(pool_file, photo_dir, tmp_path):
    from typer.testing import CliRunner

    from fpforensics.cli.app import app

    out = tmp_path / "tiny.pt"
    args = ["--device", "cpu", "train", "extractor", "--pool", str(pool_file), "--real", str(photo_dir), "--out", str(out),
            "--preset", "tiny", "--epochs", "1", "--steps-per-epoch", "1", "--max-val-models", "3",
            "--batch-size", "6", "--no-augment", "--no-calibration"]
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["epochs"] == 1 and data["identity"].startswith("resnet18:") and 0 <= data["val_acc"] <= 1
    assert "zero-shot 10-shot acc" in res.stderr and "before training" in res.stderr and "chance 33.3%" in res.stderr
    ckpt = load_checkpoint(out, kind="extractor")
    assert ckpt["config"]["p"] == 2 and ckpt["config"]["k"] == 3 and ckpt["config"]["augment"] is False
    assert "calibration" not in ckpt  # --no-calibration
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    other = write_test_pool(tmp_path / "other.h5", seeds=(0, 1, 3))
    i = args.index(str(pool_file))
    mismatch = CliRunner().invoke(app, [*args[:i], str(other), *args[i + 1:], "--epochs", "2", "--resume"])
    assert mismatch.exit_code == 2 and "another pool" in mismatch.stderr
    missing = CliRunner().invoke(app, [*args[:i], str(tmp_path / "nope.h5"), *args[i + 1:], "--overwrite"])
    assert missing.exit_code == 2 and "no such pool" in missing.stderr


@pytest.mark.parametrize("extra, message", [
    (["--backbone", "vgg16"], "--backbone"),
    (["--batch-size", "7"], "multiple of K"),
    (["--preset", "huge"], "unknown preset"),
    (["--epochs", "0"], "--epochs"),
])
def test_cli_extractor_bad_options(photo_dir, tmp_path, extra, message):
    from typer.testing import CliRunner

    from fpforensics.cli.app import app

    res = CliRunner().invoke(app, ["train", "extractor", "--pool", str(tmp_path / "p.h5"), "--real", str(photo_dir),
                                   "--out", str(tmp_path / "e.pt"), *extra])
    assert res.exit_code == 2 and message in res.stderr and "Traceback" not in res.output


def test_cli_extractor_empty_real(tmp_path):
    from typer.testing import CliRunner

    from fpforensics.cli.app import app

    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(app, ["train", "extractor", "--pool", str(tmp_path / "p.h5"), "--real",
                                   str(tmp_path / "empty"), "--out", str(tmp_path / "e.pt")])
    assert res.exit_code == 2 and "no images found" in res.stderr


def test_real_class_low_res_and_resize_recipe(pool, photo_dir, tmp_path):
    """The real-photo class, small generators and resize augmentation train end to end and are recorded."""
    from fpforensics.extractor.batches import REAL_ID, fingerprinted_images

    crops = torch.rand(4, 3, 32, 32)
    ids = torch.tensor([0, REAL_ID, 1, REAL_ID])
    out = fingerprinted_images(pool, ids, crops, torch.device("cpu"), lowres=0, to_8bit=True)
    assert torch.equal(out[1], quantize(crops[1])) and torch.equal(out[3], quantize(crops[3]))
    assert not torch.equal(out[0], quantize(crops[0]))
    assert torch.equal(out * 255, (out * 255).round())  # every pixel on the 8-bit grid
    small = fingerprinted_images(pool, ids, crops, torch.device("cpu"), lowres=16, to_8bit=True)
    assert small.shape == crops.shape  # generated at 16 px, brought back up to 32 like a small image
    cfg = make_config("paper", **{**MICRO, "p": 3, "real_class": True, "lowres_p": 1.0, "resize_p": 1.0, "epochs": 1})
    train_extractor(pool, list_images(photo_dir), tmp_path / "r.pt", cfg, calibrate=False)
    ckpt = load_checkpoint(tmp_path / "r.pt", kind="extractor")
    assert ckpt["config"]["real_class"] and ckpt["config"]["lowres_p"] == 1.0
    with pytest.raises(InputError, match="--p must be at least 2 \\(3 with --real-class\\)"):
        make_config("paper", **{**MICRO, "p": 2, "real_class": True})
