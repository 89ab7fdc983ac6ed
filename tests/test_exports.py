"""Exports to GeoJSON, GeoPackage, KML/KMZ and CSV, on a small hand-made workspace."""

from __future__ import annotations

import csv
import html
import json
import math
import re
import warnings
import zipfile
from pathlib import Path

import pyogrio
import pyogrio.raw
import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon, box

from sitewatch.errors import SitewatchError
from sitewatch.report import exports
from sitewatch.report.exports import export, export_all, phases_text
from sitewatch.store import Workspace

# Site A: a rectangle near Al-Qaim, observed on four dates (the first without a footprint).
FOOTPRINT_A = box(40.9403, 34.3885, 40.9431, 34.3915)
# Site B: given clockwise and with a hole, to check ring orientation on export.
FOOTPRINT_B = Polygon([(40.95, 34.40), (40.95, 34.402), (40.953, 34.402), (40.953, 34.40)],
                      [[(40.951, 34.4005), (40.952, 34.4005), (40.952, 34.4015),
                        (40.951, 34.4015)]])
PHASES_A = [{"phase": "cleared", "first_observed": "2019-05-15", "after": "2019-04-15"},
            {"phase": "under_construction", "first_observed": "2019-06-15",
             "after": "2019-05-15"}]
EVENT_URL = "https://example.org/report?id=7&lang=en"


def _site_a() -> dict:
    place = {"name": "Al-Qaim border crossing", "kind": "border crossing",
             "distance_m": 2600.2, "bearing_deg": 270.04, "direction": "W",
             "phrase": "2.6 km W of Al-Qaim border crossing"}
    border = {"name": "Iraq-Syria border", "side": "Syria", "distance_m": 1300.0,
              "crosses": False, "phrase": "on the Syria side of the Iraq-Syria border, 1.3 km "
              "from it"}
    return {
        "geom": FOOTPRINT_A, "site_id": "aoi-a-001", "aoi": "aoi-a",
        "change_type": "new_construction", "status": "under_construction",
        "first_seen": "2019-05-15", "last_seen_unchanged": "2019-04-15", "area_m2": 86000.5,
        "length_m": 333.25, "width_m": 258.0, "orientation_deg": 0.5, "centroid_lat": 34.39,
        "centroid_lon": 40.9417, "mgrs": "37S FU 7850 0711", "run_id": "sites-1",
        "properties": {"phases": PHASES_A,
                       "measurements": {"rectangularity": 0.98, "places": [place],
                                        "border": border},
                       "location": f"{place['phrase']}, {border['phrase']}"},
    }


def _site_b() -> dict:
    return {
        "geom": FOOTPRINT_B, "site_id": "aoi-b-001", "aoi": "aoi-b",
        "change_type": "destruction", "status": "destroyed", "first_seen": "2019-06-15",
        "last_seen_unchanged": "2019-05-15", "area_m2": 50000.0, "length_m": 275.0,
        "width_m": 222.0, "orientation_deg": 90.0, "centroid_lat": 34.401,
        "centroid_lon": 40.9515, "mgrs": "37S FU 8800 0820", "run_id": "sites-1",
        "properties": {"phases": [{"phase": "destroyed", "first_observed": "2019-06-15",
                                   "after": None}],
                       "measurements": {"rectangularity": 0.83, "places": [], "border": None},
                       "location": "at MGRS 37S FU 8800 0820"},
    }


def _observations(site_id: str, footprint: Polygon, dates: list[str]) -> list[dict]:
    return [{"geom": footprint.buffer(-0.0001 * (len(dates) - i)), "site_id": site_id,
             "observed": date, "phase": "cleared", "area_m2": 1000.0 * (i + 1),
             "length_m": 40.0 + i, "width_m": 20.0, "score": 0.5}
            for i, date in enumerate(dates)]


