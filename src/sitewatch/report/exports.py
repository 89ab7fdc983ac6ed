"""Exports of a workspace for GIS and globe viewers: GeoJSON, GeoPackage, KML/KMZ and CSV.

Every format carries the automatic findings (the ``sites`` layer) flattened into the attributes
of :data:`SITE_FIELDS`: size in metres and square metres, orientation and bearings in degrees
clockwise from true north, dates as ISO 8601 days, coordinates in WGS84 (EPSG:4326) longitude
and latitude degrees. Analyst records (collateral events, assessments) are marked
``origin = "analyst"`` and sites ``origin = "automatic"``, so the two never mix unnoticed.

GeoJSON (``.geojson``)
    The sites only, as an RFC 7946 FeatureCollection: lon/lat, polygon rings right-handed
    (exterior counter-clockwise, holes clockwise), coordinates rounded to 7 decimals (about 1 cm),
    ``phases`` as the stored list of ``{"phase", "first_observed", "after"}`` objects. AOIs
    whose buildings were counted (``track --buildings``) add a ``sitewatch:damage`` member to the
    collection: one record of :data:`DAMAGE_FIELDS` per AOI.
GeoPackage (``.gpkg``, OGC 12-128r18, written through GDAL by pyogrio)
    Layers ``sites`` and ``observations`` (MultiPolygon footprints; one observation per site and
    date, observations without a footprint left out), ``places`` (Points), ``borders``
    (LineStrings), ``events`` (Points), ``assessments`` and ``damage`` (attribute tables without
    geometry; ``damage`` holds the building counts of :data:`DAMAGE_FIELDS`), all in EPSG:4326.
    Layers without records are still created with their fields. ``phases`` is a compact text,
    e.g. "cleared 2019-05-15 (after 2019-04-30); under_construction 2019-06-15 (after
    2019-05-15)".
KML 2.2 (``.kml``, OGC 07-147r2) and KMZ (``.kmz``: the same document as ``doc.kml`` in a zip)
    A Document with one Style per change type (distinct outline colours, 25 % opaque fill) and
    the folders "Sites", "Reference places", "Borders" and "Collateral events". Each site has
    its own folder: the site Placemark (latest footprint and a pin inside it, an HTML table
    in ``<description>``, every attribute in ``<ExtendedData>``; it has no time, so it stays
    visible as the reference outline) and one Placemark per observed footprint whose
    ``<TimeSpan>`` runs from its date to the date of the next observed footprint (the last one
    open-ended), so the time slider of Google Earth steps through the site's history. Events
    carry a ``<TimeStamp>``. Polygons are clamped to the ground and tessellated; coordinates are
    "lon,lat" with 7 decimals.
CSV (``.csv``, RFC 4180, UTF-8 with a header row)
    One row per site: the attributes of :data:`SITE_FIELDS` and the footprint as OGC WKT in the
    ``wkt`` column (QGIS "Delimited Text" reads it as the geometry, EPSG:4326). Booleans are
    written ``true``/``false``, missing values as empty fields.

With ``aoi`` the export holds that AOI's sites, their observations and assessments, and the
events tied to them or lying inside the AOI's polygon; without it, everything. Reference places
and borders are always exported whole: site locations are phrased against them even when they
lie outside the AOI. A workspace with no sites at all exports valid, empty files (empty
FeatureCollection, GeoPackage layers with fields but no features, KML folders without
Placemarks, a CSV with its header only).

Every file is written to a temporary directory beside the target and renamed into place
(``os.replace``), so a failed export leaves an existing file as it was.
"""

from __future__ import annotations

import csv
import html
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import pyogrio.raw
import shapely
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from sitewatch import geojson
from sitewatch.csvcells import safe_cell
from sitewatch.errors import SitewatchError
from sitewatch.report.palette import TYPE_COLOURS
from sitewatch.sites.damage import stored_damage
from sitewatch.store import Workspace

#: Export format names and the file extension each is recognised by.
FORMATS = {".geojson": "geojson", ".gpkg": "gpkg", ".kml": "kml", ".kmz": "kmz", ".csv": "csv"}
#: File name of each format written by :func:`export_all`.
EXPORT_ALL_NAMES = {"geojson": "sites.geojson", "gpkg": "sitewatch-export.gpkg",
                    "kml": "sites.kml", "kmz": "sites.kmz", "csv": "sites.csv"}

