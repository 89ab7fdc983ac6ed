"""Onset dates of the time-series detection against the simulator's truth, and the false change
that clouded dates leave behind.

    sitewatch demo --out demo && python bench/onset.py demo

Reads the demo folder's workspace (both AOIs: Sentinel-2 ``border-crossing`` and VHR
``compound``), the newest time-series layers of each, and the simulator's ``truth.geojson``.
For every true changing site, over its pixels with a persistent break:

- the share whose onset day (middle of the onset window) is within one revisit (the median gap
  between acquisitions) of the start of one of the site's true phases;
- the share whose onset window [earliest, latest] contains such a start.

For clouds: of all pixel-dates masked as cloud or shadow outside the true sites (buffered by two
pixels), the share that carry a persistent break dated on that very acquisition.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import shapely
from pyproj import Transformer

from sitewatch.detect import TIMESERIES
from sitewatch.stack import Grid, latest_stack, open_stack
from sitewatch.store import Workspace

AOIS = {"border-crossing": "s2", "compound": "vhr"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="Folder written by 'sitewatch demo'.")
    args = parser.parse_args()
    with Workspace.open(args.demo / "workspace") as ws:
        for aoi, sensor in AOIS.items():
            truth = json.loads((args.demo / f"imagery-{sensor}" / "truth.geojson").read_text())
            score_aoi(ws, aoi, sensor, truth)


def score_aoi(ws: Workspace, aoi: str, sensor: str, truth: dict) -> None:
    record = latest_stack(ws, aoi)
    grid = Grid(**record["properties"]["grid"])
    dataset = open_stack(ws.root / record["path"])
    layers = _timeseries_layers(ws, aoi)
    onset, early, late = (_read(ws, layers[k]).astype(np.int64)
                          for k in ("onset", "onset_earliest", "onset_latest"))
    persistent = _read(ws, layers["persistent"]).astype(bool)
    days = np.array([np.datetime64(str(t)[:10], "D") for t in dataset.time.values])
    revisit = float(np.median(np.diff(days).astype(np.int64)))
    to_grid = Transformer.from_crs(4326, grid.epsg, always_xy=True)
    near_sites = np.zeros(grid.shape, bool)
    for feature in truth["features"]:
        props = feature["properties"]
        if props.get("role") != "site":
            continue
        polygon = shapely.transform(shapely.geometry.shape(feature["geometry"]),
                                    to_grid.transform, interleaved=False)
        near_sites |= _rasterise(polygon.buffer(2 * grid.resolution), grid)
        starts = np.array([np.datetime64(p["start"], "D").astype(np.int64)
                           for p in props["phases"] if p["phase"] != "intact"])
        if props["type"] == "stable_structure" or not starts.size:
            continue
        hit = _rasterise(polygon, grid) & persistent
        error = np.abs(onset[hit][:, None] - starts[None]).min(axis=1)
        gap = np.maximum(early[hit][:, None] - starts[None],
                         starts[None] - late[hit][:, None]).clip(0).min(axis=1)
        print(f"{sensor} {props['type']}: {hit.sum()} px with a persistent break; onset day "
              f"within one revisit ({revisit:.0f} d) of a true phase start: "
              f"{100 * np.mean(error <= revisit):.1f} % (median error {np.median(error):.0f} d);"
              f" onset window contains one: {100 * np.mean(gap == 0):.1f} %")
    clouded = broke = 0
    for t, day in enumerate(days.astype(np.int64)):
        cloud = (dataset["mask"].isel(time=t).values >= 2) & ~near_sites
        clouded += int(cloud.sum())
        broke += int((cloud & persistent & (onset == day)).sum())
    print(f"{sensor}: {clouded} clouded pixel-dates outside the true sites, {broke} carry a "
          f"persistent break dated on that acquisition ({100 * broke / max(clouded, 1):.3f} %)")


def _timeseries_layers(ws: Workspace, aoi: str) -> dict[str, str]:
    rows = ws.rows("rasters", "aoi = ? AND kind LIKE 'change:%'", (aoi,), order_by="fid DESC")
    run = next(r["run_id"] for r in rows if r["properties"].get("method") == TIMESERIES)
    return {r["kind"].removeprefix("change:"): r["path"] for r in rows if r["run_id"] == run}


def _read(ws: Workspace, path: str) -> np.ndarray:
    with rasterio.open(ws.root / path) as src:
        return src.read(1)


def _rasterise(polygon, grid: Grid) -> np.ndarray:
    return rasterio.features.rasterize([polygon], out_shape=grid.shape,
                                       transform=grid.transform).astype(bool)


if __name__ == "__main__":
    main()
