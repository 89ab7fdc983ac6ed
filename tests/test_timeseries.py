"""Time-series break detection: synthetic series with known breaks, and the simulator's scene."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio.features
import shapely
from pyproj import Transformer
from shapely.geometry import shape

from sitewatch.detect.timeseries import detect_breaks
from sitewatch.errors import SitewatchError

BANDS = ["B02", "B03", "B04", "B08", "B11", "B12"]
# Reflectance spectra (0..1) in the order of BANDS.
SOIL = np.array([0.12, 0.16, 0.20, 0.26, 0.32, 0.28])
VEGETATION = np.array([0.04, 0.08, 0.04, 0.45, 0.22, 0.10])
CONCRETE = np.array([0.30, 0.32, 0.33, 0.35, 0.40, 0.38])
CLOUD = np.array([0.45, 0.46, 0.47, 0.50, 0.40, 0.33])
N_DATES, SIZE, BREAK_AT = 12, 64, 8
FIELDS, CHANGED, STABLE, CLOUDED = (np.s_[:20, :], np.s_[20:40, :32], np.s_[20:40, 32:],
                                    np.s_[40:, :32])


def monthly_times(rng) -> np.ndarray:
    """12 roughly monthly dates from 2018-09-15 with a few days' jitter (irregular revisits)."""
    start = np.datetime64("2018-09-15")
    return start + np.arange(N_DATES) * 30 + rng.integers(-4, 5, N_DATES)


@pytest.fixture(scope="module")
def scene():
    """Fields with a seasonal cycle, a vegetated plot built over at date 8, stable soil, and a
    one-date unmasked cloud; 15 % of the observations and the whole of date 3 masked."""
    rng = np.random.default_rng(1)
    times = monthly_times(rng)
    doy = (times - times.astype("datetime64[Y]")).astype(int)
    green = 0.35 + 0.3 * np.cos(2 * np.pi * (doy - 75) / 365.25)
    truth = np.broadcast_to(SOIL[None, :, None, None], (N_DATES, 6, SIZE, SIZE)).copy()
    truth[:, :, FIELDS[0], FIELDS[1]] = (np.outer(green, VEGETATION)
                                         + np.outer(1 - green, SOIL))[:, :, None, None]
    plot = 0.4 * VEGETATION + 0.6 * SOIL
    built = np.where(np.arange(N_DATES)[:, None] >= BREAK_AT, CONCRETE, plot)
    truth[:, :, CHANGED[0], CHANGED[1]] = built[:, :, None, None]
    truth[5, :, CLOUDED[0], CLOUDED[1]] = CLOUD[:, None, None]
    observed = truth + rng.normal(0, 0.01, truth.shape)
    valid = rng.random((N_DATES, SIZE, SIZE)) > 0.15
    valid[3] = False
    values = np.where(valid[:, None], observed, np.nan).astype(np.float32)
    return values, valid, times


@pytest.fixture(scope="module")
def result(scene):
    values, valid, times = scene
    return detect_breaks(values, valid, times, BANDS, alpha=0.01)


def test_construction_onset_is_found_and_bracketed(scene, result):
    _, valid, times = scene
    onset = result.onset_index[CHANGED]
    found = onset >= 0
    # The first clear date at or after the true break is the right answer.
    after = valid[BREAK_AT:, CHANGED[0], CHANGED[1]]
    first_clear = np.where(after.any(axis=0), BREAK_AT + np.argmax(after, axis=0), -1)
    assert np.mean(onset == first_clear) > 0.9
    true_day = times[BREAK_AT - 1] + (times[BREAK_AT] - times[BREAK_AT - 1]) // 2
    inside = ((result.onset_earliest[CHANGED] <= true_day)
              & (true_day <= result.onset_latest[CHANGED]))
    assert inside.mean() > 0.9

    # The window is bracketed by the clear dates either side of the break.
    # Clear dates: valid and not dropped as a one-date outlier.
    clear = valid[:, CHANGED[0], CHANGED[1]] & (
        np.arange(N_DATES)[:, None, None] != result.outlier_index[CHANGED])
    rows, cols = np.nonzero(found)
    k = onset[rows, cols]
    clear_before = clear[:, rows, cols] & (np.arange(N_DATES)[:, None] < k)
    last_before = N_DATES - 1 - np.argmax(clear_before[::-1], axis=0)
    gap = (times[k] - times[last_before]).astype(float)
    np.testing.assert_array_equal(result.uncertainty_days[CHANGED][found], gap)
    np.testing.assert_array_equal(result.onset_latest[CHANGED][found], times[k])
    np.testing.assert_array_equal(result.onset_earliest[CHANGED][found],
                                  times[last_before] + np.timedelta64(1, "D"))
    assert np.all(result.onset_earliest[CHANGED][found] <= result.onset[CHANGED][found])
    assert np.all(result.onset[CHANGED][found] <= result.onset_latest[CHANGED][found])
    assert np.all(result.persistent[CHANGED][found])

    # Vegetation to concrete: greenness down, brightness and the built-up index up.
    assert np.all(result.direction["ndvi"][CHANGED][found] < 0)
    assert np.all(result.direction["brightness"][CHANGED][found] > 0)
    assert np.all(result.direction["built"][CHANGED][found] > 0)
    assert np.median(result.magnitude[CHANGED][found]) > 0.3


