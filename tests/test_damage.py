"""Building damage counts: footprints read from vector files or masks, assessed against a change
map, counted with an interval."""

from __future__ import annotations

import json

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import rasterio.warp
import shapely
from rasterio.transform import from_origin

import sitewatch
from conftest import write_geotiff
from sitewatch.errors import SitewatchError
from sitewatch.sites.damage import (
    DamageCount,
    assess,
    count_damage,
    read_footprints,
    wilson_interval,
)
from sitewatch.stack import Grid

GRID = Grid(32637, 0.5, 200, 200, 500_000.0, 3_800_000.0)


def _houses() -> list[shapely.Polygon]:
    """Four 10 x 10 m houses in a row, 20 m apart, in the grid's CRS (pixel rows 100-119,
    columns 20 + 40 k to 39 + 40 k)."""
    return [shapely.box(500_010 + 20 * k, 3_799_940, 500_020 + 20 * k, 3_799_950)
            for k in range(4)]


def test_wilson_interval_matches_the_textbook_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.541, abs=2e-3) and high == pytest.approx(0.931, abs=2e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_a_building_is_damaged_when_half_its_footprint_changed():
    change = np.zeros((200, 200), np.uint8)
    houses = _houses()
    for k, share in enumerate((1.0, 0.6, 0.4, 0.0)):  # rows of the house's pixels changed
        top, left = 100, 20 + 40 * k
        change[top:top + int(20 * share), left:left + 20] = 1
    assessed = dict((round(h.bounds[0]), s) for h, s in assess(change, GRID, houses))
    assert assessed[500_010] == pytest.approx(1.0)
    assert assessed[500_030] == pytest.approx(0.6)
    assert assessed[500_050] == pytest.approx(0.4)
    count = count_damage(assess(change, GRID, houses), 0.01, held_out=(40, 10, 10))
    assert (count.buildings, count.damaged) == (4, 2)
    assert count.estimate == pytest.approx(2.0)  # precision 0.8 = recall 0.8
    assert count.low < 2.0 < count.high
    assert "2 of 4 structures destroyed or heavily damaged in 0.01 km²" in count.sentence()


def test_footprints_outside_or_masked_are_not_counted():
    change = np.full((200, 200), 255, np.uint8)
    change[:, :60] = 0
    far = shapely.box(600_000, 3_700_000, 600_010, 3_700_010)
    assessed = assess(change, GRID, [*_houses(), far])
    assert len(assessed) == 1  # the one house over the valid columns


def test_footprints_come_from_geojson_in_lon_lat_and_from_a_mask(tmp_path):
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(32637, 4326, always_xy=True)
    features = [{"type": "Feature", "properties": {},
                 "geometry": shapely.transform(h, lambda xy: np.column_stack(
                     to_lonlat.transform(*xy.T))).__geo_interface__} for h in _houses()]
    vector = tmp_path / "houses.geojson"
    vector.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    read = read_footprints(vector, GRID)
    assert len(read) == 4
    assert read[0].area == pytest.approx(100.0, rel=0.01)
    mask = np.zeros((200, 200), np.uint8)
    mask[20:40, 20:40] = mask[100:120, 60:80] = 1
    raster = write_geotiff(tmp_path / "mask.tif", mask,
                           transform=from_origin(500_000, 3_800_000, 0.5, 0.5))
    assert sorted(round(p.area) for p in read_footprints(raster, GRID)) == [100, 100]


def test_unreadable_buildings_files_are_user_errors(tmp_path):
    with pytest.raises(SitewatchError, match="not found"):
        read_footprints(tmp_path / "none.gpkg", GRID)
    junk = tmp_path / "junk.geojson"
    junk.write_text("not json at all")
    with pytest.raises(SitewatchError, match="GDAL"):
        read_footprints(junk, GRID)
    points = tmp_path / "points.geojson"
    points.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {},
         "geometry": {"type": "Point", "coordinates": [39.0, 34.0]}}]}))
    with pytest.raises(SitewatchError, match="no polygons"):
        read_footprints(points, GRID)


HOUSE_TRANSFORM = from_origin(500_000, 3_800_000, 0.5, 0.5)


