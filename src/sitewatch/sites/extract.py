"""From a stack and its change layers to sites stored in the workspace.

1. **Where**: the persistent breaks of the time-series detection (:mod:`sitewatch.detect`; run
   now if the AOI has none yet) are the changed pixels; they become cleaned polygons
   (:func:`sitewatch.sites.polygons.change_polygons`). A polygon read as a crop cycle (step 2)
   is split into the regions that changed at one time
   (:func:`sitewatch.sites.polygons.dated_change_polygons`) and each is read again: a compound
   built in a field is found beside the crops.
   A stack of fewer than :data:`MIN_SERIES_DATES` acquisitions (a before/after pair) has no
   series to test: its pairwise change map is used instead and each polygon is typed from its
   change kinds (:func:`sitewatch.sites.pairwise.pairwise_sites`), with steps 2 and 4 reduced
   to one phase between the two dates.
2. **What and when**: each polygon's temporal signature (:mod:`sitewatch.sites.signature`) gives
   its change type and phase timeline (:mod:`sitewatch.sites.lifecycle`); seasonal vegetation
   is dropped as change not of interest (and counted).
3. **How big and where**: measurements of the footprint, with distances and bearings to the
   workspace's reference places and its side of the border (:mod:`sitewatch.sites.measure`).
4. **Tracking**: the site's footprint on each date is the part of it whose break had happened by
   then (from the onset layer), so a footprint that grows stays one site, and fragments that
   merge later are one site from their first appearance; each observed date becomes an
   observation.

The sites of an AOI are replaced as a whole in one transaction: a re-run never leaves a mix.
A site found again keeps its id (:mod:`sitewatch.sites.identity`), so analyst records stay on
their site when new imagery arrives.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import shapely

from sitewatch.detect import TIMESERIES, detect
from sitewatch.sites.damage import damage_on_change
from sitewatch.sites.identity import carry_identities
from sitewatch.sites.lifecycle import NOT_OF_INTEREST, Lifecycle, lifecycle
from sitewatch.sites.measure import measure
from sitewatch.sites.pairwise import calibrated_method, pairwise_sites
from sitewatch.sites.polygons import (
    SMALLEST_BUILDING_M2,
    SMALLEST_SERIES_SITE_M2,
    change_polygons,
    dated_change_polygons,
    default_min_area_m2,
    half_maximum_footprint,
)
from sitewatch.sites.probability import site_probability
from sitewatch.sites.records import Observation, Site, polygon_window, to_lonlat
from sitewatch.sites.signature import DateSignature, site_signature
from sitewatch.stack import Grid, latest_stack, open_stack, stack_grid
from sitewatch.store import Workspace
from sitewatch.store.geopackage import now_iso
from sitewatch.store.lock import holds_run_lock
from sitewatch.validate import positive_number
from sitewatch.version import __version__

#: Fewest acquisitions for the time-series path; shorter stacks use the pairwise change map.
MIN_SERIES_DATES = 4
#: Pairwise method of the two-date path.
PAIRWISE_METHOD = "default"


@dataclass
class SitesResult:
    aoi: str
    run_id: str
    epsg: int
    sites: list[Site]
    discarded: dict[str, int]  # change type -> number of polygons not of interest
    #: With ``buildings``: :meth:`sitewatch.sites.damage.DamageCount.to_dict`, its
    #: ``sentence`` and the ``buildings`` file; else None.
    damage: dict | None = None


@holds_run_lock("sitewatch track")
def extract_sites(
    workspace: str | Path | Workspace,
    aoi: str,
    *,
    min_area_m2: float | None = None,
    buildings: str | Path | None = None,
    on_progress: Callable[[str, float], None] | None = None,
) -> SitesResult:
    """Find, measure, type and track the sites of ``aoi``; store them (see module docstring).

    ``buildings`` is a file of pre-event building footprints (a vector layer in any CRS GDAL
    reads, or a raster mask): each is assessed against the AOI's change map and the count of
    those destroyed or heavily damaged, with its 90 % interval, is stored with the run
    (:mod:`sitewatch.sites.damage`), shown by ``track`` and in the report."""
    progress = on_progress or (lambda message, fraction: None)
    if min_area_m2 is not None:
        min_area_m2 = positive_number(min_area_m2, "the smallest site (--min-area), m²",
                                      allow_zero=True)
    with Workspace.using(workspace) as ws:
        started = now_iso()
        stack = latest_stack(ws, aoi)
        grid = stack_grid(stack)
        dataset = open_stack(ws.root / stack["path"], dask=False)  # site windows only
        places = ws.rows("places")
        borders = ws.rows("borders")
        series = dataset.sizes["time"] >= MIN_SERIES_DATES
        if min_area_m2 is None:
            min_area_m2 = default_min_area_m2(
                grid.resolution, SMALLEST_SERIES_SITE_M2 if series else SMALLEST_BUILDING_M2)
        if not series:
            layers = _detect_layers(ws, aoi, stack, PAIRWISE_METHOD, progress)
            sites, discarded = _two_date_sites(ws, layers, grid, places, borders, min_area_m2,
                                               aoi)
        else:
            layers = _detect_layers(ws, aoi, stack, TIMESERIES, progress)
            sites, discarded = _series_sites(ws, layers, dataset, grid, places, borders,
                                             min_area_m2, aoi, progress)
        damage = None
        if buildings is not None:
            progress("Assessing the buildings", 0.95)
            damage = _damage(ws, layers, grid, buildings, series)
        carry_identities(ws, aoi, sites, grid.epsg)
        run_id = f"sites-{uuid.uuid4().hex[:12]}"
        result = SitesResult(aoi, run_id, grid.epsg, sites, discarded, damage)
        _store(ws, result, stack, layers, started, min_area_m2)
        progress("Done", 1.0)
        return result


def _series_sites(ws: Workspace, layers: dict[str, str], dataset, grid: Grid, places, borders,
                  min_area_m2: float, aoi: str, progress) -> tuple[list[Site], dict[str, int]]:
    """Sites from the persistent breaks and onset days of the time-series detection."""
    with rasterio.open(ws.root / layers["persistent"]) as src:
        changed = src.read(1).astype(bool)
    with rasterio.open(ws.root / layers["onset"]) as src:
        onset_days, onset_nodata = src.read(1), src.nodata
    with rasterio.open(ws.root / layers["magnitude"]) as src:
        magnitude = src.read(1)
    windows = []
    for name in ("onset_earliest", "onset_latest"):
        with rasterio.open(ws.root / layers[name]) as src:
            windows.append(src.read(1))
    progress("Vectorising changes", 0.4)
    polygons = change_polygons(changed, grid.transform, min_area_m2=min_area_m2)
    days = np.array([np.datetime64(str(t)[:10], "D") for t in dataset.time.values])
    sites, discarded = [], {}
    for n, polygon in enumerate(polygons):
        progress(f"Reading site {n + 1} of {len(polygons)}", 0.4 + 0.5 * n / len(polygons))
        window, transform, inside = polygon_window(polygon, grid)
        polygon = half_maximum_footprint(inside, magnitude[window.toslices()], transform,
                                         min_area_m2=min_area_m2) or polygon
        signature = site_signature(dataset, grid, polygon)
        life = lifecycle(signature)
        readings = [(polygon, signature, life)]
        if life.change_type in NOT_OF_INTEREST:
            readings = _dated_parts(polygon, changed, windows, dataset, grid, min_area_m2)
            readings = readings or [(polygon, signature, life)]
        for part, part_signature, part_life in readings:
            if part_life.change_type in NOT_OF_INTEREST:
                discarded[part_life.change_type] = discarded.get(part_life.change_type, 0) + 1
                continue
            site_id = f"{aoi}-{len(sites) + 1:03d}"
            observations = _observations(part, part_signature, part_life, onset_days,
                                         onset_nodata, grid, days)
            sites.append(Site(site_id, part, part_life,
                              measure(part, grid.epsg, places=places, borders=borders),
                              observations))
    return sites, discarded


def _dated_parts(polygon, changed: np.ndarray, windows: list[np.ndarray], dataset, grid: Grid,
                 min_area_m2: float) -> list[tuple]:
    """A polygon read as change not of interest (a crop cycle) may hold a site that changed at
    another time, such as a compound built in a field: its change pixels split into the regions
    that changed at one time (:func:`sitewatch.sites.polygons.dated_change_polygons`), each read
    again. Returns (part, signature, lifecycle) per part, or nothing when it does not split."""
    window, transform, inside = polygon_window(polygon, grid)
    rows, cols = window.toslices()
    parts = dated_change_polygons(changed[rows, cols] & inside, windows[0][rows, cols],
                                  windows[1][rows, cols], transform, min_area_m2=min_area_m2)
    if len(parts) < 2:
        return []
    readings = []
    for part in parts:
        signature = site_signature(dataset, grid, part)
        readings.append((part, signature, lifecycle(signature)))
    return readings


def _two_date_sites(ws: Workspace, layers: dict[str, str], grid: Grid, places, borders,
                    min_area_m2: float, aoi: str) -> tuple[list[Site], dict[str, int]]:
    """Sites from the pairwise change map and its kinds layers (a stack of two or three dates,
    too short for the time-series test)."""

    with rasterio.open(ws.root / layers["change"]) as src:
        change = src.read(1)
    kinds = {}
    if "kinds" in layers:
        with rasterio.open(ws.root / layers["kinds"]) as src:
            kinds = {name: src.read(i + 1) == 1 for i, name in enumerate(src.descriptions)}
    raster = ws.rows("rasters", "path = ?", (layers["change"],))[0]
    dates = raster["properties"]["dates"]
    parameters = ws.rows("runs", "run_id = ?", (raster["run_id"],))[0]["parameters"]
    score = threshold = None
    if calibrated_method(parameters) and "score" in layers:
        with rasterio.open(ws.root / layers["score"]) as src:
            score, threshold = src.read(1), parameters["threshold"]
    return pairwise_sites(change, kinds, grid, (dates[0], dates[-1]), places=places,
                          borders=borders, min_area_m2=min_area_m2, prefix=aoi,
                          score=score, threshold=threshold)


def _damage(ws: Workspace, layers: dict[str, str], grid: Grid, buildings: str | Path,
            series: bool) -> dict:
    """The damage count of the footprints in ``buildings`` over the AOI's change map: the
    pairwise change of a two-date stack, the persistent breaks of a time series. The area is
    that of the AOI's valid pixels."""

    with rasterio.open(ws.root / layers["change" if not series else "persistent"]) as src:
        change = src.read(1)
        if series:  # 1 where a persistent break, 0 elsewhere, 255 where never observed
            change = np.where(src.read_masks(1) == 0, 255, change.astype(bool)).astype(np.uint8)
    _, count = damage_on_change(change, grid, buildings)
    return {**count.to_dict(), "sentence": count.sentence(),
            "buildings_file": str(Path(buildings).expanduser().resolve())}


