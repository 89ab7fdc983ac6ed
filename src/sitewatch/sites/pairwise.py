"""Sites from a two-date change map, when there is no time series to read.

``sitewatch compare`` and two-date workspaces have only a before and an after image. Their
change map becomes polygons (:func:`sitewatch.sites.polygons.change_polygons`), each typed by the
kind of change most of its pixels show (the ``kinds`` layers of the pairwise methods): new bright
surface reads as new construction or clearing, darkening as destruction (burn, debris), vegetation
loss as such; vegetation gain is not of interest. Its one phase is bracketed by the two dates.
Given the change score and the threshold of the classic ``default`` method, each site carries
the calibrated probability of :data:`sitewatch.sites.probability.PACKAGED_PAIR_MODEL`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sitewatch import geojson
from sitewatch.sites.lifecycle import Lifecycle, Phase
from sitewatch.sites.measure import measure
from sitewatch.sites.polygons import change_polygons, rectangularity
from sitewatch.sites.probability import (
    PACKAGED_PAIR_MODEL,
    PAIR_FEATURES,
    packaged_model,
    pair_site_features,
)
from sitewatch.sites.records import Observation, Site, polygon_window, to_lonlat
from sitewatch.stack import Grid

#: Pairwise kind layer -> (change type, phase name).
KIND_TYPES = {
    "new_bright_surface": ("new_construction", "new_bright_surface"),
    "darkening": ("destruction", "darkened"),
    "vegetation_loss": ("vegetation_loss", "vegetation_lost"),
    "vegetation_gain": ("seasonal_vegetation", "vegetation_gained"),
}


def calibrated_method(parameters: Mapping) -> bool:
    """Whether a pairwise result with these ``parameters`` (``DetectResult.parameters``) comes
    from the classic ``default`` method, the one the pair-site model was fitted on."""
    return (parameters.get("method") == "default"
            and "learned RGB change model" not in (parameters.get("evidence") or ()))


def polygon_features(polygon, change_type: str, score: np.ndarray, threshold: float, grid: Grid,
                     called_share: float) -> np.ndarray | None:
    """The :data:`~sitewatch.sites.probability.PAIR_FEATURES` of a site ``polygon`` (grid CRS)
    of ``change_type`` on a pair's ``score`` raster, cut at ``threshold``, of which
    ``called_share`` (0..1) of the valid pixels were called changed."""
    window, _, inside = polygon_window(polygon, grid)
    return pair_site_features(score[window.toslices()][inside], threshold,
                              polygon.area / grid.resolution ** 2, called_share,
                              rectangularity(polygon), change_type)


def pairwise_sites(change: np.ndarray, kinds: Mapping[str, np.ndarray], grid: Grid,
                   dates: tuple[str, str], *, places: Sequence[dict] = (),
                   borders: Sequence[dict] = (), min_area_m2: float = 2000.0,
                   prefix: str = "site", score: np.ndarray | None = None,
                   threshold: float | None = None) -> tuple[list[Site], dict[str, int]]:
    """Sites of a change map (1 = change) between ``dates`` (before, after; ISO days).

    With ``score`` and ``threshold`` of the classic ``default`` method (see
    :func:`calibrated_method`) each site gets its calibrated probability.
    Returns the sites and the count of polygons left out as not of interest, by type.
    """
    before, after = dates
    valid = change != 255
    called_share = float((change == 1).sum() / max(1, valid.sum()))
    polygons = change_polygons(change == 1, grid.transform, min_area_m2=min_area_m2,
                               valid=valid)
    sites, discarded = [], {}
    for polygon in polygons:
        window, _, inside = polygon_window(polygon, grid)
        shares = {kind: float(layer[window.toslices()][inside].mean())
                  for kind, layer in kinds.items() if kind in KIND_TYPES and inside.any()}
        kind = max(shares, key=shares.get) if shares and max(shares.values()) > 0 else None
        change_type, phase = KIND_TYPES.get(kind, ("unclassified", "changed"))
        if change_type == "seasonal_vegetation":
            discarded[change_type] = discarded.get(change_type, 0) + 1
            continue
        m = measure(polygon, grid.epsg, places=places, borders=borders)
        probability = None
        if score is not None and threshold is not None:
            features = polygon_features(polygon, change_type, score, threshold, grid,
                                        called_share)
            if features is not None:
                model = packaged_model(PACKAGED_PAIR_MODEL)
                probability = float(model.probability(
                    features[model.columns(PAIR_FEATURES)])[0])
        life = Lifecycle(change_type, (Phase(phase, after, before),), after, before)
        observations = [Observation(before, None, None, 0.0, 0.0, 0.0, None),
                        Observation(after, phase, polygon, m.area_m2, m.length_m, m.width_m,
                                    None)]
        sites.append(Site(f"{prefix}-{len(sites) + 1:03d}", polygon, life, m, observations,
                          probability))
    return sites, discarded


def sites_geojson(sites: Sequence[Site], epsg: int) -> dict:
    """A GeoJSON FeatureCollection (lon/lat, :mod:`sitewatch.geojson`) of ``sites`` with their
    measurements and phases."""
    return geojson.feature_collection([geojson.feature(
        to_lonlat(site.footprint, epsg),
        {"site_id": site.site_id, "change_type": site.lifecycle.change_type,
         "status": site.lifecycle.status, "first_seen": site.lifecycle.first_change,
         "last_seen_unchanged": site.lifecycle.last_unchanged,
         "phases": [p.to_dict() for p in site.lifecycle.phases],
         "location": site.measurements.location_phrase(), "probability": site.probability,
         **site.measurements.to_dict()},
        site.site_id) for site in sites])
