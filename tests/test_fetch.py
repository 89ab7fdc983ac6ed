"""STAC search and fetch against real servers on 127.0.0.1 (``rustac serve`` and a Range HTTP
file server): window reads, idempotent re-runs, resumption, retries, faults, the Sentinel-2
processing-baseline offset."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import rasterio
from aiosmtpd.controller import Controller
from typer.testing import CliRunner

from sitewatch import api
from sitewatch.alerts import SIGNATURE_HEADER, signature
from sitewatch.cli import app
from sitewatch.errors import SitewatchError
from sitewatch.simulate import simulate
from stac_servers import RangeFileServer, StacApiServer, free_port, publish

#: lon/lat box of about 0.9 x 0.7 km inside the simulated 8 x 6 km scene
AOI = "40.950,34.389,40.960,34.395"
COLLECTION = "sim-s2"


@pytest.fixture(scope="module")
def simulation(tmp_path_factory) -> Path:
    """Six simulated Sentinel-2 dates of 8 x 6 km whose bands are COGs of 128 px tiles, so that
    a window read of a small AOI needs only a few of each file's tiles."""
    out = simulate(tmp_path_factory.mktemp("sim") / "sim", sensor="s2", seed=3, n_dates=6,
                   size_m=(8000, 6000)).out_dir
    for band in out.glob("sim-*/B*.tif"):
        with rasterio.open(band) as source:
            data, profile = source.read(), source.profile
        profile.update(driver="COG", blocksize=128, compress="DEFLATE", predictor=2)
        for key in ("blockxsize", "blockysize", "tiled", "interleave"):
            profile.pop(key, None)
        with rasterio.open(band, "w", **profile) as target:
            target.write(data)
    return out


@pytest.fixture
def files(simulation):
    """The file server of one test: a new port, so GDAL's cache of what an earlier test read
    from another URL cannot answer for it."""
    with RangeFileServer(simulation) as server:
        yield server


@pytest.fixture
def stac_api(simulation, files, tmp_path_factory):
    collection, items = publish(simulation, files.url, tmp_path_factory.mktemp("api"),
                                collection=COLLECTION)
    with StacApiServer(collection, items) as server:
        yield server


def _asset_bytes(simulation: Path) -> int:
    return sum(p.stat().st_size for p in simulation.glob("sim-*/*.tif")
               if p.name != "cloud_truth.tif")


