"""Reference places and border lines: what sites are located against.

Imported from GeoJSON (RFC 7946, lon/lat): Point features become places (``name``, ``kind``
such as "border crossing" or "town"), LineString features become borders (``name``, ``kind``,
and ``left``/``right``: what lies on each side walking the line in vertex order). Importing a
place or border whose name already exists replaces it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shapely.geometry import LineString, Point, shape

from sitewatch.errors import SitewatchError
from sitewatch.geojson import features, read_geojson
from sitewatch.store import Workspace


@dataclass
class PlacesReport:
    """Names of the places and borders written by one import."""

    places: list[str]
    borders: list[str]


def import_places(
    path: str | os.PathLike, workspace: str | os.PathLike | Workspace
) -> PlacesReport:
    """Import the places and borders of the GeoJSON file ``path`` into ``workspace``."""
    path = Path(path)
    return import_place_features(_read_features(path), workspace, path)


def import_place_features(
    features: list[dict], workspace: str | os.PathLike | Workspace, source: str | os.PathLike
) -> PlacesReport:
    """Import GeoJSON ``features`` (places and borders) read from ``source``, a file whose
    name errors and the records' ``source`` carry."""
    path = Path(source)
    places, borders = [], []
    for number, feature in enumerate(features, start=1):
        props = feature.get("properties") or {}
        try:
            geometry = shape(feature["geometry"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SitewatchError(f"feature {number} has no valid geometry ({exc})", path) from exc
        name = props.get("name")
        if not name:
            raise SitewatchError(f"feature {number} has no 'name' property", path)
        if isinstance(geometry, Point):
            places.append({"geom": geometry, "name": name, "kind": props.get("kind") or "place",
                           "source": props.get("source") or str(path.resolve()),
                           "notes": props.get("notes")})
        elif isinstance(geometry, LineString):
            borders.append({"geom": geometry, "name": name, "kind": props.get("kind") or "border",
                            "left_name": props.get("left"), "right_name": props.get("right"),
                            "source": props.get("source") or str(path.resolve())})
    if not places and not borders:
        raise SitewatchError("holds no Point (place) or LineString (border) features", path)
    owns = not isinstance(workspace, Workspace)
    ws = Workspace.open(workspace, create=True) if owns else workspace
    try:
        with ws.transaction() as txn:
            for layer, records in (("places", places), ("borders", borders)):
                for record in records:
                    txn.delete(layer, "name = ?", (record["name"],))
                    txn.insert(layer, record)
    finally:
        if owns:
            ws.close()
    return PlacesReport([p["name"] for p in places], [b["name"] for b in borders])


def _read_features(path: Path) -> list[dict]:
    document = read_geojson(path)
    if document.get("type") not in ("FeatureCollection", "Feature"):
        raise SitewatchError("expected a GeoJSON Feature or FeatureCollection", path)
    return features(document)
