"""Scaling out: the pipeline over the tiles of a large AOI and over the AOIs of watch lists,
as tasks on ``dask.distributed`` (or in this process).

- :mod:`tiles`: the tile layout of a grid (cores that partition it, read with an overlap) and
  its strips (blocks of neighbouring tiles, one task each).
- :mod:`plan`: the AOI-wide decisions of the stack, taken once; the run key.
- :mod:`work`: a strip task: its tiles' part of the stack and change layers (a worker).
- :mod:`finalise`: assembling an AOI's layers, recording them, extracting its sites (client).
- :mod:`cluster`: where tasks run (an existing scheduler, a LocalCluster, or inline).
- :mod:`run`: driving all of it, resumable and incremental. Watch files are read and run
  above this package (:mod:`sitewatch.watch`, :mod:`sitewatch.watchlist`), which knows
  nothing of them.
"""

from sitewatch.scale.cluster import INLINE, SCHEDULER_ENV, connect
from sitewatch.scale.plan import StackOptions
from sitewatch.scale.run import OVERLAP_PX, TILE_PX, AOIJob, ScaleRun, run_jobs, run_tiled
from sitewatch.scale.tiles import Tile, tile_layout

__all__ = ["INLINE", "OVERLAP_PX", "SCHEDULER_ENV", "TILE_PX", "AOIJob", "ScaleRun",
           "StackOptions", "Tile", "connect", "run_jobs", "run_tiled", "tile_layout"]
