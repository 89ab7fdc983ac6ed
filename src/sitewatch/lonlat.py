"""Lon/lat polygons that stay valid across the antimeridian and around the poles.

A footprint traced in its own CRS and reprojected to EPSG:4326 point by point jumps from +180 to
-180 degrees where it crosses the antimeridian, which makes a polygon wrapped the wrong way round
the Earth, and a footprint around a pole (a polar stereographic scene) never closes in
longitude. :func:`polygon_from_ring` unwraps the ring's longitudes, closes a ring that winds
round a pole along that pole's parallel, and cuts the result at +-180 degrees into the parts of
a MultiPolygon, as RFC 7946 section 3.1.9 asks of GeoJSON.
"""

from __future__ import annotations

import numpy as np
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union


def polygon_from_ring(lons: np.ndarray, lats: np.ndarray) -> Polygon | MultiPolygon:
    """The polygon of the ring (lon, lat degrees, in order along the outline; closing point
    optional) in longitudes -180..180: a Polygon, or a MultiPolygon cut at the antimeridian."""
    lons, lats = np.asarray(lons, float), np.asarray(lats, float)
    if lons[0] != lons[-1] or lats[0] != lats[-1]:
        lons, lats = np.append(lons, lons[0]), np.append(lats, lats[0])
    unwrapped = np.degrees(np.unwrap(np.radians(lons)))
    winding = unwrapped[-1] - unwrapped[0]
    if abs(winding) > 180.0:  # the ring goes round a pole: close it along the pole
        pole = 90.0 if np.nanmean(lats) > 0 else -90.0
        ring = [*zip(unwrapped, lats, strict=True), (unwrapped[-1], pole),
                (unwrapped[0], pole)]
    else:
        ring = list(zip(unwrapped, lats, strict=True))
    polygon = Polygon(ring)
    if not polygon.is_valid:
        polygon = polygon.buffer(0)
    return wrap(polygon)


def wrap(geometry: BaseGeometry) -> Polygon | MultiPolygon:
    """``geometry`` (longitudes possibly beyond +-180) cut into its parts within -180..180."""
    parts = []
    for shift in (-360.0, 0.0, 360.0):
        piece = geometry.intersection(box(-180.0 - shift, -90.0, 180.0 - shift, 90.0))
        if not piece.is_empty:
            parts.append(affinity.translate(piece, xoff=shift))
    merged = unary_union(parts)
    polygons = [g for g in getattr(merged, "geoms", [merged]) if g.geom_type == "Polygon"]
    if len(polygons) == 1:
        return polygons[0].normalize()
    return MultiPolygon(polygons).normalize()
