"""Leftovers after a crash or an interruption: stale temporaries cleaned, no lock files, Ctrl-C says how to resume."""

from __future__ import annotations

import fcntl
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import fpt_env, start_fpt, wait_for
from helpers import invoke, write_test_pool

from fpforensics.gallery import Gallery
from fpforensics.io.store import Lock, atomic_file, clean_stale_temporaries, file_lock

OLD = time.time() - 3600


def stale(path: Path, mtime: float = OLD) -> Path:
    path.write_bytes(b"\0" * 1000)
    os.utime(path, (mtime, mtime))
    return path


def test_stale_temporaries_of_fpt_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "g.h5"
    leftovers = [stale(tmp_path / ".g.h5.fpt-abc_1234.tmp"), stale(tmp_path / ".g.h5.k3j_9qz0.tmp"),  # this + older fpt
                 stale(tmp_path / ".g.h5.fpt-zzzzzzzz.tmp.npy")]
    kept = [stale(tmp_path / ".g.h5.notes.tmp"), stale(tmp_path / "g.h5.tmp"), stale(tmp_path / ".other.fpt-abcdefgh.tmp"),
            stale(tmp_path / ".g.h5.fpt-new12345.tmp", mtime=time.time() + 5)]  # made during this run
    held = stale(tmp_path / ".g.h5.fpt-held1234.tmp")
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a live writer holds its temporary
    try:
        assert sorted(clean_stale_temporaries(target)) == sorted(leftovers)
    finally:
        os.close(fd)
    assert all(p.exists() for p in [*kept, held]) and not any(p.exists() for p in leftovers)
    other = tmp_path / ".other.fpt-abcdefgh.tmp"  # another file's leftover: left by a clean of g.h5, not of the folder
    assert sorted(clean_stale_temporaries(tmp_path)) == sorted([held, other])  # a folder: every leftover in it


def test_the_next_run_cleans_what_a_killed_run_left(tmp_path, images):
    gallery = tmp_path / "g.h5"
    left = [stale(tmp_path / ".g.h5.fpt-kill0001.tmp"), stale(tmp_path / ".e.h5.fpt-kill0002.tmp")]
    assert invoke(["--device", "cpu", "gallery", "add", "m", str(images), "--gallery", str(gallery)]).exit_code == 0
    assert invoke(["--device", "cpu", "embed", str(images), "--out", str(tmp_path / "e.h5")]).exit_code == 0
    assert not any(p.exists() for p in left)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.h5", "g.h5"]


def test_a_temporary_in_use_is_locked_and_removed_on_failure(tmp_path):
    target = tmp_path / "x.bin"
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_bytes(b"partial")
        assert clean_stale_temporaries(target) == []  # locked while written, even if old
        os.utime(tmp, (OLD, OLD))
        assert clean_stale_temporaries(target) == []
        raise RuntimeError("the writer fails")
    assert list(tmp_path.iterdir()) == []


def test_locks_leave_no_file_and_waiters_still_queue(tmp_path):
    target = tmp_path / "pool.h5"
    with file_lock(target) as lock_path:
        assert lock_path.exists()
        with pytest.raises(Exception, match="busy"):
            Lock(target, wait=False, busy="busy")
    assert not lock_path.exists()
    first = Lock(target)
    # a waiter in another process (a fork would inherit the held lock): it blocks until the first holder releases
    # (and removes) the lock file, then locks the current one
    waiter = subprocess.Popen([sys.executable, "-c", (
        "import sys; from pathlib import Path; from fpforensics.io.store import file_lock\n"
        "with file_lock(sys.argv[1]):\n"
        "    sys.exit(0 if Path(sys.argv[2]).exists() else 2)\n"), str(target), str(tmp_path / "released")],
        env=fpt_env())
    time.sleep(1.0)
    assert waiter.poll() is None  # still waiting
    (tmp_path / "released").write_text("")
    first.release()
    assert waiter.wait(timeout=60) == 0
    assert not lock_path.exists()


