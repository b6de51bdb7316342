"""`fpt eval` (placeholder until issue 7 lands)."""

from __future__ import annotations

from fpforensics.cli import common


def evaluate() -> None:
    """The papers' evaluation protocols (not yet available)."""
    common.not_yet_available("eval")
