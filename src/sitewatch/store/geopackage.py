"""The parts of the OGC GeoPackage 1.3 encoding that sitewatch writes itself.

sitewatch keeps its workspace in one GeoPackage (an SQLite file, OGC 12-128r18) so that QGIS,
``ogrinfo`` and GeoPandas open its layers directly. Writing through Python's ``sqlite3`` (rather
than through OGR) keeps every write inside one SQLite transaction that sitewatch controls, so this
module provides what that needs: the required metadata tables, the geometry blob format (a small
header followed by ISO WKB, spec section 2.1.3), and the R-tree spatial index extension
(``gpkg_rtree_index``, spec annex F.3) with the SQL functions its triggers call, so that GDAL,
QGIS and any reader filter the layers by extent without scanning every row.

All geometries are stored in EPSG:4326 with longitude as x and latitude as y, as the spec
requires for that SRS.
"""

from __future__ import annotations

import sqlite3
import struct
from datetime import UTC, datetime

import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

#: ``PRAGMA application_id`` value of a GeoPackage ("GPKG" in ASCII).
APPLICATION_ID = 0x47504B47
#: ``PRAGMA user_version`` for GeoPackage 1.3.0.
USER_VERSION = 10300
#: The one SRS sitewatch stores vector data in (geographic WGS 84, degrees).
SRS_ID = 4326

_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}
#: Bit of the blob's flags byte set for an empty geometry (spec 2.1.3.1.1).
EMPTY_FLAG = 0b0001_0000

#: The table of the extensions a GeoPackage uses (spec 2.3.2).
EXTENSIONS_DDL = """CREATE TABLE gpkg_extensions (
    table_name TEXT, column_name TEXT, extension_name TEXT NOT NULL, definition TEXT NOT NULL,
    scope TEXT NOT NULL,
    CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))"""

_METADATA_DDL = """
CREATE TABLE gpkg_spatial_ref_sys (
    srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY, organization TEXT NOT NULL,
    organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT);
CREATE TABLE gpkg_contents (
    table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE,
    description TEXT DEFAULT '',
    last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
    CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
CREATE TABLE gpkg_geometry_columns (
    table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
    srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
    CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
    CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
    CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
"""


