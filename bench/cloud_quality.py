"""Cloud-mask quality: IoU against the labelled Sentinel-2 chips, precision/recall against the
simulator's cloud truth.

    python bench/cloud_quality.py [--seeds 0 1 2]

Chips: ``$SITEWATCH_TEST_DATA/cloud-chips-s2`` (4 bands, L2A, 10 m): the few-band
spectral test. Simulator: 13-band Sentinel-2-like series stacked by ``build_stack`` (s2cloudless
on the stack's blocks), the truth brought onto the stack grid with the same co-registration shift.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.enums import Resampling
from rasterio.windows import Window

import sitewatch
from sitewatch.simulate import simulate
from sitewatch.stack import build_stack, from_bbox
from sitewatch.stack.clouds import cloud_mask
from sitewatch.stack.output import CLOUD
from sitewatch.stack.resample import SceneReader

DATA = Path(os.environ.get("SITEWATCH_TEST_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))


def scores(found: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    hits = float((found & truth).sum())
    return {"iou": hits / max(1.0, float((found | truth).sum())),
            "precision": hits / max(1.0, float(found.sum())),
            "recall": hits / max(1.0, float(truth.sum()))}


def chips() -> None:
    print("cloud-chips-s2 (few-band spectral test, 10 m):")
    for chip in sorted((DATA / "cloud-chips-s2" / "train_features").iterdir()):
        bands = {}
        for name in ("B02", "B03", "B04", "B08"):
            with rasterio.open(chip / f"{name}.tif") as src:
                bands[name] = src.read(1).astype(np.float32) / 10000
        with rasterio.open(DATA / "cloud-chips-s2" / "train_labels" / f"{chip.name}.tif") as src:
            truth = src.read(1) == 1
        s = scores(cloud_mask(bands, pixel_size_m=10.0).cloud, truth)
        print(f"  {chip.name}: IoU {s['iou']:.3f}  precision {s['precision']:.3f}  "
              f"recall {s['recall']:.3f}  (label cloud fraction {truth.mean():.3f})")


def simulated(seeds: list[int]) -> None:
    print("simulator (s2cloudless on the stack, 13 bands, 10 m):")
    totals = np.zeros(3)
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            result = simulate(Path(tmp) / "imagery", sensor="s2", seed=seed)
            sitewatch.ingest([result.catalog_path], Path(tmp) / "ws")
            truth = json.loads(result.truth_path.read_text())
            aoi = shapely.geometry.shape(next(f["geometry"] for f in truth["features"]
                                              if f["properties"]["role"] == "aoi"))
            stack = build_stack(Path(tmp) / "ws",
                                from_bbox(",".join(map(str, aoi.bounds)), "sim"))
            masks = stack.open().mask.values
            grid = stack.grid
            counts = np.zeros(3)
            for t, outcome in enumerate(stack.included):
                day = outcome.key[:10].replace("-", "")
                labels = next(result.out_dir.glob(f"*{day}/cloud_truth.tif"))
                fake = {"scene_id": outcome.key, "bands": [{
                    "name": "truth", "file": str(labels), "index": 1, "nodata": None,
                    "dtype": "float32"}]}
                with SceneReader(fake, ["truth"], grid, outcome.applied_shift,
                                 Resampling.nearest) as reader:
                    cloud_truth = reader.read(Window(0, 0, grid.width, grid.height))[0][0] == 1
                found = masks[t] == CLOUD
                counts += [(found & cloud_truth).sum(), (found & ~cloud_truth).sum(),
                           (~found & cloud_truth).sum()]
            hits, false, missed = counts
            print(f"  seed {seed}: precision {hits / (hits + false):.3f}  "
                  f"recall {hits / (hits + missed):.3f}  over {len(stack.included)} dates")
            totals += counts
    hits, false, missed = totals
    print(f"  pooled: precision {hits / (hits + false):.3f}  recall {hits / (hits + missed):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    chips()
    simulated(args.seeds)


if __name__ == "__main__":
    main()
