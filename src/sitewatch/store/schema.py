"""The workspace schema: one GeoPackage layer or table per kind of record.

Each :class:`Layer` lists its columns as SQLite declarations. Geometry (when present) is the
GeoPackage column ``geom`` in EPSG:4326, with an R-tree spatial index. Structured values (band
lists, parameters) are JSON text. Dates and times are ISO 8601 strings in UTC, in columns
declared ``DATE`` (``YYYY-MM-DD``) or ``DATETIME`` (``YYYY-MM-DDTHH:MM:SS[.SSS]Z``) so that GDAL
and QGIS read them as dates; the event time ``occurred``, a day or a time, stays ``TEXT``.
Measurements are in metres, square metres and degrees clockwise from north.

Bump :data:`SCHEMA_VERSION` whenever a layer changes; a workspace whose recorded version is newer
than this one is refused rather than misread, and an older one is migrated on opening by the
steps of :data:`ADDED_LAYERS`, :data:`RETYPED_LAYERS` and :data:`REBUILT_LAYERS` (layers added,
geometry types widened, column types changed since its version) and the spatial indexes of
:data:`SPATIAL_INDEX_SINCE`, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Version of the layout below, recorded in the ``sitewatch_meta`` table of every workspace.
SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Layer:
    """One table of the workspace GeoPackage."""

    name: str
    description: str
    geometry_type: str | None  # GeoPackage geometry type name, or None for an attribute table
    columns: tuple[str, ...]  # "name SQLTYPE [constraints]" after the fid (and geom) columns

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.split()[0] for column in self.columns)

    def ddl(self) -> str:
        parts = ["fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL"]
        if self.geometry_type is not None:
            parts.append(f"geom {self.geometry_type}")
        parts.extend(self.columns)
        return f'CREATE TABLE "{self.name}" ({", ".join(parts)})'


LAYERS: tuple[Layer, ...] = (
    Layer(
        "scenes",
        "Registered imagery: one row per acquisition, footprint in EPSG:4326 (a MultiPolygon "
        "where it crosses the antimeridian); pixels stay in the source files.",
        "GEOMETRY",
        (
            "scene_id TEXT NOT NULL UNIQUE",
            "source TEXT NOT NULL UNIQUE",  # absolute path of the file, folder or STAC item
            "fingerprint TEXT NOT NULL",  # size and mtime of every file the scene reads
            "sensor TEXT",
            "platform TEXT",
            "acquired DATETIME NOT NULL",  # ISO 8601 UTC
            "date_source TEXT NOT NULL",  # metadata | stac | filename | sidecar | user
            "crs TEXT NOT NULL",  # WKT2 of the raster CRS
            "epsg INTEGER",
            "width INTEGER NOT NULL",  # pixels of the finest band
            "height INTEGER NOT NULL",
            "transform TEXT NOT NULL",  # JSON: GDAL geotransform of the finest band
            "resolution_m REAL NOT NULL",  # pixel size of the finest band, metres
            "bands TEXT NOT NULL",  # JSON list of band records (file, index, name, resolution...)
            "nodata_fraction REAL NOT NULL",
            "cloud_cover REAL",  # percent, when the provider says
            "driver TEXT NOT NULL",
            "properties TEXT",  # JSON: anything else the source said (STAC properties...)
            "ingested_at DATETIME NOT NULL",
        ),
    ),
    Layer(
        "aois",
        "Areas of interest.",
        "POLYGON",
        ("name TEXT NOT NULL UNIQUE", "description TEXT", "created_at DATETIME NOT NULL"),
    ),
    Layer(
        "places",
        "Named reference places (border crossings, towns...) that sites are located against.",
        "POINT",
        ("name TEXT NOT NULL UNIQUE", "kind TEXT NOT NULL", "source TEXT", "notes TEXT"),
    ),
    Layer(
        "borders",
        "Border and other reference lines; left/right name what lies on each side when walking "
        "the line in its vertex order.",
        "LINESTRING",
        ("name TEXT NOT NULL UNIQUE", "kind TEXT NOT NULL", "left_name TEXT", "right_name TEXT",
         "source TEXT"),
    ),
    Layer(
        "runs",
        "What ran: stage, inputs, parameters and sitewatch version, so results can be reproduced.",
        None,
        (
            "run_id TEXT NOT NULL UNIQUE",
            "stage TEXT NOT NULL",
            "started_at DATETIME NOT NULL",
            "finished_at DATETIME",
            "status TEXT NOT NULL",
            "sitewatch_version TEXT NOT NULL",
            "parameters TEXT",  # JSON
            "inputs TEXT",  # JSON
        ),
    ),
    Layer(
        "rasters",
        "Raster products written beside the GeoPackage (stacks, change maps); paths are "
        "relative to the workspace directory.",
        "POLYGON",
        ("path TEXT NOT NULL UNIQUE", "kind TEXT NOT NULL", "run_id TEXT", "aoi TEXT",
         "acquired DATETIME", "properties TEXT"),
    ),
    Layer(
        "sites",
        "Automatic findings: changed ground objects tracked across dates (polygon = latest "
        "footprint; a MultiPolygon where it is in parts).",
        "GEOMETRY",
        (
            "site_id TEXT NOT NULL UNIQUE",
            "aoi TEXT",
            "change_type TEXT",
            "status TEXT",
            "first_seen DATE",
            "last_seen_unchanged DATE",
            "area_m2 REAL",
            "length_m REAL",
            "width_m REAL",
            "orientation_deg REAL",
            "centroid_lat REAL",
            "centroid_lon REAL",
            "mgrs TEXT",
            "run_id TEXT",
            "properties TEXT",
        ),
    ),
    Layer(
        "observations",
        "One site seen on one date: footprint, measurements and evidence.",
        "GEOMETRY",
        (
            "site_id TEXT NOT NULL",
            "scene_id TEXT",
            "observed DATE NOT NULL",
            "phase TEXT",
            "area_m2 REAL",
            "length_m REAL",
            "width_m REAL",
            "score REAL",
            "run_id TEXT",
        ),
    ),
    Layer(
        "events",
        "Collateral events entered by analysts (a strike, a visit), with their sources.",
        "POINT",
        (
            "event_id TEXT NOT NULL UNIQUE",
            "occurred TEXT NOT NULL",
            "kind TEXT NOT NULL",
            "description TEXT",
            "source TEXT",
            "url TEXT",
            "credibility TEXT",
            "site_id TEXT",
            "author TEXT",
            "created_at DATETIME NOT NULL",
        ),
    ),
    Layer(
        "assessments",
        "Analyst judgements about sites, with estimative confidence; kept apart from automatic "
        "findings.",
        None,
        (
            "assessment_id TEXT NOT NULL UNIQUE",
            "site_id TEXT NOT NULL",
            "judgement TEXT NOT NULL",
            "confidence TEXT NOT NULL",  # estimative term, e.g. "probably"
            "probability_low REAL",
            "probability_high REAL",
            "author TEXT",
            "assessed DATE NOT NULL",
            "notes TEXT",
        ),
    ),
    Layer(
        "notes",
        "Free-text analyst notes attached to a site, a scene or the workspace.",
        None,
        ("subject TEXT", "text TEXT NOT NULL", "author TEXT", "created_at DATETIME NOT NULL"),
    ),
    Layer(
        "alerts",
        "Notifications of new sites and new phases of known sites, and their delivery to each "
        "channel (webhook, email); one row per finding, sent once.",
        None,
        (
            "alert_id TEXT NOT NULL UNIQUE",  # aoi/site/phase/date: the finding it reports
            "aoi TEXT NOT NULL",
            "site_id TEXT NOT NULL",
            "event TEXT NOT NULL",  # new_site | new_phase
            "phase TEXT",
            "created_at DATETIME NOT NULL",
            "properties TEXT NOT NULL",  # JSON: the alert document sent
            "webhook_sent_at DATETIME",  # NULL while not delivered (or no webhook configured)
            "email_sent_at DATETIME",
            "last_error TEXT",
        ),
    ),
)

#: The layers each schema version added, for migrating older workspaces.
ADDED_LAYERS: dict[int, tuple[str, ...]] = {2: ("alerts",)}
#: The geometry types each schema version changed (layer -> new GeoPackage type name).
RETYPED_LAYERS: dict[int, dict[str, str]] = {
    2: {"scenes": "GEOMETRY"}, 3: {"sites": "GEOMETRY", "observations": "GEOMETRY"}}
#: The layers whose column types each schema version changed (3: ISO 8601 text columns
#: declared DATE / DATETIME, which GDAL and QGIS read as date fields): rebuilt from their
#: new declaration, every row kept.
REBUILT_LAYERS: dict[int, tuple[str, ...]] = {
    3: ("scenes", "aois", "runs", "rasters", "sites", "observations", "events", "assessments",
        "notes", "alerts")}
#: The schema version from which every feature layer has a GeoPackage R-tree spatial index.
SPATIAL_INDEX_SINCE = 3

LAYERS_BY_NAME = {layer.name: layer for layer in LAYERS}
