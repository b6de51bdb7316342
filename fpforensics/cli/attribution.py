"""`fpt embed`, `fpt gallery`, `fpt identify`, `fpt verify` (placeholders until issue 5 lands)."""

from __future__ import annotations

import typer

from fpforensics.cli import common

gallery_app = typer.Typer(cls=common.FptGroup, help="Enrolled models (HDF5 gallery).", no_args_is_help=True)


def embed() -> None:
    """Embed images into fingerprints (not yet available)."""
    common.not_yet_available("embed")


def identify() -> None:
    """1:N identification against the gallery (not yet available)."""
    common.not_yet_available("identify")


def verify() -> None:
    """1:1 verification of two images (not yet available)."""
    common.not_yet_available("verify")


@gallery_app.command("add")
def gallery_add() -> None:
    """Enroll a model (not yet available)."""
    common.not_yet_available("gallery add")


@gallery_app.command("list")
def gallery_list() -> None:
    """List enrolled models (not yet available)."""
    common.not_yet_available("gallery list")


@gallery_app.command("show")
def gallery_show() -> None:
    """Show one enrolled model (not yet available)."""
    common.not_yet_available("gallery show")


@gallery_app.command("remove")
def gallery_remove() -> None:
    """Remove an enrolled model (not yet available)."""
    common.not_yet_available("gallery remove")
