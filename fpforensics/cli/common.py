"""CLI: the plumbing every command shares: global state, consoles, messages, progress, errors, help layout.

Messages (device line, warnings, errors, progress) go to stderr; results (tables, JSON) go to
stdout (rendered by :mod:`fpforensics.cli.render`), so ``fpt ... --json | jq`` works. Heavy
modules (torch) are imported lazily so that ``fpt --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from fpforensics.io.names import display_name


@dataclass
class State:
    device: str = "auto"
    verbose: int = 0
    quiet: bool = False
    _resolved: Any = None
    argv: list[str] = field(default_factory=list)  # this run's arguments, for "resume with: fpt ..."
    on_interrupt: list[Callable[[], str | None]] = field(default_factory=list)


STATE = State()
out = Console(soft_wrap=True)  # results
err = Console(stderr=True, soft_wrap=True)  # messages


def reset_state() -> None:
    global out, err
    STATE.device, STATE.verbose, STATE.quiet, STATE._resolved = "auto", 0, False, None
    STATE.on_interrupt = []
    # Process-wide settings of an earlier run in this process (tests): reset only where loaded, so --help stays light.
    if "fpforensics.images.decode" in sys.modules:
        decode = sys.modules["fpforensics.images.decode"]
        decode.set_pixel_limit(decode.PILLOW_PIXEL_LIMIT)
    if "fpforensics.io.store" in sys.modules:
        sys.modules["fpforensics.io.store"].begin_run()  # temporaries older than this run may be leftovers
    # Rebind consoles to the current streams (CliRunner swaps sys.stdout/stderr per invocation).
    out = Console(file=sys.stdout, soft_wrap=True)
    err = Console(file=sys.stderr, soft_wrap=True)


def get_device():
    """The device chosen by ``--device``, announced once on stderr."""
    if STATE._resolved is None:
        from fpforensics.device import resolve_device

        STATE._resolved = resolve_device(STATE.device)
        info(f"device: {STATE._resolved}")
    return STATE._resolved


def shown(msg: object) -> str:
    """Any text as one printable line: names with control characters, ANSI escapes or bytes that are not
    UTF-8 are escaped (:func:`~fpforensics.io.names.display_name`); every message goes through it."""
    return display_name(str(msg))


def info(msg: str) -> None:
    """A message on stderr (hidden with --quiet); ``msg`` is plain text, never markup."""
    if not STATE.quiet:
        err.print(f"[dim]{escape(shown(msg))}[/dim]", highlight=False)


def status(msg: str) -> None:
    """A status line on stderr, shown even with --quiet (training progress, epoch by epoch)."""
    err.print(shown(msg), highlight=False, markup=False)


def debug(msg: str) -> None:
    if STATE.verbose and not STATE.quiet:
        err.print(f"[dim]{escape(shown(msg))}[/dim]", highlight=False)


def warn(msg: str) -> None:
    """A warning on stderr; ``msg`` is plain text (paths, identities such as spectral[median3x3])."""
    err.print(f"[yellow]warning:[/yellow] {escape(shown(msg))}", highlight=False)


def error(msg: str) -> None:
    err.print(f"[red]error:[/red] {escape(shown(msg))}", highlight=False)


# ---------------------------------------------------------------------------- interruption


def on_interrupt(describe: Callable[[], str | None]) -> None:
    """On Ctrl-C, after "interrupted", print what ``describe()`` returns: what was saved and how to resume."""
    STATE.on_interrupt.append(describe)


def command_line(add: Sequence[str] = (), drop: Sequence[str] = ()) -> str:
    """This run's command, shell-quoted, with the flags ``drop`` removed and ``add`` appended."""
    args = [a for a in STATE.argv if a not in drop]
    args += [a for a in add if a not in args]
    return shlex.join(["fpt", *args])


# ---------------------------------------------------------------------------- progress


