"""CPU throughput and peak memory of the learned change model on a Sentinel-2-size tile.

    python bench/inference.py [--size 10980] [--bands 13] [--threads 2] [--block 1024]
                              [--weights model.pt] [--tmp DIR]

Two dates of a ``--size`` x ``--size`` pixel tile (10980 = one Sentinel-2 granule at 10 m) are
generated as tiled uint16 GeoTIFFs (reflectance x 10000 with the band scale 1e-4, like Sentinel-2
L1C digital numbers; band descriptions are the Sentinel-2 band names) in a temporary folder, in a
child process so that generation does not count towards the measured memory. Then
:func:`sitewatch.learn.infer.predict_to_raster` streams them block by block into a probability
GeoTIFF. Printed: generation time, inference wall time, pixels per second and the peak resident
set size of the inference process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), beside the
size one full-tile float32 array of one date would take.

The weights are ``--weights``, else the packaged model when its band count is ``--bands``, else
an untrained network of ``--widths`` (throughput does not depend on the weight values).
``--tta`` / ``--no-tta`` overrides the model's test-time augmentation (8 times the work).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window

from sitewatch.learn.data import SENTINEL2_BANDS
from sitewatch.learn.infer import (
    BLOCK,
    TrainedModel,
    checkpoint,
    load_model,
    packaged_model,
    predict_to_raster,
)
from sitewatch.learn.model import SiameseUNet

#: Bands written for ``--bands 4``: the 10 m Sentinel-2 bands.
TEN_M = ("B02", "B03", "B04", "B08")


def write_date(path: Path, size: int, bands: tuple[str, ...], seed: int, block: int) -> None:
    """One date: smooth random reflectance 0.02..0.5 plus noise, written block by block (the
    after date, ``seed`` 1, has a few bright squares: new buildings)."""
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(0)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": len(bands),
               "dtype": "uint16", "nodata": 0, "crs": "EPSG:32631", "tiled": True,
               "blockxsize": 512, "blockysize": 512, "BIGTIFF": "YES",
               "transform": from_origin(600_000, 5_000_000, 10, 10)}
    level = base.uniform(0.05, 0.3, (len(bands), 1, 1)).astype(np.float32)
    with rasterio.open(path, "w", **profile) as dst:
        dst.scales = (1e-4,) * len(bands)
        dst.descriptions = bands
        for row in range(0, size, block):
            for col in range(0, size, block):
                window = Window(col, row, min(block, size - col), min(block, size - row))
                shape = (len(bands), window.height, window.width)
                texture = np.random.default_rng(row * size + col).uniform(-0.05, 0.05, shape)
                image = level + texture.astype(np.float32)
                image += rng.normal(0, 0.005, shape).astype(np.float32)
                if seed == 1:
                    image[:, 100:140, 200:260] = 0.45
                dst.write(np.clip(image * 10_000, 1, 65_535).astype(np.uint16), window=window)


def _generate(folder: Path, size: int, bands: tuple[str, ...], block: int) -> None:
    for seed, name in enumerate(("before.tif", "after.tif")):
        write_date(folder / name, size, bands, seed, block)


def model_for(args, bands: tuple[str, ...], folder: Path) -> TrainedModel:
    path = args.weights
    if path is None:
        path = packaged_model(bands)
    if path is None:
        torch.manual_seed(0)
        network = SiameseUNet(len(bands), [int(w) for w in args.widths.split(",")]).eval()
        path = folder / "untrained.pt"
        torch.save(checkpoint(network, bands, np.full(len(bands), 0.15), np.full(len(bands), 0.1),
                              0.5, 10.0, normalise="date"), path)
    model = load_model(path, device="cpu")
    return model if args.tta is None else replace(model, tta=args.tta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10980, help="tile side (pixels)")
    parser.add_argument("--bands", type=int, choices=(4, 13), default=13)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--block", type=int, default=BLOCK, help="streaming block side (px)")
    parser.add_argument("--weights", type=Path, help="weights file (default: see above)")
    parser.add_argument("--widths", default="16,32,64,128", help="untrained network widths")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction,
                        help="dihedral test-time averaging (default: the model's setting)")
    parser.add_argument("--tmp", type=Path, help="folder for the generated tiles")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bands = SENTINEL2_BANDS if args.bands == 13 else TEN_M
    with tempfile.TemporaryDirectory(prefix="sitewatch-inference-", dir=args.tmp) as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(
            target=_generate, args=(folder, args.size, bands, args.block))
        child.start()
        child.join()
        if child.exitcode:
            raise SystemExit(f"tile generation failed (exit code {child.exitcode})")
        size_gb = sum(p.stat().st_size for p in folder.glob("*.tif")) / 1e9
        print(f"generated 2 dates of {args.size} x {args.size} px, {len(bands)} bands uint16 "
              f"({size_gb:.1f} GB on disk) in {time.perf_counter() - started:.0f} s")
        model = model_for(args, bands, folder)
        print(f"model {model.path.name}: widths {list(model.network.widths)}, tta {model.tta}, "
              f"normalise {model.normalise}, {torch.get_num_threads()} torch thread(s)")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        out = predict_to_raster(folder / "before.tif", folder / "after.tif",
                                folder / "probability.tif", model, block=args.block)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with rasterio.open(out) as src:
            assert src.shape == (args.size, args.size)
        pixels = args.size ** 2
        full_array_mb = len(bands) * pixels * 4 / 2**20
        print(f"inference: {pixels / 1e6:.1f} Mpx in {seconds:.0f} s = {pixels / seconds:,.0f} "
              f"px/s; peak RSS {peak:,.0f} MiB (before inference {rss_before:,.0f} MiB; one "
              f"date as a float32 array would be {full_array_mb:,.0f} MiB)")


if __name__ == "__main__":
    main()
