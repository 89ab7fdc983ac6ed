"""Change-detection quality of the pairwise methods on real labelled pairs, fold by fold.

    python bench/quality.py [--workspace DIR] [--methods default cva ...]
                            [--benchmarks oscd levir sztaki taizhou] [--choose-alpha]

Protocol: every benchmark is cut into held-out folds, one OSCD city, one SZTAKI site (Szada,
Tiszadob, Archieve), one of 4 interleaved LEVIR-CD folds at a time. A method with a data-driven
choice (``--choose-alpha``: the default's false-alarm level) makes it on the other folds only and
is scored on the held-out one; the shipped methods make none, so their held-out figures are their
figures. For each pair: precision, recall, F1, IoU, the called and the labelled change share of
the scored pixels, their ratio, and the number of warnings the method gave; for each method the
pooled figures (pixel counts summed over the pairs, as OSCD papers do), the worst pair, the
largest called/labelled ratio and called share. ``all-change`` (every valid pixel called) is the
floor a method must clear.

- OSCD (Caye Daudt et al. 2018), 7 cities, Sentinel-2 13 bands: each pair is ingested and stacked
  by the project's own stack stage (UTM grid, co-registration, normalisation, cloud mask); the
  label raster (1 = no change, 2 = change, on the grid of ``imgs_1/*B02.tif``, no CRS) is brought
  onto the stack grid by nearest neighbour. Scored: pixels labelled 1 or 2 and valid on both dates.
  Pooled precision / recall / F1 / IoU sum the pixel counts over the cities, as OSCD papers do.
- LEVIR-CD samples (Chen & Shi 2020): RGB 0.5 m, after image histogram-matched to before (what the
  stack stage would do).
- SZTAKI AirChange (Benedek & Sziranyi 2009): 13 RGB pairs at 1.5 m, histogram-matched likewise.
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
BENCHMARKS = ("oscd", "levir", "sztaki", "taizhou")
#: The trivial baseline: every valid pixel called changed.
ALL_CHANGE = "all-change"
LEVIR_FOLDS = 4
#: False-alarm levels ``--choose-alpha`` picks from, fold by fold.
ALPHA_CHOICES = (0.05, 0.01, 0.001, 0.0001)


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


def sztaki_pairs() -> list[Pair]:
    """SZTAKI AirChange (Benedek & Sziranyi 2009): 13 RGB pairs at 1.5 m, after image
    histogram-matched onto before; truth 1 where ``gt.png`` is 255 (its labels also count
    fresh plough-land and groundwork)."""
    pairs = []
    for folder in sorted(p for p in (DATA / "sztaki-airchange").iterdir() if p.is_dir()):
        before, after = (np.moveaxis(skimage.io.imread(folder / name)[..., :3], -1, 0)
                         .astype(np.float32) / 255 for name in ("im1.png", "im2.png"))
        after = fit_normalisation(before, after, method="histogram").apply(after)
        truth = skimage.io.imread(folder / "gt.png")
        truth = (truth if truth.ndim == 2 else truth[..., 0]) > 127
        pairs.append(Pair(folder.name, before, after.astype(np.float32),
                          np.ones(truth.shape, bool), ["red", "green", "blue"], 1.5,
                          truth.astype(np.int8)))
    return pairs


def counts(pair: Pair, change: np.ndarray) -> np.ndarray:
    """tp, fp, fn, tn over the labelled, valid pixels (a masked pixel counts as no change)."""
    scored = (pair.truth >= 0) & pair.valid
    found = change == 1
    truth = pair.truth == 1
    return np.array([np.sum(found & truth & scored), np.sum(found & ~truth & scored),
                     np.sum(~found & truth & scored), np.sum(~found & ~truth & scored)])


def f1(c: np.ndarray) -> float:
    return 2 * c[0] / max(1, 2 * c[0] + c[1] + c[2])


def scores(c: np.ndarray) -> tuple[float, float, float, float]:
    """Precision, recall, F1 and IoU of tp, fp, fn, tn counts."""
    tp, fp, fn, _ = c
    return tp / max(1, tp + fp), tp / max(1, tp + fn), f1(c), tp / max(1, tp + fp + fn)


def kappa(c: np.ndarray) -> float:
    tp, fp, fn, tn = c.astype(np.float64)
    n = tp + fp + fn + tn
    observed = (tp + tn) / n
    expected = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n**2
    return (observed - expected) / (1 - expected)


@dataclass
class Scored:
    """One method's result on one pair: counts, called and labelled change share of the valid
    labelled pixels, and the warnings the method gave."""

    counts: np.ndarray
    called: float
    labelled: float
    warnings: int


def run(method: str, pair: Pair, **options) -> Scored:
    """Run ``method`` (a registered one, or ``all-change``) on ``pair``. ``default`` runs on its
    classic evidence: the learned RGB model it hands VHR RGB pairs to was trained on LEVIR-CD and
    SZTAKI, so its figures on them come from ``bench/vhr.py``'s held-out folds."""
    scored = (pair.truth >= 0) & pair.valid
    if method == "default":
        options.setdefault("learned_vhr", False)
    if method == ALL_CHANGE:
        change, warnings = np.where(pair.valid, 1, 0), 0
    else:
        result = pairwise_methods()[method](pair.before, pair.after, pair.valid, pair.bands,
                                            pair.pixel_size_m, **options)
        change, warnings = result.change, len(result.diagnostics.get("warnings", []))
    return Scored(counts(pair, change), float(np.mean(change[scored] == 1)),
                  float(np.mean(pair.truth[scored] == 1)), warnings)


