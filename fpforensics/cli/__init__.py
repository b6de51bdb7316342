"""CLI: the ``fpt`` command line, a thin Typer layer over the library's front door (``fpforensics.api``)."""
