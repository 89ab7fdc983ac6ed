"""First paint and tile latency of the web viewer on a Sentinel-2-tile-sized stack.

Writes (or reopens with ``--keep``) a workspace holding one synthetic 10980 x 10980 px stack at
10 m (UTM 37N; 4 bands B02 B03 B04 B08 of textured reflectance, all clear) through the stack's
own writer (:mod:`sitewatch.stack.output`, the Zarr layout and chunks ``sitewatch stack``
writes), then starts ``sitewatch serve`` on it in a child process and, as a browser would with
six connections:

first paint
    from a fresh server: the AOI's map JSON, then every tile of the whole-AOI view of a
    1400 x 900 px map (the level whose tiles fit the grid in the view, as OpenLayers' fit
    picks it) of the latest date. Cold for that date, so it includes reading the whole date
    once for its overview.
other date
    the same view on another date (a step of the time slider: its overview is built then).
tile latency, cold and warm
    a pan-and-zoom walk of ``--tiles`` tiles at every level from the overview ones down to the
    stack's pixel, at random places of the grid, requested the first time (cold: rendered,
    chunks read from disk or the OS cache) and again (warm: the viewer's tile cache); p50, p95
    and max in milliseconds.

It also prints the server's peak resident memory and CPU time (``resource.getrusage`` of the
child once stopped).

    python bench/viewer_tiles.py [--size 10980] [--dates 2] [--tiles 200] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import shapely
from pyproj import Transformer
from rasterio.windows import Window
from shapely.geometry import box

from sitewatch.stack import Grid
from sitewatch.stack.output import CHUNK, CLEAR, consolidate_metadata, create, write_block
from sitewatch.store import Workspace
from sitewatch.store.geopackage import now_iso
from sitewatch.web.tiles import TILE_PX, TileGrid

AOI = "s2-tile"
BANDS = ["B02", "B03", "B04", "B08"]
EPSG, WEST, NORTH, PIXEL_M = 32637, 600_000.0, 3_900_000.0, 10.0
VIEW_PX = (1400, 900)  # the map's size on screen, pixels
CONNECTIONS = 6  # a browser's connections per host (HTTP/1.1)


@dataclass
class Outcome:
    """What the stack writer needs to know of one date (as sitewatch.stack.passes has it)."""

    acquired: str
    scene_ids: list[str]
    clear_fraction: float = 1.0
    applied_shift: tuple[float, float] = (0.0, 0.0)
    shift_confidence: float | None = None


def texture(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Blocky multi-scale ground texture, 0..1, one strip."""
    out = np.zeros((rows, cols), np.float32)
    for cell, weight in ((512, 0.5), (64, 0.3), (4, 0.2)):
        coarse = rng.random((rows // cell + 2, cols // cell + 2), dtype=np.float32)
        out += weight * np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:rows, :cols]
    return out


def build_workspace(root: Path, size: int, n_dates: int) -> None:
    """A workspace with one AOI and its synthetic stack of ``n_dates`` dates."""
    grid = Grid(EPSG, PIXEL_M, size, size, WEST, NORTH)
    relative = Path("stacks") / f"{AOI}-bench.zarr"
    path = root / relative
    path.parent.mkdir(parents=True)
    outcomes = [Outcome(f"2019-{d + 1:02d}-15T08:00:00Z", [f"bench-{d}"])
                for d in range(n_dates)]
    store = create(path, grid, BANDS, outcomes, AOI)
    flags = np.full((CHUNK, size), CLEAR, np.uint8)
    for t in range(n_dates):
        rng = np.random.default_rng(t)
        for row in range(0, size, CHUNK):
            rows = min(CHUNK, size - row)
            ground = texture(rng, rows, size)
            data = np.stack([0.04 + (0.15 + 0.05 * b + 0.03 * t) * ground for b in range(4)])
            write_block(store, t, Window(0, row, size, rows), data, flags[:rows])
        print(f"  wrote date {t + 1} of {n_dates}", flush=True)
    consolidate_metadata(path)
    to_wgs84 = Transformer.from_crs(EPSG, 4326, always_xy=True).transform
    footprint = shapely.transform(box(*grid.bounds).segmentize(500), to_wgs84,
                                  interleaved=False)
    with Workspace.open(root, create=True) as ws, ws.transaction() as txn:
        txn.insert("aois", {"geom": footprint, "name": AOI, "created_at": now_iso()})
        txn.insert("rasters", {"geom": footprint, "path": str(relative), "kind": "stack",
                               "run_id": "bench", "aoi": AOI,
                               "properties": {"grid": grid.to_dict(), "bands": BANDS}})


def start_server(workspace: Path) -> tuple[subprocess.Popen, str]:
    """``sitewatch serve`` on a free loopback port; its process and URL."""
    server = subprocess.Popen([sys.executable, "-m", "sitewatch", "serve", "-w", str(workspace),
                               "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if not found:
        server.kill()
        raise SystemExit(f"the viewer did not start: {line!r}")
    return server, found.group(0)


def fit_level(tiles: TileGrid) -> int:
    """The level OpenLayers shows when fitting the grid into :data:`VIEW_PX`: the finest
    whose resolution still shows the whole grid."""
    g = tiles.grid
    needed = max(g.width * g.resolution / VIEW_PX[0], g.height * g.resolution / VIEW_PX[1])
    levels = [z for z in range(tiles.top + 1) if g.resolution * tiles.factor(z) >= needed]
    return max(levels) if levels else 0


def fetch_all(client: httpx.Client, urls: list[str]) -> list[float]:
    """GET every URL over :data:`CONNECTIONS` connections; each one's latency, ms."""
    def one(url: str) -> float:
        start = time.perf_counter()
        response = client.get(url)
        response.raise_for_status()
        return 1000 * (time.perf_counter() - start)

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        return list(pool.map(one, urls))


def walk(tiles: TileGrid, n: int) -> list[tuple[int, int, int]]:
    """Tiles of a pan-and-zoom walk: a view of 6 x 4 tiles at a random level (from the fit
    level down to the stack's pixel) and place, until ``n`` tiles."""
    rng = random.Random(0)
    seen: list[tuple[int, int, int]] = []
    while len(seen) < n:
        z = rng.randint(max(0, fit_level(tiles) - 1), tiles.top)
        columns, rows = tiles.tiles(z)
        x0, y0 = rng.randrange(columns), rng.randrange(rows)
        for y in range(y0, min(rows, y0 + 4)):
            for x in range(x0, min(columns, x0 + 6)):
                if (z, x, y) not in seen:
                    seen.append((z, x, y))
    return seen[:n]


def stats(ms: list[float]) -> str:
    values = np.array(ms)
    return (f"p50 {np.percentile(values, 50):7.1f}  p95 {np.percentile(values, 95):7.1f}  "
            f"max {values.max():7.1f} ms  (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10980, help="grid side, pixels")
    parser.add_argument("--dates", type=int, default=2)
    parser.add_argument("--tiles", type=int, default=200, help="tiles of the pan-and-zoom walk")
    parser.add_argument("--keep", type=Path, help="workspace folder to keep (reused if built)")
    args = parser.parse_args()
    if args.dates < 2:
        raise SystemExit("--dates must be at least 2 (first paint, then another date)")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="sitewatch-bench-viewer-"))
    try:
        workspace = folder / "ws"
        if not (workspace / "sitewatch.gpkg").is_file():
            print(f"writing a {args.size} x {args.size} px stack of {args.dates} dates in "
                  f"{workspace}", flush=True)
            start = time.perf_counter()
            build_workspace(workspace, args.size, args.dates)
            print(f"  {time.perf_counter() - start:.0f} s", flush=True)
        run(workspace, args.tiles)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def run(workspace: Path, n_tiles: int) -> None:
    server, url = start_server(workspace)
    try:
        with httpx.Client(base_url=url, timeout=600,
                          limits=httpx.Limits(max_connections=CONNECTIONS)) as client:
            start = time.perf_counter()
            content = client.get(f"/api/aois/{AOI}").json()
            grid = Grid(**content["grid"])
            tiles = TileGrid(grid)
            dates = [d["date"] for d in content["dates"]]
            z = fit_level(tiles)
            columns, rows = tiles.tiles(z)
            view = [f"/api/aois/{AOI}/imagery/{dates[-1]}/{z}/{x}/{y}.png"
                    for y in range(rows) for x in range(columns)]
            map_ms = 1000 * (time.perf_counter() - start)
            fetch_all(client, view)
            first_paint = time.perf_counter() - start
            start = time.perf_counter()
            fetch_all(client, [u.replace(dates[-1], dates[0]) for u in view])
            other_date = time.perf_counter() - start
            walked = [f"/api/aois/{AOI}/imagery/{dates[-1]}/{z}/{x}/{y}.png"
                      for z, x, y in walk(tiles, n_tiles)]
            cold = fetch_all(client, walked)
            warm = fetch_all(client, walked)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"grid {grid.width} x {grid.height} px at {grid.resolution:g} m, {len(dates)} dates; "
          f"tile levels 0-{tiles.top} of {TILE_PX} px; whole-AOI view at level {z} "
          f"({len(view)} tiles); {CONNECTIONS} connections")
    print(f"first paint (map JSON {map_ms:.0f} ms + {len(view)} tiles, cold): "
          f"{first_paint:.2f} s")
    print(f"the same view on another date (cold: its overview is built): {other_date:.2f} s")
    print(f"pan-and-zoom tiles, cold: {stats(cold)}")
    print(f"pan-and-zoom tiles, warm: {stats(warm)}")
    print(f"server: peak RSS {usage.ru_maxrss / 1024:.0f} MB, CPU "
          f"{usage.ru_utime + usage.ru_stime:.1f} s")


if __name__ == "__main__":
    main()
