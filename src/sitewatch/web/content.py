"""What the viewer shows, read from the workspace as JSON-ready dicts.

The map of an AOI is drawn in its stack's UTM grid (the CRS of its tiles,
:mod:`sitewatch.web.tiles`): geometry is reprojected from the workspace's EPSG:4326 with PROJ
and given as GeoJSON geometries in the grid's CRS (metres), rounded to 0.1 m; observed
footprints are simplified to one grid pixel first.
Automatic findings (sites, observations, the findings text of
:func:`sitewatch.analyst.findings.site_findings`) and analyst records (assessments, events,
notes, each with the ``version`` of :func:`sitewatch.web.edits.version`) are kept in separate
keys so the page can label them apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import shapely
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry

from sitewatch.analyst.findings import evidence_term, site_findings
from sitewatch.analyst.records import list_assessments, list_events, list_notes
from sitewatch.report.document import assessment_line, measurement_rows
from sitewatch.report.figures import PHASE_COLOURS, words
from sitewatch.report.palette import type_colour
from sitewatch.store import Workspace
from sitewatch.web.edits import versioned
from sitewatch.web.imagery import CLOUDY_FRACTION, StackImages, StackView, pick_before_after
from sitewatch.web.tiles import ChangeLayer, TileGrid

#: Border side labels sit this share of the grid's larger side off the line, at this share of
#: the line's length (away from its middle, where crossings tend to be).
SIDE_LABEL_OFFSET = 0.04
SIDE_LABEL_AT = 0.3
#: Borders are clipped to the grid grown by this share of its larger side on every side.
BORDER_MARGIN = 0.25
#: Observed footprints are drawn simplified to this many grid pixels (Douglas-Peucker), without
#: their parts smaller than :data:`MIN_PART_PX` pixels: pixel staircases of a VHR footprint
#: would otherwise be hundreds of kilobytes of path data.
SIMPLIFY_PX = 1.0
MIN_PART_PX = 4.0
#: Export formats offered, in the order the page lists them (see sitewatch.report.exports).
EXPORT_FORMATS = ("geojson", "kml", "kmz", "gpkg", "csv")


def workspace_summary(ws: Workspace) -> list[dict[str, Any]]:
    """The AOIs of a workspace: name, whether it has a stack to show, number of sites."""
    stacked = {row["aoi"] for row in ws.rows("rasters", "kind = 'stack'")}
    sites: dict[str | None, int] = {}
    for row in ws.rows("sites"):
        sites[row["aoi"]] = sites.get(row["aoi"], 0) + 1
    return [{"name": row["name"], "has_stack": row["name"] in stacked,
             "n_sites": sites.get(row["name"], 0)} for row in ws.rows("aois", order_by="name")]


def aoi_map(ws: Workspace, view: StackView, aoi: str,
            layers: Mapping[str, ChangeLayer]) -> dict[str, Any]:
    """Everything the map of ``aoi`` draws: tile grid, imagery dates (with cloud cover), change
    layers (``layers``) with their legends, AOI outline, sites, reference places and borders,
    in the stack grid's CRS."""
    imagery, grid = view.imagery, view.imagery.grid
    frame = box(*grid.bounds)
    span = max(grid.width, grid.height) * grid.resolution
    outline = [row["geom"] for row in ws.rows("aois", "name = ?", (aoi,))]
    sites = ws.rows("sites", "aoi = ?", (aoi,), order_by="area_m2 DESC, site_id")
    places = []
    for row in ws.rows("places", order_by="name"):
        point = imagery.to_grid(row["geom"])
        places.append({"name": row["name"], "kind": row["kind"],
                       "x": round(point.x, 1), "y": round(point.y, 1),
                       "inside": bool(frame.contains(point))})
    return {
        "name": aoi,
        "grid": grid.to_dict(),
        "tiles": {**TileGrid(grid).to_dict(), "version": content_version(view.path)},
        "size_m": [grid.width * grid.resolution, grid.height * grid.resolution],
        "dates": [{"date": day, "obscured": round(share, 3), "cloudy": share > CLOUDY_FRACTION,
                   "scenes": [scene["scene_id"] for scene in scenes]}
                  for day, share, scenes in zip(view.dates, view.obscured, imagery.scenes,
                                                strict=True)],
        "change_layers": [{"name": name, "legend": layer.legend(),
                           "version": content_version(str(layer.path))}
                          for name, layer in layers.items()],
        "credit": imagery.credit(),
        "outline": [geojson(imagery.to_grid(geometry)) for geometry in outline],
        "sites": [_site_marker(view, row) for row in sites],
        "places": places,
        "borders": [_border(view, row, frame.buffer(BORDER_MARGIN * span), span)
                    for row in ws.rows("borders", order_by="name")],
        "exports": list(EXPORT_FORMATS),
    }


def content_version(path: str) -> str:
    """A short tag of a raster's path, which the page adds to its tile URLs: a stack or change
    raster built again has another path, so the browser never shows its cached tiles of the
    old one."""
    return hashlib.sha256(path.encode()).hexdigest()[:12]