@pytest.mark.parametrize("region", [FIELDS, STABLE, CLOUDED], ids=["fields", "stable", "cloud"])
def test_no_false_breaks(result, region):
    assert np.mean(result.onset_index[region] >= 0) < 0.05
    assert np.all(np.isnat(result.onset[region][result.onset_index[region] < 0]))


def test_one_date_cloud_is_not_a_change(scene, result):
    """Without the outlier step and persistence rule, the cloud date would be a break."""
    values, valid, times = scene
    onset = result.onset_index[CLOUDED]
    assert np.mean((onset == 5) | (onset == 6)) < 0.01
    # The same cloud on the last two dates is a lasting "change" the rule cannot veto...
    late = values.copy()
    late[-2:, :, CLOUDED[0], CLOUDED[1]] = CLOUD[:, None, None]
    flagged = detect_breaks(late, valid, times, BANDS, alpha=0.01)
    assert np.mean(flagged.onset_index[CLOUDED] >= N_DATES - 2) > 0.5
    # ...while on one date only in mid-series it is a transient event at most.
    assert np.mean(result.persistent[CLOUDED] & (result.statistic[CLOUDED] > 1)
                   & ((onset == 5) | (onset == 6))) < 0.01


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_no_change_false_alarm_rate_is_below_alpha(alpha):
    rng = np.random.default_rng(7)
    times = monthly_times(rng)
    size = 100
    values = SOIL[None, :, None, None] + rng.normal(0, 0.01, (N_DATES, 6, size, size))
    valid = rng.random((N_DATES, size, size)) > 0.15
    values = np.where(valid[:, None], values, np.nan).astype(np.float32)
    result = detect_breaks(values, valid, times, BANDS, alpha=alpha)
    rate = np.mean(result.onset_index >= 0)
    print(f"no-change false alarm rate at alpha={alpha}: {rate:.4f}")
    assert rate < alpha + 3 * np.sqrt(alpha * (1 - alpha) / size ** 2)
    assert np.isfinite(result.statistic).mean() > 0.95  # almost every pixel was tested


def test_rgb_bands_and_bad_input():
    rng = np.random.default_rng(3)
    times = monthly_times(rng)
    values = rng.uniform(0.1, 0.3, (N_DATES, 3, 8, 8)).astype(np.float32)
    valid = np.ones((N_DATES, 8, 8), bool)
    result = detect_breaks(values, valid, times, ["red", "green", "blue"])
    # No NIR: GRVI stands in for NDVI and the built-up index (-GRVI) is left out.
    assert result.parameters["features"] == ["ndvi", "brightness"]
    assert result.parameters["formulas"]["ndvi"] == "GRVI"
    with pytest.raises(SitewatchError, match="increasing"):
        detect_breaks(values, valid, times[::-1], ["red", "green", "blue"])
    with pytest.raises(SitewatchError, match="unknown feature"):
        detect_breaks(values, valid, times, ["red", "green", "blue"], features=("ndwi",))


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """The simulator's 12-date Sentinel-2 scene, stacked over the compound and the yard."""
    import sitewatch
    from sitewatch.simulate import simulate
    from sitewatch.stack import build_stack, from_bbox

    root = tmp_path_factory.mktemp("timeseries")
    sim = simulate(root / "sim", sensor="s2", seed=0, n_dates=12, size_m=(3000, 2400))
    truth = json.loads(sim.truth_path.read_text())
    sites = {f["properties"].get("id"): f for f in truth["features"]}
    scene_box = next(shape(f["geometry"]) for f in truth["features"]
                     if f["properties"]["role"] == "aoi")
    # A sub-AOI around the two sites keeps the test fast (the whole 3 x 2.4 km scene takes a
    # minute to stack); 0.004 deg is ~400 m of surroundings.
    around = shapely.union(shape(sites["compound"]["geometry"]),
                           shape(sites["stable_yard"]["geometry"])).buffer(0.004)
    bbox = ",".join(f"{v:.6f}" for v in around.intersection(scene_box).bounds)
    sitewatch.ingest([sim.catalog_path], root / "ws")
    stack = build_stack(root / "ws", from_bbox(bbox, "sites"))
    ds = stack.open()
    values = ds["reflectance"].values
    valid = ds["mask"].values == 0
    result = detect_breaks(values, valid, ds["time"].values, [str(b) for b in ds["band"].values])

    to_grid = Transformer.from_crs("EPSG:4326", f"EPSG:{stack.grid.epsg}", always_xy=True)

    def pixels(site_id):
        polygon = shapely.transform(shape(sites[site_id]["geometry"]),
                                    lambda xy: np.column_stack(to_grid.transform(*xy.T)))
        inside = rasterio.features.rasterize([polygon], out_shape=valid.shape[1:],
                                             transform=stack.grid.transform).astype(bool)
        return inside & valid.any(axis=0)  # within the imaged scene

    return result, sites, pixels