def folds(benchmark: str, pairs: list[Pair]) -> list[list[int]]:
    """The held-out folds of a benchmark: one city (OSCD) or site (SZTAKI: Szada, Tiszadob,
    Archieve) at a time, :data:`LEVIR_FOLDS` interleaved folds of LEVIR-CD, the one Taizhou
    pair alone."""
    if benchmark == "sztaki":
        sites = sorted({p.name.split("-")[0] for p in pairs})
        return [[i for i, p in enumerate(pairs) if p.name.split("-")[0] == s] for s in sites]
    if benchmark == "levir":
        return [list(range(k, len(pairs), LEVIR_FOLDS)) for k in range(LEVIR_FOLDS)]
    return [[i] for i in range(len(pairs))]


def evaluate(method: str, pairs: list[Pair], fold_sets: list[list[int]],
             choices: dict | None) -> list[tuple[list[Scored], dict]]:
    """Per fold, the held-out pairs' results and the options they ran with.

    ``choices`` (name -> candidate values of one option) makes the method data-driven: for
    each fold the value is chosen by pooled F1 on the *other* folds only, then applied to the
    held-out one. Without choices the method runs as shipped.
    """
    if not choices:
        return [([run(method, pairs[i]) for i in fold], {}) for fold in fold_sets]
    (name, values), = choices.items()
    table = {v: [run(method, p, **{name: v}) for p in pairs] for v in values}
    out = []
    for fold in fold_sets:
        others = [i for i in range(len(pairs)) if i not in fold]
        best = max(values, key=lambda v: f1(np.sum([table[v][i].counts for i in others],
                                                   axis=0)) if others else 0.0)
        out.append(([table[best][i] for i in fold], {name: best}))
    return out


