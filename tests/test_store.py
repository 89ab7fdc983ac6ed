import os
import sqlite3
import subprocess
import sys
import textwrap

import pyogrio
import pytest
import shapely

from conftest import dump_workspace
from sitewatch import SitewatchError, Workspace
from sitewatch.store import LAYERS, SCHEMA_VERSION, geopackage


def test_new_workspace_is_a_geopackage_that_ogr_reads(tmp_path):
    with Workspace.open(tmp_path / "ws", create=True) as ws:
        with ws.transaction() as txn:
            txn.insert("places", {"geom": shapely.Point(40.97, 34.39), "name": "crossing",
                                  "kind": "border crossing"})
    gpkg = tmp_path / "ws" / "sitewatch.gpkg"
    layers = dict(pyogrio.list_layers(gpkg))
    assert set(layers) == {layer.name for layer in LAYERS}
    info = pyogrio.read_info(gpkg, layer="places")
    assert info["crs"] == "EPSG:4326"
    assert info["features"] == 1
    assert info["total_bounds"] == pytest.approx((40.97, 34.39, 40.97, 34.39))
    assert (tmp_path / "ws" / "rasters").is_dir()


def test_geometry_blob_round_trip():
    polygon = shapely.Polygon([(40.9, 34.3), (41.0, 34.3), (41.0, 34.4), (40.9, 34.3)])
    for geometry in (polygon, shapely.Point(1, 2), shapely.LineString([(0, 0), (1, 1)])):
        assert geopackage.decode(geopackage.encode(geometry)).equals(geometry)
    assert geopackage.decode(geopackage.encode(shapely.Polygon())).is_empty


def test_failed_transaction_leaves_store_unchanged(tmp_path):
    ws = Workspace.open(tmp_path, create=True)
    with ws.transaction() as txn:
        txn.insert("places", {"geom": shapely.Point(0, 0), "name": "a", "kind": "town"})
    before = dump_workspace(tmp_path)
    with pytest.raises(RuntimeError), ws.transaction() as txn:
        txn.insert("places", {"geom": shapely.Point(1, 1), "name": "b", "kind": "town"})
        raise RuntimeError("something failed after the first write")
    ws.close()
    assert dump_workspace(tmp_path) == before


def test_process_killed_mid_write_leaves_store_unchanged(tmp_path):
    Workspace.open(tmp_path, create=True).close()
    before = dump_workspace(tmp_path)
    script = textwrap.dedent(f"""
        import os, shapely
        from sitewatch.store import Workspace
        ws = Workspace.open({str(tmp_path)!r})
        with ws.transaction() as txn:
            for i in range(500):
                txn.insert("places", {{"geom": shapely.Point(i, 0), "name": f"p{{i}}",
                                      "kind": "town"}})
            os._exit(9)  # killed half way: no commit, no rollback
    """)
    result = subprocess.run([sys.executable, "-c", script], check=False)
    assert result.returncode == 9
    assert dump_workspace(tmp_path) == before  # the rollback journal is replayed on open
    with Workspace.open(tmp_path) as ws:
        assert ws.count("places") == 0


