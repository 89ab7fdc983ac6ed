"""The client's part of an AOI once its tiles are done: assemble, register, extract sites.

1. The stack store is consolidated and renamed into ``rasters/stacks/``; the tiles' change
   layers are assembled window by window (one tile in memory at a time) and written as the
   COGs :func:`sitewatch.detect.detect` writes, in ``rasters/detect/<run>/``.
2. One workspace transaction records the stack and the detection exactly as
   :func:`sitewatch.stack.build_stack` and :func:`sitewatch.detect.detect` do (``aois``,
   ``rasters`` and ``runs`` rows), with run ids derived from the run key.
3. :func:`sitewatch.sites.extract_sites` finds the sites on the assembled layers and replaces the
   AOI's sites in its own transaction. Sites cut by tile edges are one site because the
   change layers are stitched pixel for pixel before any polygon is drawn; and since every
   tile applied the same AOI-wide plan and a per-pixel test, the layers, hence the sites and
   their measurements, do not depend on which process ran which tile.

Every step can be redone: a step whose product is already recorded is skipped, so a client
that dies between them completes on the next run without duplicating anything.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from shapely.geometry import box

from sitewatch.detect.run import (
    DAY_LAYERS,
    LAYERS,
    NO_DAY,
    TIMESERIES,
    DetectResult,
    copy_as_cog,
)
from sitewatch.scale.plan import StackPlan, fingerprints
from sitewatch.scale.tiles import Tile
from sitewatch.sites import SitesResult, extract_sites
from sitewatch.stack import output
from sitewatch.stack.build import slug
from sitewatch.stack.grid import Grid
from sitewatch.store import Workspace
from sitewatch.store.geopackage import now_iso
from sitewatch.version import __version__

#: Block side (pixels) of the assembled GeoTIFF layers.
GTIFF_BLOCK = 256


def stack_run_id(key: str) -> str:
    return f"stack-{key[:12]}"


def detect_run_id(key: str) -> str:
    return f"detect-{key[:12]}"


def is_current(ws: Workspace, plan_key: str, methods: Sequence[str] = ()) -> bool:
    """Whether all the work of the run ``plan_key`` is already stored (nothing new to do): its
    sites, and a detection by each of the pairwise ``methods`` on its stack. A run killed after
    its sites were stored but before a detection is therefore not current, and is finished by
    the next run."""
    stack_run = stack_run_id(plan_key)
    if not any(r["inputs"].get("stack_run") == stack_run
               for r in ws.rows("runs", "stage = 'sites'")):
        return False
    detected = {r["parameters"].get("method") for r in ws.rows("runs", "stage = 'detect'")
                if r["inputs"].get("stack_run") == stack_run}
    return all(method in detected for method in methods if method != TIMESERIES)


def finalise(ws: Workspace, plan: StackPlan, tiles: list[Tile], run_dir: Path, started: str,
             *, tile_px: int, overlap_px: int, min_area_m2: float) -> SitesResult:
    """Assemble, register and extract the sites of one AOI (see the module docstring)."""
    selection = plan.selection
    key, aoi = selection.key, selection.aoi
    stack_run, detect_run = stack_run_id(key), detect_run_id(key)
    if not ws.rows("runs", "run_id = ?", (stack_run,)):
        stack_path = ws.root / "rasters" / "stacks" / f"{slug(aoi.name)}-{stack_run}.zarr"
        store = run_dir / "stack.zarr"
        if store.exists():
            output.consolidate_metadata(store)
            stack_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(stack_path, ignore_errors=True)
            store.rename(stack_path)
        detect_dir = ws.root / "rasters" / "detect" / detect_run
        parameters = _assemble_layers(selection.grid, tiles, run_dir, detect_dir)
        _record(ws, plan, stack_path, detect_dir, parameters, started,
                {"tile_px": tile_px, "overlap_px": overlap_px})
    sites = extract_sites(ws, aoi.name, min_area_m2=min_area_m2)
    shutil.rmtree(run_dir, ignore_errors=True)
    return sites


def _assemble_layers(grid: Grid, tiles: list[Tile], run_dir: Path, out: Path) -> dict:
    """Write the tiles' change layers into ``out`` as the COGs ``detect`` writes
    (:func:`sitewatch.detect.run.copy_as_cog`), via a temporary folder: the tiles go window
    by window into a tiled GeoTIFF (Zstandard at level 1 on every core, a scratch file), which
    is then copied as a COG. Returns the detection parameters (those of the last tile, as
    detect keeps the last block's) and the share of the grid's pixels with a persistent
    break."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp.mkdir(parents=True)
    nodata = {"magnitude": np.nan, "persistent": None}
    files = {}
    for name, dtype in LAYERS.items():
        profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=1,
                       dtype=dtype, crs=grid.crs.to_wkt(), transform=grid.transform,
                       compress="ZSTD", zstd_level=1, num_threads="ALL_CPUS", tiled=True,
                       blockxsize=GTIFF_BLOCK,
                       blockysize=GTIFF_BLOCK, nodata=nodata.get(name, NO_DAY), BIGTIFF="IF_SAFER")
        files[name] = rasterio.open(tmp / f"{name}.scratch.tif", "w", **profile)
    parameters: dict = {}
    changed = 0
    try:
        for name in DAY_LAYERS:
            files[name].update_tags(units="days since 1970-01-01")
        for tile in tiles:
            with np.load(run_dir / "tiles" / f"{tile.name}.npz") as layers:
                for name, dst in files.items():
                    dst.write(layers[name], 1, window=tile.core)
                parameters = json.loads(str(layers["parameters"]))
                changed += int(layers["persistent"].sum())
    finally:
        for dst in files.values():
            dst.close()
    for name in files:
        scratch = tmp / f"{name}.scratch.tif"
        copy_as_cog(scratch, tmp / f"{name}.tif")
        scratch.unlink()
    tmp.rename(out)
    return {**parameters, "changed_fraction": changed / (grid.width * grid.height)}


