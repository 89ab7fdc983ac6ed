"""The viewer's HTTP API (sitewatch.web): reading, analyst writes with token and versions,
bad input, path traversal and the server's start-up rules."""

from __future__ import annotations

import io
import re
import socket
import threading
import zipfile

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import sitewatch
from sitewatch.errors import SitewatchError
from sitewatch.report.build import MARKER as REPORT_MARKER
from sitewatch.stack import stack_grid
from sitewatch.store import Workspace
from sitewatch.web import create_app, serve, tiles
from sitewatch.web.app import is_loopback
from sitewatch.web.imagery import pick_before_after
from sitewatch.web.tiles import StackTiles
from web_fixtures import AOI, N_DATES, VHR_AOI, vhr_workspace, workspace_copy

TOKEN = "test-token-0123456789"
BASE = "http://127.0.0.1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return workspace_copy(tmp_path_factory, "web-api")


@pytest.fixture(scope="module")
def client(workspace):
    with TestClient(create_app(workspace, token=TOKEN), base_url=BASE) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def read_only(workspace):
    with TestClient(create_app(workspace), base_url=BASE) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def site_ids(workspace):
    with Workspace.open(workspace) as ws:
        return [row["site_id"] for row in ws.rows("sites", order_by="area_m2 DESC")]


@pytest.fixture(scope="module")
def dates(client):
    return [d["date"] for d in client.get(f"/api/aois/{AOI}").json()["dates"]]


def _assessment(site_id, **fields):
    return {"site_id": site_id, "judgement": "a walled compound", "confidence": "likely",
            **fields}