def site_panel(ws: Workspace, images: StackImages, view: StackView,
               site: Mapping[str, Any]) -> dict[str, Any]:
    """The site panel: automatic findings (measurements, phases, findings text, footprint on
    every date, frames for before/after) and the analyst's records about the site."""
    site_id = site["site_id"]
    observations = ws.rows("observations", "site_id = ?", (site_id,), order_by="observed")
    frames = images.site_frames(view, site_id, view.imagery.to_grid(site["geom"]))
    west, east, south, north = frames.crop.extent
    before, after = pick_before_after(view.dates, frames.obscured, site["last_seen_unchanged"],
                                      site["first_seen"])
    properties = site.get("properties") or {}
    return {
        "site_id": site_id,
        "aoi": site["aoi"],
        "change_type": site["change_type"],
        "change_words": words(site["change_type"]),
        "status": site["status"],
        "colour": type_colour(site["change_type"]),
        "location": properties.get("location"),
        "automatic": {
            "findings": site_findings(site, observations),
            "evidence_term": evidence_term(site, observations).term,
            "probability": properties.get("probability"),
            "measurements": [list(row) for row in measurement_rows(site)],
            "phases": [{**phase, "colour": PHASE_COLOURS.get(phase["phase"], "#999999")}
                       for phase in properties.get("phases") or []],
            "observations": [{"observed": o["observed"][:10], "phase": o["phase"],
                              "area_m2": o["area_m2"], "score": o["score"]}
                             for o in observations],
            "footprints": _footprints(view, observations),
        },
        "frames": {"west": west, "north": north, "width": east - west,
                   "height": north - south,
                   "obscured": [round(share, 3) for share in frames.obscured],
                   "before": before, "after": after},
        "analyst": analyst_records(ws, site_id),
    }


def analyst_records(ws: Workspace, site_id: str) -> dict[str, list[dict[str, Any]]]:
    """The assessments, events and notes about ``site_id``, each with its ``version``;
    assessments also with ``confidence_text`` ("likely (55-80 %)")."""
    return {
        "assessments": [{**versioned(row), "confidence_text": assessment_line(row)}
                        for row in list_assessments(ws, site_id)],
        "events": [versioned(row) for row in list_events(ws, site_id)],
        "notes": [versioned(row) for row in list_notes(ws, site_id)],
    }


def geojson(geometry: BaseGeometry) -> dict[str, Any]:
    """A geometry as a GeoJSON geometry object, coordinates rounded to 0.1 m (or 1e-1 of
    whatever unit the geometry is in)."""
    return mapping(shapely.transform(geometry, lambda xy: np.round(xy, 1)))


def _site_marker(view: StackView, row: Mapping[str, Any]) -> dict[str, Any]:
    footprint = view.imagery.to_grid(row["geom"])
    label = footprint.representative_point()
    return {"site_id": row["site_id"], "change_type": row["change_type"],
            "change_words": words(row["change_type"]), "status": row["status"],
            "colour": type_colour(row["change_type"]), "first_seen": row["first_seen"],
            "area_m2": row["area_m2"], "length_m": row["length_m"], "width_m": row["width_m"],
            "geometry": geojson(footprint), "label": [round(label.x, 1), round(label.y, 1)],
            "bounds": [round(v, 1) for v in footprint.bounds]}


def _border(view: StackView, row: Mapping[str, Any], clip: BaseGeometry,
            span: float) -> dict[str, Any]:
    """A border line clipped around the grid, with where to write the names of its sides."""
    line = view.imagery.to_grid(row["geom"]).intersection(clip)
    sides = []
    parts = [p for p in getattr(line, "geoms", [line])
             if p.geom_type == "LineString" and not p.is_empty]
    if parts:
        longest = max(parts, key=lambda p: p.length)
        along = SIDE_LABEL_AT * longest.length
        ahead = longest.interpolate(min(longest.length, along + 0.01 * span))
        behind = longest.interpolate(max(0.0, along - 0.01 * span))
        direction = np.array([ahead.x - behind.x, ahead.y - behind.y])
        if np.any(direction):
            direction /= np.hypot(*direction)
            # Grid y points north, so the walker's left is (-dy, dx).
            left = np.array([-direction[1], direction[0]])
            middle = np.array([(ahead.x + behind.x) / 2, (ahead.y + behind.y) / 2])
            for name, sign in ((row["left_name"], 1.0), (row["right_name"], -1.0)):
                if name:
                    x, y = middle + sign * SIDE_LABEL_OFFSET * span * left
                    sides.append({"name": name, "x": round(float(x), 1),
                                  "y": round(float(y), 1)})
    return {"name": row["name"], "kind": row["kind"], "geometry": geojson(line), "sides": sides}


def _footprints(view: StackView, observations: Sequence[Mapping[str, Any]]
                ) -> list[dict[str, Any] | None]:
    """Per stack date, the site's footprint then (GeoJSON, grid CRS): the latest observed
    footprint on or before that date, None before the first."""
    observed = [(o["observed"][:10], o["geom"]) for o in observations]
    paths: list[dict[str, Any] | None] = []
    for day in view.dates:
        shown = None
        for when, geometry in observed:
            if when > day:
                break
            shown = geometry
        paths.append(None if shown is None else geojson(_simplified(
            view.imagery.to_grid(shown), view.imagery.grid.resolution)))
    return paths


def _simplified(geometry: BaseGeometry, pixel_m: float) -> BaseGeometry:
    """A footprint as drawn: simplified to :data:`SIMPLIFY_PX` pixels of ``pixel_m`` metres,
    without parts smaller than :data:`MIN_PART_PX` pixels."""
    parts = [part for part in getattr(geometry, "geoms", [geometry])
             if part.area >= MIN_PART_PX * pixel_m**2]
    if not parts:
        return geometry
    return shapely.simplify(shapely.union_all(parts), SIMPLIFY_PX * pixel_m,
                            preserve_topology=True)
