"""The viewer in a real browser: Playwright driving Debian's chromium (``/usr/bin/chromium``, or
``SITEWATCH_CHROMIUM``) against the server on a free port.

An analyst opens the page, steps the time slider (buttons and keyboard), opens a site from the
map, adds an assessment with the token, reloads and finds it again; pans and zooms (tiles of
the finer levels load), reads the cursor's coordinates, measures a distance, a bearing and an
area (checked against pyproj.Geod), swipes and sets two dates side by side, and reopens a
permalink. Every request stays on the viewer's origin and the page logs no error (a
Content-Security-Policy violation is one). Screenshots go to ``SITEWATCH_SCREENSHOTS``
(default: a ``screenshots`` folder under pytest's temporary directory). A missing browser fails
the test: CI installs it (``apt-get install chromium``; Playwright's own browser download cannot
work offline).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import threading
import time
from pathlib import Path
from urllib.parse import parse_qsl

import mgrs
import numpy as np
import pytest
import uvicorn
from PIL import Image
from pyproj import Geod, Transformer

from sitewatch.store import Workspace
from sitewatch.web import create_app
from web_fixtures import AOI, VHR_AOI, vhr_workspace, workspace_copy

CHROMIUM = Path(os.environ.get("SITEWATCH_CHROMIUM", "/usr/bin/chromium"))
TOKEN = "browser-test-token"
TIMEOUT_MS = 30_000
EPSG = 32637
TILE = re.compile(r"/api/aois/[^/]+/(imagery|change)/[^/]+/(\d+)/(\d+)/(\d+)\.png\?v=\w+$")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return workspace_copy(tmp_path_factory, "web-browser")


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = os.environ.get("SITEWATCH_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


@contextlib.contextmanager
def _served(workspace: Path, **options):
    """The viewer of ``workspace`` served by uvicorn in a background thread on a free
    loopback port; stopped on leaving."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(workspace, **options), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"the viewer did not start on port {port}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server_url(workspace):
    """The viewer (writable with :data:`TOKEN`)."""
    with _served(workspace, token=TOKEN) as url:
        yield url


@pytest.fixture(scope="module")
def vhr_url(tmp_path_factory):
    """The read-only viewer of the 0.5 m workspace."""
    with _served(vhr_workspace(tmp_path_factory)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: pip install playwright (no 'playwright install': "
                    "the test drives Debian's chromium)", pytrace=False)
    if not CHROMIUM.is_file():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium, or set "
                    "SITEWATCH_CHROMIUM to a Chromium executable", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox"])
        yield chromium
        chromium.close()


class Watched:
    """A page of the viewer with the URLs it requested and the errors it logged."""

    def __init__(self, browser, server_url: str, screenshots: Path):
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.page.set_default_timeout(TIMEOUT_MS)
        self.server_url, self.screenshots = server_url, screenshots
        self.requests: list[str] = []
        self.problems: list[str] = []
        self.shots: list[Path] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))
        self.page.on("console", lambda msg: self.problems.append(msg.text)
                     if msg.type == "error" else None)

    def shoot(self, name: str) -> Path:
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = self.screenshots / f"{name}.png"
        self.page.screenshot(path=str(path))
        self.shots.append(path)
        return path

    def ready(self) -> None:
        self.page.wait_for_selector("#map[data-state=ready]")

    def open(self, url: str) -> None:
        """Go to ``url`` and wait until its map is ready."""
        self.page.goto(url)
        self.ready()

    def settle(self, action) -> None:
        """Do ``action`` (which moves the map) and wait until the move ended and its tiles
        are drawn."""
        moves = int(self.page.locator("#map").get_attribute("data-moves") or 0)
        action()
        self.page.wait_for_function(
            "n => { const m = document.getElementById('map').dataset; "
            "return Number(m.moves || 0) > n && m.state === 'ready'; }", arg=moves)

    def view(self) -> tuple[float, float, float, dict]:
        """The view's centre (grid CRS, m), resolution (m per pixel) from the permalink, and
        the main map's box on the page."""
        params = dict(parse_qsl(self.page.evaluate("location.hash.slice(1)")))
        box = self.page.locator("#map-a").bounding_box()
        return float(params["x"]), float(params["y"]), float(params["res"]), box

    def pixel(self, x: float, y: float) -> tuple[float, float]:
        """The page pixel of grid point (x, y)."""
        cx, cy, res, box = self.view()
        return (box["x"] + box["width"] / 2 + (x - cx) / res,
                box["y"] + box["height"] / 2 - (y - cy) / res)

    def point(self, px: float, py: float) -> tuple[float, float]:
        """The grid point (m) under page pixel (px, py)."""
        cx, cy, res, box = self.view()
        return (cx + (px - box["x"] - box["width"] / 2) * res,
                cy - (py - box["y"] - box["height"] / 2) * res)

    def tiles(self, since: int = 0) -> list[tuple[int, int, int]]:
        """(z, x, y) of the tiles requested since request number ``since``."""
        found = [TILE.search(url) for url in self.requests[since:]]
        return [tuple(int(v) for v in m.groups()[1:]) for m in found if m]

    def check(self) -> None:
        """Nothing left this origin, nothing logged an error, every screenshot is a PNG."""
        outside = [url for url in self.requests
                   if not (url.startswith(self.server_url) or url.startswith("data:"))]
        assert outside == []
        assert self.problems == []
        for path in self.shots:
            assert path.stat().st_size > 1000
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        self.page.close()


