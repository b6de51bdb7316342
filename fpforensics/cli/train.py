"""`fpt train` (placeholder until issue 4 lands)."""

from __future__ import annotations

import typer

from fpforensics.cli import common

train_app = typer.Typer(cls=common.FptGroup, help="Train the denoiser and the fingerprint extractor.",
                        no_args_is_help=True)


@train_app.command("denoiser")
def denoiser() -> None:
    """Train the DnCNN denoiser (not yet available)."""
    common.not_yet_available("train denoiser")


@train_app.command("extractor")
def extractor() -> None:
    """Train the fingerprint extractor (not yet available)."""
    common.not_yet_available("train extractor")
