"""From a change score to a binary decision: automatic threshold rules and the minimum mapping unit.

Every rule takes the scores of the *valid* pixels only (a 1-D array, NaN already dropped) and
returns one threshold in the units of the score; ``score > threshold`` is change.

- :func:`otsu`: maximum between-class variance (Otsu 1979, IEEE TSMC 9(1):62-66). Good when both
  classes are well populated; when change is rare (a few per cent of an image, the usual case) the
  split drifts into the no-change mode and over-detects.
- :func:`kittler_illingworth`: minimum-error thresholding, a fit of two Gaussians to the histogram
  (Kittler & Illingworth 1986, Pattern Recognition 19(1):41-47); it copes with unequal class sizes
  and spreads, which is why Bazi, Bruzzone & Melgani (2005, IEEE TGRS 43(4):874-887) and others use
  it (or its generalised form) on difference images.
- :func:`rosin`: unimodal thresholding (Rosin 2001, Pattern Recognition 34(11):2083-2096): the
  corner of the histogram, where a line from the peak to the end of the tail lies farthest above
  it. Made for a dominant no-change peak with a long tail of change and no second mode, the usual
  shape when change is rare; it does not drift into the peak as Otsu does.
- :func:`robust_z` and :func:`robust_cut`: a cut at ``k`` robust standard deviations above the
  median (median and 1.4826 x median absolute deviation, Hampel 1974): the no-change majority sets
  the scale, whatever the change fraction (Rousseeuw & Croux 1993, JASA 88:1273-1283).
- :func:`chi2_threshold`: the quantile of a chi-square law with ``df`` degrees of freedom, for
  statistics that follow it under no change (IR-MAD, Nielsen 2007).
- :func:`minimum_mapping_unit`: drops connected change objects smaller than an area in m^2.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
import skimage.filters
import skimage.morphology

#: Scale factor making the median absolute deviation a consistent estimator of a normal sigma.
MAD_TO_SIGMA = 1.4826

def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (1-D, finite)."""
    return float(skimage.filters.threshold_otsu(np.asarray(values), nbins=bins))


def kittler_illingworth(values: np.ndarray, bins: int = 256) -> float:
    """Kittler-Illingworth minimum-error threshold of ``values`` (1-D, finite).

    Minimises ``J(t) = 1 + 2 [P1 ln s1 + P2 ln s2] - 2 [P1 ln P1 + P2 ln P2]`` over the histogram
    bins, where ``P``, ``s`` are the weight and standard deviation of the classes below and above
    ``t``. Bins whose classes are too small to have a spread are skipped.
    """
    values = np.asarray(values, dtype=np.float64)
    counts, edges = np.histogram(values, bins=bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    p = counts / counts.sum()
    w1 = np.cumsum(p)
    m1 = np.cumsum(p * centres)
    s1 = np.cumsum(p * centres**2)
    w2 = 1.0 - w1
    m2 = m1[-1] - m1
    s2 = s1[-1] - s1
    with np.errstate(divide="ignore", invalid="ignore"):
        mu1, mu2 = m1 / w1, m2 / w2
        var1 = s1 / w1 - mu1**2
        var2 = s2 / w2 - mu2**2
        cost = (w1 * np.log(var1) + w2 * np.log(var2)
                - 2.0 * (w1 * np.log(w1) + w2 * np.log(w2)))
    usable = (w1 > 0) & (w2 > 0) & (var1 > 0) & (var2 > 0) & np.isfinite(cost)
    if not usable.any():
        return otsu(values, bins)
    # the threshold is the upper edge of the last bin of the lower class
    return float(edges[1:][usable][np.argmin(cost[usable])])


def rosin(values: np.ndarray, bins: int = 256) -> float:
    """Rosin's unimodal threshold of ``values`` (1-D, finite).

    A straight line joins the histogram's peak to the first empty bin after the last filled one
    (the end of the tail); the threshold is the upper edge of the bin, between the two, whose
    count lies farthest below that line (Rosin 2001). The perpendicular distance to a fixed line
    is proportional to the vertical one, so the result does not depend on how counts and bins are
    scaled against each other.
    """
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins)
    peak = int(np.argmax(counts))
    if peak == bins - 1:
        return float(edges[-1])
    # the line from (peak, counts[peak]) down to (bins, 0), the empty bin after the last one
    position = np.arange(peak, bins)
    line = counts[peak] * (bins - position) / (bins - peak)
    corner = peak + int(np.argmax(line - counts[peak:]))
    return float(edges[corner + 1])


def robust_z(values: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """``(values - median) / (1.4826 MAD)``, median and MAD taken over ``reference`` (finite).

    ``reference`` defaults to the finite ``values``; NaN stays NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    ref = values[np.isfinite(values)] if reference is None else np.asarray(reference)
    centre = np.median(ref)
    spread = MAD_TO_SIGMA * np.median(np.abs(ref - centre))
    return (values - centre) / max(float(spread), np.finfo(np.float64).tiny)


def robust_cut(values: np.ndarray, k: float = 3.0) -> float:
    """``median + k * 1.4826 MAD`` of ``values`` (1-D, finite)."""
    values = np.asarray(values, dtype=np.float64)
    centre = np.median(values)
    return float(centre + k * MAD_TO_SIGMA * np.median(np.abs(values - centre)))


def chi2_threshold(df: int, alpha: float = 0.01) -> float:
    """The chi-square statistic above which the no-change probability is below ``alpha``."""
    return float(scipy.stats.chi2.isf(alpha, df))


def minimum_mapping_unit(change: np.ndarray, min_area_m2: float,
                         pixel_size_m: float) -> np.ndarray:
    """``change`` (bool) without 8-connected objects smaller than ``min_area_m2`` square metres."""
    min_pixels = int(np.ceil(min_area_m2 / pixel_size_m**2))
    if min_pixels <= 1:
        return change.copy()
    return skimage.morphology.remove_small_objects(change, max_size=min_pixels - 1,
                                                   connectivity=2)
