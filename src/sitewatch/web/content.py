"""What the viewer shows, read from the workspace as JSON-ready dicts.

The map of an AOI is drawn in its stack's UTM grid: geometry is reprojected from the
workspace's EPSG:4326 with PROJ and given in map coordinates, metres east and south of the
grid's north-west corner (:mod:`sitewatch.web.imagery`), as SVG path data rounded to 0.1 m;
observed footprints are simplified to one grid pixel first.
Automatic findings (sites, observations, the findings text of
:func:`sitewatch.analyst.findings.site_findings`) and analyst records (assessments, events,
notes, each with the ``version`` of :func:`sitewatch.web.edits.version`) are kept in separate
keys so the page can label them apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import shapely
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from sitewatch.analyst.findings import evidence_term, site_findings
from sitewatch.analyst.records import list_assessments, list_events, list_notes
from sitewatch.report.document import assessment_line, measurement_rows
from sitewatch.report.figures import PHASE_COLOURS, words
from sitewatch.report.palette import type_colour
from sitewatch.store import Workspace
from sitewatch.web.edits import versioned
from sitewatch.web.imagery import CLOUDY_FRACTION, StackImages, StackView, pick_before_after

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


def aoi_map(ws: Workspace, view: StackView, aoi: str) -> dict[str, Any]:
    """Everything the map of ``aoi`` draws: grid, imagery dates (with cloud cover), AOI
    outline, sites, reference places and borders, in map coordinates."""
    imagery, grid = view.imagery, view.imagery.grid
    size = view.default_size()
    west, east, south, north = view.date_crop(size).extent
    frame = box(0.0, 0.0, grid.width * grid.resolution, grid.height * grid.resolution)
    span = max(frame.bounds[2], frame.bounds[3])
    outline = [row["geom"] for row in ws.rows("aois", "name = ?", (aoi,))]
    sites = ws.rows("sites", "aoi = ?", (aoi,), order_by="area_m2 DESC, site_id")
    places = []
    for row in ws.rows("places", order_by="name"):
        point = _to_map(view, row["geom"])
        places.append({"name": row["name"], "kind": row["kind"],
                       "x": round(point.x, 1), "y": round(point.y, 1),
                       "inside": bool(frame.contains(point))})
    return {
        "name": aoi,
        "grid": grid.to_dict(),
        "size_m": [grid.width * grid.resolution, grid.height * grid.resolution],
        "image": {"size": size, "width_m": east - west, "height_m": north - south},
        "dates": [{"date": day, "obscured": round(share, 3), "cloudy": share > CLOUDY_FRACTION,
                   "scenes": [scene["scene_id"] for scene in scenes]}
                  for day, share, scenes in zip(view.dates, view.obscured, imagery.scenes,
                                                strict=True)],
        "credit": imagery.credit(),
        "outline": [svg_path(_to_map(view, geometry)) for geometry in outline],
        "sites": [_site_marker(view, row) for row in sites],
        "places": places,
        "borders": [_border(view, row, frame.buffer(BORDER_MARGIN * span), span)
                    for row in ws.rows("borders", order_by="name")],
        "exports": list(EXPORT_FORMATS),
    }


def site_panel(ws: Workspace, images: StackImages, view: StackView,
               site: Mapping[str, Any]) -> dict[str, Any]:
    """The site panel: automatic findings (measurements, phases, findings text, footprint on
    every date, frames for before/after) and the analyst's records about the site."""
    site_id = site["site_id"]
    observations = ws.rows("observations", "site_id = ?", (site_id,), order_by="observed")
    frames = images.site_frames(view, site_id, view.imagery.to_grid(site["geom"]))
    west, east, south, north = frames.crop.extent
    x0, y0 = view.to_map(np.array([west]), np.array([north]))
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
        "frames": {"x": float(x0[0]), "y": float(y0[0]), "width": east - west,
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


def svg_path(geometry: BaseGeometry) -> str:
    """SVG path data of a (multi)polygon or (multi)line in map coordinates, to 0.1 m; rings are
    closed with ``Z``. Empty for an empty geometry."""
    parts = []
    for part in getattr(geometry, "geoms", [geometry]):
        if part.is_empty:
            continue
        if part.geom_type == "Polygon":
            for ring in (part.exterior, *part.interiors):
                parts.append(_line_data(np.asarray(ring.coords)[:-1]) + "Z")
        elif part.geom_type == "LineString":
            parts.append(_line_data(np.asarray(part.coords)))
    return "".join(parts)


def _line_data(coords: np.ndarray) -> str:
    points = [f"{x:.1f} {y:.1f}" for x, y in coords[:, :2]]
    return "M" + "L".join(points)


def _to_map(view: StackView, geometry: BaseGeometry) -> BaseGeometry:
    """A lon/lat (EPSG:4326) geometry in map coordinates."""
    in_grid = view.imagery.to_grid(geometry)
    return shapely.transform(in_grid, lambda xy: np.column_stack(view.to_map(xy[:, 0],
                                                                               xy[:, 1])))


def _site_marker(view: StackView, row: Mapping[str, Any]) -> dict[str, Any]:
    footprint = _to_map(view, row["geom"])
    label = footprint.representative_point()
    return {"site_id": row["site_id"], "change_type": row["change_type"],
            "change_words": words(row["change_type"]), "status": row["status"],
            "colour": type_colour(row["change_type"]), "first_seen": row["first_seen"],
            "area_m2": row["area_m2"], "length_m": row["length_m"], "width_m": row["width_m"],
            "path": svg_path(footprint), "label": [round(label.x, 1), round(label.y, 1)],
            "bounds": [round(v, 1) for v in footprint.bounds]}


def _border(view: StackView, row: Mapping[str, Any], clip: BaseGeometry,
            span: float) -> dict[str, Any]:
    """A border line clipped around the grid, with where to write the names of its sides."""
    line = _to_map(view, row["geom"]).intersection(clip)
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
            # Map y points down, so the walker's left is (dy, -dx) here.
            left = np.array([direction[1], -direction[0]])
            middle = np.array([(ahead.x + behind.x) / 2, (ahead.y + behind.y) / 2])
            for name, sign in ((row["left_name"], 1.0), (row["right_name"], -1.0)):
                if name:
                    x, y = middle + sign * SIDE_LABEL_OFFSET * span * left
                    sides.append({"name": name, "x": round(float(x), 1),
                                  "y": round(float(y), 1)})
    return {"name": row["name"], "kind": row["kind"], "path": svg_path(line), "sides": sides}


def _footprints(view: StackView, observations: Sequence[Mapping[str, Any]]
                ) -> list[str | None]:
    """Per stack date, the site's footprint then (SVG path data): the latest observed
    footprint on or before that date, None before the first."""
    observed = [(o["observed"][:10], o["geom"]) for o in observations]
    paths: list[str | None] = []
    for day in view.dates:
        shown = None
        for when, geometry in observed:
            if when > day:
                break
            shown = geometry
        paths.append(None if shown is None else svg_path(_simplified(
            _to_map(view, shown), view.imagery.grid.resolution)))
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
