"""Relative radiometric normalisation of one date onto another.

Two images of the same place on the same grid differ radiometrically for reasons that are not
change on the ground: sensor calibration, atmosphere, sun and view geometry, phenology of the
whole scene. Relative normalisation maps the *target* image band by band onto the *reference*
so that unchanged ground has the same values on both dates, and records what was fitted so that a
report can show it and a run can be repeated.

Two methods:

``"irmad"`` (default)
    Automatic pseudo-invariant features (Canty, Nielsen & Schmidt 2004, RSE 91:441-451; Canty &
    Nielsen 2008, RSE 112:1025-1036). IR-MAD (:mod:`sitewatch.stack.mad`) is invariant to linear
    radiometric differences between the dates, so its no-change probability finds the pixels
    whose spectra did not change, whatever the gains and offsets are. Pixels with a no-change
    probability above ``no_change_threshold`` are the pseudo-invariant features (PIFs); per band an
    orthogonal (total least squares) regression of reference on target over the PIFs gives
    ``reference ~= gain * target + offset``.

    Why orthogonal and not ordinary least squares: both images carry noise of similar size.
    OLS of reference on target assumes the target is exact and therefore shrinks the gain towards
    zero by the factor ``var(signal) / (var(signal) + var(target noise))`` (regression dilution),
    and its fit target->reference is not the inverse of the fit reference->target. Orthogonal
    regression minimises perpendicular distances, treats the two dates alike (the fits are
    exact inverses of each other) and is unbiased when the two noise variances are equal, which is
    the usual case for the same sensor on two dates.

``"histogram"``
    Robust quantile (CDF) matching of every band over the valid pixels, for scenes where IR-MAD
    finds too few invariant pixels or the change is not the point. The mapping is piecewise
    linear through the quantile pairs at the 2nd, 4th, ..., 98th percentiles of target and
    reference (:data:`HISTOGRAM_LEVELS`); beyond the outer pairs it continues with the slope of
    the equivalent linear fit, so a few outliers in the tails never set the mapping. The quantile
    pairs are stored in :attr:`Normalisation.quantile_pairs` and define :meth:`Normalisation.apply`;
    ``fits`` holds the equivalent linear fit (least squares line through the quantile pairs), for
    the record only.

Both methods fit on a random subsample of at most ``max_samples`` valid pixels, so fitting costs
the same whatever the scene size, and :meth:`Normalisation.apply` is elementwise: the caller can
apply it window by window. NaN stays NaN. The arrays here are on one grid already; the caller keeps
the georeference (CRS, transform, nodata) that goes with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sitewatch.errors import SitewatchError
from sitewatch.stack.mad import irmad

__all__ = [
    "HISTOGRAM_LEVELS",
    "MIN_INVARIANT_PIXELS",
    "BandFit",
    "Normalisation",
    "fit_normalisation",
    "orthogonal_regression",
]

#: Quantile levels matched by the ``"histogram"`` method: 2 %, 4 %, ..., 98 %.
HISTOGRAM_LEVELS = np.round(np.linspace(0.02, 0.98, 49), 6)
#: Fewest pseudo-invariant pixels the ``"irmad"`` method will fit a band on.
MIN_INVARIANT_PIXELS = 100
#: Fewest valid pixels either method needs.
MIN_VALID_PIXELS = 100
METHODS = ("irmad", "histogram")


@dataclass(frozen=True)
class BandFit:
    """Linear radiometric fit of one band: ``target_normalised = gain * target + offset``."""

    band: str
    gain: float
    offset: float
    n_pixels: int  #: pixels fitted: PIFs for "irmad", sampled valid pixels for "histogram"
    r: float  #: Pearson correlation of target and reference over those pixels

    def to_dict(self) -> dict:
        return {
            "band": self.band,
            "gain": float(self.gain),
            "offset": float(self.offset),
            "n_pixels": int(self.n_pixels),
            "r": float(self.r),
        }


@dataclass
class Normalisation:
    """A fitted relative normalisation of a target image onto a reference image.

    For ``method="irmad"`` :meth:`apply` uses the linear ``fits``. For ``method="histogram"`` it
    uses the piecewise-linear quantile mapping in ``quantile_pairs`` (per band name: ``levels``,
    ``target`` and ``reference`` quantiles), and ``fits`` records the equivalent least-squares
    line through those pairs.
    """

    method: str  #: "irmad" | "histogram"
    fits: list[BandFit]
    invariant_fraction: float | None  #: share of sampled valid pixels that were PIFs ("irmad")
    quantile_pairs: dict[str, dict[str, list[float]]] | None = None
    parameters: dict = field(default_factory=dict)  #: how the fit was made (JSON-serialisable)

    @property
    def band_names(self) -> list[str]:
        return [fit.band for fit in self.fits]

    def apply(self, target: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Normalise ``target`` (``(bands, ...)``, e.g. a whole image or one window).

        Elementwise: NaN stays NaN, and pixels where ``valid`` (broadcastable to
        ``target.shape[1:]``, or to ``target.shape``) is false become NaN. Float32 input gives
        float32 output; anything else gives float64.
        """
        target = np.asarray(target)
        if target.ndim < 1 or target.shape[0] != len(self.fits):
            raise SitewatchError(
                f"this normalisation was fitted on {len(self.fits)} bands "
                f"({', '.join(self.band_names)}), the image to normalise has shape {target.shape}"
            )
        dtype = np.float32 if target.dtype == np.float32 else np.float64
        out = np.empty(target.shape, dtype=dtype)
        for i, fit in enumerate(self.fits):
            band = target[i].astype(np.float64, copy=False)
            if self.method == "histogram" and self.quantile_pairs is not None:
                pairs = self.quantile_pairs[fit.band]
                out[i] = _piecewise_linear(
                    band, np.asarray(pairs["target"]), np.asarray(pairs["reference"]), fit.gain
                )
            else:
                out[i] = fit.gain * band + fit.offset
        if valid is not None:
            valid = np.asarray(valid, dtype=bool)
            invalid = ~valid
            if valid.shape == target.shape:
                out[invalid] = np.nan
            else:
                out[:, np.broadcast_to(invalid, target.shape[1:])] = np.nan
        return out

    def to_dict(self) -> dict:
        """JSON-serialisable record for the store (round-trips through :meth:`from_dict`)."""
        return {
            "method": self.method,
            "model": "target_normalised = gain * target + offset"
            if self.method == "irmad"
            else "piecewise linear through quantile_pairs (target -> reference); "
            "fits are the least-squares line through the pairs",
            "fits": [fit.to_dict() for fit in self.fits],
            "invariant_fraction": None
            if self.invariant_fraction is None
            else float(self.invariant_fraction),
            "quantile_pairs": self.quantile_pairs,
            "parameters": self.parameters,
        }

    @classmethod
    def from_dict(cls, record: dict) -> Normalisation:
        """Rebuild a normalisation from :meth:`to_dict` output."""
        try:
            method = record["method"]
            fits = [
                BandFit(
                    band=str(f["band"]),
                    gain=float(f["gain"]),
                    offset=float(f["offset"]),
                    n_pixels=int(f["n_pixels"]),
                    r=float(f["r"]),
                )
                for f in record["fits"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise SitewatchError(f"not a normalisation record ({exc!r})") from None
        if method not in METHODS:
            raise SitewatchError(f"unknown normalisation method {method!r} in record")
        return cls(
            method=method,
            fits=fits,
            invariant_fraction=record.get("invariant_fraction"),
            quantile_pairs=record.get("quantile_pairs"),
            parameters=dict(record.get("parameters") or {}),
        )


def fit_normalisation(
    reference: np.ndarray,
    target: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    band_names: Sequence[str] | None = None,
    method: str = "irmad",
    no_change_threshold: float = 0.95,
    max_samples: int = 200_000,
    seed: int = 0,
) -> Normalisation:
    """Fit a relative normalisation of ``target`` onto ``reference``.

    Parameters
    ----------
    reference, target
        ``(bands, rows, cols)`` images of the same place on the same grid (reflectance).
    valid
        Pixels that may be used (``(rows, cols)``, or ``(bands, rows, cols)`` where a pixel is
        used only if valid in every band): clouds, shadows and nodata excluded. Pixels that are
        non-finite in either image are never used.
    band_names
        Names recorded in the fits; ``band1``, ``band2``, ... by default.
    method
        ``"irmad"`` (pseudo-invariant features + orthogonal regression) or ``"histogram"``
        (robust quantile matching); see the module documentation.
    no_change_threshold
        ``"irmad"``: pixels with IR-MAD no-change probability above this are invariant.
    max_samples, seed
        The fit uses at most ``max_samples`` valid pixels, drawn at random with ``seed``.

    Raises
    ------
    SitewatchError
        Shapes that do not match, too few valid pixels, or (``"irmad"``) too few invariant
        pixels; the message says what to try.
    """
    if method not in METHODS:
        raise SitewatchError(
            f"unknown normalisation method {method!r}; use one of {', '.join(METHODS)}"
        )
    if not 0.0 < no_change_threshold < 1.0:
        raise SitewatchError(
            f"no_change_threshold must be between 0 and 1, got {no_change_threshold}"
        )
    if max_samples < MIN_VALID_PIXELS:
        raise SitewatchError(f"max_samples must be at least {MIN_VALID_PIXELS}")
    reference = np.asarray(reference)
    target = np.asarray(target)
    if reference.ndim != 3 or reference.shape != target.shape:
        raise SitewatchError(
            "reference and target must be (bands, rows, cols) images on the same grid, got "
            f"shapes {reference.shape} and {target.shape}; resample them onto one grid first"
        )
    bands = reference.shape[0]
    if band_names is None:
        band_names = [f"band{i + 1}" for i in range(bands)]
    band_names = [str(name) for name in band_names]
    if len(band_names) != bands:
        raise SitewatchError(f"{len(band_names)} band names given for {bands} bands")

    ok = np.isfinite(reference).all(axis=0) & np.isfinite(target).all(axis=0)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape == reference.shape:
            valid = valid.all(axis=0)
        if valid.shape != ok.shape:
            raise SitewatchError(
                f"validity mask has shape {valid.shape}, the images {reference.shape}; "
                "give one (rows, cols) mask on the same grid"
            )
        ok &= valid
    index = np.flatnonzero(ok)
    n_valid = int(index.size)
    if n_valid < MIN_VALID_PIXELS:
        raise SitewatchError(
            f"only {n_valid} pixels are valid (unmasked and finite) in both images, need at "
            f"least {MIN_VALID_PIXELS} to fit a normalisation; pick a less cloudy date or a "
            "larger area"
        )
    rng = np.random.default_rng(seed)
    if n_valid > max_samples:
        index = np.sort(rng.choice(index, size=max_samples, replace=False))
    ref_s = reference.reshape(bands, -1)[:, index].astype(np.float64)
    tgt_s = target.reshape(bands, -1)[:, index].astype(np.float64)
    parameters = {
        "no_change_threshold": float(no_change_threshold) if method == "irmad" else None,
        "max_samples": int(max_samples),
        "seed": int(seed),
        "n_valid": n_valid,
        "n_sampled": int(index.size),
    }
    if method == "irmad":
        return _fit_irmad(ref_s, tgt_s, band_names, no_change_threshold, parameters)
    return _fit_histogram(ref_s, tgt_s, band_names, parameters)


def orthogonal_regression(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Orthogonal (total least squares) line ``y ~= gain * x + offset`` and Pearson ``r``.

    The slope is the direction of the major axis of the ``(x, y)`` covariance ellipse:
    ``(syy - sxx + sqrt((syy - sxx)^2 + 4 sxy^2)) / (2 sxy)``. Swapping ``x`` and ``y`` gives the
    inverse line exactly.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mx, my = x.mean(), y.mean()
    dx, dy = x - mx, y - my
    sxx, syy, sxy = np.mean(dx * dx), np.mean(dy * dy), np.mean(dx * dy)
    if sxx <= 0 or syy <= 0 or sxy == 0:
        return float("nan"), float("nan"), 0.0
    gain = (syy - sxx + np.sqrt((syy - sxx) ** 2 + 4.0 * sxy**2)) / (2.0 * sxy)
    return float(gain), float(my - gain * mx), float(sxy / np.sqrt(sxx * syy))


def _fit_irmad(ref_s, tgt_s, band_names, threshold, parameters) -> Normalisation:
    # x = reference, y = target: the sign/ordering conventions follow the reference date
    mad = irmad(ref_s, tgt_s)
    pif = mad.no_change_probability > threshold
    n_pif = int(np.count_nonzero(pif))
    if n_pif < MIN_INVARIANT_PIXELS:
        raise SitewatchError(
            f"IR-MAD found only {n_pif} pseudo-invariant pixels (no-change probability > "
            f"{threshold}) among {ref_s.shape[1]} valid pixels, need at least "
            f"{MIN_INVARIANT_PIXELS}; the dates differ too much for this method: lower "
            "no_change_threshold, use a larger area, or use method='histogram'"
        )
    fits = []
    for i, name in enumerate(band_names):
        gain, offset, r = orthogonal_regression(tgt_s[i, pif], ref_s[i, pif])
        if not np.isfinite(gain) or gain <= 0:
            raise SitewatchError(
                f"band {name}: the pseudo-invariant pixels of target and reference are not "
                f"positively correlated (r={r:.3f}); this band cannot be normalised by IR-MAD, "
                "check that both images hold the same band, or use method='histogram'"
            )
        fits.append(BandFit(band=name, gain=gain, offset=offset, n_pixels=n_pif, r=r))
    parameters = dict(parameters)
    parameters["regression"] = "orthogonal (total least squares), target -> reference, on PIFs"
    parameters["mad"] = mad.summary()
    return Normalisation(
        method="irmad",
        fits=fits,
        invariant_fraction=n_pif / ref_s.shape[1],
        parameters=parameters,
    )


def _fit_histogram(ref_s, tgt_s, band_names, parameters) -> Normalisation:
    levels = HISTOGRAM_LEVELS
    fits = []
    pairs = {}
    for i, name in enumerate(band_names):
        tq = np.quantile(tgt_s[i], levels)
        rq = np.quantile(ref_s[i], levels)
        lv, tq, rq = _strictly_increasing(levels, tq, rq)
        if tq.size < 2:
            raise SitewatchError(
                f"band {name} of the target is (nearly) constant over the valid pixels; "
                "it cannot be histogram-matched"
            )
        gain, offset = np.polyfit(tq, rq, 1)
        r = float(np.corrcoef(tgt_s[i], ref_s[i])[0, 1])
        fits.append(
            BandFit(
                band=name,
                gain=float(gain),
                offset=float(offset),
                n_pixels=int(tgt_s.shape[1]),
                r=r if np.isfinite(r) else 0.0,
            )
        )
        pairs[name] = {
            "levels": [float(v) for v in lv],
            "target": [float(v) for v in tq],
            "reference": [float(v) for v in rq],
        }
    parameters = dict(parameters)
    parameters["quantile_levels"] = [float(v) for v in levels]
    parameters["fits_kind"] = "least-squares line through the quantile pairs (record only)"
    return Normalisation(
        method="histogram",
        fits=fits,
        invariant_fraction=None,
        quantile_pairs=pairs,
        parameters=parameters,
    )


def _strictly_increasing(levels, tq, rq):
    """Merge runs of equal target quantiles (ties, saturated values), averaging the others."""
    unique, inverse = np.unique(tq, return_inverse=True)
    if unique.size == tq.size:
        return levels, tq, rq
    counts = np.bincount(inverse)
    mean_levels = np.bincount(inverse, weights=levels) / counts
    return mean_levels, unique, np.bincount(inverse, weights=rq) / counts


def _piecewise_linear(values: np.ndarray, xp: np.ndarray, fp: np.ndarray, slope: float):
    """Interpolate through ``(xp, fp)``; beyond the ends continue with ``slope``."""
    out = np.interp(values, xp, fp)
    low = values < xp[0]
    high = values > xp[-1]
    out[low] = fp[0] + slope * (values[low] - xp[0])
    out[high] = fp[-1] + slope * (values[high] - xp[-1])
    out[np.isnan(values)] = np.nan
    return out
