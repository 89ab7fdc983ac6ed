"""Change-detection quality of the pairwise methods on real labelled pairs.

    python bench/quality.py [--workspace DIR] [--methods default cva ...]

- OSCD (Caye Daudt et al. 2018), 7 cities, Sentinel-2 13 bands: each pair is ingested and stacked
  by the project's own stack stage (UTM grid, co-registration, normalisation, cloud mask); the
  label raster (1 = no change, 2 = change, on the grid of ``imgs_1/*B02.tif``, no CRS) is brought
  onto the stack grid by nearest neighbour. Scored: pixels labelled 1 or 2 and valid on both dates.
  Pooled precision / recall / F1 / IoU sum the pixel counts over the cities, as OSCD papers do.
- LEVIR-CD samples (Chen & Shi 2020): RGB 0.5 m, after image histogram-matched to before (what the
  stack stage would do); F1 pooled over the pairs.
- Taizhou (Wu et al. 2014): Landsat TM 2000/2003, 6 bands; overall accuracy and Cohen's kappa on
  the sparse change / no-change sample pixels.

The stacks are cached in ``--workspace`` (a temporary one by default) as ``.npz`` pairs, so a
second run with the same workspace skips the ~1 min stacking.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import skimage.io

import sitewatch
from sitewatch.detect import pairwise  # noqa: F401  (registers the methods)
from sitewatch.detect.base import pairwise_methods
from sitewatch.stack import build_stack, from_geojson
from sitewatch.stack.normalise import fit_normalisation
from sitewatch.stack.resample import reproject_to_grid

DATA = Path(os.environ.get("SITEWATCH_TEST_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
OSCD_CITIES = ("aguasclaras", "bercy", "bordeaux", "nantes", "paris", "rennes", "saclay_e")
TEN_M = ("B02", "B03", "B04", "B08")
TAIZHOU_BANDS = ("B1", "B2", "B3", "B4", "B5", "B7")


@dataclass
class Pair:
    """One labelled image pair on one grid; ``truth`` is 1 change, 0 no change, -1 unlabelled."""

    name: str
    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray
    bands: list[str]
    pixel_size_m: float
    truth: np.ndarray

    def select(self, bands) -> Pair:
        index = [self.bands.index(b) for b in bands]
        return Pair(self.name, self.before[index], self.after[index], self.valid, list(bands),
                    self.pixel_size_m, self.truth)


def oscd_pair(city: str, workspace: Path, coregistration: str = "global") -> Pair:
    """Stack one OSCD city with the stack stage (cached as ``<workspace>/<city>.npz``)."""
    cache = workspace / f"{city}.npz"
    if not cache.is_file():
        city_dir = DATA / "oscd" / city
        ws = workspace / city
        sitewatch.ingest([city_dir], ws)
        stack = build_stack(ws, from_geojson(city_dir / f"{city}.geojson"),
                            coregistration=coregistration)
        ds = stack.open()
        refl = ds["reflectance"].values
        clear = (ds["mask"].values == 0).all(axis=0) & np.isfinite(refl).all(axis=(0, 1))
        with rasterio.open(next((city_dir / "imgs_1").glob("*B02.tif"))) as b02:
            with rasterio.open(city_dir / "cm" / f"{city}-cm.tif") as cm:
                labels = cm.read(1).astype(np.uint8)
            labels = reproject_to_grid(labels, b02.transform, b02.crs, stack.grid, nodata=0)
        truth = np.where(labels == 2, 1, np.where(labels == 1, 0, -1)).astype(np.int8)
        np.savez(cache, before=refl[0], after=refl[1], valid=clear,
                 bands=np.array(list(ds["band"].values), dtype=str),
                 pixel_size_m=stack.grid.resolution, truth=truth)
    z = np.load(cache)
    return Pair(city, z["before"], z["after"], z["valid"], [str(b) for b in z["bands"]],
                float(z["pixel_size_m"]), z["truth"])


def levir_pairs() -> list[Pair]:
    """LEVIR-CD sample pairs, after image histogram-matched onto before; a pair whose two images
    differ in size (not on one grid, so not a valid pair) is skipped with a note."""
    root = DATA / "levir-cd-samples"
    pairs = []
    for path in sorted((root / "A").glob("*.png")):
        before = np.moveaxis(skimage.io.imread(path)[..., :3], -1, 0).astype(np.float32) / 255
        after = np.moveaxis(skimage.io.imread(root / "B" / path.name)[..., :3], -1, 0)
        if after.shape != before.shape:
            print(f"LEVIR {path.name}: sizes differ ({before.shape} vs {after.shape}), skipped")
            continue
        after = after.astype(np.float32) / 255
        after = fit_normalisation(before, after, method="histogram").apply(after)
        truth = (skimage.io.imread(root / "label" / path.name) > 127).astype(np.int8)
        truth = truth if truth.ndim == 2 else truth[..., 0]
        pairs.append(Pair(path.stem, before, after.astype(np.float32),
                          np.ones(truth.shape, bool), ["red", "green", "blue"], 0.5, truth))
    return pairs


def taizhou_pair() -> Pair:
    """Taizhou Landsat TM 2000/2003; truth 1 on ``change.bmp``, 0 on ``unchanged.bmp`` samples."""
    root = DATA / "landsat-taizhou"
    images = []
    for name in ("2000TM", "2003TM"):
        with rasterio.open(root / name) as src:
            images.append(src.read().astype(np.float32) / 255)
    changed = skimage.io.imread(root / "change.bmp")
    unchanged = skimage.io.imread(root / "unchanged.bmp")
    changed = changed if changed.ndim == 2 else changed[..., 0]
    unchanged = unchanged if unchanged.ndim == 2 else unchanged[..., 0]
    truth = np.full(changed.shape, -1, np.int8)
    truth[unchanged > 0] = 0
    truth[changed > 0] = 1
    return Pair("taizhou", images[0], images[1], np.ones(truth.shape, bool),
                list(TAIZHOU_BANDS), 30.0, truth)


def counts(pair: Pair, change: np.ndarray) -> np.ndarray:
    """tp, fp, fn, tn over the labelled, valid pixels (a masked pixel counts as no change)."""
    scored = (pair.truth >= 0) & pair.valid
    found = change == 1
    truth = pair.truth == 1
    return np.array([np.sum(found & truth & scored), np.sum(found & ~truth & scored),
                     np.sum(~found & truth & scored), np.sum(~found & ~truth & scored)])


def f1(c: np.ndarray) -> float:
    return 2 * c[0] / max(1, 2 * c[0] + c[1] + c[2])


def kappa(c: np.ndarray) -> float:
    tp, fp, fn, tn = c.astype(np.float64)
    n = tp + fp + fn + tn
    observed = (tp + tn) / n
    expected = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n**2
    return (observed - expected) / (1 - expected)


def run(method: str, pair: Pair) -> np.ndarray:
    result = pairwise_methods()[method](pair.before, pair.after, pair.valid, pair.bands,
                                        pair.pixel_size_m)
    return counts(pair, result.change)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, help="cache folder for the OSCD stacks")
    parser.add_argument("--methods", nargs="+",
                        default=["default", "irmad", "pca-kmeans", "index", "cva"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sitewatch-quality-") as tmp:
        workspace = args.workspace or Path(tmp)
        workspace.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        oscd = [oscd_pair(city, workspace) for city in OSCD_CITIES]
        print(f"OSCD stacks ready in {time.perf_counter() - started:.0f} s")
        levir = levir_pairs()
        print(f"LEVIR-CD: {len(levir)} pairs")
        taizhou = taizhou_pair()
        rows = [(m, m, None) for m in args.methods]
        if "cva" in args.methods:
            rows.append(("cva (10 m bands)", "cva", TEN_M))
        head = " ".join(f"{c[:8]:>8}" for c in OSCD_CITIES)
        print(f"\n{'method':<18} {'P':>6} {'R':>6} {'F1':>6} {'IoU':>6} | {head} | "
              f"{'LEVIR F1':>8} | {'TZ OA':>6} {'kappa':>6} | {'time s':>6}")
        for label, method, bands in rows:
            started = time.perf_counter()
            per_city = [run(method, p.select(bands) if bands else p) for p in oscd]
            total = np.sum(per_city, axis=0)
            tp, fp, fn, _ = total
            precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
            iou = tp / max(1, tp + fp + fn)
            levir_f1 = f1(np.sum([run(method, p) for p in levir], axis=0))
            tz = run(method, taizhou)
            accuracy = (tz[0] + tz[3]) / tz.sum()
            cities = " ".join(f"{f1(c):8.3f}" for c in per_city)
            print(f"{label:<18} {precision:6.3f} {recall:6.3f} {f1(total):6.3f} {iou:6.3f} | "
                  f"{cities} | {levir_f1:8.3f} | {accuracy:6.3f} {kappa(tz):6.3f} | "
                  f"{time.perf_counter() - started:6.1f}", flush=True)


if __name__ == "__main__":
    main()