def detection_result(ws: Workspace, key: str, aoi: str) -> DetectResult:
    """The time-series detection of the run ``key``, as :func:`sitewatch.detect.detect`
    returns one."""
    run_id = detect_run_id(key)
    rows = ws.rows("rasters", "run_id = ?", (run_id,), order_by="fid")
    layers = {r["kind"].removeprefix("change:"): ws.root / r["path"] for r in rows}
    parameters = ws.rows("runs", "run_id = ?", (run_id,))[0]["parameters"]
    return DetectResult(run_id, TIMESERIES, aoi, layers["onset"].parent, layers,
                        rows[0]["properties"]["dates"], parameters.get("changed_fraction"),
                        parameters)


def _record(ws: Workspace, plan: StackPlan, stack_path: Path, detect_dir: Path,
            parameters: dict, started: str, tiling: dict) -> None:
    """Record the stack and its detection in one transaction (the rows build_stack and detect
    write)."""
    selection = plan.selection
    key, aoi, grid = selection.key, selection.aoi, selection.grid
    stack_run, detect_run = stack_run_id(key), detect_run_id(key)
    to_wgs84 = Transformer.from_crs(grid.epsg, 4326, always_xy=True).transform
    footprint = shapely.transform(box(*grid.bounds).segmentize(grid.resolution * 50), to_wgs84,
                                  interleaved=False)
    stack_rel = str(stack_path.relative_to(ws.root))
    scenes = [s for _, o in plan.kept for s in o.scene_ids]
    days = [str(t)[:10] for t in plan.times]
    finished = now_iso()
    with ws.transaction() as txn:
        if not ws.rows("aois", "name = ?", (aoi.name,)):
            txn.insert("aois", {"geom": aoi.polygon, "name": aoi.name, "created_at": finished})
        txn.insert("rasters", {
            "geom": footprint, "path": stack_rel, "kind": "stack", "run_id": stack_run,
            "aoi": aoi.name,
            "properties": {"grid": grid.to_dict(), "bands": selection.band_names,
                           "reference": plan.reference,
                           "acquisitions": [o.to_dict() for o in plan.outcomes]},
        })
        txn.insert("runs", {
            "run_id": stack_run, "stage": "stack", "started_at": started,
            "finished_at": finished, "status": "ok", "sitewatch_version": __version__,
            "parameters": {**selection.options.to_dict(), "resolution": grid.resolution,
                           "epsg": grid.epsg, "bands": selection.band_names, **tiling},
            "inputs": {"aoi": aoi.name, "aoi_wkt": aoi.polygon.wkt,
                       "scenes": [s for o in plan.outcomes for s in o.scene_ids],
                       "run_key": key, "base_key": selection.base_key,
                       "scene_fingerprints": fingerprints(selection.scenes),
                       "reused": ({"stack_run": selection.previous.run_id,
                                   "acquisitions": plan.reused}
                                  if plan.reused else None)},
        })
        for name in LAYERS:
            txn.insert("rasters", {
                "geom": footprint, "path": str((detect_dir / f"{name}.tif").relative_to(ws.root)),
                "kind": f"change:{name}", "run_id": detect_run, "aoi": aoi.name,
                "properties": {"method": TIMESERIES, "dates": days},
            })
        txn.insert("runs", {
            "run_id": detect_run, "stage": "detect", "started_at": started,
            "finished_at": finished, "status": "ok", "sitewatch_version": __version__,
            "parameters": parameters,
            "inputs": {"stack": stack_rel, "stack_run": stack_run, "scenes": scenes,
                       "grid": grid.to_dict(), **tiling},
        })
