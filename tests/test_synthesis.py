"""fpt synthesize: architecture grid, packing exactness, pool format, resume, shards, CLI errors."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fpforensics.cli.app import app
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.sharding import parse_shard, shard_items
from fpforensics.synthesis.architectures import OPTIONS, all_architectures, build_autoencoder, parse_grid
from fpforensics.synthesis.build import synthesize_pool
from fpforensics.synthesis.packed import PackedAutoencoder
from fpforensics.synthesis.pool import SyntheticPool, merge_pools
from fpforensics.synthesis.training import RealData, TrainConfig, train_pack

runner = CliRunner()
TINY = TrainConfig(max_steps=3, batch_size=2, crop=32, calib_batches=1)
GRID2 = "K=1,L=1,U=nearest,A=none|relu,N=none|batch,S=post"  # 4 cheap architectures


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory) -> Path:
    from PIL import Image
    from skimage import data as skd

    root = tmp_path_factory.mktemp("real")
    for name in ("astronaut", "chelsea", "coffee"):
        img = Image.fromarray(getattr(skd, name)()).resize((160, 140))
        img.save(root / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def tiny_data(real_dir) -> RealData:
    return RealData.from_folder(real_dir, crop=32)


def test_grid_has_288_unique_architectures_with_expected_option_counts():
    archs = all_architectures()
    assert len(archs) == 288 and len(set(archs)) == 288
    assert len({a.code for a in archs}) == 288 and [a.index for a in archs] == list(range(288))
    for key, values in OPTIONS.items():
        counts = Counter(getattr(a, key) for a in archs)
        assert set(counts) == set(values)
        assert all(c == 288 // len(values) for c in counts.values())
    assert len(parse_grid("U=deconv,A=relu|tanh")) == 288 // 3 * 2 // 4


def test_every_architecture_maps_3x128x128_to_3x128x128():
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        for spec in all_architectures():
            assert build_autoencoder(spec, 0).eval()(x).shape == (1, 3, 128, 128), spec.code


@pytest.mark.parametrize("code", ["K1L2UdAtNbSe", "K2L1UbAsNiSo"])
def test_packed_forward_equals_separate_models(code):
    from fpforensics.synthesis.architectures import ArchitectureSpec

    spec = ArchitectureSpec.from_code(code)
    x = torch.rand(2, 3, 32, 32)
    packed = PackedAutoencoder.from_seeds(spec, [3, 5, 7])
    for sd, seed in zip(packed.unpack(), [3, 5, 7], strict=True):
        ref = build_autoencoder(spec, seed).state_dict()
        assert all(torch.equal(sd[k], ref[k]) for k in ref)
    y = packed(x)  # train mode: batch statistics, running stats updated per model
    for j, seed in enumerate([3, 5, 7]):
        alone = build_autoencoder(spec, seed)
        torch.testing.assert_close(y[:, j], alone(x), atol=1e-5, rtol=1e-4)
        for k, v in alone.state_dict().items():
            torch.testing.assert_close(packed.unpack()[j][k], v, msg=k)


def _biases_before_batchnorm(module: torch.nn.Module) -> dict[str, str]:
    """Conv bias -> running_mean of the batch norm right after it. Such a bias cancels out of the
    output, so its gradient is pure float rounding noise that Adam normalises into +-lr steps (and
    the running mean follows it); only their difference matters and is compared."""
    dead = {}
    for name, mod in module.named_modules():
        if isinstance(mod, torch.nn.Sequential):
            kids = list(mod.named_children())
            for (n1, a), (n2, b) in zip(kids, kids[1:], strict=False):
                if isinstance(a, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d):
                    dead[f"{name}.{n1}.bias".lstrip(".")] = f"{name}.{n2}.running_mean".lstrip(".")
    return dead


@pytest.mark.parametrize("backend", ["grouped", "looped"])
def test_pack_equals_alone_weights(tiny_data, backend):
    """Same (arch, seed) trained in a pack of 3 and alone ends with the same weights (and outputs)."""
    from fpforensics.synthesis.architectures import ArchitectureSpec

    spec = ArchitectureSpec.from_code("K1L2UdArNbSo")
    dead = _biases_before_batchnorm(build_autoencoder(spec, 0))
    assert "down.0.1.bias" in dead and len(dead) == 4
    x = torch.rand(2, 3, 32, 32)
    # eta reached by nobody -> all run the full budget; with TINY some models may stop early.
    for cfg in (TrainConfig(max_steps=4, batch_size=2, crop=32, calib_batches=1, eta=1e-9), TINY):
        # fp32: with --precision auto a CPU with AVX-512 BF16 trains in bf16, where grouped and single
        # convolutions round differently (outputs 8e-3 apart after 4 steps); the packing is what is tested here
        pack = train_pack(spec, [0, 1, 2], tiny_data, cfg, backend=backend, channels_last=False, precision="fp32")
        for seed in (0, 2):
            alone = train_pack(spec, [seed], tiny_data, cfg, backend="looped", channels_last=False,
                               precision="fp32")[0]
            p = pack[seed]
            assert p.seed == seed and p.steps == alone.steps and p.reached_eta == alone.reached_eta
            assert p.final_loss == pytest.approx(alone.final_loss, rel=1e-4, abs=1e-6)
            for k, v in alone.state_dict.items():
                if backend == "looped":  # same kernels, same order: bit-identical
                    assert torch.equal(p.state_dict[k], v), k
                elif k in dead:  # bounded by Adam's step size; bias - running mean agrees
                    assert (p.state_dict[k] - v).abs().max() <= cfg.lr * (cfg.max_steps + 1)
                    rm = dead[k]
                    torch.testing.assert_close(p.state_dict[rm] - p.state_dict[k], alone.state_dict[rm] - v,
                                               atol=2e-5, rtol=1e-4, msg=k)
                elif k not in dead.values():
                    torch.testing.assert_close(p.state_dict[k].float(), v.float(), atol=2e-5, rtol=1e-4, msg=k)
            ma, mp = build_autoencoder(spec, 0).eval(), build_autoencoder(spec, 0).eval()
            ma.load_state_dict(alone.state_dict)
            mp.load_state_dict(p.state_dict)
            with torch.no_grad():
                torch.testing.assert_close(mp(x), ma(x), atol=1e-4, rtol=1e-4)


def test_early_stop_snapshots_model_at_eta(tiny_data):
    from fpforensics.synthesis.architectures import ArchitectureSpec

    spec = ArchitectureSpec.from_code("K1L1UnA0N0So")
    first = train_pack(spec, [0], tiny_data, TrainConfig(max_steps=0, batch_size=2, crop=32, calib_batches=1))[0]
    eta = first.final_loss * 1.5  # reached at step 0: no update applied, snapshot = initial weights
    m = train_pack(spec, [0], tiny_data, TrainConfig(max_steps=5, batch_size=2, crop=32, calib_batches=1, eta=eta))[0]
    assert m.reached_eta and m.steps == 0 and m.final_loss <= eta
    init = build_autoencoder(spec, 0).state_dict()
    torch.testing.assert_close(m.state_dict["down.0.1.weight"], init["down.0.1.weight"])
    assert np.isfinite(m.eval_loss)


def test_real_data_stream_is_deterministic(tiny_data, real_dir):
    again = RealData.from_folder(real_dir, crop=32)
    assert again.fingerprint == tiny_data.fingerprint
    a, b = tiny_data.batch(11, 3, 32, torch.device("cpu")), again.batch(11, 3, 32, torch.device("cpu"))
    assert torch.equal(a, b) and a.shape == (3, 3, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert not torch.equal(a, tiny_data.batch(12, 3, 32, torch.device("cpu")))


def test_pool_roundtrip_apply_subset_and_fingerprint(tmp_path, tiny_data):
    out = tmp_path / "pool.h5"
    specs = parse_grid(GRID2)
    summary = synthesize_pool(tiny_data, out, specs, range(2), TINY, pack_size=2)
    assert summary.complete and len(summary.trained) == 8 and not (tmp_path / "pool.h5.parts").exists()
    pool = SyntheticPool.open(out)
    assert len(pool) == 8
    assert [(e.arch.index, e.seed) for e in pool.entries] == sorted((s.index, k) for s in specs for k in range(2))
    trained = {(m.spec.code, m.seed): m for m in summary.trained}
    e = pool.entries[5]
    assert e.steps == trained[(e.arch.code, e.seed)].steps and e.final_loss == trained[(e.arch.code, e.seed)].final_loss
    module = pool.load_module(5)
    assert not module.training and not any(p.requires_grad for p in module.parameters())
    for k, v in trained[(e.arch.code, e.seed)].state_dict.items():
        torch.testing.assert_close(module.state_dict()[k].float(), v.float(), msg=k)
    x = torch.rand(5, 3, 32, 32)
    ids = torch.tensor([5, 0, 5, 7, 0])
    y = pool.apply(ids, x, "cpu")
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    with torch.no_grad():
        torch.testing.assert_close(y[0], module(x[:1])[0].clamp(0, 1))
        torch.testing.assert_close(y[3], pool.load_module(7)(x[3:4])[0].clamp(0, 1))
    sub = pool.subset([7, 5])
    assert len(sub) == 2 and sub.entries[0] == pool.entries[7]
    assert len(pool.fingerprint) == 16 and sub.fingerprint != pool.fingerprint
    assert SyntheticPool.open(out).fingerprint == pool.fingerprint
    with pytest.raises(InputError):
        pool.apply(torch.tensor([8]), x[:1])
    with h5py.File(out) as f:
        assert f.attrs["fpt_format"] == "pool" and f["index"].shape == (8,)


def test_resume_after_interruption_keeps_finished_models(tmp_path, tiny_data):
    out = tmp_path / "pool.h5"
    specs = parse_grid(GRID2)

    class Stop(Exception):
        pass

    packs: list[list[str]] = []

    def stop_after_two(trained):
        packs.append([f"{m.spec.code}-{m.seed}" for m in trained])
        if len(packs) == 2:
            raise Stop

    with pytest.raises(Stop):
        synthesize_pool(tiny_data, out, specs, range(2), TINY, pack_size=2, on_pack=stop_after_two)
    assert not out.exists() and len(list((tmp_path / "pool.h5.parts").glob("*.h5"))) == 2
    partial = SyntheticPool.open(tmp_path / "pool.h5.parts")  # a parts folder reads as a pool
    assert len(partial) == 4
    kept = {e.name: e.digest for e in partial.entries}
    summary = synthesize_pool(tiny_data, out, specs, range(2), TINY, pack_size=2)
    assert summary.already_done == 4 and len(summary.trained) == 4 and summary.complete
    pool = SyntheticPool.open(out)
    names = [e.name for e in pool.entries]
    assert len(names) == 8 and len(set(names)) == 8
    assert all(pool.entries[names.index(n)].digest == d for n, d in kept.items())
    again = synthesize_pool(tiny_data, out, specs, range(2), TINY, pack_size=2)  # nothing left to do
    assert again.trained == [] and SyntheticPool.open(out).fingerprint == pool.fingerprint
    # Killed after the final merge but before the parts were removed: models in both places.
    (tmp_path / "pool.h5.parts").mkdir()
    shutil.copyfile(out, tmp_path / "pool.h5.parts" / "part-copy.h5")
    again = synthesize_pool(tiny_data, out, specs, range(2), TINY, pack_size=2)
    assert again.trained == [] and not (tmp_path / "pool.h5.parts").exists()
    assert SyntheticPool.open(out).fingerprint == pool.fingerprint
    # Adding seeds extends the same pool.
    more = synthesize_pool(tiny_data, out, specs[:1], range(3), TINY, pack_size=2)
    assert len(more.trained) == 1 and len(SyntheticPool.open(out)) == 9
    with pytest.raises(IncompatibleError, match="other training settings"):
        synthesize_pool(tiny_data, out, specs, range(2), TrainConfig(max_steps=3, batch_size=2, crop=32,
                                                                     calib_batches=1, eta=0.01))


def test_shards_union_is_full_grid_without_overlap(tmp_path, tiny_data):
    models = [(s, k) for s in all_architectures() for k in range(20)]
    for n in (1, 3, 7, 288, 1000):
        parts = [shard_items(models, i, n, group=lambda m: m[0]) for i in range(n)]
        flat = [m for p in parts for m in p]
        assert len(flat) == len(models) and set(flat) == set(models)
    assert parse_shard("2/5") == (2, 5)
    with pytest.raises(InputError):
        parse_shard("5/5")
    # Real shard files, merged, equal a single run.
    specs = parse_grid(GRID2)[:2]
    (tmp_path / "shards").mkdir()
    for i in range(2):
        synthesize_pool(tiny_data, tmp_path / "shards" / f"s{i}.h5", specs, range(2), TINY, shard=(i, 2))
    sizes = [len(SyntheticPool.open(tmp_path / "shards" / f"s{i}.h5")) for i in range(2)]
    assert sizes == [2, 2]
    folder = SyntheticPool.open(tmp_path / "shards")
    merged = merge_pools([tmp_path / "shards"], tmp_path / "full.h5")
    single = tmp_path / "single.h5"
    synthesize_pool(tiny_data, single, specs, range(2), TINY)
    assert folder.fingerprint == merged.fingerprint == SyntheticPool.open(single).fingerprint


def test_shard_from_environment(monkeypatch):
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert parse_shard(None) == (1, 4)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert parse_shard(None) == (3, 8)


def test_cli_tiny_real_run_and_merge(tmp_path, real_dir):
    out = tmp_path / "pool.h5"
    args = ["--device", "cpu", "synthesize", "--arch-grid", "K=1,L=1,U=nearest|deconv,A=relu,N=none,S=post",
            "--seeds", "2", "--real", str(real_dir), "--out", str(out), "--max-steps", "2", "--batch-size", "1"]
    res = runner.invoke(app, args + ["--json"])
    assert res.exit_code == 0, res.output
    assert '"trained": 4' in res.output and '"complete": true' in res.output
    pool = SyntheticPool.open(out)
    assert len(pool) == 4 and {e.arch.U for e in pool.entries} == {"nearest", "deconv"}
    assert all(e.steps <= 2 for e in pool.entries)
    res = runner.invoke(app, args)  # resume: nothing to do, table still printed
    assert res.exit_code == 0, res.output
    assert "Synthetic models" in res.output
    res = runner.invoke(app, ["synthesize", "--merge", str(out), "--out", str(tmp_path / "m.h5")])
    assert res.exit_code == 0 and "4 models" in res.output
    assert SyntheticPool.open(tmp_path / "m.h5").fingerprint == pool.fingerprint


@pytest.mark.parametrize("case", ["empty_real", "unwritable_out", "bad_grid", "bad_value", "bad_shard", "bad_loss"])
def test_cli_bad_input_exits_2_before_work(tmp_path, real_dir, case):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images")
    out = tmp_path / "pool.h5"
    args = {"real": str(real_dir), "out": str(out), "grid": "U=deconv", "extra": []}
    if case == "empty_real":
        args["real"] = str(empty)
    elif case == "unwritable_out":
        args["out"] = str(tmp_path / "missing_dir" / "pool.h5")
    elif case == "bad_grid":
        args["grid"] = "Q=7"
    elif case == "bad_value":
        args["grid"] = "U=cubic"
    elif case == "bad_shard":
        args["extra"] = ["--shard", "3/2"]
    elif case == "bad_loss":
        args["extra"] = ["--loss", "huber"]
    res = runner.invoke(app, ["--device", "cpu", "synthesize", "--real", args["real"], "--out", args["out"],
                              "--arch-grid", args["grid"], "--seeds", "1", "--max-steps", "1", *args["extra"]])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "Traceback" not in res.output
    assert not out.exists() and not (tmp_path / "pool.h5.parts").exists()


def test_open_rejects_bad_pool_files(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(InputError):
        SyntheticPool.open(bad)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["fpt_format"] = "gallery"
    with pytest.raises(IncompatibleError):
        SyntheticPool.open(tmp_path / "other.h5")
    with pytest.raises(InputError):
        SyntheticPool.open(tmp_path / "nothing.h5")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(InputError):
        SyntheticPool.open(tmp_path / "emptydir")


def test_instance_norm_never_normalises_the_rgb_output():
    """Grid v2: a "post" instance-norm model's output follows its input's brightness (else eta is unreachable)."""
    from fpforensics.synthesis.architectures import ArchitectureSpec

    x = torch.rand(1, 3, 32, 32) * 0.5
    for code, follows in (("K1L1UnA0NiSo", True), ("K2L2UbA0NiSo", True)):
        model = build_autoencoder(ArchitectureSpec.from_code(code), 0).eval()
        with torch.no_grad():
            shift = (model(x + 0.4) - model(x)).mean().item()
        assert (abs(shift) > 1e-3) == follows, code
        assert not isinstance(model.up[-1][-2], torch.nn.InstanceNorm2d)
    inner = build_autoencoder(ArchitectureSpec.from_code("K2L1UnA0NiSo"), 0)
    assert isinstance(inner.up[0][2], torch.nn.InstanceNorm2d)  # hidden up-blocks keep their norm


def test_plateau_stops_a_converged_model_before_the_budget(tiny_data):
    from fpforensics.synthesis.architectures import ArchitectureSpec

    spec = ArchitectureSpec.from_code("K1L1UnA0N0So")
    # tol 0.99: a window must cut the loss 100-fold, so the second window ends training.
    cfg = TrainConfig(max_steps=50, batch_size=2, crop=32, calib_batches=1, eta=1e-9, plateau_window=2,
                      plateau_tol=0.99)
    m = train_pack(spec, [0], tiny_data, cfg)[0]
    assert m.steps == 3 and not m.reached_eta
    never = train_pack(spec, [0], tiny_data, TrainConfig(max_steps=6, batch_size=2, crop=32, calib_batches=1,
                                                         eta=1e-9))[0]
    assert never.steps == 6


def test_pools_that_differ_only_in_stopping_rules_combine(tmp_path, tiny_data):
    import json

    specs = parse_grid(GRID2)
    synthesize_pool(tiny_data, tmp_path / "a.h5", specs[:2], range(1), TINY)
    short = TrainConfig(max_steps=1, batch_size=2, crop=32, calib_batches=1, plateau_window=1)
    synthesize_pool(tiny_data, tmp_path / "b.h5", specs[2:], range(1), short)
    merged = merge_pools([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "ab.h5")
    assert len(merged) == 4
    cfg = json.loads(merged.config_json)
    assert cfg["batch_size"] == 2 and "max_steps" not in cfg
    assert {r["max_steps"] for r in cfg["stopping"]} == {3, 1}
    assert [e.steps <= 1 for e in merged.entries] == [False, False, True, True] or all(
        e.steps <= 3 for e in merged.entries)
    # Another batch size defines other models: refused.
    other = TrainConfig(max_steps=1, batch_size=1, crop=32, calib_batches=1)
    synthesize_pool(tiny_data, tmp_path / "c.h5", specs[:1], range(1, 2), other)
    with pytest.raises(IncompatibleError, match="stopping rules"):
        merge_pools([tmp_path / "a.h5", tmp_path / "c.h5"], tmp_path / "ac.h5")
    assert not (tmp_path / "ac.h5").exists()


def test_pool_of_grid_v1_keeps_its_architecture(tmp_path):
    """A pool written before grid v2 (no grid_version in its config) loads with the instance norm on its RGB output."""
    import json

    from fpforensics.synthesis.architectures import ArchitectureSpec, SyntheticAutoencoder
    from fpforensics.synthesis.pool import PoolRecord, flatten_state_dict, state_layout, write_pool

    spec = ArchitectureSpec.from_code("K1L1UnA0NiSo")
    old = SyntheticAutoencoder(spec, 8, grid_version=1).eval()
    with torch.no_grad():
        for p in old.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    layout = state_layout(spec, 8, grid_version=1)
    assert len(layout) > len(state_layout(spec, 8))  # the output norm's affine weights
    config = json.dumps({"eta": 0.005, "loss": "l2", "max_steps": 100})  # as written before versions
    row = flatten_state_dict(old.state_dict(), layout)
    write_pool(tmp_path / "v1.h5", [PoolRecord(spec, 0, 0.01, 0.01, 100, False, row)], config, "data", 8)
    pool = SyntheticPool.open(tmp_path / "v1.h5")
    assert pool.grid_version == 1
    module = pool.load_module(0)
    assert isinstance(module.up[-1][-2], torch.nn.InstanceNorm2d)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(module(x), old(x))
