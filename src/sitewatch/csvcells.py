"""CSV cells that a spreadsheet will not run as formulas (OWASP, "CSV Injection").

Text written by users (an analyst's note, a place name) can start with ``=``, ``+``, ``-`` or
``@``; a spreadsheet opening the CSV runs such a cell as a formula (``=HYPERLINK(...)``). Text
cells that start so are written with a leading apostrophe, which spreadsheets show as text, and
read back without it. Numbers are written as they are.
"""

from __future__ import annotations

#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """``value`` with text that starts like a formula quoted by a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def read_cell(text: str) -> str:
    """A cell written by :func:`safe_cell`, as it was."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return text
