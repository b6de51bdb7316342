"""The `fpt` command line: a thin Typer layer over the library."""
