"""Names made safe to show and to store: file and model names escaped for terminals, CSV and HTML, never cut or dropped.

:func:`fpforensics.io.store.safe_name` makes file *slugs* for output files: lossy by design.
Showing a name is a different job: a name is shown in full, and whatever could act on a
terminal or a spreadsheet is written as a visible escape. Every line fpt prints (messages,
warnings, errors, tables, CSV) goes through :func:`display_name`; JSON keeps names exact, with
JSON's own escapes. Files fpt writes store names as UTF-8 text (:func:`stored_name`).
"""

from __future__ import annotations

import os

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_FORMULA_START = ("=", "+", "-", "@")


def display_name(name: str | bytes | os.PathLike) -> str:
    """``name`` with every control or invisible character shown as an escape; never raises.

    * ``\\n``, ``\\r``, ``\\t`` are written as such; other C0/C1 controls and DEL as ``\\xNN``;
      so ANSI escape sequences (ESC, CSI) are shown, not executed.
    * Bytes that are not valid in the file-system encoding (``os.fsdecode`` maps them to lone
      surrogates with ``surrogateescape``) are shown as the original byte, ``\\xNN``.
    * Invisible or direction-changing characters (bidi overrides such as U+202E, zero-width
      spaces, non-breaking spaces) are shown as ``\\uNNNN``: they can make one name look like another.
    Backslashes are kept as they are, so Windows paths stay readable.
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    out = []
    for ch in str(name):
        code = ord(ch)
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, smuggled through surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == " " or ch.isprintable():
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def csv_field(name: str | bytes | os.PathLike) -> str:
    """:func:`display_name`, and a leading ``'`` when a spreadsheet would run it as a formula (=, +, -, @).

    The csv module's quoting already keeps commas and quotes in their field; this guards the
    other way a file name can act on the reader (CSV injection).
    """
    shown = display_name(name)
    return "'" + shown if shown.startswith(_FORMULA_START) else shown


def stored_name(name: str | bytes | os.PathLike) -> str:
    """``name`` as UTF-8 text any file fpt writes can hold (HDF5, SQLite, JSON); never raises.

    A valid name is kept exactly; a byte that is not valid UTF-8 (a lone surrogate after
    ``os.fsdecode``) is written ``\\xNN``, as :func:`display_name` shows it.
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    name = str(name)
    if not any(0xD800 <= ord(ch) <= 0xDFFF for ch in name):
        return name
    return "".join(f"\\x{ord(ch) - 0xDC00:02x}" if 0xDC80 <= ord(ch) <= 0xDCFF
                   else f"\\u{ord(ch):04x}" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in name)
