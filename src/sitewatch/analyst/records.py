"""Analyst records: judgements, collateral events and notes, kept beside the automatic findings.

Automatic findings (the ``sites`` and ``observations`` layers, written by :mod:`sitewatch.sites`)
and human judgement stay apart: this module writes only the ``assessments``, ``events`` and
``notes`` layers, and every record it exports is labelled ``origin = "analyst"``.

assessments
    An analyst's judgement about one site, with an estimative term of ICD 203
    (:mod:`sitewatch.analyst.confidence`) stored as its canonical word and probability range;
    ids are "A-" and 8 hex digits.
events
    Collateral events from other sources (a strike, a site visit, a press report), with the
    date or UTC time they occurred, their kind (:data:`EVENT_KINDS`), a lon/lat point (the
    site's centroid when only a site is given), source, URL and the Admiralty credibility of the
    information; ids are "E-" and 8 hex digits.
notes
    Free text about a site, a scene or the whole workspace (no subject). The notes layer has no
    id column: within a workspace a note is known by its ``note_id``, the row's fid.

Every function takes a workspace directory or an open :class:`~sitewatch.store.Workspace`; each
write is one transaction. :func:`export_analyst` writes all three kinds to one GeoJSON or CSV
file; :func:`import_analyst` checks every record of such a file before writing any, so a file
with one bad record changes nothing. A record whose id is already in the workspace is updated
in place, and a record without an id (notes always) that equals one already there, ignoring its
creation time, is left alone: importing the same file twice adds nothing the second time.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import tempfile
import urllib.parse
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from shapely.geometry import Point

from sitewatch import geojson
from sitewatch.analyst.confidence import Confidence, parse_confidence, parse_credibility
from sitewatch.csvcells import read_cell, safe_cell
from sitewatch.errors import SitewatchError
from sitewatch.geojson import read_geojson
from sitewatch.store import Workspace
from sitewatch.store.geopackage import now_iso

#: Kinds of collateral event.
EVENT_KINDS = ("strike", "visit", "construction_report", "demolition_report", "protest", "other")
#: The ``origin`` label of every exported analyst record.
ORIGIN = "analyst"
#: Record kinds of an export file, in the order they are written.
RECORD_KINDS = ("assessment", "event", "note")

#: Fields an assessment, event or note is given by (the id and creation time come on top).
ASSESSMENT_FIELDS = ("site_id", "judgement", "confidence", "author", "assessed", "notes")
EVENT_FIELDS = ("occurred", "kind", "lon", "lat", "site_id", "description", "source", "url",
                "credibility", "author")
NOTE_FIELDS = ("subject", "text", "author")

#: Columns of a CSV export, one row per record.
CSV_COLUMNS = ("record", "origin", "assessment_id", "event_id", "site_id", "subject", "judgement",
               "confidence", "probability_low", "probability_high", "assessed", "occurred",
               "kind", "lon", "lat", "description", "source", "url", "credibility", "text",
               "notes", "author", "created_at")

_LAYERS = {"assessment": "assessments", "event": "events", "note": "notes"}
_ID_COLUMNS = {"assessment": "assessment_id", "event": "event_id", "note": "note_id"}
_ID_PREFIXES = {"assessment": "A", "event": "E"}
# Fields a file may carry for each kind; probability_low/high follow from the term (ignored).
_FILE_FIELDS = {
    "assessment": {"assessment_id", *ASSESSMENT_FIELDS, "probability_low", "probability_high"},
    "event": {"event_id", *EVENT_FIELDS, "created_at"},
    "note": {*NOTE_FIELDS, "created_at"},
}
_LIST_COMMANDS = {"assessment": "sitewatch assess list", "event": "sitewatch event list",
                  "note": "sitewatch note list"}
_ORDER = {"assessment": "assessed, assessment_id", "event": "occurred, event_id",
          "note": "created_at, fid"}

WorkspaceLike = str | os.PathLike | Workspace


# -- assessments ---------------------------------------------------------------------------------
def add_assessment(workspace: WorkspaceLike, site_id: str, judgement: str,
                   confidence: str | Confidence, *, author: str | None = None,
                   assessed: str | date | None = None, notes: str | None = None) -> dict:
    """Record an analyst's judgement about the site ``site_id``; returns it as listed.

    ``confidence`` is an ICD 203 word or a percentage (:func:`parse_confidence`) or a
    :class:`Confidence`; ``assessed`` an ISO date (default: today, UTC).

    Raises
    ------
    SitewatchError
        The site is not in the workspace's ``sites`` layer, the judgement is empty, or the
        confidence or date cannot be read.
    """
    with Workspace.using(workspace) as ws:
        record = _assessment(_Known(ws), {
            "site_id": site_id, "judgement": judgement, "confidence": confidence,
            "author": author, "assessed": assessed, "notes": notes})
        record["assessment_id"] = _new_id("assessment")
        with ws.transaction() as txn:
            txn.insert("assessments", record)
        return _one(ws, "assessment", record["assessment_id"])


def update_assessment(workspace: WorkspaceLike, assessment_id: str, **fields: Any) -> dict:
    """Change the given fields (:data:`ASSESSMENT_FIELDS`) of an assessment; returns it.

    A field given as None is cleared (an error for the required judgement and confidence).
    """
    _check_fields(fields, ASSESSMENT_FIELDS)
    with Workspace.using(workspace) as ws:
        row = _row(ws, "assessment", assessment_id)
        current = {name: row[name] for name in ASSESSMENT_FIELDS}
        record = _assessment(_Known(ws), {**current, **fields})
        with ws.transaction() as txn:
            txn.update("assessments", row["fid"], record)
        return _one(ws, "assessment", assessment_id)


def delete_assessment(workspace: WorkspaceLike, assessment_id: str) -> dict:
    """Delete an assessment; returns it as it was."""
    return _delete(workspace, "assessment", assessment_id)


def list_assessments(workspace: WorkspaceLike, site_id: str | None = None) -> list[dict]:
    """The assessments (of one site if given), oldest first, as plain dicts."""
    return _list(workspace, "assessment", "site_id", site_id)


# -- events --------------------------------------------------------------------------------------
def add_event(workspace: WorkspaceLike, occurred: str | date, kind: str, *,
              lon: float | None = None, lat: float | None = None, site_id: str | None = None,
              description: str | None = None, source: str | None = None,
              url: str | None = None, credibility: str | None = None,
              author: str | None = None) -> dict:
    """Record a collateral event; returns it as listed.

    ``occurred`` is an ISO date or date and time (a time without zone is UTC); ``kind`` one of
    :data:`EVENT_KINDS`. The event is placed at ``lon``/``lat`` (degrees, WGS84) or, when they
    are not given, at the centroid of the site ``site_id``. ``url`` must be http(s);
    ``credibility`` is a rating of the Admiralty scale (:func:`parse_credibility`).

    Raises
    ------
    SitewatchError
        Any of these is invalid, the site is unknown, or the event has no place.
    """
    with Workspace.using(workspace) as ws:
        record = _event(_Known(ws), {
            "occurred": occurred, "kind": kind, "lon": lon, "lat": lat, "site_id": site_id,
            "description": description, "source": source, "url": url,
            "credibility": credibility, "author": author})
        record.update(event_id=_new_id("event"), created_at=now_iso())
        with ws.transaction() as txn:
            txn.insert("events", record)
        return _one(ws, "event", record["event_id"])


def update_event(workspace: WorkspaceLike, event_id: str, **fields: Any) -> dict:
    """Change the given fields (:data:`EVENT_FIELDS`) of an event; returns it.

    The event keeps its place unless ``lon`` or ``lat`` is given (a new site does not move
    it); both given as None move it to its site's centroid. Other fields given as None are
    cleared.
    """
    _check_fields(fields, EVENT_FIELDS)
    with Workspace.using(workspace) as ws:
        row = _row(ws, "event", event_id)
        current = {name: row[name] for name in EVENT_FIELDS if name not in ("lon", "lat")}
        current.update(_position(row["geom"]))
        record = _event(_Known(ws), {**current, **fields})
        with ws.transaction() as txn:
            txn.update("events", row["fid"], record)
        return _one(ws, "event", event_id)


def delete_event(workspace: WorkspaceLike, event_id: str) -> dict:
    """Delete an event; returns it as it was."""
    return _delete(workspace, "event", event_id)


def list_events(workspace: WorkspaceLike, site_id: str | None = None) -> list[dict]:
    """The events (of one site if given) in the order they occurred, as plain dicts with
    ``lon``/``lat`` in degrees."""
    return _list(workspace, "event", "site_id", site_id)


# -- notes ---------------------------------------------------------------------------------------
def add_note(workspace: WorkspaceLike, text: str, *, subject: str | None = None,
             author: str | None = None) -> dict:
    """Attach a note to a site or scene (``subject``: its id) or, without one, to the
    workspace; returns it as listed, with its ``note_id``."""
    with Workspace.using(workspace) as ws:
        record = _note(_Known(ws), {"subject": subject, "text": text, "author": author})
        record["created_at"] = now_iso()
        with ws.transaction() as txn:
            fid = txn.insert("notes", record)
        return _one(ws, "note", fid)


def delete_note(workspace: WorkspaceLike, note_id: int) -> dict:
    """Delete a note; returns it as it was."""
    return _delete(workspace, "note", note_id)


def list_notes(workspace: WorkspaceLike, subject: str | None = None) -> list[dict]:
    """The notes (about one subject if given), oldest first, as plain dicts."""
    return _list(workspace, "note", "subject", subject)


# -- files ---------------------------------------------------------------------------------------
def export_analyst(workspace: WorkspaceLike, path: str | os.PathLike) -> dict[str, int]:
    """Write every assessment, event and note of ``workspace`` to ``path``; returns the counts.

    ``.geojson``/``.json``: a GeoJSON FeatureCollection (RFC 7946, lon/lat); events are Point
    features, assessments and notes features with a null geometry; each feature's properties
    hold its fields plus ``record`` ("assessment", "event" or "note") and ``origin``
    ("analyst"). ``.csv``: one row per record with the columns :data:`CSV_COLUMNS` (events'
    place in ``lon``/``lat``). The file is written atomically.
    """
    path = Path(path)
    writer = _writer(path)
    with Workspace.using(workspace) as ws:
        records = {kind: _list(ws, kind) for kind in RECORD_KINDS}
    for row in records["note"]:
        row.pop("note_id")
    _write_atomic(path, writer(records))
    return {kind: len(rows) for kind, rows in records.items()}


def import_analyst(workspace: WorkspaceLike, path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Import the analyst records of a file written by :func:`export_analyst` (or by hand in
    the same format); returns, per record kind, how many were added, updated and unchanged.

    Every record is checked against the workspace before anything is written, then all are
    written in one transaction.

    Raises
    ------
    SitewatchError
        The file cannot be read, or a record is invalid; the message names the file and the
        feature or row (numbered from 1).
    """
    path = Path(path)
    entries = _read_entries(path)
    counts = {kind: {"added": 0, "updated": 0, "unchanged": 0} for kind in RECORD_KINDS}
    with Workspace.using(workspace) as ws:
        known = _Known(ws)
        existing = {kind: _list(ws, kind) for kind in RECORD_KINDS}
        stored = {kind: {r[_ID_COLUMNS[kind]]: r for r in ws.rows(_LAYERS[kind])}
                  for kind in ("assessment", "event")}
        writes, first_seen = [], {}
        for where, kind, fields in entries:
            try:
                write = _plan(kind, fields, known, existing[kind], stored.get(kind, {}))
            except SitewatchError as exc:
                raise SitewatchError(f"{where}: {exc.reason}", path) from None
            record_id = fields.get(_ID_COLUMNS[kind])
            if record_id is not None:
                if (kind, record_id) in first_seen:
                    raise SitewatchError(f"{where}: {_ID_COLUMNS[kind]} {record_id!r} is also "
                                         f"in {first_seen[kind, record_id]}", path)
                first_seen[kind, record_id] = where
            counts[kind][write[0]] += 1
            writes.append((kind, write))
        with ws.transaction() as txn:
            for kind, (outcome, fid, record) in writes:
                if outcome == "added":
                    txn.insert(_LAYERS[kind], record)
                elif outcome == "updated":
                    txn.update(_LAYERS[kind], fid, record)
    return counts


