"""Measure a site footprint and say where it is: size, shape, orientation, MGRS, and its place
relative to reference places and borders.

Everything is in metres, square metres and degrees clockwise from true north (DESIGN.md).

Size and shape
    The footprint arrives in a conformal metric projection (a UTM zone). Area, perimeter and the
    sides of the minimum-area oriented bounding rectangle (``shapely.minimum_rotated_rectangle``,
    the rotating-calipers rectangle of the convex hull) are measured on that grid and then
    corrected to the WGS84 ellipsoid by the point scale factor *k* at the centroid, from PROJ
    (``pyproj.Proj.get_factors``): lengths are divided by *k*, areas by *k*\\ :sup:`2` (the
    areal scale). UTM's *k* lies between 0.9996 and about 1.001 inside a zone, so uncorrected
    grid values would be up to 0.1 % off; after correction the residual, from *k* varying across
    the site, is below 1e-5 for sites a few kilometres wide. Heights are not accounted for:
    the values are on the ellipsoid (a site at 1000 m elevation is 0.016 % larger on the ground).

Orientation
    The grid azimuth of the rectangle's long axis, corrected for the meridian convergence
    gamma at the centroid (PROJ's ``meridian_convergence``: the angle, clockwise, from true
    north to grid north; positive east of the central meridian in the northern hemisphere).
    True azimuth = grid azimuth + gamma, folded into [0, 180). In a conformal projection
    angles are preserved, so this single correction is exact at the centroid.

Places
    Geodesic distance and forward azimuth on WGS84 (``pyproj.Geod.inv``, Karney's algorithm)
    from each place to the footprint's centroid. The azimuth is read as a 16-point compass word
    (N, NNE, NE, ... each covering 22.5 degrees centred on its direction) naming where the site
    lies as seen from the place: "2.6 km W of X" means the site is west of X. A place inside the
    footprint is phrased "at X".

Borders
    Each border is a LineString in lon/lat whose ``left_name``/``right_name`` say what lies left
    and right when walking its vertices in order. The line is projected onto the footprint's
    grid; the nearest points of footprint and line are found there and the distance between
    them is then measured geodesically (exact for that pair of points; the pair itself is the
    grid's nearest, which differs from the ellipsoid's by far less than a metre at border
    distances that matter). The side is that of the centroid: the sign of the cross product
    (segment direction x vector to the centroid) on the nearest segment, positive = left. When
    the nearest point is a vertex, where the two segments meeting there can disagree, the
    standard vertex rule decides: at a left turn the centroid is left only if left of both
    segments, at a right turn if left of either. Beyond the ends of the line the end segments
    are extended. The nearest border (smallest distance) is reported.

MGRS
    The centroid's Military Grid Reference System reference at 10 m precision (four digits of
    easting and of northing, truncated, not rounded, as MGRS prescribes), from the ``mgrs``
    package, written in the spaced form of the US National Grid: grid zone designator, 100 km
    square, easting, northing, e.g. ``"37S FU 7834 0710"`` (the zone number without a leading
    zero; polar UPS references have a letter only, e.g. ``"Z AB 9645 5298"``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache

import mgrs
import numpy as np
import pyproj
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from sitewatch.errors import SitewatchError

#: The 16 compass points, clockwise from north, each centred on a multiple of 22.5 degrees.
COMPASS_POINTS = ("N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE",
                  "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW")

#: Largest angular distortion (degrees) accepted from the footprint's projection: conformal only
#: (PROJ's numerical derivatives give ~1e-6 for UTM; an equal-area grid gives whole degrees).
_MAX_ANGULAR_DISTORTION_DEG = 0.01

_GEOD = pyproj.Geod(ellps="WGS84")
_MGRS_PARTS = re.compile(r"^(\d*)([A-Z])([A-Z]{2})(\d*)$")


@dataclass(frozen=True)
class PlaceRelation:
    """Where a site lies from one reference place.

    ``distance_m`` and ``bearing_deg`` are geodesic on WGS84, from the place to the site's
    centroid; the bearing is the forward azimuth at the place, degrees clockwise from true north
    in [0, 360). ``direction`` is that bearing as a 16-point compass word and ``phrase`` the
    analyst's wording, e.g. "2.6 km W of Al-Qaim border crossing".
    """

    name: str
    kind: str
    distance_m: float
    bearing_deg: float
    direction: str
    phrase: str


@dataclass(frozen=True)
class BorderRelation:
    """Where a site lies relative to one border line.

    ``side`` is the name of the side the footprint's centroid is on (from the border's
    left/right names; None when that name is unknown or the centroid is exactly on the line).
    ``distance_m`` is the shortest footprint-to-line distance (nearest pair found on the UTM
    grid, measured geodesically), 0 when ``crosses``, i.e. when the footprint touches or crosses
    the line. ``phrase``: e.g. "on the Syria side of the Iraq-Syria border, 1.3 km from it".
    """

    name: str
    side: str | None
    distance_m: float
    crosses: bool
    phrase: str


@dataclass(frozen=True)
class Measurements:
    """Size, shape and location of one site footprint (see the module docstring for methods).

    Lengths in metres and areas in square metres on the WGS84 ellipsoid; ``length_m`` >=
    ``width_m`` are the sides of the minimum-area oriented bounding rectangle and
    ``orientation_deg`` the true azimuth of its long axis in [0, 180) (for a square either axis
    may come out as the long one). ``rectangularity`` is area / rectangle area, 1 for a perfect
    rectangle. The centroid is in WGS84 lon/lat degrees; ``mgrs`` is its 10 m reference.
    ``places`` are sorted nearest first; ``border`` is the nearest border, if any were given.
    """

    area_m2: float
    perimeter_m: float
    length_m: float
    width_m: float
    orientation_deg: float
    rectangularity: float
    centroid_lon: float
    centroid_lat: float
    mgrs: str
    places: tuple[PlaceRelation, ...]
    border: BorderRelation | None

    def to_dict(self) -> dict:
        """A JSON-serialisable dict: the fields, ``places`` as a list of dicts, ``border`` a dict
        or None."""
        out = asdict(self)
        out["places"] = list(out["places"])
        return out

    def location_phrase(self) -> str:
        """The nearest place's phrase and the border's, e.g. "2.6 km W of Al-Qaim border
        crossing, on the Syria side of the Iraq-Syria border, 1.3 km from it"; the MGRS
        reference ("at MGRS 37S FU 7834 0710") when neither places nor borders were given."""
        parts = [self.places[0].phrase] if self.places else []
        if self.border is not None:
            parts.append(self.border.phrase)
        return ", ".join(parts) if parts else f"at MGRS {self.mgrs}"


def measure(
    footprint: Polygon | MultiPolygon,
    epsg: int,
    *,
    places: Iterable[Mapping] = (),
    borders: Iterable[Mapping] = (),
) -> Measurements:
    """Measure ``footprint`` and relate it to ``places`` and ``borders``.

    Parameters
    ----------
    footprint
        The site's Polygon or MultiPolygon in the metric, conformal projected CRS ``epsg``
        (a UTM zone). An invalid geometry is repaired with ``shapely.make_valid`` first.
    epsg
        EPSG code of the footprint's CRS.
    places
        Mappings with ``name``, ``kind`` (default "place") and ``geom``: a shapely Point in
        lon/lat (EPSG:4326).
    borders
        Mappings with ``name``, ``left_name``, ``right_name`` (what lies left/right walking the
        line in vertex order; either may be None) and ``geom``: a shapely LineString in lon/lat.

    Raises
    ------
    SitewatchError
        The EPSG code is unknown, not a metric conformal projection, the footprint has no area,
        or a border is not a line of at least two distinct points.
    """
    grid = _grid(epsg)
    shape = _polygonal(footprint)
    centroid = shape.centroid
    cx, cy = centroid.x, centroid.y
    lon, lat = grid.to_wgs84.transform(cx, cy)
    factors = grid.proj.get_factors(*grid.proj(cx, cy, inverse=True))
    if not factors.angular_distortion <= _MAX_ANGULAR_DISTORTION_DEG:
        raise SitewatchError(f"EPSG:{epsg} is not a conformal projection; give the footprint "
                             "in its UTM zone")
    k = math.sqrt(factors.areal_scale)  # = meridional = parallel scale in a conformal projection

    length, width, grid_azimuth = _oriented_rectangle(shape)
    return Measurements(
        area_m2=float(shape.area / factors.areal_scale),
        perimeter_m=float(shape.length / k),
        length_m=float(length / k),
        width_m=float(width / k),
        orientation_deg=_fold(grid_azimuth + factors.meridian_convergence, 180.0),
        rectangularity=float(shape.area / (length * width)),
        centroid_lon=float(lon),
        centroid_lat=float(lat),
        mgrs=_mgrs(lat, lon),
        places=_place_relations(shape, grid, lon, lat, list(places)),
        border=_nearest_border(shape, grid, list(borders)),
    )


def compass_point(bearing_deg: float) -> str:
    """The 16-point compass word for a bearing in degrees clockwise from true north."""
    return COMPASS_POINTS[int(((bearing_deg % 360.0) + 11.25) // 22.5) % 16]


def format_distance(distance_m: float) -> str:
    """An analyst's distance: "850 m" (to 10 m) below 1 km, "2.6 km" below 10 km, "27 km" above."""
    if distance_m < 995.0:
        return f"{round(distance_m, -1):.0f} m"
    if distance_m < 9950.0:
        return f"{distance_m / 1000.0:.1f} km"
    return f"{distance_m / 1000.0:.0f} km"