#: Flattened site attributes and their field types (text, real, integer, boolean), in the order
#: the GeoPackage ``sites`` layer and the CSV columns have them.
SITE_FIELDS: tuple[tuple[str, str], ...] = (
    ("site_id", "text"), ("aoi", "text"), ("origin", "text"), ("change_type", "text"),
    ("status", "text"), ("first_seen", "date"), ("last_seen_unchanged", "date"),
    ("area_m2", "real"), ("length_m", "real"), ("width_m", "real"),
    ("orientation_deg", "real"), ("rectangularity", "real"), ("centroid_lat", "real"),
    ("centroid_lon", "real"), ("mgrs", "text"), ("location", "text"), ("nearest_place", "text"),
    ("place_distance_m", "real"), ("place_bearing_deg", "real"), ("border_side", "text"),
    ("border_distance_m", "real"), ("crosses_border", "boolean"), ("phases", "text"),
    ("n_observations", "integer"),
)
OBSERVATION_FIELDS = (("site_id", "text"), ("observed", "date"), ("phase", "text"),
                      ("area_m2", "real"), ("length_m", "real"), ("width_m", "real"),
                      ("score", "real"))
PLACE_FIELDS = (("name", "text"), ("kind", "text"), ("source", "text"), ("notes", "text"))
BORDER_FIELDS = (("name", "text"), ("kind", "text"), ("left_name", "text"),
                 ("right_name", "text"), ("source", "text"))
EVENT_FIELDS = (("event_id", "text"), ("origin", "text"), ("occurred", "text"),
                ("kind", "text"), ("description", "text"), ("source", "text"), ("url", "text"),
                ("credibility", "text"), ("site_id", "text"), ("author", "text"),
                ("created_at", "datetime"))
ASSESSMENT_FIELDS = (("assessment_id", "text"), ("origin", "text"), ("site_id", "text"),
                     ("judgement", "text"), ("confidence", "text"), ("probability_low", "real"),
                     ("probability_high", "real"), ("author", "text"), ("assessed", "date"),
                     ("notes", "text"))
DAMAGE_FIELDS = (("aoi", "text"), ("buildings", "integer"), ("damaged", "integer"),
                 ("area_km2", "real"), ("estimate", "real"), ("low_90", "real"),
                 ("high_90", "real"), ("finding", "text"))

#: Outline colour (RGB hex, no ``#``) of each change type in KML: the report's palette
#: (:mod:`sitewatch.report.palette`); fills are the same colour, 25 % opaque.
CHANGE_TYPE_COLOURS = {change_type: colour.lstrip("#").lower()
                       for change_type, colour in TYPE_COLOURS.items()}
_FILL_ALPHA = "40"
_KML_NAMESPACE = "http://www.opengis.net/kml/2.2"


@dataclass(frozen=True)
class _Content:
    """What an export holds, read from the workspace once for every format."""

    title: str
    sites: list[dict[str, Any]]  # SITE_FIELDS (phases as a list) and "geom"
    observations: dict[str, list[dict[str, Any]]]  # site_id -> footprinted observations by date
    places: list[dict[str, Any]]
    borders: list[dict[str, Any]]
    events: list[dict[str, Any]]
    assessments: list[dict[str, Any]]
    damage: list[dict[str, Any]]  # DAMAGE_FIELDS: per AOI, the count of track --buildings


def export(workspace: str | os.PathLike, path: str | os.PathLike, *, aoi: str | None = None,
           format: str | None = None) -> Path:
    """Export the sites and reference layers of ``workspace`` to one file.

    Parameters
    ----------
    workspace
        Workspace directory (holds ``sitewatch.gpkg``).
    path
        The file to write; an existing file is replaced atomically, missing folders are made.
    aoi
        Export only this AOI's sites (and their observations, assessments and events).
    format
        One of ``"geojson"``, ``"gpkg"``, ``"kml"``, ``"kmz"``, ``"csv"``; by default read from
        the extension of ``path``.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    SitewatchError
        The format is unknown, ``path`` is a directory or cannot be written, the workspace
        cannot be opened, or ``aoi`` has no sites (the message lists the AOIs that have some).
        A workspace without any sites is no error: it exports valid, empty files.
    """
    path = Path(path)
    kind = _format(path, format)
    content = _read(workspace, aoi)
    _write_atomically(path, lambda staged: _WRITERS[kind](content, staged))
    return path


