"""The real-photo rule's enrolled cut (``--photo-cut enrolled[:KEEP]``): leave-one-out scores of a gallery's
own images, a cut that is only ever raised, the gallery's sample of its images, and the wiring in identify,
verify --model and the evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke

from fpforensics import Gallery
from fpforensics.errors import InputError
from fpforensics.metrics import l2_normalize
from fpforensics.verdict.realphoto import (
    DEFAULT_KEEP_ENROLLED,
    CameraRule,
    PhotoCut,
    RealReference,
    camera_like_enrolled,
    enrolled_cut,
    leave_one_out_best,
)


def toy_models(seed: int = 0, models: int = 5, per: int = 6, d: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((models, d)))
    emb = l2_normalize(np.repeat(centres, per, axis=0) + 0.3 * rng.standard_normal((models * per, d)))
    return emb, np.repeat(np.arange(models), per)


def naive_loo_best(emb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = []
    for i in range(len(emb)):
        scores = []
        for m in np.unique(labels):
            rows = [j for j in np.where(labels == m)[0] if j != i]
            if rows:
                fp = emb[rows].sum(axis=0)
                scores.append(float(emb[i] @ fp / np.linalg.norm(fp)))
        out.append(max(scores) if scores else -1.0)
    return np.array(out)


def toy_reference(emb: np.ndarray, cut: float) -> RealReference:
    """A reference of 'photographs' near the first model, and a rule that calls high r / low s camera."""
    rng = np.random.default_rng(1)
    photos = l2_normalize(emb[:3].mean(axis=0) + 0.2 * rng.standard_normal((8, emb.shape[1])))
    rule = CameraRule(w_s=-10.0, w_r=10.0, b=0.0, cut=cut, accept=0.95, rejected=0.9, auc=0.9)
    return RealReference(photos, 3, {"image-fingerprint": rule}, "toy", len(photos))


def test_leave_one_out_best_is_the_naive_loop(monkeypatch):
    import fpforensics.gallery.calibration as gallery_calibration

    emb, labels = toy_models()
    labels = labels.copy()
    labels[-1] = labels.max() + 1  # a model with one image: scored against the others only
    expected = naive_loo_best(emb, labels)
    assert np.allclose(leave_one_out_best(emb, labels), expected, atol=1e-6)  # float32 products
    monkeypatch.setattr(gallery_calibration, "SIMILARITY_BLOCK", 13)  # two rows per block: the blocks join up
    assert np.allclose(leave_one_out_best(emb, labels), expected, atol=1e-6)
    single = leave_one_out_best(emb[:1], np.zeros(1, int))
    assert single.tolist() == [-1.0]


def test_enrolled_cut_keeps_the_share_and_is_never_lowered():
    emb, labels = toy_models()
    ref = toy_reference(emb, cut=-5.0)
    rule = ref.rules["image-fingerprint"]
    z = rule.z(leave_one_out_best(emb, labels), ref.score(emb))
    for keep in (0.5, 0.9):
        cut, info = enrolled_cut(ref, emb, labels, keep)
        assert cut >= rule.cut and info["raised"] and info["images"] == len(emb) and info["models"] == 5
        assert np.mean(z <= cut) >= keep and np.mean(z < cut) < keep + 1.0 / len(z)
    loose = toy_reference(emb, cut=1e6)  # the rule already keeps every image: its cut stays
    cut, info = enrolled_cut(loose, emb, labels, 0.9)
    assert cut == 1e6 and not info["raised"]
    with pytest.raises(InputError, match="between 0 and 1"):
        enrolled_cut(ref, emb, labels, 1.0)
    with pytest.raises(InputError, match="at least 2"):
        enrolled_cut(ref, emb[:1], labels[:1], 0.9)
    with pytest.raises(InputError, match="no rule for image-image"):
        enrolled_cut(ref, emb, labels, 0.9, kind="image-image")


def test_camera_like_enrolled_scores_each_image_as_a_query():
    emb, labels = toy_models()
    ref = toy_reference(emb, cut=0.0)
    rule = ref.rules["image-fingerprint"]
    sums = np.zeros((5, emb.shape[1]))
    np.add.at(sums, labels, emb)
    fps = l2_normalize(sums)
    z = rule.z(naive_loo_best(emb, labels), ref.score(emb))  # every image, its own model's fingerprint without it
    for m in range(5):
        got = camera_like_enrolled(ref, emb[labels == m], fps, m)
        want = z[labels == m] > rule.cut
        assert got == {"images": 6, "camera_like": int(want.sum()), "share": pytest.approx(want.mean()),
                       "cut": rule.cut}
    assert 0 < sum(camera_like_enrolled(ref, emb[labels == m], fps, m)["camera_like"] for m in range(5)) < 30
    with pytest.raises(InputError, match="no rule for image-image"):
        camera_like_enrolled(ref, emb[:6], fps, 0, kind="image-image")


@pytest.mark.parametrize("spec, name, keep", [(None, "calibrated", None), ("calibrated", "calibrated", None),
                                              ("enrolled", "enrolled", DEFAULT_KEEP_ENROLLED),
                                              (" Enrolled:0.8 ", "enrolled", 0.8)])
def test_photo_cut_parse(spec, name, keep):
    pc = PhotoCut.parse(spec)
    assert (pc.name, pc.keep) == (name, keep)


@pytest.mark.parametrize("spec", ["enrolled:1", "enrolled:0", "enrolled:x", "calibrated:0.9", "gallery"])
def test_photo_cut_parse_refuses(spec):
    with pytest.raises(InputError, match="--photo-cut"):
        PhotoCut.parse(spec)


def test_gallery_enrolled_sample_full_and_sampled(tmp_path):
    emb, labels = toy_models(models=4, per=5)
    g = Gallery.open(tmp_path / "g.h5", create=True)
    for m in range(4):
        rows = emb[labels == m].astype(np.float32)
        g.enroll(f"model {m}", rows, [tmp_path / f"{m}-{i}.png" for i in range(len(rows))], "toy:1")
    full = g.enrolled_sample()
    assert full.total == 20 and len(full.embeddings) == 20
    expected = naive_loo_best(l2_normalize(emb.astype(np.float32)).astype(np.float64), labels)
    got = leave_one_out_best(full.embeddings, full.labels, full.fingerprints, full.row_sums, full.row_counts)
    assert np.allclose(np.sort(got), np.sort(expected), atol=1e-5)
    part = g.enrolled_sample(max_images=7)  # a sample scores each row as the whole gallery would
    assert part.total == 20 and len(part.embeddings) == 7
    loo = leave_one_out_best(part.embeddings, part.labels, part.fingerprints, part.row_sums, part.row_counts)
    lookup = {tuple(np.round(r, 5)): v for r, v in zip(full.embeddings, got, strict=True)}
    assert np.allclose(loo, [lookup[tuple(np.round(r, 5))] for r in part.embeddings], atol=1e-5)
    thin = g.export_fingerprints(tmp_path / "thin.h5")
    with pytest.raises(InputError, match="fingerprints only"):
        thin.enrolled_sample()


def test_open_set_evaluation_enrolled_cut_accepts_more():
    from fpforensics.evaluation.realphotos import real_photo_open_set
    from fpforensics.verdict.stored import ExtractorCalibration

    emb, labels = toy_models(models=6, per=14)
    ref = toy_reference(emb, cut=-0.5)
    cal = ExtractorCalibration(None, None, ref)
    photos = l2_normalize(ref.embeddings + 0.05)
    common = dict(shots=5, repeats=3, seed=0)
    base = real_photo_open_set(emb, labels, photos, cal, 0.0, **common)
    raised = real_photo_open_set(emb, labels, photos, cal, 0.0, photo_cut="enrolled:0.95", **common)
    assert base["photo_cut"] == "calibrated" and raised["photo_cut"] == "enrolled:0.95"
    assert raised["cut"]["mean"] >= -0.5 and base["cut"]["mean"] == pytest.approx(-0.5)
    assert raised["acceptance"]["mean"] >= base["acceptance"]["mean"]
    assert raised["real_rejection"]["mean"] <= base["real_rejection"]["mean"]
    assert raised["auroc"] == base["auroc"]  # the cut moves, the score does not


# ---------------------------------------------------------------------------- wired: fpt identify / verify --model


@pytest.fixture(scope="module")
def photo_gallery(tmp_path_factory, photos) -> tuple[Path, list[Path]]:
    """The shipped extractor's gallery of two 'models', each two different photographs, and eight crops.

    Scored without itself, each enrolled image is a photograph against a fingerprint of another
    photograph: the calibrated real-photo rule must call such images camera photographs, so the
    enrolled cut has to be raised to keep them.
    """
    from PIL import Image

    from fpforensics import embed

    d = tmp_path_factory.mktemp("pg")
    files = []
    for i, p in enumerate(photos[:4]):
        for j, (y, x) in enumerate(((0, 0), (100, 100))):
            files.append(d / f"p{i}_{j}.png")
            Image.fromarray(p[y:y + 200, x:x + 200]).save(files[-1])
    e = embed(files, "default", grid=3)
    path = d / "g.h5"
    g = Gallery.open(path, create=True)
    for k in range(2):
        rows = [4 * k, 4 * k + 2]  # the first crop of photographs 2k and 2k+1
        g.enroll(f"m{k}", e.embeddings[rows], [files[i] for i in rows], e.extractor.identity)
    return path, files


def test_identify_and_verify_model_with_enrolled_cut(photo_gallery):
    path, files = photo_gallery
    query = [str(f) for f in files]
    base = json.loads(invoke(["identify", *query, "-e", "default", "--gallery", str(path), "--json"]).stdout)
    r = invoke(["identify", *query, "-e", "default", "--gallery", str(path), "--json", "--photo-cut", "enrolled:0.9"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    cal_cut = base["results"][0]["provenance"]["operating_point"]["real_photo_cut"]
    cut = out["results"][0]["provenance"]["operating_point"]["real_photo_cut"]
    assert cal_cut["name"] == "calibrated" and cut["name"] == "enrolled:0.9" and cut["images"] == 4
    assert cut["raised"] and cut["cut"] > cut["calibration_cut"] == pytest.approx(cal_cut["cut"], abs=1e-6)
    cameras = []
    for b, o in zip(base["results"], out["results"], strict=True):
        pb, po = b["real_photo"], o["real_photo"]
        assert po["camera_probability"] == pytest.approx(pb["camera_probability"])  # same score, another cut
        z = np.log(po["camera_probability"] / (1 - po["camera_probability"]))
        assert po["camera"] == bool(z > cut["cut"]) and pb["camera"] == bool(z > cal_cut["cut"])
        cameras.append((pb["camera"], po["camera"]))
        if pb["camera"] and not po["camera"]:  # what the raised cut costs: a photograph now attributed
            assert b["verdict"] == "unknown" and o["verdict"] in ("attributed", "ambiguous")
    assert sum(c for c, _ in cameras) > sum(c for _, c in cameras)
    table = invoke(["identify", query[0], "-e", "default", "--gallery", str(path), "--photo-cut", "enrolled"])
    assert table.exit_code == 0 and "real-photo cut" in table.output
    v = invoke(["verify", query[0], "--model", "m0", "-e", "default", "--gallery", str(path), "--json",
                "--photo-cut", "enrolled:0.9"])
    assert v.exit_code == 0, v.output
    prov = json.loads(v.stdout)["provenance"]["a"][0]["operating_point"]["real_photo_cut"]
    assert prov["cut"] == pytest.approx(cut["cut"])


def test_gallery_add_says_how_many_enrolled_images_look_like_photographs(photo_gallery, tmp_path):
    """Photographs enrolled as 'models': the rule calls some of them camera photographs, and enrollment says so."""
    from fpforensics.extractor import load_extractor
    from fpforensics.verdict.stored import ExtractorCalibration

    _, files = photo_gallery
    ref = ExtractorCalibration.of(load_extractor("default", "cpu")).real_reference
    path = tmp_path / "g.h5"
    found = []
    for name, picks in (("a", (0, 2)), ("b", (4, 6)), ("c", (1, 3))):
        args = ["gallery", "add", name, *(str(files[i]) for i in picks), "-e", "default", "--gallery", str(path)]
        r = invoke([*args, "--json"] if name == "b" else args)
        assert r.exit_code == 0, r.output
        names, fps = Gallery.open(path).fingerprints()
        want = {"model": name, **camera_like_enrolled(ref, Gallery.open(path).embeddings(name), fps, names.index(name))}
        if name == "b":
            assert json.loads(r.stdout)["real_photo_check"] == want
        else:
            line = " ".join(r.output.split())
            assert ("look like camera photographs" in line) == (want["camera_like"] > 0)
            if want["camera_like"]:
                assert f"{want['camera_like']} of 2 enrolled image(s) of '{name}'" in line and "--photo-cut enrolled" in line
        found.append(want["camera_like"])
    assert found[2] > 0  # photographs do look like photographs: the note was shown
    spectral = invoke(["gallery", "add", "s", str(files[0]), "-e", "spectral", "--gallery", str(tmp_path / "s.h5"),
                       "--json"])
    assert spectral.exit_code == 0 and json.loads(spectral.stdout)["real_photo_check"] is None  # no rule to apply


@pytest.mark.parametrize("args, message", [
    (["--photo-cut", "enrolled:2"], "--photo-cut 'enrolled:2'"),
    (["--photo-cut", "enrolled", "--with-builtin"], "leave out --with-builtin"),
    (["--threshold", "lenient"], "expected paper, calibrated, gallery, fmr:<rate> or a cosine"),  # identify's choices
])
def test_identify_photo_cut_errors(photo_gallery, args, message):
    path, files = photo_gallery
    r = invoke(["identify", str(files[0]), "-e", "default", "--gallery", str(path), *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_photo_cut_needs_a_gallery_with_embeddings(photo_gallery, tmp_path):
    path, files = photo_gallery
    thin = Gallery.open(path).export_fingerprints(tmp_path / "thin.h5")
    r = invoke(["identify", str(files[0]), "-e", "default", "--gallery", str(thin.path), "--photo-cut", "enrolled"])
    assert r.exit_code == 2 and "fingerprints only" in r.output
    r = invoke(["verify", str(files[0]), str(files[1]), "-e", "default", "--photo-cut", "enrolled"])
    assert r.exit_code == 2 and "go with --model" in r.output