def _grid_point(geometry) -> tuple[float, float]:
    """A point inside a lon/lat geometry, in the grid CRS."""
    inside = geometry.representative_point()
    return Transformer.from_crs(4326, EPSG, always_xy=True).transform(inside.x, inside.y)


def test_an_analyst_steps_through_time_opens_a_site_and_records_an_assessment(
        browser, server_url, workspace, screenshots):
    with Workspace.open(workspace) as ws:
        site_row = ws.rows("sites", order_by="area_m2 DESC")[0]
        dates = [day[:10] for day in sorted({row["acquired"] for row in ws.rows("scenes")})]
    site = site_row["site_id"]
    watched = Watched(browser, server_url, screenshots)
    page = watched.page

    # The map opens on the latest date, its imagery tiles drawn under the overlays.
    page.goto(server_url)
    page.wait_for_selector(f"#map[data-state=ready][data-imagery-date='{dates[-1]}']")
    assert page.locator("#map").get_attribute("data-sites") == "1"
    assert page.locator(f"#site-table tr[data-site-id='{site}']").count() == 1
    assert page.locator("#date-ticks .tick").count() == len(dates)
    assert page.locator("#mode").text_content() == "token needed to edit"
    assert {url.rsplit("/", 4)[1] for url in watched.requests if "/imagery/" in url} == {
        dates[-1]}
    assert all("?v=" in url for url in watched.requests if "/imagery/" in url)
    watched.shoot("01-map-latest-date")

    # Step the time slider back two dates with its button and once more with the keyboard;
    # End goes back to the latest date.
    page.click("#date-prev")
    page.click("#date-prev")
    page.wait_for_selector(f"#map[data-state=ready][data-imagery-date='{dates[-3]}']")
    assert dates[-3] in page.locator("#date-label").text_content()
    page.locator("#map-a").click(position={"x": 5, "y": 400})  # focus on the map, no site
    page.keyboard.press("ArrowLeft")
    page.wait_for_selector(f"#map[data-state=ready][data-imagery-date='{dates[-4]}']")
    assert page.locator("#date-slider").input_value() == str(len(dates) - 4)
    watched.shoot("02-map-stepped-back")
    page.keyboard.press("End")
    page.wait_for_selector(f"#map[data-state=ready][data-imagery-date='{dates[-1]}']")

    # Open the site by clicking it on the map: automatic findings, labelled apart, frames.
    page.mouse.click(*watched.pixel(*_grid_point(site_row["geom"])))
    page.wait_for_selector("#site-detail .automatic .findings")
    assert page.locator("#map").get_attribute("data-selected-site") == site
    automatic = page.locator("#site-detail .automatic")
    assert "Automatic" in automatic.locator(".kind-label").text_content()
    assert "compound" in automatic.locator(".findings").text_content()
    assert "Analyst" in page.locator("#site-detail .analyst .kind-label").text_content()
    page.locator("#compare").scroll_into_view_if_needed()
    page.wait_for_selector(".frame-before img[data-loaded]")
    page.wait_for_selector(".frame-after img[data-loaded]")
    assert page.locator(".frame-after svg path").count() == 1  # the footprint then
    watched.shoot("03-site-open")

    # Enter the token and add an assessment.
    page.fill("#token-input", TOKEN)
    page.click("#token-form button[type=submit]")
    assert page.locator("#mode").text_content() == "editing enabled"
    form = page.locator("form[data-kind=assessments]")
    form.locator("[name=judgement]").fill("A walled logistics compound")
    form.locator("[name=confidence]").select_option("very likely")
    form.locator("[name=author]").fill("browser test")
    form.locator("[name=judgement]").scroll_into_view_if_needed()
    form.locator("button[type=submit]").click()
    added = page.locator("ul[data-kind=assessments] li.record")
    added.first.wait_for()
    assert "A walled logistics compound" in added.first.text_content()
    assert "very likely (80-95 %)" in added.first.text_content()
    added.first.scroll_into_view_if_needed()
    watched.shoot("04-assessment-added")

    # Reload: the address keeps the AOI, date and site; the assessment comes from the store.
    page.reload()
    page.wait_for_selector(f"#map[data-state=ready][data-aoi='{AOI}']")
    record = page.locator("ul[data-kind=assessments] li.record")
    record.first.wait_for()
    assert "A walled logistics compound" in record.first.text_content()
    assert "browser test" in record.first.text_content()
    assert page.locator("#site-detail h2").text_content() == site
    record.first.scroll_into_view_if_needed()
    watched.shoot("05-after-reload")

    with Workspace.open(workspace) as ws:
        stored = ws.rows("assessments", "site_id = ?", (site,))
    assert [row["judgement"] for row in stored] == ["A walled logistics compound"]
    watched.check()


