"""What a worker does with one strip of tiles: their part of the stack and their change layers.

A *strip* is a block of adjacent tiles, two tile rows by up to six columns
(:func:`sitewatch.scale.tiles.strips`). The strip is stacked acquisition by acquisition: for
every included acquisition not stacked by a previous run (an incremental run finds those in the
store's linked chunks) one reader sweeps the strip's tiles column by column, keeping the
imagery blocks of a column (:meth:`sitewatch.stack.acquisition.MosaicReader.reserve`), so the
blocks that neighbouring outer windows share are decoded once
(:class:`sitewatch.stack.resample.BlockCache`); each tile's outer window
(core plus overlap) is read onto the grid with the plan's shift, masked for clouds and shadows
on the whole outer window, cropped to the core, normalised with the plan's fit and written into
the AOI's stack store (the core's chunks belong to this tile alone). Then each tile's time
series is read back from the store and goes through the time-series break detection
(:func:`sitewatch.detect.run.break_layers`, the blocks of the one-process detection), and the
tile's change layers are written to one ``.npz`` file, temp file then
``os.replace``: the file's presence is the proof that the tile is finished, so a resumed run
skips it and a retried task finds it.

Memory: the reader's decoded blocks (those a column of two outer windows touches: 24 blocks of
512 x 512 x 4 float32 bands, 96 MB), one acquisition's outer window, then one tile's series as
float32, ``dates x bands x tile_px^2 x 4`` bytes (6 dates, 4 bands and 1024 px: 100 MB) and the
detection of one block.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from sitewatch.detect.run import break_layers
from sitewatch.scale.plan import GDAL_CACHE_MB, StackPlan, open_store
from sitewatch.scale.tiles import Tile, column_windows
from sitewatch.stack import output, passes
from sitewatch.stack.output import CLEAR


@dataclass(frozen=True)
class StripReport:
    """What a strip task did, for progress and the benchmark."""

    aoi: str
    tiles: tuple[str, ...]  # tiles run by this task
    reused: tuple[str, ...]  # tiles whose result file was already there (resumed or retried)
    seconds: float
    pid: int
    peak_rss_bytes: int  # the worker process's peak resident set so far


def process_strip(plan: StackPlan, tiles: list[Tile], store_path: Path, tiles_dir: Path
                  ) -> StripReport:
    """Stack and detect the unfinished tiles of a strip (see the module docstring); their
    results go to ``tiles_dir/<tile name>.npz``. Returns a :class:`StripReport`."""
    started = time.perf_counter()
    todo = [tile for tile in tiles if not result_path(tiles_dir, tile).exists()]
    if todo:
        store = open_store(store_path)
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20):
            _stack_strip(plan, todo, store)
        for tile in todo:
            rows, cols = _slices(tile.core)
            values = store["reflectance"][:, :, rows, cols]
            clear = store["mask"][:, rows, cols] == CLEAR
            layers, parameters = break_layers(values, clear, plan.times,
                                              plan.selection.band_names)
            path = result_path(tiles_dir, tile)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as file:
                np.savez(file, parameters=np.array(json.dumps(parameters)), **layers)
            os.replace(tmp, path)
    return StripReport(plan.selection.aoi.name, tuple(t.name for t in todo),
                       tuple(t.name for t in tiles if t not in todo),
                       time.perf_counter() - started, os.getpid(), peak_rss_bytes())


def result_path(tiles_dir: Path, tile: Tile) -> Path:
    """The change-layer file of ``tile``."""
    return tiles_dir / f"{tile.name}.npz"


def peak_rss_bytes() -> int:
    """Peak resident set size of this process, bytes (``getrusage``; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _slices(window) -> tuple[slice, slice]:
    return (slice(window.row_off, window.row_off + window.height),
            slice(window.col_off, window.col_off + window.width))


def _stack_strip(plan: StackPlan, tiles: list[Tile], store) -> None:
    """Write the cores of ``tiles`` (west to east along one tile row) into the stack store,
    acquisition by acquisition, each read through one reader."""
    selection = plan.selection
    grid, band_names = selection.grid, selection.band_names
    local = selection.options.coregistration == "local"
    ref_acq = next(a for a, o in plan.kept if o.key == plan.reference)
    for t, (acq, outcome) in enumerate(plan.kept):
        if t < plan.reused:  # already stacked by the previous run: its linked chunks
            continue
        with contextlib.ExitStack() as readers:
            reader = readers.enter_context(acq.reader(band_names, grid, outcome.applied_shift))
            ref_reader = None
            if local and acq is not ref_acq:
                ref_reader = readers.enter_context(ref_acq.reader(band_names, grid))
            for window in column_windows(tiles):
                reader.reserve(window)
            for tile in tiles:
                data, flags = passes.stack_window(
                    reader, acq, outcome, band_names, grid, tile.core, tile.outer,
                    fit=plan.fits.get(acq.key), ref_reader=ref_reader,
                    min_confidence=selection.options.min_shift_confidence)
                output.write_block(store, t, tile.core, data, flags)
