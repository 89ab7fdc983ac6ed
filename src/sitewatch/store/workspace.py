"""A workspace: a directory holding one GeoPackage of records, with raster files beside it.

Layout::

    W/
      sitewatch.gpkg   scenes, AOIs, places, borders, runs, sites, observations, events,
                       assessments, notes (see :mod:`sitewatch.store.schema`)
      rasters/         stacks and change maps written by later stages (COG / Zarr)

Every write happens inside :meth:`Workspace.transaction`: either all of it lands or none of it
does, including when the process is killed half way (SQLite's rollback journal restores the file
on the next open). The GeoPackage itself is created in a temporary file and renamed into place,
so a half-created workspace never exists. A full disk ends a write with a one-line
:class:`~sitewatch.errors.SitewatchError` naming the workspace, the store as it was before.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sitewatch.errors import SitewatchError, is_disk_full
from sitewatch.store import geopackage
from sitewatch.store.schema import (
    ADDED_LAYERS,
    LAYERS,
    LAYERS_BY_NAME,
    REBUILT_LAYERS,
    RETYPED_LAYERS,
    SCHEMA_VERSION,
    SPATIAL_INDEX_SINCE,
)
from sitewatch.version import __version__

#: Name of the GeoPackage inside a workspace directory.
GPKG_NAME = "sitewatch.gpkg"
#: Columns holding JSON text, decoded on read and encoded on write.
JSON_COLUMNS = frozenset({"transform", "bands", "properties", "parameters", "inputs"})


class Workspace:
    """An open workspace. Use :meth:`open`; close it (or use it as a context manager) after."""

    def __init__(self, root: Path, connection: sqlite3.Connection):
        self.root = root
        self._conn = connection

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = False) -> Workspace:
        """Open the workspace directory ``path``; with ``create``, make it if it is missing.

        Raises
        ------
        SitewatchError
            If ``path`` is not a workspace (and ``create`` is false), its GeoPackage is not a
            sitewatch workspace or is corrupt, or it was written by a newer schema.
        """
        root = Path(path).expanduser().resolve()
        gpkg = root / GPKG_NAME
        if not gpkg.exists():
            if not create:
                raise SitewatchError(
                    f"not a sitewatch workspace (no {GPKG_NAME}); run 'sitewatch ingest' with "
                    "--workspace pointing here to create one",
                    root,
                )
            if root.exists() and not root.is_dir():
                raise SitewatchError(
                    "exists and is not a directory; choose another workspace", root
                )
            with _disk_full_as_error(root):
                _create_gpkg(gpkg)
        conn = _connect(gpkg)
        try:
            _check_schema(conn, gpkg)
        except BaseException:
            conn.close()
            raise
        (root / "rasters").mkdir(exist_ok=True)
        return cls(root, conn)

    @classmethod
    @contextlib.contextmanager
    def using(cls, workspace: str | os.PathLike | Workspace, *, create: bool = False
              ) -> Iterator[Workspace]:
        """``workspace`` itself when it is open already (the caller closes it), else the
        workspace at that path, opened (see :meth:`open`) and closed again on leaving."""
        if isinstance(workspace, Workspace):
            yield workspace
            return
        with cls.open(workspace, create=create) as ws:
            yield ws

    @property
    def gpkg_path(self) -> Path:
        return self.root / GPKG_NAME

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All writes inside the ``with`` block land together, or not at all on any error.

        The error that ended the block is the one raised (a full disk as a
        :class:`SitewatchError` naming the workspace).
        """
        if self._conn.in_transaction:
            raise RuntimeError("transactions do not nest")
        with _disk_full_as_error(self.root):
            self._conn.execute("BEGIN IMMEDIATE")
            txn = Transaction(self._conn)
            try:
                yield txn
                for layer in sorted(txn.touched):
                    geopackage.touch_layer(self._conn, layer)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite ends it itself on some errors (disk full)
                    self._conn.execute("ROLLBACK")
                raise

    # -- reading ---------------------------------------------------------------------------
    def rows(
        self, layer: str, where: str = "", params: tuple | Mapping = (), order_by: str = "fid"
    ) -> list[dict[str, Any]]:
        """Records of ``layer`` as dicts (``geom`` as a shapely geometry, JSON decoded).

        ``where`` is an SQL condition with ``?`` placeholders bound to ``params``.
        """
        _layer(layer)
        sql = f'SELECT * FROM "{layer}"'
        if where:
            sql += f" WHERE {where}"
        sql += f" ORDER BY {order_by}"
        cursor = self._conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [_decode_row(dict(zip(names, values, strict=True))) for values in cursor]

    def count(self, layer: str) -> int:
        _layer(layer)
        return self._conn.execute(f'SELECT count(*) FROM "{layer}"').fetchone()[0]