def test_panning_and_zooming_load_finer_tiles_and_the_permalink_restores_the_view(
        browser, vhr_url, screenshots):
    """On the 0.5 m stack: from the whole AOI (its coarsest tile) down to the stack's pixel."""
    watched = Watched(browser, vhr_url, screenshots)
    page = watched.page
    watched.open(vhr_url)
    content = page.evaluate(f"fetch('/api/aois/{VHR_AOI}').then(r => r.json())")
    resolutions = content["tiles"]["resolutions"]
    top = len(resolutions) - 1
    west, south, east, north = content["tiles"]["extent"]
    # Start from a permalink showing the whole AOI at the coarsest level's resolution.
    page.goto(f"{vhr_url}#aoi={VHR_AOI}&x={(west + east) / 2}&y={(south + north) / 2}"
              f"&res={resolutions[0]}")
    page.reload()
    watched.ready()
    assert {z for z, _, _ in watched.tiles()} >= {0}
    watched.shoot("06-vhr-whole-aoi")
    box = page.locator("#map-a").bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.move(*centre)

    # Zoom in with the mouse wheel to the stack's pixel: tiles of every level load, the
    # finest last; a screen pixel is then 0.5 m.
    before = len(watched.requests)
    while watched.view()[2] > resolutions[-1]:
        watched.settle(lambda: page.mouse.wheel(0, -300))
    levels = {z for z, _, _ in watched.tiles(before)}
    assert top in levels and len(levels) >= 2
    assert watched.view()[2] == resolutions[-1]
    watched.shoot("07-vhr-full-resolution")

    # Zoom in once more (beyond the stack's pixel) and pan by dragging: tiles of the newly
    # seen ground load.
    watched.settle(lambda: page.mouse.wheel(0, -300))
    before, seen = len(watched.requests), set(watched.tiles())

    def drag():
        page.mouse.move(*centre)
        page.mouse.down()
        page.mouse.move(centre[0] - 600, centre[1] - 250, steps=10)
        page.mouse.up()

    watched.settle(drag)
    new = set(watched.tiles(before)) - seen
    assert new and {z for z, _, _ in new} == {top}
    watched.shoot("08-vhr-panned")

    # The permalink reopens the same view in a new page.
    link = page.locator("#permalink").get_attribute("href")
    x, y, res, _ = watched.view()
    watched.check()
    again = Watched(browser, vhr_url, screenshots)
    again.open(link)
    x2, y2, res2, _ = again.view()
    assert (x2, y2, res2) == (x, y, res)
    again.check()


