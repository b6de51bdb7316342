"""User-facing errors.

Anything raised as an :class:`FptError` is bad input or a bad environment, not a bug: the CLI
prints its message on one line and exits with ``exit_code``, with no traceback.
"""

from __future__ import annotations


class FptError(Exception):
    """An error the user can fix; the message is shown as is."""

    exit_code = 2


class InputError(FptError):
    """Missing, unreadable, corrupt or wrong-kind input."""


class IncompatibleError(FptError):
    """Things that cannot be combined, e.g. a gallery made by another extractor."""


class OutputError(FptError):
    """An output that cannot be written."""