@dataclass(frozen=True)
class _Grid:
    proj: pyproj.Proj
    to_wgs84: pyproj.Transformer
    from_wgs84: pyproj.Transformer


@lru_cache(maxsize=16)
def _grid(epsg: int) -> _Grid:
    try:
        crs = pyproj.CRS.from_epsg(epsg)
    except pyproj.exceptions.CRSError as exc:
        raise SitewatchError(f"EPSG:{epsg} is not a known coordinate reference system") from exc
    if not crs.is_projected or any(axis.unit_name != "metre" for axis in crs.axis_info):
        raise SitewatchError(f"EPSG:{epsg} is not a projected CRS in metres; give the footprint "
                             "in its UTM zone")
    return _Grid(proj=pyproj.Proj(crs),
                 to_wgs84=pyproj.Transformer.from_crs(crs, 4326, always_xy=True),
                 from_wgs84=pyproj.Transformer.from_crs(4326, crs, always_xy=True))


def _polygonal(footprint: BaseGeometry) -> BaseGeometry:
    """The footprint's polygonal part, repaired if invalid; an error if it has no area."""
    shape = footprint if footprint.is_valid else shapely.make_valid(footprint)
    if not isinstance(shape, Polygon | MultiPolygon):
        shape = shapely.union_all([g for g in getattr(shape, "geoms", [shape])
                                   if isinstance(g, Polygon | MultiPolygon)])
    if shape.is_empty or shape.area <= 0.0:
        raise SitewatchError("the site footprint has no area; give a Polygon or MultiPolygon")
    return shape