def test_newer_schema_is_refused_and_untouched(tmp_path):
    Workspace.open(tmp_path, create=True).close()
    conn = sqlite3.connect(tmp_path / "sitewatch.gpkg")
    conn.execute("UPDATE sitewatch_meta SET value = ? WHERE key = 'schema_version'",
                 (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    before = dump_workspace(tmp_path)
    with pytest.raises(SitewatchError, match="newer sitewatch"):
        Workspace.open(tmp_path)
    assert dump_workspace(tmp_path) == before


def test_corrupt_or_foreign_database_is_a_clear_error(tmp_path):
    (tmp_path / "sitewatch.gpkg").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SitewatchError, match="sitewatch.gpkg"):
        Workspace.open(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    sqlite3.connect(other / "sitewatch.gpkg").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(SitewatchError, match="not a sitewatch workspace"):
        Workspace.open(other)


def test_missing_workspace_is_not_created_without_asking(tmp_path):
    with pytest.raises(SitewatchError, match="not a sitewatch workspace"):
        Workspace.open(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_unknown_column_is_rejected_before_writing(tmp_path):
    with Workspace.open(tmp_path, create=True) as ws:
        with pytest.raises(KeyError), ws.transaction() as txn:
            txn.insert("places", {"name": "x", "kind": "town", "colour": "red"})
        assert ws.count("places") == 0
    assert os.path.exists(tmp_path / "sitewatch.gpkg")


def test_full_disk_is_one_line_naming_the_workspace_with_the_store_unchanged(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    before = dump_workspace(tmp_path / "ws")
    pages = ws._conn.execute("PRAGMA page_count").fetchone()[0]
    ws._conn.execute(f"PRAGMA max_page_count = {pages}")  # as on a full disk: no page to add
    with pytest.raises(SitewatchError, match="disk is full") as info, ws.transaction() as txn:
        for i in range(100):
            txn.insert("places", {"geom": shapely.Point(i, 0), "name": f"p{i}",
                                  "kind": "town", "notes": "x" * 4000})
    assert str(info.value).startswith(f"{ws.root}: ") and "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)  # the first error, kept
    assert dump_workspace(tmp_path / "ws") == before
    ws._conn.execute(f"PRAGMA max_page_count = {10 * pages}")  # space again: usable as before
    with ws.transaction() as txn:
        txn.insert("places", {"geom": shapely.Point(0, 0), "name": "after", "kind": "town"})
    assert ws.count("places") == 1
    ws.close()


def test_a_workspace_that_cannot_be_created_leaves_no_empty_folders(tmp_path, monkeypatch):
    from sitewatch.store import geopackage

    def full(conn):
        error = sqlite3.OperationalError("database or disk is full")
        error.sqlite_errorcode = sqlite3.SQLITE_FULL
        raise error

    monkeypatch.setattr(geopackage, "initialise", full)
    with pytest.raises(SitewatchError, match="disk is full"):
        Workspace.open(tmp_path / "new" / "ws", create=True)
    assert list(tmp_path.iterdir()) == []


def _as_schema_2(gpkg) -> None:
    """Turn a new workspace GeoPackage into what sitewatch wrote at schema 2: no spatial index,
    no ``gpkg_extensions``, dates declared TEXT, sites and observations declared POLYGON, and
    empty geometries flagged 0x21."""
    conn = sqlite3.connect(gpkg)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"
                                ).fetchall():
        conn.execute(f'DROP TRIGGER "{name}"')
    for layer in LAYERS:
        if layer.geometry_type is not None:
            conn.execute(f'DROP TABLE "rtree_{layer.name}_geom"')
    conn.execute("DROP TABLE gpkg_extensions")
    for layer in LAYERS:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?",
                              (layer.name,)).fetchone()
        conn.execute(f'ALTER TABLE "{layer.name}" RENAME TO old')
        conn.execute(sql.replace(" DATETIME", " TEXT").replace(" DATE", " TEXT"))
        conn.execute(f'INSERT INTO "{layer.name}" SELECT * FROM old')
        conn.execute("DROP TABLE old")
    conn.execute("UPDATE gpkg_geometry_columns SET geometry_type_name = 'POLYGON' "
                 "WHERE table_name IN ('sites', 'observations')")
    conn.execute("UPDATE aois SET geom = ? WHERE name = 'empty'",
                 (b"GP\x00\x21" + geopackage.encode(shapely.Polygon())[4:],))
    conn.execute("UPDATE sitewatch_meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()


def test_a_schema_2_workspace_is_migrated_without_losing_records(tmp_path):
    """Schema 3 declared the dates DATE / DATETIME, gave every feature layer an R-tree index,
    fixed the empty-geometry flag and widened the sites' and observations' geometry type."""
    with Workspace.open(tmp_path / "ws", create=True) as ws:
        with ws.transaction() as txn:
            txn.insert("notes", {"subject": "s", "text": "kept",
                                 "created_at": "2020-01-01T10:00:00.000Z"})
            for name, geom in (("a", shapely.box(40.0, 34.0, 40.1, 34.1)),
                               ("empty", shapely.Polygon())):
                txn.insert("aois", {"geom": geom, "name": name,
                                    "created_at": "2020-01-01T10:00:00.000Z"})
    gpkg = tmp_path / "ws" / "sitewatch.gpkg"
    _as_schema_2(gpkg)
    with Workspace.open(tmp_path / "ws") as ws:
        assert [row["text"] for row in ws.rows("notes")] == ["kept"]
        assert [row["name"] for row in ws.rows("aois")] == ["a", "empty"]
        with ws.transaction() as txn:  # the triggers work on a migrated workspace
            txn.insert("aois", {"geom": shapely.box(41.0, 35.0, 41.1, 35.1), "name": "b",
                                "created_at": "2020-01-02T10:00:00.000Z"})
    conn = sqlite3.connect(gpkg)
    version = conn.execute("SELECT value FROM sitewatch_meta WHERE key = 'schema_version'")
    assert version.fetchone()[0] == str(SCHEMA_VERSION)
    types = dict(conn.execute("SELECT table_name, geometry_type_name FROM "
                              "gpkg_geometry_columns").fetchall())
    assert types["scenes"] == types["sites"] == types["observations"] == "GEOMETRY"
    declared = {row[1]: row[2] for row in conn.execute("PRAGMA table_info(notes)")}
    assert declared["created_at"] == "DATETIME"
    assert conn.execute("SELECT count(*) FROM rtree_aois_geom").fetchone()[0] == 2
    (blob,) = conn.execute("SELECT geom FROM aois WHERE name = 'empty'").fetchone()
    assert blob[3] == 0x11
    conn.close()
    info = pyogrio.read_info(gpkg, layer="aois")
    assert info["capabilities"]["fast_spatial_filter"]
    dtypes = dict(zip(info["fields"], info["dtypes"], strict=True))
    assert dtypes["created_at"].startswith("datetime64")


def test_every_layer_has_a_spatial_index_and_typed_dates_that_gdal_uses(tmp_path):
    """GeoPackage R-tree extension (annex F.3) on every feature layer, kept current by its
    triggers; DATE / DATETIME columns read as dates."""
    with Workspace.open(tmp_path / "ws", create=True) as ws:
        with ws.transaction() as txn:
            for i, lon in enumerate((40.0, 41.0, 42.0)):
                txn.insert("places", {"geom": shapely.Point(lon, 34.0), "name": f"p{i}",
                                      "kind": "town"})
            parts = [shapely.box(40.0, 34.0, 40.01, 34.01), shapely.box(40.02, 34.0, 40.03, 34.01)]
            txn.insert("sites", {"geom": shapely.MultiPolygon(parts), "site_id": "s-1",
                                 "first_seen": "2019-01-15"})
        with ws.transaction() as txn:
            txn.delete("places", "name = ?", ("p1",))
    gpkg = tmp_path / "ws" / "sitewatch.gpkg"
    for layer in LAYERS:
        if layer.geometry_type is not None:
            info = pyogrio.read_info(gpkg, layer=layer.name)
            assert info["capabilities"]["fast_spatial_filter"], layer.name
    conn = sqlite3.connect(gpkg)
    indexed = conn.execute("SELECT id FROM rtree_places_geom ORDER BY id").fetchall()
    assert indexed == [(1,), (3,)]
    conn.close()
    names = pyogrio.raw.read(gpkg, layer="places", bbox=(41.5, 33.0, 42.5, 35.0))[3][0]
    assert list(names) == ["p2"]
    info = pyogrio.read_info(gpkg, layer="sites")
    assert dict(zip(info["fields"], info["dtypes"], strict=True))["first_seen"] == "datetime64[D]"
