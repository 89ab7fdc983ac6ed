import json
import subprocess
import sys

import pytest

import sitewatch
from conftest import dump_workspace
from sitewatch import SitewatchError, Workspace


def _point(name, coordinates):
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": coordinates},
            "properties": {"name": name}}


def _line(name, coordinates):
    return {"type": "Feature", "geometry": {"type": "LineString", "coordinates": coordinates},
            "properties": {"name": name, "left": "A", "right": "B"}}


@pytest.fixture
def workspace(tmp_path):
    """A workspace holding one place and one border, and the dump of its database."""
    path = tmp_path / "good.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _point("Gate", [40.97, 34.39]), _line("Border", [[40.95, 34.5], [41.0, 34.3]])]}))
    sitewatch.import_places(path, tmp_path / "ws")
    return tmp_path / "ws", dump_workspace(tmp_path / "ws")


@pytest.mark.parametrize(("features", "extra", "message"), [
    ([_point("nan", [float("nan"), float("nan")])], {}, "feature 1 has a coordinate that is not "
     "a finite number"),
    ([_point("ok", [1, 2]), _point("inf", [float("inf"), 2])], {}, "feature 2 .* not a finite"),
    ([_point("far", [400, 95])], {}, r"feature 1 has the coordinate \(400, 95\) outside lon"),
    ([_point("north", [10, 95])], {}, r"\(10, 95\) outside lon -180..180, lat -90..90"),
    ([_point("Gate", [40.97, 34.39])],
     {"crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}},
     "the file has a 'crs' member .*EPSG::3857.*RFC 7946"),
    ([{**_point("Gate", [40.97, 34.39]), "crs": {"type": "name", "properties": {"name": "?"}}}],
     {}, "feature 1 has a 'crs' member"),
    ([_line("stub", [[40.95, 34.5]])], {}, "feature 1 is not a valid LineString: too few points"),
    ([{"type": "Feature", "geometry": {"type": "Point"}, "properties": {"name": "x"}}], {},
     "feature 1 has no valid geometry"),
    ([_line("dot", [[40.95, 34.5], [40.95, 34.5]])], {}, "feature 1 is not a valid LineString "
     r"\(Too few points"),
    ([_point("Gate", [1, 2]), _line("Gate", [[1, 2], [3, 4]]), _point("Gate", [3, 4])], {},
     "features 1 and 3 are two places named 'Gate'; give each its own name"),
    ([_line("B", [[1, 2], [3, 4]]), _line("B", [[5, 6], [7, 8]])], {},
     "features 1 and 2 are two borders named 'B'"),
    ([{**_point("Gate", [1, 2]), "properties": {"name": "Gate", "kind": {"a": 1}}}], {},
     "feature 1 has a 'kind' property that is not text"),
])
def test_bad_places_file_is_refused_whole(workspace, tmp_path, features, extra, message):
    ws, before = workspace
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features, **extra}))
    with pytest.raises(SitewatchError, match=message) as info:
        sitewatch.import_places(path, ws)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    assert dump_workspace(ws) == before


def test_a_crs_member_naming_wgs84_is_accepted(tmp_path):
    path = tmp_path / "crs84.geojson"
    path.write_text(json.dumps({
        "type": "FeatureCollection", "features": [_point("Gate", [40.97, 34.39])],
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}}))
    report = sitewatch.import_places(path, tmp_path / "ws")
    assert report.places == ["Gate"]
    with Workspace.open(tmp_path / "ws") as ws:
        (place,) = ws.rows("places")
    assert (place["geom"].x, place["geom"].y) == (40.97, 34.39)


def test_features_that_are_neither_places_nor_borders_are_reported_not_dropped(tmp_path):
    """Issue 21 follow-up: a Polygon feature in a places file vanished without a word."""
    compound = {"type": "Feature", "properties": {"name": "Compound"}, "geometry": {
        "type": "Polygon", "coordinates": [[[40.0, 34.0], [40.01, 34.0], [40.01, 34.01],
                                            [40.0, 34.0]]]}}
    path = tmp_path / "mixed.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection",
                                "features": [_point("Gate", [40.97, 34.39]), compound]}))
    report = sitewatch.import_places(path, tmp_path / "ws")
    assert report.places == ["Gate"] and report.skipped == [(2, "Polygon")]
    done = subprocess.run([sys.executable, "-m", "sitewatch", "places", "import", str(path),
                           "-w", str(tmp_path / "ws")], capture_output=True, text=True)
    assert done.returncode == 0
    assert "left out feature 2 (Polygon)" in done.stderr
