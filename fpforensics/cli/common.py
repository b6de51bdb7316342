"""CLI: the plumbing every command shares: global state, consoles, messages, progress, errors, help layout.

Messages (device line, warnings, errors, progress) go to stderr; results (tables, JSON) go to
stdout (rendered by :mod:`fpforensics.cli.render`), so ``fpt ... --json | jq`` works. Heavy
modules (torch) are imported lazily so that ``fpt --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


@dataclass
class State:
    device: str = "auto"
    verbose: int = 0
    quiet: bool = False
    _resolved: Any = None


STATE = State()
out = Console(soft_wrap=True)  # results
err = Console(stderr=True, soft_wrap=True)  # messages


def reset_state() -> None:
    global out, err
    STATE.device, STATE.verbose, STATE.quiet, STATE._resolved = "auto", 0, False, None
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


def info(msg: str) -> None:
    """A message on stderr (hidden with --quiet); ``msg`` is plain text, never markup."""
    if not STATE.quiet:
        err.print(f"[dim]{escape(msg)}[/dim]", highlight=False)


def status(msg: str) -> None:
    """A status line on stderr, shown even with --quiet (training progress, epoch by epoch)."""
    err.print(msg, highlight=False, markup=False)


def debug(msg: str) -> None:
    if STATE.verbose and not STATE.quiet:
        err.print(f"[dim]{escape(msg)}[/dim]", highlight=False)


def warn(msg: str) -> None:
    """A warning on stderr; ``msg`` is plain text (paths, identities such as spectral[median3x3])."""
    err.print(f"[yellow]warning:[/yellow] {escape(msg)}", highlight=False)


def progress(transient: bool = True):
    """A Rich progress bar on stderr (hidden with --quiet): count, rate, ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=err, transient=transient, disable=STATE.quiet or not err.is_terminal,
    )


class Bar:
    """One progress bar and the callbacks the library takes: ``start(total)``, ``advance(n)``, ``skipped(path, why)``."""

    def __init__(self, progress, task) -> None:
        self.progress, self.task = progress, task

    def start(self, total: int) -> None:
        """Add ``total`` items to do (called once per batch of work, e.g. once per side of ``verify``)."""
        current = self.progress.tasks[self.task].total or 0
        self.progress.update(self.task, total=current + total)

    def set(self, completed: int, total: int | None = None, rate: str | None = None) -> None:
        """Jump to ``completed`` (training loops report their step, not increments)."""
        extra = {k: v for k, v in (("total", total), ("rate", rate)) if v is not None}
        self.progress.update(self.task, completed=completed, **extra)

    def advance(self, n: int = 1, rate: str | None = None) -> None:
        self.progress.update(self.task, advance=n, **({"rate": rate} if rate is not None else {}))

    def skipped(self, path: Path, reason: str) -> None:
        """An unreadable file: warned about (by name) and counted as done."""
        skipped(path, reason)
        self.advance()


def skipped(path: Path, reason: str) -> None:
    """The one warning for an unreadable input file that a batch skips (``reason`` names the file)."""
    warn(f"skipped {reason}")


@contextmanager
def bar(what: str, total: int | None = None, transient: bool = True) -> Iterator[Bar]:
    """A progress bar on stderr for the duration of the block (hidden with --quiet or when stderr is no terminal)."""
    with progress(transient) as p:
        yield Bar(p, p.add_task(what, total=total, rate=""))


@contextmanager
def tasks(transient: bool = True) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Several progress bars at once: ``add(what, total)`` starts one and returns its ``advance(n)``."""
    with progress(transient) as p:
        def add(what: str, total: int) -> Callable[[int], None]:
            task = p.add_task(what, total=total, rate="")
            return lambda n: p.advance(task, n)

        yield add


class FptGroup(TyperGroup):
    """Turns FptError into a one-line message and exit code; no traceback for user errors."""

    def invoke(self, ctx):  # click.Context (vendored inside newer Typer)
        from fpforensics.errors import FptError

        try:
            return super().invoke(ctx)
        except FptError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(130) from None
        except MemoryError:
            err.print("[red]error:[/red] out of memory: try a smaller --batch-size")
            raise typer.Exit(3) from None
        except SystemExit:
            raise
        except Exception as exc:
            if _is_cli_control(exc):  # usage errors, typer.Exit, Abort: Typer/click handle them
                raise  # a bug or an environment failure: one line, details with -v
            if _is_cuda_oom(exc):
                err.print("[red]error:[/red] out of GPU memory: try a smaller --batch-size")
                raise typer.Exit(3) from None
            if STATE.verbose:
                err.print_exception()
            else:
                first = str(exc).splitlines()[0] if str(exc) else ""
                err.print(f"[red]error:[/red] {exc.__class__.__name__}: {first} (run with -v for details)",
                          highlight=False)
            raise typer.Exit(1) from None


def _is_cli_control(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ClickException", "Exit", "Abort", "TyperException"})


def _is_cuda_oom(exc: Exception) -> bool:
    return exc.__class__.__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(exc)


class FptCommand(TyperCommand):
    """Help that reads like a person wrote it: ``Usage: fpt embed [OPTIONS] IMAGES...``, choices listed
    from the registries, flags without a ``<bool>`` type."""

    def _tidy(self, ctx) -> None:
        for p in self.get_params(ctx):
            info = getattr(getattr(p, "type_descriptor", None), "parameter_info", None)
            parser = getattr(info, "parser", None)
            if hasattr(parser, "metavar"):
                p.metavar = parser.metavar()
            elif isinstance(p, TyperOption) and p.is_flag:
                p.metavar = ""
            elif isinstance(p, TyperArgument) and p.metavar is None:
                p.metavar = p.name.upper()

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
