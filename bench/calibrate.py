"""Fit the site-probability model and print its reliability table.

    python bench/sites.py --scenario random --split dev [--sensor vhr] --skip-xbd \\
        --found-out dev.jsonl                       # labelled found sites, each sensor
    python bench/calibrate.py fit dev.jsonl [...]   # writes the shipped model
    python bench/calibrate.py table eval.jsonl [...]  # the shipped model on other sites
    python bench/calibrate.py pairs [--workspace CACHE]  # two-date sites, OSCD, writes its model

``fit`` fits :func:`sitewatch.sites.probability.fit_site_model` on the found sites of the
files (a site is labelled 1 when it matches a true changed site of its type), prints the
reliability table of scene-wise cross-validated probabilities, and writes the model. ``table``
prints the reliability table of the shipped model (or ``--model``) on the files' sites: for
each ICD 203 word the findings would use (:func:`sitewatch.analyst.findings.evidence_term`),
the number of sites given it, the observed share that are what their type says, the word's
range, and whether that share is within the range +-10 points; then the Brier score and the
expected calibration error (ten equal-width bins).

``pairs`` does the same for the sites of two-date comparisons: every OSCD city goes through the
classic ``default`` method and :func:`sitewatch.sites.pairwise.pairwise_sites` (2000 m² sites,
as ``compare`` makes on 10 m imagery); a site is labelled 1 when its IoU with the labelled
change it touches is at least 0.2 (pixels outside the labelled area not counted). The
reliability table is of held-out probabilities, each city's from a model fitted on the six
others; the model written (:data:`~sitewatch.sites.probability.PACKAGED_PAIR_MODEL`) is then
fitted on all seven.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import rasterio.features
import scipy.ndimage as ndi

from sitewatch.analyst.confidence import TERMS, confidence_for_probability
from sitewatch.analyst.findings import term_for_probability
from sitewatch.sites.pairwise import pairwise_sites, polygon_features
from sitewatch.sites.polygons import default_min_area_m2
from sitewatch.sites.probability import (
    PACKAGED_MODEL,
    PACKAGED_PAIR_MODEL,
    PAIR_FEATURE_SETS,
    PAIR_FEATURES,
    SiteModel,
    fit_site_model,
    site_features,
)
from sitewatch.stack import Grid

#: IoU with labelled change from which a two-date site counts as real (as bench/sites.py).
MATCH_IOU = 0.2

#: Points by which an observed precision may miss its word's range.
TOLERANCE = 0.10


def read_sites(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and scene keys ("sensor:seed") of the scored found sites in ``paths``."""
    rows, labels, groups = [], [], []
    for path in paths:
        for line in path.read_text().splitlines():
            record = json.loads(line)
            site = record["site"]
            features = site_features(site, site["observations"])
            if features is None:
                continue
            rows.append(features)
            labels.append(record["label"])
            groups.append(f"{record['sensor']}:{record['seed']}")
    if not rows:
        raise SystemExit(f"no scored sites in {', '.join(map(str, paths))}")
    return np.vstack(rows), np.asarray(labels, float), np.asarray(groups)


def words_within(probabilities: np.ndarray, labels: np.ndarray) -> bool:
    """Whether the sites given each word are what their type says within its range +-10."""
    terms = np.array([term_for_probability(p).term for p in probabilities])
    return all(term.low - TOLERANCE <= labels[terms == term.term].mean()
               <= term.high + TOLERANCE for term in TERMS if (terms == term.term).any())