def _new_workspace(root: Path, *, filled: bool) -> Path:
    with Workspace.open(root, create=True) as ws, ws.transaction() as txn:
        if not filled:
            return root
        txn.insert("aois", {"geom": box(40.94, 34.38, 40.96, 34.41), "name": "aoi-b",
                            "created_at": "2019-01-01T00:00:00Z"})
        txn.insert("sites", _site_a())
        txn.insert("sites", _site_b())
        txn.insert("observations", {"geom": None, "site_id": "aoi-a-001",
                                    "observed": "2019-04-15", "area_m2": 0.0})
        for row in [*_observations("aoi-a-001", FOOTPRINT_A,
                                   ["2019-05-15", "2019-06-15", "2019-07-15"]),
                    *_observations("aoi-b-001", FOOTPRINT_B,
                                   ["2019-06-15", "2019-07-15", "2019-08-15"])]:
            txn.insert("observations", row)
        txn.insert("places", {"geom": Point(40.97, 34.39), "name": "Al-Qaim border crossing",
                              "kind": "border crossing"})
        txn.insert("borders", {"geom": LineString([(40.98, 34.35), (40.98, 34.45)]),
                               "name": "Iraq-Syria border", "kind": "border",
                               "left_name": "Syria", "right_name": "Iraq"})
        txn.insert("events", {"geom": Point(40.9417, 34.39), "event_id": "ev-1",
                              "occurred": "2019-05-20", "kind": "strike",
                              "description": "Reported strike on the compound",
                              "source": "press", "url": EVENT_URL, "site_id": "aoi-a-001",
                              "created_at": "2019-06-01T00:00:00Z"})
        txn.insert("assessments", {"assessment_id": "as-1", "site_id": "aoi-a-001",
                                   "judgement": "military staging area", "confidence":
                                   "probably", "probability_low": 0.55,
                                   "probability_high": 0.8, "author": "analyst1",
                                   "assessed": "2019-08-01"})
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return _new_workspace(tmp_path_factory.mktemp("exports") / "ws", filled=True)


@pytest.fixture(scope="module")
def exported(workspace, tmp_path_factory) -> dict[str, Path]:
    return export_all(workspace, tmp_path_factory.mktemp("out"))


def _parse_kml(data: bytes):
    with warnings.catch_warnings():  # fastkml warns at import that lxml is missing
        warnings.simplefilter("ignore", UserWarning)
        from fastkml import kml
    return kml.KML.from_string(data)


def _read_layer(path: Path, layer: str) -> dict[str, list]:
    meta, _, _, columns = pyogrio.raw.read(path, layer=layer)
    return {name: list(values) for name, values in zip(meta["fields"], columns, strict=True)}


def test_export_all_writes_every_format(exported):
    assert {kind: path.name for kind, path in exported.items()} == exports.EXPORT_ALL_NAMES
    assert all(path.is_file() and path.stat().st_size > 0 for path in exported.values())
    assert sorted(p.name for p in exported["kml"].parent.iterdir()) == sorted(
        exports.EXPORT_ALL_NAMES.values())  # no temporary leftovers


def test_geopackage_layers_crs_counts_and_attributes(exported):
    path = exported["gpkg"]
    layers = dict(pyogrio.list_layers(path))
    assert layers == {"sites": "MultiPolygon", "observations": "MultiPolygon",
                      "places": "Point", "borders": "LineString", "events": "Point",
                      "assessments": None, "damage": None}
    counts = {"sites": 2, "observations": 6, "places": 1, "borders": 1, "events": 1,
              "assessments": 1, "damage": 0}
    for layer, count in counts.items():
        info = pyogrio.read_info(path, layer=layer)
        assert info["features"] == count, layer
        assert info["crs"] == (None if layer in ("assessments", "damage") else "EPSG:4326"), layer

    sites = _read_layer(path, "sites")
    assert list(sites) == [name for name, _ in exports.SITE_FIELDS]
    assert sites["site_id"] == ["aoi-a-001", "aoi-b-001"]
    assert sites["length_m"] == [333.25, 275.0]
    assert sites["origin"] == ["automatic", "automatic"]
    assert sites["phases"] == ["cleared 2019-05-15 (after 2019-04-15); under_construction "
                               "2019-06-15 (after 2019-05-15)", "destroyed 2019-06-15"]
    assert sites["nearest_place"] == ["Al-Qaim border crossing", None]
    assert sites["place_distance_m"][0] == 2600.2
    assert sites["rectangularity"] == [0.98, 0.83]
    assert sites["n_observations"] == [4, 3]
    assert sites["crosses_border"][0] == 0  # false, and null for the site without a border
    assert math.isnan(sites["crosses_border"][1])
    assert pyogrio.read_info(path, layer="sites")["ogr_subtypes"][
        list(sites).index("crosses_border")] == "OFSTBoolean"

    _, _, geometry, _ = pyogrio.raw.read(path, layer="sites")
    assert shapely.from_wkb(geometry[0]).equals(FOOTPRINT_A)
    observations = _read_layer(path, "observations")
    observed = [str(day) for day in observations["observed"]]
    assert "2019-04-15" not in observed  # no footprint: left out
    assert observed[:3] == ["2019-05-15", "2019-06-15", "2019-07-15"]
    info = pyogrio.read_info(path, layer="observations")  # a date field QGIS reads as one
    assert dict(zip(info["fields"], info["dtypes"], strict=True))["observed"] == "datetime64[D]"
    for layer in ("sites", "observations", "places", "borders", "events"):
        assert pyogrio.read_info(path, layer=layer)["capabilities"]["fast_spatial_filter"]
    assessments = _read_layer(path, "assessments")
    assert assessments["origin"] == ["analyst"]
    assert assessments["probability_low"] == [0.55]
    assert assessments["judgement"] == ["military staging area"]
    assert _read_layer(path, "events")["origin"] == ["analyst"]


