"""Site-level scores against the simulator's ground truth, in the style of the IARPA SMART
evaluation (a detected site matches a true one at polygon IoU >= 0.2).

    python bench/sites.py [--scenario border-compound|random|random-decoys]
                          [--split dev|eval | --seeds 0 1 2] [--sensor s2|vhr] [--skip-xbd]

For each seed a scenario is simulated, ingested, stacked and tracked with the project's own
stages: the demo's border-compound (12 monthly dates; a 3 x 2.4 km extent around the sites for
s2, the default extent for vhr), or the randomised ones of :mod:`sitewatch.simulate.generator`
(sites of every type, size, shape and ground, decoys, random revisits), whose development seeds
(``--split dev``, :data:`DEV_SEEDS`) are for looking at while changing the pipeline and whose
evaluation seeds (``--split eval``, :data:`EVAL_SEEDS`) give the figures quoted. Printed per
seed and pooled: matched / missed / false sites, site precision, recall and F1, typed-site F1
(matched with the right change type), false sites per km² (on ``random-decoys`` every site is
one), per-phase F1 (a true phase counts as found when the matched site reports it), the share of
matched sites whose first change is dated to the right acquisition or the next, and the share of
matched sites of 50 m and more whose length and width are within 15 %. Stable structures and
decoys are not targets: a site found on one is a false site.

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
import pyproj
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
CHANGE_PHASES = ("cleared", "under_construction", "destroyed", "demolished", "completed")
#: Seeds of the randomised scenarios: development seeds to look at while changing the
#: pipeline, evaluation seeds scored once, for the figures quoted.
DEV_SEEDS = tuple(range(100, 130))
EVAL_SEEDS = tuple(range(1000, 1030))


def run_seed(seed: int, sensor: str, work: Path, scenario: str = "border-compound") -> dict:
    """Simulate ``scenario`` with ``seed``, take it through ingest, stack and track, and score
    the sites found against the truth (see the module docstring). The found sites, each with
    its observations and whether it is what its type says (``label``), are under ``"found"``."""
    size = (3000, 2400) if sensor == "s2" and scenario == "border-compound" else None
    result = simulate(work / "imagery", sensor=sensor, seed=seed, size_m=size,
                      scenario=scenario)
    sitewatch.ingest([result.catalog_path], work / "ws")
    sitewatch.import_places(result.places_path, work / "ws")
    truth = json.loads(result.truth_path.read_text())
    aoi = shapely.geometry.shape(next(f["geometry"] for f in truth["features"]
                                      if f["properties"]["role"] == "aoi"))
    build_stack(work / "ws", from_bbox(",".join(map(str, aoi.bounds)), "bench"))
    sitewatch.track(work / "ws", "bench")
    found = sitewatch.sites(work / "ws", aoi="bench")
    dates = [d[:10] for d in truth["sitewatch:scenario"]["dates"]]
    inside = [f for f in truth["features"] if f["properties"]["role"] in ("site", "decoy")
              and shapely.geometry.shape(f["geometry"]).intersects(aoi)]
    scores = score_sites(found, inside, dates)
    scores["area_km2"] = _area_km2(aoi)
    scores["found"] = [{"seed": seed, "sensor": sensor, "label": label,
                        "site": _without_geometry(site)}
                       for site, label in zip(found, scores.pop("labels"), strict=True)]
    return scores


def _without_geometry(site: dict) -> dict:
    row = {k: v for k, v in site.items() if k != "geometry"}
    row["observations"] = [{k: v for k, v in o.items() if k != "geometry"}
                           for o in site.get("observations", [])]
    return row


def _area_km2(lonlat_polygon) -> float:
    geod = pyproj.Geod(ellps="WGS84")
    return abs(geod.geometry_area_perimeter(lonlat_polygon)[0]) / 1e6


def score_sites(found: list[dict], truth: list[dict], dates: list[str]) -> dict:
    """Match found sites to the true changed sites at polygon IoU >= :data:`MATCH_IOU`.

    A true site of a change type is a target; a stable structure or a decoy is not, and a
    found site matching nothing else is a false site. Returned: tp, fn, fp, typed_tp (matched
    with the right type), the found sites on decoys and stable structures, per-phase counts,
    onset errors in acquisitions, and the length/width errors of matched sites.
    """
    scores = {"tp": 0, "fn": 0, "fp": 0, "typed_tp": 0, "on_decoys": 0, "onset_days": [],
              "onset_steps": [], "length_err": [], "width_err": [], "sizes": [], "outlines": [],
              "phases": {}, "missed": [], "labels": [0] * len(found)}
    used = set()
    shapes = [shapely.geometry.shape(f["geometry"]) for f in found]
    for site in truth:
        props = site["properties"]
        polygon = shapely.geometry.shape(site["geometry"])
        ious = [(polygon.intersection(g).area / polygon.union(g).area, i)
                for i, g in enumerate(shapes) if i not in used]
        iou, best = max(ious, default=(0.0, -1))
        if props["role"] == "decoy" or props["type"] == "stable_structure":
            if iou >= MATCH_IOU:
                scores["on_decoys"] += 1
            continue
        true_phases = [p["phase"] for p in props["phases"]]
        for phase in true_phases:
            counts = scores["phases"].setdefault(phase, [0, 0, 0])  # tp, fn, fp
            if iou >= MATCH_IOU and phase in {p["phase"] for p in
                                              found[best]["properties"]["phases"]}:
                counts[0] += 1
            else:
                counts[1] += 1
        if iou < MATCH_IOU:
            scores["fn"] += 1
            scores["missed"].append(f"{props['id']} ({props.get('name', '')}, "
                                    f"{props['length_m']:.0f} m, IoU {iou:.2f})")
            continue
        scores["tp"] += 1
        used.add(best)
        match = found[best]
        scores["typed_tp"] += match["change_type"] == props["type"]
        scores["labels"][best] = int(match["change_type"] == props["type"])
        for phase in match["properties"]["phases"]:
            if phase["phase"] not in true_phases:
                scores["phases"].setdefault(phase["phase"], [0, 0, 0])[2] += 1
        true_first = next((p for p in props["phases"] if p["phase"] in CHANGE_PHASES), None)
        detected = next((p["first_observed"] for p in match["properties"]["phases"]
                         if p["phase"] != "intact"), None)
        if true_first and detected:
            scores["onset_days"].append((date.fromisoformat(detected)
                                         - date.fromisoformat(true_first["start"][:10])).days)
            observed = true_first["first_observed"][:10]
            if detected[:10] in dates and observed in dates:
                scores["onset_steps"].append(dates.index(detected[:10]) - dates.index(observed))
        scores["sizes"].append(props["length_m"])
        scores["outlines"].append(props.get("name", "").rpartition("(")[2].rstrip(")") or "?")
        scores["length_err"].append(match["length_m"] / props["length_m"] - 1)
        scores["width_err"].append(match["width_m"] / props["width_m"] - 1)
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
    parser.add_argument("--scenario", default="border-compound",
                        choices=("border-compound", "random", "random-decoys"))
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="default: 0 1 2 for border-compound, --split for the others")
    parser.add_argument("--split", default="dev", choices=("dev", "eval"),
                        help="the random scenarios' development or evaluation seeds")
    parser.add_argument("--sensor", default="s2", choices=("s2", "vhr"))
    parser.add_argument("--skip-xbd", action="store_true")
    parser.add_argument("--found-out", type=Path,
                        help="append each found site, its observations and its label (1 when "
                             "it matches a true site of its type) to this JSON-lines file, the "
                             "input of bench/calibrate.py")
    args = parser.parse_args()
    seeds = args.seeds or ([0, 1, 2] if args.scenario == "border-compound" else
                           list(DEV_SEEDS if args.split == "dev" else EVAL_SEEDS))
    if not args.skip_xbd:
        for method in ("default", "cva", "index"):
            xbd_scores(method)
    total: dict = {}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            scores = run_seed(seed, args.sensor, Path(tmp), args.scenario)
        found = scores.pop("found")
        if args.found_out:
            with args.found_out.open("a") as out:
                out.writelines(json.dumps(record) + "\n" for record in found)
        print(f"seed {seed}: {scores['tp']} matched ({scores['typed_tp']} with the right type), "
              f"{scores['fn']} missed, {scores['fp']} false ({scores['on_decoys']} on decoys or "
              f"stable structures); onset error (acquisitions) {scores['onset_steps']}",
              flush=True)
        for missed in scores["missed"]:
            print(f"  missed {missed}")
        for key, value in scores.items():
            if isinstance(value, (int, float)):
                total[key] = total.get(key, 0) + value
            elif isinstance(value, list):
                total.setdefault(key, []).extend(value)
            else:
                for phase, counts in value.items():
                    acc = total.setdefault("phases", {}).setdefault(phase, [0, 0, 0])
                    for i in range(3):
                        acc[i] += counts[i]
    summarise(args.scenario, args.sensor, seeds, total)


def summarise(scenario: str, sensor: str, seeds: list[int], total: dict) -> None:
    """Print the pooled site scores of a set of seeds."""
    tp, fn, fp = total["tp"], total["fn"], total["fp"]
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    f1 = 2 * precision * recall / max(1e-9, precision + recall)
    typed = total["typed_tp"]
    typed_f1 = 2 * typed / max(1, typed + tp + fn + fp - (tp - typed))
    print(f"\n{scenario}, {sensor}, {len(seeds)} seeds: site precision {precision:.2f}, recall "
          f"{recall:.2f}, F1 {f1:.2f} ({tp} matched, {fn} missed, {fp} false); typed-site F1 "
          f"{typed_f1:.2f} ({typed} with the right type)")
    print(f"  false sites: {fp / max(1e-9, total['area_km2']):.2f} per km² over "
          f"{total['area_km2']:.1f} km² ({total['on_decoys']} on decoys or stable structures)")
    for phase, (ptp, pfn, pfp) in sorted(total.get("phases", {}).items()):
        pf1 = 2 * ptp / max(1, 2 * ptp + pfn + pfp)
        print(f"  phase {phase:<20} F1 {pf1:.2f}  ({ptp} found, {pfn} missed, {pfp} extra)")
    if total.get("onset_steps"):
        steps = np.abs(total["onset_steps"])
        print(f"  onset within one revisit: {100 * np.mean(steps <= 1):.0f} % of "
              f"{steps.size} matched sites (median {np.median(np.abs(total['onset_days'])):.0f}"
              " days from the true start)")
    sizes = np.array(total.get("sizes", []))
    if sizes.size:
        big = sizes >= 50.0
        length, width = np.abs(total["length_err"]), np.abs(total["width_err"])
        within = (length[big] <= 0.15) & (width[big] <= 0.15)
        signed_length, signed_width = np.array(total["length_err"]), np.array(total["width_err"])
        print(f"  matched sites of 50 m and more: {big.sum()}, length and width within 15 %: "
              f"{100 * np.mean(within) if big.any() else float('nan'):.0f} %; median |error| "
              f"length {100 * np.median(length):.0f} %, width {100 * np.median(width):.0f} %; "
              f"median error length {100 * np.median(signed_length):+.0f} %, width "
              f"{100 * np.median(signed_width):+.0f} %")
        outlines = np.array(total["outlines"])
        for outline in sorted(set(outlines[big])):
            chosen = outlines[big] == outline
            print(f"    {outline:<10} {chosen.sum():>3} sites, within 15 %: "
                  f"{100 * np.mean(within[chosen]):.0f} %, median error length "
                  f"{100 * np.median(signed_length[big][chosen]):+.0f} %, width "
                  f"{100 * np.median(signed_width[big][chosen]):+.0f} %")


if __name__ == "__main__":
    main()