# -- reading ---------------------------------------------------------------------------------
def test_page_and_assets_are_bundled_and_locked_to_this_origin(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    for asset, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        assert f"/static/{asset}" in page.text
        assert "cdn" not in response.text.lower() and "@import" not in response.text
    assert client.get("/static/index.html").status_code == 404  # only the named assets
    for library in ("ol.js", "ol.css", "proj4.js", "geodesic.js"):
        response = client.get(f"/static/vendor/{library}")
        assert response.status_code == 200 and len(response.content) > 5000
        assert f"/static/vendor/{library}" in page.text
    assert client.get("/static/vendor/LICENSE-ol.md").status_code == 404


def test_workspace_info_lists_aois_and_form_vocabularies(client, read_only, site_ids):
    info = client.get("/api/workspace").json()
    assert info["writable"] is True and read_only.get("/api/workspace").json()["writable"] is False
    assert info["aois"] == [{"name": AOI, "has_stack": True, "n_sites": len(site_ids)}]
    assert "likely" in [term["term"] for term in info["confidence_terms"]]
    assert "strike" in info["event_kinds"] and info["credibility"][0] == "1 confirmed"
    assert info["report"] is False


def test_aoi_map_is_in_the_grid_crs_with_sites_places_and_border(client, site_ids):
    content = client.get(f"/api/aois/{AOI}").json()
    grid = content["grid"]
    width_m, height_m = content["size_m"]
    assert grid["epsg"] == 32637 and grid["resolution"] == 10.0
    assert width_m == grid["width"] * 10.0
    west, south, east, north = content["tiles"]["extent"]
    assert (west, north, east - west, north - south) == (grid["west"], grid["north"], width_m,
                                                         height_m)
    assert "+proj=utm +zone=37" in content["tiles"]["proj4"]
    assert content["tiles"]["resolutions"][-1] == 10.0
    assert re.fullmatch(r"[0-9a-f]{12}", content["tiles"]["version"])
    assert len(content["dates"]) == N_DATES
    assert all(0.0 <= d["obscured"] <= 1.0 and d["cloudy"] == (d["obscured"] > 0.1)
               for d in content["dates"])
    assert [s["site_id"] for s in content["sites"]] == site_ids
    for site in content["sites"]:
        x0, y0, x1, y1 = site["bounds"]
        assert west <= x0 < x1 <= east and south <= y0 < y1 <= north
        assert site["geometry"]["type"] in ("Polygon", "MultiPolygon")
    names = {place["name"]: place for place in content["places"]}
    assert names["Al-Qaim border crossing"]["kind"] == "border crossing"
    [border] = content["borders"]
    assert {side["name"] for side in border["sides"]} == {"Syria", "Iraq"}
    assert content["outline"] and content["exports"] == ["geojson", "kml", "kmz", "gpkg", "csv"]


def _tile(response) -> np.ndarray:
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_imagery_tiles_cover_the_grid_at_every_level_and_are_cached(client, dates):
    content = client.get(f"/api/aois/{AOI}").json()
    tiles, width, height = content["tiles"], content["grid"]["width"], content["grid"]["height"]
    top = len(tiles["resolutions"]) - 1
    assert tiles["resolutions"] == [10.0 * 2 ** (top - z) for z in range(top + 1)]
    whole = _tile(client.get(f"/api/aois/{AOI}/imagery/{dates[-1]}/0/0/0.png"))
    assert whole.shape == (256, 256, 4)
    # The grid on the level-0 tile of 2**top px: opaque over the grid (but its nodata
    # edge), transparent beyond it.
    factor = 2 ** top
    cols, rows = -(-width // factor), -(-height // factor)
    assert (whole[:rows, :cols, 3] == 255).mean() > 0.8 and (whole[rows:, :, 3] == 0).all()
    assert (whole[:, cols:, 3] == 0).all()
    assert whole[:rows, :cols, :3].std() > 5  # imagery, not a flat colour
    fine = client.get(f"/api/aois/{AOI}/imagery/{dates[-1]}/{top}/1/0.png")
    assert (_tile(fine)[:height, :width - 256, 3] == 255).mean() > 0.8
    assert (_tile(fine)[:, width - 256:, 3] == 0).all()
    assert client.get(f"/api/aois/{AOI}/imagery/{dates[-1]}/{top}/1/0.png").content == \
        fine.content
    other = client.get(f"/api/aois/{AOI}/imagery/{dates[0]}/{top}/1/0.png")
    assert other.status_code == 200 and other.content != fine.content
    assert client.get(f"/api/aois/{AOI}/imagery/{dates[0]}/{top}/2/0.png").status_code == 404


def test_change_layers_come_as_tiles_with_legends(client, dates):
    content = client.get(f"/api/aois/{AOI}").json()
    layers = {layer["name"]: layer["legend"] for layer in content["change_layers"]}
    assert {"onset", "magnitude"} <= set(layers)
    assert layers["onset"]["labels"] == [dates[0], dates[-1]]
    assert len(layers["magnitude"]["ramp"]) == 6
    top = len(content["tiles"]["resolutions"]) - 1
    height = content["grid"]["height"]
    for name in ("onset", "magnitude"):
        tile = _tile(client.get(f"/api/aois/{AOI}/change/{name}/{top}/0/0.png"))
        shown = tile[..., 3] == 255
        assert 0 < shown.sum() < 256 * height  # some of the grid's pixels, none outside it
        assert not shown[height:].any()
    missing = client.get(f"/api/aois/{AOI}/change/nothing/0/0/0.png")
    assert missing.status_code == 404 and "onset" in missing.json()["detail"]


def test_the_kinds_of_a_pairwise_detection_are_a_layer_of_classes(client, workspace):
    sitewatch.detect(workspace, AOI, method="index")
    content = client.get(f"/api/aois/{AOI}").json()
    layers = {layer["name"]: layer["legend"] for layer in content["change_layers"]}
    classes = {c["label"]: c["colour"] for c in layers["kinds"]["classes"]}
    assert set(classes) == {"darkening", "new bright surface", "vegetation gain",
                            "vegetation loss"}
    top = len(content["tiles"]["resolutions"]) - 1
    tile = _tile(client.get(f"/api/aois/{AOI}/change/kinds/{top}/0/0.png"))
    shown = {"#" + bytes(px[:3]).hex() for px in tile.reshape(-1, 4) if px[3] == 255}
    assert shown and shown <= set(classes.values())  # only the classes' colours


def test_overviews_stay_within_their_memory_budget(workspace, monkeypatch):
    with Workspace.open(workspace) as ws:
        record = ws.rows("rasters", "kind = 'stack'")[0]
    source = StackTiles(workspace / record["path"], stack_grid(record))
    one = source.overview(0).nbytes
    monkeypatch.setattr(tiles, "OVERVIEW_BYTES", 2 * one)
    for t in range(1, 4):
        source.overview(t)
    assert list(source._overviews) == [2, 3]
    assert source.render(0, 0, 0, 0)[..., 3].any()  # built again when asked for


@pytest.fixture(scope="module")
def vhr(tmp_path_factory):
    return vhr_workspace(tmp_path_factory)


def test_a_zoomed_in_tile_of_a_vhr_stack_is_at_full_resolution(vhr):
    """At the finest level a tile pixel is a stack pixel: the tile is the stack's window,
    stretched, pixel for pixel."""
    with TestClient(create_app(vhr), base_url=BASE) as client:
        content = client.get(f"/api/aois/{VHR_AOI}").json()
        tiles, day = content["tiles"], content["dates"][-1]["date"]
        assert tiles["resolutions"][-1] == 0.5
        top = len(tiles["resolutions"]) - 1
        tile = _tile(client.get(f"/api/aois/{VHR_AOI}/imagery/{day}/{top}/1/0.png"))
    with Workspace.open(vhr) as ws:
        record = ws.rows("rasters", "kind = 'stack'")[0]
        source = StackTiles(vhr / record["path"], stack_grid(record))
    t = source.dates.index(day)
    window = source.dataset["reflectance"].isel(time=t, band=source.band_index,
                                                y=slice(0, 256), x=slice(256, 512)).values
    expected = source.stretch(t).apply(np.nan_to_num(np.moveaxis(window, 0, -1)))
    valid = np.isfinite(window).all(axis=0)
    assert valid.mean() > 0.9
    assert np.abs(tile[..., :3][valid].astype(int) - expected[valid]).max() <= 1
    # Neighbouring pixels differ (0.5 m detail, not a blown-up coarser level).
    assert np.abs(np.diff(tile[..., :3].astype(int), axis=1)).mean() > 1


def test_site_panel_keeps_automatic_findings_apart_from_analyst_records(client, site_ids,
                                                                       dates):
    panel = client.get(f"/api/sites/{site_ids[0]}").json()
    automatic = panel["automatic"]
    assert "compound" in automatic["findings"] and automatic["measurements"][0][0]
    assert [p["phase"] for p in automatic["phases"]][-1] == "under_construction"
    assert len(automatic["footprints"]) == N_DATES and automatic["footprints"][-1]
    assert set(panel["analyst"]) == {"assessments", "events", "notes"}
    frames = panel["frames"]
    assert frames["after"] in dates and frames["width"] > 0 and len(frames["obscured"]) == N_DATES
    assert panel["report"] is None
    frame = client.get(f"/api/sites/{site_ids[0]}/frames/{frames['after']}.png")
    assert frame.status_code == 200 and frame.content.startswith(PNG_SIGNATURE)


def test_exports_are_made_on_request(client, site_ids):
    geojson = client.get(f"/api/aois/{AOI}/exports/geojson")
    assert geojson.status_code == 200
    assert f'filename="{AOI}-sites.geojson"' in geojson.headers["content-disposition"]
    assert sorted(f["properties"]["site_id"] for f in geojson.json()["features"]) == sorted(
        site_ids)
    kmz = client.get(f"/api/aois/{AOI}/exports/kmz")
    assert zipfile.ZipFile(io.BytesIO(kmz.content)).namelist() == ["doc.kml"]


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "status", "words"), [
    ("/api/aois/nowhere", 404, f"its AOIs are {AOI}"),
    (f"/api/aois/{AOI}/imagery/yesterday/0/0/0.png", 422, "not an ISO day"),
    (f"/api/aois/{AOI}/imagery/2001-01-01/0/0/0.png", 404, "the stack's dates are"),
    (f"/api/aois/{AOI}/imagery/2001-01-01/0/-1/0.png", 422, "x"),
    (f"/api/aois/{AOI}/imagery/2001-01-01/big/0/0.png", 422, "z"),
    (f"/api/aois/{AOI}/change/onset/9/0/0.png", 404, "levels are 0 to"),
    ("/api/aois/nowhere/imagery/2001-01-01/0/0/0.png", 404, "no AOI 'nowhere'"),
    (f"/api/aois/{AOI}/exports/shapefile", 404, "geojson, kml"),
    ("/api/sites/no-such-site", 404, "no site 'no-such-site'"),
    ("/api/sites/bad%20id!", 422, "site_id"),
    ("/api/assessments/A-00000000", 404, "no assessment"),
    ("/api/notes/zero", 422, "record_id"),
    ("/report", 404, "--report"),
])
def test_bad_reads_get_a_clear_4xx(client, url, status, words):
    response = client.get(url)
    assert response.status_code == status
    assert words in response.json()["detail"]