def test_search_lists_items_in_dates_and_cloud_limit(stac_api):
    rows = api.search(stac_api.url, [COLLECTION], aoi=AOI, start="2018-10-01", end="2019-01-15")
    assert [r["id"] for r in rows] == ["sim-s2-20181015", "sim-s2-20181115", "sim-s2-20181215",
                                       "sim-s2-20190115"]
    cloudy = rows[0]["cloud_cover"]
    assert cloudy > 10
    clear = api.search(stac_api.url, [COLLECTION], aoi=AOI, start="2018-10-01",
                       end="2019-01-15", max_cloud=cloudy - 1)
    assert "sim-s2-20181015" not in [r["id"] for r in clear]
    result = CliRunner().invoke(app, ["search", "--stac", stac_api.url, "--collection",
                                      COLLECTION, "--aoi", AOI, "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 6


def test_fetch_reads_only_the_window_then_nothing(stac_api, files, simulation, tmp_path):
    files.reset_counts()
    run = api.fetch(tmp_path / "ws", stac_api.url, [COLLECTION], aoi=AOI, name="gate")
    assert len(run.report.fetched) == 6 and not run.report.failed
    read_share = files.bytes_sent / _asset_bytes(simulation)
    assert read_share < 0.25, f"read {read_share:.0%} of the assets for 1/75 of the scene"
    assert len(run.ingested.added) == 6
    item_dir = tmp_path / "ws" / "imagery" / "gate" / COLLECTION / "sim-s2-20190215"
    with rasterio.open(item_dir / "B02.tif") as b02, rasterio.open(item_dir / "B11.tif") as b11:
        assert b02.res == (10.0, 10.0) and b11.res == (20.0, 20.0)
        assert b02.bounds == b11.bounds  # every band covers the same ground
        assert b02.width < 150 and b02.height < 120
        window = b02.read(1)
    with rasterio.open(simulation / "sim-s2-20190215" / "B02.tif") as source:
        col, row = ~source.transform @ (b02.bounds.left, b02.bounds.top)
        original = source.read(1)[round(row):round(row) + window.shape[0],
                                  round(col):round(col) + window.shape[1]]
    np.testing.assert_array_equal(window, original)
    assert not list((tmp_path / "ws").rglob("*.part"))

    files.reset_counts()
    again = api.fetch(tmp_path / "ws", stac_api.url, [COLLECTION], aoi=AOI, name="gate")
    assert len(again.report.complete) == 6 and again.report.assets_read == 0
    assert files.requests == [] and files.bytes_sent == 0
    assert len(again.ingested.unchanged) == 6 and not again.ingested.added


def test_fetch_retries_a_transient_server_error(stac_api, files, tmp_path):
    files.fail("/sim-s2-20181115/B04.tif", 2)
    run = api.fetch(tmp_path / "ws", stac_api.url, [COLLECTION], aoi=AOI, name="gate")
    assert not run.report.failed and len(run.report.fetched) == 6


def test_a_failing_asset_is_one_line_and_leaves_nothing_half_written(stac_api, files,
                                                                      tmp_path):
    files.fail("/sim-s2-20181215/B03.tif", 1000)
    try:
        result = CliRunner().invoke(app, ["fetch", "-w", str(tmp_path / "ws"), "--stac",
                                          stac_api.url, "--collection", COLLECTION, "--aoi",
                                          AOI, "--name", "gate"])
    finally:
        files.fail("/sim-s2-20181215/B03.tif", 0)
    assert result.exit_code == 1
    assert "sim-s2-20181215" in result.output and "/sim-s2-20181215/B03.tif" in result.output
    assert "Traceback" not in result.output
    assert "5 fetched" in result.output
    failed_dir = tmp_path / "ws" / "imagery" / "gate" / COLLECTION / "sim-s2-20181215"
    assert not failed_dir.exists()
    assert len(api.scenes(tmp_path / "ws")) == 5

    files.reset_counts()
    run = api.fetch(tmp_path / "ws", stac_api.url, [COLLECTION], aoi=AOI, name="gate")
    assert run.report.fetched == ["sim-s2-20181215"] and len(run.report.complete) == 5
    assert {path.split("/")[1] for path in files.requests} == {"sim-s2-20181215"}
    assert len(api.scenes(tmp_path / "ws")) == 6


def test_a_truncated_asset_fails_its_item_only(simulation, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(simulation, served)
    victim = served / "sim-s2-20190115" / "B08.tif"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    with RangeFileServer(served) as files:
        collection, items = publish(served, files.url, tmp_path / "api", collection=COLLECTION)
        with StacApiServer(collection, items) as server:
            run = api.fetch(tmp_path / "ws", server.url, [COLLECTION], aoi=AOI, name="gate")
    assert [item for item, _ in run.report.failed] == ["sim-s2-20190115"]
    assert "B08" in run.report.failed[0][1] and files.url in run.report.failed[0][1]
    assert len(run.report.fetched) == 5


def test_api_down_or_failing_is_one_line_and_writes_nothing(files, tmp_path):
    down = f"http://127.0.0.1:{free_port()}/"
    result = subprocess.run([sys.executable, "-m", "sitewatch", "fetch", "-w",
                             str(tmp_path / "ws"), "--stac", down, "--collection", COLLECTION,
                             "--aoi", AOI], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and down in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ws").exists()
    files.fail("/api/", 1000)
    try:
        with pytest.raises(SitewatchError, match="STAC API"):
            api.search(files.url + "/api/", [COLLECTION], aoi=AOI)
    finally:
        files.fail("/api/", 0)
    with pytest.raises(SitewatchError, match="neither a STAC API URL"):
        api.search("ftp://example", [COLLECTION], aoi=AOI)


def _rewrite_bands(item_dir: Path, change) -> None:
    """Rewrite every band COG of ``item_dir`` with ``change(data)`` applied to its pixels."""
    for band in item_dir.glob("B*.tif"):
        with rasterio.open(band) as dataset:
            data, profile = dataset.read(), dataset.profile
        profile.update(driver="COG")
        for key in ("blockxsize", "blockysize", "tiled", "interleave"):
            profile.pop(key, None)
        with rasterio.open(band, "w", **profile) as dataset:
            dataset.write(change(data).astype(data.dtype))


def _fetch_one(root: Path, item: str, baseline: str, workspace: Path) -> tuple[np.ndarray, int]:
    """Serve ``root``, fetch ``item`` labelled with ``baseline``; its B04 and the offset
    the fetch removed."""
    with RangeFileServer(root) as files:
        collection, items = publish(root, files.url, workspace.parent / f"api-{workspace.name}",
                                    collection=COLLECTION, item_ids=[item],
                                    properties={"s2:processing_baseline": baseline})
        with StacApiServer(collection, items) as server:
            api.fetch(workspace, server.url, [COLLECTION], aoi=AOI, name="gate")
    local = workspace / "imagery" / "gate" / COLLECTION / item
    with rasterio.open(local / "B04.tif") as dataset:
        red = dataset.read(1)
    record = json.loads((local / f"{item}.json").read_text())["properties"]
    return red, record["sitewatch:boa_offset_removed"]


def test_processing_baseline_offset_is_removed_only_where_the_pixels_carry_it(simulation,
                                                                             tmp_path):
    item = "sim-s2-20190215"
    plain, offset, dark = tmp_path / "plain", tmp_path / "offset", tmp_path / "dark"
    for root in (plain, offset, dark):
        shutil.copytree(simulation, root)
    _rewrite_bands(offset / item, lambda data: np.where(data > 0, data + 1000, 0))
    # already harmonised by the provider, with water or shadow (reflectance < 0.1) in 5 %
    _rewrite_bands(dark / item, lambda data: np.where(
        (np.arange(data.size).reshape(data.shape) % 20 == 0) & (data > 0), 300, data))

    red, removed = _fetch_one(offset, item, "05.10", tmp_path / "ws-offset")
    red_plain, removed_plain = _fetch_one(plain, item, "03.01", tmp_path / "ws-plain")
    assert (removed, removed_plain) == (1000, 0)
    np.testing.assert_array_equal(red, red_plain)  # the offset removed exactly
    _, removed_dark = _fetch_one(dark, item, "05.10", tmp_path / "ws-dark")
    assert removed_dark == 0  # pixels below 1000 cannot carry the offset: left as they are


def test_a_killed_fetch_resumes_without_rereading_complete_items(stac_api, files, tmp_path):
    workspace = tmp_path / "ws"
    files.httpd.delay_s = 0.05
    command = [sys.executable, "-m", "sitewatch", "fetch", "-w", str(workspace), "--stac",
               stac_api.url, "--collection", COLLECTION, "--aoi", AOI, "--name", "gate",
               "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if len(_complete_items(workspace)) >= 2:
                break
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        files.httpd.delay_s = 0.0
    complete = _complete_items(workspace)
    assert 2 <= len(complete) < 6
    files.reset_counts()
    run = api.fetch(workspace, stac_api.url, [COLLECTION], aoi=AOI, name="gate")
    assert set(run.report.complete) == complete
    assert not {path.split("/")[1] for path in files.requests} & complete
    assert len(api.scenes(workspace)) == 6


def _complete_items(workspace: Path) -> set[str]:
    """The items whose JSON is written (an item's JSON is written last)."""
    return {p.parent.name for p in workspace.glob("imagery/gate/*/*/*.json")
            if p.stem == p.parent.name}


class _Receiver(BaseHTTPRequestHandler):
    """A webhook receiver: keeps each POST's body and signature header."""

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((body, self.headers.get(SIGNATURE_HEADER)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format, *args):  # noqa: A002
        pass


class _Inbox:
    """aiosmtpd handler keeping the messages it is given."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append(envelope.content.decode("utf-8", "replace"))
        return "250 OK"


@pytest.fixture
def smtp_server(tmp_path):
    """A real SMTP server on 127.0.0.1 that requires STARTTLS (self-signed certificate)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(),
                            require_starttls=True, tls_context=context)
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


def test_watch_file_with_a_stac_source_fetches_only_new_items_and_alerts_once(
        simulation, files, smtp_server, tmp_path, monkeypatch):
    """First run: four dates are published and fetched, and the webhook receiver is down.
    Two more dates appear; the second run fetches only those two, finds the compound built in
    the meantime, and delivers every alert not yet delivered, once; a third run sends none."""
    controller, inbox = smtp_server
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", "s3cret")
    hook_port = free_port()
    dates = sorted(p.name for p in simulation.glob("sim-s2-*"))
    watch = tmp_path / "watch.toml"
    template = f"""
workspace = "ws"

[imagery]

[[imagery.stac]]
url = "{{url}}"
collections = ["{COLLECTION}"]
max_cloud = 80

[alerts]
webhook = "http://127.0.0.1:{hook_port}/hook"
webhook_secret_env = "TEST_WEBHOOK_SECRET"
email_to = ["analyst@example.org"]
smtp_host = "127.0.0.1"
smtp_port = {controller.port}

[[aoi]]
name = "compound"
bbox = [40.935, 34.385, 40.950, 34.396]
"""
    runs, receiver = [], None
    try:
        for published in (dates[:4], dates, dates):
            collection, items = publish(simulation, files.url,
                                        tmp_path / f"api-{len(runs)}", collection=COLLECTION,
                                        item_ids=published)
            if len(runs) == 1:  # the receiver is up from the second run on
                receiver = ThreadingHTTPServer(("127.0.0.1", hook_port), _Receiver)
                receiver.received = []
                threading.Thread(target=receiver.serve_forever, daemon=True).start()
            with StacApiServer(collection, items) as server:
                watch.write_text(template.replace("{url}", server.url))
                files.reset_counts()
                runs.append(api.watch_run(watch))
                requested = {path.split("/")[1] for path in files.requests}
            if len(runs) == 2:
                assert requested == set(dates[4:])  # only the two new items were read
    finally:
        if receiver is not None:
            receiver.shutdown()
            receiver.server_close()
    first, second, third = runs
    assert first.new_scenes == 4 and second.new_scenes == 2 and third.new_scenes == 0
    assert second.aois[0].sites is not None and not second.aois[0].up_to_date
    sites = api.sites(tmp_path / "ws", aoi="compound")
    assert any(s["change_type"] == "new_construction" for s in sites), sites

    recorded = first.alerts.recorded + second.alerts.recorded
    assert first.alerts.recorded and not third.alerts.recorded
    # the second run's one alert: the compound, found on the first run, is now under way
    (new_phase,) = second.alerts.recorded
    assert "/under_construction/" in new_phase
    assert not first.alerts.delivery.webhook  # the receiver was down: kept for later
    if first.alerts.recorded:
        assert "webhook" in first.alerts.delivery.errors[0]
    documents = [json.loads(body) for body, _ in receiver.received]
    assert sorted(d["alert_id"] for d in documents) == sorted(recorded)  # each once
    for body, header in receiver.received:
        assert header == "sha256=" + signature(body, "s3cret")
    phase_alert = next(d for d in documents if d["alert_id"] == new_phase)
    assert phase_alert["event"] == "new_phase" and phase_alert["findings"]
    assert phase_alert["phase"]["phase"] == "under_construction"
    compound = phase_alert
    assert compound["site"]["length_m"] > 0
    assert len(inbox.messages) == sum(bool(r.alerts.recorded) for r in runs)
    assert compound["site"]["site_id"] in "".join(inbox.messages)
    rows = api.alerts(tmp_path / "ws")
    assert all(row["webhook_sent_at"] and row["email_sent_at"] for row in rows)
    listed = CliRunner().invoke(app, ["alerts", "list", "-w", str(tmp_path / "ws"), "--json"])
    assert listed.exit_code == 0
    assert [row["alert_id"] for row in json.loads(listed.output)] == recorded


@pytest.mark.parametrize(("table", "message"), [
    ('url = "ftp://example.org"\ncollections = ["c"]', "imagery.stac[1].url"),
    ('url = "earth-search"\ncollections = ["c"]\nmax_cloud = 140', "imagery.stac[1].max_cloud"),
    ('url = "earth-search"', "imagery.stac[1].collections"),
    ('url = "earth-search"\ncollections = ["c"]\nkey = 1', "unknown key"),
])
def test_watch_file_stac_mistakes_are_found_before_anything_is_written(tmp_path, table,
                                                                       message):
    watch = tmp_path / "watch.toml"
    watch.write_text(f'workspace = "ws"\n[imagery]\n[[imagery.stac]]\n{table}\n'
                     '[[aoi]]\nname = "a"\nbbox = [40.9, 34.3, 41.0, 34.4]\n')
    with pytest.raises(SitewatchError, match=message.replace("[", r"\[").replace("]", r"\]")):
        api.watch_run(watch)
    assert not (tmp_path / "ws").exists()


def test_slow_servers_time_out_in_one_line(files, stac_api, monkeypatch, tmp_path):
    """An API or a file server slower than the timeouts: a one-line error naming it."""
    from sitewatch.ingest import fetch, search

    files.httpd.delay_s = 2.0
    monkeypatch.setattr(search, "API_TIMEOUT_S", (1.0, 1.0))
    monkeypatch.setattr(search, "API_RETRIES", 0)
    with pytest.raises(SitewatchError, match="no answer within 1 s"):
        api.search(files.url + "/api/", [COLLECTION], aoi=AOI)
    monkeypatch.setitem(fetch.GDAL_HTTP_OPTIONS, "GDAL_HTTP_TIMEOUT", 1)
    monkeypatch.setitem(fetch.GDAL_HTTP_OPTIONS, "GDAL_HTTP_MAX_RETRY", 0)
    monkeypatch.setattr(fetch, "READ_RETRIES", 0)
    run = api.fetch(tmp_path / "ws", stac_api.url, [COLLECTION], aoi=AOI, name="gate",
                    assets=["B02"], start="2019-01-01")
    files.httpd.delay_s = 0.0
    assert len(run.report.failed) == 2 and run.ingested is None
    assert all(files.url in reason for _, reason in run.report.failed)


def test_earth_search_asset_keys_become_sentinel2_band_names(simulation, files, tmp_path):
    """Earth Search v1 keys and names Sentinel-2 bands by common name (``blue``, ``rededge1``,
    ``nir08``): fetched, they are ``B02``, ``B05``, ``B8A`` as for every other Sentinel-2
    source, so the stack's cloud tests and indices find them."""
    keys = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
            "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
            "B10": "cirrus", "B11": "swir16", "B12": "swir22"}
    collection, items = publish(simulation, files.url, tmp_path / "api", collection=COLLECTION,
                                item_ids=["sim-s2-20180915", "sim-s2-20181115"],
                                asset_keys=keys)
    with StacApiServer(collection, items) as server:
        api.fetch(tmp_path / "ws", server.url, [COLLECTION], aoi=AOI, name="gate")
    scene = api.scenes(tmp_path / "ws")[0]
    assert sorted(band["name"] for band in scene["bands"]) == sorted(keys)


def test_alerts_of_a_site_without_phases_are_recorded_once(tmp_path):
    """A site whose lifecycle gave no phase: one new-site alert, nothing on the next run."""
    from sitewatch.alerts import record_alerts
    from sitewatch.store import Workspace

    with Workspace.open(tmp_path / "ws", create=True) as ws:
        with ws.transaction() as txn:
            txn.insert("sites", {"site_id": "a-001", "aoi": "a", "change_type": "destruction",
                                 "status": "destroyed", "first_seen": "2019-01-15",
                                 "area_m2": 900.0, "length_m": 30.0, "width_m": 30.0,
                                 "centroid_lat": 34.39, "centroid_lon": 40.97,
                                 "properties": {"phases": []}})
        assert record_alerts(ws, ["a"]) == ["a/a-001/site/"]
        assert record_alerts(ws, ["a"]) == []
