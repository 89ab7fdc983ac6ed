"""IR-MAD (sitewatch.stack.mad) and relative radiometric normalisation (sitewatch.stack.normalise).

The synthetic pair: a reference of spatially correlated texture (as many smooth latent fields as
bands plus one, mixed into every band) with sensor noise; a target that is a per-band gain and
offset of the same ground with its own noise, except in ~15 % of pixels (random rectangles) where
the ground changed to a different spectrum.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import chi2 as chi2_distribution
from scipy.stats import rankdata

from sitewatch.errors import SitewatchError
from sitewatch.stack.mad import consistency_factor, irmad
from sitewatch.stack.normalise import (
    Normalisation,
    fit_normalisation,
    orthogonal_regression,
)

NOISE = 0.004


def make_pair(bands=5, size=200, changed_share=0.15, noise=NOISE, seed=1, change=True):
    rng = np.random.default_rng(seed)
    latent = np.stack(
        [ndimage.gaussian_filter(rng.standard_normal((size, size)), 3) for _ in range(bands + 1)]
    )
    latent /= latent.std(axis=(1, 2), keepdims=True)
    base = np.linspace(0.08, 0.30, bands)
    truth = base[:, None, None] + np.einsum(
        "bk,kij->bij", rng.uniform(-0.03, 0.03, (bands, bands + 1)), latent
    )
    changed = np.zeros((size, size), bool)
    if change:
        while changed.mean() < changed_share:
            r, c = rng.integers(0, size - 20, 2)
            h, w = rng.integers(6, 20, 2)
            changed[r : r + h, c : c + w] = True
    new_ground = rng.uniform(0.05, 0.45, bands)[:, None, None] + np.einsum(
        "bk,kij->bij", rng.uniform(-0.03, 0.03, (bands, bands + 1)), latent
    )
    truth_after = np.where(changed, new_ground, truth)
    gains = np.linspace(0.85, 1.15, bands)[rng.permutation(bands)]
    offsets = rng.uniform(-0.02, 0.02, bands)
    reference = truth + noise * rng.standard_normal(truth.shape)
    target = (
        gains[:, None, None] * (truth_after + noise * rng.standard_normal(truth.shape))
        + offsets[:, None, None]
    )
    return reference.astype(np.float32), target.astype(np.float32), changed, gains, offsets


def auc(score, positive):
    """Area under the ROC curve (Mann-Whitney), higher score = more likely positive."""
    ranks = rankdata(score)
    n_pos = positive.sum()
    n_neg = positive.size - n_pos
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


@pytest.fixture(scope="module")
def pair():
    return make_pair()


@pytest.fixture(scope="module")
def mad_of_pair(pair):
    reference, target, changed, _, _ = pair
    bands = reference.shape[0]
    return irmad(reference.reshape(bands, -1), target.reshape(bands, -1))


# ---------------------------------------------------------------- IR-MAD


def test_irmad_separates_changed_from_unchanged(pair, mad_of_pair):
    _, _, changed, _, _ = pair
    result = mad_of_pair
    changed = changed.ravel()
    assert result.converged and 1 < result.iterations < 50
    assert auc(result.chi2, changed) > 0.99
    alarms = result.no_change_probability < 0.01
    assert alarms[changed].mean() > 0.9  # recall of real changes
    assert alarms[~changed].mean() < 0.03  # false alarms near the nominal 1 %


def test_irmad_is_calibrated_on_unchanged_gaussian_pixels():
    rng = np.random.default_rng(3)
    bands, n = 5, 60_000
    signal = rng.standard_normal((bands, n))
    x = signal + 0.2 * rng.standard_normal((bands, n))
    y = 1.3 * signal - 0.5 + 0.2 * rng.standard_normal((bands, n))
    calibrated = irmad(x, y)
    assert abs(calibrated.chi2.mean() - bands) < 0.3
    assert 0.035 < np.mean(calibrated.no_change_probability < 0.05) < 0.065
    # the published iteration (kappa = 1) inflates chi2 at its fixed point: about half the
    # unchanged pixels fall below P = 0.05; this is why calibrate=True is the default
    published = irmad(x, y, calibrate=False)
    assert published.kappa == 1.0
    assert np.mean(published.no_change_probability < 0.05) > 0.3
    assert consistency_factor(4) == pytest.approx(0.625, abs=1e-6)


def test_mad_conventions_order_sign_and_variance(pair):
    reference, target, _, _, _ = pair
    bands = reference.shape[0]
    x = reference.reshape(bands, -1).astype(np.float64)
    y = target.reshape(bands, -1).astype(np.float64)
    plain = irmad(x, y, max_iter=1)  # uniform weights: population moments are the fit's moments
    rho = plain.canonical_correlations
    assert np.all(np.diff(rho) >= 0) and rho[0] >= 0 and rho[-1] <= 1
    # MAD 1 has the largest variance 2 (1 - rho_1), the variates are mutually uncorrelated
    variance = plain.variates.var(axis=1)
    np.testing.assert_allclose(variance, 2 * (1 - rho), rtol=1e-6)
    assert np.all(np.diff(variance) <= 0)
    corr = np.corrcoef(plain.variates)
    np.testing.assert_allclose(corr, np.eye(bands), atol=1e-6)
    # chi2 is the sum of squared standardised variates and P its chi-square survival function
    np.testing.assert_allclose(
        plain.chi2, np.sum((plain.variates / plain.sigma[:, None]) ** 2, axis=0), rtol=1e-10
    )
    np.testing.assert_allclose(
        plain.no_change_probability, 1 - chi2_distribution.cdf(plain.chi2, bands), atol=1e-12
    )
    # sign: each U_i correlates positively with the x bands in sum, and with its V_i
    u = plain.a.T @ (x - plain.mean_x[:, None])
    v = plain.b.T @ (y - plain.mean_y[:, None])
    for i in range(bands):
        assert sum(np.corrcoef(u[i], x[j])[0, 1] for j in range(bands)) > 0
        assert np.corrcoef(u[i], v[i])[0, 1] == pytest.approx(rho[i], abs=1e-6)


def test_irmad_is_invariant_to_linear_transforms_of_either_image(pair, mad_of_pair):
    reference, target, _, _, _ = pair
    bands = reference.shape[0]
    x = reference.reshape(bands, -1).astype(np.float64)
    y = target.reshape(bands, -1).astype(np.float64)
    x_scaled = x.copy()
    x_scaled[2] = 7.5 * x_scaled[2] + 3.0  # one band rescaled and shifted
    rng = np.random.default_rng(5)
    y_mixed = (np.eye(bands) + 0.3 * rng.standard_normal((bands, bands))) @ y  # bands mixed
    transformed = irmad(x_scaled, y_mixed)
    np.testing.assert_allclose(transformed.chi2, mad_of_pair.chi2, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(
        transformed.canonical_correlations, mad_of_pair.canonical_correlations, atol=1e-8
    )


def test_irmad_fits_on_a_subsample_and_transforms_windows(pair):
    reference, target, changed, _, _ = pair
    bands = reference.shape[0]
    x = reference.reshape(bands, -1)
    y = target.reshape(bands, -1)
    sub = irmad(x, y, max_samples=8_000, seed=2)
    assert sub.n_fit == 8_000 and sub.chi2.shape == (x.shape[1],)
    assert auc(sub.chi2, changed.ravel()) > 0.99
    window = sub.transform(reference[:, 50:80, 10:60], target[:, 50:80, 10:60])
    assert window.chi2.shape == (30, 50) and window.variates.shape == (bands, 30, 50)
    np.testing.assert_allclose(window.chi2, sub.chi2.reshape(200, 200)[50:80, 10:60], rtol=1e-9)


def test_irmad_gives_nan_for_non_finite_pixels_and_rejects_constant_bands(pair):
    reference, target, _, _, _ = pair
    x = reference.reshape(reference.shape[0], -1).astype(np.float64)
    y = target.reshape(target.shape[0], -1).astype(np.float64)
    x[1, :100] = np.nan
    result = irmad(x, y)
    assert np.all(np.isnan(result.chi2[:100])) and np.all(np.isfinite(result.chi2[100:]))
    assert result.n_fit == x.shape[1] - 100
    y[3] = 0.2
    with pytest.raises(SitewatchError, match="constant"):
        irmad(x, y)


# ---------------------------------------------------------------- normalisation


def test_irmad_normalisation_recovers_gains_and_offsets(pair):
    reference, target, changed, gains, offsets = pair
    norm = fit_normalisation(reference, target, band_names=["b", "g", "r", "n", "s"])
    assert norm.method == "irmad" and [f.band for f in norm.fits] == ["b", "g", "r", "n", "s"]
    # target = g * ref + o  =>  normalised = target / g - o / g
    for fit, g, o in zip(norm.fits, gains, offsets, strict=True):
        assert fit.gain == pytest.approx(1 / g, rel=0.02)
        assert fit.offset == pytest.approx(-o / g, abs=0.003)
        assert fit.r > 0.99 and fit.n_pixels >= 100
    assert 0.01 < norm.invariant_fraction < 0.85
    unchanged = ~changed
    before = np.sqrt(np.mean((target[:, unchanged] - reference[:, unchanged]) ** 2))
    normalised = norm.apply(target)
    after = np.sqrt(np.mean((normalised[:, unchanged] - reference[:, unchanged]) ** 2))
    assert normalised.dtype == np.float32 and normalised.shape == target.shape
    assert after < 0.5 * before
    assert after < 1.3 * NOISE * np.sqrt(2)  # down to the two images' noise


def test_orthogonal_regression_is_unbiased_where_ols_is_not():
    rng = np.random.default_rng(7)
    signal = rng.normal(0.2, 0.05, 50_000)
    noise = 0.025  # noise variance a quarter of the signal variance, on both dates
    x = signal + noise * rng.standard_normal(signal.size)
    y = 1.2 * signal + 0.01 + noise * rng.standard_normal(signal.size)
    gain, offset, r = orthogonal_regression(x, y)
    ols_gain = np.polyfit(x, y, 1)[0]
    assert gain == pytest.approx(1.2, rel=0.02)
    assert ols_gain < 1.2 * 0.85  # regression dilution: 1.2 * var(s) / (var(s) + var(n))
    assert r == pytest.approx(np.corrcoef(x, y)[0, 1])
    # symmetric: the fit y -> x is the inverse of the fit x -> y
    inverse_gain, inverse_offset, _ = orthogonal_regression(y, x)
    assert inverse_gain == pytest.approx(1 / gain, rel=1e-9)
    assert inverse_offset == pytest.approx(-offset / gain, rel=1e-9)


def test_histogram_matching_matches_quantiles(pair):
    reference, target, _, _, _ = pair
    bands = reference.shape[0]
    target = target.copy()
    target[:, :2, :10] = 5.0  # a few wild outliers (0.05 %) must not set the mapping
    norm = fit_normalisation(reference, target, method="histogram")
    assert norm.method == "histogram" and norm.invariant_fraction is None
    assert set(norm.quantile_pairs) == {f"band{i + 1}" for i in range(bands)}
    normalised = norm.apply(target)
    levels = np.linspace(0.03, 0.97, 48)
    for i in range(bands):
        got = np.quantile(normalised[i], levels)
        want = np.quantile(reference[i], levels)
        spread = want[-1] - want[0]
        assert np.max(np.abs(got - want)) < 0.01 * spread
    assert np.all(np.isfinite(normalised)) and normalised[0, 0, 0] < 100


def test_histogram_equivalent_linear_fit_without_change():
    reference, target, _, gains, offsets = make_pair(change=False, seed=4)
    norm = fit_normalisation(reference, target, method="histogram")
    for fit, g, o in zip(norm.fits, gains, offsets, strict=True):
        assert fit.gain == pytest.approx(1 / g, rel=0.03)
        assert fit.offset == pytest.approx(-o / g, abs=0.005)


def test_masked_and_nan_pixels_are_ignored_and_stay_nan(pair):
    reference, target, changed, gains, offsets = pair
    target = target.copy()
    reference = reference.copy()
    target[:, 150:, 150:] = np.nan  # nodata in one image
    target[:, :40, :] = 40.0  # clouds, masked by the caller
    reference[2, 100:110, 0:10] = np.inf
    valid = np.ones(changed.shape, bool)
    valid[:40, :] = False
    norm = fit_normalisation(reference, target, valid=valid)
    for fit, g in zip(norm.fits, gains, strict=True):
        assert fit.gain == pytest.approx(1 / g, rel=0.02)
    assert norm.parameters["n_valid"] == 200 * 200 - 50 * 50 - 40 * 200 - 100
    out = norm.apply(target)
    assert np.all(np.isnan(out[:, 150:, 150:]))
    assert np.all(np.isfinite(out[:, 40:150, :]))
    masked = norm.apply(target, valid=valid)
    assert np.all(np.isnan(masked[:, :40, :])) and np.all(np.isfinite(masked[:, 40:150, :]))
    hist = fit_normalisation(reference, target, valid=valid, method="histogram")
    assert np.all(np.isnan(hist.apply(target)[:, 150:, 150:]))


def test_too_few_valid_or_invariant_pixels_raise(pair):
    reference, target, _, _, _ = pair
    with pytest.raises(SitewatchError, match="valid"):
        fit_normalisation(reference, target, valid=np.zeros(reference.shape[1:], bool))
    few = np.zeros(reference.shape[1:], bool)
    few[:5, :10] = True
    with pytest.raises(SitewatchError, match="only 50 pixels"):
        fit_normalisation(reference, target, valid=few, method="histogram")
    # 400 valid pixels: IR-MAD runs, but ~5 % of them are PIFs, fewer than the 100 required
    some = np.zeros(reference.shape[1:], bool)
    some[:20, :20] = True
    with pytest.raises(SitewatchError, match="pseudo-invariant"):
        fit_normalisation(reference, target, valid=some)
    with pytest.raises(SitewatchError, match="same grid"):
        fit_normalisation(reference, target[:, :-1])
    with pytest.raises(SitewatchError, match="method"):
        fit_normalisation(reference, target, method="magic")


@pytest.mark.parametrize("method", ["irmad", "histogram"])
def test_record_round_trips_and_windows_apply_the_same(pair, method):
    reference, target, _, _, _ = pair
    norm = fit_normalisation(reference, target, method=method, max_samples=20_000)
    assert norm.parameters["n_sampled"] == 20_000
    record = json.loads(json.dumps(norm.to_dict()))
    again = Normalisation.from_dict(record)
    whole = norm.apply(target)
    np.testing.assert_array_equal(again.apply(target), whole)
    window = norm.apply(target[:, 64:128, 32:96])
    np.testing.assert_array_equal(window, whole[:, 64:128, 32:96])
    with pytest.raises(SitewatchError, match="bands"):
        norm.apply(target[:3])
