"""The parts of the OGC GeoPackage 1.3 encoding that sitewatch writes itself.

sitewatch keeps its workspace in one GeoPackage (an SQLite file, OGC 12-128r18) so that QGIS,
``ogrinfo`` and GeoPandas open its layers directly. Writing through Python's ``sqlite3`` (rather
than through OGR) keeps every write inside one SQLite transaction that sitewatch controls, so this
module provides the two things that needs: the required metadata tables and the geometry blob
format (a small header followed by ISO WKB, spec section 2.1.3).

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


def initialise(conn: sqlite3.Connection) -> None:
    """Create the GeoPackage metadata tables in an empty SQLite database."""
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {USER_VERSION}")
    # Statement by statement: executescript() would commit the caller's open transaction.
    for statement in _METADATA_DDL.split(";"):
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
        flags = 0b0010_0001  # empty, no envelope, little endian
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
