"""Real servers on 127.0.0.1 for the STAC tests: a STAC API (``rustac serve``, from the rustac
package) and an HTTP file server that honours Range requests (the rangehttpserver package),
which counts the bytes it sends and can be told to fail."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

import pystac
import requests
from RangeHTTPServer import RangeRequestHandler

#: Seconds a server is given to start answering.
START_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _CountingHandler(RangeRequestHandler):
    """Range requests, with the bytes sent counted and the server's faults applied."""

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        self.server.requests.append(self.path)

    def send_head(self):
        server = self.server
        if server.delay_s:
            time.sleep(server.delay_s)
        with server.lock:
            failures = server.failures.get(self.path, 0)
            if failures:
                server.failures[self.path] = failures - 1
        if failures:
            self.send_error(500, "injected failure")
            return None
        return super().send_head()

    def copyfile(self, source, outputfile):
        server = self.server

        class Counting:
            def write(self, data):
                with server.lock:
                    server.bytes_sent += len(data)
                return outputfile.write(data)

        super().copyfile(source, Counting())


class RangeFileServer:
    """Serve ``root`` at ``self.url`` on 127.0.0.1 (a context manager).

    ``bytes_sent`` counts the body bytes sent; ``fail(path, n)`` makes the next ``n`` requests
    of ``path`` answer HTTP 500; ``delay_s`` slows every request.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                         partial(_CountingHandler, directory=str(self.root)))
        self.httpd.daemon_threads = True
        self.httpd.bytes_sent = 0
        self.httpd.requests = []
        self.httpd.failures = {}
        self.httpd.delay_s = 0.0
        self.httpd.lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def bytes_sent(self) -> int:
        return self.httpd.bytes_sent

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def fail(self, path: str, times: int) -> None:
        with self.httpd.lock:
            self.httpd.failures[path] = times

    def reset_counts(self) -> None:
        with self.httpd.lock:
            self.httpd.bytes_sent = 0
            self.httpd.requests.clear()

    def __enter__(self) -> RangeFileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)


class StacApiServer:
    """``rustac serve`` of a collection and its items at ``self.url`` (a context manager)."""

    def __init__(self, collection: Path, items: Path):
        self.hrefs = [str(collection), str(items)]
        self.url = f"http://127.0.0.1:{free_port()}/"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> StacApiServer:
        rustac = shutil.which("rustac")
        assert rustac, "the rustac command (pip install rustac) is needed for the STAC tests"
        address = self.url.removeprefix("http://").rstrip("/")
        self.process = subprocess.Popen([rustac, "serve", *self.hrefs, "--addr", address],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url, timeout=1).ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"rustac serve did not answer at {self.url}")

    def __exit__(self, *exc_info) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def publish(simulation_dir: Path, base_url: str, out_dir: Path, *, collection: str,
            item_ids: list[str] | None = None, properties: dict | None = None,
            asset_keys: dict[str, str] | None = None) -> tuple[Path, Path]:
    """Write a collection and an ItemCollection of the simulation's items whose asset hrefs
    are ``base_url/<item>/<file>`` (the simulation folder served by a :class:`RangeFileServer`);
    ``properties`` are added to every item, and ``asset_keys`` renames assets and their band
    (``{"B02": "blue"}``: Earth Search's keys). Returns (collection path, items path)."""
    catalog = pystac.Catalog.from_file(str(simulation_dir / "catalog.json"))
    features = []
    for item in sorted(catalog.get_items(recursive=True), key=lambda item: item.id):
        if item_ids is not None and item.id not in item_ids:
            continue
        for asset in item.assets.values():
            asset.href = f"{base_url}/{item.id}/{Path(asset.href).name}"
        for old_key, new_key in (asset_keys or {}).items():
            if old_key in item.assets:
                asset = item.assets.pop(old_key)
                for band in asset.extra_fields.get("eo:bands") or []:
                    band["name"] = new_key
                item.assets[new_key] = asset
        item.collection_id = collection
        item.clear_links()
        item.properties.update(properties or {})
        features.append(item.to_dict(include_self_link=False, transform_hrefs=False))
    out_dir.mkdir(parents=True, exist_ok=True)
    collection_path = out_dir / "collection.json"
    collection_path.write_text(json.dumps({
        "type": "Collection", "stac_version": "1.1.0", "id": collection, "license": "other",
        "description": "simulated scenes served for the tests",
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                   "temporal": {"interval": [["2000-01-01T00:00:00Z", None]]}},
        "links": []}))
    items_path = out_dir / "items.json"
    items_path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return collection_path, items_path
