"""Very-high-resolution change under held-out folds: the learned RGB model beside the classic
methods, on every labelled VHR pair of the shared data.

    python bench/vhr.py [--steps N] [--threads N] [--out DIR] [--final DIR] [--skip-cv]

Pairs (``$SITEWATCH_TEST_DATA``), read as ``bench/quality.py`` reads them (after image
histogram-matched onto before):

- LEVIR-CD samples (Chen & Shi 2020), 0.5 m, building change: 4 interleaved folds;
- SZTAKI AirChange (Benedek & Sziranyi 2009), 1.5 m: one fold per site (Archieve, Szada,
  Tiszadob);
- xBD Joplin tornado tiles (Gupta et al. 2019), about 0.5 m: one fold; truth 1 on buildings
  destroyed or with major damage, 0 on the others, unlabelled between buildings. Scored per
  building as well: the share of destroyed and major-damage buildings at least half called
  changed, and the share of changed objects (8-connected, 50 m² and more) that touch one.

For every fold a network is trained (``sitewatch.learn.train.fit``, the recipe below, fixed
number of steps, threshold 0.5, nothing tuned on the fold) on every other pair of the three
datasets, resampled to the model's pixel size :data:`MODEL_PIXEL_M`, each dataset drawing the
same share of the patches (``balance="source"``: SZTAKI has about 100 times the pixels of the
LEVIR samples at 1 m,
and would otherwise decide alone what change is), and the held-out pairs
go through the registered ``learned`` method at their own pixel size, as in production. The
classic methods and the all-change floor run on the same pairs. Pooled figures sum the pixel
counts of the held-out pairs; the worst pair is printed beside them.

The Puerto Rico hurricane pair has no change labels: its called share per method is printed.

``--final DIR`` trains the model on every pair and writes ``vhr-rgb.pt`` and a model card with
this command and the cross-validation table (what ships in ``src/sitewatch/learn/weights``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import scipy.ndimage as ndi
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402  (the pairs, folds and scoring of the pixel benches)

from sitewatch.learn import register_learned_method  # noqa: E402
from sitewatch.learn.data import (  # noqa: E402
    XBD_CHANGED,
    XBD_UNCHANGED,
    ChangePair,
    rasterise_buildings,
    resample,
    xbd_buildings,
)
from sitewatch.learn.infer import MODEL_ENV, load_model  # noqa: E402
from sitewatch.learn.train import Recipe, fit, model_card  # noqa: E402
from sitewatch.sites.damage import DAMAGED_SHARE  # noqa: E402
from sitewatch.stack.normalise import fit_normalisation  # noqa: E402

#: Pixel size every training pair is resampled to (metres): between LEVIR's 0.5 m and SZTAKI's
#: 1.5 m, so that a 64 px patch sees a 64 m block, a house is ~10 px wide.
MODEL_PIXEL_M = 1.0
#: The classic rows (``default`` on its classic evidence, the learned row being the model it
#: hands VHR RGB to) and the all-change floor.
METHODS = ("default", "cva", "irmad", quality.ALL_CHANGE)
#: Smallest changed object scored at the building level (square metres).
MIN_OBJECT_M2 = 50.0


def xbd_pairs() -> tuple[list[quality.Pair], dict[str, list]]:
    """The xBD Joplin tiles as bench pairs, and each tile's buildings (polygon, damage)."""
    root = quality.DATA / "xbd-joplin"
    pairs, buildings = [], {}
    for labels in sorted((root / "labels").glob("*_post_disaster.json")):
        tile = labels.name.removesuffix("_post_disaster.json")
        images = []
        for when in ("pre", "post"):
            with rasterio.open(root / "images" / f"{tile}_{when}_disaster.png") as src:
                images.append(src.read([1, 2, 3]).astype(np.float32) / 255)
        after = fit_normalisation(images[0], images[1], method="histogram").apply(images[1])
        buildings[tile] = xbd_buildings(labels)
        truth = rasterise_buildings(buildings[tile], images[0].shape[1:])
        pairs.append(quality.Pair(tile, images[0], after.astype(np.float32),
                                  np.ones(truth.shape, bool), ["red", "green", "blue"], 0.5,
                                  truth))
    return pairs, buildings


def puerto_rico_pair() -> quality.Pair:
    """The Puerto Rico hurricane pair (0.305 m, one grid), unlabelled (truth -1 everywhere)."""
    root = quality.DATA / "puerto-rico-pair"
    images = []
    for name in ("pre.tif", "post.tif"):
        with rasterio.open(root / name) as src:
            images.append(src.read([1, 2, 3]).astype(np.float32) / 255)
            pixel_size_m = abs(src.transform.a)
    after = fit_normalisation(images[0], images[1], method="histogram").apply(images[1])
    shape = images[0].shape[1:]
    return quality.Pair("puerto-rico", images[0], after.astype(np.float32), np.ones(shape, bool),
                        ["red", "green", "blue"], pixel_size_m, np.full(shape, -1, np.int8))


