"""Reference places and border lines: what sites are located against.

Imported from GeoJSON (RFC 7946, lon/lat): Point features become places (``name``, ``kind``
such as "border crossing" or "town"), LineString features become borders (``name``, ``kind``,
and ``left``/``right``: what lies on each side walking the line in vertex order). Importing a
place or border whose name already exists replaces it.

A file is checked whole before anything is stored: a geometry that is not finite lon/lat (see
:mod:`sitewatch.validate`), a ``crs`` member naming another CRS, a feature without a name, or
two places (or two borders) of one name refuse the whole file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sitewatch.errors import SitewatchError
from sitewatch.geojson import features, read_geojson
from sitewatch.store import Workspace
from sitewatch.validate import lonlat_geometry, require_wgs84

#: The layer each geometry type is stored in, and the kind given when a feature says none.
_LAYER_OF = {"Point": ("places", "place"), "LineString": ("borders", "border")}


@dataclass
class PlacesReport:
    """Names of the places and borders written by one import, and the features left out
    (feature number and geometry type: only Points and LineStrings are places and borders)."""

    places: list[str]
    borders: list[str]
    skipped: list[tuple[int, str]] = field(default_factory=list)


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
    records: dict[str, list[dict]] = {"places": [], "borders": []}
    first_of_name: dict[tuple[str, str], int] = {}  # (layer, name) -> feature number
    skipped = []
    for number, feature in enumerate(features, start=1):
        what = f"feature {number}"
        props = _properties(feature, what, path)
        geometry = lonlat_geometry(feature.get("geometry"), what, path)
        name = _text(props, "name", what, path)
        if not name:
            raise SitewatchError(f"{what} has no 'name' property", path)
        if geometry.geom_type not in _LAYER_OF:
            skipped.append((number, geometry.geom_type))
            continue
        layer, default_kind = _LAYER_OF[geometry.geom_type]
        if (layer, name) in first_of_name:
            raise SitewatchError(f"features {first_of_name[layer, name]} and {number} are two "
                                 f"{layer} named {name!r}; give each its own name", path)
        first_of_name[layer, name] = number
        record = {"geom": geometry, "name": name,
                  "kind": _text(props, "kind", what, path) or default_kind,
                  "source": _text(props, "source", what, path) or str(path.resolve())}
        if layer == "places":
            record["notes"] = _text(props, "notes", what, path)
        else:
            record["left_name"] = _text(props, "left", what, path)
            record["right_name"] = _text(props, "right", what, path)
        records[layer].append(record)
    if not records["places"] and not records["borders"]:
        raise SitewatchError("holds no Point (place) or LineString (border) features", path)
    with Workspace.using(workspace, create=True) as ws:
        with ws.transaction() as txn:
            for layer, layer_records in records.items():
                for record in layer_records:
                    txn.delete(layer, "name = ?", (record["name"],))
                    txn.insert(layer, record)
    return PlacesReport([p["name"] for p in records["places"]],
                        [b["name"] for b in records["borders"]], skipped)


def _properties(feature: object, what: str, path: Path) -> dict:
    """The ``properties`` of a GeoJSON feature, checked to be an object in WGS84 lon/lat."""
    if not isinstance(feature, dict):
        raise SitewatchError(f"{what} is not a GeoJSON object", path)
    require_wgs84(feature, what, path)
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise SitewatchError(f"{what} has 'properties' that are not an object", path)
    return props


def _text(props: dict, key: str, what: str, path: Path) -> str | None:
    """The text property ``key`` of a feature (None if absent); an error if it is not text."""
    value = props.get(key)
    if value is not None and not isinstance(value, str):
        raise SitewatchError(f"{what} has a {key!r} property that is not text ({value!r})", path)
    return value


def _read_features(path: Path) -> list[dict]:
    document = read_geojson(path)
    if document.get("type") not in ("FeatureCollection", "Feature"):
        raise SitewatchError("expected a GeoJSON Feature or FeatureCollection", path)
    require_wgs84(document, "the file", path)
    return features(document)
