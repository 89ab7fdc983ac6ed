"""One writing run at a time per workspace, and the leftovers of killed runs swept away.

``stack``, ``detect``, ``track`` and ``watch run`` hold :func:`run_lock` on their workspace (the
stage functions themselves, :func:`sitewatch.stack.build_stack`, :func:`sitewatch.detect.detect`
and :func:`sitewatch.sites.extract_sites`, take it through :func:`holds_run_lock`, so a Python
caller is kept out as the command line is): an
advisory exclusive lock (POSIX ``flock``) on ``.sitewatch-run.lock`` in the workspace
directory, released by the operating system when the process ends, however it ends. A second
writing run on the same workspace gets a one-line error naming the run that holds it; reads
(``sites``, ``report``, the viewer) need no lock, the GeoPackage's transactions keep them
consistent. The lock is re-entrant within a process (``watch run`` stacks, detects and tracks
under the one lock).

While it holds the lock a run is the only writer, so the first thing it does is remove the
temporary files and folders (``.NAME.tmp``) that killed runs left in the workspace's raster
folders: nobody else can be writing them.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from sitewatch.errors import SitewatchError
from sitewatch.store.workspace import Workspace

LOCK_NAME = ".sitewatch-run.lock"
#: Where runs write their temporary files, relative to the workspace (searched two levels deep).
TEMPORARY_ROOTS = ("rasters",)

_held: dict[Path, tuple[int, int]] = {}  # workspace root -> (file descriptor, depth)


@contextlib.contextmanager
def run_lock(workspace: str | os.PathLike, command: str, *,
             create: bool = False) -> Iterator[list[Path]]:
    """Hold the workspace's run lock inside the block; yields the leftovers it removed.

    With ``create`` a missing workspace directory is made (a watch run ingests into it);
    otherwise a missing one is not locked, and the command reports it as it would.

    Raises
    ------
    SitewatchError
        Another process holds the lock (the message names its command, process id and start).
    """
    root = Path(workspace).expanduser().resolve()
    if root in _held:
        fd, depth = _held[root]
        _held[root] = (fd, depth + 1)
        try:
            yield []
        finally:
            _held[root] = (fd, _held[root][1] - 1)
        return
    if create:
        root.mkdir(parents=True, exist_ok=True)
    elif not root.is_dir():
        yield []
        return
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another run"
        os.close(fd)
        raise SitewatchError(f"another sitewatch run is writing this workspace ({holder}); "
                             "wait for it to finish and run the command again", root) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{command}, process {os.getpid()}, since "
                  f"{datetime.now(UTC).isoformat(timespec='seconds')}\n".encode(), 0)
    _held[root] = (fd, 1)
    try:
        yield sweep_leftovers(root)
    finally:
        del _held[root]
        os.ftruncate(fd, 0)
        os.close(fd)  # releases the lock


def holds_run_lock(command: str) -> Callable[[Callable], Callable]:
    """Decorate a stage function whose first argument is a workspace (a path or an open
    :class:`~sitewatch.store.Workspace`) so that it runs under :func:`run_lock` for ``command``."""
    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def locked(workspace, *args, **kwargs):
            root = workspace.root if isinstance(workspace, Workspace) else workspace
            with run_lock(root, command):
                return function(workspace, *args, **kwargs)
        return locked
    return decorate


def sweep_leftovers(root: Path) -> list[Path]:
    """Remove the ``.*.tmp`` files and folders under the workspace's raster folders (two levels
    deep); call it only while holding the run lock. Returns what was removed."""
    removed = []
    for top in TEMPORARY_ROOTS:
        for pattern in (".*.tmp", "*/.*.tmp"):
            for path in sorted((root / top).glob(pattern)):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed
