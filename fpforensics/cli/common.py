"""Shared CLI plumbing: global state, consoles, errors, progress, JSON output.

Messages (device line, warnings, errors, progress) go to stderr; results (tables, JSON) go to
stdout, so ``fpt ... --json | jq`` works. Heavy modules (torch) are imported lazily so that
``fpt --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup


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
    if not STATE.quiet:
        err.print(f"[dim]{msg}[/dim]", highlight=False)


def debug(msg: str) -> None:
    if STATE.verbose and not STATE.quiet:
        err.print(f"[dim]{msg}[/dim]", highlight=False)


def warn(msg: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {msg}", highlight=False, markup=True)


def emit_json(obj: Any) -> None:
    """Print machine-readable results on stdout (plain, no Rich markup)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(o: Any):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


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
        TimeRemainingColumn(), console=err, transient=transient, disable=STATE.quiet,
    )


def not_yet_available(command: str) -> None:
    err.print(f"[red]error:[/red] `fpt {command}` is not yet available in this version")
    raise typer.Exit(1)


class FptGroup(TyperGroup):
    """Turns FptError into a one-line message and exit code; no traceback for user errors."""

    def invoke(self, ctx):  # click.Context (vendored inside newer Typer)
        from fpforensics.errors import FptError

        try:
            return super().invoke(ctx)
        except FptError as exc:
            from rich.markup import escape  # messages hold paths and identities like "spectral[median3x3]"

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
