"""Areas of interest: from a GeoJSON polygon, a lon/lat bounding box, or a place and a radius.

An AOI is a polygon in EPSG:4326 (lon/lat) with a name. A place + radius AOI is the geodesic
circle of that radius (metres) around a reference place stored in the workspace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS, Geod, Transformer
from shapely.geometry import Polygon, box, shape

from sitewatch.errors import SitewatchError
from sitewatch.geojson import features, read_geojson
from sitewatch.store import Workspace
from sitewatch.validate import positive_number

_GEOD = Geod(ellps="WGS84")
_BBOX = re.compile(r"^\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*$")


@dataclass(frozen=True)
class AOI:
    """A named area of interest; ``polygon`` in EPSG:4326 (lon, lat)."""

    name: str
    polygon: Polygon


def from_bbox(text: str, name: str | None = None) -> AOI:
    """``"min_lon,min_lat,max_lon,max_lat"`` (degrees) as an AOI."""
    match = _BBOX.match(text)
    if not match:
        raise SitewatchError(f"AOI bbox {text!r} is not 'min_lon,min_lat,max_lon,max_lat'")
    west, south, east, north = map(float, match.groups())
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise SitewatchError(
            f"AOI bbox {text!r} is not a valid lon/lat box (west < east, south < north, "
            "degrees)"
        )
    return AOI(name or f"bbox-{west:.4f}-{south:.4f}", box(west, south, east, north))


def from_geojson(path: str | Path, name: str | None = None) -> AOI:
    """The union of the polygons of a GeoJSON file (RFC 7946 lon/lat, or a named CRS)."""
    path = Path(path)
    document = read_geojson(path, "AOI file")
    geometries = []
    for item in features(document):
        geometry = item.get("geometry") if isinstance(item, dict) else None
        try:
            geometries.append(shape(geometry))
        except (TypeError, ValueError, AttributeError, KeyError):
            continue
    polygons = [g for g in geometries if g.geom_type in ("Polygon", "MultiPolygon")]
    if not polygons:
        raise SitewatchError("holds no Polygon or MultiPolygon geometry", path)
    for number, candidate in enumerate(polygons, start=1):
        if not candidate.is_valid:
            raise SitewatchError(f"AOI polygon {number} is not a valid polygon "
                                 f"({shapely.is_valid_reason(candidate)}); fix it first, e.g. "
                                 "with QGIS 'Fix geometries'", path)
    polygon = shapely.union_all(polygons)
    crs_name = (document.get("crs") or {}).get("properties", {}).get("name")
    if crs_name:
        crs = CRS.from_user_input(crs_name)
        if not crs.equals(CRS.from_epsg(4326)) and crs != CRS("OGC:CRS84"):
            to_wgs84 = Transformer.from_crs(crs, 4326, always_xy=True).transform
            polygon = shapely.transform(polygon, to_wgs84, interleaved=False)
    minx, miny, maxx, maxy = polygon.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise SitewatchError("AOI coordinates are not lon/lat degrees; give a CRS member", path)
    if polygon.geom_type == "MultiPolygon":
        polygon = polygon.convex_hull if len(polygon.geoms) > 1 else polygon.geoms[0]
    return AOI(name or path.stem, polygon)


def from_place(workspace: Workspace, place: str, radius_m: float, name: str | None = None) -> AOI:
    """A geodesic circle of ``radius_m`` metres around the workspace place ``place``."""
    radius_m = positive_number(radius_m, "the AOI radius, metres")
    rows = workspace.rows("places", "name = ?", (place,))
    if not rows:
        known = ", ".join(p["name"] for p in workspace.rows("places")) or "none"
        raise SitewatchError(
            f"no reference place named {place!r} in the workspace (known: {known}); add it with "
            "'sitewatch places import'"
        )
    centre = rows[0]["geom"]
    azimuths = np.linspace(0.0, 360.0, 73)[:-1]
    lons, lats, _ = _GEOD.fwd(np.full_like(azimuths, centre.x), np.full_like(azimuths, centre.y),
                              azimuths, np.full_like(azimuths, radius_m))
    return AOI(name or f"{place}-{radius_m:g}m", Polygon(zip(lons, lats, strict=True)))