def test_the_readout_and_measurements_match_pyproj(browser, server_url, screenshots):
    watched = Watched(browser, server_url, screenshots)
    page = watched.page
    watched.open(server_url)
    to_lonlat = Transformer.from_crs(EPSG, 4326, always_xy=True)
    box = page.locator("#map-a").bounding_box()

    # The readout: lat/lon, UTM and MGRS of the ground under the cursor.
    spot = (box["x"] + 0.3 * box["width"], box["y"] + 0.6 * box["height"])
    page.mouse.move(*spot)
    readout = page.locator("#readout")
    x, y = watched.point(*spot)
    res = watched.view()[2]
    shown_x, shown_y = (float(readout.get_attribute(f"data-{a}")) for a in "xy")
    assert abs(shown_x - x) <= res and abs(shown_y - y) <= res
    lon, lat = to_lonlat.transform(shown_x, shown_y)
    assert abs(float(readout.get_attribute("data-lon")) - lon) < 1e-6
    assert abs(float(readout.get_attribute("data-lat")) - lat) < 1e-6
    expected_mgrs = mgrs.MGRS().toMGRS(lat, lon, MGRSPrecision=5)
    shown_mgrs = readout.get_attribute("data-mgrs")
    assert shown_mgrs[:5] == expected_mgrs[:5]  # zone and 100 km square
    assert all(abs(int(shown_mgrs[i:i + 5]) - int(expected_mgrs[i:i + 5])) <= 1 for i in (5, 10))
    assert "UTM 37N" in readout.text_content() and "MGRS" in readout.text_content()

    # A distance and bearing over three clicked points, finished with Enter.
    geod = Geod(ellps="WGS84")
    page.click("#measure-line")
    clicks = [(0.2, 0.3), (0.7, 0.5), (0.8, 0.8)]
    for fx, fy in clicks:
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    page.keyboard.press("Enter")
    output = page.locator("#measure-output")
    page.wait_for_selector("#measure-output[data-done=yes]")
    vertices = json.loads(output.get_attribute("data-vertices"))
    assert len(vertices) == len(clicks)
    for (fx, fy), (vx, vy) in zip(clicks, vertices, strict=True):
        gx, gy = watched.point(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        assert abs(vx - gx) <= res and abs(vy - gy) <= res
    lons, lats = to_lonlat.transform(*np.array(vertices).T)
    truth = geod.line_length(lons, lats)
    azimuth = geod.inv(lons[0], lats[0], lons[-1], lats[-1])[0] % 360
    assert abs(float(output.get_attribute("data-length-m")) - truth) < 0.01
    assert abs(float(output.get_attribute("data-bearing-deg")) - azimuth) < 1e-5
    assert truth > 1000 and "m, bearing" in output.text_content()
    watched.shoot("09-distance-measured")

    # An area over four clicked corners.
    page.click("#measure-area")
    for fx, fy in [(0.3, 0.2), (0.6, 0.25), (0.65, 0.7), (0.25, 0.6)]:
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#measure-output[data-done=yes][data-area-m2]")
    ring = json.loads(output.get_attribute("data-vertices"))
    lons, lats = to_lonlat.transform(*np.array(ring[:-1]).T)
    area, perimeter = geod.polygon_area_perimeter(lons, lats)
    assert abs(float(output.get_attribute("data-area-m2")) - abs(area)) < 0.1
    assert abs(float(output.get_attribute("data-perimeter-m")) - perimeter) < 0.01
    assert abs(area) > 1e5 and "ha" in output.text_content()
    watched.shoot("10-area-measured")
    watched.check()


def _map_pixels(page) -> np.ndarray:
    """The main map as drawn (RGB array), without its top and bottom strips where the
    comparison's label and swipe slider lie."""
    shot = Image.open(io.BytesIO(page.locator("#map-a").screenshot())).convert("RGB")
    return np.asarray(shot).astype(int)[50:-80]


def test_a_swipe_and_side_by_side_compare_two_dates_over_the_whole_map(
        browser, server_url, screenshots):
    watched = Watched(browser, server_url, screenshots)
    page = watched.page
    watched.open(server_url)
    dates = [o.text_content().split(" ")[0] for o in page.locator("#date-b option").all()]

    # The first date alone, then the latest alone: the two pictures to compare.
    page.keyboard.press("Home")
    page.wait_for_selector(f"#map[data-state=ready][data-imagery-date='{dates[0]}']")
    first = _map_pixels(page)
    page.keyboard.press("End")
    page.wait_for_selector(f"#map[data-state=ready][data-imagery-date='{dates[-1]}']")
    latest = _map_pixels(page)
    width = latest.shape[1]
    assert np.abs(first - latest).mean() > 2  # the dates differ on screen

    # Swipe at 50 %: the latest date left of the line, the first date right of it.
    page.select_option("#compare-mode", "swipe")
    page.select_option("#date-b", "0")
    watched.ready()
    swiped = _map_pixels(page)
    left, right = slice(0, width // 2 - 4), slice(width // 2 + 4, width)
    assert np.abs(swiped[:, left] - latest[:, left]).mean() < 1
    assert np.abs(swiped[:, right] - first[:, right]).mean() < 1
    assert "right of the line: " + dates[0] in page.locator("#compare-label").text_content()
    watched.shoot("11-swipe")
    page.locator("#swipe").fill("80")
    watched.ready()
    assert np.abs(_map_pixels(page)[:, left] - latest[:, left]).mean() < 1
    assert "mode=swipe" in page.evaluate("location.hash")

    # Side by side: a second map of the first date beside the main one, the same view.
    page.select_option("#compare-mode", "side")
    watched.ready()
    a, b = (page.locator(f"#map-{w}").bounding_box() for w in "ab")
    assert b["x"] > a["x"] and abs(a["width"] - b["width"]) < 4 and abs(a["y"] - b["y"]) < 1
    watched.shoot("12-side-by-side")

    # A change layer over both maps, with its legend.
    before = len(watched.requests)
    page.select_option("#change-layer", "onset")
    watched.ready()
    assert any("/change/onset/" in url for url in watched.requests[before:])
    legend = page.locator(".change-legend[data-layer=onset]")
    assert "Onset of change" in legend.text_content() and dates[0] in legend.text_content()
    assert "layer=onset" in page.evaluate("location.hash")
    watched.shoot("13-onset-layer")
    watched.check()
