import contextlib
import http.server
import json
import os
import re
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import shapely
from rasterio.transform import from_origin

import sitewatch
from conftest import dump_workspace, write_geotiff
from sitewatch import SitewatchError, Workspace
from sitewatch.ingest import dates

OSCD_CITIES = ("aguasclaras", "bercy", "bordeaux", "nantes", "paris", "rennes", "saclay_e")


@pytest.fixture(scope="module")
def oscd_workspace(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("oscd") / "ws"
    report = sitewatch.ingest([data_dir / "oscd"], root)
    return root, report


def test_oscd_layout_gives_two_dated_13_band_scenes_per_city(oscd_workspace, data_dir):
    root, report = oscd_workspace
    assert len(report.added) == 2 * len(OSCD_CITIES)
    # the change-map label rasters carry no CRS: skipped with a reason, not registered
    assert {p.split("/")[-1] for p, _ in report.skipped} == {f"{c}-cm.tif" for c in OSCD_CITIES}
    rows = sitewatch.scenes(root)
    rennes = [r for r in rows if "/rennes/" in r["source"]]
    assert sorted(r["acquired"][:10] for r in rennes) == ["2015-08-21", "2017-06-21"]
    for row in rows:
        assert row["sensor"] == "sentinel-2"
        assert row["date_source"] == "sidecar"
        assert row["epsg"] == 4326
        names = [b["name"] for b in row["bands"]]
        assert names == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
                         "B10", "B11", "B12"]
        res = {b["name"]: b["resolution_m"] for b in row["bands"]}
        # geographic pixels measured geodesically: about 10, 20 and 60 m
        assert 7 < res["B02"] < 12 and 15 < res["B11"] < 24 and 45 < res["B01"] < 70
        assert row["resolution_m"] == res["B02"]
        assert 0.0 <= row["nodata_fraction"] < 0.05
    aoi = json.loads((data_dir / "oscd" / "rennes" / "rennes.geojson").read_text())
    city = shapely.geometry.shape(aoi["features"][0]["geometry"] if "features" in aoi else aoi)
    footprint = shapely.from_wkt(rennes[0]["footprint_wkt"])
    assert footprint.intersection(city).area > 0.9 * city.area


def test_reingest_changes_nothing(oscd_workspace, data_dir):
    root, _ = oscd_workspace
    before = dump_workspace(root)
    report = sitewatch.ingest([data_dir / "oscd" / "rennes"], root)
    assert report.added == [] and report.updated == [] and len(report.unchanged) == 2
    assert dump_workspace(root) == before


def test_sentinel2_names_processing_time_is_not_taken_as_acquisition():
    tile = "S2A_OPER_MSI_L1C_TL_EPA__20160706T155721_A000849_T30UWU_B02.tif"
    assert dates.from_name(tile) is None
    assert dates.from_name("T30UWU_20170621T110651_B02.tif") == datetime(
        2017, 6, 21, 11, 6, 51, tzinfo=UTC)
    assert dates.from_name("m_4709963_se_14_1_20120731.tif") == datetime(2012, 7, 31, tzinfo=UTC)
    assert dates.from_name("tile_337-9136.tif") is None


def test_xview2_pre_and_post_tiles_on_different_grids(tmp_path, data_dir):
    ws = tmp_path / "ws"
    sitewatch.ingest([data_dir / "xview2-joplin" / "pre"], ws, date="2011-05-20")
    sitewatch.ingest([data_dir / "xview2-joplin" / "post"], ws, date="2011-05-23")
    rows = sitewatch.scenes(ws)
    assert len(rows) == 10
    assert {r["epsg"] for r in rows if r["acquired"].startswith("2011-05-20")} == {26915}
    assert {r["epsg"] for r in rows if r["acquired"].startswith("2011-05-23")} == {4326}
    assert all(r["date_source"] == "user" for r in rows)
    assert all([b["common_name"] for b in r["bands"]] == ["red", "green", "blue"] for r in rows)
    pre = shapely.union_all([shapely.from_wkt(r["footprint_wkt"]) for r in rows[:4]])
    post = shapely.union_all([shapely.from_wkt(r["footprint_wkt"]) for r in rows[4:]])
    assert pre.intersects(post)  # the same town, tiled differently