class JobEta:
    """Seconds left from the measured rate of the whole job, not of the last few items.

    Items are planned with a group and a cost (``plan``); the remaining items' cost is multiplied
    by the seconds per unit of cost measured so far, for their own group once one of its items
    is done (K=2 synthetic models, slower than K=1, are measured apart), else for the whole job.
    Items found done by an earlier run (``already``) count as progress, never as speed.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.t0: float | None = None
        self.last = 0.0
        self.left: dict[Hashable, list[float]] = {}  # group -> costs of items not done
        self.spent: dict[Hashable, float] = {}  # group -> seconds
        self.done_cost: dict[Hashable, float] = {}  # group -> cost of items done in this run

    def plan(self, n: int = 1, group: Hashable = None, cost: float = 1.0) -> None:
        if self.t0 is None:
            self.t0 = self.last = self.clock()
        self.left.setdefault(group, []).extend([float(cost)] * n)

    def restart(self) -> None:
        """The work starts now: time before it (setup) is not spent on any item."""
        self.t0 = self.last = self.clock()

    def already(self, n: int = 1, group: Hashable = None) -> None:
        """``n`` planned items found done: no longer left, and no time spent on them."""
        costs = self.left.get(group, [])
        del costs[:n]

    def advance(self, n: int = 1, group: Hashable = None) -> None:
        now = self.clock()
        if self.t0 is None:
            self.t0 = self.last = now
        costs = self.left.get(group, [])
        taken = costs[:n] or [1.0] * n
        del costs[:n]
        self.spent[group] = self.spent.get(group, 0.0) + now - self.last
        self.done_cost[group] = self.done_cost.get(group, 0.0) + sum(taken)
        self.last = now

    def rate(self) -> float | None:
        """Seconds per unit of cost over the whole job so far."""
        cost = sum(self.done_cost.values())
        return sum(self.spent.values()) / cost if cost else None

    def seconds_left(self) -> float | None:
        overall = self.rate()
        if overall is None:
            return None
        total = 0.0
        for group, costs in self.left.items():
            own = self.spent.get(group, 0.0) / self.done_cost[group] if self.done_cost.get(group) else overall
            total += own * sum(costs)
        return max(0.0, total - (self.clock() - self.last))


def duration(seconds: float | None) -> str:
    """``1:02:03``, or ``2 d 3:04:05`` past a day; ``-:--:--`` when unknown."""
    if seconds is None:
        return "-:--:--"
    s = int(round(seconds))
    days, s = divmod(s, 86400)
    text = f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{days} d {text}" if days else text


class EtaColumn(ProgressColumn):
    """The time left of a bar, from its :class:`JobEta`."""

    def render(self, task) -> Text:
        eta = task.fields.get("eta")
        return Text(duration(eta.seconds_left() if eta is not None else None), style="progress.remaining")


def progress(transient: bool = True) -> Progress:
    """A Rich progress bar on stderr (hidden with --quiet or when stderr is no terminal): count, rate, ETA."""
    return Progress(
        SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
        EtaColumn(), console=err, transient=transient, disable=STATE.quiet or not err.is_terminal,
    )


class Bar:
    """One progress bar and the callbacks the library takes: ``start(total)``, ``advance(n)``, ``skipped(path, why)``.

    Its ETA comes from the measured rate of the whole job (:class:`JobEta`). With ``long_hint``, a
    job estimated at more than ``LONG_JOB_S`` on CPU says so once, with the hint (e.g. a GPU).
    """

    LONG_JOB_S = 3600.0

    def __init__(self, progress: Progress, task, long_hint: str | None = None) -> None:
        self.progress, self.task = progress, task
        self.eta = JobEta()
        self.progress.update(task, eta=self.eta)
        self.long_hint = long_hint
        self._base: int | None = None
        self._last = 0
        self._hinted = False

    def start(self, total: int, group: Hashable = None, cost: float = 1.0) -> None:
        """Add ``total`` items to do (called once per batch of work, e.g. once per side of ``verify``)."""
        current = self.progress.tasks[self.task].total or 0
        self.progress.update(self.task, total=current + total)
        self.eta.plan(total, group, cost)

    def already(self, n: int, group: Hashable = None) -> None:
        """``n`` items an earlier run finished: counted as done, never as speed."""
        self.eta.already(n, group)
        self.progress.update(self.task, advance=n)

    def set(self, completed: int, total: int | None = None, rate: str | None = None) -> None:
        """Jump to ``completed`` (training loops report their step, not increments); the first call is the start."""
        if self._base is None:  # the first report: the loop starts now, after steps done by an earlier run (or 0)
            self._base = completed
            if total is not None and not self.eta.left:
                self.eta.plan(total)
            self.eta.already(completed)
            self.eta.restart()
        elif completed > self._last:
            self.eta.advance(completed - self._last)
        self._last = completed
        extra = {k: v for k, v in (("total", total), ("rate", rate)) if v is not None}
        self.progress.update(self.task, completed=completed, **extra)
        self._maybe_hint()

    def advance(self, n: int = 1, rate: str | None = None, group: Hashable = None) -> None:
        self.eta.advance(n, group)
        self.progress.update(self.task, advance=n, **({"rate": rate} if rate is not None else {}))
        self._maybe_hint()

    def skipped(self, path: Path, reason: str) -> None:
        """An unreadable file: warned about (by name) and counted as done."""
        skipped(path, reason)
        self.advance()

    def seconds_left(self) -> float | None:
        return self.eta.seconds_left()

    def _maybe_hint(self) -> None:
        if self.long_hint is None or self._hinted:
            return
        left = self.eta.seconds_left()
        if left is None:
            return
        self._hinted = True
        if left > self.LONG_JOB_S and getattr(STATE._resolved, "type", "cpu") == "cpu":
            info(f"about {duration(left)} left at the measured rate on CPU (more than an hour): {self.long_hint}")


def skipped(path: Path, reason: str) -> None:
    """The one warning for an unreadable input file that a batch skips (``reason`` names the file)."""
    warn(f"skipped {reason}")


@contextmanager
def bar(what: str, total: int | None = None, transient: bool = True, long_hint: str | None = None) -> Iterator[Bar]:
    """A progress bar on stderr for the duration of the block (hidden with --quiet or when stderr is no terminal)."""
    with progress(transient) as p:
        b = Bar(p, p.add_task(what, total=total, rate=""), long_hint)
        if total is not None:
            b.eta.plan(total)
        yield b


@contextmanager
def tasks(transient: bool = True) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Several progress bars at once: ``add(what, total)`` starts one and returns its ``advance(n)``."""
    with progress(transient) as p:
        def add(what: str, total: int) -> Callable[[int], None]:
            b = Bar(p, p.add_task(what, total=total, rate=""))
            b.eta.plan(total)
            return lambda n: b.advance(n)

        yield add