def report(benchmark: str, label: str, pairs: list[Pair], results, seconds: float) -> dict:
    """Print one method's per-pair table and pooled line; return the pooled figures."""
    print(f"\n{benchmark} / {label}")
    print(f"  {'pair':<22} {'P':>6} {'R':>6} {'F1':>6} {'IoU':>6} {'called':>7} "
          f"{'label':>7} {'ratio':>6} warn  chosen")
    per_pair, pooled = [], np.zeros(4, np.int64)
    names = {id(p): p.name for p in pairs}
    for (fold_results, chosen), fold in zip(results, folds(benchmark, pairs), strict=True):
        for scored, i in zip(fold_results, fold, strict=True):
            pooled += scored.counts
            precision, recall, f, iou = scores(scored.counts)
            ratio = scored.called / scored.labelled if scored.labelled else float("inf")
            per_pair.append((names[id(pairs[i])], f, ratio, scored.called))
            print(f"  {pairs[i].name:<22} {precision:6.3f} {recall:6.3f} {f:6.3f} {iou:6.3f} "
                  f"{100 * scored.called:6.1f}% {100 * scored.labelled:6.1f}% {ratio:6.1f} "
                  f"{scored.warnings:>4}  {chosen or ''}")
    precision, recall, f, iou = scores(pooled)
    worst = min(per_pair, key=lambda r: r[1])
    line = {"P": precision, "R": recall, "F1": f, "IoU": iou, "worst": worst[1],
            "worst_pair": worst[0], "max_ratio": max(r[2] for r in per_pair),
            "max_called": max(r[3] for r in per_pair), "kappa": kappa(pooled),
            "OA": (pooled[0] + pooled[3]) / max(1, pooled.sum()), "seconds": seconds}
    print(f"  pooled P {precision:.3f} R {recall:.3f} F1 {f:.3f} IoU {iou:.3f}; worst "
          f"{worst[0]} {worst[1]:.3f}; called/labelled at most {line['max_ratio']:.1f}x, "
          f"called at most {100 * line['max_called']:.1f} % ({seconds:.0f} s)", flush=True)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, help="cache folder for the OSCD stacks")
    parser.add_argument("--methods", nargs="+",
                        default=["default", "irmad", "pca-kmeans", "index", "cva", ALL_CHANGE])
    parser.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS),
                        choices=list(BENCHMARKS))
    parser.add_argument("--choose-alpha", action="store_true",
                        help="add a row where the default's false-alarm level is chosen on "
                             "the other folds from " + ", ".join(map(str, ALPHA_CHOICES)))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sitewatch-quality-") as tmp:
        workspace = args.workspace or Path(tmp)
        workspace.mkdir(parents=True, exist_ok=True)
        summary = {}
        for benchmark in args.benchmarks:
            started = time.perf_counter()
            if benchmark == "oscd":
                pairs = [oscd_pair(city, workspace) for city in OSCD_CITIES]
            else:
                pairs = {"levir": levir_pairs, "sztaki": sztaki_pairs,
                         "taizhou": lambda: [taizhou_pair()]}[benchmark]()
            print(f"{benchmark}: {len(pairs)} pairs ready in "
                  f"{time.perf_counter() - started:.0f} s")
            rows = [(m, m, None) for m in args.methods]
            if args.choose_alpha and "default" in args.methods:
                rows.append(("default, alpha chosen", "default", {"alpha": ALPHA_CHOICES}))
            for label, method, choices in rows:
                started = time.perf_counter()
                results = evaluate(method, pairs, folds(benchmark, pairs), choices)
                summary[benchmark, label] = report(benchmark, label, pairs, results,
                                                   time.perf_counter() - started)
        print(f"\n{'benchmark':<9} {'method':<22} {'P':>6} {'R':>6} {'F1':>6} {'IoU':>6} "
              f"{'worst':>6} {'ratio':>6} {'called':>7} {'kappa':>6}")
        for (benchmark, label), line in summary.items():
            print(f"{benchmark:<9} {label:<22} {line['P']:6.3f} {line['R']:6.3f} "
                  f"{line['F1']:6.3f} {line['IoU']:6.3f} {line['worst']:6.3f} "
                  f"{line['max_ratio']:6.1f} {100 * line['max_called']:6.1f}% "
                  f"{line['kappa']:6.3f}")


if __name__ == "__main__":
    main()
