"""The empirical no-change model (Efron 2004) of a change score."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from sitewatch.detect import nochange


def test_half_sample_mode_finds_the_largest_group_not_the_mean():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(2.0, 1.0, 6_000), rng.normal(9.0, 2.0, 4_000)])
    assert nochange.half_sample_mode(values) == pytest.approx(2.0, abs=0.3)
    assert nochange.half_sample_mode(np.array([1.0, 5.0, 5.1])) == pytest.approx(5.05)


@pytest.mark.parametrize("changed", [0.0, 0.05, 0.4])
def test_fit_null_recovers_the_no_change_law_whatever_changed(changed):
    """A Normal(1, 2) null with a tail of change to the right, from none to 40 %."""
    rng = np.random.default_rng(1)
    n = 200_000
    null = rng.normal(1.0, 2.0, int(n * (1 - changed)))
    change = rng.uniform(8.0, 40.0, int(n * changed))
    fit = nochange.fit_null(np.concatenate([null, change]))
    assert fit.centre == pytest.approx(1.0, abs=0.15)
    assert fit.spread == pytest.approx(2.0, rel=0.08)
    assert fit.null_fraction == pytest.approx(1 - changed, abs=0.04)
    # the cut at alpha lets alpha of the unchanged pixels through
    assert np.mean(null > fit.threshold(0.01)) == pytest.approx(0.01, abs=0.004)


def test_a_constant_score_calls_nothing_and_says_so():
    fit = nochange.fit_null(np.zeros(1000))
    assert fit.threshold(0.01) == np.inf
    usable = np.ones((10, 100), bool)
    report = nochange.diagnose(np.zeros((10, 100), bool), usable, fit, fit.threshold(0.01))
    assert report["called_fraction"] == 0.0
    assert any("constant" in w for w in report["warnings"])


def test_diagnose_reports_rates_and_warns_on_widespread_change():
    fit = nochange.NullFit(centre=0.0, spread=1.0, null_fraction=0.9)
    usable = np.ones((100, 100), bool)
    change = np.zeros((100, 100), bool)
    change[:, :30] = True
    threshold = float(scipy.stats.norm.isf(0.01))
    report = nochange.diagnose(change, usable, fit, threshold)
    assert report["called_fraction"] == pytest.approx(0.3)
    assert report["expected_false_alarm_fraction"] == pytest.approx(0.009)
    assert report["expected_false_discovery"] == pytest.approx(0.03)
    assert any(w.startswith("widespread change: 30 %") for w in report["warnings"])
    few = nochange.diagnose(change, usable, nochange.NullFit(0.0, 1.0, 0.3), threshold)
    assert any("no no-change majority" in w for w in few["warnings"])


@pytest.mark.parametrize(("called", "evidence", "warns"), [
    (0.001, 0.25, True), (0.03, 0.25, False), (0.0, 0.03, False), (0.004, 0.05, True)])
def test_a_result_silent_where_the_evidence_is_strong_says_so(called, evidence, warns):
    warning = nochange.silent_warning(called, evidence, "a brightness change")
    assert (warning is not None) == warns
    if warns:
        assert f"{100 * evidence:.0f} % show a brightness change" in warning