class Transaction:
    """Write access handed out by :meth:`Workspace.transaction`."""

    def __init__(self, connection: sqlite3.Connection):
        self._conn = connection
        self.touched: set[str] = set()

    def insert(self, layer: str, record: Mapping[str, Any]) -> int:
        """Insert one record (a dict of column values, ``geom`` a shapely geometry); returns fid."""
        columns, values = self._encode(layer, record)
        marks = ", ".join("?" for _ in columns)
        cursor = self._conn.execute(
            f'INSERT INTO "{layer}" ({", ".join(columns)}) VALUES ({marks})', values
        )
        self.touched.add(layer)
        return cursor.lastrowid

    def update(self, layer: str, fid: int, record: Mapping[str, Any]) -> None:
        """Replace the given columns of the record ``fid``."""
        columns, values = self._encode(layer, record)
        assignments = ", ".join(f"{c} = ?" for c in columns)
        self._conn.execute(f'UPDATE "{layer}" SET {assignments} WHERE fid = ?', (*values, fid))
        self.touched.add(layer)

    def delete(self, layer: str, where: str, params: tuple | Mapping = ()) -> int:
        """Delete the records matching ``where``; returns how many went."""
        _layer(layer)
        cursor = self._conn.execute(f'DELETE FROM "{layer}" WHERE {where}', params)
        self.touched.add(layer)
        return cursor.rowcount

    def _encode(self, layer: str, record: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
        allowed = set(_layer(layer).column_names) | {"geom"}
        unknown = set(record) - allowed
        if unknown:
            raise KeyError(f"layer {layer!r} has no column(s) {sorted(unknown)}")
        columns, values = [], []
        for name, value in record.items():
            if name == "geom":
                value = geopackage.encode(value)
            elif name in JSON_COLUMNS and value is not None:
                value = json.dumps(value, sort_keys=True)
            columns.append(name)
            values.append(value)
        return columns, values


@contextlib.contextmanager
def _disk_full_as_error(root: Path) -> Iterator[None]:
    """Raise running out of space inside the block (ENOSPC, a quota, SQLite's "database or disk
    is full") as a one-line :class:`SitewatchError` naming the workspace ``root``."""
    try:
        yield
    except (OSError, sqlite3.OperationalError) as exc:
        if not is_disk_full(exc):
            raise
        raise SitewatchError(f"out of disk space while writing ({exc}); free some space and run "
                             "the command again (the failed write left the workspace as it was)",
                             root) from exc


def _layer(name: str):
    try:
        return LAYERS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"no layer named {name!r}") from None


def _decode_row(row: dict[str, Any]) -> dict[str, Any]:
    for name, value in row.items():
        if name == "geom":
            row[name] = geopackage.decode(value)
        elif name in JSON_COLUMNS and value is not None:
            row[name] = json.loads(value)
    return row


