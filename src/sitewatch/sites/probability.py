"""How probable it is that an automatic site is what its type says, calibrated on labelled sites.

A tracked site (a row of the ``sites`` layer and its dated ``observations``) is described by a
few features of its evidence (:data:`FEATURES`): on how many dates the change shows, how strong
the activity was on them against the activity the same ground showed before, its size and shape,
its phases and its change type. A logistic model of those features, fitted on sites whose truth
is known, turns them into the probability that the site is real and of its type; this is Platt
scaling (J. Platt, "Probabilistic outputs for support vector machines and comparisons to
regularized likelihood methods", *Advances in Large Margin Classifiers*, MIT Press, 1999) with
the evidence features in place of a classifier's margin, and an L2 penalty chosen by
cross-validation over whole scenes (:func:`fit_site_model`).

The shipped model (:data:`PACKAGED_MODEL`) was fitted by ``bench/calibrate.py`` on the found
sites of the randomised simulator's development seeds, both sensors, each labelled 1 when it
matches a true changed site of the same type at polygon IoU >= 0.2 (``bench/sites.py``); the
evaluation seeds give its reliability table (README). Sites of a two-date comparison have no
activity scores and get no probability from it (:func:`site_probability` returns ``None``).

Sites of a two-date comparison by the classic ``default`` method have a model of their own
(:data:`PACKAGED_PAIR_MODEL`, features :data:`PAIR_FEATURES`, :func:`pair_site_features`): how
far the change score inside the object rises above the pair's threshold, its size in pixels,
its shape and kind, and the share of the pair called changed; which of them it uses is chosen
by leave-one-city-out log-loss among :data:`PAIR_FEATURE_SETS`. It is fitted on the objects of
the OSCD cities (Sentinel-2), each labelled 1 when it matches labelled change at IoU >= 0.2, and
its reliability table is measured leaving one city out, the feature set chosen again without
the city (``bench/calibrate.py pairs``). It says whether an object is change an analyst would
map, not which kind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np
import scipy.optimize

#: Change types with a feature of their own (the others have none set).
MODELLED_TYPES = ("new_construction", "land_clearing", "destruction", "demolition",
                  "vegetation_loss")
#: The features, in model order; see :func:`site_features`.
FEATURES = ("dates_showing", "peak_activity", "median_activity", "activity_before",
            "log10_area_m2", "elongation", "rectangularity", "phases",
            *(f"type_{t}" for t in MODELLED_TYPES))
#: Dates showing the change beyond which more add nothing to ``dates_showing``.
MAX_DATES_COUNTED = 6
#: The features of a two-date site, in model order; see :func:`pair_site_features`.
PAIR_TYPES = ("new_construction", "destruction", "vegetation_loss")
PAIR_FEATURES = ("log10_area_px", "mean_score_ratio", "peak_score_ratio",
                 "log10_called_share", "rectangularity", *(f"type_{t}" for t in PAIR_TYPES))
#: Candidate feature sets of the pair-site model (few labelled objects: small models first).
PAIR_FEATURE_SETS = ((), ("log10_area_px",), ("log10_area_px", "mean_score_ratio"),
                     ("log10_area_px", "log10_called_share"),
                     ("log10_area_px", "mean_score_ratio", "log10_called_share"), PAIR_FEATURES)
#: The shipped models, fitted by ``python bench/calibrate.py fit`` and ``... pairs``.
PACKAGED_MODEL = Path(__file__).with_name("models") / "site-probability.json"
PACKAGED_PAIR_MODEL = Path(__file__).with_name("models") / "pair-site-probability.json"
#: L2 penalties tried by :func:`fit_site_model` (on standardised features).
PENALTIES = (0.01, 0.1, 1.0, 10.0, 100.0)


@dataclass(frozen=True)
class SiteModel:
    """A fitted logistic model of :data:`FEATURES` (standardised by ``mean`` and ``scale``)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float
    penalty: float
    fitted_on: str  # what the labelled sites were, in words
    sites: int
    positives: int

    def probability(self, features: np.ndarray) -> np.ndarray:
        """P(site is what its type says) for rows of features (n x len(FEATURES))."""
        z = (np.atleast_2d(features) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coefficients) + self.intercept)))

    def columns(self, names: Sequence[str]) -> list[int]:
        """Where this model's features are among ``names`` (a full feature vector's order)."""
        return [list(names).index(name) for name in self.features]

    def save(self, path: str | Path) -> None:
        """Write the model as JSON (atomically)."""
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> SiteModel:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def site_features(site: dict, observations: Sequence[dict]) -> np.ndarray | None:
    """The :data:`FEATURES` of a stored site, or ``None`` when its observations carry no
    activity score (a two-date comparison).

    ``dates_showing`` counts the observations from the first change (``first_seen``) on, at most
    :data:`MAX_DATES_COUNTED`; the activity features are the peak and median ``score`` (share of
    the site's pixels changed since the previous date, 0..1) on those dates and the peak before
    them; ``log10_area_m2`` is of the footprint in square metres; ``elongation`` is width over
    length of the oriented rectangle; ``phases`` counts the phases after "intact".
    """
    first = (site.get("first_seen") or "")[:10]
    scored = [o for o in observations if o.get("score") is not None]
    if not first or not scored:
        return None
    after = [float(o["score"]) for o in scored if str(o["observed"])[:10] >= first]
    before = [float(o["score"]) for o in scored if str(o["observed"])[:10] < first]
    if not after:
        return None
    properties = site.get("properties") or {}
    length, width = site.get("length_m") or 0.0, site.get("width_m") or 0.0
    phases = [p for p in properties.get("phases") or [] if p.get("phase") != "intact"]
    rectangularity = (properties.get("measurements") or {}).get("rectangularity")
    values = [min(len(after), MAX_DATES_COUNTED), max(after), float(np.median(after)),
              max(before, default=0.0), math.log10(max(site.get("area_m2") or 0.0, 1.0)),
              width / length if length > 0 else 1.0,
              1.0 if rectangularity is None else float(rectangularity), len(phases),
              *(float(site.get("change_type") == t) for t in MODELLED_TYPES)]
    return np.asarray(values, dtype=float)


