"""The no-change model of a change score: fitted on each image pair, robust to how much changed.

A change score is large where change is likely. Most pixels of a pair did not change, and their
scores form the *null* distribution; change adds a right-hand tail. Which threshold is right
depends on that null, and the null differs from pair to pair: residual misregistration, texture,
haze or phenology widen it, and spatially correlated residuals make a theoretical null (a
chi-square law for independent pixels) far too narrow once the score is smoothed. So the null is
estimated from the pair itself, as Efron's *empirical null* (Efron 2004, JASA 99(465):96-104;
Efron 2007, Annals of Statistics 35(4):1351-1377):

1. The null's centre is the mode of the scores, found by the half-sample mode (Bickel &
   Fruehwirth 2006, Computational Statistics & Data Analysis 50(12):3500-3530), which any amount
   of change in the tail leaves where it is as long as the unchanged pixels are the largest
   group, then refined as the median of the scores within one null spread of it.
2. The null's spread comes from the left of the mode only, where change does not reach: if a
   fraction ``F(m)`` of the pixels lies below the mode ``m``, the null holds ``pi0 = 2 F(m)`` of
   them (a symmetric null), and its ``Phi(-1)`` quantile, the point one standard deviation below
   ``m``, is the overall quantile ``F(m) x 2 Phi(-1)``.
3. A threshold ``t`` at the false-alarm level ``alpha`` is where the no-change probability
   ``1 - Phi((t - m) / sigma)`` equals ``alpha`` (:meth:`NullFit.threshold`). The share of
   unchanged pixels above it is then ``alpha`` by construction, whatever the sensor or the
   place; for any threshold, :func:`diagnose` records the expected false-alarm share
   ``pi0 (1 - Phi((t - m) / sigma))`` and the false-discovery proportion it makes among the
   calls (Benjamini & Hochberg 1995).

:func:`diagnose` turns the fit into the warnings a result must carry when it is implausible:
more than :data:`WIDESPREAD_FRACTION` of the valid pixels called, or a null that holds too few
pixels to be a no-change majority or is no compact mode (a tornado path or a flood over most of
the image).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import scipy.stats

from sitewatch.detect.thresholds import MAD_TO_SIGMA

#: ``2 Phi(-1)``: the share of a symmetric null's left half that lies below one standard deviation.
_ONE_SIGMA_LEFT = 2.0 * float(scipy.stats.norm.cdf(-1.0))
#: Called share of the valid pixels above which a result is flagged as widespread change: a
#: fifth of a scene changing between two dates is a disaster or a flood, not construction.
WIDESPREAD_FRACTION = 0.2
#: Estimated null share below which the pixels do not hold a no-change majority, so the
#: no-change model (and every threshold drawn from it) is unreliable.
MIN_NULL_FRACTION = 0.5
#: A result that calls less than 1 / ``SILENT_RATIO`` of the share of pixels with strong
#: evidence of change, when that share is at least ``STRONG_EVIDENCE_FRACTION``, says so
#: (:func:`silent_warning`). Under no change, a robust z beyond 3 holds 0.3 % of the pixels.
STRONG_EVIDENCE_FRACTION, SILENT_RATIO = 0.05, 10.0
#: Null spread, as a multiple of the spread of all the scores, above which the fitted null is no
#: compact mode: a law holding half the pixels or more cannot be much wider than all of them
#: together, so the scores have several comparable modes (much of the scene changed, or the
#: two dates do not match at all).
MAX_NULL_WIDENING = 2.0
#: Times the centre is refined as the median of the scores within one spread of it.
CENTRE_REFINEMENTS = 3
#: Pixels used to fit the null; a random subsample of a larger image gives the same fit to a
#: few thousandths of a standard deviation.
MAX_FIT_SAMPLES = 500_000


@dataclass(frozen=True)
class NullFit:
    """An empirical null: scores of unchanged pixels ~ Normal(``centre``, ``spread``).

    ``null_fraction`` is the estimated share of the pixels that follow it (``pi0``);
    ``score_spread`` is the robust standard deviation (1.4826 MAD) of all the scores fitted.
    """

    centre: float
    spread: float
    null_fraction: float
    score_spread: float = float("nan")

    def threshold(self, alpha: float) -> float:
        """The score above which the no-change probability is below ``alpha``; infinite for a
        null without spread (a constant score calls nothing)."""
        if self.spread <= 0:
            return float("inf")
        return self.centre + float(scipy.stats.norm.isf(alpha)) * self.spread

    def no_change_probability(self, score: float) -> float:
        """``P(S > score)`` for an unchanged pixel's score ``S``."""
        return float(scipy.stats.norm.sf(score, self.centre, self.spread))

    def to_dict(self) -> dict:
        return asdict(self)


