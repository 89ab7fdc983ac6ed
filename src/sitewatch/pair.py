"""``sitewatch compare BEFORE AFTER``: change between two images, no workspace needed.

BEFORE and AFTER are anything ingest accepts (a GeoTIFF, a one-file-per-band folder such as an
OSCD ``imgs_1/``...). A temporary workspace holds them; the two-date stack is built on the BEFORE
image's area (its footprint, in its UTM zone, at the finest common resolution), a pairwise method
runs, and ``change.tif`` (1 change, 0 no change, 255 masked), ``score.tif``, where the
method gives them ``kinds.tif``, and ``sites.geojson`` (the changed objects as measured, typed
sites: :func:`sitewatch.sites.pairwise.pairwise_sites`) are written into the output directory.

A pipeline driver, like :mod:`sitewatch.demo` and :mod:`sitewatch.watch`: it runs ingest, stack,
detect and sites, so it sits above them, not inside one of them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import rasterio
import shapely

from sitewatch.detect.run import DetectResult, detect
from sitewatch.errors import SitewatchError
from sitewatch.ingest import ingest
from sitewatch.stack import AOI, Grid, build_stack
from sitewatch.store import Workspace
from sitewatch.validate import positive_number

#: Placeholder dates for images whose own metadata and names give none: only the order matters.
BEFORE_FALLBACK, AFTER_FALLBACK = "2000-01-01", "2000-01-02"


def compare(
    before: str | Path,
    after: str | Path,
    out_dir: str | Path,
    *,
    method: str = "default",
    min_site_area_m2: float | None = None,
    buildings: str | Path | None = None,
    on_progress: Callable[[str, float], None] | None = None,
) -> DetectResult:
    """Detect change from ``before`` to ``after``; write the layers into ``out_dir``.

    ``min_site_area_m2`` is the smallest object written to ``sites.geojson`` (default: by the
    pixel size, :func:`sitewatch.sites.polygons.default_min_area_m2`). With ``buildings``
    (pre-event footprints: a vector file or a raster mask), each footprint is assessed
    (:mod:`sitewatch.sites.damage`), ``buildings.geojson`` is written and ``result.damage``
    holds the count of those destroyed or heavily damaged with its 90 % interval.
    """
    progress = on_progress or (lambda message, fraction: None)
    if min_site_area_m2 is not None:
        min_site_area_m2 = positive_number(min_site_area_m2,
                                           "the smallest site (--min-area), m²", allow_zero=True)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SitewatchError("exists and is not a directory; choose another --out", out)
    with tempfile.TemporaryDirectory(prefix="sitewatch-compare-") as tmp:
        workspace = Path(tmp) / "workspace"
        progress("Reading the images", 0.0)
        first = ingest([before], workspace, fallback_date=BEFORE_FALLBACK).scene_ids
        second = ingest([after], workspace, fallback_date=AFTER_FALLBACK).scene_ids
        if set(first) & set(second):
            raise SitewatchError("BEFORE and AFTER are the same imagery", after)
        with Workspace.open(workspace) as ws:
            rows = {r["scene_id"]: r for r in ws.rows("scenes")}
            if max(rows[s]["acquired"] for s in first) >= min(rows[s]["acquired"] for s in second):
                raise SitewatchError("BEFORE is not older than AFTER (by their acquisition "
                                     "dates); swap them", before)
            area = shapely.union_all([rows[s]["geom"] for s in first])
            overlap = area.intersection(shapely.union_all([rows[s]["geom"] for s in second]))
        if overlap.area < 0.01 * area.area:
            raise SitewatchError("AFTER does not overlap BEFORE", after)
        progress("Building the two-date stack", 0.2)
        build_stack(workspace, AOI("compare", area), sensor="any", min_clear_fraction=0.0)
        progress(f"Detecting change ({method})", 0.7)
        result = detect(workspace, "compare", method=method)
        out.mkdir(parents=True, exist_ok=True)
        for name, path in list(result.layers.items()):
            target = out / path.name
            shutil.copyfile(path, target.with_suffix(".tmp"))
            target.with_suffix(".tmp").replace(target)
            result.layers[name] = target
        result.directory = out
        result.layers["sites"] = _write_sites(out, result, min_site_area_m2)
        if buildings is not None:
            progress("Assessing the buildings", 0.95)
            result.layers["buildings"], result.damage = _write_damage(out, result, buildings)
    progress("Done", 1.0)
    return result


def _write_sites(out: Path, result: DetectResult, min_area_m2: float | None) -> Path:
    """``sites.geojson`` from the change and kinds layers just written into ``out``."""
    from sitewatch.sites.pairwise import calibrated_method, pairwise_sites, sites_geojson
    from sitewatch.sites.polygons import default_min_area_m2

    with rasterio.open(result.layers["change"]) as src:
        change = src.read(1)
        transform, epsg = src.transform, src.crs.to_epsg()
    kinds = {}
    if "kinds" in result.layers:
        with rasterio.open(result.layers["kinds"]) as src:
            kinds = {name: src.read(i + 1) == 1 for i, name in enumerate(src.descriptions)}
    grid = Grid(epsg, transform.a, change.shape[1], change.shape[0], transform.c, transform.f)
    if min_area_m2 is None:
        min_area_m2 = default_min_area_m2(grid.resolution)
    score = threshold = None
    if calibrated_method(result.parameters) and "score" in result.layers:
        with rasterio.open(result.layers["score"]) as src:
            score, threshold = src.read(1), result.parameters["threshold"]
    sites, _ = pairwise_sites(change, kinds, grid, (result.dates[0], result.dates[-1]),
                              min_area_m2=min_area_m2, score=score, threshold=threshold)
    target = out / "sites.geojson"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(sites_geojson(sites, epsg), indent=1), encoding="utf-8")
    tmp.replace(target)
    return target


def _write_damage(out: Path, result: DetectResult, buildings: str | Path) -> tuple[Path, dict]:
    """``buildings.geojson`` (every assessed footprint with its changed share and whether it is
    called destroyed or heavily damaged) and the damage count."""
    from sitewatch.sites.damage import DAMAGED_SHARE, damage_on_change
    from sitewatch.sites.records import to_lonlat

    with rasterio.open(result.layers["change"]) as src:
        change = src.read(1)
        transform, epsg = src.transform, src.crs.to_epsg()
    grid = Grid(epsg, transform.a, change.shape[1], change.shape[0], transform.c, transform.f)
    assessed, count = damage_on_change(change, grid, buildings)
    features = [{"type": "Feature", "geometry": to_lonlat(footprint, epsg).__geo_interface__,
                 "properties": {"changed_share": round(share, 3),
                                "damaged": share >= DAMAGED_SHARE}}
                for footprint, share in assessed]
    target = out / "buildings.geojson"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps({"type": "FeatureCollection", "features": features,
                               "damage": count.to_dict()}, indent=1), encoding="utf-8")
    tmp.replace(target)
    return target, {**count.to_dict(), "sentence": count.sentence()}
