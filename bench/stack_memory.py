"""Peak memory and speed of `sitewatch stack` on a Sentinel-2-size AOI.

Generates 3 dates of a 10980 x 10980 px, 4-band (B02 B03 B04 B08) uint16 COG scene at 10 m
(textured ground, a per-date sub-pixel shift and gain), ingests them and stacks the full extent
at the default memory setting in a child process, reporting its wall time and peak RSS. In the
same run it times a plain windowed rasterio read of the same files (the I/O floor) and prints the
ratio.

    python bench/stack_memory.py [--size 10980] [--dates 3] [--memory-mb 1024] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.warp
from rasterio.transform import from_origin

BANDS = ("B02", "B03", "B04", "B08")
WEST, NORTH = 600_000.0, 3_900_000.0  # UTM 37N, metres


def texture(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Blocky multi-scale ground texture, 0..1, built without full-size FFTs."""
    out = np.zeros((rows, cols), np.float32)
    for cell, weight in ((512, 0.5), (64, 0.3), (8, 0.2)):
        coarse = rng.random((rows // cell + 2, cols // cell + 2), dtype=np.float32)
        out += weight * np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:rows, :cols]
    return out


def generate(folder: Path, size: int, n_dates: int) -> list[Path]:
    """One folder of band COGs per date, Sentinel-2 style names, dates in the names."""
    rng = np.random.default_rng(0)
    ground = texture(rng, size, size)
    for d in range(n_dates):
        date = f"2019{d + 1:02d}15"
        scene = folder / f"scene_{date}"
        scene.mkdir(parents=True)
        dx, dy = (0.0, 0.0) if d == 0 else rng.uniform(-1.5, 1.5, 2)
        gain = 1.0 + 0.1 * d
        profile = dict(driver="COG", width=size, height=size, count=1, dtype="uint16",
                       crs="EPSG:32637", nodata=0, compress="DEFLATE", blocksize=512,
                       transform=from_origin(WEST + dx * 10, NORTH - dy * 10, 10, 10))
        for b, name in enumerate(BANDS):
            noise = rng.integers(-40, 40, (size, size), dtype=np.int16)  # sensor noise
            values = (1000 + 3000 * gain * ground * (0.8 + 0.1 * b) + noise).astype(np.uint16)
            with rasterio.open(scene / f"T37SFA_{date}T080000_{name}.tif", "w", **profile) as dst:
                dst.write(values, 1)
    return sorted(folder.glob("scene_*/*.tif"))


def plain_read(files: list[Path]) -> float:
    """Seconds to read every pixel of every file, block by block (the I/O floor)."""
    start = time.perf_counter()
    for path in files:
        with rasterio.open(path) as src:
            for _, window in src.block_windows(1):
                src.read(1, window=window)
    return time.perf_counter() - start


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``command``, measured by /usr/bin/time."""
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *command], capture_output=True,
                            text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr}")
    return seconds, int(result.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--dates", type=int, default=3)
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: temporary)")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="sitewatch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        files = generate(work / "imagery", args.size, args.dates) if not (
            work / "imagery").exists() else sorted((work / "imagery").glob("scene_*/*.tif"))
        print(f"generated {len(files)} COGs of {args.size}x{args.size} px in "
              f"{time.perf_counter() - t0:.0f} s")
        ingest_s, ingest_mb = timed([sys.executable, "-m", "sitewatch", "ingest",
                                     str(work / "imagery"), "-w", str(work / "ws")])
        print(f"ingest: {ingest_s:.1f} s, peak RSS {ingest_mb:.0f} MB")
        with rasterio.open(files[0]) as src:
            left, bottom, right, top = rasterio.warp.transform_bounds(src.crs, 4326,
                                                                      *src.bounds)
        inset = 0.0005  # stay inside the footprint of every shifted date
        bbox = f"{left + inset},{bottom + inset},{right - inset},{top - inset}"
        seconds, peak_mb = timed([sys.executable, "-m", "sitewatch", "stack", "-w",
                                  str(work / "ws"), "--aoi", bbox, "--memory-mb",
                                  str(args.memory_mb)])
        floor = plain_read(files)
        megapixels = args.size**2 * args.dates / 1e6
        print(f"stack: {seconds:.1f} s for {args.dates} dates x {len(BANDS)} bands of "
              f"{args.size}x{args.size} px ({megapixels * len(BANDS) / seconds:.1f} Mpx/s)")
        print(f"peak RSS of the stack process: {peak_mb:.0f} MB (memory setting "
              f"{args.memory_mb} MB)")
        print(f"I/O floor (plain windowed read of the same files): {floor:.1f} s; "
              f"ratio {seconds / floor:.1f}x")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
