"""`fpt eval --manifpt`: the ManiFPT attributor scored on the extractors' splits, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fpforensics.cli.app import app
from fpforensics.evaluation import manifpt, protocols

runner = CliRunner()


@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory):
    """DATASET/<model>: 3 'models' = noisy flat images + distinct periodic traces; REAL: the same without trace."""
    root = tmp_path_factory.mktemp("mf")
    data, real = root / "data", root / "real"
    real.mkdir()
    rng = np.random.default_rng(0)

    def base() -> np.ndarray:
        return rng.uniform(90, 160) + 4.0 * rng.standard_normal((96, 96, 3))

    for m, period in enumerate((2, 3, 5)):
        d = data / f"model{m}"
        d.mkdir(parents=True)
        for i in range(8):
            grid = np.zeros((96, 96, 1))
            grid[::period, ::period] = 20.0
            Image.fromarray(np.clip(base() + grid, 0, 255).astype(np.uint8)).save(d / f"img{i:02d}.png")
    for i in range(6):
        Image.fromarray(np.clip(base(), 0, 255).astype(np.uint8)).save(real / f"real{i}.png")
    return data, real


def test_attributor_uses_the_extractors_splits(monkeypatch):
    """Separable artifacts give perfect scores; the splits are exactly those of protocols.identification."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 7)
    x = np.eye(4)[labels] @ rng.standard_normal((4, 30)) * 5 + 0.01 * rng.standard_normal((len(labels), 30))
    seen: dict[str, list] = {"attributor": [], "extractor": []}
    record = seen["attributor"]
    real_split = protocols.shot_split

    def spy(*args, **kwargs):
        split = real_split(*args, **kwargs)
        record.append(tuple(part.tolist() for part in split))
        return split

    monkeypatch.setattr(protocols, "shot_split", spy)
    ident = manifpt.identification(x, labels, shots=3, repeats=2, seed=4)
    assert ident.top1 == [1.0, 1.0] and ident.macro_f1 == [1.0, 1.0] and ident.k_top5 == 4
    assert ident.queries == 4 * 4 and ident.confusion.trace() == 2 * 16
    record = seen["extractor"]
    protocols.identification(x, labels, shots=3, repeats=2, seed=4)
    assert len(seen["attributor"]) == 2 and seen["attributor"] == seen["extractor"]
    assert seen["attributor"][0] != seen["attributor"][1]  # each repeat its own split
    shuffled = manifpt.identification(rng.standard_normal((len(labels), 30)), labels, shots=3, repeats=3, seed=4)
    assert np.mean(shuffled.top1) < 0.7  # noise artifacts: no better than a weak guess


def test_eval_manifpt_end_to_end(fixture_dirs, tmp_path):
    data, real = fixture_dirs
    out = tmp_path / "report"
    args = ["--device", "cpu", "eval", str(data), "-e", "spectral", "--manifpt", "freq", "--real", str(real),
            "--out", str(out), "--shots", "4", "--repeats", "2", "--pairs", "100", "--no-figures"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "manifpt" in res.output and "(attributor)" in res.output
    report = json.loads((out / "report.json").read_text())
    r = report["results"]["manifpt[freq]"]["clean"]
    top1 = r["identification"]["top1"]["mean"]
    assert 0 <= top1 <= 1 and top1 > 0.8  # 3 models: chance is 1/3
    assert len(r["identification"]["per_repeat"]["top1"]) == 2
    assert r["verification"] is None and r["open_set"] is None
    assert r["identification"]["queries_per_repeat"] == \
        report["results"]["spectral"]["clean"]["identification"]["queries_per_repeat"] == 3 * 4
    (a,) = report["attributors"]
    assert a["space"] == "freq" and a["real_images"] == 6 and a["cached"] is False
    assert a["artifact_dim"] == 3 * 64 * 64 and "manifpt" in report["protocol_notes"]
    # a re-run reuses the cached artifacts and gives the same numbers
    res2 = runner.invoke(app, args + ["--json", "--overwrite"])  # the first report is replaced only when asked
    assert res2.exit_code == 0, res2.output
    again = json.loads(res2.stdout)
    assert again["attributors"][0]["cached"] is True
    assert again["results"]["manifpt[freq]"] == report["results"]["manifpt[freq]"]


@pytest.mark.parametrize("extra, message", [
    (["--manifpt", "freq"], "--manifpt needs --real"),
    (["--manifpt", "ssl", "--real", "."], "unknown space"),
    (["--manifpt", "rgb", "--real", "/nonexistent/real"], "no such folder"),
])
def test_eval_manifpt_bad_options(fixture_dirs, tmp_path, extra, message):
    data, _ = fixture_dirs
    res = runner.invoke(app, ["eval", str(data), "-e", "spectral", "--out", str(tmp_path / "o"), *extra])
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output