class FptGroup(TyperGroup):
    """Turns FptError into a one-line message and exit code; no traceback for user errors."""

    def format_help(self, ctx, formatter) -> None:
        tidy_params(self.get_params(ctx), ctx)
        super().format_help(ctx, formatter)

    def main(self, args=None, *rest, **kwargs):
        STATE.argv = list(sys.argv[1:] if args is None else args)
        return super().main(args, *rest, **kwargs)

    def invoke(self, ctx):  # click.Context (vendored inside newer Typer)
        from fpforensics.errors import FptError

        try:
            return super().invoke(ctx)
        except FptError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]")
            for describe in STATE.on_interrupt:
                try:
                    line = describe()
                except Exception:  # what was saved cannot be read back: say nothing rather than fail here
                    line = None
                if line:
                    err.print(shown(line), highlight=False, markup=False)
            STATE.on_interrupt = []
            raise typer.Exit(130) from None
        except BrokenPipeError:  # stdout closed early (`fpt ... --help | head`): nothing more to say, and no error
            with contextlib.suppress(Exception):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
            raise typer.Exit(141) from None
        except MemoryError:
            error("out of memory: try a smaller --batch-size")
            raise typer.Exit(3) from None
        except SystemExit:
            raise
        except Exception as exc:
            if _is_cli_control(exc):  # usage errors, typer.Exit, Abort: Typer/click handle them
                raise  # a bug or an environment failure: one line, details with -v
            if _is_cuda_oom(exc):
                error("out of GPU memory: try a smaller --batch-size")
                raise typer.Exit(3) from None
            if STATE.verbose:
                err.print_exception()
            else:
                first = str(exc).splitlines()[0] if str(exc) else ""
                error(f"{exc.__class__.__name__}: {first} (run with -v for details)")
            raise typer.Exit(1) from None


def _is_cli_control(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ClickException", "Exit", "Abort", "TyperException"})


def _is_cuda_oom(exc: Exception) -> bool:
    return exc.__class__.__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(exc)


_PLAIN_TYPES = {"int": "INTEGER", "int range": "INTEGER", "float": "NUMBER", "float range": "NUMBER", "str": "TEXT",
                "path": "PATH", "file": "FILE", "directory": "FOLDER"}


def _plain_type(shown: str | None) -> str | None:
    """Typer's ``<list[Path]>``, ``<int range>``, ``<str>`` as a person writes them: ``PATH``, ``INTEGER``, ``TEXT``."""
    if not shown:
        return shown
    label = shown.strip("<>")
    label = label[5:-1] if label.startswith("list[") and label.endswith("]") else label
    return _PLAIN_TYPES.get(label.lower(), label.upper())


def tidy_params(params, ctx) -> None:
    """Plain metavars for help: registry choices listed, flags (and counts) without a type, ``PATH``/``INTEGER``/...
    instead of Python types, and an argument's name only once."""
    for p in params:
        info = getattr(getattr(p, "type_descriptor", None), "parameter_info", None)
        parser = getattr(info, "parser", None)
        if hasattr(parser, "metavar"):
            p.metavar = parser.metavar()
        elif isinstance(p, TyperOption) and (p.is_flag or p.count):
            p.metavar = ""
        elif isinstance(p, TyperOption) and p.metavar is None:
            p.metavar = _plain_type(p.display_type(ctx))
        elif isinstance(p, TyperArgument) and p.metavar is None:
            p.metavar = p.name.upper()
        if isinstance(p, TyperArgument):  # its name is its metavar: no Python type beside it
            p.display_type_rich = lambda ctx, _p=p: _plain_type(_p.display_type(ctx))


class FptCommand(TyperCommand):
    """Help that reads like a person wrote it: ``Usage: fpt embed [OPTIONS] IMAGES...``, choices listed
    from the registries, flags without a ``<bool>`` type."""

    def _tidy(self, ctx) -> None:
        tidy_params(self.get_params(ctx), ctx)

    def format_help(self, ctx, formatter) -> None:
        self._tidy(ctx)
        super().format_help(ctx, formatter)

    def collect_usage_pieces(self, ctx) -> list[str]:
        self._tidy(ctx)
        pieces = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            if isinstance(p, TyperArgument):
                name = p.metavar + ("..." if p.nargs != 1 else "")
                pieces.append(name if p.required else f"[{name}]")
        return pieces
