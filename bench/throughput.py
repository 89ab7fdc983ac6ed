"""Throughput of the tiled pipeline (stack, detect, sites) against the I/O floor.

Generates a Sentinel-2-size scene series (default 10980 x 10980 px at 10 m, bands B02, B03,
B04, B08 as float32 reflectance, 6 dates, a few construction sites appearing on the fourth
date) as tiled (512 px) DEFLATE GeoTIFFs, block by block and deterministically; with
``--overviews`` gives them external overviews as Sentinel-2 L2A COGs have (the stack's survey
then reads those instead of every pixel); ingests them; then times, each in a fresh process:

- the I/O floor: a plain read of every input pixel, block by block;
- the pipeline in one process (``scheduler="inline"``), on a LocalCluster of 1 worker and of 2
  workers (``--workers``);
- with ``--workers incremental``: the last date arriving after a run of the others, in one
  process (a fresh workspace gets the first dates and is run untimed; the last date is ingested
  and the incremental run is timed).

The AOI is the scenes' footprint less 100 m on each side. For each run it prints the wall
time, megapixels per second (grid pixels x dates / wall), the peak resident set of every
process (client and workers), the ratio to the I/O floor, the time of each phase (plan:
survey, co-registration and fits; tiles; assembly and sites in the client) and how long each
worker ran strip tasks (against the tiles phase: the time workers waited).

    python bench/throughput.py --size 2048 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

BANDS = ("B02", "B03", "B04", "B08")
#: Reflectance of bare ground and of a new roof, per band (unitless 0..1).
BARE = np.array([0.12, 0.16, 0.20, 0.28], np.float32)
ROOF = np.array([0.17, 0.19, 0.21, 0.20], np.float32)
DATES = ("20190105", "20190304", "20190503", "20190702", "20190831", "20191030")
CHANGE_DATE = 3
BLOCK = 512
WEST, NORTH = 600_000.0, 3_900_000.0


def generate(folder: Path, size: int) -> list[Path]:
    """Write the scenes (one 4-band GeoTIFF per date) block by block; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    sites = [(int(r), int(c), int(h), int(w)) for r, c, h, w in zip(
        rng.integers(0, size - 40, 8), rng.integers(0, size - 40, 8),
        rng.integers(8, 30, 8), rng.integers(8, 30, 8), strict=True)]
    paths = []
    for t, day in enumerate(DATES):
        path = folder / f"bench_{day}.tif"
        paths.append(path)
        if path.exists():
            continue
        profile = dict(driver="GTiff", width=size, height=size, count=len(BANDS),
                       dtype="float32", crs="EPSG:32637",
                       transform=from_origin(WEST, NORTH, 10, 10),
                       tiled=True, blockxsize=BLOCK, blockysize=BLOCK, compress="DEFLATE",
                       predictor=3, nodata=np.nan, BIGTIFF="IF_SAFER")
        tmp = path.with_name(f".{path.name}.tmp")
        with rasterio.open(tmp, "w", **profile) as dst:
            for i, band in enumerate(BANDS):
                dst.set_band_description(i + 1, band)
            for row in range(0, size, BLOCK):
                for col in range(0, size, BLOCK):
                    window = Window(col, row, min(BLOCK, size - col), min(BLOCK, size - row))
                    dst.write(_block(window, t, sites), window=window)
        tmp.replace(path)
    return paths


def _block(window: Window, t: int, sites) -> np.ndarray:
    rng = np.random.default_rng([t, window.row_off, window.col_off])
    rows = np.arange(window.row_off, window.row_off + window.height)[:, None]
    cols = np.arange(window.col_off, window.col_off + window.width)[None, :]
    texture = 0.03 * np.sin(rows / 37.0) * np.cos(cols / 53.0)
    data = BARE[:, None, None] + texture + rng.normal(0, 0.005, (len(BANDS), *texture.shape))
    if t >= CHANGE_DATE:
        for r, c, h, w in sites:
            inside = ((rows >= r) & (rows < r + h)) & ((cols >= c) & (cols < c + w))
            data[:, inside] = ROOF[:, None]
    return data.astype(np.float32)


def set_overviews(paths: list[Path], wanted: bool) -> None:
    """Give the scenes external average overviews (``.ovr``, factors 2 to 32), as the
    Sentinel-2 L2A COGs carry them, or remove them. The scenes' own bytes are not touched."""
    from rasterio.enums import Resampling

    for path in paths:
        sidecar = path.with_name(path.name + ".ovr")
        if not wanted:
            sidecar.unlink(missing_ok=True)
        elif not sidecar.exists():
            with rasterio.Env(TIFF_USE_OVR=True, COMPRESS_OVERVIEW="DEFLATE"), \
                    rasterio.open(path, "r+") as dst:
                dst.build_overviews([2, 4, 8, 16, 32], Resampling.average)


def io_floor(paths: list[Path]) -> float:
    """Seconds to read every pixel of ``paths`` block by block."""
    started = time.perf_counter()
    for path in paths:
        with rasterio.open(path) as src:
            for _, window in src.block_windows(1):
                src.read(window=window)
    return time.perf_counter() - started


