"""Names made safe to show: the sanitizer lives in :mod:`fpforensics.io.names` (every printed name goes through it)."""

from fpforensics.io.names import csv_field, display_name

__all__ = ["csv_field", "display_name"]