def _detect_layers(ws: Workspace, aoi: str, stack: dict, method: str,
                   progress) -> dict[str, str]:
    """Paths of the newest change layers of ``method`` made from this stack (running it if
    needed)."""
    rows = ws.rows("rasters", "aoi = ? AND kind LIKE 'change:%'", (aoi,), order_by="fid DESC")
    runs = {r["run_id"]: r for r in ws.rows("runs", "stage = 'detect'")}
    for row in rows:
        run = runs.get(row["run_id"])
        if (row["properties"].get("method") == method and run is not None
                and run["inputs"].get("stack_run") == stack["run_id"]):
            layers = ws.rows("rasters", "run_id = ?", (row["run_id"],))
            return {r["kind"].removeprefix("change:"): r["path"] for r in layers}
    progress(f"Detecting change ({method})", 0.05)
    result = detect(ws, aoi, method=method)
    return {name: str(path.relative_to(ws.root)) for name, path in result.layers.items()}


def _observations(polygon, signature: list[DateSignature], life: Lifecycle, onset_days,
                  onset_nodata, grid: Grid, days: np.ndarray) -> list[Observation]:
    window, transform, inside = polygon_window(polygon, grid)
    days_in = onset_days[window.toslices()]
    onset = np.where(inside & (days_in != onset_nodata), days_in, np.iinfo(np.int32).max)
    current = None
    phases = {p.first_observed: p.name for p in life.phases}
    out = []
    for date, sig in zip(days, signature, strict=True):
        day = str(date)
        current = phases.get(day, current)
        if not sig.observed:
            continue
        changed = onset <= date.astype(np.int64)
        footprint = None
        area = length = width = 0.0
        if changed.any():
            shapes = [shapely.geometry.shape(geom) for geom, value in rasterio.features.shapes(
                changed.astype(np.uint8), mask=changed, transform=transform) if value]
            footprint = shapely.union_all(shapes).intersection(polygon)
            if not footprint.is_empty:
                area = footprint.area
                rectangle = shapely.minimum_rotated_rectangle(footprint)
                sides = _sides(rectangle)
                length, width = max(sides), min(sides)
            else:
                footprint = None
        out.append(Observation(day, current, footprint, area, length, width,
                               None if np.isnan(sig.activity) else float(sig.activity)))
    return out