def now_iso() -> str:
    """The current UTC time as an ISO 8601 string with millisecond precision."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


#: The R-tree triggers of GeoPackage 1.3 annex F.3 (``{t}`` the table, ``{c}`` the geometry
#: column, ``{i}`` the primary key), which keep ``rtree_{t}_{c}`` in step with every write.
_RTREE_TRIGGERS = (
    """CREATE TRIGGER "rtree_{t}_{c}_insert" AFTER INSERT ON "{t}"
    WHEN (new."{c}" NOT NULL AND NOT ST_IsEmpty(NEW."{c}"))
    BEGIN INSERT OR REPLACE INTO "rtree_{t}_{c}" VALUES (NEW."{i}", ST_MinX(NEW."{c}"),
        ST_MaxX(NEW."{c}"), ST_MinY(NEW."{c}"), ST_MaxY(NEW."{c}")); END""",
    """CREATE TRIGGER "rtree_{t}_{c}_update1" AFTER UPDATE OF "{c}" ON "{t}"
    WHEN OLD."{i}" = NEW."{i}" AND (NEW."{c}" NOTNULL AND NOT ST_IsEmpty(NEW."{c}"))
    BEGIN INSERT OR REPLACE INTO "rtree_{t}_{c}" VALUES (NEW."{i}", ST_MinX(NEW."{c}"),
        ST_MaxX(NEW."{c}"), ST_MinY(NEW."{c}"), ST_MaxY(NEW."{c}")); END""",
    """CREATE TRIGGER "rtree_{t}_{c}_update2" AFTER UPDATE OF "{c}" ON "{t}"
    WHEN OLD."{i}" = NEW."{i}" AND (NEW."{c}" ISNULL OR ST_IsEmpty(NEW."{c}"))
    BEGIN DELETE FROM "rtree_{t}_{c}" WHERE id = OLD."{i}"; END""",
    """CREATE TRIGGER "rtree_{t}_{c}_update3" AFTER UPDATE ON "{t}"
    WHEN OLD."{i}" != NEW."{i}" AND (NEW."{c}" NOTNULL AND NOT ST_IsEmpty(NEW."{c}"))
    BEGIN DELETE FROM "rtree_{t}_{c}" WHERE id = OLD."{i}";
        INSERT OR REPLACE INTO "rtree_{t}_{c}" VALUES (NEW."{i}", ST_MinX(NEW."{c}"),
        ST_MaxX(NEW."{c}"), ST_MinY(NEW."{c}"), ST_MaxY(NEW."{c}")); END""",
    """CREATE TRIGGER "rtree_{t}_{c}_update4" AFTER UPDATE ON "{t}"
    WHEN OLD."{i}" != NEW."{i}" AND (NEW."{c}" ISNULL OR ST_IsEmpty(NEW."{c}"))
    BEGIN DELETE FROM "rtree_{t}_{c}" WHERE id IN (OLD."{i}", NEW."{i}"); END""",
    """CREATE TRIGGER "rtree_{t}_{c}_delete" AFTER DELETE ON "{t}"
    WHEN old."{c}" NOT NULL
    BEGIN DELETE FROM "rtree_{t}_{c}" WHERE id = OLD."{i}"; END""",
)
#: Where the R-tree extension is defined (GeoPackage 1.3, annex F.3).
RTREE_DEFINITION = "http://www.geopackage.org/spec130/#extension_rtree"


def initialise(conn: sqlite3.Connection) -> None:
    """Create the GeoPackage metadata tables in an empty SQLite database."""
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {USER_VERSION}")
    # Statement by statement: executescript() would commit the caller's open transaction.
    for statement in [*_METADATA_DDL.split(";"), EXTENSIONS_DDL]:
        if statement.strip():
            conn.execute(statement)
    rows = [
        ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", "undefined cartesian"),
        ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic"),
        ("WGS 84 geodetic", SRS_ID, "EPSG", SRS_ID, CRS.from_epsg(SRS_ID).to_wkt("WKT1_GDAL"),
         "longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid"),
    ]
    conn.executemany("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", rows)


def register_layer(
    conn: sqlite3.Connection,
    table: str,
    description: str,
    geometry_type: str | None,
) -> None:
    """Record ``table`` in ``gpkg_contents`` (and its geometry column, if any)."""
    data_type = "attributes" if geometry_type is None else "features"
    conn.execute(
        "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change,"
        " srs_id) VALUES (?, ?, ?, ?, ?, ?)",
        (table, data_type, table, description, now_iso(),
         None if geometry_type is None else SRS_ID),
    )
    if geometry_type is not None:
        conn.execute(
            "INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', ?, ?, 0, 0)",
            (table, geometry_type, SRS_ID),
        )


def add_spatial_index(conn: sqlite3.Connection, table: str, column: str = "geom",
                      key: str = "fid") -> None:
    """Give the feature layer ``table`` the GeoPackage R-tree index of its ``column``: the
    ``rtree_<table>_<column>`` virtual table, filled from the rows already there, the triggers
    that keep it current, and its ``gpkg_extensions`` record. The connection must have
    :func:`register_functions`."""
    conn.execute(f'CREATE VIRTUAL TABLE "rtree_{table}_{column}" USING rtree(id, minx, maxx, '
                 'miny, maxy)')
    conn.execute(f'INSERT INTO "rtree_{table}_{column}" SELECT "{key}", ST_MinX("{column}"), '
                 f'ST_MaxX("{column}"), ST_MinY("{column}"), ST_MaxY("{column}") FROM "{table}" '
                 f'WHERE "{column}" NOT NULL AND NOT ST_IsEmpty("{column}")')
    for trigger in _RTREE_TRIGGERS:
        conn.execute(trigger.format(t=table, c=column, i=key))
    conn.execute("INSERT INTO gpkg_extensions VALUES (?, ?, 'gpkg_rtree_index', ?, "
                 "'write-only')", (table, column, RTREE_DEFINITION))


def fix_empty_flags(conn: sqlite3.Connection, table: str) -> None:
    """Rewrite the empty geometries of ``table`` that sitewatch before schema 3 flagged as
    extended (0x21) rather than empty (0x11)."""
    rows = conn.execute(f'SELECT fid, geom FROM "{table}" WHERE geom NOT NULL').fetchall()
    for fid, blob in rows:
        if blob[3] == 0b0010_0001:
            conn.execute(f'UPDATE "{table}" SET geom = ? WHERE fid = ?',
                         (bytes(blob[:3]) + bytes([EMPTY_FLAG | 1]) + bytes(blob[4:]), fid))


def register_functions(conn: sqlite3.Connection) -> None:
    """Define on ``conn`` the SQL functions of GeoPackage blobs that the R-tree triggers call
    (``ST_IsEmpty``, ``ST_MinX``, ``ST_MaxX``, ``ST_MinY``, ``ST_MaxY``), as GDAL does on its
    own connections; NULL for a NULL or empty geometry."""
    for name, index in (("ST_MinX", 0), ("ST_MinY", 1), ("ST_MaxX", 2), ("ST_MaxY", 3)):
        conn.create_function(name, 1, lambda blob, i=index: _bounds(blob)[i],
                             deterministic=True)
    conn.create_function("ST_IsEmpty", 1, _is_empty, deterministic=True)


def _is_empty(blob: bytes | None) -> int | None:
    if blob is None:
        return None
    return int(bool(blob[3] & EMPTY_FLAG))


def _bounds(blob: bytes | None) -> tuple[float | None, ...]:
    """(min x, min y, max x, max y) of a GeoPackage blob: its envelope if it has one."""
    if blob is None or blob[3] & EMPTY_FLAG:
        return (None,) * 4
    if (blob[3] >> 1) & 0b111:
        min_x, max_x, min_y, max_y = struct.unpack("<4d" if blob[3] & 1 else ">4d", blob[8:40])
        return min_x, min_y, max_x, max_y
    return tuple(decode(blob).bounds)


def touch_layer(conn: sqlite3.Connection, table: str) -> None:
    """Update ``gpkg_contents.last_change`` and the layer extent after a write."""
    extent = None
    row = conn.execute(
        "SELECT data_type FROM gpkg_contents WHERE table_name = ?", (table,)
    ).fetchone()
    if row and row[0] == "features":
        geoms = [decode(blob) for (blob,) in conn.execute(f'SELECT geom FROM "{table}"')]
        geoms = [g for g in geoms if g is not None and not g.is_empty]
        if geoms:
            extent = shapely.total_bounds(geoms).tolist()
    conn.execute(
        "UPDATE gpkg_contents SET last_change = ?, min_x = ?, min_y = ?, max_x = ?, max_y = ?"
        " WHERE table_name = ?",
        (now_iso(), *(extent or (None,) * 4), table),
    )


def encode(geometry: BaseGeometry | None) -> bytes | None:
    """Encode a shapely geometry (lon/lat, EPSG:4326) as a GeoPackage geometry blob."""
    if geometry is None:
        return None
    if geometry.is_empty:
        flags = EMPTY_FLAG | 0b0000_0001  # empty, no envelope, little endian
        return b"GP" + struct.pack("<BBi", 0, flags, SRS_ID) + shapely.to_wkb(
            geometry, byte_order=1, flavor="iso"
        )
    flags = 0b0000_0011  # xy envelope, little endian
    min_x, min_y, max_x, max_y = geometry.bounds
    header = b"GP" + struct.pack("<BBi4d", 0, flags, SRS_ID, min_x, max_x, min_y, max_y)
    return header + shapely.to_wkb(geometry, byte_order=1, flavor="iso")


def decode(blob: bytes | None) -> BaseGeometry | None:
    """Decode a GeoPackage geometry blob into a shapely geometry."""
    if blob is None:
        return None
    if blob[:2] != b"GP":
        raise ValueError("not a GeoPackage geometry blob")
    flags = blob[3]
    envelope = _ENVELOPE_BYTES[(flags >> 1) & 0b111]
    return shapely.from_wkb(bytes(blob[8 + envelope:]))
