"""Fit the site-probability model and print its reliability table.

    python bench/sites.py --scenario random --split dev [--sensor vhr] --skip-xbd \\
        --found-out dev.jsonl                       # labelled found sites, each sensor
    python bench/calibrate.py fit dev.jsonl [...]   # writes the shipped model
    python bench/calibrate.py table eval.jsonl [...]  # the shipped model on other sites

``fit`` fits :func:`sitewatch.sites.probability.fit_site_model` on the found sites of the
files (a site is labelled 1 when it matches a true changed site of its type), prints the
reliability table of scene-wise cross-validated probabilities, and writes the model. ``table``
prints the reliability table of the shipped model (or ``--model``) on the files' sites: for
each ICD 203 word the findings would use (:func:`sitewatch.analyst.findings.evidence_term`),
the number of sites given it, the observed share that are what their type says, the word's
range, and whether that share is within the range +-10 points; then the Brier score and the
expected calibration error (ten equal-width bins).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sitewatch.analyst.confidence import TERMS, confidence_for_probability
from sitewatch.analyst.findings import term_for_probability
from sitewatch.sites.probability import PACKAGED_MODEL, SiteModel, fit_site_model, site_features

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit")
    fit.add_argument("files", type=Path, nargs="+")
    fit.add_argument("--out", type=Path, default=PACKAGED_MODEL)
    table = sub.add_parser("table")
    table.add_argument("files", type=Path, nargs="+")
    table.add_argument("--model", type=Path, default=PACKAGED_MODEL)
    args = parser.parse_args()
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