def test_simulated_compound_onset(simulated):
    result, sites, pixels = simulated
    compound = pixels("compound")
    assert compound.sum() > 300  # ~27 x 16 pixels at 10 m
    cleared = np.datetime64(sites["compound"]["properties"]["phases"][0]["start"])
    inside = (result.onset_earliest[compound] <= cleared) & (
        cleared <= result.onset_latest[compound])
    print(f"compound: onset window contains the clearing date in {inside.mean():.1%} of "
          f"{compound.sum()} pixels")
    assert inside.mean() > 0.8
    assert np.nanmedian(result.direction["brightness"][compound]) > 0.05


def test_simulated_stable_yard_does_not_break_late(simulated):
    result, _, pixels = simulated
    yard = pixels("stable_yard")
    assert yard.sum() >= 10
    late = result.onset_index[yard] >= 6
    print(f"stable yard: {late.mean():.1%} of {yard.sum()} pixels break in the last months")
    assert late.mean() < 0.1


def test_quantiles_computed_once_per_distinct_count_match_scipy():
    from scipy import stats

    from sitewatch.detect.timeseries import _per_count

    rng = np.random.default_rng(0)
    candidates = rng.integers(1, 9, 5000)
    dof = rng.integers(1, 12, 5000).astype(float)
    calls = []

    def critical(c, d):
        calls.append(c.size)
        return stats.f.isf(0.05 / (3 * c), 1, d)

    np.testing.assert_allclose(_per_count(critical, candidates, dof),
                               stats.f.isf(0.05 / (3 * candidates), 1, dof), rtol=1e-12)
    assert calls == [8 * 11]  # every (candidates, dof) pair once
    assert _per_count(critical, candidates[:0], dof[:0]).shape == (0,)


def test_scan_matches_a_refit_of_every_candidate_break():
    """The one-pass scan (shared algebra per clear-date pattern, seasonal and flat designs
    mixed) against a least-squares refit of each pixel's model with each step."""
    from sitewatch.detect.timeseries import _design, _scan_models

    rng = np.random.default_rng(3)
    times = monthly_times(rng).astype("datetime64[ns]")
    n_pix, m = 300, 2
    y = rng.normal(size=(N_DATES, m, n_pix))
    y[7:, :, :100] += 3.0  # a break at date 7 in a third of the pixels
    clear = rng.random((N_DATES, n_pix)) > 0.25
    clear[:, :40] = clear[:, :1]  # pixels sharing a pattern
    seasonal = rng.random(n_pix) < 0.5
    designs = {False: _design(times, False, 0), True: _design(times, True, 1)}
    scan = _scan_models(y, clear, seasonal, designs, min_segment=2)

    checked = 0
    for i in range(n_pix):
        design = designs[bool(seasonal[i])][0][clear[:, i]]
        n, p = design.shape
        obs = y[clear[:, i], :, i]
        if not scan.tested[i]:
            assert n < 2 * 2 or n - p - 1 < 1 or scan.candidates[i] == 0
            continue
        rss0 = ((obs - design @ np.linalg.lstsq(design, obs, rcond=None)[0]) ** 2).sum(axis=0)
        best = (-1.0, None)
        dates = np.flatnonzero(clear[:, i])
        for j in range(2, n - 1):  # at least 2 clear dates on each side
            full = np.column_stack([design, np.arange(n) >= j])
            if np.linalg.matrix_rank(full) <= p:
                continue
            coef = np.linalg.lstsq(full, obs, rcond=None)[0]
            share = (rss0 - ((obs - full @ coef) ** 2).sum(axis=0)) / rss0
            if share.max() > best[0]:
                best = (share.max(), dates[j], coef[-1])
        share, k, delta = best
        assert scan.k[i] == k
        assert scan.dof[i] == n - p - 1
        np.testing.assert_allclose(scan.fstat[i], share / (1 - share) * (n - p - 1), rtol=1e-8)
        np.testing.assert_allclose(scan.delta[:, i], delta, rtol=1e-8, atol=1e-10)
        checked += 1
    assert checked > 200


@pytest.mark.parametrize("n_time", [6, 25])  # counted codes, and sorted packed bits
def test_clear_date_patterns_group_identical_pixels(n_time):
    from sitewatch.detect.timeseries import _patterns

    rng = np.random.default_rng(5)
    clear = rng.random((n_time, 4000)) > 0.1
    clear[:, 2000:] = clear[:, :1]  # half the pixels share one pattern
    seasonal = rng.random(4000) < 0.3
    first, pattern = _patterns(clear, seasonal)
    keys = [(tuple(clear[:, i]), seasonal[i]) for i in range(4000)]
    assert len(first) == len(set(keys))
    for i in range(0, 4000, 7):
        assert keys[first[pattern[i]]] == keys[i]
    assert len({pattern[i] for i in range(2000, 4000) if seasonal[i]}) == 1