def _connect(gpkg: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(gpkg, isolation_level=None, timeout=30)
        geopackage.register_functions(conn)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise SitewatchError(
            f"cannot read the workspace database ({exc}); restore it from a backup", gpkg
        ) from exc
    return conn


def _check_schema(conn: sqlite3.Connection, gpkg: Path) -> None:
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        row = conn.execute(
            "SELECT value FROM sitewatch_meta WHERE key = 'schema_version'"
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise SitewatchError(
            f"not a sitewatch workspace GeoPackage ({exc}); point --workspace at another "
            "directory",
            gpkg,
        ) from exc
    if app_id != geopackage.APPLICATION_ID or row is None:
        raise SitewatchError(
            "not a sitewatch workspace GeoPackage; point --workspace at another directory", gpkg
        )
    version = int(row[0])
    if version > SCHEMA_VERSION:
        raise SitewatchError(
            f"workspace was written by a newer sitewatch (schema {version}, this version reads "
            f"up to {SCHEMA_VERSION}); upgrade sitewatch to open it",
            gpkg,
        )
    if version < SCHEMA_VERSION:
        _migrate(conn, gpkg, version)


def _migrate(conn: sqlite3.Connection, gpkg: Path, version: int) -> None:
    """Bring a workspace of schema ``version`` to :data:`SCHEMA_VERSION` in one transaction:
    the layers added since are created empty, widened geometry types recorded, layers whose
    column types changed rebuilt with every row, empty geometries given the right flags and
    every feature layer its spatial index; nothing stored is lost."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for name in ADDED_LAYERS.get(step, ()):
                layer = LAYERS_BY_NAME[name]
                conn.execute(layer.ddl())
                geopackage.register_layer(conn, layer.name, layer.description,
                                          layer.geometry_type)
            for name, geometry_type in RETYPED_LAYERS.get(step, {}).items():
                conn.execute("UPDATE gpkg_geometry_columns SET geometry_type_name = ? "
                             "WHERE table_name = ?", (geometry_type, name))
            for name in REBUILT_LAYERS.get(step, ()):
                _rebuild(conn, LAYERS_BY_NAME[name])
            if step == SPATIAL_INDEX_SINCE:
                conn.execute(geopackage.EXTENSIONS_DDL)
                for layer in LAYERS:
                    if layer.geometry_type is not None:
                        geopackage.fix_empty_flags(conn, layer.name)
                        geopackage.add_spatial_index(conn, layer.name)
        conn.execute("UPDATE sitewatch_meta SET value = ? WHERE key = 'schema_version'",
                     (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise SitewatchError(f"cannot migrate the workspace from schema {version} to "
                             f"{SCHEMA_VERSION} ({exc}); is it writable?", gpkg) from exc


def _rebuild(conn: sqlite3.Connection, layer) -> None:
    """Recreate ``layer``'s table from its current declaration, with every row (fid kept)."""
    columns = ["fid", *(["geom"] if layer.geometry_type else []), *layer.column_names]
    names = ", ".join(f'"{c}"' for c in columns)
    conn.execute(f'ALTER TABLE "{layer.name}" RENAME TO "{layer.name}_before_rebuild"')
    conn.execute(layer.ddl())
    conn.execute(f'INSERT INTO "{layer.name}" ({names}) SELECT {names} '
                 f'FROM "{layer.name}_before_rebuild"')
    conn.execute(f'DROP TABLE "{layer.name}_before_rebuild"')


def _create_gpkg(gpkg: Path) -> None:
    """Write a complete, empty workspace GeoPackage at ``gpkg`` atomically; if that fails (a
    full disk), the folders made for it are removed again."""
    made = [folder for folder in (gpkg.parent, *gpkg.parent.parents) if not folder.exists()]
    try:
        gpkg.parent.mkdir(parents=True, exist_ok=True)
        _write_empty_gpkg(gpkg)
    except BaseException:
        for folder in made:  # deepest first; a folder something else wrote into stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _write_empty_gpkg(gpkg: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=".sitewatch-", suffix=".gpkg.tmp", dir=gpkg.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        geopackage.register_functions(conn)
        try:
            conn.execute("BEGIN")
            geopackage.initialise(conn)
            conn.execute("CREATE TABLE sitewatch_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.executemany(
                "INSERT INTO sitewatch_meta VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("created_by", f"sitewatch {__version__}"),
                    ("created_at", geopackage.now_iso()),
                ],
            )
            for layer in LAYERS:
                conn.execute(layer.ddl())
                geopackage.register_layer(conn, layer.name, layer.description,
                                          layer.geometry_type)
                if layer.geometry_type is not None:
                    geopackage.add_spatial_index(conn, layer.name)
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.replace(tmp, gpkg)
    finally:
        tmp.unlink(missing_ok=True)