def export_all(workspace: str | os.PathLike, out_dir: str | os.PathLike, *,
               aoi: str | None = None) -> dict[str, Path]:
    """Write every format into ``out_dir`` under the names of :data:`EXPORT_ALL_NAMES`.

    Returns the files written by format name (``"geojson"``, ``"gpkg"``, ``"kml"``, ``"kmz"``,
    ``"csv"``). Raises :class:`SitewatchError` as :func:`export` does, and when ``out_dir``
    exists but is not a directory.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SitewatchError("exists and is not a directory; give a folder for the exports",
                             out_dir)
    content = _read(workspace, aoi)
    written = {}
    for kind, name in EXPORT_ALL_NAMES.items():
        path = out_dir / name
        _write_atomically(path, lambda staged, kind=kind: _WRITERS[kind](content, staged))
        written[kind] = path
    return written


def phases_text(phases: Iterable[Mapping[str, Any]]) -> str:
    """Phases as one line, e.g. "cleared 2019-05-15 (after 2019-04-30); under_construction
    2019-06-15 (after 2019-05-15)": each phase's name, first observed day and, when known, the
    last observed day before it (the phase began between the two)."""
    parts = []
    for phase in phases:
        text = f"{phase['phase']} {phase['first_observed']}"
        if phase.get("after"):
            text += f" (after {phase['after']})"
        parts.append(text)
    return "; ".join(parts)


# -- reading ---------------------------------------------------------------------------------

def _format(path: Path, format: str | None) -> str:
    kind = FORMATS.get(path.suffix.lower()) if format is None else format.lower()
    if kind not in FORMATS.values():
        reason = (f"unknown export format {format!r}" if format is not None
                  else f"unknown export extension {path.suffix!r}" if path.suffix
                  else "no export format (the file name has no extension)")
        raise SitewatchError(f"{reason}; use one of "
                             f"{', '.join(FORMATS)} (or format= {', '.join(FORMATS.values())})",
                             path)
    return kind


def _read(workspace: str | os.PathLike, aoi: str | None) -> _Content:
    """The rows to export, filtered to ``aoi`` when given (see the module docstring)."""
    with Workspace.open(workspace) as ws:
        in_aoi = "site_id IN (SELECT site_id FROM sites WHERE aoi = ?)"
        if aoi is None:
            sites = ws.rows("sites", order_by="aoi, site_id")
            observations = ws.rows("observations", order_by="site_id, observed")
            events = ws.rows("events", order_by="occurred, event_id")
            assessments = ws.rows("assessments", order_by="site_id, assessed")
        else:
            sites = ws.rows("sites", "aoi = ?", (aoi,), order_by="site_id")
            if not sites:
                raise SitewatchError(_no_sites_message(ws, aoi), ws.root)
            observations = ws.rows("observations", in_aoi, (aoi,), order_by="site_id, observed")
            assessments = ws.rows("assessments", in_aoi, (aoi,), order_by="site_id, assessed")
            outline = [row["geom"] for row in ws.rows("aois", "name = ?", (aoi,))]
            site_ids = {row["site_id"] for row in sites}
            events = [event for event in ws.rows("events", order_by="occurred, event_id")
                      if _event_in_aoi(event, site_ids, outline)]
        places = ws.rows("places", order_by="name")
        borders = ws.rows("borders", order_by="name")
        title = ws.root.name if aoi is None else f"{ws.root.name}: {aoi}"
        damage = [_damage_record(name, count)
                  for name in ([aoi] if aoi is not None else
                               sorted({row["name"] for row in ws.rows("aois")}))
                  if (count := stored_damage(ws, name))]

    counts: dict[str, int] = {}
    footprints: dict[str, list[dict[str, Any]]] = {}
    for row in observations:
        counts[row["site_id"]] = counts.get(row["site_id"], 0) + 1
        if row["geom"] is not None and not row["geom"].is_empty:
            footprints.setdefault(row["site_id"], []).append(row)
    for row in [*events, *assessments]:
        row["origin"] = "analyst"
    return _Content(title=title,
                    sites=[_site_record(row, counts.get(row["site_id"], 0)) for row in sites],
                    observations=footprints, places=places, borders=borders, events=events,
                    assessments=assessments, damage=damage)


def _no_sites_message(ws: Workspace, aoi: str) -> str:
    counts: dict[str, int] = {}
    for row in ws.rows("sites"):
        counts[row["aoi"]] = counts.get(row["aoi"], 0) + 1
    declared = {row["name"] for row in ws.rows("aois")}
    if aoi in declared:
        message = f"AOI {aoi!r} has no sites; run 'sitewatch track --aoi {aoi}' first"
    else:
        message = f"no AOI named {aoi!r}"
    if counts:
        listed = ", ".join(f"{name} ({n})" for name, n in sorted(counts.items(),
                                                                 key=lambda kv: str(kv[0])))
        return f"{message}; AOIs with sites: {listed}"
    return f"{message}; the workspace has no sites yet"


def _event_in_aoi(event: Mapping[str, Any], site_ids: set[str],
                  outline: Sequence[BaseGeometry]) -> bool:
    """An event belongs to the AOI when tied to one of its sites or, tied to none, inside it."""
    if event["site_id"] is not None:
        return event["site_id"] in site_ids
    return event["geom"] is not None and any(
        area is not None and area.covers(event["geom"]) for area in outline)


def _site_record(row: Mapping[str, Any], n_observations: int) -> dict[str, Any]:
    """The flattened attributes of :data:`SITE_FIELDS` (phases as a list) and ``geom``."""
    properties = row["properties"] or {}
    measurements = properties.get("measurements") or {}
    places = measurements.get("places") or []
    nearest = places[0] if places else {}
    border = measurements.get("border") or {}
    return {
        "site_id": row["site_id"], "aoi": row["aoi"], "origin": "automatic",
        "change_type": row["change_type"], "status": row["status"],
        "first_seen": row["first_seen"], "last_seen_unchanged": row["last_seen_unchanged"],
        "area_m2": row["area_m2"], "length_m": row["length_m"], "width_m": row["width_m"],
        "orientation_deg": row["orientation_deg"],
        "rectangularity": measurements.get("rectangularity"),
        "centroid_lat": row["centroid_lat"], "centroid_lon": row["centroid_lon"],
        "mgrs": row["mgrs"], "location": properties.get("location"),
        "nearest_place": nearest.get("name"), "place_distance_m": nearest.get("distance_m"),
        "place_bearing_deg": nearest.get("bearing_deg"), "border_side": border.get("side"),
        "border_distance_m": border.get("distance_m"), "crosses_border": border.get("crosses"),
        "phases": list(properties.get("phases") or []), "n_observations": n_observations,
        "geom": row["geom"],
    }


def _tabular(site: Mapping[str, Any]) -> dict[str, Any]:
    """A site record with its phases as text, for GeoPackage fields and CSV cells."""
    return {**site, "phases": phases_text(site["phases"])}


# -- writing ---------------------------------------------------------------------------------

def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write`` on a staged file in a temporary folder beside ``path``, then rename it."""
    if path.is_dir():
        raise SitewatchError("is a directory; give the export a file name, e.g. sites.kml", path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".sitewatch-export-", dir=path.parent) as tmp:
            staged = Path(tmp) / path.name
            write(staged)
            os.replace(staged, path)
    except OSError as exc:
        raise SitewatchError(f"cannot write the export ({exc.strerror or exc}); choose another "
                             "path", path) from exc


