"""The fault campaign's fixtures: tiny inputs, fpt as a subprocess, and a way to deny write permission even to root.

Every case of the campaign is listed, with what it must get, in docs/faults.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fpforensics

ROOT = Path(fpforensics.__file__).resolve().parents[1]


def fpt_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fpforensics.cli.app", *map(str, args)]


def fpt_env() -> dict[str, str]:
    """The environment of an fpt subprocess: this source tree first, one thread (the suite shares 2 cores)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}


def run_fpt(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """fpt in a fresh process (what a user runs), output captured as bytes-safe text."""
    return subprocess.run(fpt_command(*args), cwd=cwd, env=fpt_env(), capture_output=True, timeout=timeout,
                          text=True, errors="backslashreplace")


def _default_sigint() -> None:
    # A suite started in the background by a non-interactive shell inherits SIGINT ignored, and so
    # would fpt: the Ctrl-C tests must send fpt a signal it acts on, as it does in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_fpt(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(fpt_command(*args), cwd=cwd, env=fpt_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="backslashreplace", preexec_fn=_default_sigint)


def wait_for(predicate, timeout: float = 120.0, every: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return False


def one_line_error(res, *needles: str) -> str:
    """The run failed with exit code 2 and one ``error:`` line naming ``needles``, no traceback."""
    err = res.stderr
    code = res.returncode if hasattr(res, "returncode") else res.exit_code
    assert code == 2, (code, err)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err + (res.stdout or ""), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def write_noise_images(folder: Path, n: int = 4, size: int = 140, seed: int = 0, prefix: str = "img") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(folder / f"{prefix}{i}.png")
    return folder


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> Path:
    """Four small noise images: enough for the spectral extractor, fast to embed."""
    return write_noise_images(tmp_path_factory.mktemp("images") / "model_a")


@pytest.fixture
def deny_write(monkeypatch):
    """Make ``paths`` read-only: chmod for a normal user; for root (who writes anyway), os.access says no.

    fpt checks writability with ``os.access`` before any work, so the check under test is the same.
    """
    changed: list[tuple[Path, int]] = []
    denied: set[str] = set()
    real_access = os.access

    def deny(*paths: Path) -> None:
        for p in paths:
            if os.geteuid() != 0:
                changed.append((p, p.stat().st_mode))
                p.chmod(0o555 if p.is_dir() else 0o444)
            denied.add(os.path.abspath(p))
        if os.geteuid() == 0:
            monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False
                                if mode & os.W_OK and os.path.abspath(p) in denied else real_access(p, mode, *a, **k))

    yield deny
    for p, mode in changed:
        p.chmod(mode)