def training_pair(pair: quality.Pair, source: str) -> ChangePair:
    truth = np.where(pair.valid, pair.truth, -1).astype(np.int8)
    return resample(ChangePair(pair.name, pair.before, pair.after, truth, list(pair.bands),
                               pair.pixel_size_m, source), MODEL_PIXEL_M)


def change_map(method: str, pair: quality.Pair) -> np.ndarray:
    if method == quality.ALL_CHANGE:
        return pair.valid.astype(np.uint8)
    from sitewatch.detect.base import pairwise_methods
    options = {"learned_vhr": False} if method == "default" else {}
    return pairwise_methods()[method](pair.before, pair.after, pair.valid, pair.bands,
                                      pair.pixel_size_m, **options).change


def building_scores(change: np.ndarray, buildings: list, pixel_size_m: float) -> np.ndarray:
    """Building level, as :mod:`sitewatch.sites.damage` calls a building damaged (at least
    half its footprint changed): tp (destroyed or major damage, called), fp (no or minor
    damage, called), fn (destroyed or major damage, not called); then the changed objects of
    :data:`MIN_OBJECT_M2` and more, and those touching a destroyed or major-damage building."""
    tp = fp = fn = 0
    for polygon, damage in buildings:
        if damage not in (*XBD_CHANGED, *XBD_UNCHANGED):
            continue
        mask = rasterise_buildings([(polygon, "destroyed")], change.shape) == 1
        if not mask.any():
            continue
        called = change[mask].mean() >= DAMAGED_SHARE
        if damage in XBD_CHANGED:
            tp, fn = tp + called, fn + (not called)
        else:
            fp += called
    damaged = rasterise_buildings([(p, "destroyed") for p, d in buildings if d in XBD_CHANGED],
                                  change.shape) == 1
    objects, count = ndi.label(change == 1, structure=np.ones((3, 3)))
    sizes = np.bincount(objects.ravel(), minlength=count + 1) * pixel_size_m ** 2
    kept = np.flatnonzero(sizes >= MIN_OBJECT_M2)
    kept = kept[kept > 0]
    hits = np.unique(objects[damaged & (objects > 0)])
    return np.array([tp, fp, fn, len(kept), len(np.intersect1d(kept, hits))])


def with_weights(weights: Path, function, *args):
    previous = os.environ.get(MODEL_ENV)
    os.environ[MODEL_ENV] = str(weights)
    try:
        return function(*args)
    finally:
        if previous is None:
            del os.environ[MODEL_ENV]
        else:
            os.environ[MODEL_ENV] = previous


def folds(pairs: dict[str, list[quality.Pair]]) -> list[tuple[str, list[str]]]:
    out = []
    for benchmark in ("levir", "sztaki"):
        for fold in quality.folds(benchmark, pairs[benchmark]):
            out.append((benchmark, [pairs[benchmark][i].name for i in fold]))
    out.append(("xbd", [p.name for p in pairs["xbd"]]))
    return out


