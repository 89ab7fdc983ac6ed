"""Where the tasks run: a Dask cluster (local or remote), or this process.

``scheduler`` is, in order of precedence, the argument, the environment variable
:data:`SCHEDULER_ENV`, or nothing:

- ``"tcp://host:port"`` (any address ``dask.distributed.Client`` accepts): an existing
  cluster; its workers must see the workspace at the same path (a shared file system).
- nothing: a ``LocalCluster`` sized to the machine: one single-threaded worker process per
  core, as many as the memory allows at :data:`WORKER_MEMORY_BYTES` each (fewer with
  ``workers``).
- ``"inline"``: no Dask at all; tasks run one after another in this process (the reference
  the distributed runs are checked against, and the way to debug a task).

Tasks are plain functions of picklable arguments. Dask reruns the task of a worker that died
(up to ``distributed.scheduler.allowed-failures`` times), so a killed worker costs its tiles
again, nothing more.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from sitewatch.errors import SitewatchError

#: Environment variable naming the scheduler when no ``scheduler`` argument is given.
SCHEDULER_ENV = "SITEWATCH_SCHEDULER"
#: ``scheduler`` value that runs every task in this process, without Dask.
INLINE = "inline"
#: Memory a worker is given (and sized for: a 1024 px tile of a 6-date, 4-band stack peaks
#: well under it), bytes.
WORKER_MEMORY_BYTES = 2 * 2**30


class InlinePool:
    """Runs tasks in this process, in submission order."""

    dashboard_link = None

    def __init__(self) -> None:
        self._queue: deque = deque()

    def submit(self, key: str, function: Callable, *args: Any) -> None:
        self._queue.append((key, function, args))

    def completed(self) -> Iterator[tuple[str, Any]]:
        """(key, result) of each task as it finishes, including tasks submitted meanwhile."""
        while self._queue:
            key, function, args = self._queue.popleft()
            yield key, function(*args)


class DaskPool:
    """Runs tasks on a ``dask.distributed`` cluster through ``client``."""

    def __init__(self, client) -> None:
        from dask.distributed import as_completed

        self.client = client
        self._pending = as_completed(loop=client.loop)
        self._keys: dict[str, str] = {}

    @property
    def dashboard_link(self) -> str | None:
        return self.client.dashboard_link

    def submit(self, key: str, function: Callable, *args: Any) -> None:
        future = self.client.submit(function, *args, key=key, pure=False)
        self._pending.add(future)

    def completed(self) -> Iterator[tuple[str, Any]]:
        for future in self._pending:
            try:
                yield future.key, future.result()
            finally:
                future.release()


def default_workers() -> int:
    """Worker processes a LocalCluster gets: one per core, within the machine's memory."""
    import psutil

    cores = os.cpu_count() or 1
    return max(1, min(cores, psutil.virtual_memory().total // WORKER_MEMORY_BYTES))


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int | None = None
            ) -> Iterator[InlinePool | DaskPool]:
    """A task pool on ``scheduler`` (see the module docstring); closed on exit.

    Raises
    ------
    SitewatchError
        If ``workers`` is not positive, or the scheduler cannot be reached.
    """
    scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if workers is not None and workers < 1:
        raise SitewatchError(f"workers must be 1 or more, got {workers}")
    if scheduler == INLINE:
        yield InlinePool()
        return
    import dask
    from dask.distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            # Dask's nannies set MALLOC_TRIM_THRESHOLD_ in their workers, which turns off glibc's
            # adaptive mmap threshold: every large numpy temporary is then a fresh mmap and
            # page-faulted in, and the tile tasks ran half as fast as in one process. Kept for
            # the cluster's life, so that restarted workers spawn the same way.
            stack.enter_context(dask.config.set({"distributed.nanny.pre-spawn-environ": {
                key: value for key, value in
                dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
                if key != "MALLOC_TRIM_THRESHOLD_"}}))
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers or default_workers(), threads_per_worker=1, processes=True,
                memory_limit=WORKER_MEMORY_BYTES, dashboard_address=":0"))
            client = stack.enter_context(Client(cluster, set_as_default=False))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout="20s",
                                                    set_as_default=False))
            except (OSError, TimeoutError) as exc:
                raise SitewatchError(f"cannot reach the Dask scheduler {scheduler!r} ({exc}); "
                                     f"check the address or unset {SCHEDULER_ENV}") from exc
        yield DaskPool(client)
