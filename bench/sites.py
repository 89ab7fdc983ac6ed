"""Site-level scores against the simulator's ground truth, in the style of the IARPA SMART
evaluation (a detected site matches a true one at polygon IoU >= 0.2).

    python bench/sites.py [--seeds 0 1 2] [--sensor s2] [--skip-xbd]

For each seed the default scenario (12 monthly dates; a 3 x 2.4 km extent around the sites for
s2, the default extent for vhr) is simulated, ingested, stacked and tracked with the project's
own stages. Printed: matched / missed / false sites, site precision, recall and F1, per-phase F1
(a true phase counts as found when the matched site reports it), the onset error in days (first
observed date of the site's first phase minus the true start of its first changing phase), and
the length/width errors of matched sites.

Then the xBD Joplin tornado tiles (``$SITEWATCH_TEST_DATA/xbd-joplin``): each pre/post pair goes
through ``sitewatch.compare`` (two dates, so sites come from the pairwise change map), and the
sites are matched at IoU >= 0.2 against the buildings labelled destroyed or major-damage; also
printed is the share of those buildings at least half covered by a reported site.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import shapely

import sitewatch
from sitewatch.simulate import simulate
from sitewatch.stack import build_stack, from_bbox

MATCH_IOU = 0.2
DATA = Path(os.environ.get("SITEWATCH_TEST_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
#: xBD damage classes counted as positives.
DAMAGED = ("destroyed", "major-damage")
#: True phases that are a site's first change (the others are "before" states).
CHANGE_PHASES = ("cleared", "under_construction", "destroyed", "completed")


def run_seed(seed: int, sensor: str, work: Path) -> dict:
    size = (3000, 2400) if sensor == "s2" else None
    result = simulate(work / "imagery", sensor=sensor, seed=seed, size_m=size)
    sitewatch.ingest([result.catalog_path], work / "ws")
    sitewatch.import_places(result.places_path, work / "ws")
    truth = json.loads(result.truth_path.read_text())
    aoi = shapely.geometry.shape(next(f["geometry"] for f in truth["features"]
                                      if f["properties"]["role"] == "aoi"))
    build_stack(work / "ws", from_bbox(",".join(map(str, aoi.bounds)), "bench"))
    sitewatch.track(work / "ws", "bench")
    found = sitewatch.sites(work / "ws", aoi="bench")
    true_sites = [f for f in truth["features"] if f["properties"]["role"] == "site"
                  and shapely.geometry.shape(f["geometry"]).intersects(aoi)]
    scores = {"tp": 0, "fn": 0, "fp": 0, "onset_days": [], "length_err": [], "width_err": [],
              "phases": {}}
    used = set()
    for site in true_sites:
        polygon = shapely.geometry.shape(site["geometry"])
        ious = [(polygon.intersection(g).area / polygon.union(g).area, i)
                for i, g in enumerate(shapely.geometry.shape(f["geometry"]) for f in found)]
        iou, best = max(ious, default=(0.0, -1))
        true_phases = [p["phase"] for p in site["properties"]["phases"]]
        for phase in true_phases:
            counts = scores["phases"].setdefault(phase, [0, 0, 0])  # tp, fn, fp
            if iou >= MATCH_IOU and phase in {p["phase"] for p in
                                              found[best]["properties"]["phases"]}:
                counts[0] += 1
            else:
                counts[1] += 1
        if iou < MATCH_IOU:
            scores["fn"] += 1
            continue
        scores["tp"] += 1
        used.add(best)
        match = found[best]
        for phase in match["properties"]["phases"]:
            if phase["phase"] not in true_phases:
                scores["phases"].setdefault(phase["phase"], [0, 0, 0])[2] += 1
        start = next((p["start"] for p in site["properties"]["phases"]
                      if p["phase"] in CHANGE_PHASES), None)
        detected = next((p["first_observed"] for p in match["properties"]["phases"]
                         if p["phase"] != "intact"), None)
        if start and detected:
            scores["onset_days"].append((date.fromisoformat(detected)
                                         - date.fromisoformat(start[:10])).days)
        if site["properties"].get("length_m"):
            scores["length_err"].append(match["length_m"] / site["properties"]["length_m"] - 1)
            scores["width_err"].append(match["width_m"] / site["properties"]["width_m"] - 1)
    scores["fp"] = len(found) - len(used)
    return scores


def xbd_scores(method: str) -> None:
    """Sites from ``compare`` with ``method`` on the xBD pairs against destroyed /
    major-damage buildings."""
    tp = fp = fn = covered = positives = 0
    for labels in sorted((DATA / "xbd-joplin" / "labels").glob("*_post_disaster.json")):
        stem = labels.stem.removesuffix("_post_disaster")
        images = DATA / "xbd-joplin" / "images"
        buildings = [shapely.from_wkt(f["wkt"]) for f in json.loads(labels.read_text())[
            "features"]["lng_lat"] if f["properties"].get("subtype") in DAMAGED]
        with tempfile.TemporaryDirectory() as tmp:
            result = sitewatch.compare(images / f"{stem}_pre_disaster.png",
                                       images / f"{stem}_post_disaster.png", Path(tmp),
                                       method=method, min_site_area_m2=50.0)
            found = [shapely.geometry.shape(f["geometry"]) for f in json.loads(
                result.layers["sites"].read_text())["features"]]
        matched = set()
        for building in buildings:
            ious = [(building.intersection(g).area / building.union(g).area, i)
                    for i, g in enumerate(found)]
            iou, best = max(ious, default=(0.0, -1))
            if iou >= MATCH_IOU:
                tp += 1
                matched.add(best)
            else:
                fn += 1
            union = shapely.union_all(found) if found else shapely.Polygon()
            covered += building.intersection(union).area >= 0.5 * building.area
        positives += len(buildings)
        fp += len(found) - len(matched)
        print(f"xbd {stem} ({method}): {len(buildings)} destroyed/major-damage buildings, "
              f"{len(found)} sites")
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    f1 = 2 * precision * recall / max(1e-9, precision + recall)
    print(f"xbd-joplin, {method} (IoU >= {MATCH_IOU}): precision {precision:.2f}, "
          f"recall {recall:.2f}, F1 {f1:.2f}; {covered} of {positives} damaged buildings at "
          "least half covered by a site")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sensor", default="s2", choices=("s2", "vhr"))
    parser.add_argument("--skip-xbd", action="store_true")
    args = parser.parse_args()
    if not args.skip_xbd:
        for method in ("default", "cva", "index"):
            xbd_scores(method)
    total = {"tp": 0, "fn": 0, "fp": 0, "onset_days": [], "length_err": [], "width_err": [],
             "phases": {}}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            scores = run_seed(seed, args.sensor, Path(tmp))
        print(f"seed {seed}: {scores['tp']} matched, {scores['fn']} missed, {scores['fp']} false; "
              f"onset error (days) {scores['onset_days']}")
        for key in ("tp", "fn", "fp"):
            total[key] += scores[key]
        for key in ("onset_days", "length_err", "width_err"):
            total[key] += scores[key]
        for phase, counts in scores["phases"].items():
            acc = total["phases"].setdefault(phase, [0, 0, 0])
            for i in range(3):
                acc[i] += counts[i]
    tp, fn, fp = total["tp"], total["fn"], total["fp"]
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    f1 = 2 * precision * recall / max(1e-9, precision + recall)
    print(f"\n{args.sensor}, {len(args.seeds)} seeds: site precision {precision:.2f}, recall "
          f"{recall:.2f}, F1 {f1:.2f} ({tp} matched, {fn} missed, {fp} false)")
    for phase, (ptp, pfn, pfp) in sorted(total["phases"].items()):
        pf1 = 2 * ptp / max(1, 2 * ptp + pfn + pfp)
        print(f"  phase {phase:<20} F1 {pf1:.2f}  ({ptp} found, {pfn} missed, {pfp} extra)")
    if total["onset_days"]:
        onset = np.abs(total["onset_days"])
        print(f"  onset error: median {np.median(onset):.0f} days, max {onset.max():.0f} days")
    if total["length_err"]:
        print(f"  length error {100 * np.mean(total['length_err']):+.1f} % (mean), "
              f"width error {100 * np.mean(total['width_err']):+.1f} % (mean)")


if __name__ == "__main__":
    main()