def measure(workspace: Path, size: int, mode: str, tile_px: int) -> dict:
    """One pipeline run in this process; ``mode`` is ``inline``, ``incremental`` or a worker
    count."""
    from pyproj import Transformer
    from shapely.geometry import Polygon

    import sitewatch
    from sitewatch.scale import INLINE, run_tiled
    from sitewatch.stack import AOI

    to_lonlat = Transformer.from_crs(32637, 4326, always_xy=True).transform
    inset = 10 * 10  # metres: keep the AOI's grid inside the scene
    west, east = WEST + inset, WEST + size * 10 - inset
    south, north = NORTH - size * 10 + inset, NORTH - inset
    # The scene's footprint less the inset, corner by corner: its UTM grid is that rectangle.
    polygon = Polygon([to_lonlat(x, y) for x, y in ((west, south), (east, south),
                                                     (east, north), (west, north))])
    aoi = AOI(f"bench-{mode}-{time.time_ns()}", polygon)  # a new AOI: never up to date
    scheduler = None if mode.isdigit() else INLINE
    workers = int(mode) if mode.isdigit() else None
    if mode == "incremental":
        paths = sorted((workspace.parent / "imagery").glob("bench_*.tif"))
        workspace = workspace.with_name(f"ws-{aoi.name}")
        sitewatch.ingest(paths[:-1], workspace)
        run_tiled(workspace, aoi, tile_px=tile_px, overlap_px=64, scheduler=INLINE)
        sitewatch.ingest(paths[-1:], workspace)
    marks = {}  # phase -> seconds since the start, at its last progress line

    def progress(message: str) -> None:
        phase = ("plan" if "planned" in message else "tiles" if message.startswith("Tiles")
                 else None)
        if phase:
            marks[phase] = time.perf_counter() - started

    started = time.perf_counter()
    run = run_tiled(workspace, aoi, tile_px=tile_px, overlap_px=64, scheduler=scheduler,
                    workers=workers, on_progress=progress)
    wall = time.perf_counter() - started
    phases = {"plan_s": marks.get("plan", 0.0),
              "tiles_s": marks.get("tiles", 0.0) - marks.get("plan", 0.0),
              "finalise_s": wall - marks.get("tiles", 0.0)}
    job = run.jobs[0]
    grid = job.plan.selection.grid
    workers, busy = {}, {}
    for report in run.reports:
        workers[report.pid] = max(workers.get(report.pid, 0), report.peak_rss_bytes)
        busy[report.pid] = busy.get(report.pid, 0.0) + report.seconds
    if mode == "incremental":
        shutil.rmtree(workspace)
    else:  # the run's stack store: 9.6 GB for a full tile, kept by every run
        from sitewatch.stack.build import slug

        for store in (workspace / "rasters" / "stacks").glob(f"{slug(aoi.name)}-*"):
            shutil.rmtree(store)
    return {"mode": mode, "wall_s": wall, "pixels": grid.width * grid.height,
            "dates": len(job.plan.kept), "sites": len(job.sites.sites),
            "reused_dates": job.plan.reused, **phases,
            "client_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_peak_rss_mb": sorted(v / 2**20 for v in workers.values()),
            "worker_busy_s": sorted(busy.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980, help="scene side, pixels")
    parser.add_argument("--out", type=Path, default=Path("bench-throughput"))
    parser.add_argument("--tile-px", type=int, default=1024)
    parser.add_argument("--workers", default="inline,1,2",
                        help="comma-separated runs: inline, incremental and/or worker counts")
    parser.add_argument("--overviews", action="store_true",
                        help="give the scenes overviews (.ovr) as COGs have; without it any "
                             "are removed")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workspace = args.out / "ws"
    if args.measure:
        print(json.dumps(measure(workspace, args.size, args.measure, args.tile_px)))
        return
    import sitewatch

    started = time.perf_counter()
    paths = generate(args.out / "imagery", args.size)
    print(f"generated {len(paths)} dates of {args.size} x {args.size} px x {len(BANDS)} bands "
          f"in {time.perf_counter() - started:.1f} s")
    sitewatch.ingest(paths, workspace)
    started = time.perf_counter()
    set_overviews(paths, args.overviews)
    if args.overviews:
        print(f"overviews: {time.perf_counter() - started:.1f} s to build (once)")
    floor = io_floor(paths)
    mpx = args.size * args.size * len(paths) / 1e6
    print(f"I/O floor: {floor:.1f} s to read {mpx:.0f} Mpx x {len(BANDS)} bands "
          f"({mpx / floor:.1f} Mpx/s)")
    for mode in args.workers.split(","):
        done = subprocess.run([sys.executable, __file__, "--size", str(args.size), "--out",
                               str(args.out), "--tile-px", str(args.tile_px), "--measure", mode],
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{mode}: the run failed\n{done.stderr[-4000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rate = result["pixels"] * result["dates"] / 1e6 / result["wall_s"]
        reused = (f" (dates read: {result['dates'] - result['reused_dates']} of "
                  f"{result['dates']})" if mode == "incremental" else "")
        print(f"{mode:>6}{reused}: wall {result['wall_s']:.1f} s, {rate:.2f} Mpx/s, "
              f"{result['wall_s'] / floor:.1f}x the I/O floor, {result['sites']} sites, "
              f"peak RSS client {result['client_peak_rss_mb']:.0f} MB, workers "
              f"{', '.join(f'{v:.0f}' for v in result['worker_peak_rss_mb'])} MB; "
              f"plan {result['plan_s']:.1f} s, tiles {result['tiles_s']:.1f} s, "
              f"assembly and sites {result['finalise_s']:.1f} s; strip tasks "
              f"{', '.join(f'{v:.0f}' for v in result['worker_busy_s'])} s a worker")


if __name__ == "__main__":
    main()
