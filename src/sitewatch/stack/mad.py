"""IR-MAD: iteratively re-weighted multivariate alteration detection (Nielsen 2007).

Two co-registered multispectral observations of the same pixels, ``x`` and ``y`` (each
``(bands, n)``), are related by canonical correlation analysis: the pairs of linear combinations
``U_i = a_i' x`` and ``V_i = b_i' y`` that are maximally correlated, each of unit variance and
uncorrelated with every other pair. The MAD variates are their differences, ``MAD_i = U_i - V_i``,
with variance ``2 (1 - rho_i)``. Because canonical variates are invariant to any non-singular
affine transform of ``x`` or of ``y`` separately, the MAD variates do not care about gains,
offsets, or band mixing between the two dates (different sensor calibration, atmosphere, sun):
only about changes that no linear map explains.

For unchanged pixels the standardised MAD variates are approximately independent standard normal,
so ``chi2 = sum_i (MAD_i / sigma_i)^2`` is approximately chi-square with ``bands`` degrees of
freedom. IR-MAD (Nielsen 2007, IEEE TIP 16(2):463-478) iterates: the weight of each pixel in the
next weighted covariance is its no-change probability ``P = 1 - F_chi2(chi2; bands)``, so changed
pixels stop pulling the canonical transformation, until the canonical correlations settle.

Conventions (as in Nielsen 2007 and Canty's reference implementation):

- Canonical correlations are stored in **ascending** order and ``variates[i]`` is the difference of
  the pair with correlation ``canonical_correlations[i]``; so MAD 1 is the difference of the least
  correlated pair (the largest variance, where change shows most), the last MAD the difference of
  the most correlated pair. Nielsen writes this as ``MAD_i = a_{p-i+1}' x - b_{p-i+1}' y`` with
  canonical pairs numbered by decreasing correlation.
- Sign: each ``a_i`` is chosen so that the sum of the correlations of ``U_i`` with the bands of
  ``x`` is positive; ``b_i`` follows from ``b_i = S22^-1 S21 a_i / rho_i`` so that every pair is
  positively correlated.
- Normalisation: ``a_i' S11 a_i = b_i' S22 b_i = 1`` under the (weighted) covariance of the fit.
- ``chi2`` standardises with ``sigma_i^2 = 2 (1 - rho_i) / kappa``, where ``2 (1 - rho_i)`` is the
  weighted variance of ``MAD_i`` in the fit and ``kappa`` the consistency factor below.

Calibration (``calibrate=True``, the default). A covariance weighted by the no-change probability
underestimates the spread of the no-change pixels, because the weights are small exactly where the
MAD variates are large. With the published iteration (weights ``P(chi2)``, ``sigma_i^2 = 2 (1 -
rho_i)``) this feeds back: ``sigma`` shrinks, ``chi2`` grows, weights get more selective, until a
fixed point where, for pure Gaussian no-change data, ``chi2`` is ~2.6 times too large for 5 bands
and about half of the unchanged pixels have ``P < 0.05``. The canonical *directions* are not
affected (the weighting is isotropic in MAD space), only the scale. So, as for any weighted
(M-)estimator of scatter, the weighted variance is divided by its expectation at the Gaussian
model, ``kappa = E[P(Q) Q] / (p E[P(Q)])`` with ``Q ~ chi2(p)`` (0.66 for ``p = 5``); the fixed
point is then the one where unchanged pixels have ``chi2 ~ chi2(p)`` and ``P`` is uniform, so
thresholds on ``chi2`` mean what they say. ``calibrate=False`` gives the iteration exactly as
published (Nielsen 2007; Canty's ``iMad``), ``kappa = 1``.

Fitting can use a random subsample (``max_samples``); the fitted transformation is kept in the
result so that :meth:`MADResult.transform` applies it to any other pixels (all of them, or window by
window), which is what a chi-square change statistic over a whole scene needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
import scipy.integrate
import scipy.linalg
from scipy.stats import chi2 as chi2_distribution

from sitewatch.errors import SitewatchError

__all__ = ["MADResult", "consistency_factor", "irmad"]

#: ``1 - rho`` is floored at this value before it divides: identical bands would otherwise give 0/0.
_MIN_ONE_MINUS_RHO = 1e-12


@dataclass
class MADResult:
    """IR-MAD variates of a set of pixels and the canonical transformation that made them.

    ``variates``, ``chi2`` and ``no_change_probability`` describe the pixels given to
    :func:`irmad` (all of them, also when the fit used a subsample); non-finite input pixels get
    NaN. The remaining fields are the fitted model; :meth:`transform` applies it to other pixels.
    """

    variates: np.ndarray  #: (bands, n) MAD variates, ordered as in Nielsen 2007 (see module doc)
    chi2: np.ndarray  #: (n,) sum of squared standardised MAD variates
    no_change_probability: np.ndarray  #: (n,) ``1 - chi2.cdf(chi2, bands)``
    canonical_correlations: np.ndarray  #: (bands,) ascending, matching ``variates``
    iterations: int  #: number of weighted CCA fits made
    converged: bool = True  #: whether the correlations changed by less than ``tol``
    mean_x: np.ndarray = field(default_factory=lambda: np.zeros(0))  #: (bands,) weighted mean
    mean_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    a: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  #: (bands, bands), column i
    b: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  #: gives ``U_i``/``V_i``
    n_fit: int = 0  #: pixels used in the fit (after subsampling and dropping non-finite ones)
    kappa: float = 1.0  #: consistency factor of the weighted variance (1 = uncalibrated)

    @property
    def bands(self) -> int:
        return int(self.canonical_correlations.shape[0])

    @property
    def sigma(self) -> np.ndarray:
        """Standard deviations of no-change MAD variates, ``sqrt(2 (1 - rho) / kappa)``."""
        one_minus_rho = np.maximum(1.0 - self.canonical_correlations, _MIN_ONE_MINUS_RHO)
        return np.sqrt(2.0 * one_minus_rho / self.kappa)

    def transform(self, x: np.ndarray, y: np.ndarray) -> MADResult:
        """MAD variates, chi-square and no-change probability of other pixels under this fit.

        ``x`` and ``y`` are ``(bands, ...)``; the returned arrays keep the trailing shape
        (``variates`` is ``(bands, ...)``, ``chi2`` is ``(...)``). Non-finite pixels give NaN.
        """
        x = np.asarray(x)
        y = np.asarray(y)
        if x.shape != y.shape or x.ndim < 1 or x.shape[0] != self.bands:
            raise ValueError(
                f"x and y must both be ({self.bands}, ...), got {x.shape} and {y.shape}"
            )
        trailing = x.shape[1:]
        xf = x.reshape(self.bands, -1)
        yf = y.reshape(self.bands, -1)
        variates, chi2, prob = _mad_statistics(
            xf,
            yf,
            self.mean_x,
            self.mean_y,
            self.a,
            self.b,
            self.canonical_correlations,
            self.kappa,
        )
        return replace(
            self,
            variates=variates.reshape((self.bands, *trailing)),
            chi2=chi2.reshape(trailing),
            no_change_probability=prob.reshape(trailing),
        )

    def summary(self) -> dict:
        """JSON-serialisable record of the fit (no per-pixel arrays)."""
        return {
            "method": "irmad",
            "canonical_correlations": [float(v) for v in self.canonical_correlations],
            "iterations": int(self.iterations),
            "converged": bool(self.converged),
            "n_fit": int(self.n_fit),
            "kappa": float(self.kappa),
        }


def irmad(
    x: np.ndarray,
    y: np.ndarray,
    *,
    max_iter: int = 50,
    tol: float = 1e-4,
    weights: np.ndarray | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    calibrate: bool = True,
) -> MADResult:
    """Iteratively re-weighted MAD of two observations of the same pixels.

    Parameters
    ----------
    x, y
        ``(bands, n)`` samples of the two dates (any real dtype; computed in float64). Pixels with
        a non-finite value in either are left out of the fit and get NaN statistics.
    max_iter
        Maximum number of weighted CCA fits; ``max_iter=1`` gives the plain (un-iterated) MAD.
    tol
        Convergence when no canonical correlation changes by more than ``tol`` between two
        successive fits.
    weights
        Optional ``(n,)`` prior weights (e.g. 0 for pixels to ignore); each iteration uses
        ``weights * no_change_probability``.
    max_samples
        If given and more pixels are usable, the fit uses a random subsample of this size (drawn
        with ``seed``); the statistics are still returned for all ``n`` pixels.
    calibrate
        Apply the consistency factor (module documentation) so that unchanged pixels have
        ``chi2 ~ chi2(bands)``; ``False`` runs the iteration exactly as published.

    Raises
    ------
    ValueError
        If the inputs have the wrong shapes.
    SitewatchError
        If too few usable pixels remain, a band is constant, or the bands are linearly dependent.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must both be (bands, n), got {x.shape} and {y.shape}")
    bands, n = x.shape
    if bands < 1:
        raise ValueError("x and y need at least one band")
    if max_iter < 1:
        raise ValueError("max_iter must be at least 1")
    prior = None
    if weights is not None:
        prior = np.asarray(weights, dtype=np.float64)
        if prior.shape != (n,):
            raise ValueError(f"weights must be ({n},), got {prior.shape}")
        if not np.all(np.isfinite(prior)) or np.any(prior < 0):
            raise ValueError("weights must be finite and non-negative")

    usable = np.isfinite(x).all(axis=0) & np.isfinite(y).all(axis=0)
    if prior is not None:
        usable &= prior > 0
    fit_index = np.flatnonzero(usable)
    if max_samples is not None and fit_index.size > max_samples:
        rng = np.random.default_rng(seed)
        fit_index = np.sort(rng.choice(fit_index, size=int(max_samples), replace=False))
    min_pixels = max(10 * bands, 2 * bands + 2)
    if fit_index.size < min_pixels:
        raise SitewatchError(
            f"IR-MAD needs at least {min_pixels} valid pixels for {bands} bands, "
            f"got {fit_index.size}; use a larger area or fewer cloudy/masked dates"
        )

    xs = x[:, fit_index].astype(np.float64)
    ys = y[:, fit_index].astype(np.float64)
    w_prior = np.ones(fit_index.size) if prior is None else prior[fit_index]

    kappa = consistency_factor(bands) if calibrate else 1.0
    w = w_prior
    rho_old = None
    converged = False
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (used after the loop)
        mean_x, mean_y, a, b, rho = _weighted_cca(xs, ys, w)
        # the first fit is unweighted (or prior-weighted): its variances need no correction
        fit_kappa = 1.0 if iterations == 1 else kappa
        _, _, prob = _mad_statistics(xs, ys, mean_x, mean_y, a, b, rho, fit_kappa)
        if rho_old is not None and np.max(np.abs(rho - rho_old)) < tol:
            converged = True
            break
        rho_old = rho
        w = w_prior * prob
        if np.sum(w) <= 1e-9 * w.size:
            raise SitewatchError(
                "IR-MAD found no unchanged pixels to fit: the two images look unrelated "
                "(check that they cover the same place on the same grid)"
            )
    if max_iter == 1:
        converged = False  # nothing to compare with; the plain MAD was asked for

    variates, chi2, prob = _mad_statistics(x, y, mean_x, mean_y, a, b, rho, fit_kappa)
    return MADResult(
        variates=variates,
        chi2=chi2,
        no_change_probability=prob,
        canonical_correlations=rho,
        iterations=iterations,
        converged=converged,
        mean_x=mean_x,
        mean_y=mean_y,
        a=a,
        b=b,
        n_fit=int(fit_index.size),
        kappa=fit_kappa,
    )