def test_naip_time_series_dates_from_file_names(tmp_path, data_dir):
    sitewatch.ingest([data_dir / "timeseries-naip"], tmp_path)
    rows = sitewatch.scenes(tmp_path)
    assert [r["acquired"][:4] for r in rows] == ["2009", "2010", "2012", "2014", "2015", "2016",
                                                "2017", "2018", "2019", "2020"]
    assert all(r["sensor"] == "naip" and r["epsg"] == 26914 for r in rows)
    assert [b["name"] for b in rows[0]["bands"]] == ["red", "green", "blue", "nir"]
    assert rows[0]["resolution_m"] == pytest.approx(5.0)


def test_utm_pair_and_cloud_chips(tmp_path, data_dir):
    sitewatch.ingest([data_dir / "puerto-rico-pair" / "pre.tif",
                      data_dir / "puerto-rico-pair" / "post.tif"], tmp_path, date="2017-09-25")
    sitewatch.ingest([data_dir / "cloud-chips-s2" / "train_features"], tmp_path,
                     date="2020-04-29")
    rows = sitewatch.scenes(tmp_path)
    assert {r["epsg"] for r in rows} == {32619, 32736}
    chips = [r for r in rows if r["epsg"] == 32736]
    assert len(chips) == 2
    assert all([b["name"] for b in r["bands"]] == ["B02", "B03", "B04", "B08"] for r in chips)
    assert all(r["resolution_m"] == pytest.approx(10.0) for r in chips)
    pr = [r for r in rows if r["epsg"] == 32619]
    assert pr[0]["resolution_m"] == pytest.approx(0.305, abs=0.01)


def test_envi_landsat_pair_needs_and_takes_a_date(tmp_path, data_dir):
    header = data_dir / "landsat-taizhou" / "2000TM.HDR"
    with pytest.raises(SitewatchError, match="--date"):
        sitewatch.ingest([header], tmp_path / "ws")
    assert not (tmp_path / "ws").exists()  # a failed first ingest leaves no workspace behind
    sitewatch.ingest([header], tmp_path / "ws", date="2000-04-05")
    sitewatch.ingest([data_dir / "landsat-taizhou" / "2003TM"], tmp_path / "ws",
                     date="2003-05-01")
    rows = sitewatch.scenes(tmp_path / "ws")
    assert [r["driver"] for r in rows] == ["ENVI", "ENVI"]
    assert rows[0]["sensor"] == "landsat" and rows[0]["epsg"] == 32651
    assert [b["name"] for b in rows[0]["bands"]] == ["B1", "B2", "B3", "B4", "B5", "B7"]
    assert rows[0]["resolution_m"] == 30.0


def test_landsat_composites_folder_with_one_date_each(tmp_path, data_dir):
    folder = data_dir / "timeseries-landsat-pucallpa"
    for tif in sorted(folder.glob("*.tif")):
        sitewatch.ingest([tif], tmp_path, date=f"{tif.stem}-07-01")
    rows = sitewatch.scenes(tmp_path)
    assert len(rows) == 8 and rows[0]["acquired"].startswith("1985")
    assert all(r["epsg"] == 4326 and len(r["bands"]) == 4 for r in rows)


def test_xbd_tiles_georeferenced_from_their_labels(tmp_path, data_dir):
    report = sitewatch.ingest([data_dir / "xbd-joplin"], tmp_path)
    assert len(report.added) == 4
    rows = sitewatch.scenes(tmp_path)
    assert {r["acquired"][:10] for r in rows} == {"2009-08-08", "2011-05-29"}
    labels = json.loads((data_dir / "xbd-joplin" / "labels" /
                         "joplin-tornado_00000000_post_disaster.json").read_text())
    buildings = [shapely.from_wkt(f["wkt"]) for f in labels["features"]["lng_lat"]]
    post = next(r for r in rows if r["source"].endswith("00000000_post_disaster.png"))
    footprint = shapely.from_wkt(post["footprint_wkt"])
    inside = [footprint.contains(b) for b in buildings]
    assert sum(inside) >= 0.9 * len(buildings)  # a few are cut by the tile edge
    assert all(footprint.intersects(b) for b in buildings)
    assert post["properties"]["georeference_rmse_m"] < 1.0  # well under a pixel (~0.45 m)
    vrt = post["properties"]["vrt"]
    assert vrt.startswith(str(tmp_path.resolve()))  # pixels stay in the PNG; the VRT points at it