def print_table(benchmark: str, rows: dict[str, list[np.ndarray]], names: list[str]) -> str:
    lines = [f"{benchmark:<8} {'method':<14} {'P':>6} {'R':>6} {'F1':>6} {'worst':>6} "
             f"{'called/labelled':>15}  per pair"]
    for method, per_pair in rows.items():
        pooled = np.sum(per_pair, axis=0)
        precision, recall, f1, _ = quality.scores(pooled)
        tp, fp, fn, _ = pooled
        ratio = (tp + fp) / max(1, tp + fn)  # called over labelled change, pooled
        per = [quality.f1(c) for c in per_pair]
        cells = " ".join(f"{n[:10]}={f:.2f}" for n, f in zip(names, per, strict=True))
        lines.append(f"{benchmark:<8} {method:<14} {precision:6.3f} {recall:6.3f} {f1:6.3f} "
                     f"{min(per):6.3f} {ratio:14.2f}x  {cells}")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps per network")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, help="folder for the fold weights (default: temp)")
    parser.add_argument("--final", type=Path, help="train on every pair into this folder")
    parser.add_argument("--skip-cv", action="store_true", help="only --final")
    parser.add_argument("--cv-table", type=Path, help="with --skip-cv: the printed output of a "
                        "cross-validation run of the same recipe, for the model card")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not register_learned_method():
        sys.exit("the learned method needs PyTorch: pip install 'sitewatch[ml]'")
    started = time.perf_counter()
    epochs = 10
    recipe = Recipe(epochs=epochs, steps_per_epoch=max(1, args.steps // epochs), seed=args.seed,
                    balance="source")
    print(f"recipe: {recipe}; pixel size {MODEL_PIXEL_M} m")
    xbd, buildings = xbd_pairs()
    pairs = {"levir": quality.levir_pairs(), "sztaki": quality.sztaki_pairs(), "xbd": xbd}
    everything = [(p, source) for source, group in pairs.items() for p in group]
    tables = []
    if args.skip_cv and args.cv_table:
        printed = args.cv_table.read_text().splitlines()
        tables.append("\n".join(line for line in printed if line.startswith(
            ("levir ", "sztaki ", "xbd", "  ", "puerto-rico", "fold "))
            and "Warning" not in line and "dataset = " not in line))
    with tempfile.TemporaryDirectory(prefix="sitewatch-vhr-") as tmp:
        out = args.out or Path(tmp)
        if not args.skip_cv:
            learned: dict[str, np.ndarray] = {}
            objects: dict[str, dict[str, np.ndarray]] = {m: {} for m in (*METHODS, "learned")}
            for k, (benchmark, held_out) in enumerate(folds(pairs)):
                fold_started = time.perf_counter()
                training = [training_pair(p, source) for p, source in everything
                            if p.name not in held_out]
                result = fit(training, out / f"fold{k}", recipe, device="cpu")
                for pair in pairs[benchmark]:
                    if pair.name in held_out:
                        change = with_weights(result.weights, change_map, "learned", pair)
                        learned[pair.name] = quality.counts(pair, change)
                        if benchmark == "xbd":
                            objects["learned"][pair.name] = building_scores(
                                change, buildings[pair.name], pair.pixel_size_m)
                fold_f1 = quality.f1(np.sum([learned[n] for n in held_out], axis=0))
                print(f"fold {k} {benchmark} held out {', '.join(held_out)}: learned F1 "
                      f"{fold_f1:.3f} ({time.perf_counter() - fold_started:.0f} s)", flush=True)
            for benchmark, group in pairs.items():
                names = [p.name for p in group]
                rows = {"learned (CV)": [learned[n] for n in names]}
                for method in METHODS:
                    rows[method] = []
                    for pair in group:
                        change = change_map(method, pair)
                        rows[method].append(quality.counts(pair, change))
                        if benchmark == "xbd":
                            objects[method][pair.name] = building_scores(
                                change, buildings[pair.name], pair.pixel_size_m)
                tables.append(print_table(benchmark, rows, names))
            lines = ["xbd buildings (at least half called = damaged): recall of destroyed/major "
                     "damage, precision against no/minor damage, tp fp fn; changed objects "
                     "touching a destroyed/major-damage building"]
            for method, per_tile in objects.items():
                tp, fp, fn, found, hits = np.sum(list(per_tile.values()), axis=0)
                lines.append(f"  {method:<14} recall {tp / max(1, tp + fn):.2f} precision "
                             f"{tp / max(1, tp + fp):.2f} ({tp} {fp} {fn})   {hits:>4} of "
                             f"{found} objects = {hits / max(1, found):.2f}")
            print("\n".join(lines))
            tables.append("\n".join(lines))
            # never trained on: scored with the last fold's network (trained on LEVIR + SZTAKI)
            puerto_rico = puerto_rico_pair()
            called = {"learned (CV)": with_weights(result.weights, change_map, "learned",
                                                   puerto_rico)}
            called.update({m: change_map(m, puerto_rico) for m in METHODS})
            line = "puerto-rico (no labels), called share: " + ", ".join(
                f"{m} {100 * np.mean(c == 1):.1f} %" for m, c in called.items())
            print(line)
            tables.append(line)
        if args.final:
            result = fit([training_pair(p, source) for p, source in everything], args.final,
                         recipe, device="cpu")
            weights = args.final / "vhr-rgb.pt"
            os.replace(result.weights, weights)
            command = (f"OMP_NUM_THREADS={args.threads} python bench/vhr.py "
                        + " ".join(shlex.quote(a) for a in sys.argv[1:]))
            evaluation = ("\n## Held-out folds (`bench/vhr.py`)\n\n```\n" + "\n\n".join(tables)
                          + "\n```\n")
            card = model_card(result, load_model(weights, device="cpu").network, command,
                              evaluation)
            (args.final / "vhr-rgb.md").write_text(card)
            result.card.unlink(missing_ok=True)
            print(f"final model: {weights} ({weights.stat().st_size} bytes), "
                  f"{result.seconds:.0f} s")
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