def _oriented_rectangle(shape: BaseGeometry) -> tuple[float, float, float]:
    """Long side, short side (grid metres) and grid azimuth of the long side in degrees
    clockwise from grid north, of the minimum-area rotated rectangle."""
    corners = np.asarray(shapely.minimum_rotated_rectangle(shape).exterior.coords)[:3]
    edges = np.diff(corners, axis=0)
    sides = np.hypot(edges[:, 0], edges[:, 1])
    long = int(np.argmax(sides))
    dx, dy = edges[long]
    return float(sides[long]), float(sides[1 - long]), math.degrees(math.atan2(dx, dy))


def _mgrs(lat: float, lon: float) -> str:
    """10 m MGRS reference in the spaced USNG form, e.g. "37S FU 7834 0710"."""
    reference = mgrs.MGRS().toMGRS(lat, lon, MGRSPrecision=4)
    zone, band, square, digits = _MGRS_PARTS.match(reference).groups()
    half = len(digits) // 2
    zone = str(int(zone)) if zone else ""
    return f"{zone}{band} {square} {digits[:half]} {digits[half:]}"


def _place_relations(shape: BaseGeometry, grid: _Grid, lon: float, lat: float,
                     places: list[Mapping]) -> tuple[PlaceRelation, ...]:
    """Geodesic distance and bearing from every place to the centroid, nearest first."""
    if not places:
        return ()
    plon = np.array([p["geom"].x for p in places], dtype=float)
    plat = np.array([p["geom"].y for p in places], dtype=float)
    azimuth, _, distance = _GEOD.inv(plon, plat, np.full_like(plon, lon), np.full_like(plat, lat))
    bearing = [_fold(a, 360.0) for a in azimuth]
    inside = shapely.intersects_xy(shape, *grid.from_wgs84.transform(plon, plat))
    relations = []
    for i in np.argsort(distance, kind="stable"):
        name, direction = places[i]["name"], compass_point(bearing[i])
        phrase = (f"at {name}" if inside[i]
                  else f"{format_distance(distance[i])} {direction} of {name}")
        relations.append(PlaceRelation(name=name, kind=places[i].get("kind") or "place",
                                       distance_m=float(distance[i]),
                                       bearing_deg=float(bearing[i]), direction=direction,
                                       phrase=phrase))
    return tuple(relations)


