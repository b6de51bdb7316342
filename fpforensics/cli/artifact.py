"""`fpt artifact` (placeholder until issue 6 lands)."""

from __future__ import annotations

from fpforensics.cli import common


def artifact() -> None:
    """ManiFPT artifacts against a real-image manifold (not yet available)."""
    common.not_yet_available("artifact")
