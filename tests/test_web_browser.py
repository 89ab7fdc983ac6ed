"""The viewer in a real browser: Playwright driving Debian's chromium (``/usr/bin/chromium``, or
``SITEWATCH_CHROMIUM``) against the server on a free port.

An analyst opens the page, steps the time slider, opens a site, adds an assessment with the
token, reloads and finds it again. Screenshots of these states go to ``SITEWATCH_SCREENSHOTS``
(default ``build/screenshots`` in the repository). A missing browser fails the test: CI installs
it (``apt-get install chromium``; Playwright's own browser download cannot work offline).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from sitewatch.store import Workspace
from sitewatch.web import create_app
from web_fixtures import AOI, workspace_copy

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("SITEWATCH_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(os.environ.get("SITEWATCH_SCREENSHOTS", REPO_ROOT / "build" / "screenshots"))
TOKEN = "browser-test-token"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return workspace_copy(tmp_path_factory, "web-browser")


@pytest.fixture(scope="module")
def server_url(workspace):
    """The viewer (writable with :data:`TOKEN`) served by uvicorn in a background thread."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(workspace, token=TOKEN), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"the viewer did not start on port {port}")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


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


def _shoot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def test_an_analyst_steps_through_time_opens_a_site_and_records_an_assessment(
        browser, server_url, workspace):
    with Workspace.open(workspace) as ws:
        site = ws.rows("sites", order_by="area_m2 DESC")[0]["site_id"]
        dates = [day[:10] for day in sorted({row["acquired"] for row in ws.rows("scenes")})]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    requests, problems = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    shots = []

    # The map opens on the latest date, its imagery drawn under the overlays.
    page.goto(server_url)
    page.wait_for_selector(f"#map[data-state=ready][data-imagery-date='{dates[-1]}']")
    assert page.locator(f"#layer-sites [data-site-id='{site}']").count() == 1
    assert page.locator("#layer-places text").count() >= 1
    assert page.locator("#date-ticks .tick").count() == len(dates)
    assert page.locator("#mode").text_content() == "token needed to edit"
    shots.append(_shoot(page, "01-map-latest-date"))

    # Step the time slider back two dates: the imagery of that date is drawn.
    page.click("#date-prev")
    page.click("#date-prev")
    page.wait_for_selector(f"#map[data-state=ready][data-imagery-date='{dates[-3]}']")
    assert dates[-3] in page.locator("#date-label").text_content()
    shots.append(_shoot(page, "02-map-stepped-back"))

    # Open the site from the map: automatic findings, labelled apart, and its frames.
    page.click(f"#layer-sites g[data-site-id='{site}']")
    page.wait_for_selector("#site-detail .automatic .findings")
    automatic = page.locator("#site-detail .automatic")
    assert "Automatic" in automatic.locator(".kind-label").text_content()
    assert "compound" in automatic.locator(".findings").text_content()
    assert "Analyst" in page.locator("#site-detail .analyst .kind-label").text_content()
    page.locator("#compare").scroll_into_view_if_needed()
    page.wait_for_selector(".frame-before img[data-loaded]")
    page.wait_for_selector(".frame-after img[data-loaded]")
    shots.append(_shoot(page, "03-site-open"))

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
    shots.append(_shoot(page, "04-assessment-added"))

    # Reload: the address keeps the AOI, date and site; the assessment comes from the store.
    page.reload()
    page.wait_for_selector(f"#map[data-state=ready][data-aoi='{AOI}']")
    record = page.locator("ul[data-kind=assessments] li.record")
    record.first.wait_for()
    assert "A walled logistics compound" in record.first.text_content()
    assert "browser test" in record.first.text_content()
    assert page.locator("#site-detail h2").text_content() == site
    record.first.scroll_into_view_if_needed()
    shots.append(_shoot(page, "05-after-reload"))

    with Workspace.open(workspace) as ws:
        stored = ws.rows("assessments", "site_id = ?", (site,))
    assert [row["judgement"] for row in stored] == ["A walled logistics compound"]
    assert all(url.startswith(server_url) or url.startswith("data:") for url in requests), [
        url for url in requests if not url.startswith(server_url)]
    assert problems == []
    for path in shots:
        assert path.stat().st_size > 1000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.close()
