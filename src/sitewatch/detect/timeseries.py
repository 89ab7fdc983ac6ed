"""Time-series change detection: when did a pixel's surface change, and how sure are we of it.

For every pixel of a ``(time, bands, rows, cols)`` block this module finds the most significant
abrupt, lasting change (a *structural break*) in a few spectral features and says between which
two clear acquisitions it happened ("construction started between 15 May and 15 June 2019").

Method
------
In the spirit of BFAST (Verbesselt, Hyndman, Newnham & Culvenor 2010, *Remote Sens. Environ.*
114(1):106-115), BFAST Monitor (Verbesselt, Zeileis & Herold 2012, *Remote Sens. Environ.*
123:98-108) and CCDC (Zhu & Woodcock 2014, *Remote Sens. Environ.* 144:152-171), adapted to the
short, gappy series (about a dozen dates) an analyst has for a site:

1. **Features.** Each acquisition gives a few unitless features per pixel, by default the
   vegetation index (NDVI, or GRVI without NIR), a built-up index (NDBI, or its SWIR-free
   stand-ins) and the mean visible reflectance (*brightness*), computed by
   :func:`sitewatch.detect.indices.indices`; a band name (``"B11"``) is a feature too.
2. **Model of a stable series.** Per feature, an ordinary least-squares regression on an
   intercept, plus a linear trend when the series spans at least
   :data:`TREND_MIN_SPAN_DAYS` (CCDC's rule of growing the model with the data), plus
   ``harmonics`` annual harmonic pairs ``cos/sin(2 pi j t)`` (``t`` in years) when
   ``seasonal``, the series spans at least :data:`SEASONAL_MIN_SPAN_DAYS` and the pixel is
   vegetated on two clear dates (:data:`SEASONAL_MIN_VEGETATION`): a dozen monthly dates give
   ``p = 3`` terms on fields and ``p = 1`` on bare ground and buildings. The gate matters on
   short series: over less than a year, with cloud gaps, an annual harmonic soaks up much of
   a bare-ground-to-built step (on the simulator's compound, ungated harmonics found 15 % of
   the pixels, gated 97 %). Masked dates have weight 0, so every pixel has its own design.
3. **Break test.** The alternative adds a level shift ``delta * 1[t >= k]`` (a *partial*
   structural change: seasonality and trend are shared by both segments, which keeps a
   12-date model identifiable). For every candidate break date ``k`` (a clear acquisition
   with at least ``min_segment`` clear dates on each side) and feature, the Chow (1960)
   F statistic of the shift is ``F_k = R_k / (1 - R_k) * nu``, ``R_k = (RSS0 - RSS1_k) /
   RSS0`` the share of the stable model's residual sum of squares the shift removes, ``nu =
   n - p - 1``, ``F_k ~ F(1, nu)`` under Gaussian noise. By Frisch-Waugh-Lovell, ``RSS0 -
   RSS1_k = (d_k' W e)^2 / q_k`` with ``e`` the stable-model residuals; ``d_k' W e`` and
   ``q_k`` are reverse cumulative sums over time, so all candidates cost one pass,
   vectorised over pixels (no refit per ``k``).
4. **Significance and features combined.** The break is the (date, feature) with the largest
   ``F`` (the sup-F statistic of Andrews 1993, *Econometrica* 61(4):821-856, maximised over
   features too). Andrews' asymptotic critical values do not hold for ten-odd observations,
   so the level is made multiple-testing aware with Bonferroni over the pixel's ``c``
   candidate dates and ``m`` features: significant when ``F_max > F^-1(1 - alpha / (m c);
   1, nu)`` (scipy.stats.f), conservative (a stable pixel breaks with probability at most
   ``alpha``). ``statistic`` is ``F_max`` divided by that critical value (> 1 significant).
   The exact joint test (Hotelling's T^2, rank-one Wilks' lambda) was tried: it needs
   ``F(m, n - p - m)``, which with 7-8 clear dates and three features leaves 1-2 degrees of
   freedom and misses even a construction site; the max over features keeps ``nu = n - p - 1``.
5. **One outlier.** A cloud, haze or shadow the mask missed is one date far off the model. It
   is found with the externally studentised residuals of the best two-segment fit (Cook &
   Weisberg 1982, *Residuals and Influence in Regression*), ``t(nu - 1)`` distributed, at the
   Bonferroni level ``OUTLIER_ALPHA / (n m)``; the worst such date per pixel is dropped
   (weight 0) and the test repeated on those pixels, so a single outlier before or after the
   change neither makes nor hides a break.
6. **Persistence** (CCDC's consecutive-observation rule). A post-break clear date *holds the
   change* when it is closer to the new level than to the old one along the shift, each
   feature scaled by its noise variance. A significant break counts only if at least
   ``min_persistence`` post-break dates hold it and at most one does not (a one-date event
   is not a change).

Onset and its uncertainty
-------------------------
The change happened after the last clear acquisition before the break and on or before the
first clear acquisition after it (``onset_index``): ``onset_earliest`` is the day after the
former, ``onset_latest`` the latter, so ``uncertainty_days`` (the revisit gap between the two
clear dates) is the number of days it may have happened on. ``onset`` is the middle day of
that window, the estimate with the smallest expected error when nothing else is known;
analysts should quote the window ("between X and Y").

Memory
------
The block is processed at once (the caller tiles big AOIs). Besides the float32 input
(``4 T B`` bytes a pixel) the work arrays take about ``16 T (m + 1)`` bytes a pixel at their
peak (float64 features, residuals and cumulative sums): measured 2.3 kB a pixel for 12 dates
and 3 features without the seasonal model and 3.5 kB with it (bench/timeseries.py), so up to
0.9 GiB for a 512 x 512 block; the detect stage works in 128 x 128 blocks
(:data:`sitewatch.detect.run.TIMESERIES_BLOCK`), whose work arrays stay in the CPU's cache.
They are float64 on purpose: in float32 the residuals of a pixel with few clear dates (two
degrees of freedom) lose the digits the outlier test's leave-one-out variance is made of, and
tried on the test scene that turned a stable pixel into a break.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
from scipy import stats

from sitewatch.detect.indices import index_formulas, indices
from sitewatch.errors import SitewatchError

__all__ = ["BreakResult", "FEATURES", "detect_breaks"]

#: Feature names and the :func:`sitewatch.detect.indices.indices` output each one is.
FEATURES = {"ndvi": "vegetation", "built": "built_up", "brightness": "brightness"}

#: Shortest span (days) of the clear series that gets annual harmonic terms.
SEASONAL_MIN_SPAN_DAYS = 300.0
#: Vegetation index a pixel must reach on two clear dates to get the seasonal terms, by
#: formula (bare soil has NDVI 0.05-0.2; GRVI > 0 is green vegetation, Motohka et al. 2010).
SEASONAL_MIN_VEGETATION = {"NDVI": 0.25, "GRVI": 0.0}
#: Shortest span (days) that also gets a linear trend term.
TREND_MIN_SPAN_DAYS = 2 * 365.25

#: Series shorter than this have their clear-date patterns counted (a table of 2^(T+1) codes).
PATTERN_COUNT_MAX_DATES = 20

#: Days in a year, for the harmonic terms.
YEAR_DAYS = 365.25

#: Level of the one-outlier test. Stricter than the break test's usual 0.05 because dropping
#: a stable pixel's worst date and testing again inflates false breaks (0.05 here: 6 % false
#: breaks at alpha = 0.05 on pure noise; 0.01: 5.0 %); a missed cloud is far beyond it.
OUTLIER_ALPHA = 0.01

_METHOD = "sup-F level shift, max over features, Bonferroni"


@dataclass
class BreakResult:
    """The most significant break of every pixel of a block.

    A pixel *has a break* where ``onset_index >= 0``: the break is significant
    (``statistic > 1``) and persistent. Onset layers are only filled there.
    ``statistic``, ``magnitude``, ``direction`` and ``persistent`` describe the best candidate
    of every tested pixel, so ``(statistic > 1) & ~persistent`` marks transient events (a
    missed cloud or shadow, a flood). They are NaN / False where a pixel had too few clear
    dates to test (fewer than ``p + 2``, ``p`` the model's terms, or ``2 * min_segment``).

    Attributes
    ----------
    onset_index
        (rows, cols) int16: index into ``times`` of the first clear acquisition after the
        break, -1 where there is no break.
    onset
        (rows, cols) datetime64[D]: middle day of the onset window, NaT without a break.
    onset_earliest
        datetime64[D]: the day after the last clear acquisition before the break.
    onset_latest
        datetime64[D]: the first clear acquisition after the break (the change happened on or
        before it).
    uncertainty_days
        (rows, cols) float32: days between the two bracketing clear acquisitions, i.e. the
        number of days in ``[onset_earliest, onset_latest]``; NaN without a break.
    magnitude
        (rows, cols) float32: Euclidean norm over features of the level shift (unitless).
    direction
        Per feature name, (rows, cols) float32: the signed level shift (after - before).
    statistic
        (rows, cols) float32: sup-F divided by its Bonferroni critical value (> 1 significant).
    persistent
        (rows, cols) bool: the best candidate's new level holds for the remaining clear dates
        (at least ``min_persistence``, at most one exception).
    outlier_index
        (rows, cols) int16: index of the date dropped as a one-date outlier (a cloud or
        shadow the mask missed), -1 where none; it does not count as a clear date.
    method
        Name of the method.
    parameters
        Everything needed to reproduce the result (JSON-serialisable).
    """

    onset_index: np.ndarray
    onset: np.ndarray
    onset_earliest: np.ndarray
    onset_latest: np.ndarray
    uncertainty_days: np.ndarray
    magnitude: np.ndarray
    direction: dict[str, np.ndarray]
    statistic: np.ndarray
    persistent: np.ndarray
    outlier_index: np.ndarray
    method: str = _METHOD
    parameters: dict = field(default_factory=dict)


@dataclass
class _Scan:
    """Best two-segment fit of each pixel; every array has pixels on its last axis."""

    tested: np.ndarray     # (P,) bool: enough clear dates and a well-posed design
    k: np.ndarray          # (P,) int: time index of the first post-break date
    fstat: np.ndarray      # (P,) F_max
    candidates: np.ndarray  # (P,) number of admissible break dates
    dof: np.ndarray        # (P,) nu = n - p - 1 of the two-segment model
    delta: np.ndarray      # (m, P) level shift
    resid: np.ndarray      # (T, m, P) residuals of the two-segment fit (0 where not clear)
    leverage: np.ndarray   # (T, P) hat-matrix diagonal of the two-segment fit
    noise: np.ndarray      # (m, P) residual variance of the two-segment fit


def detect_breaks(
    values: np.ndarray,
    valid: np.ndarray,
    times: np.ndarray,
    band_names: Sequence[str],
    *,
    features: Sequence[str] = ("ndvi", "brightness", "built"),
    seasonal: bool = True,
    harmonics: int = 1,
    min_segment: int = 2,
    alpha: float = 0.05,
    min_persistence: int = 2,
) -> BreakResult:
    """Find the most significant lasting break of each pixel's series (see the module doc).

    Parameters
    ----------
    values
        (time, bands, rows, cols) reflectance 0..1, NaN where invalid.
    valid
        (time, rows, cols) bool, False for nodata, cloud and shadow.
    times
        (time,) datetime64 acquisition times, increasing (irregular spacing is fine).
    band_names
        Names of the bands: Sentinel-2 (``B02`` ...), Landsat or common names (``red``).
    features
        ``"ndvi"``, ``"brightness"``, ``"built"`` or band names. A feature the bands cannot
        give, or one that duplicates another (``built`` is ``-GRVI`` on RGB), is left out and
        the features used are in ``parameters["features"]``.
    seasonal, harmonics
        Model the annual cycle of vegetated pixels with ``harmonics`` harmonic pairs (when
        the series spans at least :data:`SEASONAL_MIN_SPAN_DAYS`; see :func:`_models`).
    min_segment
        Fewest clear dates on each side of a candidate break.
    alpha
        Level of the break test: the false-break probability of a stable pixel (at most).
    min_persistence
        Fewest post-break clear dates that must hold the new level.

    Returns
    -------
    BreakResult

    Raises
    ------
    SitewatchError
        For inconsistent shapes, unordered times, bad parameters or no usable feature.
    """
    values = np.asarray(values)
    valid = np.asarray(valid, dtype=bool)
    times = np.asarray(times).astype("datetime64[ns]")
    _check(values, valid, times, band_names, harmonics, min_segment, alpha, min_persistence)
    n_time, _, rows, cols = values.shape

    names, series, formulas, greenness = _features(values, band_names, features)
    series = series.reshape(n_time, len(names), rows * cols)
    clear = valid.reshape(n_time, -1) & np.isfinite(series).all(axis=1)
    designs, seasonal_px, gate = _models(times, clear, greenness, seasonal, harmonics)

    scan = _scan_models(series, clear, seasonal_px, designs, min_segment)
    outlier = _outlier_date(scan, clear)
    redo = np.flatnonzero(outlier >= 0)
    if redo.size:
        clear[outlier[redo], redo] = False
        _put(scan, redo, _scan_models(series[:, :, redo], clear[:, redo], seasonal_px[redo],
                                      designs, min_segment))

    m, tested = len(names), scan.tested
    statistic = np.full(rows * cols, np.nan)
    critical = _per_count(lambda c, dof: stats.f.isf(alpha / (m * c), 1, dof),
                          scan.candidates[tested], scan.dof[tested])
    statistic[tested] = scan.fstat[tested] / critical
    persistent = _persistent(scan, clear, min_persistence)
    has_break = (statistic > 1) & persistent

    onset_index, earliest, latest = _onset_window(scan.k, clear, times, has_break)
    days = (latest - earliest).astype(np.float64) + 1.0
    gap = np.where(has_break, days, np.nan).astype(np.float32)
    onset = earliest + (latest - earliest) // 2
    delta = np.where(tested, scan.delta, np.nan).astype(np.float32)

    def grid(a):
        return a.reshape(rows, cols)

    return BreakResult(
        onset_index=grid(onset_index),
        onset=grid(onset),
        onset_earliest=grid(earliest),
        onset_latest=grid(latest),
        uncertainty_days=grid(gap),
        magnitude=grid(np.sqrt((delta ** 2).sum(axis=0))),
        direction={name: grid(d) for name, d in zip(names, delta, strict=True)},
        statistic=grid(statistic.astype(np.float32)),
        persistent=grid(persistent),
        outlier_index=grid(outlier.astype(np.int16)),
        parameters={
            "features": list(names), "formulas": formulas,
            "model_terms": {("seasonal" if flag else "flat"): terms
                            for flag, (_, terms) in designs.items()},
            "seasonal_gate": gate, "seasonal_share": float(seasonal_px.mean()),
            "seasonal": seasonal, "harmonics": harmonics, "min_segment": min_segment,
            "alpha": alpha, "min_persistence": min_persistence,
            "test": "F of a level shift, max over features and break dates",
            "critical_value": "Bonferroni over features x candidate dates, scipy.stats.f",
            "outliers": f"one date per pixel, studentised residual, level {OUTLIER_ALPHA}/(n m)",
            "onset": "middle day of [onset_earliest, onset_latest]",
            "times": [str(t) for t in times.astype("datetime64[s]")],
        },
    )


def _check(values, valid, times, band_names, harmonics, min_segment, alpha,
           min_persistence) -> None:
    """Raise :class:`SitewatchError` for inputs the method cannot take."""
    if values.ndim != 4:
        raise SitewatchError(f"values must be (time, bands, rows, cols), got shape "
                             f"{values.shape}")
    n_time, n_band, rows, cols = values.shape
    if valid.shape != (n_time, rows, cols):
        raise SitewatchError(f"valid has shape {valid.shape}, expected (time, rows, cols) = "
                             f"{(n_time, rows, cols)}")
    if times.shape != (n_time,):
        raise SitewatchError(f"{times.size} times for {n_time} acquisitions")
    if len(band_names) != n_band:
        raise SitewatchError(f"{len(band_names)} band names for {n_band} bands")
    if rows * cols == 0:
        raise SitewatchError(f"the block {values.shape} has no pixels")
    if n_time > np.iinfo(np.int16).max:
        raise SitewatchError(f"{n_time} acquisitions are more than a block can take; "
                             "split the series in time")
    if np.any(np.diff(times) <= np.timedelta64(0, "ns")) or np.isnat(times).any():
        raise SitewatchError("times must be valid and strictly increasing; sort the stack")
    if isinstance(harmonics, bool) or not isinstance(harmonics, int) or harmonics < 0:
        raise SitewatchError(f"harmonics={harmonics!r} must be a whole number >= 0")
    for name, value in (("min_segment", min_segment), ("min_persistence", min_persistence)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SitewatchError(f"{name}={value!r} must be a whole number >= 1")
    if not 0.0 < alpha < 1.0:
        raise SitewatchError(f"alpha={alpha!r} must be between 0 and 1")


def _features(values: np.ndarray, band_names: Sequence[str], features: Sequence[str]
              ) -> tuple[list[str], np.ndarray, dict[str, str], tuple[str, np.ndarray] | None]:
    """The features' series: names, (time, m, rows, cols) float64, each one's formula, and
    the vegetation index (formula, (time, rows, cols)) for the seasonal gate, None without
    one."""
    formulas = index_formulas(band_names)
    lookup = {name.lower(): i for i, name in enumerate(band_names)}
    computed = indices(values.swapaxes(0, 1), band_names)
    names, series, used = [], [], {}
    for name in features:
        if name in FEATURES:
            formula = formulas[FEATURES[name]]
            if formula == "none" or (formula == "-GRVI" and "ndvi" in features):
                continue  # the bands cannot give it, or it is -ndvi
            used[name] = formula
            series.append(computed[FEATURES[name]])
        elif name.lower() in lookup:
            used[name] = "band reflectance"
            series.append(values[:, lookup[name.lower()]])
        else:
            raise SitewatchError(f"unknown feature {name!r}; use {', '.join(FEATURES)} or a "
                                 f"band name ({', '.join(band_names)})")
        names.append(name)
    if not names:
        raise SitewatchError(f"none of the features {list(features)} can be computed from "
                             f"bands {list(band_names)}")
    vegetation = formulas["vegetation"]
    greenness = None if vegetation == "none" else (vegetation, computed["vegetation"])
    return names, np.stack(series, axis=1).astype(np.float64), used, greenness


def _models(times: np.ndarray, clear: np.ndarray, greenness, seasonal: bool, harmonics: int
            ) -> tuple[dict[bool, tuple[np.ndarray, list[str]]], np.ndarray, str]:
    """The designs ({seasonal?: (design, terms)}), which pixels are seasonal, and the rule.

    A pixel gets the harmonic terms when ``seasonal``, the series spans at least
    :data:`SEASONAL_MIN_SPAN_DAYS` and the pixel is vegetated on at least two clear dates
    (its second-highest vegetation index reaches :data:`SEASONAL_MIN_VEGETATION`): only
    vegetation has an annual cycle, and on a short series an annual harmonic would otherwise
    soak up much of a bare-ground-to-built step.
    """
    flat = _design(times, seasonal=False, harmonics=0)
    n_pix = clear.shape[1]
    span = (times[-1] - times[0]) / np.timedelta64(1, "D")
    if not (seasonal and harmonics and span >= SEASONAL_MIN_SPAN_DAYS):
        return {False: flat}, np.zeros(n_pix, bool), "no harmonic terms"
    designs = {False: flat, True: _design(times, seasonal=True, harmonics=harmonics)}
    if greenness is None:
        return designs, np.ones(n_pix, bool), "every pixel (no vegetation index)"
    formula, index = greenness
    index = np.where(clear, index.reshape(clear.shape), -np.inf)
    second = np.sort(index, axis=0)[-2] if index.shape[0] >= 2 else index[0]
    threshold = SEASONAL_MIN_VEGETATION[formula]
    return designs, second >= threshold, f"second-highest clear {formula} >= {threshold}"


def _design(times: np.ndarray, seasonal: bool, harmonics: int) -> tuple[np.ndarray, list[str]]:
    """The stable-series design matrix (time, p) and the names of its columns."""
    days = (times - times[0]) / np.timedelta64(1, "D")
    years = days / YEAR_DAYS
    columns, terms = [np.ones_like(years)], ["intercept"]
    if days[-1] >= TREND_MIN_SPAN_DAYS:
        columns.append(years)
        terms.append("trend (per year)")
    if seasonal:
        for j in range(1, harmonics + 1):
            columns += [np.cos(2 * np.pi * j * years), np.sin(2 * np.pi * j * years)]
            terms += [f"cos {j}/year", f"sin {j}/year"]
    return np.stack(columns, axis=1), terms


def _scan_models(y: np.ndarray, clear: np.ndarray, seasonal_px: np.ndarray,
                 designs: dict[bool, tuple[np.ndarray, list[str]]], min_segment: int) -> _Scan:
    """Test every candidate break date of every pixel at once and keep the best.

    ``y`` is (time, m, P), ``clear`` (time, P), ``seasonal_px`` (P,) which pixels use the
    seasonal design. Adding the step ``d_k = 1[t >= k]`` to the weighted regression on the
    design ``X`` reduces the residual cross-products by ``u u'`` with ``u = d_k' W e /
    sqrt(q_k)``, ``e`` the null residuals and ``q_k = d_k' W d_k - d_k' W X G^-1 X' W d_k``
    (Frisch-Waugh-Lovell). ``d_k' W e``, ``d_k' W d_k`` and ``X' W d_k`` are reverse
    cumulative sums over time, so all ``k`` cost one pass, vectorised over pixels.

    Everything but ``e`` depends only on a pixel's *pattern* (its clear dates and its design),
    and a block has few of them (tens, at most ``2^T``), so that algebra is done once per
    pattern (:func:`_pattern_algebra`) and gathered; the pixels only pay for their residuals.
    Index letters: t, k time; a features; i, j design columns; n pixels; u patterns.
    """
    n_time, m, n_pix = y.shape
    pix = np.arange(n_pix)
    first, pattern = _patterns(clear, seasonal_px)
    algebra = _pattern_algebra(clear[:, first], seasonal_px[first], designs, min_segment)
    design = designs[max(designs)][0]  # the widest: every other design is its first columns
    width = design.shape[1]
    w = clear.astype(np.float64)
    y = np.where(clear[:, None], y, 0.0)
    ginv = algebra.ginv[pattern]                                # (n, i, j)
    xwy = (design.T @ y.reshape(n_time, -1)).reshape(width, m, n_pix)  # X' W y  (j, a, n)
    beta = np.einsum("nij,jan->ian", ginv, xwy)
    resid0 = y - (design @ beta.reshape(width, -1)).reshape(n_time, m, n_pix)
    resid0 *= w[:, None]
    rss0 = np.einsum("tan,tan->an", resid0, resid0) + 1e-30    # (a, n)
    shift = _tail_sums(resid0)                                  # d_k' W e       (k, a, n)
    q = algebra.q[:, pattern]                                   # (k, n)
    admissible = algebra.admissible[:, pattern]
    explained = np.square(shift)                                # share of RSS0 the step removes
    explained /= q[:, None]
    explained /= rss0
    strongest = np.where(admissible, explained.max(axis=1), -1.0)
    k = np.argmax(strongest, axis=0)
    candidates = algebra.candidates[pattern]
    tested = algebra.tested[pattern] & (candidates > 0)
    dof = algebra.dof[pattern]

    best = np.clip(strongest[k, pix], 0.0, 1.0 - 1e-12)
    fstat = best / (1.0 - best) * np.maximum(dof, 1)
    delta = np.ascontiguousarray(shift[k, :, pix].T) / q[k, pix]  # (a, n), C order
    g = np.einsum("nij,nj->in", ginv, algebra.cols[k, :, pattern])
    step = (np.arange(n_time)[:, None] >= k) - design @ g       # M0 d_k           (t, n)
    resid = delta[None] * step[:, None]
    np.subtract(resid0, resid, out=resid)
    resid *= w[:, None]
    leverage = (algebra.hat[:, pattern] + step ** 2 / q[k, pix]) * w
    noise = np.einsum("tan,tan->an", resid, resid) / np.maximum(dof, 1) + 1e-30
    return _Scan(tested, k, fstat, candidates, dof, delta, resid, leverage, noise)


def _tail_sums(a: np.ndarray) -> np.ndarray:
    """Reverse cumulative sums over the first axis, ``out[k] = a[k:].sum(axis=0)``: a loop over
    the dates, each step one contiguous add (numpy's cumsum over a reversed first axis is
    about eight times slower)."""
    out = np.empty_like(a)
    out[-1] = a[-1]
    for t in range(a.shape[0] - 2, -1, -1):
        np.add(out[t + 1], a[t], out=out[t])
    return out


@dataclass
class _PatternAlgebra:
    """The data-free part of :func:`_scan_models` for each pattern (last or first axis u)."""

    ginv: np.ndarray        # (u, i, j) G^-1 = (X' W X)^-1, zero-padded to the widest design
    cols: np.ndarray        # (k, i, u) X' W d_k
    q: np.ndarray           # (k, u) q_k, 1 where k is not admissible
    admissible: np.ndarray  # (k, u) k is a candidate break date
    hat: np.ndarray         # (t, u) hat-matrix diagonal of the stable model
    tested: np.ndarray      # (u,) enough clear dates and a well-posed design
    dof: np.ndarray         # (u,) n - p - 1
    candidates: np.ndarray  # (u,) number of admissible break dates


def _patterns(clear: np.ndarray, seasonal_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (clear dates, seasonal) patterns: one pixel index of each, and each
    pixel's pattern number."""
    n_time, n_pix = clear.shape
    if n_time < PATTERN_COUNT_MAX_DATES:  # a bit per date: count the codes, no sort
        code = seasonal_px.astype(np.int64) << n_time
        for t in range(n_time):
            code |= clear[t].astype(np.int64) << t
        present = np.flatnonzero(np.bincount(code))
        number = np.zeros(int(present[-1]) + 1, np.int64)
        number[present] = np.arange(present.size)
        pattern = number[code]
        first = np.zeros(present.size, np.int64)
        first[pattern] = np.arange(n_pix)  # a pixel of each pattern
        return first, pattern
    bits = np.ascontiguousarray(np.packbits(np.vstack([clear, seasonal_px[None]]), axis=0).T)
    _, first, pattern = np.unique(bits, axis=0, return_index=True, return_inverse=True)
    return first, pattern.ravel()


def _pattern_algebra(clear: np.ndarray, seasonal: np.ndarray,
                     designs: dict[bool, tuple[np.ndarray, list[str]]],
                     min_segment: int) -> _PatternAlgebra:
    """:class:`_PatternAlgebra` of patterns with clear dates ``clear`` (time, u) and designs
    ``designs[seasonal[u]]``."""
    n_time, n_pat = clear.shape
    width = designs[max(designs)][0].shape[1]
    w = clear.astype(np.float64)
    n = w.sum(axis=0)
    ginv = np.zeros((n_pat, width, width))
    tested = np.zeros(n_pat, bool)
    dof = np.zeros(n_pat)
    for flag, (design, _) in designs.items():
        idx = np.flatnonzero(seasonal == flag)
        p = design.shape[1]
        gram = np.einsum("ti,tj,tu->uij", design, design, w[:, idx])
        scale = np.prod(np.einsum("uii->ui", gram), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            well_posed = np.linalg.det(gram) > 1e-6 * scale  # Hadamard ratio: not collinear
        dof[idx] = n[idx] - p - 1
        tested[idx] = well_posed & (dof[idx] >= 1) & (n[idx] >= 2 * min_segment)
        gram[~tested[idx]] = np.eye(p)
        ginv[idx, :p, :p] = np.linalg.inv(gram)
    design = designs[max(designs)][0]
    n_post = _tail_sums(w)                                                     # (k, u)
    cols = _tail_sums(w[:, None, :] * design[:, :, None])                      # (k, i, u)
    q = n_post - np.einsum("kiu,uij,kju->ku", cols, ginv, cols)
    admissible = (clear & tested & (n - n_post >= min_segment) & (n_post >= min_segment)
                  & (q > 1e-9 * n_post))
    return _PatternAlgebra(
        ginv=ginv, cols=cols, q=np.where(admissible, q, 1.0), admissible=admissible,
        hat=np.einsum("ti,uij,tj->tu", design, ginv, design), tested=tested, dof=dof,
        candidates=admissible.sum(axis=0))


def _put(target: _Scan, idx: np.ndarray, part: _Scan) -> None:
    """Write the pixels of ``part`` into ``target`` at pixel indices ``idx``."""
    for f in fields(_Scan):
        getattr(target, f.name)[..., idx] = getattr(part, f.name)


def _per_count(function, *counts: np.ndarray) -> np.ndarray:
    """``function(*counts)`` element-wise for arrays of small whole numbers (dates, degrees of
    freedom), evaluated once per distinct tuple: they take a handful of values over millions
    of pixels, and scipy's inverse survival functions are slow. The tuples are numbered in
    mixed radix and found with a count, no sort."""
    arrays = [np.asarray(c).astype(np.int64) for c in np.broadcast_arrays(*counts)]
    if arrays[0].size == 0:
        return np.zeros(arrays[0].shape)
    radices = [int(a.max()) + 1 for a in arrays]
    code = np.zeros(arrays[0].shape, np.int64)
    for array, radix in zip(arrays, radices, strict=True):
        code = code * radix + array
    present = np.flatnonzero(np.bincount(code.ravel()))
    args, rest = [], present
    for radix in reversed(radices):
        args.insert(0, rest % radix)
        rest = rest // radix
    table = np.zeros(int(present[-1]) + 1)
    table[present] = function(*args)
    return table[code]


def _outlier_date(scan: _Scan, clear: np.ndarray) -> np.ndarray:
    """Per pixel, the time index of its single worst outlier, -1 where none is significant.

    Externally studentised residual of each clear date and feature under the best
    two-segment fit, ``t(nu - 1)`` distributed; significant beyond the Bonferroni level
    ``OUTLIER_ALPHA / (n m)`` (two-sided).
    """
    n_time, m, n_pix = scan.resid.shape
    usable = scan.tested & (scan.dof >= 2)
    rest = 1.0 - scan.leverage
    ok = clear & usable & (rest > 1e-8)
    rest = np.where(ok, rest, 1.0)[:, None]
    squares = np.square(scan.resid)
    rss = squares.sum(axis=0)
    deleted = np.divide(squares, rest, out=squares)  # leave-one-out residual variance
    np.subtract(rss, deleted, out=deleted)
    deleted /= np.maximum(scan.dof - 1, 1)
    np.maximum(deleted, 1e-30, out=deleted)
    deleted *= rest
    student = np.abs(scan.resid)
    student /= np.sqrt(deleted, out=deleted)
    worst_value = np.where(ok[:, None], student, 0.0).max(axis=1)
    worst = np.argmax(worst_value, axis=0)
    n = clear.sum(axis=0)
    critical = np.full(n_pix, np.inf)
    critical[usable] = _per_count(lambda n, dof: stats.t.isf(OUTLIER_ALPHA / (2 * n * m), dof),
                                  n[usable], scan.dof[usable] - 1)
    return np.where(worst_value[worst, np.arange(n_pix)] > critical, worst, -1)


def _persistent(scan: _Scan, clear: np.ndarray, min_persistence: int) -> np.ndarray:
    """Whether the new level holds after the best break (CCDC's consecutive rule, one
    exception allowed): a post-break date holds it when it is nearer the new level than the
    old, measured along the shift with each feature scaled by its noise variance."""
    post = clear & (np.arange(clear.shape[0])[:, None] >= scan.k)
    along = (scan.resid * (scan.delta / scan.noise)).sum(axis=1)
    size = (scan.delta ** 2 / scan.noise).sum(axis=0)
    holds = (post & (along > -0.5 * size)).sum(axis=0)
    return scan.tested & (holds >= min_persistence) & (holds >= post.sum(axis=0) - 1)


def _onset_window(k: np.ndarray, clear: np.ndarray, times: np.ndarray,
                  has_break: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``onset_index`` (int16) and the onset window ``[earliest, latest]`` (datetime64[D])."""
    n_time, n_pix = clear.shape
    last_clear = np.maximum.accumulate(np.where(clear, np.arange(n_time)[:, None], -1), axis=0)
    before = last_clear[np.maximum(k - 1, 0), np.arange(n_pix)]
    days = times.astype("datetime64[D]")
    nat = np.datetime64("NaT", "D")
    earliest = np.where(has_break, days[before] + np.timedelta64(1, "D"), nat)
    latest = np.where(has_break, days[k], nat)
    return np.where(has_break, k, -1).astype(np.int16), earliest, latest
