"""The one error type for user mistakes.

Every problem the user can fix (a wrong path, a file without a CRS, an unparseable date, a
workspace written by a newer sitewatch) raises :class:`SitewatchError` with a message that names
the file and says what to do. The CLI prints that message on one line, without a traceback.
Anything else escaping is a bug and keeps its traceback, except running out of disk space
(:func:`is_disk_full`), which is the machine's state, not a bug: it is reported in one line too.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is running out of space: ENOSPC or a quota (EDQUOT) from the OS, or
    SQLite's "database or disk is full"."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return (isinstance(exc, sqlite3.Error)
            and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL)


def disk_full_message(exc: BaseException) -> str:
    """One line for a disk-full ``exc``: what could not be written, and what to do."""
    where = getattr(exc, "filename", None)
    return (f"out of disk space{f' while writing {where}' if where else ''}; free some space and "
            "run the command again (what was already stored is unchanged: every file and "
            "record is written whole or not at all)")


class SitewatchError(Exception):
    """A user-fixable problem, described in one line.

    Parameters
    ----------
    message
        What went wrong and what to do about it.
    path
        The file or directory concerned, if any; it is prefixed to the message.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path else message)
