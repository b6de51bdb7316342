"""Nothing of the user's is ever overwritten: one test per command that writes.

The rule (``fpforensics.io.store.check_output``): an existing file that fpt did not write, or of
another kind, is refused with one line and left byte for byte; one of fpt's own of the same kind
is replaced only with ``--overwrite`` (a gallery, a pool and a resumed checkpoint are appended to).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import one_line_error
from helpers import invoke, write_test_pool

from fpforensics.checkpoints import save_checkpoint
from fpforensics.gallery import Gallery
from fpforensics.io.store import file_kind

FOREIGN_TEXT = b"my notes, not an fpt file\n"


def foreign_h5(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f["mine"] = np.arange(5)
    return path


def foreign_sqlite(path: Path) -> Path:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    return path


def refused_unchanged(args: list[str], path: Path, *needles: str) -> None:
    """fpt ``args`` exits 2 with one line naming ``path``, and ``path`` is byte for byte what it was."""
    before = path.read_bytes()
    res = invoke(args)
    one_line_error(res, str(path), *needles)
    assert path.read_bytes() == before


@pytest.fixture(scope="module")
def kinds(tmp_path_factory, images):
    """One real file of each kind fpt writes (and a gallery), to give where another kind goes."""
    root = tmp_path_factory.mktemp("kinds")
    res = invoke(["--device", "cpu", "embed", str(images), "--out", str(root / "emb.h5")])
    assert res.exit_code == 0, res.output
    Gallery.open(root / "gallery.h5", create=True).enroll("m", np.eye(2, 8, dtype=np.float32), ["a", "b"], "X")
    write_test_pool(root / "pool.h5", seeds=(0,))
    save_checkpoint({"epoch": 1}, root / "extractor.pt", "extractor")
    save_checkpoint({"steps": 1}, root / "dncnn.pt", "dncnn")
    (root / "notes.txt").write_bytes(FOREIGN_TEXT)
    foreign_h5(root / "foreign.h5")
    foreign_sqlite(root / "foreign.db")
    np.save(root / "ints.npy", np.arange(6).reshape(2, 3))
    return root


def copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_file_kind_reads_every_stamp(kinds):
    assert [file_kind(kinds / n) for n in ("emb.h5", "gallery.h5", "pool.h5", "extractor.pt", "dncnn.pt")] == [
        "embeddings", "gallery", "pool", "extractor", "dncnn"]
    assert [file_kind(kinds / n) for n in ("notes.txt", "foreign.h5", "foreign.db", "ints.npy")] == [None] * 4
    np.save(kinds / "emb.npy", np.zeros((2, 3), np.float32))
    assert file_kind(kinds / "emb.npy") == "npy"


def test_embed_refuses_foreign_and_other_kinds_and_needs_overwrite(kinds, images, tmp_path):
    base = ["--device", "cpu", "embed", str(images), "--out"]
    for src, name, needle in [(kinds / "notes.txt", "x.h5", "did not write"), (kinds / "foreign.h5", "f.h5", "HDF5"),
                              (kinds / "gallery.h5", "g.h5", "'gallery'"), (kinds / "pool.h5", "p.h5", "'pool'"),
                              (kinds / "ints.npy", "i.npy", "not a float32 matrix"),
                              (kinds / "notes.txt", "n.npy", "did not write")]:
        target = copy(src, tmp_path / name)
        refused_unchanged([*base, str(target)], target, needle)
        refused_unchanged([*base, str(target), "--overwrite"], target, needle)  # never, whatever the flag
    own = copy(kinds / "emb.h5", tmp_path / "own.h5")
    refused_unchanged([*base, str(own)], own, "--overwrite")
    res = invoke([*base, str(own), "--overwrite"])
    assert res.exit_code == 0, res.output
    merged = copy(kinds / "gallery.h5", tmp_path / "merged.h5")
    refused_unchanged(["embed", "--merge", str(kinds / "emb.h5"), "--out", str(merged)], merged, "'gallery'")


@pytest.mark.parametrize("command", [["gallery", "add", "m2", "IMAGES"], ["gallery", "remove", "m"],
                                     ["gallery", "calibrate"], ["gallery", "calibrate", "--set", "0.5"]])
def test_gallery_commands_refuse_files_that_are_not_galleries(kinds, images, tmp_path, command):
    args = [str(images) if a == "IMAGES" else a for a in command]
    for src, needle in [(kinds / "notes.txt", "not a gallery"), (kinds / "pool.h5", "'pool'"),
                        (kinds / "foreign.db", "not written by fpforensics"), (kinds / "emb.h5", "'embeddings'")]:
        target = copy(src, tmp_path / "g.h5")
        refused_unchanged(["--device", "cpu", *args, "--gallery", str(target)], target, needle)


def test_synthesize_refuses_foreign_out_before_work(kinds, images, tmp_path):
    for src, needle in [(kinds / "notes.txt", "did not write"), (kinds / "foreign.h5", "HDF5"),
                        (kinds / "emb.h5", "'embeddings'")]:
        target = copy(src, tmp_path / "pool.h5")
        refused_unchanged(["--device", "cpu", "synthesize", "--arch-grid", "K1L1UnArN0So", "--seeds", "1",
                           "--max-steps", "1", "--real", str(images), "--out", str(target)], target, needle)


def test_synthesize_merge_refuses_foreign_and_needs_overwrite(kinds, tmp_path):
    for src, needle in [(kinds / "foreign.h5", "HDF5"), (kinds / "notes.txt", "did not write")]:
        target = copy(src, tmp_path / "merged.h5")
        refused_unchanged(["synthesize", "--merge", str(kinds / "pool.h5"), "--out", str(target), "--overwrite"],
                          target, needle)
    own = copy(kinds / "pool.h5", tmp_path / "own.h5")
    refused_unchanged(["synthesize", "--merge", str(kinds / "pool.h5"), "--out", str(own)], own, "--overwrite")
    assert invoke(["synthesize", "--merge", str(kinds / "pool.h5"), "--out", str(own), "--overwrite"]).exit_code == 0
    # a pool that is one of the inputs is extended (an append): no flag needed
    more = write_test_pool(tmp_path / "more.h5", seeds=(1,))
    res = invoke(["synthesize", "--merge", str(own), "--merge", str(more), "--out", str(own)])
    assert res.exit_code == 0, res.output
    assert "8 models" in res.stdout


def test_train_denoiser_refuses_other_kinds(kinds, photo_dir, tmp_path):
    base = ["--device", "cpu", "train", "denoiser", "--real", str(photo_dir), "--steps", "1", "--out"]
    for src, needle in [(kinds / "extractor.pt", "'extractor'"), (kinds / "notes.txt", "did not write"),
                        (kinds / "gallery.h5", "'gallery'")]:
        target = copy(src, tmp_path / "d.pt")
        refused_unchanged([*base, str(target), "--overwrite"], target, needle)
    own = copy(kinds / "dncnn.pt", tmp_path / "own.pt")
    refused_unchanged([*base, str(own)], own, "--resume", "--overwrite")


def test_train_extractor_refuses_other_kinds_and_foreign_logs_before_work(kinds, photo_dir, tmp_path):
    base = ["--device", "cpu", "train", "extractor", "--pool", str(kinds / "pool.h5"), "--real", str(photo_dir),
            "--preset", "tiny", "--epochs", "1", "--out"]
    for src, needle in [(kinds / "dncnn.pt", "'dncnn'"), (kinds / "notes.txt", "did not write")]:
        target = copy(src, tmp_path / "e.pt")
        refused_unchanged([*base, str(target), "--overwrite"], target, needle)
    log = copy(kinds / "notes.txt", tmp_path / "notes.jsonl")
    refused_unchanged([*base, str(tmp_path / "new.pt"), "--log", str(log)], log, "did not write")
    refused_unchanged([*base, str(tmp_path / "new.pt"), "--log", str(log), "--overwrite"], log, "did not write")
    default_log = copy(kinds / "notes.txt", tmp_path / "other.jsonl")  # the default log: OUT with .jsonl
    refused_unchanged([*base, str(tmp_path / "other.pt")], default_log, "did not write")
    fpt_log = tmp_path / "run.jsonl"
    fpt_log.write_text(json.dumps({"epoch": 0, "step": 0, "val_acc": 0.5}) + "\n")
    refused_unchanged([*base, str(tmp_path / "run.pt")], fpt_log, "--overwrite")
    assert not (tmp_path / "new.pt").exists() and not (tmp_path / "run.pt").exists()


def test_artifact_outputs(kinds, model_set_dir, real_dir, tmp_path):
    base = ["--device", "cpu", "artifact", str(model_set_dir), "--real", str(real_dir), "--space", "rgb",
            "--size", "32"]
    for src, needle in [(kinds / "notes.txt", "did not write"), (kinds / "emb.h5", "'embeddings'")]:
        target = copy(src, tmp_path / "a.h5")
        refused_unchanged([*base, "--out", str(target), "--overwrite"], target, needle)
    ckpt = copy(kinds / "extractor.pt", tmp_path / "clf.pt")
    refused_unchanged([*base, "--train-classifier", str(ckpt), "--overwrite"], ckpt, "'extractor'")
    own = tmp_path / "own.h5"
    res = invoke([*base, "--out", str(own), "--train-classifier", str(tmp_path / "own.pt"), "--png",
                  str(tmp_path / "panels")])
    assert res.exit_code == 0, res.output
    assert file_kind(own) == "artifacts" and file_kind(tmp_path / "own.pt") == "artifact_classifier"
    refused_unchanged([*base, "--out", str(own)], own, "--overwrite")
    refused_unchanged([*base, "--train-classifier", str(tmp_path / "own.pt")], tmp_path / "own.pt", "--overwrite")
    panel = sorted((tmp_path / "panels").rglob("*.png"))[0]
    assert file_kind(panel) == "artifact-panel"
    refused_unchanged([*base, "--png", str(tmp_path / "panels")], panel, "--overwrite")
    panel.write_bytes((kinds / "notes.txt").read_bytes())  # a user's file where a panel would go
    refused_unchanged([*base, "--png", str(tmp_path / "panels"), "--overwrite"], panel, "not a panel fpt wrote")
    res = invoke([*base, "--out", str(own), "--overwrite"])
    assert res.exit_code == 0, res.output


def test_eval_report_folder(kinds, model_set_dir, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    base = ["--device", "cpu", "eval", str(model_set_dir), "-e", "spectral", "--shots", "2", "--repeats", "1",
            "--pairs", "20", "--out", str(out)]
    report = copy(kinds / "notes.txt", out / "report.json")
    refused_unchanged([*base, "--overwrite"], report, "did not write")
    report.unlink()
    roc = out / "roc.png"
    roc.write_bytes(b"\x89PNG\r\n\x1a\n not a real figure")
    refused_unchanged([*base, "--overwrite"], roc, "not a figure fpt wrote")
    roc.unlink()
    res = invoke([*base, "--no-figures"])
    assert res.exit_code == 0, res.output
    assert file_kind(out / "report.json") == "report"
    refused_unchanged(base, out / "report.json", "--overwrite")
    res = invoke([*base, "--overwrite", "--no-figures"])
    assert res.exit_code == 0, res.output


def test_figures_are_stamped_as_fpt_files(tmp_path):
    import matplotlib.pyplot as plt

    from fpforensics.evaluation import figures

    fig = plt.figure()
    assert file_kind(figures._save(fig, tmp_path / "roc.png")) == "figure"


def test_html_files_carry_a_stamp(tmp_path):
    """An HTML output (e.g. a report) is fpt's when its head holds html_stamp(kind); any other HTML is foreign."""
    from fpforensics.io.store import check_output, html_stamp

    ours, theirs = tmp_path / "ours.html", tmp_path / "theirs.html"
    ours.write_text(f"<!DOCTYPE html>\n<html><head>{html_stamp('html-report')}</head><body></body></html>\n")
    theirs.write_text("<!DOCTYPE html>\n<html><head><title>mine</title></head></html>\n")
    assert file_kind(ours) == "html-report" and file_kind(theirs) is None
    with pytest.raises(Exception, match="did not write"):
        check_output(theirs, "html-report", overwrite=True)
    with pytest.raises(Exception, match="--overwrite"):
        check_output(ours, "html-report")
    assert check_output(ours, "html-report", overwrite=True) == ours


def test_identify_report_refuses_foreign_html_and_needs_overwrite(kinds, images, tmp_path):
    """`identify --report` writes a stamped HTML file: a user's file is never replaced, its own only with --overwrite."""
    gallery = tmp_path / "g.db"
    res = invoke(["--device", "cpu", "gallery", "add", "m", str(images), "-e", "spectral", "--gallery", str(gallery)])
    assert res.exit_code == 0, res.output
    query = sorted(p for p in Path(images).iterdir() if p.is_file())[0]
    base = ["--device", "cpu", "identify", str(query), "-e", "spectral", "--gallery", str(gallery), "--report"]
    user_page = tmp_path / "page.html"
    user_page.write_text("<!DOCTYPE html><html><head><title>mine</title></head><body>notes</body></html>")
    refused_unchanged([*base, str(user_page)], user_page, "did not write")
    refused_unchanged([*base, str(user_page), "--overwrite"], user_page, "did not write")
    report = tmp_path / "report.html"
    res = invoke([*base, str(report)])
    assert res.exit_code == 0, res.output
    assert file_kind(report) == "html-report"
    refused_unchanged([*base, str(report)], report, "--overwrite")
    res = invoke([*base, str(report), "--overwrite"])
    assert res.exit_code == 0, res.output