def site_probability(site: dict, observations: Sequence[dict],
                     model: SiteModel | None = None) -> float | None:
    """The calibrated probability (0..1) that ``site`` is what its type says, from ``model``
    (default: the shipped one); ``None`` for sites without activity scores."""
    features = site_features(site, observations)
    if features is None:
        return None
    return float((model or packaged_model()).probability(features)[0])


@cache
def packaged_model(path: Path = PACKAGED_MODEL) -> SiteModel:
    """A model shipped with sitewatch (:data:`PACKAGED_MODEL`, :data:`PACKAGED_PAIR_MODEL`)."""
    return SiteModel.load(path)


def pair_site_features(scores: np.ndarray, threshold: float, area_px: float,
                       called_share: float, rectangularity: float,
                       change_type: str) -> np.ndarray | None:
    """The :data:`PAIR_FEATURES` of one object of a two-date change map, or ``None`` when the
    pair's threshold is not positive (the ratios need it).

    ``scores`` are the change scores of the object's pixels (the method's standardised score,
    in the units of ``threshold``); ``area_px`` its size in pixels; ``called_share`` the share
    (0..1) of the pair's valid pixels called changed; ``rectangularity`` its area over its
    oriented rectangle's.
    """
    scores = np.asarray(scores, dtype=float)
    scores = scores[np.isfinite(scores)]
    if not threshold > 0 or scores.size == 0:
        return None
    values = [math.log10(max(area_px, 1.0)), float(scores.mean()) / threshold,
              float(scores.max()) / threshold, math.log10(max(called_share, 1e-6)),
              float(rectangularity), *(float(change_type == t) for t in PAIR_TYPES)]
    return np.asarray(values, dtype=float)


def fit_site_model(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *,
                   fitted_on: str, folds: int = 5,
                   feature_names: Sequence[str] = FEATURES) -> SiteModel:
    """Fit the logistic model on labelled sites.

    The L2 penalty is the one of :data:`PENALTIES` with the lowest log-loss when each of
    ``folds`` groups of scenes (``groups``: the scene each site comes from) is predicted by a
    model fitted on the others; the model is then refitted on every site with it.
    ``feature_names`` name the columns (:data:`FEATURES` or :data:`PAIR_FEATURES`).
    """
    features, labels = np.asarray(features, float), np.asarray(labels, float)
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale == 0] = 1.0
    z = (features - mean) / scale
    fold_of = {g: i % folds for i, g in enumerate(np.unique(groups))}
    fold = np.array([fold_of[g] for g in groups])

    def cv_loss(penalty: float) -> float:
        loss = 0.0
        for k in range(folds):
            train = fold != k
            if not train.any() or train.all():
                continue
            w, b = _logistic(z[train], labels[train], penalty)
            p = np.clip(1 / (1 + np.exp(-(z[~train] @ w + b))), 1e-6, 1 - 1e-6)
            loss -= np.sum(labels[~train] * np.log(p) + (1 - labels[~train]) * np.log(1 - p))
        return loss

    penalty = min(PENALTIES, key=cv_loss)
    w, b = _logistic(z, labels, penalty)
    return SiteModel(tuple(feature_names), tuple(mean.tolist()), tuple(scale.tolist()),
                     tuple(w.tolist()), float(b), penalty, fitted_on, int(labels.size),
                     int(labels.sum()))


def _logistic(z: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, float]:
    """Weights and intercept minimising the log-loss plus ``penalty``/2 |w|² (intercept free)."""

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        margin = z @ w + b
        value = np.sum(np.logaddexp(0.0, margin) - y * margin) + 0.5 * penalty * w @ w
        residual = 1 / (1 + np.exp(-margin)) - y
        return value, np.append(z.T @ residual + penalty * w, residual.sum())

    theta = scipy.optimize.minimize(loss, np.zeros(z.shape[1] + 1), jac=True,
                                    method="L-BFGS-B").x
    return theta[:-1], float(theta[-1])
