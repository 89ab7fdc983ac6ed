"""The masks that come with the imagery (Sentinel-2 SCL, Landsat QA_PIXEL) in the stack."""

from __future__ import annotations

import json

import numpy as np
import rasterio

from sitewatch import api
from sitewatch.simulate import simulate
from sitewatch.stack import open_stack
from sitewatch.stack.output import CLEAR, CLOUD, SHADOW
from sitewatch.stack.provider_masks import classes_to_masks


def test_scl_classes():
    values = np.array([0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    cloud, shadow = classes_to_masks("scl", values)
    assert values[cloud].tolist() == [8, 9, 10]
    assert values[shadow].tolist() == [3]


def test_qa_pixel_bits():
    # Landsat C2 QA_PIXEL: 21824 clear land (bit 6); 22280 cloud (bit 3, high confidence);
    # 23888 cloud shadow (bit 4); 55052 cirrus and cloud (bits 2, 3); 2 dilated cloud (bit 1)
    values = np.array([21824, 22280, 23888, 55052, 1 << 1])
    cloud, shadow = classes_to_masks("qa_pixel", values)
    assert cloud.tolist() == [False, True, False, True, True]
    assert shadow.tolist() == [False, False, True, False, False]


def test_a_provider_mask_masks_what_the_spectral_tests_call_clear(tmp_path):
    """An SCL asset marking a block of one date as cloud, and another as shadow, over ground
    the spectral tests find clear: the stack masks both; the other dates stay clear there."""
    sim = simulate(tmp_path / "sim", sensor="s2", seed=3, n_dates=6, size_m=(2000, 1600))
    item_id = "sim-s2-20181115"
    item_path = sim.out_dir / item_id / f"{item_id}.json"
    with rasterio.open(sim.out_dir / item_id / "B11.tif") as b11:  # 20 m, like SCL
        profile = b11.profile
        scl = np.full((b11.height, b11.width), 4, np.uint8)  # vegetation
    scl[10:30, 10:30] = 9  # cloud, high probability
    scl[50:70, 40:60] = 3  # cloud shadow
    profile.update(dtype="uint8", nodata=0, count=1)
    with rasterio.open(sim.out_dir / item_id / "SCL.tif", "w", **profile) as target:
        target.write(scl, 1)
    item = json.loads(item_path.read_text())
    item["assets"]["scl"] = {"href": "./SCL.tif", "type": "image/tiff; application=geotiff",
                             "roles": ["data"]}  # Earth Search lists it as data
    item_path.write_text(json.dumps(item))

    api.ingest([sim.catalog_path], tmp_path / "ws")
    scene = next(s for s in api.scenes(tmp_path / "ws") if item_id in s["source"])
    assert scene["properties"]["provider_mask"]["kind"] == "scl"
    assert "scl" not in [band["name"] for band in scene["bands"]]
    result = api.stack(tmp_path / "ws", aoi=_bbox(sim), name="all", coregistration="none")
    stack = open_stack(result.path, dask=False)
    mask = stack["mask"].values
    dates = [str(t)[:10] for t in stack["time"].values]
    masked = mask[dates.index("2018-11-15")]
    # the 20 m blocks at 10 m: rows 20:60, cols 20:60 and rows 100:140, cols 80:120 of the
    # scene, which starts at (row0, col0) of the grid; two pixels in from each edge
    with rasterio.open(sim.out_dir / item_id / "B02.tif") as b02:
        col0, row0 = (round(v) for v in ~result.grid.transform @ (b02.bounds.left,
                                                                  b02.bounds.top))

    def block(layer, rows, cols):
        return layer[rows[0] + row0 + 2:rows[1] + row0 - 2, cols[0] + col0 + 2:cols[1] + col0 - 2]

    assert (block(masked, (20, 60), (20, 60)) == CLOUD).all()
    assert (block(masked, (100, 140), (80, 120)) == SHADOW).all()
    other = mask[dates.index("2018-12-15")]  # a clear date
    assert (block(other, (20, 60), (20, 60)) == CLEAR).mean() > 0.9


def _bbox(sim) -> str:
    with rasterio.open(next(sim.out_dir.glob("sim-*/B02.tif"))) as dataset:
        west, south, east, north = rasterio.warp.transform_bounds(dataset.crs, "EPSG:4326",
                                                                  *dataset.bounds)
    return f"{west + 0.001},{south + 0.001},{east - 0.001},{north - 0.001}"