def _damage_record(aoi: str, count: Mapping[str, Any]) -> dict[str, Any]:
    low, high = count["interval_90"]
    return {"aoi": aoi, "buildings": count["buildings"], "damaged": count["damaged"],
            "area_km2": count["area_km2"], "estimate": count["estimate"], "low_90": low,
            "high_90": high, "finding": count["sentence"]}


def _write_geojson(content: _Content, path: Path) -> None:
    features = [geojson.feature(site["geom"], {name: site[name] for name, _ in SITE_FIELDS},
                                site["site_id"]) for site in content.sites]
    members = {"sitewatch:damage": content.damage} if content.damage else {}
    path.write_text(geojson.dumps(geojson.feature_collection(features, **members)),
                    encoding="utf-8")


def _write_csv(content: _Content, path: Path) -> None:
    names = [name for name, _ in SITE_FIELDS]
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow([*names, "wkt"])
        for site in content.sites:
            record = _tabular(site)
            geometry = geojson.written_lonlat(site["geom"])
            wkt = "" if geometry is None else shapely.to_wkt(geometry,
                                                             rounding_precision=geojson.DECIMALS)
            writer.writerow([*(_csv_cell(record[name]) for name in names), wkt])


def _csv_cell(value: Any) -> str:
    """:func:`_text`, with text that a spreadsheet would run as a formula quoted
    (:func:`sitewatch.csvcells.safe_cell`); numbers are left as they are."""
    return _text(safe_cell(value))


