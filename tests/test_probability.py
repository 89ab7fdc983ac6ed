"""The calibrated probability of automatic sites: features, fitting, the shipped model."""

import numpy as np
import pytest

from sitewatch.sites.probability import (
    FEATURES,
    PACKAGED_MODEL,
    PACKAGED_PAIR_MODEL,
    PAIR_FEATURES,
    SiteModel,
    fit_site_model,
    packaged_model,
    pair_site_features,
    site_features,
    site_probability,
)


def _site(change_type="new_construction", first_seen="2019-03-01"):
    return {"change_type": change_type, "first_seen": first_seen, "area_m2": 20_000.0,
            "length_m": 200.0, "width_m": 100.0,
            "properties": {"phases": [{"phase": "intact"}, {"phase": "under_construction"}],
                           "measurements": {"rectangularity": 0.9}}}


def _observations(scores):
    days = ["2019-01-01", "2019-02-01", "2019-03-01", "2019-04-01", "2019-05-01", "2019-06-01"]
    return [{"observed": day, "score": score} for day, score in zip(days, scores, strict=False)]


def test_features_describe_the_evidence_from_the_first_change_on():
    features = dict(zip(FEATURES, site_features(
        _site(), _observations([None, 0.1, 0.9, 0.3, 0.2])), strict=True))
    assert features["dates_showing"] == 3
    assert features["peak_activity"] == pytest.approx(0.9)
    assert features["median_activity"] == pytest.approx(0.3)
    assert features["activity_before"] == pytest.approx(0.1)
    assert features["log10_area_m2"] == pytest.approx(np.log10(20_000.0))
    assert features["elongation"] == pytest.approx(0.5)
    assert features["phases"] == 1
    assert features["type_new_construction"] == 1 and features["type_destruction"] == 0


def test_two_date_sites_have_no_probability():
    site = _site(first_seen="2019-02-01")
    assert site_features(site, _observations([None, None])) is None
    assert site_probability(site, _observations([None, None])) is None


def test_fit_recovers_calibrated_probabilities_on_scenes_it_did_not_see():
    rng = np.random.default_rng(0)
    n = 3000
    features = rng.normal(size=(n, len(FEATURES)))
    truth = 1 / (1 + np.exp(-(1.5 * features[:, 1] - 1.0 * features[:, 3] + 0.3)))
    labels = (rng.random(n) < truth).astype(float)
    groups = np.repeat(np.arange(60), n // 60)
    train = groups < 40
    model = fit_site_model(features[train], labels[train], groups[train], fitted_on="test")
    predicted = model.probability(features[~train])
    for low in (0.1, 0.3, 0.5, 0.7):
        chosen = (predicted >= low) & (predicted < low + 0.2)
        assert abs(labels[~train][chosen].mean() - predicted[chosen].mean()) < 0.08
    assert model.coefficients[1] > 1.0 and model.coefficients[3] < -0.5


def test_model_round_trips_through_json(tmp_path):
    model = packaged_model()
    model.save(tmp_path / "model.json")
    again = SiteModel.load(tmp_path / "model.json")
    x = np.ones(len(FEATURES))
    assert again.probability(x) == pytest.approx(model.probability(x))
    assert not (tmp_path / "model.json.tmp").exists()


def test_shipped_model_is_fitted_and_rates_strong_evidence_above_weak():
    model = packaged_model()
    assert PACKAGED_MODEL.is_file() and model.features == FEATURES
    assert model.sites >= 100 and 0 < model.positives < model.sites
    strong = site_probability(_site(), _observations([None, 0.0, 1.0, 0.9, 0.8, 0.7]))
    weak = site_probability(_site(), _observations([None, 0.6, 0.25, 0.0, 0.0, 0.0]))
    assert 0.0 < weak < strong < 1.0


def test_pair_features_measure_the_score_against_the_threshold():
    features = dict(zip(PAIR_FEATURES, pair_site_features(
        np.array([4.0, 6.0, np.nan]), 2.0, 100.0, 0.01, 0.8, "destruction"), strict=True))
    assert features["mean_score_ratio"] == pytest.approx(2.5)
    assert features["peak_score_ratio"] == pytest.approx(3.0)
    assert features["log10_area_px"] == pytest.approx(2.0)
    assert features["log10_called_share"] == pytest.approx(-2.0)
    assert features["type_destruction"] == 1 and features["type_new_construction"] == 0
    assert pair_site_features(np.array([4.0]), 0.0, 100.0, 0.01, 0.8, "destruction") is None


def test_a_model_reads_its_own_columns_of_a_full_feature_vector():
    model = packaged_model(PACKAGED_PAIR_MODEL)
    assert set(model.features) <= set(PAIR_FEATURES)
    full = pair_site_features(np.array([3.0, 5.0]), 2.0, 400.0, 0.02, 0.9, "new_construction")
    p = model.probability(full[model.columns(PAIR_FEATURES)])
    assert p.shape == (1,) and 0 < p[0] < 1