def half_sample_mode(values: np.ndarray) -> float:
    """Mode of ``values`` (1-D, finite) by Bickel & Fruehwirth's half-sample mode: the shortest
    interval holding half the sorted values, repeated within it until two or three are left."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    while x.size > 3:
        half = (x.size + 1) // 2
        widths = x[half - 1:] - x[:x.size - half + 1]
        start = int(np.argmin(widths))
        x = x[start:start + half]
    if x.size == 3:
        # of three, the mean of the closer pair
        return float(x[:2].mean() if x[1] - x[0] < x[2] - x[1] else x[1:].mean())
    return float(x.mean())


def fit_null(scores: np.ndarray, *, seed: int = 0) -> NullFit:
    """Empirical null of ``scores`` (1-D, finite; change to the right). See the module doc."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size > MAX_FIT_SAMPLES:
        scores = np.random.default_rng(seed).choice(scores, MAX_FIT_SAMPLES, replace=False)
    centre = half_sample_mode(scores)
    fit = _left_half_fit(scores, centre)
    for _ in range(CENTRE_REFINEMENTS):
        # the half-sample mode is noisy on a wide null: the median of the central window,
        # which change in the right tail barely reaches, is a steadier centre
        central = scores[np.abs(scores - fit.centre) <= fit.spread]
        if central.size == 0:
            break
        fit = _left_half_fit(scores, float(np.median(central)))
    median = float(np.median(scores))
    return replace(fit, score_spread=MAD_TO_SIGMA * float(np.median(np.abs(scores - median))))


def _left_half_fit(scores: np.ndarray, centre: float) -> NullFit:
    """The null centred on ``centre`` whose spread and share come from the scores below it."""
    below = float(np.mean(scores < centre))
    if below <= 0.0:
        return NullFit(centre, 0.0, 0.0)
    spread = centre - float(np.quantile(scores, below * _ONE_SIGMA_LEFT))
    return NullFit(centre, max(spread, 0.0), min(1.0, 2.0 * below))


def widespread_warning(called_fraction: float) -> str | None:
    """The warning for a result that calls more than :data:`WIDESPREAD_FRACTION` of the valid
    pixels changed, or None."""
    if called_fraction <= WIDESPREAD_FRACTION:
        return None
    return (f"widespread change: {100 * called_fraction:.0f} % of the valid pixels called "
            f"changed (more than {100 * WIDESPREAD_FRACTION:.0f} %); check for a flood, a "
            "disaster, a season or a radiometric problem before reading the sites")


def silent_warning(called_fraction: float, evidence_fraction: float, evidence: str) -> str | None:
    """The warning for a result that calls almost nothing where the evidence is strong, or
    None: ``evidence_fraction`` (0..1) of the valid pixels show ``evidence`` (words), at least
    :data:`STRONG_EVIDENCE_FRACTION`, and less than 1 / :data:`SILENT_RATIO` of that share was
    called changed."""
    if evidence_fraction < STRONG_EVIDENCE_FRACTION or (
            called_fraction * SILENT_RATIO >= evidence_fraction):
        return None
    return (f"little change called where the evidence is strong: {100 * called_fraction:.1f} % "
            f"of the valid pixels called changed, but {100 * evidence_fraction:.0f} % show "
            f"{evidence}; the change may be of a kind the method was not trained or tuned for "
            "(debris, burn scars, flooding); compare with --method cva")


def diagnose(change: np.ndarray, usable: np.ndarray, fit: NullFit, threshold: float) -> dict:
    """What a result must say about itself: the called share of the valid pixels, the share of
    them the null ``fit`` expects above ``threshold`` (false alarms) and the false-discovery
    proportion that makes, and ``warnings`` (plain sentences, empty when nothing is
    implausible). ``change`` and ``usable`` are bool (rows, cols) maps."""
    valid = int(usable.sum())
    called = float(change[usable].sum() / max(1, valid))
    false_alarm_fraction = (fit.null_fraction * fit.no_change_probability(threshold)
                            if fit.spread > 0 else 0.0)
    warnings = [w for w in [widespread_warning(called)] if w]
    if fit.null_fraction < MIN_NULL_FRACTION:
        warnings.append(f"no no-change majority: the no-change model holds an estimated "
                        f"{100 * fit.null_fraction:.0f} % of the pixels; its false-alarm "
                        "level is not reliable")
    if fit.spread > MAX_NULL_WIDENING * fit.score_spread:
        warnings.append(f"no compact no-change mode: the no-change model is "
                        f"{fit.spread / fit.score_spread:.1f} times as wide as the scores "
                        "themselves; much of the scene may have changed, or the two dates may "
                        "not show the same ground")
    if fit.spread <= 0:
        warnings.append("the change score is constant over the unchanged pixels; nothing "
                        "could be called")
    return {
        "valid_pixels": valid,
        "called_fraction": called,
        "threshold": threshold,
        "expected_false_alarm_fraction": false_alarm_fraction,
        "expected_false_discovery": (min(1.0, false_alarm_fraction / called) if called > 0
                                     else None),
        "null": fit.to_dict(),
        "warnings": warnings,
    }
