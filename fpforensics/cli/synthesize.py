"""`fpt synthesize` (placeholder until issue 3 lands)."""

from __future__ import annotations

from fpforensics.cli import common


def synthesize() -> None:
    """Train the pool of synthetic models (not yet available)."""
    common.not_yet_available("synthesize")