# -- checking records ----------------------------------------------------------------------------
class _Known:
    """What records may refer to: the workspace's sites (with centroids) and scenes."""

    def __init__(self, ws: Workspace):
        self.root = ws.root
        self.sites = {}
        for row in ws.rows("sites", order_by="site_id"):
            centre = ((row["centroid_lon"], row["centroid_lat"])
                      if row["centroid_lon"] is not None and row["centroid_lat"] is not None
                      else row["geom"].centroid.coords[0])
            self.sites[row["site_id"]] = centre
        self.scenes = {row["scene_id"] for row in ws.rows("scenes")}

    def site(self, site_id: str) -> tuple[float, float]:
        """The centroid (lon, lat) of a site; an error naming a few known sites if absent."""
        if site_id in self.sites:
            return self.sites[site_id]
        if not self.sites:
            raise SitewatchError(f"no site {site_id!r}: the workspace has no sites yet (run "
                                 "'sitewatch track')", self.root)
        ids = list(self.sites)
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        raise SitewatchError(f"no site {site_id!r} in the workspace; its sites are {shown} "
                             "(see 'sitewatch sites')", self.root)


def _assessment(known: _Known, fields: Mapping[str, Any]) -> dict:
    site_id = _required(fields.get("site_id"), "site_id")
    known.site(site_id)
    confidence = fields.get("confidence")
    if not isinstance(confidence, Confidence):
        confidence = parse_confidence(_required(confidence, "confidence"))
    return {
        "site_id": site_id,
        "judgement": _required(fields.get("judgement"), "judgement"),
        "confidence": confidence.term,
        "probability_low": confidence.low,
        "probability_high": confidence.high,
        "author": _text(fields.get("author")),
        "assessed": _iso_day(fields.get("assessed") or datetime.now(UTC).date(), "assessed"),
        "notes": _text(fields.get("notes")),
    }