def _text(value: Any) -> str:
    """A cell or KML value: "" for missing, "true"/"false" for booleans, else ``str``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _write_gpkg(content: _Content, path: Path) -> None:
    observations = [row for rows in content.observations.values() for row in rows]
    layers = (
        ("sites", [_tabular(site) for site in content.sites], SITE_FIELDS, "MultiPolygon",
         "Automatic findings: changed ground objects, latest footprint (origin automatic)."),
        ("observations", observations, OBSERVATION_FIELDS, "MultiPolygon",
         "One site's footprint on one observed date (score: activity, the share of its "
         "pixels that changed since the previous observed date, 0-1)."),
        ("places", content.places, PLACE_FIELDS, "Point", "Named reference places."),
        ("borders", content.borders, BORDER_FIELDS, "LineString",
         "Border lines; left/right name the sides walking the line in vertex order."),
        ("events", content.events, EVENT_FIELDS, "Point",
         "Collateral events entered by analysts, with their sources (origin analyst)."),
        ("assessments", content.assessments, ASSESSMENT_FIELDS, None,
         "Analyst judgements about sites with estimative confidence (origin analyst)."),
        ("damage", content.damage, DAMAGE_FIELDS, None,
         "Buildings destroyed or heavily damaged per AOI (track --buildings): the count, the "
         "number it implies (estimate) and its 90 % interval."),
    )
    for layer, records, fields, geometry_type, description in layers:
        field_data, field_mask = zip(*(_column([r[name] for r in records], kind)
                                       for name, kind in fields), strict=True)
        geometry = None
        if geometry_type is not None:
            geometry = np.array([None if r["geom"] is None else shapely.to_wkb(r["geom"])
                                 for r in records], dtype=object)
        pyogrio.raw.write(path, geometry, list(field_data), [name for name, _ in fields],
                          field_mask=list(field_mask), layer=layer, driver="GPKG",
                          geometry_type=geometry_type, crs="EPSG:4326",
                          promote_to_multi=geometry_type == "MultiPolygon",
                          layer_options={"DESCRIPTION": description})


def _column(values: list[Any], kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A field's values as the numpy array pyogrio writes, and its null mask (True = null).
    ``date`` and ``datetime`` fields (ISO 8601 text in UTC) become GeoPackage DATE and DATETIME
    columns, which QGIS reads as dates."""
    if kind in ("date", "datetime"):
        unit = "D" if kind == "date" else "ms"
        return np.array(["NaT" if v is None else str(v).removesuffix("Z") for v in values],
                        dtype=f"datetime64[{unit}]"), None
    if kind == "text":
        return np.array([None if v is None else str(v) for v in values], dtype=object), None
    if kind == "real":
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64), None
    dtype = np.int64 if kind == "integer" else np.bool_
    missing = np.array([v is None for v in values], dtype=bool)
    return np.array([0 if v is None else v for v in values], dtype=dtype), missing


def _write_kml(content: _Content, path: Path) -> None:
    path.write_bytes(_kml_document(content))


def _write_kmz(content: _Content, path: Path) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("doc.kml", _kml_document(content))


_WRITERS: dict[str, Callable[[_Content, Path], None]] = {
    "geojson": _write_geojson, "gpkg": _write_gpkg, "kml": _write_kml, "kmz": _write_kmz,
    "csv": _write_csv,
}