@lru_cache(maxsize=64)
def consistency_factor(bands: int) -> float:
    """``E[P(Q) Q] / (p E[P(Q)])`` for ``Q ~ chi2(p)``, ``P = 1 - F_chi2(.; p)``, ``p = bands``.

    The expected weighted variance of a standard normal MAD variate when weights are no-change
    probabilities (``E[P(Q)] = 1/2``). 0.5 for 2 bands, 0.625 for 4, 0.66 for 5, towards 1 for many.
    """

    def integrand(q: float) -> float:
        return chi2_distribution.sf(q, bands) * q * chi2_distribution.pdf(q, bands)

    value, _ = scipy.integrate.quad(integrand, 0.0, np.inf, limit=200)
    return float(2.0 * value / bands)


def _weighted_cca(xs: np.ndarray, ys: np.ndarray, w: np.ndarray):
    """Weighted canonical correlation analysis of ``(bands, m)`` samples.

    Returns the weighted means, the coefficient matrices ``a`` and ``b`` (column ``i`` gives pair
    ``i``) and the canonical correlations, ascending, with Nielsen's sign convention.
    """
    bands = xs.shape[0]
    total = np.sum(w)
    mean_x = xs @ w / total
    mean_y = ys @ w / total
    z = np.concatenate([xs - mean_x[:, None], ys - mean_y[:, None]])
    cov = (z * w) @ z.T / total
    s11 = cov[:bands, :bands]
    s22 = cov[bands:, bands:]
    s12 = cov[:bands, bands:]

    for name, s in (("first", s11), ("second", s22)):
        var = np.diag(s)
        scale = max(float(np.max(var)), np.finfo(float).tiny)
        flat = np.flatnonzero(var <= 1e-12 * scale)
        if flat.size:
            raise SitewatchError(
                f"band(s) {', '.join(str(i + 1) for i in flat)} of the {name} image are constant "
                "over the valid pixels; drop them before change analysis or normalisation"
            )
    try:
        s22_inv_s21 = scipy.linalg.solve(s22, s12.T, assume_a="pos")
        # S12 S22^-1 S21 a = rho^2 S11 a; eigh returns ascending eigenvalues, a' S11 a = 1
        rho2, a = scipy.linalg.eigh(s12 @ s22_inv_s21, s11)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError, ValueError) as exc:
        raise SitewatchError(
            "the bands of one image are linearly dependent over the valid pixels "
            f"(a band duplicates or combines others); drop the redundant band(s) ({exc})"
        ) from None
    rho = np.sqrt(np.clip(rho2, 0.0, 1.0))

    # sign: sum over bands of corr(x_j, U_i) > 0; cov(x, U_i) = S11 a_i and var(U_i) = 1
    corr_sum = (s11 @ a / np.sqrt(np.diag(s11))[:, None]).sum(axis=0)
    a = a * np.where(corr_sum < 0, -1.0, 1.0)
    # b_i = S22^-1 S21 a_i / rho_i, then normalised to b' S22 b = 1 (also when rho_i ~ 0)
    b = s22_inv_s21 @ a
    norm = np.sqrt(np.einsum("ji,jk,ki->i", b, s22, b))
    b = b / np.where(norm > 0, norm, 1.0)
    return mean_x, mean_y, a, b, rho


def _mad_statistics(x, y, mean_x, mean_y, a, b, rho, kappa):
    """MAD variates, chi-square and no-change probability of ``(bands, m)`` pixels."""
    bands = a.shape[0]
    xf = np.asarray(x, dtype=np.float64)
    yf = np.asarray(y, dtype=np.float64)
    variates = a.T @ (xf - mean_x[:, None]) - b.T @ (yf - mean_y[:, None])
    sigma2 = 2.0 * np.maximum(1.0 - rho, _MIN_ONE_MINUS_RHO) / kappa
    chi2 = np.einsum("ij,ij->j", variates, variates / sigma2[:, None])
    prob = chi2_distribution.sf(chi2, bands)  # = 1 - cdf, accurate in the tail
    return variates, chi2, prob
