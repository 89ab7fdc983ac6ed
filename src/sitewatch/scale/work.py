"""What a worker does with one tile: its part of the stack and its change layers.

For every included acquisition not stacked by a previous run (an incremental run reads those
from the store's linked chunks) the tile's outer window (core plus overlap) is read onto the
grid with the plan's shift, masked for clouds and shadows on the whole outer window, cropped to
the core, normalised with the plan's fit and written into the AOI's stack store (the core's
chunks belong to this tile alone). The core's time series, still in memory, then goes through
the time-series break detection (:func:`sitewatch.detect.detect_breaks`) in blocks of
:data:`sitewatch.detect.run.TIMESERIES_BLOCK` pixels, and the tile's change layers are written to
one ``.npz`` file, temp file then ``os.replace``: the file's presence is the proof that the tile
is finished, so a resumed run skips it and a retried task finds it.

Memory: the core's series as float32, ``dates x bands x tile_px^2 x 4`` bytes (6 dates, 4 bands
and 1024 px: 100 MB), plus one acquisition's outer window and the detection of one block.
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

from sitewatch.detect.run import NO_DAY, TIMESERIES_BLOCK
from sitewatch.detect.timeseries import detect_breaks
from sitewatch.scale.plan import StackPlan, open_store
from sitewatch.scale.tiles import Tile
from sitewatch.stack import output, passes
from sitewatch.stack.output import CLEAR

#: Change layers of the time-series detection, as :mod:`sitewatch.detect.run` stores them.
LAYERS = {"onset": np.int32, "onset_earliest": np.int32, "onset_latest": np.int32,
          "magnitude": np.float32, "persistent": np.uint8}
#: Layers holding days since 1970-01-01.
DAY_LAYERS = ("onset", "onset_earliest", "onset_latest")
#: GDAL block cache of a worker, MB.
GDAL_CACHE_MB = 64


@dataclass(frozen=True)
class TileReport:
    """What a tile task did, for progress and the benchmark."""

    aoi: str
    tile: str
    seconds: float
    pid: int
    peak_rss_bytes: int  # the worker process's peak resident set so far
    reused: bool  # the result file was already there (resumed or retried)


def process_tile(plan: StackPlan, tile: Tile, store_path: Path, result_path: Path) -> TileReport:
    """Stack and detect one tile (see the module docstring); returns a :class:`TileReport`."""
    started = time.perf_counter()
    name = plan.selection.aoi.name
    if not result_path.exists():
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20):
            values, valid = _stack_tile(plan, tile, open_store(store_path))
        layers, parameters = _detect_tile(values, valid, plan)
        tmp = result_path.with_name(f".{result_path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as file:
            np.savez(file, parameters=np.array(json.dumps(parameters)), **layers)
        os.replace(tmp, result_path)
        reused = False
    else:
        reused = True
    return TileReport(name, tile.name, time.perf_counter() - started, os.getpid(),
                      peak_rss_bytes(), reused)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process, bytes (``getrusage``; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _stack_tile(plan: StackPlan, tile: Tile, store) -> tuple[np.ndarray, np.ndarray]:
    """Write the tile's core into the stack store; return its (time, bands, rows, cols)
    reflectance and (time, rows, cols) clear mask."""
    selection = plan.selection
    grid, band_names = selection.grid, selection.band_names
    kept = plan.kept
    local = selection.options.coregistration == "local"
    core = tile.core
    values = np.full((len(kept), len(band_names), core.height, core.width), np.nan, np.float32)
    clear = np.zeros((len(kept), core.height, core.width), bool)
    ref_acq = next(a for a, o in kept if o.key == plan.reference)
    rows = slice(core.row_off, core.row_off + core.height)
    cols = slice(core.col_off, core.col_off + core.width)
    for t, (acq, outcome) in enumerate(kept):
        if t < plan.reused:  # already stacked by the previous run: its linked chunks
            values[t] = store["reflectance"][t, :, rows, cols]
            clear[t] = store["mask"][t, rows, cols] == CLEAR
            continue
        with contextlib.ExitStack() as readers:
            reader = readers.enter_context(acq.reader(band_names, grid, outcome.applied_shift))
            ref_reader = None
            if local and acq is not ref_acq:
                ref_reader = readers.enter_context(ref_acq.reader(band_names, grid))
            data, flags = passes.stack_window(
                reader, acq, outcome, band_names, grid, tile.core, tile.outer,
                fit=plan.fits.get(acq.key), ref_reader=ref_reader,
                min_confidence=selection.options.min_shift_confidence)
        output.write_block(store, t, tile.core, data, flags)
        values[t] = data
        clear[t] = flags == CLEAR
    return values, clear


def _detect_tile(values: np.ndarray, clear: np.ndarray, plan: StackPlan
                 ) -> tuple[dict[str, np.ndarray], dict]:
    """The tile's time-series change layers, block by block as :mod:`sitewatch.detect.run`."""
    rows, cols = values.shape[2:]
    layers = {name: np.full((rows, cols), NO_DAY if name in DAY_LAYERS else 0, dtype)
              for name, dtype in LAYERS.items()}
    layers["magnitude"][:] = np.nan
    parameters: dict = {}
    band_names = plan.selection.band_names
    for row in range(0, rows, TIMESERIES_BLOCK):
        for col in range(0, cols, TIMESERIES_BLOCK):
            block = (slice(row, row + TIMESERIES_BLOCK), slice(col, col + TIMESERIES_BLOCK))
            breaks = detect_breaks(values[(slice(None), slice(None), *block)],
                                   clear[(slice(None), *block)], plan.times, band_names)
            parameters = {"method": breaks.method, **breaks.parameters}
            for name in DAY_LAYERS:
                days = getattr(breaks, name).astype("datetime64[D]")
                layers[name][block] = np.where(np.isnat(days), NO_DAY,
                                               days.astype(np.int64)).astype(np.int32)
            layers["magnitude"][block] = breaks.magnitude
            layers["persistent"][block] = breaks.persistent & (breaks.onset_index >= 0)
    return layers, parameters