def _sides(rectangle) -> list[float]:
    coords = np.asarray(rectangle.exterior.coords) if rectangle.geom_type == "Polygon" else None
    if coords is None or len(coords) < 4:
        return [0.0, 0.0]
    return [float(np.hypot(*(coords[1] - coords[0]))), float(np.hypot(*(coords[2] - coords[1])))]


def _store(ws: Workspace, result: SitesResult, stack: dict, layers: dict, started: str,
           min_area_m2: float) -> None:
    with ws.transaction() as txn:
        old = [r["site_id"] for r in ws.rows("sites", "aoi = ?", (result.aoi,))]
        for site_id in old:
            txn.delete("observations", "site_id = ?", (site_id,))
        txn.delete("sites", "aoi = ?", (result.aoi,))
        for site in result.sites:
            m, life = site.measurements, site.lifecycle
            observations = [{
                "geom": None if obs.footprint is None else to_lonlat(obs.footprint, result.epsg),
                "site_id": site.site_id, "observed": obs.date, "phase": obs.phase,
                "area_m2": obs.area_m2, "length_m": obs.length_m, "width_m": obs.width_m,
                "score": obs.activity, "run_id": result.run_id,
            } for obs in site.observations]
            row = {
                "geom": to_lonlat(site.footprint, result.epsg), "site_id": site.site_id,
                "aoi": result.aoi, "change_type": life.change_type, "status": life.status,
                "first_seen": life.first_change, "last_seen_unchanged": life.last_unchanged,
                "area_m2": m.area_m2, "length_m": m.length_m, "width_m": m.width_m,
                "orientation_deg": m.orientation_deg, "centroid_lat": m.centroid_lat,
                "centroid_lon": m.centroid_lon, "mgrs": m.mgrs, "run_id": result.run_id,
                "properties": {"phases": [p.to_dict() for p in life.phases],
                               "measurements": m.to_dict(),
                               "location": m.location_phrase()},
            }
            row["properties"]["probability"] = (site.probability if site.probability is not None
                                                else site_probability(row, observations))
            txn.insert("sites", row)
            for observation in observations:
                txn.insert("observations", observation)
        txn.insert("runs", {
            "run_id": result.run_id, "stage": "sites", "started_at": started,
            "finished_at": now_iso(), "status": "ok", "sitewatch_version": __version__,
            "parameters": {"min_area_m2": min_area_m2, "discarded": result.discarded,
                           **({"damage": result.damage} if result.damage else {})},
            "inputs": {"aoi": result.aoi, "stack_run": stack["run_id"], "layers": layers},
        })