def _event(known: _Known, fields: Mapping[str, Any]) -> dict:
    site_id = _text(fields.get("site_id"))
    if site_id is not None:
        known.site(site_id)
    kind = _required(fields.get("kind"), "kind").lower().replace(" ", "_").replace("-", "_")
    if kind not in EVENT_KINDS:
        raise SitewatchError(f"unknown event kind {fields.get('kind')!r}; use one of "
                             f"{', '.join(EVENT_KINDS)}")
    credibility = _text(fields.get("credibility"))
    return {
        "geom": _place(fields.get("lon"), fields.get("lat"), site_id, known),
        "occurred": _iso_moment(_required(fields.get("occurred"), "occurred"), "occurred"),
        "kind": kind,
        "description": _text(fields.get("description")),
        "source": _text(fields.get("source")),
        "url": _url(fields.get("url")),
        "credibility": None if credibility is None else parse_credibility(credibility),
        "site_id": site_id,
        "author": _text(fields.get("author")),
    }


def _note(known: _Known, fields: Mapping[str, Any]) -> dict:
    subject = _text(fields.get("subject"))
    if subject is not None and subject not in known.sites and subject not in known.scenes:
        raise SitewatchError(f"note subject {subject!r} is neither a site nor a scene of the "
                             "workspace; give a site_id or scene_id, or none for the workspace",
                             known.root)
    return {"subject": subject, "text": _required(fields.get("text"), "text"),
            "author": _text(fields.get("author"))}