def test_kml_observations_step_through_time(exported):
    document = _parse_kml(exported["kml"].read_bytes()).features[0]
    folders = {folder.name: folder for folder in document.features}
    assert list(folders) == ["Sites", "Reference places", "Borders", "Collateral events"]

    site_folder = folders["Sites"].features[0]
    assert site_folder.name == "aoi-a-001"
    site, *observations = site_folder.features
    assert site.name == "aoi-a-001" and site.times is None
    assert "333 x 258 m" in site.description and "37S FU 7850 0711" in site.description
    data = {d.name: d.value for d in site.extended_data.elements}
    assert data["length_m"] == "333.25" and data["crosses_border"] == "false"
    spans = [(str(o.times.begin.dt), o.times.end and str(o.times.end.dt)) for o in observations]
    assert spans == [("2019-05-15", "2019-06-15"), ("2019-06-15", "2019-07-15"),
                     ("2019-07-15", None)]
    assert all(o.geometry.geom_type == "Polygon" for o in observations)
    assert "50%" in observations[0].description  # activity score 0.5

    event = folders["Collateral events"].features[0]
    assert str(event.times.timestamp.dt) == "2019-05-20"
    assert f'href="{html.escape(EVENT_URL)}"' in event.description  # HTML-escaped link
    assert "press" in event.description
    assert folders["Reference places"].features[0].geometry.geom_type == "Point"
    assert folders["Borders"].features[0].geometry.geom_type == "LineString"


def test_kml_styles_and_coordinates(exported):
    text = exported["kml"].read_text(encoding="utf-8")
    assert 'xmlns="http://www.opengis.net/kml/2.2"' in text
    outlines = re.findall(r'<Style id="change-[^"]+">.*?<LineStyle>\s*<color>(\w+)</color>',
                          text, flags=re.S)
    assert len(outlines) == len(exports.CHANGE_TYPE_COLOURS) == len(set(outlines))
    coordinates = re.findall(r"(-?\d+\.\d+),(-?\d+\.\d+)", text)
    assert coordinates and all(len(x.split(".")[1]) == 7 and len(y.split(".")[1]) == 7
                               for x, y in coordinates)
    assert "<altitudeMode>clampToGround</altitudeMode>" in text


def test_kmz_holds_the_kml_as_doc_kml(exported):
    with zipfile.ZipFile(exported["kmz"]) as archive:
        assert archive.namelist() == ["doc.kml"]
        assert archive.read("doc.kml") == exported["kml"].read_bytes()


def test_geojson_is_rfc7946(exported):
    document = json.loads(exported["geojson"].read_text(encoding="utf-8"))
    assert document["type"] == "FeatureCollection" and "crs" not in document
    first, second = document["features"]
    assert first["id"] == "aoi-a-001"
    assert first["properties"]["phases"] == PHASES_A
    assert first["properties"]["border_side"] == "Syria"
    assert first["properties"]["crosses_border"] is False
    assert second["properties"]["crosses_border"] is None
    shape = shapely.geometry.shape(second["geometry"])
    assert shape.equals(FOOTPRINT_B)
    assert shape.exterior.is_ccw and not shape.interiors[0].is_ccw  # right-hand rule
    for feature in document["features"]:
        xy = shapely.get_coordinates(shapely.geometry.shape(feature["geometry"]))
        assert ((-180 <= xy[:, 0]) & (xy[:, 0] <= 180) & (-90 <= xy[:, 1])
                & (xy[:, 1] <= 90)).all()
        assert (abs(xy * 1e7 - (xy * 1e7).round()) < 1e-6).all()  # 7 decimals at most


def test_csv_rows_with_wkt(exported):
    with exported["csv"].open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == [*(name for name, _ in exports.SITE_FIELDS), "wkt"]
    assert [row["site_id"] for row in rows] == ["aoi-a-001", "aoi-b-001"]
    assert float(rows[0]["width_m"]) == 258.0
    assert rows[0]["crosses_border"] == "false" and rows[1]["crosses_border"] == ""
    assert rows[1]["phases"] == "destroyed 2019-06-15"
    assert shapely.from_wkt(rows[1]["wkt"]).equals(FOOTPRINT_B)


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_quoted():
    assert exports._csv_cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert exports._csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert exports._csv_cell("+1") == "'+1" and exports._csv_cell("-cmd") == "'-cmd"
    assert exports._csv_cell(-5.2) == "-5.2"  # numbers stay numbers
    assert exports._csv_cell("Gate 3") == "Gate 3" and exports._csv_cell(None) == ""