def _nearest_border(shape: BaseGeometry, grid: _Grid,
                    borders: list[Mapping]) -> BorderRelation | None:
    """The relation to the border nearest the footprint (geodesic distance), or None."""
    if not borders:
        return None
    lines = []
    for border in borders:
        geom = border["geom"]
        if not isinstance(geom, LineString) or len(set(geom.coords)) < 2:
            raise SitewatchError(f"border {border['name']!r} is not a line of two or more "
                                 "distinct points; give each border as one LineString")
        lines.append(shapely.transform(geom, lambda xy: np.column_stack(
            grid.from_wgs84.transform(xy[:, 0], xy[:, 1]))))
    crosses = shapely.intersects(shape, lines)
    ends = shapely.get_coordinates(shapely.shortest_line(shape, lines)).reshape(-1, 4)
    lon1, lat1 = grid.to_wgs84.transform(ends[:, 0], ends[:, 1])
    lon2, lat2 = grid.to_wgs84.transform(ends[:, 2], ends[:, 3])
    distance = np.where(crosses, 0.0, _GEOD.inv(lon1, lat1, lon2, lat2)[2])
    i = int(np.argmin(distance))
    border = borders[i]
    left = _left_of_line(np.asarray(lines[i].coords), shape.centroid.coords[0])
    side = None if left is None else border.get("left_name" if left else "right_name")
    label = _border_label(border["name"])
    if crosses[i]:
        phrase = f"straddling the {label}"
    elif side:
        phrase = f"on the {side} side of the {label}, {format_distance(distance[i])} from it"
    else:
        phrase = f"{format_distance(distance[i])} from the {label}"
    return BorderRelation(name=border["name"], side=side, distance_m=float(distance[i]),
                          crosses=bool(crosses[i]), phrase=phrase)


def _left_of_line(coords: np.ndarray, point: tuple[float, float]) -> bool | None:
    """Whether ``point`` lies left of the line walked in vertex order (None: exactly on it).

    Nearest segment by vectorised point-to-segment distance; sign of the 2-D cross product of
    the segment direction with the vector to the point; the vertex rule where the nearest point
    is an interior vertex (see the module docstring).
    """
    coords = coords[np.r_[True, np.any(np.diff(coords, axis=0) != 0.0, axis=1)]]
    p = np.asarray(point, dtype=float)
    start, direction = coords[:-1], np.diff(coords, axis=0)
    t = np.clip(np.einsum("ij,ij->i", p - start, direction)
                / np.einsum("ij,ij->i", direction, direction), 0.0, 1.0)
    gap = p - (start + t[:, None] * direction)
    i = int(np.argmin(np.einsum("ij,ij->i", gap, gap)))
    if t[i] >= 1.0 and i + 1 < len(direction):
        vertex = i + 1
    elif t[i] <= 0.0 and i > 0:
        vertex = i
    else:
        cross = _cross(direction[i], p - start[i])
        return None if cross == 0.0 else bool(cross > 0.0)
    d_in, d_out = direction[vertex - 1], direction[vertex]
    c_in, c_out = _cross(d_in, p - coords[vertex]), _cross(d_out, p - coords[vertex])
    if c_in == 0.0 and c_out == 0.0:
        return None
    if _cross(d_in, d_out) > 0.0:
        return bool(c_in > 0.0 and c_out > 0.0)
    return bool(c_in > 0.0 or c_out > 0.0)


def _fold(angle_deg: float, period: float) -> float:
    """``angle_deg`` folded into [0, period) (a second modulo turns -1e-17 % 180 = 180.0 to 0)."""
    return float(angle_deg % period % period)


def _cross(a: np.ndarray, b: np.ndarray) -> float:
    """z component of the cross product a x b (positive: b is counter-clockwise of a)."""
    return float(a[0] * b[1] - a[1] * b[0])


def _border_label(name: str) -> str:
    """"Iraq-Syria" -> "Iraq-Syria border"; names already saying what they are kept as given."""
    words = name.lower()
    return name if any(w in words for w in ("border", "boundary", "line", "frontier")) \
        else f"{name} border"
