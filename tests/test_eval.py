"""`fpt eval`: protocol metrics against scikit-learn / known answers, pairs, perturbations, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_periodic_models
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve
from typer.testing import CliRunner

from fpforensics import perturbations as perturb
from fpforensics.cli.app import app
from fpforensics.errors import InputError
from fpforensics.evaluation import protocols
from fpforensics.metrics import l2_normalize

runner = CliRunner()


def separable(n_models: int = 4, per_model: int = 15, dim: int = 16, noise: float = 0.01, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_models), per_model)
    centers = np.eye(dim)[:n_models]
    return centers[labels] + noise * rng.standard_normal((len(labels), dim)), labels


# ---------------------------------------------------------------------------- metrics


def test_separable_embeddings_are_perfect():
    emb, labels = separable()
    ident = protocols.identification(emb, labels, shots=5, repeats=3, seed=1)
    assert ident.top1 == [1.0] * 3 and ident.top5 == [1.0] * 3 and ident.macro_f1 == [1.0] * 3
    assert ident.confusion.trace() == ident.confusion.sum() == 3 * 4 * 10
    ver = protocols.verification(emb, labels, pairs=400, repeats=2, seed=1)
    assert ver.auc == [1.0, 1.0] and ver.eer == [0.0, 0.0] and ver.tpr_at_fpr1 == [1.0, 1.0]
    assert ver.accuracy == [1.0, 1.0] and ver.oracle_accuracy == [1.0, 1.0]
    q = protocols.embedding_quality(emb, labels)
    assert q["silhouette"] > 0.9 and q["davies_bouldin"] < 0.1
    noisy = protocols.embedding_quality(*separable(noise=1.0))
    assert noisy["silhouette"] < q["silhouette"] and noisy["davies_bouldin"] > q["davies_bouldin"]
    o = protocols.open_set(emb, labels, shots=5, repeats=2, seed=1)
    assert o["auroc"]["mean"] == 1.0 and o["models_left_out"] == 1
    assert o["unknown_reject_rate"]["mean"] == 1.0 and o["known_accept_rate"]["mean"] == 1.0


def test_identical_embeddings_are_chance():
    labels = np.repeat(np.arange(4), 12)
    emb = np.ones((len(labels), 8))
    ident = protocols.identification(emb, labels, shots=4, repeats=2)
    assert ident.top1 == [0.25, 0.25]  # every query goes to the first model
    ver = protocols.verification(emb, labels, pairs=200, repeats=1)
    assert ver.auc == [0.5] and ver.eer == [pytest.approx(0.5)] and ver.oracle_accuracy == [0.5]
    o = protocols.open_set(emb, labels, shots=4, repeats=1)
    assert o["auroc"]["mean"] == 0.5


def test_curve_metrics_match_brute_force():
    rng = np.random.default_rng(3)
    same = rng.random(500) < 0.5
    scores = rng.normal(0, 1, 500) + 1.2 * same
    fpr, tpr, _ = roc_curve(same, scores)
    eer = protocols.equal_error_rate(fpr, tpr)
    # brute force: the threshold where FPR and FNR cross
    ts = np.sort(scores)
    far = np.array([(scores[~same] >= t).mean() for t in ts])
    frr = np.array([(scores[same] < t).mean() for t in ts])
    k = np.argmin(np.abs(far - frr))
    assert abs(eer - (far[k] + frr[k]) / 2) < 0.01
    thr, acc = protocols.best_accuracy_threshold(scores, same)
    brute = max(((scores >= t) == same).mean() for t in ts)
    assert acc == pytest.approx(brute) and protocols.accuracy_at(scores, same, thr) == pytest.approx(brute)
    # TPR at FPR 1%: the best TPR among thresholds that accept at most 1% of negatives
    brute_tpr = max((scores[same] >= t).mean() for t in ts if (scores[~same] >= t).mean() <= 0.01)
    assert protocols.tpr_at_fpr(fpr, tpr) == pytest.approx(brute_tpr)
    ver = protocols.verification(*separable(noise=0.8, seed=5), pairs=300, repeats=1, seed=2)
    assert ver.auc[0] == pytest.approx(roc_auc_score(ver.same, ver.scores))


def test_macro_f1_matches_sklearn_on_noisy_embeddings():
    from sklearn.metrics import f1_score

    emb, labels = separable(n_models=5, noise=0.6, seed=2)
    ident = protocols.identification(emb, labels, shots=3, repeats=1, seed=4)
    gal, qry = protocols.shot_split(labels, 3, protocols._rng(4, 1, 0))
    fp = protocols.fingerprints(emb[gal], labels[gal], 5)
    pred = (l2_normalize(emb[qry]) @ fp.T).argmax(1)
    assert ident.macro_f1[0] == pytest.approx(f1_score(labels[qry], pred, average="macro"))
    assert ident.top1[0] == pytest.approx((pred == labels[qry]).mean())
    assert 0 < ident.top1[0] < 1


def test_pair_sampler_is_seeded_and_balanced():
    labels = np.array([0] * 3 + [1] * 10 + [2] * 1 + [3] * 6)
    a, b, same = protocols.sample_pairs(labels, 1001, np.random.default_rng(7))
    a2, b2, same2 = protocols.sample_pairs(labels, 1001, np.random.default_rng(7))
    a3, _, _ = protocols.sample_pairs(labels, 1001, np.random.default_rng(8))
    assert np.array_equal(a, a2) and np.array_equal(b, b2) and np.array_equal(same, same2)
    assert not np.array_equal(a, a3)
    assert same.sum() == 500 and (~same).sum() == 501
    assert np.all(labels[a[same]] == labels[b[same]]) and np.all(a[same] != b[same])
    assert np.all(labels[a[~same]] != labels[b[~same]])
    assert 2 not in labels[a[same]]  # a one-image model has no same-model pair
    assert set(labels[b[~same]]) == {0, 1, 2, 3}
    with pytest.raises(InputError):
        protocols.sample_pairs(np.zeros(5, int), 10, np.random.default_rng(0))


def test_too_few_images_for_shots_is_an_input_error():
    with pytest.raises(InputError, match="shots"):
        protocols.identification(*separable(per_model=5), shots=5, repeats=1)


# ---------------------------------------------------------------------------- perturbations


def test_perturbations(photos):
    img = torch.from_numpy(photos[0][:96, :128].astype(np.float32) / 255).permute(2, 0, 1).contiguous()
    q100 = perturb.Perturbation("jpeg", 100).apply(img)
    q50 = perturb.Perturbation("jpeg", 50).apply(img)
    assert q50.shape == img.shape and q50.dtype == torch.float32
    assert (q50 - img).abs().mean() > 2 * (q100 - img).abs().mean() > 0
    (crop1,) = perturb.parse_perturb("crop:1.0")
    assert crop1.is_identity and torch.equal(crop1.apply(img, seed=0, index=3), img)
    (crop,) = perturb.parse_perturb("crop:0.5")
    a, b, c = crop.apply(img, 0, 1), crop.apply(img, 0, 1), crop.apply(img, 0, 2)
    assert a.shape == img.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert (a - img).abs().mean() > 0.01
    assert [p.label for p in perturb.parse_perturbations(["jpeg:90,75", "crop:1,0.8", "jpeg:90"])] == [
        "jpeg:90", "jpeg:75", "crop:1", "crop:0.8"]
    for bad in ("jpeg:101", "jpeg:9.5", "crop:0", "crop:1.5", "blur:3", "jpeg", "jpeg:x"):
        with pytest.raises(InputError):
            perturb.parse_perturb(bad)


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory, photos):
    """ROOT/<model>: 3 'models' = real 128 crops with distinct periodic patterns (10 images each) + a tiny one."""
    root = write_periodic_models(tmp_path_factory.mktemp("evalset"), photos, (2, 3, 5), per_model=10, size=128,
                                 amplitude=14.0, name="img{i:02d}.png")
    (root / "model0" / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "tiny").mkdir()
    Image.fromarray(photos[0][:128, :128]).save(root / "tiny" / "only.png")
    return root


FIGURES = {"confusion_spectral.png", "confusion_pixels.png", "tsne_spectral.png", "tsne_pixels.png",
           "similarity_spectral.png", "similarity_pixels.png", "roc.png", "robustness.png", "spectra.png"}


def test_eval_end_to_end(eval_dir, tmp_path):
    out = tmp_path / "report"
    args = ["--device", "cpu", "eval", str(eval_dir), "-e", "spectral", "--out", str(out), "--shots", "4", "--repeats", "2",
            "--pairs", "200", "--perturb", "jpeg:90", "--perturb", "crop:1.0"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "Identification" in res.output and "Robustness" in res.output and "tiny" in res.output
    report = json.loads((out / "report.json").read_text())
    assert {"settings", "dataset", "extractors", "results", "perturbations", "figures", "timing_s"} <= set(report)
    assert report["settings"]["shots"] == 4 and report["settings"]["pairs"] == 200
    assert report["perturbations"] == ["clean", "jpeg:90", "crop:1"]
    assert [e["label"] for e in report["extractors"]] == ["spectral", "pixels"]
    assert all(e["baseline"] for e in report["extractors"])
    assert report["dataset"]["models"] == {"model0": 10, "model1": 10, "model2": 10}
    assert report["dataset"]["skipped_models"][0]["model"] == "tiny"
    assert [Path(d["path"]).name for d in report["dataset"]["skipped_images"]] == ["zz_corrupt.png"]
    for label in ("spectral", "pixels"):
        for p in report["perturbations"]:
            r = report["results"][label][p]
            assert set(r) == {"identification", "verification", "embedding_quality", "open_set"}
            assert 0 <= r["identification"]["top1"]["mean"] <= 1
            assert len(r["verification"]["per_repeat"]["auc"]) == 2
            assert r["verification"]["test_pairs"] == 200
            assert "oracle_accuracy" in r["verification"] and r["open_set"]["auroc"] is not None
    # the periodic traces are what the spectral baseline sees: it must beat chance clearly
    assert report["results"]["spectral"]["clean"]["identification"]["top1"]["mean"] > 0.6
    assert set(report["figures"]) == FIGURES
    for name in FIGURES:
        assert (out / name).stat().st_size > 5000
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 300
    assert report["cache"]["computed"] == 5  # 2 extractors x (clean, jpeg) + the spectra; crop:1.0 is clean
    assert report["results"]["pixels"]["crop:1"] == report["results"]["pixels"]["clean"]
    assert report["results"]["pixels"]["jpeg:90"] != report["results"]["pixels"]["clean"]
    print(report["timing_s"])  # 2 extractors x 3 perturbations + the spectra
    # a second run with other protocol settings reuses every cached embedding, and --json prints the report
    # (--overwrite: the first run's report.json is fpt's own, replaced only when asked)
    res2 = runner.invoke(app, args[:-4] + ["--no-figures", "--json", "--repeats", "1", "--overwrite"])
    assert res2.exit_code == 0, res2.output
    again = json.loads(res2.stdout)
    assert again["cache"] == {"cached": 2, "computed": 0} and again["settings"]["repeats"] == 1
    assert again["results"]["spectral"]["clean"]["identification"]["per_repeat"]["top1"][0] == pytest.approx(
        report["results"]["spectral"]["clean"]["identification"]["per_repeat"]["top1"][0])


@pytest.mark.parametrize("extra, message", [
    (["--perturb", "jpeg:500"], "quality"),
    (["--shots", "0"], "--shots"),
    (["--max-images-per-model", "3"], "no query"),
    (["--extractor", "/nonexistent/model.pt"], "nonexistent"),
])
def test_eval_bad_options_are_one_line_errors(eval_dir, tmp_path, extra, message):
    res = runner.invoke(app, ["--device", "cpu", "eval", str(eval_dir), "--out", str(tmp_path / "r"), *extra])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and message in res.output and "Traceback" not in res.output


def test_eval_needs_two_models_and_a_dataset(tmp_path, eval_dir):
    res = runner.invoke(app, ["--device", "cpu", "eval", str(eval_dir), "--shots", "12", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "at least 2 models" in res.output
    res = runner.invoke(app, ["--device", "cpu", "eval", str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "missing" in res.output
    res = runner.invoke(app, ["--device", "cpu", "eval", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "DATASET" in res.output


# ---------------------------------------------------------------------------- synthetic benchmark


@pytest.fixture(scope="module")
def tiny_pool(tmp_path_factory):
    """A real pool file: 6 architectures x 2 seeds of untrained, deterministically initialized small models."""
    from fpforensics.synthesis.architectures import build_autoencoder, parse_grid
    from fpforensics.synthesis.pool import PoolRecord, flatten_state_dict, state_layout, write_pool

    width = 8
    records = []
    for arch in parse_grid("K=1,L=1,A=tanh,N=none"):
        for seed in (0, 1):
            state = build_autoencoder(arch, seed, width=width).state_dict()
            records.append(PoolRecord(arch, seed, 0.01, 0.01, 1, False,
                                      flatten_state_dict(state, state_layout(arch, width))))
    return write_pool(tmp_path_factory.mktemp("pool") / "pool.h5", records, "{}", "test-data", width)


def test_eval_synthetic_pool_benchmark(tmp_path, photo_dir, tiny_pool):
    out = tmp_path / "rep"
    args = ["--device", "cpu", "eval", "--pool", str(tiny_pool), "--real", str(photo_dir),
            "--holdout", "U=deconv", "--pool-images", "6", "--shots", "3", "--repeats", "1", "--pairs", "100",
            "--extractor", "pixels", "--no-figures", "--json", "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    bench = report["synthetic_benchmark"]
    assert bench["models"] == 4 and bench["reused"] is False
    assert all("Ud" in code for code in bench["architectures"])  # U=deconv only
    assert len(report["dataset"]["models"]) == 4 and set(report["dataset"]["models"].values()) == {6}
    assert len(list((out / "synthetic_dataset").rglob("*.png"))) == 24
    assert "verification" in report["results"]["spectral"]["clean"]
    args = [*args, "--overwrite"]  # the runs below replace the first one's report (fpt's own): only when asked
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["synthetic_benchmark"]["reused"] is True and again["cache"]["computed"] == 0
    bad = runner.invoke(app, args[:7] + ["--holdout", "U=nearest,S=pre,K=2"] + args[9:])
    assert bad.exit_code == 2 and "selects no model" in bad.output
    bad = runner.invoke(app, args[:7] + ["--holdout", "checkpoint"] + args[9:])
    assert bad.exit_code == 2 and "checkpoint file" in bad.output
    res = runner.invoke(app, ["--device", "cpu", "eval", "--pool", "x.h5", "--out", str(out)])
    assert res.exit_code == 2 and "--real" in res.output


def test_eval_real_photos_reports_both_cuts(eval_dir, photo_dir, tmp_path):
    """--real-photos with a calibrated extractor: the default cut and the enrolled one, on the same splits."""
    out = tmp_path / "report"
    args = ["--device", "cpu", "eval", str(eval_dir), "-e", "default", "--out", str(out), "--shots", "4",
            "--repeats", "2", "--pairs", "200", "--grid", "1", "--no-figures", "--real-photos", str(photo_dir)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    real = report["results"]["default"]["clean"]["real_photos"]
    cut = real["enrolled_cut"]
    assert real["photo_cut"] == "calibrated" and cut["photo_cut"] == "enrolled:0.9"
    assert real["real_photos"] == cut["real_photos"] == len(list(photo_dir.rglob("*.*")))
    assert real["cut"]["mean"] == pytest.approx(real["rule"]["cut"]) and cut["cut"]["mean"] >= real["cut"]["mean"]
    assert cut["acceptance"]["mean"] >= real["acceptance"]["mean"]
    assert cut["real_rejection"]["mean"] <= real["real_rejection"]["mean"]
    assert cut["auroc"] == real["auroc"]  # one score, two cuts
    assert "enrolled_cut" not in (report["results"]["spectral"]["clean"].get("real_photos") or {})
    assert "rows '(enrolled)': fpt identify --photo-cut enrolled:0.9)" in res.output  # the title names the second row