def test_stac_catalog_items_become_scenes(tmp_path):
    image = write_geotiff(tmp_path / "img.tif", np.full((4, 64, 64), 1000, np.uint16), nodata=0)
    catalog = pystac.Catalog("test", "test catalog")
    for day in (1, 2):
        item = pystac.Item(f"item-{day}", geometry=None, bbox=None,
                           datetime=datetime(2019, 3, day, 8, tzinfo=UTC),
                           properties={"platform": "sentinel-2a", "eo:cloud_cover": 12.5})
        item.add_asset("image", pystac.Asset(str(image), media_type=pystac.MediaType.COG,
                                             roles=["data"]))
        catalog.add_item(item)
    catalog.normalize_hrefs(str(tmp_path / "stac"))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    sitewatch.ingest([tmp_path / "stac"], tmp_path / "ws")
    rows = sitewatch.scenes(tmp_path / "ws")
    assert [r["acquired"] for r in rows] == ["2019-03-01T08:00:00Z", "2019-03-02T08:00:00Z"]
    assert all(r["date_source"] == "stac" and r["cloud_cover"] == 12.5 for r in rows)
    assert rows[0]["sensor"] == "sentinel-2" and len(rows[0]["bands"]) == 4


def test_a_catalog_linking_to_a_remote_child_is_refused_without_a_request(populated, tmp_path):
    """Issue 21: a remote child link made a network request; ingest downloads nothing."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the name http.server calls)
            requests.append(self.path)
            self.send_error(404)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        catalog = pystac.Catalog("test", "catalog with a remote child")
        catalog.normalize_hrefs(str(tmp_path / "stac"))
        child = f"http://127.0.0.1:{server.server_port}/child/catalog.json"
        catalog.add_link(pystac.Link("child", child, media_type="application/json"))
        catalog.save(pystac.CatalogType.SELF_CONTAINED)
        _assert_refused(*populated, [tmp_path / "stac"],
                        f"links to {re.escape(child)}, which is not on this machine")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert requests == []


# -- bad input: one clear error, workspace exactly as it was ---------------------------------

@pytest.fixture
def populated(tmp_path):
    ws = tmp_path / "ws"
    write_geotiff(tmp_path / "good_20190301.tif", np.ones((2, 32, 32), np.uint16))
    sitewatch.ingest([tmp_path / "good_20190301.tif"], ws)
    return ws, dump_workspace(ws)


def _assert_refused(ws, before, paths, match, **kwargs):
    with pytest.raises(SitewatchError, match=match) as info:
        sitewatch.ingest(paths, ws, **kwargs)
    assert "\n" not in str(info.value)
    assert dump_workspace(ws) == before
    return info.value


def test_missing_file(populated, tmp_path):
    error = _assert_refused(*populated, [tmp_path / "nope.tif"], "no such file")
    assert "nope.tif" in str(error)


def test_truncated_geotiff(populated, tmp_path):
    rng = np.random.default_rng(0)
    path = write_geotiff(tmp_path / "cut_20190301.tif",
                         rng.integers(0, 65535, (1, 512, 512), dtype=np.uint16),
                         tiled=True, blockxsize=128, blockysize=128)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    error = _assert_refused(*populated, [path], "truncated or corrupt")
    assert "cut_20190301.tif" in str(error)
    path.write_bytes(data[:100])  # cut inside the header
    _assert_refused(*populated, [path], "cut_20190301.tif")


def test_a_header_that_lies_about_its_size_is_refused(populated, tmp_path):
    """A 256 x 256 px GeoTIFF whose ImageWidth and ImageLength say 60000: GDAL would read the
    blocks the file does not list as empty, a 600 km scene of nothing."""
    import struct

    path = write_geotiff(tmp_path / "huge_20190301.tif", np.ones((1, 256, 256), np.uint8),
                         tiled=True, blockxsize=256, blockysize=256)
    data = bytearray(path.read_bytes())
    assert data[:2] == b"II"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength
            struct.pack_into("<H" if kind == 3 else "<I", data, entry + 8, 60000)
    path.write_bytes(bytes(data))
    error = _assert_refused(*populated, [path], "declares 60000 x 60000 pixels")
    assert "huge_20190301.tif" in str(error)


def test_raster_without_crs(populated, tmp_path):
    path = write_geotiff(tmp_path / "plain_20190301.tif", np.ones((1, 8, 8), np.uint8), crs=None)
    _assert_refused(*populated, [path], "no coordinate reference system")


def test_unparseable_date(populated, tmp_path):
    path = write_geotiff(tmp_path / "nodate.tif", np.ones((1, 8, 8), np.uint8))
    _assert_refused(*populated, [path], "unparseable date", date="the 5th of Mai")


def test_levir_png_without_georeference(populated, data_dir):
    png = data_dir / "levir-cd-samples" / "A" / "test_2_0000_0000.png"
    error = _assert_refused(*populated, [png], "cannot place this image on Earth")
    assert "test_2_0000_0000.png" in str(error)


def test_stac_item_with_missing_asset(populated, tmp_path):
    item = pystac.Item("lost", geometry=None, bbox=None,
                       datetime=datetime(2019, 3, 1, tzinfo=UTC), properties={})
    item.add_asset("B02", pystac.Asset(str(tmp_path / "gone_B02.tif"), roles=["data"]))
    item.set_self_href(str(tmp_path / "lost.json"))
    item.save_object(include_self_link=True)
    error = _assert_refused(*populated, [tmp_path / "lost.json"], "does not exist")
    assert "gone_B02.tif" in str(error)


def test_stac_item_with_a_remote_asset_is_refused_naming_the_url(populated, tmp_path):
    """Issue 22: an https asset href was read as a local path ("does not exist")."""
    url = "https://127.0.0.1:9/S2B_T37SFU_20190301/B04.tif"
    item = pystac.Item("remote", geometry=None, bbox=None,
                       datetime=datetime(2019, 3, 1, tzinfo=UTC), properties={})
    item.add_asset("red", pystac.Asset(url, media_type=pystac.MediaType.COG, roles=["data"]))
    item.set_self_href(str(tmp_path / "remote.json"))
    item.save_object(include_self_link=True)
    _assert_refused(*populated, [tmp_path / "remote.json"],
                    f"asset 'red' is at {re.escape(url)}, not on this machine")


def test_one_bad_path_rejects_the_whole_call(populated, tmp_path):
    good = write_geotiff(tmp_path / "second_20190401.tif", np.ones((1, 8, 8), np.uint8))
    bad = write_geotiff(tmp_path / "plain_20190301.tif", np.ones((1, 8, 8), np.uint8), crs=None)
    _assert_refused(*populated, [good, bad], "no coordinate reference system")


def test_interrupted_write_leaves_store_unchanged(populated, tmp_path, monkeypatch):
    ws, before = populated
    paths = [write_geotiff(tmp_path / f"s_2019040{d}.tif", np.ones((1, 8, 8), np.uint8))
             for d in (1, 2, 3)]
    from sitewatch.store import workspace as store_workspace

    calls = {"n": 0}
    real_insert = store_workspace.Transaction.insert

    def failing_insert(self, layer, record):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_insert(self, layer, record)

    monkeypatch.setattr(store_workspace.Transaction, "insert", failing_insert)
    with pytest.raises(OSError):
        sitewatch.ingest(paths, ws)
    assert calls["n"] == 2
    assert dump_workspace(ws) == before


def test_changed_file_is_updated_not_duplicated(tmp_path):
    path = write_geotiff(tmp_path / "x_20190301.tif", np.ones((1, 8, 8), np.uint8))
    sitewatch.ingest([path], tmp_path / "ws")
    write_geotiff(path, np.ones((1, 16, 16), np.uint8),
                  transform=from_origin(500_000, 3_800_000, 5, 5))
    report = sitewatch.ingest([path], tmp_path / "ws")
    assert len(report.updated) == 1
    with Workspace.open(tmp_path / "ws") as ws:
        rows = ws.rows("scenes")
    assert len(rows) == 1 and rows[0]["width"] == 16 and rows[0]["resolution_m"] == 5.0


def test_eopatch_dates_exposed_through_vrts_without_copying(tmp_path, data_dir):
    import rasterio

    patch = data_dir / "eopatch-slovenia"
    report = sitewatch.ingest([patch], tmp_path)
    assert len(report.added) == 68
    rows = sitewatch.scenes(tmp_path)
    stamps = json.loads((patch / "timestamps.json").read_text())
    assert [r["acquired"][:19] for r in rows] == sorted(s[:19] for s in stamps)
    row = rows[10]
    index = row["properties"]["time_index"]
    assert [b["name"] for b in row["bands"]] == ["NDVI", "CLM", "IS_DATA"]
    assert row["epsg"] == 32633 and row["resolution_m"] == pytest.approx(10.0, abs=0.01)
    with rasterio.open(row["properties"]["vrt"]) as src:
        ndvi = src.read(1)
    assert np.array_equal(ndvi, np.load(patch / "data" / "NDVI.npy")[index, :, :, 0])
    clouds = np.load(patch / "mask" / "CLM.npy")[index, :, :, 0].astype(bool)
    valid = np.load(patch / "mask" / "IS_DATA.npy")[index, :, :, 0].astype(bool)
    assert row["cloud_cover"] == pytest.approx(100 * (clouds & valid).sum() / valid.sum(),
                                               abs=0.01)
    assert row["nodata_fraction"] == pytest.approx(1 - valid.mean())


def test_each_ingest_is_recorded_as_a_run(oscd_workspace):
    root, report = oscd_workspace
    with Workspace.open(root) as ws:
        runs = ws.rows("runs")
    assert len(runs) == 1  # the re-ingest in another test added nothing, so recorded nothing
    assert runs[0]["stage"] == "ingest" and runs[0]["status"] == "ok"
    assert sorted(runs[0]["inputs"]["added"]) == sorted(report.added)
    assert runs[0]["sitewatch_version"] == sitewatch.__version__


# -- folder walk: links back up the tree and special files --------------------------------------

class Hang(Exception):
    """Raised by :func:`_time_limit`; not an OSError, which the code under test may catch."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Fail with :class:`Hang` instead of hanging when the block runs longer than ``seconds``."""
    def expire(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_symlink_loops_are_searched_once(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    write_geotiff(folder / "img_20190103.tif", np.ones((1, 8, 8), np.uint8))
    (folder / "a").symlink_to(".")
    (folder / "b").symlink_to(".")
    (folder / "gone").symlink_to("nowhere")  # broken: left out, not an error
    with _time_limit(10):
        report = sitewatch.ingest([folder], tmp_path / "ws")
    assert len(report.added) == 1 and report.skipped == []
    assert [r["source"] for r in sitewatch.scenes(tmp_path / "ws")] == [
        str(folder / "img_20190103.tif")]


def test_fifo_in_a_folder_is_skipped_unopened(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    write_geotiff(folder / "img_20190103.tif", np.ones((1, 8, 8), np.uint8))
    os.mkfifo(folder / "p.json")
    os.mkfifo(folder / "q.tif")
    with _time_limit(10):
        report = sitewatch.ingest([folder], tmp_path / "ws")
    assert len(report.added) == 1 and report.skipped == []


def _unlistable(monkeypatch, *folders):
    """Make ``Path.iterdir`` refuse ``folders`` as a folder without read permission does (the
    tests may run as root, whom chmod does not stop)."""
    listing = Path.iterdir

    def iterdir(self):
        if self in folders:
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)


def test_an_unreadable_subfolder_is_skipped_and_reported(tmp_path, monkeypatch):
    folder = tmp_path / "d"
    (folder / "locked").mkdir(parents=True)
    write_geotiff(folder / "img_20190103.tif", np.ones((1, 8, 8), np.uint8))
    _unlistable(monkeypatch, folder / "locked")
    report = sitewatch.ingest([folder], tmp_path / "ws")
    assert len(report.added) == 1
    assert report.skipped == [(str(folder / "locked"),
                               "cannot read the folder (Permission denied)")]


def test_an_unreadable_folder_named_explicitly_is_a_clear_error(populated, tmp_path,
                                                                monkeypatch):
    (tmp_path / "locked").mkdir()
    _unlistable(monkeypatch, tmp_path / "locked")
    _assert_refused(*populated, [tmp_path / "locked"], r"cannot read the folder \(Permission")


def test_fifo_named_explicitly_is_a_clear_error(populated, tmp_path):
    os.mkfifo(tmp_path / "p.json")
    with _time_limit(10):
        _assert_refused(*populated, [tmp_path / "p.json"], "not a regular file or folder")


def test_a_raster_off_the_earth_is_refused_and_nothing_is_stored(tmp_path):
    """Issue 21: a raster whose latitude exceeds 90 degrees gave a NOT NULL traceback."""
    folder = tmp_path / "imagery"
    folder.mkdir()
    write_geotiff(folder / "img_20200101.tif", np.ones((3, 10, 10), np.uint8), crs="EPSG:4326",
                  transform=from_origin(40, 95, 0.01, 0.01))
    with pytest.raises(SitewatchError, match="latitude up to 95.0 degrees") as caught:
        sitewatch.ingest([folder], tmp_path / "ws")
    assert "img_20200101.tif" in str(caught.value)
    assert not (tmp_path / "ws" / "sitewatch.gpkg").exists()


def test_a_rotated_geotransform_gives_the_true_pixel_size():
    """Issue 21: a raster rotated by 30 degrees reported 8.66 m instead of 10 m."""
    from affine import Affine
    from pyproj import CRS

    from sitewatch.ingest.raster import resolution_metres

    rotated = Affine.translation(500_000, 3_800_000) * Affine.rotation(30) * Affine.scale(10, -10)
    assert resolution_metres(CRS.from_epsg(32637), rotated, 100, 100) == pytest.approx(10.0)


def test_a_stac_item_collection_is_ingested_with_relative_hrefs(tmp_path):
    """Issue 21/22: a STAC ItemCollection (what an API search returns) gave a traceback."""
    from sitewatch.simulate import simulate

    simulate(tmp_path / "imagery", sensor="s2", seed=1, n_dates=6, size_m=(1000, 800))
    collection = tmp_path / "imagery" / "items.json"
    features = []
    for item in pystac.read_file(str(tmp_path / "imagery" / "catalog.json")).get_items(
            recursive=True):
        record = item.to_dict(include_self_link=False, transform_hrefs=False)
        for key, asset in record["assets"].items():
            asset["href"] = str(Path(item.assets[key].get_absolute_href())
                                .relative_to(collection.parent))
        record["links"] = []
        features.append(record)
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    first = sitewatch.ingest([collection], tmp_path / "ws")
    assert len(first.scene_ids) == 6
    again = sitewatch.ingest([collection], tmp_path / "ws")
    assert again.added == [] and sorted(again.unchanged) == sorted(first.scene_ids)


def test_a_footprint_across_the_antimeridian_is_cut_in_two_valid_parts(tmp_path):
    """A 40 x 40 km scene of UTM zone 60S centred near 180 degrees east (Fiji's Taveuni): its
    footprint is two valid parts, one each side of the antimeridian, not a polygon round the
    Earth."""
    path = write_geotiff(tmp_path / "scene_20200101.tif", np.ones((1, 40, 40), np.uint16),
                         crs="EPSG:32760", transform=from_origin(800_000, 8_200_000, 1000, 1000))
    sitewatch.ingest([path], tmp_path / "ws")
    (scene,) = sitewatch.scenes(tmp_path / "ws")
    footprint = shapely.from_wkt(scene["footprint_wkt"])
    assert footprint.geom_type == "MultiPolygon" and footprint.is_valid
    west, east = sorted(footprint.geoms, key=lambda part: part.bounds[0])
    assert west.bounds[0] >= -180 and west.bounds[2] <= -179.0  # the part east of 180 E
    assert east.bounds[0] >= 179.0 and east.bounds[2] <= 180
    assert footprint.intersects(shapely.Point(179.99, -16.3))
    assert footprint.intersects(shapely.Point(-179.99, -16.3))
    assert not footprint.intersects(shapely.Point(0.0, -16.3))


def test_a_footprint_around_a_pole_contains_it(tmp_path):
    """A 1000 x 1000 km scene of NSIDC's north polar stereographic grid centred on the pole."""
    path = write_geotiff(tmp_path / "scene_20200101.tif", np.ones((1, 100, 100), np.uint16),
                         crs="EPSG:3413", transform=from_origin(-500_000, 500_000, 10_000, 10_000))
    sitewatch.ingest([path], tmp_path / "ws")
    (scene,) = sitewatch.scenes(tmp_path / "ws")
    footprint = shapely.from_wkt(scene["footprint_wkt"])
    assert footprint.is_valid
    assert footprint.contains(shapely.Point(10.0, 89.9))
    assert footprint.contains(shapely.Point(-170.0, 87.0))
    assert not footprint.intersects(shapely.Point(0.0, 80.0))  # ~1100 km from the pole
    assert footprint.bounds[0] == -180 and footprint.bounds[2] == 180


def test_sentinel2_stac_assets_keyed_by_common_name_get_esa_band_names(tmp_path):
    """An Earth Search style item (assets ``blue``, ``nir08``, whose eo:bands say ``blue``)
    ingests as bands B02 and B8A, as every other Sentinel-2 source does."""
    for name in ("blue", "nir08"):
        write_geotiff(tmp_path / f"{name}.tif", np.full((1, 20, 20), 1200, np.uint16))
    item = {
        "type": "Feature", "stac_version": "1.1.0", "id": "S2B_37SFU_20200101_0_L2A",
        "geometry": None, "links": [],
        "properties": {"datetime": "2020-01-01T08:00:00Z", "constellation": "sentinel-2",
                       "platform": "sentinel-2b"},
        "assets": {name: {"href": f"./{name}.tif", "type": "image/tiff; application=geotiff",
                          "roles": ["data"], "eo:bands": [{"name": name, "common_name": name}]}
                   for name in ("blue", "nir08")},
    }
    (tmp_path / "item.json").write_text(json.dumps(item))
    sitewatch.ingest([tmp_path / "item.json"], tmp_path / "ws")
    (scene,) = sitewatch.scenes(tmp_path / "ws")
    assert [band["name"] for band in scene["bands"]] == ["B02", "B8A"]


@pytest.mark.parametrize("product, numbers, nir_number", [
    ("LC08_L2SP_169036_20200115_20200823_02_T1", (1, 2, 3, 4, 5, 6, 7, 10), 5),
    ("LT05_L2SP_169036_20000115_20200823_02_T1", (1, 2, 3, 4, 5, 6, 7), 4),
])
def test_landsat_band_files_are_named_by_colour_not_by_number(tmp_path, product, numbers,
                                                              nir_number):
    """Band 4 is red on Landsat 8-9 OLI and near-infrared on TM/ETM+: one-file-per-band
    Landsat scenes take common names, thermal bands are left out, and the indices find the
    near-infrared band either way."""
    from sitewatch.detect.indices import band_roles

    folder = tmp_path / product
    folder.mkdir()
    for number in numbers:
        kind = "ST" if number in (6, 10) and (number == 10 or product.startswith("LT")) else "SR"
        write_geotiff(folder / f"{product}_{kind}_B{number}.TIF",
                      np.full((1, 8, 8), 1000 * number, np.uint16),
                      transform=from_origin(500_000, 3_800_000, 30, 30))
    sitewatch.ingest([folder], tmp_path / "ws")
    (scene,) = sitewatch.scenes(tmp_path / "ws")
    names = [band["name"] for band in scene["bands"]]
    expected = ["blue", "green", "red", "nir08", "swir16", "swir22"]
    assert names == (["coastal", *expected] if product.startswith("LC08") else expected)
    assert scene["sensor"] == "landsat"
    nir = scene["bands"][band_roles(names)["nir"]]
    assert nir["file"].endswith(f"_B{nir_number}.TIF")
    assert scene["bands"][band_roles(names)["red"]]["file"].endswith(
        f"_B{4 if product.startswith('LC08') else 3}.TIF")