def reliability_table(probabilities: np.ndarray, labels: np.ndarray, title: str) -> bool:
    """Print the table; True when every word given to a site is within its range +-10."""
    terms = [term_for_probability(p) for p in probabilities]
    print(f"\n{title}: {labels.size} sites, {int(labels.sum())} what their type says")
    print(f"  {'word':<20} {'range':>9} {'sites':>6} {'observed':>9} {'mean p':>7}  within +-10")
    ok = True
    for term in TERMS:
        chosen = np.array([t.term == term.term for t in terms])
        if not chosen.any():
            continue
        observed = labels[chosen].mean()
        within = term.low - TOLERANCE <= observed <= term.high + TOLERANCE
        ok &= bool(within)
        print(f"  {term.term:<20} {term.range_text:>9} {chosen.sum():>6} {100 * observed:>8.0f}%"
              f" {100 * probabilities[chosen].mean():>6.0f}%  {'yes' if within else 'NO'}")
    brier = np.mean((probabilities - labels) ** 2)
    bins = np.minimum((probabilities * 10).astype(int), 9)
    ece = sum(abs(labels[bins == b].mean() - probabilities[bins == b].mean())
              * np.mean(bins == b) for b in range(10) if (bins == b).any())
    print(f"  Brier score {brier:.3f}, expected calibration error {ece:.3f}; base rate "
          f"{100 * labels.mean():.0f}% ({confidence_for_probability(labels.mean()).term})")
    return ok


def cross_validated(features: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                    folds: int = 5) -> np.ndarray:
    """Probabilities of each site from a model fitted without its fold of scenes."""
    scenes = np.unique(groups)
    fold_of = {g: i % folds for i, g in enumerate(scenes)}
    fold = np.array([fold_of[g] for g in groups])
    out = np.empty(labels.size)
    for k in range(folds):
        model = fit_site_model(features[fold != k], labels[fold != k], groups[fold != k],
                               fitted_on="fold")
        out[fold == k] = model.probability(features[fold == k])
    return out


