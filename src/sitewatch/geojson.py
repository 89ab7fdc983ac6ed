"""Reading GeoJSON files given by users, with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

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