def test_no_lock_file_after_a_clean_run(tmp_path, photo_dir):
    out = tmp_path / "pool.h5"
    res = invoke(["--device", "cpu", "synthesize", "--arch-grid", "K1L1UnArN0So", "--seeds", "1", "--max-steps", "1",
                  "--crop", "32", "--real", str(photo_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.h5"]
    # a v1 gallery, migrated under a lock by its first change: no lock file either
    from fpforensics.gallery.legacy import GalleryData, write_gallery_file

    g1, emb, now = tmp_path / "old.h5", np.eye(2, 8, dtype=np.float32), "2025-01-01T00:00:00+00:00"
    write_gallery_file(g1, GalleryData(extractor="X", dim=8, names=["m"], fingerprints=emb[:1], created=[now],
                                       updated=[now], tool_versions=["0.0.9"], grids=[3], embeddings=emb,
                                       image_model=np.zeros(2, np.int32), image_paths=["a", "b"],
                                       image_added=[now] * 2, file_created=now, file_updated=now))
    Gallery.open(g1).calibrate(0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.h5", "pool.h5"]


# ------------------------------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_in_synthesize_says_what_was_saved_and_the_command(tmp_path, photo_dir):
    """A real SIGINT once the first pack is saved: the message names the parts and the command that resumes."""
    out = tmp_path / "pool.h5"
    # Enough packs after the first (5 of 2 models), each held to its whole step budget (an eta no model reaches),
    # that the signal lands mid-run even on a fast idle machine.
    args = ["--device", "cpu", "synthesize", "--arch-grid", "K=1,L=1,U=nearest,N=none,S=post,A=relu|tanh|none",
            "--seeds", "4", "--pack-size", "2", "--max-steps", "150", "--eta", "1e-9", "--crop", "32",
            "--real", str(photo_dir), "--out", str(out)]
    proc = start_fpt(*args)
    parts = tmp_path / "pool.h5.parts"
    assert wait_for(lambda: parts.is_dir() and any(parts.glob("part-*.h5")) or proc.poll() is not None, 240)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.fail("the run finished before it could be interrupted; give it more steps")
    assert proc.returncode == 130, err
    assert "interrupted" in err and "kept in" in err and str(parts) in err
    resume = err.split("resume with the same command: ", 1)[1].splitlines()[0]
    assert shlex.split(resume)[1:] == args
    assert not (tmp_path / "pool.h5.lock").exists()
    res = invoke(shlex.split(resume)[1:])
    assert res.exit_code == 0, res.output
    assert "resuming:" in res.stderr and not parts.exists()


def test_ctrl_c_in_train_extractor_gives_the_resume_command(tmp_path, photo_dir, monkeypatch):
    from fpforensics.cli import render

    pool = write_test_pool(tmp_path / "pool.h5", seeds=(0, 1))
    out = tmp_path / "e.pt"
    args = ["--device", "cpu", "train", "extractor", "--pool", str(pool), "--real", str(photo_dir), "--out", str(out),
            "--preset", "tiny", "--epochs", "2", "--steps-per-epoch", "1", "--max-val-models", "3", "--batch-size",
            "6", "--no-augment"]
    before = render.epoch_line

    def stop_after_first(r, cfg):
        if r["epoch"] == 1:
            raise KeyboardInterrupt
        return before(r, cfg)

    monkeypatch.setattr(render, "epoch_line", stop_after_first)
    res = invoke(args)
    assert res.exit_code == 130, res.output
    resume = res.stderr.split("resume with: ", 1)[1].splitlines()[0]
    assert f"saved: {out} holds epoch 1 of 2" in res.stderr
    assert shlex.split(resume)[1:] == [*args, "--resume"]
    monkeypatch.setattr(render, "epoch_line", before)
    res = invoke(shlex.split(resume)[1:])
    assert res.exit_code == 0, res.output


def test_ctrl_c_before_any_checkpoint_says_nothing_was_saved(tmp_path, photo_dir, monkeypatch):
    import fpforensics.extractor.denoiser_training as dt

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(dt, "random_patches", interrupted)
    res = invoke(["--device", "cpu", "train", "denoiser", "--real", str(photo_dir), "--out", str(tmp_path / "d.pt"),
                  "--overwrite"])
    assert res.exit_code == 130
    assert "no checkpoint saved yet; start again with: fpt --device cpu train denoiser" in res.stderr