def test_aoi_keeps_its_sites_and_their_events(workspace, tmp_path):
    path = export(workspace, tmp_path / "b.gpkg", aoi="aoi-b")
    assert _read_layer(path, "sites")["site_id"] == ["aoi-b-001"]
    assert pyogrio.read_info(path, layer="observations")["features"] == 3
    assert pyogrio.read_info(path, layer="events")["features"] == 0  # tied to site A
    assert pyogrio.read_info(path, layer="assessments")["features"] == 0
    assert pyogrio.read_info(path, layer="places")["features"] == 1  # references: whole

    kml = export(workspace, tmp_path / "a.kml", aoi="aoi-a").read_bytes()
    folders = _parse_kml(kml).features[0].features
    assert [f.name for f in folders[0].features] == ["aoi-a-001"]
    assert len(folders[3].features) == 1


def test_aoi_without_sites_names_the_aois_that_have_some(workspace, tmp_path):
    with pytest.raises(SitewatchError, match=r"no AOI named 'elsewhere'.*aoi-a \(1\), "
                                             r"aoi-b \(1\)") as error:
        export(workspace, tmp_path / "x.geojson", aoi="elsewhere")
    assert error.value.path == str(workspace.resolve())
    assert not (tmp_path / "x.geojson").exists()


def test_unknown_format(workspace, tmp_path):
    with pytest.raises(SitewatchError, match=r"extension '\.shp'.*\.geojson, \.gpkg"):
        export(workspace, tmp_path / "sites.shp")
    with pytest.raises(SitewatchError, match="format 'xlsx'"):
        export(workspace, tmp_path / "sites.kml", format="xlsx")
    assert export(workspace, tmp_path / "sites.txt", format="CSV").read_text(
        encoding="utf-8").startswith("site_id,")


def test_empty_workspace_exports_valid_empty_files(tmp_path):
    written = export_all(_new_workspace(tmp_path / "ws", filled=False), tmp_path / "out")
    assert json.loads(written["geojson"].read_text(encoding="utf-8")) == {
        "type": "FeatureCollection", "features": []}
    for layer in ("sites", "observations", "places", "borders", "events", "assessments"):
        info = pyogrio.read_info(written["gpkg"], layer=layer)
        assert info["features"] == 0 and len(info["fields"]) > 0, layer
    folders = _parse_kml(written["kml"].read_bytes()).features[0].features
    assert [len(folder.features) for folder in folders] == [0, 0, 0, 0]
    assert written["csv"].read_text(encoding="utf-8").splitlines() == [
        ",".join([*(name for name, _ in exports.SITE_FIELDS), "wkt"])]


def test_failed_write_leaves_the_existing_file(workspace, tmp_path, monkeypatch):
    target = tmp_path / "export.gpkg"
    target.write_bytes(b"previous export")
    write_layer = pyogrio.raw.write

    def fail_after_first_layer(path, *args, layer, **kwargs):
        if layer != "sites":
            raise RuntimeError("disk full")
        write_layer(path, *args, layer=layer, **kwargs)

    monkeypatch.setattr(pyogrio.raw, "write", fail_after_first_layer)
    with pytest.raises(RuntimeError, match="disk full"):
        export(workspace, target)
    assert target.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["export.gpkg"]


def test_target_that_is_a_directory_is_refused(workspace, tmp_path):
    target = tmp_path / "sites.kml"
    target.mkdir()
    (target / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(SitewatchError, match="is a directory"):
        export(workspace, target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    with pytest.raises(SitewatchError, match="not a directory"):
        export_all(workspace, target / "keep.txt")


def test_phases_text():
    assert phases_text(PHASES_A) == ("cleared 2019-05-15 (after 2019-04-15); "
                                     "under_construction 2019-06-15 (after 2019-05-15)")
    assert phases_text([{"phase": "destroyed", "first_observed": "2019-06-15",
                         "after": None}]) == "destroyed 2019-06-15"
    assert phases_text([]) == ""


def test_the_one_geojson_writer_is_rfc_7946():
    """Right-handed rings, 7 decimals, no NaN, the id beside the properties."""
    from sitewatch import geojson

    clockwise = shapely.Polygon([(40.123456789, 34.0), (40.123456789, 34.1),
                                 (40.2, 34.1), (40.2, 34.0)])
    assert not clockwise.exterior.is_ccw
    written = geojson.feature(clockwise, {"name": "a"}, "s-1")
    assert written["id"] == "s-1" and written["properties"] == {"name": "a"}
    ring = written["geometry"]["coordinates"][0]
    assert shapely.LinearRing(ring).is_ccw
    assert {x for x, _ in ring} == {40.1234568, 40.2}
    assert geojson.feature(None, {})["geometry"] is None
    with pytest.raises(ValueError):
        geojson.dumps(geojson.feature_collection([geojson.feature(None, {"v": float("nan")})]))