@pytest.mark.parametrize(("body", "words"), [
    ({"judgement": "x", "confidence": "likely"}, "site_id: Field required"),
    ({"site_id": "{site}", "confidence": "likely"}, "judgement: Field required"),
    ({"site_id": "{site}", "judgement": "x", "confidence": "rather sure"}, "rather sure"),
    ({"site_id": "{site}", "judgement": "x", "confidence": 5}, "confidence: Input should be"),
    ({"site_id": "{site}", "judgement": "x", "confidence": "likely", "colour": "red"},
     "colour: Extra inputs are not permitted"),
    ({"site_id": "{site}", "judgement": "x", "confidence": "likely", "assessed": "May"},
     "not an ISO date"),
    ({"site_id": "nowhere-001", "judgement": "x", "confidence": "likely"},
     "no site 'nowhere-001'"),
    ({"site_id": "{site}", "judgement": "   ", "confidence": "likely"}, "judgement is missing"),
])
def test_bad_assessments_are_refused_with_the_reason(client, site_ids, body, words):
    body = {k: v.replace("{site}", site_ids[0]) if isinstance(v, str) else v
            for k, v in body.items()}
    response = client.post("/api/assessments", json=body, headers=AUTH)
    assert response.status_code == 422
    assert words in response.json()["detail"]
    assert client.get(f"/api/sites/{site_ids[0]}").json()["analyst"]["assessments"] == []


