"""GeoJSON in and out: reading the files users give, with one-line errors, and the one writer of
the GeoJSON sitewatch produces (exports, ``sites --geojson``, ``compare``'s sites, the analyst
layer, the report's AOI outlines), RFC 7946: lon/lat on WGS 84, right-handed polygon rings,
coordinates to :data:`DECIMALS` decimals."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from sitewatch.errors import SitewatchError


def read_geojson(path: str | Path, what: str = "GeoJSON file") -> dict:
    """The parsed JSON object of ``path``; a :class:`SitewatchError` if missing or invalid."""
    path = Path(path)
    if not path.is_file():
        raise SitewatchError(f"no such {what}; check the path", path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SitewatchError(f"not valid GeoJSON ({exc})", path) from exc
    if not isinstance(document, dict):
        raise SitewatchError("not a GeoJSON object", path)
    return document


def features(document: dict) -> list[dict]:
    """The features of a FeatureCollection or Feature, or the object itself as a bare geometry."""
    if document.get("type") == "FeatureCollection":
        return list(document.get("features") or [])
    if document.get("type") == "Feature":
        return [document]
    return [{"type": "Feature", "geometry": document, "properties": {}}]


#: Decimals of a degree kept when writing lon/lat coordinates: 7, about 1.1 cm of latitude
#: (RFC 7946 section 11.2: no more precision than the data has).
DECIMALS = 7


def written_lonlat(geometry: BaseGeometry | None) -> BaseGeometry | None:
    """``geometry`` (lon/lat) as sitewatch writes it in every vector format: coordinates
    rounded to :data:`DECIMALS`, polygon rings right-handed (exterior counter-clockwise, holes
    clockwise, RFC 7946 section 3.1.6)."""
    if geometry is None:
        return None
    rounded = shapely.transform(geometry, lambda xy: np.round(xy, DECIMALS))
    return shapely.orient_polygons(rounded, exterior_cw=False)


def feature(geometry: BaseGeometry | None, properties: Mapping[str, Any],
            feature_id: str | None = None) -> dict:
    """An RFC 7946 Feature of a lon/lat shapely geometry (None: a feature without geometry),
    with :func:`written_lonlat` coordinates and, when given, its ``id``."""
    written = written_lonlat(geometry)
    out: dict[str, Any] = {"type": "Feature"}
    if feature_id is not None:
        out["id"] = feature_id
    out["geometry"] = None if written is None or written.is_empty else shapely.geometry.mapping(
        written)
    out["properties"] = dict(properties)
    return out


def feature_collection(features: list[dict], **members: Any) -> dict:
    """An RFC 7946 FeatureCollection of ``features``, with foreign ``members`` (section 6.1)
    before them."""
    return {"type": "FeatureCollection", **members, "features": features}


def dumps(document: dict, *, indent: int | None = None) -> str:
    """A GeoJSON document as UTF-8 JSON text: no NaN or Infinity (not JSON, RFC 8259)."""
    return json.dumps(document, ensure_ascii=False, allow_nan=False, indent=indent)
