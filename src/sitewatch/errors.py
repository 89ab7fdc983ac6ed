"""The one error type for user mistakes.

Every problem the user can fix (a wrong path, a file without a CRS, an unparseable date, a
workspace written by a newer sitewatch) raises :class:`SitewatchError` with a message that names
the file and says what to do. The CLI prints that message on one line, without a traceback.
Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


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
