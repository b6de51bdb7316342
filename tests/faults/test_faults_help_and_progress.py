"""What users see: every command's help (groups included), honest ETAs on long work, results on stdout only."""

from __future__ import annotations

import re

import pytest
import typer
from conftest import run_fpt
from typer.core import TyperOption
from typer.testing import CliRunner

from fpforensics.cli import common
from fpforensics.cli.app import app
from fpforensics.cli.common import JobEta, duration

runner = CliRunner()


def _all_commands(group, prefix=()):
    """Every group and command of fpt, as its argv prefix (the top level is ``()``)."""
    yield prefix, group
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _all_commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


# options whose value has a unit: the unit is named in the help text
UNITS = {"--batch-size": ("crops", "images", "per step", "per forward pass"), "--crop": ("pixels",),
         "--size": ("pixels",), "--max-steps": ("steps",), "--max-image-pixels": ("pixels",),
         "--steps": ("steps",), "--steps-per-epoch": ("steps",), "--patch": ("pixels",), "--epochs": ("epoch",),
         "--plateau-window": ("steps",), "--grid": ("crops",), "--shots": ("images",), "--pairs": ("pairs",),
         "--lr": ("rate",)}


def test_every_help_reads_like_a_person_wrote_it():
    """Groups and commands: usage names `fpt` and plain arguments, no Python types (<bool>, <str>, <list[Path]>),
    every option with a value shows its default (or [required]), options with units name them, no stray markup."""
    root = typer.main.get_command(app)
    seen = 0
    for path, cmd in _all_commands(root):
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"}, prog_name="fpt")
        assert res.exit_code == 0, path
        text = res.stdout
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert usage.split("Usage:")[1].strip().startswith("fpt"), usage
        assert "{" not in usage and "<" not in usage, usage
        assert not re.search(r"<(bool|str|int|float|path|list|int range|float range)\b", text), (path, text)
        assert "%%" not in text and "[default: (None)]" not in text, (path, text)
        assert not re.search(r"\S \.(\s|$)", text), (path, text)  # "Open-set threshold ." (an empty interpolation)
        for p in cmd.params:
            if not isinstance(p, TyperOption) or p.name == "help" or p.hidden:
                continue
            assert p.help and p.help.strip(), (path, p.name)
            name = next((o for o in p.opts if o.startswith("--")), p.opts[0])
            lines = text.splitlines()
            at = next(i for i, x in enumerate(lines) if re.match(rf"^[│\s*]*{re.escape(name)}\b", x))
            end = next((j for j in range(at + 1, len(lines)) if re.match(r"^\W*(\*\s+)?--?\w", lines[j])), len(lines))
            block = " ".join(lines[at:end])
            if not (p.is_flag or p.count):
                assert "[default:" in block or "[required]" in block, (path, name, block)
            units = UNITS.get(name)
            if units:
                assert any(u in p.help.lower() for u in units), (path, name, p.help)
        seen += 1
    assert seen >= 16  # fpt, train, gallery and their 13+ commands


# ------------------------------------------------------------------------------------------ ETA


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_eta_comes_from_the_whole_job_not_the_last_items():
    """The issue's run: 5760 models at 0.128 models/s is about 12.5 hours, not "3:33"."""
    clock = Clock()
    eta = JobEta(clock)
    eta.plan(5760)
    eta.restart()
    for _ in range(64):
        clock.t += 1 / 0.128
        eta.advance()
    assert eta.seconds_left() == pytest.approx((5760 - 64) / 0.128)
    assert duration(eta.seconds_left()) == "12:21:40"
    clock.t += 1.0  # no item for a while: the estimate counts down, never up
    assert eta.seconds_left() == pytest.approx((5760 - 64) / 0.128 - 1.0)


def test_eta_weights_groups_by_their_own_measured_cost():
    """K=2 models measured apart from K=1: before one is done, the planned cost ratio stands in."""
    clock = Clock()
    eta = JobEta(clock)
    eta.plan(10, "K1", cost=1.0)
    eta.plan(10, "K2", cost=3.5)
    eta.restart()
    for _ in range(2):
        clock.t += 2.0
        eta.advance(group="K1")
    assert eta.seconds_left() == pytest.approx(8 * 2.0 + 10 * 3.5 * 2.0)  # K2 at the job's 2 s per unit of cost
    clock.t += 10.0
    eta.advance(group="K2")  # measured: 10 s for 3.5 units, slower than planned
    assert eta.seconds_left() == pytest.approx(8 * 2.0 + 9 * 10.0)


def test_items_done_by_an_earlier_run_count_as_progress_not_speed():
    clock = Clock()
    eta = JobEta(clock)
    eta.plan(100)
    eta.already(90)  # resumed: 90 found done, in no time
    eta.restart()
    clock.t += 30.0
    eta.advance()
    assert eta.seconds_left() == pytest.approx(9 * 30.0)


def test_duration_past_a_day_and_unknown():
    assert duration(None) == "-:--:--"
    assert duration(59) == "0:00:59" and duration(3600 * 25 + 61) == "1 d 1:01:01"


def test_a_long_job_on_cpu_says_so_once_with_the_hint(monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(common, "info", said.append)
    monkeypatch.setattr(common.STATE, "_resolved", None)  # no device resolved: CPU
    clock = Clock()
    with common.bar("models", long_hint="use a GPU or --shard") as b:
        b.eta = JobEta(clock)
        b.start(1000)
        b.eta.restart()
        for _ in range(3):
            clock.t += 10.0
            b.advance()
    assert len(said) == 1 and "more than an hour" in said[0] and "use a GPU or --shard" in said[0], said
    assert "2:46:30" in said[0]  # 999 models x 10 s, from the first model's time


def test_a_short_job_says_nothing(monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(common, "info", said.append)
    clock = Clock()
    with common.bar("models", long_hint="use a GPU") as b:
        b.eta = JobEta(clock)
        b.start(10)
        b.eta.restart()
        clock.t += 1.0
        b.advance()
    assert said == []


def test_synthesize_plans_its_eta_by_architecture_cost():
    from fpforensics.synthesis.architectures import conv_macs, parse_grid

    k1 = next(s for s in parse_grid("K=1,L=1,U=nearest,N=none,S=post,A=relu"))
    k2 = next(s for s in parse_grid("K=2,L=1,U=nearest,N=none,S=post,A=relu"))
    ratio = conv_macs(k2) / conv_macs(k1)
    assert 2.0 < ratio < 6.0, ratio  # K=2 models are several times slower


# ------------------------------------------------------------------------------------------ streams


def test_results_on_stdout_status_on_stderr_no_empty_lines(tmp_path, images):
    """A run whose stderr is no terminal (a log): `device: cpu` and status on stderr, results on stdout, no blank
    lines from progress bars."""
    out = tmp_path / "e.h5"
    res = run_fpt("--device", "cpu", "embed", images, "--out", out, "--extractor", "spectral", "--grid", "1")
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines()[0] == "device: cpu", res.stderr
    assert "device:" not in res.stdout and str(out) in res.stdout
    for stream in (res.stdout, res.stderr):
        assert "" not in stream.rstrip("\n").splitlines(), repr(stream)
        assert "\x1b[" not in stream  # no terminal codes in a log
    quiet = run_fpt("-q", "--device", "cpu", "embed", images, "--out", tmp_path / "q.h5", "--extractor", "spectral",
                    "--grid", "1")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
