"""STAC fetch: bytes read against the assets' sizes, time against odc-stac, incremental runs.

Simulates Sentinel-2 dates over a scene, rewrites every band as a COG with 1024 px tiles (as
Earth Search's), serves them on 127.0.0.1 with a Range HTTP server and a STAC API
(``rustac serve``), and measures:

1. ``sitewatch fetch`` of a small AOI: wall time, bytes the file server sent, the full size of
   the assets the items list;
2. odc-stac ``load`` of the same bands over the same box from the same servers (``--odc``);
3. with ``--incremental``, the watch-file run that adds one date to an AOI of ``--dates``
   dates against a full run of all of them in a fresh workspace, and whether both give the same
   sites.

    python bench/fetch.py [--scene-km 16] [--aoi-km 2] [--dates 6] [--odc] [--incremental]

Figures are wall-clock seconds of this process on the machine it runs on.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from stac_servers import RangeFileServer, StacApiServer, publish  # noqa: E402

from sitewatch import api  # noqa: E402
from sitewatch.simulate import simulate  # noqa: E402

COLLECTION = "sim-s2"


def retile(folder: Path, block: int) -> None:
    """Rewrite every band of the simulation as a COG with ``block`` px tiles."""
    for band in folder.glob("sim-*/B*.tif"):
        with rasterio.open(band) as source:
            data, profile = source.read(), source.profile
        profile.update(driver="COG", blocksize=block, compress="DEFLATE", predictor=2)
        for key in ("blockxsize", "blockysize", "tiled", "interleave"):
            profile.pop(key, None)
        with rasterio.open(band, "w", **profile) as target:
            target.write(data)


def aoi_box(folder: Path, aoi_km: float) -> tuple[float, float, float, float]:
    """A lon/lat box of ``aoi_km`` around the scene's centre."""
    with rasterio.open(next(folder.glob("sim-*/B02.tif"))) as dataset:
        bounds = rasterio.warp.transform_bounds(dataset.crs, "EPSG:4326", *dataset.bounds)
    lon, lat = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    half_lon, half_lat = aoi_km / 2 / 92.0, aoi_km / 2 / 111.0  # degrees near 34 N
    return lon - half_lon, lat - half_lat, lon + half_lon, lat + half_lat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene-km", type=float, default=16.0)
    parser.add_argument("--aoi-km", type=float, default=2.0)
    parser.add_argument("--dates", type=int, default=6)
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--odc", action="store_true", help="also time odc-stac load")
    parser.add_argument("--incremental", action="store_true",
                        help="time a run adding one date against a full run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sitewatch-bench-fetch-"))
    try:
        scene = work / "scene"
        side = args.scene_km * 1000
        simulate(scene, sensor="s2", seed=5, n_dates=args.dates, size_m=(side, side))
        retile(scene, args.block)
        bbox = aoi_box(scene, args.aoi_km)
        aoi = ",".join(f"{v:.6f}" for v in bbox)
        full = sum(p.stat().st_size for p in scene.glob("sim-*/B*.tif"))
        print(f"scene {args.scene_km:g} km, {args.dates} dates, {args.block} px tiles; "
              f"AOI {args.aoi_km:g} km; assets {full / 1e6:.1f} MB")
        with RangeFileServer(scene) as files:
            collection, items = publish(scene, files.url, work / "api", collection=COLLECTION)
            with StacApiServer(collection, items) as server:
                began = time.perf_counter()
                run = api.fetch(work / "ws", server.url, [COLLECTION], aoi=aoi, name="aoi")
                seconds = time.perf_counter() - began
                print(f"sitewatch fetch: {len(run.report.fetched)} items in {seconds:.1f} s, "
                      f"{files.bytes_sent / 1e6:.2f} MB read = "
                      f"{100 * files.bytes_sent / full:.1f} % of the assets, "
                      f"{len(files.requests)} requests")
                files.reset_counts()
                began = time.perf_counter()
                api.fetch(work / "ws", server.url, [COLLECTION], aoi=aoi, name="aoi")
                print(f"re-run: {time.perf_counter() - began:.1f} s, "
                      f"{files.bytes_sent} bytes read, {len(files.requests)} requests")
                if args.odc:
                    odc_load(server.url, bbox, files)
        if args.incremental:
            incremental(scene, bbox, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def odc_load(url: str, bbox, files: RangeFileServer) -> None:
    import odc.stac
    import pystac_client

    items = list(pystac_client.Client.open(url).search(
        collections=[COLLECTION], bbox=bbox).items())
    bands = [key for key in items[0].assets if key.startswith("B")]
    files.reset_counts()
    began = time.perf_counter()
    data = odc.stac.load(items, bands=bands, bbox=bbox, resolution=10,
                         groupby="solar_day").compute()
    seconds = time.perf_counter() - began
    print(f"odc-stac load: {data.sizes['time']} dates x {len(bands)} bands in {seconds:.1f} s, "
          f"{files.bytes_sent / 1e6:.2f} MB read, {len(files.requests)} requests")


def incremental(scene: Path, bbox, work: Path) -> None:
    dates = sorted(p.name for p in scene.glob("sim-s2-*"))

    def watch_run(workspace: Path, published: list[str]) -> tuple[float, list[dict]]:
        with RangeFileServer(scene) as files:
            collection, items = publish(scene, files.url, work / f"api-{len(published)}",
                                        collection=COLLECTION, item_ids=published)
            with StacApiServer(collection, items) as server:
                watch = workspace.parent / f"{workspace.name}.toml"
                watch.write_text(f'workspace = "{workspace.name}"\n[imagery]\n'
                                 f'[[imagery.stac]]\nurl = "{server.url}"\n'
                                 f'collections = ["{COLLECTION}"]\n[[aoi]]\nname = "aoi"\n'
                                 f"bbox = [{', '.join(f'{v:.6f}' for v in bbox)}]\n")
                began = time.perf_counter()
                api.watch_run(watch)
                seconds = time.perf_counter() - began
        sites = sorted((s["site_id"], s["change_type"], round(s["area_m2"]))
                       for s in api.sites(workspace))
        return seconds, sites

    full_s, full_sites = watch_run(work / "full", dates)
    watch_run(work / "step", dates[:-1])
    step_s, step_sites = watch_run(work / "step", dates)
    print(f"watch run, {len(dates)} dates from scratch: {full_s:.1f} s; adding the last date "
          f"to {len(dates) - 1}: {step_s:.1f} s ({100 * step_s / full_s:.0f} % of a full run); "
          f"same sites: {full_sites == step_sites} ({len(full_sites)} sites)")


if __name__ == "__main__":
    main()
