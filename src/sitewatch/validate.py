"""Checks of the numbers, coordinates and geometries users give, with one-line errors.

An entry point that takes geometries from a user (a GeoJSON file, the places of a watch file)
checks them here, where they come in: a NaN, a longitude of 400 or a line of one point is
refused with a :class:`~sitewatch.errors.SitewatchError` naming the file and the feature,
instead of being stored and breaking a later command.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from sitewatch.errors import SitewatchError


def lonlat_geometry(geometry: object, what: str, path: str | Path | None = None) -> BaseGeometry:
    """The shapely geometry of the GeoJSON geometry object ``geometry`` (lon/lat degrees).

    ``what`` names it in errors ("feature 3"), ``path`` is the file it came from.

    Raises
    ------
    SitewatchError
        If it is not a GeoJSON geometry, is empty, has a coordinate that is not a finite
        number or lies outside lon -180..180, lat -90..90, or is invalid (a line of one
        point, a self-intersecting polygon).
    """
    try:
        parsed = shape(geometry)
    except shapely.errors.GEOSException as exc:  # GEOS refuses lines and rings of too few points
        detail = " ".join(str(exc).split())
        raise SitewatchError(f"{what} is not a valid {geometry['type']}: too few points (a line "
                             f"needs 2, a polygon ring 4; {detail})", path) from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SitewatchError(f"{what} has no valid geometry ({exc})", path) from exc
    if parsed.is_empty:
        raise SitewatchError(f"{what} has an empty geometry", path)
    coordinates = shapely.get_coordinates(parsed)
    if not np.isfinite(coordinates).all():
        raise SitewatchError(f"{what} has a coordinate that is not a finite number (NaN or "
                             "infinity)", path)
    lon, lat = coordinates.T
    outside = (np.abs(lon) > 180) | (np.abs(lat) > 90)
    if outside.any():
        x, y = coordinates[np.argmax(outside)]
        raise SitewatchError(f"{what} has the coordinate ({x:g}, {y:g}) outside lon -180..180, "
                             "lat -90..90; GeoJSON gives longitude then latitude, in degrees "
                             "(WGS84)", path)
    if not parsed.is_valid:
        raise SitewatchError(f"{what} is not a valid {parsed.geom_type} "
                             f"({shapely.is_valid_reason(parsed)})", path)
    return parsed


def require_wgs84(geojson_object: dict, what: str, path: str | Path | None = None) -> None:
    """Refuse a GeoJSON object whose ``crs`` member names anything but WGS84 lon/lat.

    RFC 7946 removed the member: GeoJSON is WGS84 longitude/latitude, and coordinates in another
    CRS would be read as degrees. A member naming WGS84 itself (``OGC:CRS84``, ``EPSG:4326``,
    as older tools write) is accepted.
    """
    if "crs" not in geojson_object:
        return
    member = geojson_object["crs"]
    properties = member.get("properties") if isinstance(member, dict) else None
    name = properties.get("name") if isinstance(properties, dict) else None
    if isinstance(name, str) and _names_wgs84(name):
        return
    raise SitewatchError(f"{what} has a 'crs' member ({_json_excerpt(member)}); GeoJSON "
                         "(RFC 7946) is WGS84 longitude/latitude only: reproject the file to "
                         "EPSG:4326 and remove the member", path)


def _names_wgs84(name: str) -> bool:
    try:
        return CRS.from_user_input(name).equals(CRS.from_epsg(4326), ignore_axis_order=True)
    except CRSError:
        return False


def _json_excerpt(value: object, limit: int = 80) -> str:
    """``value`` as compact JSON for an error message, cut to ``limit`` characters."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def positive_number(value: object, what: str, *, allow_zero: bool = False) -> float:
    """``value`` as a float, if it is a finite number above 0 (at least 0 with
    ``allow_zero``); ``what`` names it in the error ("--radius, metres")."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SitewatchError(f"{what} must be a number, got {value!r}") from None
    if not np.isfinite(number) or number < 0 or number == 0 and not allow_zero:
        bound = "0 or more" if allow_zero else "above 0"
        raise SitewatchError(f"{what} must be a finite number {bound}, got {value!r}")
    return number


def fraction(value: object, what: str) -> float:
    """``value`` as a float, if it is a finite number from 0 to 1."""
    number = positive_number(value, what, allow_zero=True)
    if number > 1:
        raise SitewatchError(f"{what} must be a fraction from 0 to 1, got {value!r}")
    return number