def oscd_sites(workspace: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and city of every two-date site of the OSCD cities (module docstring)."""
    from quality import OSCD_CITIES, oscd_pair, pairwise_methods

    rows, labels, groups = [], [], []
    for city in OSCD_CITIES:
        pair = oscd_pair(city, workspace)
        result = pairwise_methods()["default"](pair.before, pair.after, pair.valid, pair.bands,
                                               pair.pixel_size_m, learned_vhr=False)
        height, width = pair.truth.shape
        grid = Grid(32631, pair.pixel_size_m, width, height, 500_000.0, 5_000_000.0)
        sites, _ = pairwise_sites(result.change, result.kinds, grid, ("2000-01-01", "2000-02-01"),
                                  min_area_m2=default_min_area_m2(pair.pixel_size_m))
        components, _ = ndi.label(pair.truth == 1, structure=np.ones((3, 3)))
        change = result.change
        called = float((change == 1).sum() / max(1, (change != 255).sum()))
        positives = 0
        for site in sites:
            pixels = rasterio.features.rasterize([site.footprint], out_shape=(height, width),
                                                 transform=grid.transform).astype(bool)
            touched = np.isin(components, np.unique(components[pixels & (components > 0)]))
            touched &= components > 0
            labelled = pair.truth >= 0
            union = ((pixels | touched) & labelled).sum()
            iou = (pixels & touched).sum() / max(1, union)
            features = polygon_features(site.footprint, site.lifecycle.change_type,
                                        result.score, result.threshold, grid, called)
            if features is None or not (pixels & labelled).any():
                continue
            rows.append(features)
            labels.append(float(iou >= MATCH_IOU))
            groups.append(city)
            positives += iou >= MATCH_IOU
        print(f"{city}: {len(sites)} sites, {positives} matching labelled change "
              f"(called {100 * called:.1f} %)", flush=True)
    return np.vstack(rows), np.asarray(labels), np.asarray(groups)


def loco_probabilities(features: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                       names: tuple[str, ...]) -> np.ndarray:
    """Each city's probabilities from the model of ``names`` fitted on the other cities."""
    columns = [PAIR_FEATURES.index(n) for n in names]
    out = np.empty(labels.size)
    for city in np.unique(groups):
        rest = groups != city
        model = fit_site_model(features[rest][:, columns], labels[rest], groups[rest],
                               fitted_on="fold", feature_names=names)
        out[~rest] = model.probability(features[~rest][:, columns])
    return out


def best_feature_set(features: np.ndarray, labels: np.ndarray,
                     groups: np.ndarray) -> tuple[str, ...]:
    """The set of :data:`PAIR_FEATURE_SETS` with the lowest leave-one-city-out log-loss among
    those whose leave-one-city-out words are all within their ranges +-10 points; the base
    rate alone (no feature) when none is: a model that does not carry over from city to city
    must not give an analyst a stronger word than the share of real sites."""
    def scored(names):
        p = np.clip(loco_probabilities(features, labels, groups, names), 1e-6, 1 - 1e-6)
        loss = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
        return loss, words_within(p, labels)
    results = {names: scored(names) for names in PAIR_FEATURE_SETS}
    calibrated = [names for names, (_, ok) in results.items() if ok]
    return min(calibrated, key=lambda n: results[n][0]) if calibrated else ()


def pairs_command(workspace: Path, out: Path) -> None:
    """Leave-one-city-out reliability of the pair-site model (its feature set chosen on the
    other cities alone), then the model on all cities."""
    features, labels, groups = oscd_sites(workspace)
    held_out = np.empty(labels.size)
    for city in np.unique(groups):
        rest = groups != city
        names = best_feature_set(features[rest], labels[rest], groups[rest])
        columns = [PAIR_FEATURES.index(n) for n in names]
        model = fit_site_model(features[rest][:, columns], labels[rest], groups[rest],
                               fitted_on="fold", feature_names=names)
        held_out[~rest] = model.probability(features[~rest][:, columns])
        print(f"  {city} held out: features {', '.join(names) or 'none (base rate)'}")
    reliability_table(held_out, labels, "OSCD two-date sites, each city held out (feature set "
                      "and model from the other six)")
    names = best_feature_set(features, labels, groups)
    columns = [PAIR_FEATURES.index(n) for n in names]
    model = fit_site_model(features[:, columns], labels, groups, feature_names=names, fitted_on=(
        f"{labels.size} two-date sites of the {len(np.unique(groups))} OSCD cities (classic "
        "default method), python bench/calibrate.py pairs"))
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    print(f"\nwrote {out} (L2 penalty {model.penalty:g}); coefficients per standard deviation:")
    for name, weight in zip(model.features, model.coefficients, strict=True):
        print(f"  {name:<28} {weight:+.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit")
    fit.add_argument("files", type=Path, nargs="+")
    fit.add_argument("--out", type=Path, default=PACKAGED_MODEL)
    table = sub.add_parser("table")
    table.add_argument("files", type=Path, nargs="+")
    table.add_argument("--model", type=Path, default=PACKAGED_MODEL)
    pairs = sub.add_parser("pairs")
    pairs.add_argument("--workspace", type=Path, default=Path("bench-cache"),
                       help="where the OSCD cities' stacks are cached")
    pairs.add_argument("--out", type=Path, default=PACKAGED_PAIR_MODEL)
    args = parser.parse_args()
    if args.command == "pairs":
        args.workspace.mkdir(parents=True, exist_ok=True)
        pairs_command(args.workspace, args.out)
        return
    features, labels, groups = read_sites(args.files)
    if args.command == "fit":
        reliability_table(cross_validated(features, labels, groups), labels,
                          "scene-wise 5-fold cross-validation on the fitting sites")
        scenes = sorted({g for g in groups})
        model = fit_site_model(features, labels, groups, fitted_on=(
            f"{labels.size} found sites of {len(scenes)} randomised simulator scenes "
            f"({', '.join(sorted({g.split(':')[0] for g in scenes}))}; development seeds), "
            "python bench/calibrate.py fit"))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        model.save(args.out)
        print(f"\nwrote {args.out} (L2 penalty {model.penalty:g}); coefficients per standard "
              "deviation:")
        for name, weight in zip(model.features, model.coefficients, strict=True):
            print(f"  {name:<28} {weight:+.2f}")
    else:
        model = SiteModel.load(args.model)
        ok = reliability_table(model.probability(features), labels, f"{args.model.name} on "
                               f"{', '.join(p.name for p in args.files)}")
        print("every word within its range +-10 points" if ok else
              "some word is outside its range +-10 points")


if __name__ == "__main__":
    main()
