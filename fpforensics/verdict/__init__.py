"""Verdicts an analyst can act on: calibrated operating points, weak-signal checks, provenance, an HTML report."""
