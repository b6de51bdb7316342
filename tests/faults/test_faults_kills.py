"""Kills at random moments (SIGKILL: no cleanup runs) of `gallery add`, `synthesize` and `train extractor`, and two
concurrent writers: nothing is ever corrupted, the next run cleans what the killed one left, resumes and completes.

The moments are drawn from ``random.Random(FPT_FAULTS_SEED)`` (default 0); a failure prints the seed and the delays.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
from conftest import run_fpt, start_fpt, wait_for, write_noise_images
from helpers import write_test_pool

SEED = int(os.environ.get("FPT_FAULTS_SEED", "0"))
KILLS = int(os.environ.get("FPT_FAULTS_KILLS", "2"))


def kill_after(args: list[str], delay: float, ready=None) -> tuple[int, float]:
    """Start fpt, wait until ``ready()`` (when given) then ``delay`` seconds, and SIGKILL it (if still running)."""
    proc = start_fpt(*args)
    if ready is not None:
        wait_for(lambda: ready() or proc.poll() is not None, 240)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < delay:
        time.sleep(0.01)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc.returncode, delay


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    """What is in ``folder`` besides ``keep``: temporaries, lock files, journals."""
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.fixture(scope="module")
def enroll_dirs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("enroll")
    for i in range(KILLS + 1):
        write_noise_images(root / f"m{i}", n=12, size=160, seed=i)
    return root


def _gallery(gallery: Path) -> dict[str, int]:
    res = run_fpt("gallery", "list", "--gallery", gallery, "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    models = doc["models"] if isinstance(doc, dict) else doc
    return {m["name"]: m["images"] if "images" in m else m["n_images"] for m in models}


def test_sigkill_during_gallery_add(enroll_dirs, tmp_path):
    rng = random.Random(SEED)
    gallery = tmp_path / "g.h5"
    add = ["--device", "cpu", "gallery", "add", "--gallery", str(gallery), "--extractor", "spectral", "--shots", "0"]
    t0 = time.monotonic()
    res = run_fpt(*add, "m0", enroll_dirs / "m0")
    full = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    before = _gallery(gallery)
    assert before == {"m0": 12}
    delays = []
    for i in range(1, KILLS + 1):
        code, delay = kill_after([*add, f"m{i}", str(enroll_dirs / f"m{i}")], rng.uniform(0.1, 1.1) * full)
        delays.append((code, round(delay, 2)))
        after = _gallery(gallery)  # readable after every kill: the enrollment landed whole or not at all
        assert after.get("m0") == 12, (SEED, delays, after)
        assert after.get(f"m{i}") in (None, 12), (SEED, delays, after)
        if f"m{i}" not in after:  # resume: the same command completes it
            res = run_fpt(*add, f"m{i}", enroll_dirs / f"m{i}")
            assert res.returncode == 0, (SEED, delays, res.stderr)
    assert _gallery(gallery) == {f"m{i}": 12 for i in range(KILLS + 1)}, (SEED, delays)
    res = run_fpt(*add, "m0", enroll_dirs / "m0", "--replace")  # one more clean write: nothing else is left
    assert res.returncode == 0, res.stderr
    assert leftovers(tmp_path, {"g.h5"}) == [], (SEED, delays)


def test_two_concurrent_gallery_adds_both_land(enroll_dirs, tmp_path):
    """Two processes enrolling into one (new) gallery at once: both land, nothing is left beside it.

    The same at the library level, six enrollments per process: tests/test_gallery.py::test_concurrent_adds_from_two_
    processes_all_land."""
    gallery = tmp_path / "g.h5"
    add = ["--device", "cpu", "gallery", "add", "--gallery", str(gallery), "--extractor", "spectral", "--shots", "0"]
    procs = [start_fpt(*add, f"m{i}", str(enroll_dirs / f"m{i}")) for i in (0, 1)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    assert [code for code, _ in results] == [0, 0], results
    assert _gallery(gallery) == {"m0": 12, "m1": 12}
    assert leftovers(tmp_path, {"g.h5"}) == []


SYNTH = ["--device", "cpu", "synthesize", "--arch-grid", "K=1,L=1,U=nearest,N=none,S=post,A=relu|tanh|none",
         "--seeds", "2", "--pack-size", "1", "--max-steps", "15", "--crop", "32"]


def _pool_keys(path: Path) -> set:
    from fpforensics.synthesis.pool import SyntheticPool

    pool = SyntheticPool.open(path)
    try:
        return {e.key for e in pool.entries}
    finally:
        pool.close()


def test_sigkill_during_synthesize_then_resume(photo_dir, tmp_path):
    rng = random.Random(SEED + 1)
    out = tmp_path / "pool.h5"
    args = [*SYNTH, "--real", str(photo_dir), "--out", str(out)]
    parts = tmp_path / "pool.h5.parts"
    delays = []
    # once at a moment that may fall anywhere (start-up, planning, training), once after the first pack is saved
    for ready, delay in ((None, rng.uniform(1.0, 6.0)), (lambda: any(parts.glob("part-*.h5")), rng.uniform(0, 1.5))):
        code, d = kill_after(args, delay, ready)
        delays.append((code, round(d, 2)))
        if code == 0:
            break  # finished before the kill: the checks below still hold
        if out.exists():  # never a half-written pool
            assert _pool_keys(out), (SEED, delays)
        for part in parts.glob("part-*.h5") if parts.is_dir() else []:
            assert _pool_keys(part), (SEED, delays, part)  # every finished part is whole
    res = run_fpt(*args)  # the same command resumes
    assert res.returncode == 0, (SEED, delays, res.stderr)
    assert len(_pool_keys(out)) == 6, (SEED, delays)
    assert leftovers(tmp_path, {"pool.h5"}) == [], (SEED, delays)


def test_sigkill_during_train_extractor_then_resume(photo_dir, tmp_path):
    from fpforensics.checkpoints import load_checkpoint

    rng = random.Random(SEED + 2)
    pool = write_test_pool(tmp_path / "pool.h5", seeds=(0, 1))
    out = tmp_path / "e.pt"
    args = ["--device", "cpu", "train", "extractor", "--pool", str(pool), "--real", str(photo_dir), "--out", str(out),
            "--preset", "tiny", "--epochs", "2", "--steps-per-epoch", "1", "--max-val-models", "3", "--batch-size",
            "6", "--no-augment"]
    # killed just after the first checkpoint is saved (then it is whole and resumable), at a random moment past it
    code, delay = kill_after(args, rng.uniform(0.0, 2.0), ready=out.exists)
    state = load_checkpoint(out, kind="extractor")  # whatever the moment, the checkpoint on disk loads
    if code != 0:
        assert not state.get("complete") or state["epoch"] == 2, (SEED, delay)
    if code != 0 and not state.get("complete"):
        res = run_fpt(*args, "--resume")
        assert res.returncode == 0, (SEED, delay, res.stderr)
    elif code != 0:  # killed after the final checkpoint was written (a fast machine): nothing is left to resume
        res = run_fpt(*args, "--resume")
        assert res.returncode == 2 and "already complete" in res.stderr, (SEED, delay, res.stderr)
    state = load_checkpoint(out, kind="extractor")
    assert state["epoch"] == 2 and state.get("complete"), (SEED, delay)
    assert leftovers(tmp_path, {"pool.h5", "e.pt", "e.jsonl"}) == [], (SEED, delay)
    log = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == sorted({r["epoch"] for r in log}), log  # no epoch logged twice