def test_bad_events_notes_and_bodies_are_refused(client, site_ids):
    site = site_ids[0]
    cases = [
        ("/api/events", {"occurred": "2019-05-01", "kind": "party", "site_id": site},
         "unknown event kind"),
        ("/api/events", {"occurred": "2019-05-01", "kind": "strike", "site_id": site,
                         "url": "javascript:alert(1)"}, "not an http(s) address"),
        ("/api/events", {"occurred": "2019-05-01", "kind": "strike", "lon": 200, "lat": 0},
         "not a WGS84 position"),
        ("/api/notes", {"text": "hello", "subject": "elsewhere"}, "neither a site nor a scene"),
        ("/api/notes", {"text": "x" * 10_001}, "at most 10000 characters"),
    ]
    for url, body, words in cases:
        response = client.post(url, json=body, headers=AUTH)
        assert response.status_code == 422 and words in response.json()["detail"], body
    broken = client.post("/api/notes", content=b"{not json", headers={
        **AUTH, "Content-Type": "application/json"})
    assert broken.status_code == 422 and "JSON" in broken.json()["detail"]


def test_request_bodies_over_the_limit_are_refused_declared_or_streamed(client):
    """Issue 21: the web server read request bodies of any size."""
    from sitewatch.web.app import MAX_BODY_BYTES

    big = b"x" * (MAX_BODY_BYTES + 1)
    declared = client.post("/api/notes", content=big,
                           headers={**AUTH, "Content-Type": "application/json"})
    assert declared.status_code == 413 and "larger than" in declared.json()["detail"]

    def chunks():
        for _ in range(MAX_BODY_BYTES // 65_536 + 2):
            yield b"x" * 65_536

    streamed = client.post("/api/notes", content=chunks(),
                           headers={**AUTH, "Content-Type": "application/json"})
    assert streamed.status_code == 413, streamed.text
    assert client.post("/api/notes", json={"text": "small"}, headers=AUTH).status_code in (
        200, 201)


# -- who may write ----------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"},
                                     {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": "Bearer "}])
def test_writes_without_the_right_token_are_refused(client, site_ids, headers):
    response = client.post("/api/assessments", json=_assessment(site_ids[0]), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "token" in response.json()["detail"]
    assert client.get(f"/api/sites/{site_ids[0]}").json()["analyst"]["assessments"] == []


def test_a_read_only_viewer_refuses_every_write(read_only, site_ids):
    attempts = [read_only.post("/api/assessments", json=_assessment(site_ids[0]), headers=AUTH),
                read_only.post("/api/notes", json={"text": "hi"}, headers=AUTH),
                read_only.delete("/api/notes/1", headers={**AUTH, "If-Match": "x"})]
    for response in attempts:
        assert response.status_code == 403 and "read-only" in response.json()["detail"]


def test_a_writable_viewer_without_a_token_generates_one(workspace):
    app = create_app(workspace, allow_write=True)
    assert app.state.writable and len(app.state.token) >= 40
    assert create_app(workspace, allow_write=True).state.token != app.state.token
    for weak in ("", "short", "has a space in it ok"):
        with pytest.raises(SitewatchError, match="at least 16 printable characters"):
            create_app(workspace, token=weak)


def test_requests_for_another_host_name_are_refused(client):
    response = client.get("/api/workspace", headers={"Host": "attacker.example:8765"})
    assert response.status_code == 400 and "host name" in response.json()["detail"]
    assert client.get("/api/workspace", headers={"Host": "localhost:8765"}).status_code == 200


# -- no way out of the workspace --------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "/static/..%2F..%2F..%2F..%2Fpyproject.toml",
    "/static/%2e%2e%2fapp.py",
    "/static/..%5c..%5capp.py",
    "/static//etc/passwd",
    "/api/aois/..%2F..%2Fsitewatch.gpkg",
    "/api/aois/%2e%2e/imagery/2019-01-01/0/0/0.png",
    f"/api/aois/{AOI}/imagery/..%2F..%2Fsitewatch.gpkg/0/0/0.png",
    f"/api/aois/{AOI}/change/..%2F..%2Fsitewatch.gpkg/0/0/0.png",
    "/static/vendor/..%2F..%2Fapp.py",
    f"/api/aois/{AOI}/exports/..%2F..%2Fsitewatch.gpkg",
    "/api/sites/..%2F..%2Fsitewatch.gpkg",
    "/api/sites/crossing-001/frames/..%2F..%2F..%2Fetc%2Fpasswd.png",
    "/report/..%2Fsitewatch.gpkg",
    "/report?path=../sitewatch.gpkg",
    "/sitewatch.gpkg",
    "/rasters/",
])
def test_no_request_reaches_a_file_outside_the_served_ones(client, url):
    response = client.get(url)
    assert 400 <= response.status_code < 500
    body = response.content
    assert b"SQLite format 3" not in body and b"[build-system]" not in body
    assert b"root:" not in body and b"import " not in body


def test_the_report_route_serves_only_the_report_of_the_given_folder(workspace, tmp_path,
                                                                     site_ids):
    report = tmp_path / "report"
    report.mkdir()
    (report / REPORT_MARKER).write_text("made by sitewatch report")
    (report / "report.html").write_text(f'<section id="{site_ids[0]}">findings</section>')
    (tmp_path / "secret.txt").write_text("not for the viewer")
    with TestClient(create_app(workspace, report_dir=report), base_url=BASE) as viewer:
        page = viewer.get("/report")
        assert page.status_code == 200 and site_ids[0] in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert viewer.get(f"/api/sites/{site_ids[0]}").json()["report"] == (
            f"/report#{site_ids[0]}")
        assert viewer.get("/api/workspace").json()["report"] is True
        assert viewer.get("/report.pdf").status_code == 404  # not built
        for url in ("/report/..%2Fsecret.txt", "/report%2F..%2Fsecret.txt", "/secret.txt"):
            response = viewer.get(url)
            assert response.status_code == 404 and b"not for the viewer" not in response.content
    for folder in (tmp_path / "missing", tmp_path):
        with pytest.raises(SitewatchError, match="not a report folder"):
            create_app(workspace, report_dir=folder)


# -- versions and conflicts -------------------------------------------------------------------
def test_an_assessment_is_added_changed_and_deleted_with_versions(client, site_ids):
    added = client.post("/api/assessments", json=_assessment(site_ids[0], author="analyst1"),
                        headers=AUTH)
    assert added.status_code == 201
    record = added.json()
    assert record["assessment_id"].startswith("A-") and record["probability_low"] == 0.55
    assert added.headers["etag"] == f'"{record["version"]}"'
    assert added.headers["location"] == f"/api/assessments/{record['assessment_id']}"
    url = added.headers["location"]
    assert client.get(url).json() == record

    changed = client.put(url, json={"confidence": "very likely"},
                         headers={**AUTH, "If-Match": added.headers["etag"]})
    assert changed.status_code == 200
    assert changed.json()["confidence"] == "very likely"
    assert changed.json()["judgement"] == "a walled compound"  # untouched fields stay
    assert changed.json()["version"] != record["version"]
    listed = client.get(f"/api/sites/{site_ids[0]}").json()["analyst"]["assessments"]
    assert [(a["assessment_id"], a["version"]) for a in listed] == [
        (record["assessment_id"], changed.json()["version"])]
    assert listed[0]["confidence_text"] == "very likely (80-95 %)"

    gone = client.delete(url, headers={**AUTH, "If-Match": changed.json()["version"]})
    assert gone.status_code == 200 and gone.json()["confidence"] == "very likely"
    assert client.get(url).status_code == 404


def test_two_tabs_editing_the_same_assessment_do_not_overwrite_each_other(client, site_ids):
    record = client.post("/api/assessments", json=_assessment(site_ids[0]),
                         headers=AUTH).json()
    url = f"/api/assessments/{record['assessment_id']}"
    tab_a = tab_b = record["version"]  # both tabs loaded the same record

    first = client.put(url, json={"judgement": "a logistics depot"},
                       headers={**AUTH, "If-Match": tab_a})
    assert first.status_code == 200
    second = client.put(url, json={"judgement": "a school"},
                        headers={**AUTH, "If-Match": f'"{tab_b}"'})
    assert second.status_code == 409
    detail = second.json()["detail"]
    assert "changed by someone else" in detail and "reload" in detail
    assert second.json()["current"] == first.json()
    assert client.get(url).json()["judgement"] == "a logistics depot"

    stale_delete = client.delete(url, headers={**AUTH, "If-Match": tab_b})
    assert stale_delete.status_code == 409 and client.get(url).status_code == 200
    unversioned = client.put(url, json={"judgement": "a school"}, headers=AUTH)
    assert unversioned.status_code == 428 and "If-Match" in unversioned.json()["detail"]
    current = first.json()["version"]
    assert client.delete(url, headers={**AUTH, "If-Match": current}).status_code == 200
    again = client.delete(url, headers={**AUTH, "If-Match": current})
    assert again.status_code == 404 and "deleted" in again.json()["detail"]


def test_concurrent_edits_from_threads_let_exactly_one_win(client, site_ids):
    record = client.post("/api/assessments", json=_assessment(site_ids[0]),
                         headers=AUTH).json()
    url = f"/api/assessments/{record['assessment_id']}"
    statuses = []

    def edit(judgement):
        response = client.put(url, json={"judgement": judgement},
                              headers={**AUTH, "If-Match": record["version"]})
        statuses.append((response.status_code, judgement))

    threads = [threading.Thread(target=edit, args=(f"judgement {i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(code for code, _ in statuses) == [200, 409, 409, 409]
    winner = next(judgement for code, judgement in statuses if code == 200)
    assert client.get(url).json()["judgement"] == winner


def test_events_and_notes_from_the_page(client, workspace, site_ids):
    with Workspace.open(workspace) as ws:
        site = ws.rows("sites", "site_id = ?", (site_ids[0],))[0]
    event = client.post("/api/events", json={
        "occurred": "2019-06-01", "kind": "strike", "site_id": site_ids[0],
        "description": "reported air strike", "url": "https://example.org/report",
        "credibility": "2"}, headers=AUTH)
    assert event.status_code == 201
    assert event.json()["credibility"] == "2 probably true"
    assert (event.json()["lon"], event.json()["lat"]) == pytest.approx(
        (site["centroid_lon"], site["centroid_lat"]))  # placed at the site
    moved = client.put(f"/api/events/{event.json()['event_id']}", json={"kind": "visit"},
                       headers={**AUTH, "If-Match": event.json()["version"]})
    assert moved.status_code == 200 and moved.json()["kind"] == "visit"
    assert moved.json()["lon"] == event.json()["lon"]

    note = client.post("/api/notes", json={"text": "walls visible", "subject": site_ids[0]},
                       headers=AUTH)
    assert note.status_code == 201 and isinstance(note.json()["note_id"], int)
    analyst = client.get(f"/api/sites/{site_ids[0]}").json()["analyst"]
    assert [n["text"] for n in analyst["notes"]] == ["walls visible"]
    assert [e["kind"] for e in analyst["events"]] == ["visit"]
    url = f"/api/notes/{note.json()['note_id']}"
    assert client.put(url, json={"text": "x"}, headers={**AUTH, "If-Match": "x"}
                      ).status_code == 405  # notes are deleted, not changed
    assert client.delete(url, headers={**AUTH, "If-Match": note.json()["version"]}
                         ).status_code == 200


def test_writes_land_in_the_workspace_store(client, workspace, site_ids):
    record = client.post("/api/assessments", json=_assessment(site_ids[-1], notes="stored"),
                         headers=AUTH).json()
    with Workspace.open(workspace) as ws:
        rows = ws.rows("assessments", "assessment_id = ?", (record["assessment_id"],))
    assert rows[0]["notes"] == "stored" and rows[0]["site_id"] == site_ids[-1]


# -- starting the server ----------------------------------------------------------------------
def test_listening_beyond_loopback_needs_a_token(workspace):
    for host in ("0.0.0.0", "192.0.2.10", "::"):
        with pytest.raises(SitewatchError, match="without a token"):
            serve(workspace, host=host)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_serve_says_where_and_how_to_write_and_stops(workspace):
    ready = []
    thread = threading.Thread(target=serve, args=(workspace,), kwargs={
        "port": 0, "allow_write": True, "on_ready": ready.append}, daemon=True)
    thread.start()
    for _ in range(200):
        if ready:
            break
        threading.Event().wait(0.05)
    [started] = ready
    assert started.url.startswith("http://127.0.0.1:") and not started.exposed
    assert started.token in started.message and "#token=" in started.message
    response = httpx.get(started.url + "api/workspace", timeout=30)
    assert response.status_code == 200 and response.json()["writable"] is True
    started.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(SitewatchError, match="choose another port"):
            serve(workspace, port=holder.getsockname()[1])


def test_an_invalid_workspace_is_refused_at_start(tmp_path):
    with pytest.raises(SitewatchError, match="not a sitewatch workspace"):
        create_app(tmp_path)


def test_before_and_after_default_to_clear_dates_around_the_change():
    days = ["2019-01-01", "2019-02-01", "2019-03-01", "2019-04-01", "2019-05-01"]
    clear = [0.0, 0.0, 0.0, 0.0, 0.0]
    assert pick_before_after(days, clear, "2019-03-01", "2019-04-01") == (days[2], days[4])
    cloudy_end = [0.0, 0.5, 0.0, 0.0, 0.9]
    assert pick_before_after(days, cloudy_end, "2019-02-01", "2019-03-01") == (days[0], days[3])
    assert pick_before_after(days, clear, None, "2019-03-01") == (days[1], days[4])
    assert pick_before_after(days, clear, None, "2019-01-01") == (None, days[4])
    assert pick_before_after(days, [1.0] * 5, None, None) == (days[0], days[4])
