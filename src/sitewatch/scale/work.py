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
series, read back from the store but for the last acquisitions stacked, which the task held
in memory (:data:`HELD_MB`), goes through the time-series break detection
(:func:`sitewatch.detect.run.break_layers`, the blocks of the one-process detection), and the
tile's change layers are written to one ``.npz`` file, temp file then
``os.replace``: the file's presence is the proof that the tile is finished, so a resumed run
skips it and a retried task finds it.

Memory: the reader's decoded blocks (those a column of two outer windows touches: 24 blocks of
512 x 512 x 4 float32 bands, 96 MB), one acquisition's outer window, then one tile's series as
float32, ``dates x bands x tile_px^2 x 4`` bytes (6 dates, 4 bands and 1024 px: 100 MB) and the
detection of one block; and the held acquisitions, at most :data:`HELD_MB`.
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

#: Memory (MB) a strip task holds of its stacked tiles between stacking and detection, so
#: that the last acquisitions stacked need not be read back from the store (a 1024 px tile's
#: read-back of 6 dates costs about 0.3 s of a worker's time). A strip of 12 tiles of 1024 px
#: and 4 bands takes 204 MB an acquisition: 768 MB hold the last 3.
HELD_MB = 768


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
        first_held = _first_held(plan, todo)
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20):
            held = _stack_strip(plan, todo, store, first_held)
        for tile in todo:
            values, clear = _tile_series(store, tile, held, first_held, len(plan.kept))
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


def _first_held(plan: StackPlan, tiles: list[Tile]) -> int:
    """The first time step that the strip of ``tiles`` holds in memory from stacking to
    detection: the last ones stacked, as many as :data:`HELD_MB` takes (never one of the
    steps an incremental run reuses from the previous store)."""
    pixels = sum(int(tile.core.width * tile.core.height) for tile in tiles)
    per_step = pixels * (4 * len(plan.selection.band_names) + 1)  # float32 bands, uint8 flags
    return max(plan.reused, len(plan.kept) - HELD_MB * 2**20 // per_step)


def _tile_series(store, tile: Tile, held: dict, first_held: int, n_time: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The stacked series of ``tile``: (time, bands, rows, cols) reflectance and (time, rows,
    cols) clear pixels, the steps before ``first_held`` read back from the store, the others
    taken (and released) from ``held``, which holds exactly what the store was given."""
    rows, cols = _slices(tile.core)
    shape = (n_time, store["reflectance"].shape[1], rows.stop - rows.start,
             cols.stop - cols.start)
    values = np.empty(shape, np.float32)
    flags = np.empty((n_time, *shape[2:]), np.uint8)
    if first_held:
        values[:first_held] = store["reflectance"][:first_held, :, rows, cols]
        flags[:first_held] = store["mask"][:first_held, rows, cols]
    for t in range(first_held, n_time):
        values[t], flags[t] = held.pop((t, tile.name))
    return values, flags == CLEAR


def _stack_strip(plan: StackPlan, tiles: list[Tile], store, first_held: int) -> dict:
    """Write the cores of ``tiles`` (west to east along one tile row) into the stack store,
    acquisition by acquisition, each read through one reader; returns what was written of the
    time steps from ``first_held`` on, ``{(time index, tile name): (data, flags)}``."""
    selection = plan.selection
    grid, band_names = selection.grid, selection.band_names
    local = selection.options.coregistration == "local"
    ref_acq = next(a for a, o in plan.kept if o.key == plan.reference)
    held = {}
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
                data = data.astype(np.float32, copy=False)
                output.write_block(store, t, tile.core, data, flags)
                if t >= first_held:
                    held[t, tile.name] = (data, flags)
    return held
