"""Running change detection on a workspace's stack, and storing what it found.

``detect(workspace, aoi)`` takes the latest stack of an AOI, runs a pairwise method on two of its
dates (default: the first and the last) or the time-series method on all of them, and writes the
results as Cloud-Optimised GeoTIFFs beside the workspace GeoPackage (``rasters/detect/<run>/``),
recording the method, parameters and input scenes in the ``runs`` and ``rasters`` layers.

Pairwise methods fit image-wide statistics (thresholds, IR-MAD), so they hold the two dates of
the AOI in memory: (2 x bands + 4) x 4 bytes per pixel, about 110 MB for a 1000 x 1000 px,
13-band AOI. The time-series method runs block by block from the lazily read stack.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
import xarray as xr

from sitewatch.detect.base import MASKED, ChangeResult, pairwise_methods
from sitewatch.detect.nochange import widespread_warning
from sitewatch.errors import SitewatchError
from sitewatch.stack import Grid, latest_stack, open_stack, stack_grid
from sitewatch.store import Workspace
from sitewatch.store.geopackage import now_iso
from sitewatch.store.lock import holds_run_lock
from sitewatch.version import __version__

#: Method name of the time-series break detection.
TIMESERIES = "timeseries"
#: Value of the onset layers (int32 days since 1970-01-01) where no break was found.
NO_DAY = np.iinfo(np.int32).min
#: The learned pairwise method (:mod:`sitewatch.learn`), registered on first use: it needs
#: PyTorch, whose import costs seconds.
LEARNED = "learned"
#: Side (pixels) of the blocks the time-series method tests at a time. Its temporaries are a few
#: float64 arrays of (dates, features, pixels): 128 px blocks keep them in the CPU's cache and
#: test a 1024 x 1024 px tile of 6 dates in 0.90 s, 256 px blocks in 1.29 s, 512 px in 2.56 s.
TIMESERIES_BLOCK = 128
#: Side (pixels) of the windows of the stack the one-process detection reads at a time (its
#: Zarr chunk side, :data:`sitewatch.stack.output.CHUNK`).
READ_BLOCK = 512
#: The time-series change layers and their data types.
LAYERS = {"onset": np.int32, "onset_earliest": np.int32, "onset_latest": np.int32,
          "magnitude": np.float32, "persistent": np.uint8}
#: Layers holding days since 1970-01-01 (:data:`NO_DAY` where there is no break).
DAY_LAYERS = ("onset", "onset_earliest", "onset_latest")


@dataclass
class DetectResult:
    """Where a detection run wrote its layers, and what it used."""

    run_id: str
    method: str
    aoi: str
    directory: Path
    layers: dict[str, Path] = field(default_factory=dict)
    dates: list[str] = field(default_factory=list)
    changed_fraction: float | None = None
    parameters: dict = field(default_factory=dict)
    #: Why the result may not be trusted (plain sentences from the method's no-change model,
    #: :func:`sitewatch.detect.nochange.diagnose`); empty when nothing is implausible.
    warnings: list[str] = field(default_factory=list)
    #: Buildings destroyed or heavily damaged (``compare --buildings``,
    #: :meth:`sitewatch.sites.damage.DamageCount.to_dict` plus its ``sentence``); else None.
    damage: dict | None = None


@holds_run_lock("sitewatch detect")
def detect(
    workspace: str | Path | Workspace,
    aoi: str,
    *,
    method: str = "default",
    dates: Sequence[str] | None = None,
    on_progress: Callable[[str, float], None] | None = None,
) -> DetectResult:
    """Detect change in the latest stack of ``aoi``; ``dates`` picks two acquisition days
    (``YYYY-MM-DD``) for a pairwise method."""
    progress = on_progress or (lambda message, fraction: None)
    with Workspace.using(workspace) as ws:
        record = latest_stack(ws, aoi)
        dataset = open_stack(ws.root / record["path"])
        grid = stack_grid(record)
        run_id = f"detect-{uuid.uuid4().hex[:12]}"
        started = now_iso()
        out = ws.root / "rasters" / "detect" / run_id
        tmp = out.with_name(f".{run_id}.tmp")
        tmp.mkdir(parents=True)
        try:
            if method == TIMESERIES:
                result = _run_timeseries(dataset, grid, tmp, progress)
            else:
                result = _run_pairwise(dataset, grid, tmp, method, dates, progress)
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        result.run_id, result.aoi, result.directory = run_id, aoi, out
        result.layers = {name: out / path.name for name, path in result.layers.items()}
        scenes = [s for ids in dataset.scene_ids.values for s in str(ids).split(",")]
        try:
            _record(ws, result, record, grid, started, scenes)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
        progress("Done", 1.0)
        return result


def _pick_dates(dataset: xr.Dataset, dates: Sequence[str] | None) -> tuple[int, int]:
    days = [str(t)[:10] for t in dataset.time.values]
    if len(days) < 2:
        raise SitewatchError("the stack has fewer than two acquisitions; nothing to compare")
    if not dates:
        return 0, len(days) - 1
    if len(dates) != 2:
        raise SitewatchError("give exactly two dates: --dates BEFORE AFTER")
    indices = []
    for day in dates:
        if day not in days:
            raise SitewatchError(f"no acquisition on {day} in the stack; dates: {', '.join(days)}")
        indices.append(days.index(day))
    if indices[0] >= indices[1]:
        raise SitewatchError(f"--dates {dates[0]} {dates[1]}: the first date must be before "
                             "the second")
    return indices[0], indices[1]


def _run_pairwise(dataset, grid: Grid, out: Path, method: str, dates, progress) -> DetectResult:
    methods = pairwise_methods()
    if method == LEARNED and method not in methods:
        from sitewatch.learn import register_learned_method

        if not register_learned_method():
            raise SitewatchError("the learned method needs PyTorch: pip install "
                                 "'sitewatch[ml]' (torch 2.13.0)")
        methods = pairwise_methods()
    if method not in methods:
        raise SitewatchError(f"unknown method {method!r}; choose one of "
                             f"{', '.join(sorted({*methods, LEARNED, TIMESERIES}))}")
    first, last = _pick_dates(dataset, dates)
    progress("Reading the two dates", 0.1)
    before = dataset.reflectance.isel(time=first).values
    after = dataset.reflectance.isel(time=last).values
    valid = ((dataset["mask"].isel(time=first) == 0) & (dataset["mask"].isel(time=last) == 0)
             ).values
    valid &= np.isfinite(before).all(axis=0) & np.isfinite(after).all(axis=0)
    progress(f"Running {method}", 0.3)
    result: ChangeResult = methods[method](before, after, valid,
                                           [str(b) for b in dataset.band.values],
                                           grid.resolution)
    progress("Writing", 0.9)
    layers = {
        "change": write_cog(out / "change.tif", result.change, grid, nodata=MASKED),
        "score": write_cog(out / "score.tif", result.score.astype(np.float32), grid,
                           nodata=np.nan),
    }
    if result.kinds:
        names = sorted(result.kinds)
        kinds = np.stack([np.where(valid, result.kinds[n], MASKED).astype(np.uint8)
                          for n in names])
        layers["kinds"] = write_cog(out / "kinds.tif", kinds, grid, nodata=MASKED,
                                    descriptions=names)
    days = [str(dataset.time.values[i])[:10] for i in (first, last)]
    usable = result.change != MASKED
    return DetectResult(
        run_id="", method=method, aoi="", directory=out, layers=layers, dates=days,
        changed_fraction=float((result.change == 1).sum() / max(1, usable.sum())),
        parameters={"method": method, "dates": days, "threshold": result.threshold,
                    **result.parameters,
                    **({"diagnostics": result.diagnostics} if result.diagnostics else {})},
        warnings=list(result.diagnostics.get("warnings", [])),
    )


def _run_timeseries(dataset, grid: Grid, out: Path, progress) -> DetectResult:
    times = dataset.time.values
    band_names = [str(b) for b in dataset.band.values]
    layers_data = {name: np.empty(grid.shape, dtype) for name, dtype in LAYERS.items()}
    windows = [(r, c) for r in range(0, grid.height, READ_BLOCK)
               for c in range(0, grid.width, READ_BLOCK)]
    parameters: dict = {}
    for i, (row, col) in enumerate(windows):
        progress("Testing for breaks", 0.05 + 0.85 * i / len(windows))
        rows = slice(row, min(grid.height, row + READ_BLOCK))
        cols = slice(col, min(grid.width, col + READ_BLOCK))
        values = dataset.reflectance.isel(y=rows, x=cols).values
        valid = (dataset["mask"].isel(y=rows, x=cols) == 0).values
        layers, parameters = break_layers(values, valid, times, band_names)
        for name, layer in layers.items():
            layers_data[name][rows, cols] = layer
    progress("Writing", 0.9)
    nodata = {np.dtype(np.int32): NO_DAY, np.dtype(np.float32): np.nan}
    written = {
        name: write_cog(out / f"{name}.tif", data, grid, nodata=nodata.get(data.dtype),
                        units="days since 1970-01-01" if data.dtype == np.int32 else None)
        for name, data in layers_data.items()
    }
    days = [str(t)[:10] for t in times]
    ever_clear = (dataset["mask"] == 0).any("time").values
    changed = float(layers_data["persistent"][ever_clear].sum() / max(1, ever_clear.sum()))
    warnings = [w for w in [widespread_warning(changed)] if w]
    return DetectResult(run_id="", method=TIMESERIES, aoi="", directory=out, layers=written,
                        dates=days, changed_fraction=changed,
                        parameters={**parameters, "diagnostics": {"called_fraction": changed,
                                                                  "warnings": warnings}},
                        warnings=warnings)


def break_layers(values: np.ndarray, valid: np.ndarray, times: np.ndarray,
                 band_names: Sequence[str]) -> tuple[dict[str, np.ndarray], dict]:
    """The time-series change layers (:data:`LAYERS`, rows x cols) of a window of the stack,
    tested in blocks of :data:`TIMESERIES_BLOCK` pixels by
    :func:`sitewatch.detect.timeseries.detect_breaks`, and the method's parameters (those of
    the last block).

    ``values`` is (time, bands, rows, cols) reflectance, ``valid`` (time, rows, cols) the clear
    pixels, ``times`` the (time,) acquisition times. Onset layers hold days since 1970-01-01,
    :data:`NO_DAY` where there is no break; ``persistent`` is 1 where a lasting break was found.
    """
    from sitewatch.detect.timeseries import detect_breaks

    shape = values.shape[2:]
    layers = {name: np.empty(shape, dtype) for name, dtype in LAYERS.items()}
    parameters: dict = {}
    for row in range(0, shape[0], TIMESERIES_BLOCK):
        for col in range(0, shape[1], TIMESERIES_BLOCK):
            block = (slice(row, row + TIMESERIES_BLOCK), slice(col, col + TIMESERIES_BLOCK))
            breaks = detect_breaks(values[(slice(None), slice(None), *block)],
                                   valid[(slice(None), *block)], times, band_names)
            parameters = {"method": breaks.method, **breaks.parameters}
            for name in DAY_LAYERS:
                days = getattr(breaks, name).astype("datetime64[D]")
                layers[name][block] = np.where(np.isnat(days), NO_DAY, days.astype(np.int64))
            layers["magnitude"][block] = breaks.magnitude
            layers["persistent"][block] = breaks.persistent & (breaks.onset_index >= 0)
    return layers, parameters


#: How every change layer is written, by this stage and by the tiled runs of
#: :mod:`sitewatch.scale`: a Cloud Optimised GeoTIFF (GDAL's COG driver: tiled, with internal
#: overviews), DEFLATE-compressed.
COG_OPTIONS = {"driver": "COG", "compress": "DEFLATE", "BIGTIFF": "IF_SAFER"}


def write_cog(path: Path, data: np.ndarray, grid: Grid, *, nodata=None,
              descriptions: Sequence[str] | None = None, units: str | None = None) -> Path:
    """Write a (rows, cols) or (bands, rows, cols) array on ``grid`` as a COG
    (:data:`COG_OPTIONS`)."""
    array = data if data.ndim == 3 else data[None]
    profile = dict(width=grid.width, height=grid.height, count=array.shape[0],
                   dtype=array.dtype, crs=grid.crs.to_wkt(), transform=grid.transform,
                   nodata=nodata, **COG_OPTIONS)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
        for i, name in enumerate(descriptions or []):
            dst.set_band_description(i + 1, name)
        if units:
            dst.update_tags(units=units)
    return path


def copy_as_cog(source: Path, path: Path) -> Path:
    """Copy the GeoTIFF ``source`` (written window by window, which the COG driver cannot do)
    to ``path`` as a COG with :data:`COG_OPTIONS`: the pixels, nodata and tags are the same."""
    options = {k: v for k, v in COG_OPTIONS.items() if k != "driver"}
    rasterio.shutil.copy(source, path, driver=COG_OPTIONS["driver"], **options)
    return path


def _record(ws: Workspace, result: DetectResult, stack: dict, grid: Grid, started: str,
            scenes: list[str]) -> None:
    with ws.transaction() as txn:
        for name, path in result.layers.items():
            txn.insert("rasters", {
                "geom": stack["geom"], "path": str(path.relative_to(ws.root)),
                "kind": f"change:{name}", "run_id": result.run_id, "aoi": result.aoi,
                "properties": {"method": result.method, "dates": result.dates},
            })
        txn.insert("runs", {
            "run_id": result.run_id, "stage": "detect", "started_at": started,
            "finished_at": now_iso(), "status": "ok", "sitewatch_version": __version__,
            "parameters": result.parameters,
            "inputs": {"stack": stack["path"], "stack_run": stack["run_id"], "scenes": scenes,
                       "grid": grid.to_dict()},
        })