# -- KML -------------------------------------------------------------------------------------

def _kml_document(content: _Content) -> bytes:
    """The KML 2.2 document of ``content`` as UTF-8 bytes (see the module docstring)."""
    root = ET.Element("kml", xmlns=_KML_NAMESPACE)
    document = ET.SubElement(root, "Document")
    _sub(document, "name", f"sitewatch: {content.title}")
    _sub(document, "open", "1")
    for change_type, colour in CHANGE_TYPE_COLOURS.items():
        _style(document, f"change-{change_type}", colour)
    _style(document, "place", "ffffff")
    _style(document, "border", "ff00ff")
    _style(document, "event", "00ffff")

    sites = _folder(document, "Sites")
    for site in content.sites:
        _site_folder(sites, site, content.observations.get(site["site_id"], []))
    places = _folder(document, "Reference places")
    for place in content.places:
        placemark = _placemark(places, place["name"], _html_table({"Kind": place["kind"]}),
                               "place")
        _append_geometry(placemark, place["geom"])
    borders = _folder(document, "Borders")
    for border in content.borders:
        sides = {"Kind": border["kind"], "Left side": border["left_name"],
                 "Right side": border["right_name"]}
        placemark = _placemark(borders, border["name"], _html_table(sides), "border")
        _append_geometry(placemark, border["geom"])
    events = _folder(document, "Collateral events")
    for event in content.events:
        _event_placemark(events, event)

    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def _site_folder(parent: ET.Element, site: Mapping[str, Any],
                 observations: Sequence[Mapping[str, Any]]) -> None:
    folder = _folder(parent, site["site_id"])
    style = f"change-{site['change_type']}"
    if site["change_type"] not in CHANGE_TYPE_COLOURS:
        style = "change-unclassified"
    placemark = _placemark(folder, site["site_id"], _site_description(site), style)
    extended = ET.SubElement(placemark, "ExtendedData")
    for name, value in _tabular(site).items():
        if name != "geom":
            data = ET.SubElement(extended, "Data", name=name)
            _sub(data, "value", _text(value))
    if site["geom"] is not None:
        multi = ET.SubElement(placemark, "MultiGeometry")
        _append_geometry(multi, site["geom"].representative_point())
        _append_geometry(multi, site["geom"])
    for i, observation in enumerate(observations):
        name = observation["observed"]
        if observation["phase"]:
            name += f" {observation['phase']}"
        details = {"Phase": observation["phase"], "Area": _area(observation["area_m2"]),
                   "Size": _size(observation["length_m"], observation["width_m"]),
                   "Activity": _percent(observation["score"])}
        end = observations[i + 1]["observed"] if i + 1 < len(observations) else None
        placemark = _placemark(folder, name, _html_table(details), style,
                               span=(observation["observed"], end))
        _append_geometry(placemark, observation["geom"])


def _site_description(site: Mapping[str, Any]) -> str:
    return _html_table({
        "Type": _words(site["change_type"]), "Status": _words(site["status"]),
        "Size": _size(site["length_m"], site["width_m"]), "Area": _area(site["area_m2"]),
        "Phases": phases_text(site["phases"]), "Location": site["location"],
        "MGRS": site["mgrs"],
    })


def _event_placemark(parent: ET.Element, event: Mapping[str, Any]) -> None:
    link = (f'<a href="{html.escape(event["url"])}">{html.escape(event["url"])}</a>'
            if event["url"] else "")
    description = _html_table({"Kind": event["kind"], "Occurred": event["occurred"],
                               "Description": event["description"],
                               "Source": event["source"], "Credibility": event["credibility"],
                               "Site": event["site_id"], "Author": event["author"],
                               "Origin": event["origin"]})
    if link:
        description += f"<p>{link}</p>"
    placemark = _placemark(parent, f"{event['kind']} {event['occurred']}", description, "event",
                           stamp=event["occurred"])
    if event["geom"] is not None:
        _append_geometry(placemark, event["geom"])