def _write_house_pair(folder, destroyed, seed) -> list:
    """A 0.5 m RGB before/after pair of the four :func:`_houses` (pixel rows 100-119) on noisy
    ground, the houses in ``destroyed`` replaced by dark rubble; returns the two paths."""
    rng = np.random.default_rng(seed)
    ground = 0.3 + 0.02 * rng.standard_normal((3, 200, 200))
    before, after = ground.copy(), ground + 0.005 * rng.standard_normal((3, 200, 200))
    for k in range(4):
        before[:, 100:120, 20 + 40 * k:40 + 40 * k] = 0.8
        after[:, 100:120, 20 + 40 * k:40 + 40 * k] = 0.8
    for k in destroyed:
        after[:, 100:120, 20 + 40 * k:40 + 40 * k] = 0.1 + 0.05 * rng.random((3, 20, 20))
    folder.mkdir(exist_ok=True)
    paths = [write_geotiff(folder / f"{name}_2024010{day}.tif",
                           (np.clip(image, 0, 1) * 255).astype(np.uint8),
                           transform=HOUSE_TRANSFORM)
             for name, day, image in (("before", 1, before), ("after", 9, after))]
    for path in paths:
        with rasterio.open(path, "r+") as dst:
            dst.descriptions = ("red", "green", "blue")
    return paths


def test_compare_counts_destroyed_buildings(tmp_path):
    paths = _write_house_pair(tmp_path, destroyed=(0, 2, 3), seed=3)
    footprints = tmp_path / "footprints.tif"
    mask = np.zeros((200, 200), np.uint8)
    for k in range(4):
        mask[100:120, 20 + 40 * k:40 + 40 * k] = 1
    write_geotiff(footprints, mask, transform=HOUSE_TRANSFORM)
    result = sitewatch.compare(*paths, tmp_path / "out", method="cva", buildings=footprints)
    assert result.damage["buildings"] == 4 and result.damage["damaged"] == 3
    assert result.damage["sentence"].startswith("3 of 4 structures destroyed")
    written = json.loads((tmp_path / "out" / "buildings.geojson").read_text())
    assert sum(f["properties"]["damaged"] for f in written["features"]) == 3
    assert written["damage"]["damaged"] == 3
    assert isinstance(count_damage([], 1.0), DamageCount)


def test_track_counts_the_buildings_and_the_report_says_so(tmp_path):
    _write_house_pair(tmp_path / "imagery", destroyed=range(4), seed=4)
    footprints = tmp_path / "houses.geojson"
    to_lonlat = rasterio.warp.transform_geom
    footprints.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {},
         "geometry": to_lonlat("EPSG:32637", "EPSG:4326", house.__geo_interface__)}
        for house in _houses()]}))
    ws = tmp_path / "ws"
    sitewatch.ingest([tmp_path / "imagery"], ws)
    sitewatch.stack(ws, aoi="39.0001,34.3405,39.0010,34.3412", name="town")
    result = sitewatch.track(ws, "town", buildings=footprints)

    with sitewatch.Workspace.open(ws) as workspace:
        layer = next(r["path"] for r in workspace.rows("rasters", "kind = 'change:change'"))
        run = workspace.rows("runs", "run_id = ?", (result.run_id,))[0]
        with rasterio.open(workspace.root / layer) as src:
            change = src.read(1)
            grid = Grid(32637, 0.5, src.width, src.height, src.transform.c, src.transform.f)
    expected = count_damage(assess(change, grid, read_footprints(footprints, grid)),
                            result.damage["area_km2"])
    assert result.damage["buildings"] == 4
    assert result.damage["damaged"] == expected.damaged
    assert run["parameters"]["damage"]["sentence"] == expected.sentence()

    exported = json.loads((tmp_path / "sites.geojson").read_text()) if sitewatch.export(
        ws, tmp_path / "sites.geojson") else {}
    assert exported["sitewatch:damage"][0]["damaged"] == expected.damaged
    sitewatch.export(ws, tmp_path / "sites.gpkg")
    _, _, _, fields = pyogrio.raw.read(tmp_path / "sites.gpkg", layer="damage",
                                       columns=["finding"], read_geometry=False)
    assert fields[0].tolist() == [expected.sentence()]

    report = sitewatch.report(ws, tmp_path / "report")
    html = report.html.read_text()
    assert expected.sentence()[1:] in html
    assert f"--buildings {footprints}" in html