def _place(lon: Any, lat: Any, site_id: str | None, known: _Known) -> Point:
    if lon is None and lat is None:
        if site_id is None:
            raise SitewatchError("an event needs a place: lon and lat, or a site to place it at "
                                 "the site's centroid")
        return Point(known.site(site_id))
    if lon is None or lat is None:
        raise SitewatchError("give both lon and lat, or neither to place the event at its "
                             "site's centroid")
    x, y = _number(lon, "lon"), _number(lat, "lat")
    if not (-180.0 <= x <= 180.0 and -90.0 <= y <= 90.0):
        raise SitewatchError(f"lon {x:g}, lat {y:g} is not a WGS84 position (lon -180..180, "
                             "lat -90..90 degrees)")
    return Point(x, y)


def _iso_day(value: Any, name: str) -> str:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    try:
        return date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise SitewatchError(f"{name} {value!r} is not an ISO date such as 2019-05-15") from None


def _iso_moment(value: Any, name: str) -> str:
    """An ISO date as given, or a date and time as UTC "YYYY-MM-DDTHH:MM:SSZ"."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    moment = value
    if not isinstance(value, datetime):
        text = str(value).strip()
        with contextlib.suppress(ValueError):
            return date.fromisoformat(text).isoformat()
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise SitewatchError(f"{name} {value!r} is not an ISO date or date and time such as "
                                 "2019-05-15 or 2019-05-15T08:30Z") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _url(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or any(
            c.isspace() for c in text):
        raise SitewatchError(f"url {text!r} is not an http(s) address such as "
                             "https://example.org/report")
    return text


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SitewatchError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise SitewatchError(f"{name} {value!r} is not a finite number")
    return number


def _text(value: Any) -> str | None:
    """Optional free text: stripped, empty as None."""
    if value is None:
        return None
    return str(value).strip() or None


def _required(value: Any, name: str) -> str:
    text = _text(value)
    if text is None:
        raise SitewatchError(f"{name} is missing or empty")
    return text


def _check_fields(fields: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise TypeError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def _new_id(kind: str) -> str:
    return f"{_ID_PREFIXES[kind]}-{uuid.uuid4().hex[:8]}"


# -- reading and deleting ------------------------------------------------------------------------
def _listed(kind: str, row: Mapping[str, Any]) -> dict:
    """A stored row as a plain dict: no fid (a note's fid is its ``note_id``), the event's
    point as ``lon``/``lat``."""
    out = {k: v for k, v in row.items() if k not in ("fid", "geom")}
    if kind == "event":
        out = {"event_id": out.pop("event_id", None), **out, **_position(row["geom"])}
    elif kind == "note":
        out = {"note_id": row["fid"], **out}
    return out


def _list(workspace: WorkspaceLike, kind: str, column: str | None = None,
          value: str | None = None) -> list[dict]:
    with Workspace.using(workspace) as ws:
        rows = (ws.rows(_LAYERS[kind], order_by=_ORDER[kind]) if value is None
                else ws.rows(_LAYERS[kind], f"{column} = ?", (value,), order_by=_ORDER[kind]))
    return [_listed(kind, row) for row in rows]


def _position(point: Point | None) -> dict[str, float | None]:
    """``lon``/``lat`` of an event's point (None for an event stored without one)."""
    return {"lon": None, "lat": None} if point is None else {"lon": point.x, "lat": point.y}


def _row(ws: Workspace, kind: str, record_id: str | int) -> dict:
    column = "fid" if kind == "note" else _ID_COLUMNS[kind]
    rows = ws.rows(_LAYERS[kind], f"{column} = ?", (record_id,))
    if not rows:
        raise SitewatchError(f"no {kind} {record_id!r} in the workspace (see "
                             f"'{_LIST_COMMANDS[kind]}')", ws.root)
    return rows[0]


def _one(ws: Workspace, kind: str, record_id: str | int) -> dict:
    return _listed(kind, _row(ws, kind, record_id))


def _delete(workspace: WorkspaceLike, kind: str, record_id: str | int) -> dict:
    with Workspace.using(workspace) as ws:
        row = _row(ws, kind, record_id)
        with ws.transaction() as txn:
            txn.delete(_LAYERS[kind], "fid = ?", (row["fid"],))
    return _listed(kind, row)


# -- import planning -----------------------------------------------------------------------------
def _content(kind: str, listed: Mapping[str, Any]) -> dict:
    """What a record says, without its id and creation time."""
    return {k: v for k, v in listed.items() if k not in (_ID_COLUMNS[kind], "created_at")}


def _plan(kind: str, fields: Mapping[str, Any], known: _Known, existing: list[dict],
          stored: Mapping[str, dict]) -> tuple[str, int | None, dict]:
    """("added" | "updated" | "unchanged", fid to update, record) for one imported record;
    ``existing`` are the kind's records as listed, ``stored`` its rows by id."""
    unknown = sorted(set(fields) - _FILE_FIELDS[kind])
    if unknown:
        raise SitewatchError(f"unknown field(s) {', '.join(unknown)} for a {kind}; a {kind} has "
                             f"{', '.join(sorted(_FILE_FIELDS[kind]))}")
    check = {"assessment": _assessment, "event": _event, "note": _note}[kind]
    record = check(known, fields)
    if kind != "assessment":
        created = _text(fields.get("created_at"))
        record["created_at"] = now_iso() if created is None else _iso_moment_text(created)
    id_column = _ID_COLUMNS[kind]
    record_id = None if kind == "note" else _text(fields.get(id_column))
    if record_id is not None:
        record[id_column] = record_id
        current = stored.get(record_id)
        if current is None:
            return "added", None, record
        same = _listed(kind, {**record, "fid": current["fid"]}) == _listed(kind, current)
        return ("unchanged" if same else "updated"), current["fid"], record
    listed = _content(kind, _listed(kind, {**record, "fid": None}))
    if any(_content(kind, other) == listed for other in existing):
        return "unchanged", None, record
    if kind != "note":
        record[id_column] = _new_id(kind)
    return "added", None, record


def _iso_moment_text(text: str) -> str:
    """A creation time from a file, kept as written once it reads as ISO 8601."""
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SitewatchError(f"created_at {text!r} is not an ISO date and time") from None
    return text


# -- file formats --------------------------------------------------------------------------------
def _writer(path: Path):
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        return _geojson_text
    if suffix == ".csv":
        return _csv_text
    raise SitewatchError("unknown format; give a .geojson, .json or .csv file", path)


def _geojson_text(records: Mapping[str, list[dict]]) -> str:
    features = []
    for kind in RECORD_KINDS:
        for row in records[kind]:
            properties = {"record": kind, "origin": ORIGIN, **row}
            geometry = None
            if kind == "event":
                lon, lat = properties.pop("lon"), properties.pop("lat")
                geometry = None if lon is None else Point(lon, lat)
            features.append(geojson.feature(geometry, properties,
                                            None if kind == "note" else row[_ID_COLUMNS[kind]]))
    return geojson.dumps(geojson.feature_collection(features), indent=2) + "\n"


def _csv_text(records: Mapping[str, list[dict]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for kind in RECORD_KINDS:
        for row in records[kind]:
            values = {"record": kind, "origin": ORIGIN, **row}
            writer.writerow({k: "" if v is None else repr(v) if isinstance(v, float)
                             else safe_cell(v) for k, v in values.items()})
    return buffer.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    if not path.parent.is_dir():
        raise SitewatchError("its folder does not exist; create it first", path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise SitewatchError(f"cannot write here ({exc.strerror})", path) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.replace(tmp_name, path)
    except OSError as exc:
        raise SitewatchError(f"cannot write ({exc.strerror or exc})", path) from exc
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _read_entries(path: Path) -> list[tuple[str, str, dict]]:
    """(where, record kind, fields) of every record of an analyst file."""
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        entries = _geojson_entries(path)
    elif suffix == ".csv":
        entries = _csv_entries(path)
    else:
        raise SitewatchError("unknown format; give a .geojson, .json or .csv file", path)
    for where, kind, fields in entries:
        origin = fields.pop("origin", None)
        if kind is None:
            raise SitewatchError(f"{where} has no 'record' (one of {', '.join(RECORD_KINDS)})",
                                 path)
        if kind not in RECORD_KINDS:
            raise SitewatchError(f"{where}: record {kind!r} is not one of "
                                 f"{', '.join(RECORD_KINDS)}", path)
        if origin not in (None, ORIGIN):
            raise SitewatchError(f"{where}: origin {origin!r} is not {ORIGIN!r}; only analyst "
                                 "records are imported (automatic findings come from "
                                 "'sitewatch track')", path)
    return entries


def _geojson_entries(path: Path) -> list[tuple[str, str, dict]]:
    document = read_geojson(path, "analyst GeoJSON file")
    if document.get("type") != "FeatureCollection" or not isinstance(
            document.get("features"), list):
        raise SitewatchError("expected a GeoJSON FeatureCollection", path)
    entries = []
    for number, feature in enumerate(document["features"], start=1):
        where = f"feature {number}"
        properties = feature.get("properties") if isinstance(feature, dict) else None
        if not isinstance(properties, dict):
            raise SitewatchError(f"{where} has no properties object", path)
        fields = dict(properties)
        kind = fields.pop("record", None)
        geometry = feature.get("geometry")
        if kind == "event" and geometry is not None:
            coordinates = geometry.get("coordinates") if isinstance(geometry, dict) else None
            if (geometry.get("type") != "Point" or not isinstance(coordinates, list)
                    or len(coordinates) < 2):
                raise SitewatchError(f"{where}: an event's geometry must be a Point", path)
            fields.update(lon=coordinates[0], lat=coordinates[1])
        elif geometry is not None:
            raise SitewatchError(f"{where}: a {kind} has no geometry; give null", path)
        entries.append((where, kind, fields))
    return entries


def _csv_entries(path: Path) -> list[tuple[str, str, dict]]:
    if not path.is_file():
        raise SitewatchError("no such analyst CSV file; check the path", path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SitewatchError(f"not UTF-8 text ({exc.reason})", path) from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or "record" not in reader.fieldnames:
        raise SitewatchError("has no 'record' column; export one with 'sitewatch analyst "
                             "export' to see the format", path)
    entries = []
    for number, row in enumerate(reader, start=1):
        where = f"row {number}"
        if None in row:
            raise SitewatchError(f"{where} has more cells than the header", path)
        fields = {k: read_cell(v) for k, v in row.items() if v not in ("", None)}
        kind = fields.pop("record", None)
        entries.append((where, kind, fields))
    return entries