def _placemark(parent: ET.Element, name: str, description: str, style: str, *,
               span: tuple[str, str | None] | None = None,
               stamp: str | None = None) -> ET.Element:
    """A Placemark with its children in the order the KML 2.2 schema requires."""
    placemark = ET.SubElement(parent, "Placemark")
    _sub(placemark, "name", name)
    _sub(placemark, "description", description)
    if span is not None:
        time_span = ET.SubElement(placemark, "TimeSpan")
        _sub(time_span, "begin", span[0])
        if span[1] is not None:
            _sub(time_span, "end", span[1])
    if stamp is not None:
        _sub(ET.SubElement(placemark, "TimeStamp"), "when", stamp)
    _sub(placemark, "styleUrl", f"#{style}")
    return placemark


def _append_geometry(parent: ET.Element, geometry: BaseGeometry) -> None:
    """``geometry`` as KML under ``parent``: Point, LineString, Polygon, or a MultiGeometry."""
    geometry = geojson.written_lonlat(geometry)
    if isinstance(geometry, Point):
        point = ET.SubElement(parent, "Point")
        _sub(point, "coordinates", _coordinates(geometry.coords))
    elif isinstance(geometry, LineString):
        line = ET.SubElement(parent, "LineString")
        _sub(line, "tessellate", "1")
        _sub(line, "altitudeMode", "clampToGround")
        _sub(line, "coordinates", _coordinates(geometry.coords))
    elif isinstance(geometry, Polygon):
        polygon = ET.SubElement(parent, "Polygon")
        _sub(polygon, "tessellate", "1")
        _sub(polygon, "altitudeMode", "clampToGround")
        for boundary, ring in [("outerBoundaryIs", geometry.exterior),
                               *(("innerBoundaryIs", hole) for hole in geometry.interiors)]:
            ring_element = ET.SubElement(ET.SubElement(polygon, boundary), "LinearRing")
            _sub(ring_element, "coordinates", _coordinates(ring.coords))
    else:
        target = parent if parent.tag == "MultiGeometry" else ET.SubElement(parent,
                                                                             "MultiGeometry")
        for part in geometry.geoms:
            _append_geometry(target, part)


def _coordinates(coords: Iterable[tuple[float, ...]]) -> str:
    return " ".join(f"{x:.{geojson.DECIMALS}f},{y:.{geojson.DECIMALS}f}" for x, y, *_ in coords)


def _style(document: ET.Element, style_id: str, rgb: str) -> None:
    """A shared Style: icon and outline in ``rgb`` (hex), fill the same, 25 % opaque. KML
    colours are written alpha, blue, green, red."""
    abgr = rgb[4:6] + rgb[2:4] + rgb[0:2]
    style = ET.SubElement(document, "Style", id=style_id)
    _sub(ET.SubElement(style, "IconStyle"), "color", "ff" + abgr)
    _sub(ET.SubElement(style, "LabelStyle"), "scale", "0.8")
    line = ET.SubElement(style, "LineStyle")
    _sub(line, "color", "ff" + abgr)
    _sub(line, "width", "2")
    _sub(ET.SubElement(style, "PolyStyle"), "color", _FILL_ALPHA + abgr)


def _folder(parent: ET.Element, name: str) -> ET.Element:
    folder = ET.SubElement(parent, "Folder")
    _sub(folder, "name", name)
    return folder


def _sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _html_table(rows: Mapping[str, Any]) -> str:
    """An HTML table of the rows with a value (escaped; KML balloons render it)."""
    cells = "".join(f"<tr><th align=\"left\">{html.escape(label)}</th>"
                    f"<td>{html.escape(_text(value))}</td></tr>"
                    for label, value in rows.items() if value is not None and value != "")
    return f"<table>{cells}</table>"


def _words(value: str | None) -> str | None:
    return None if value is None else value.replace("_", " ")


def _size(length_m: float | None, width_m: float | None) -> str | None:
    if not length_m or not width_m:
        return None
    return f"{length_m:.0f} x {width_m:.0f} m"


def _area(area_m2: float | None) -> str | None:
    if not area_m2:
        return None
    return f"{area_m2:,.0f} m\N{SUPERSCRIPT TWO} ({area_m2 / 10_000:.2f} ha)"


def _percent(fraction: float | None) -> str | None:
    return None if fraction is None else f"{fraction:.0%}"
