"""Pairwise change-detection methods: synthetic pairs with known change, one real OSCD city, and
the threshold rules."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import scipy.ndimage

import sitewatch
from sitewatch.detect import indices, pairwise, thresholds
from sitewatch.detect.base import MASKED, pairwise_methods
from sitewatch.stack import build_stack, from_geojson
from sitewatch.stack.resample import reproject_to_grid

BANDS = ["B02", "B03", "B04", "B08", "B11", "B12"]
VEGETATION = np.array([0.03, 0.06, 0.04, 0.40, 0.20, 0.10], np.float32)
SOIL = np.array([0.10, 0.14, 0.18, 0.25, 0.32, 0.28], np.float32)
ROOF = np.array([0.30, 0.32, 0.34, 0.36, 0.40, 0.38], np.float32)
CLEARED = (slice(20, 50), slice(20, 50))  # vegetation cleared to bare soil
ROOF_1 = (slice(100, 125), slice(120, 145))  # new roofs on mixed ground
ROOF_2 = (slice(40, 60), slice(150, 175))
CLOUD = (slice(150, 190), slice(10, 60))


@pytest.fixture(scope="module")
def synthetic_pair():
    """Textured vegetation/soil ground, a cleared field, two new roofs, noise, a gain/offset
    between dates and a masked cloud: (before, after, valid, truth)."""
    rng = np.random.default_rng(1)
    shape = (200, 200)
    fraction = scipy.ndimage.gaussian_filter(rng.random(shape), 4)
    fraction = (fraction - fraction.min()) / np.ptp(fraction)  # vegetation fraction 0..1
    fraction[CLEARED] = 1.0
    ground = (fraction * VEGETATION[:, None, None]
              + (1 - fraction) * SOIL[:, None, None]).astype(np.float32)
    before = ground + rng.normal(0, 0.005, ground.shape).astype(np.float32)
    after_ground = ground.copy()
    after_ground[(slice(None), *CLEARED)] = SOIL[:, None, None]
    for roof in (ROOF_1, ROOF_2):
        after_ground[(slice(None), *roof)] = ROOF[:, None, None]
    after = 1.05 * after_ground + 0.01 + rng.normal(0, 0.005, ground.shape).astype(np.float32)
    valid = np.ones(shape, bool)
    valid[CLOUD] = False
    after[(slice(None), *CLOUD)] = np.nan
    truth = np.zeros(shape, bool)
    for box in (CLEARED, ROOF_1, ROOF_2):
        truth[box] = True
    return before, after.astype(np.float32), valid, truth


def f1_score(change: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    found = change == 1
    tp = np.sum(found & truth & valid)
    return 2 * tp / (np.sum(found & valid) + np.sum(truth & valid))


@pytest.mark.parametrize("name", ["cva", "irmad", "pca-kmeans", "index", "default"])
def test_methods_find_the_changed_rectangles(synthetic_pair, name):
    before, after, valid, truth = synthetic_pair
    result = pairwise_methods()[name](before, after, valid, BANDS, 10.0)
    assert result.method == name
    assert result.change.shape == valid.shape and result.change.dtype == np.uint8
    assert np.all(result.change[~valid] == MASKED)
    assert np.all(np.isnan(result.score[~valid]))
    assert set(np.unique(result.change[valid])) <= {0, 1}
    assert f1_score(result.change, truth, valid) > (0.8 if name == "default" else 0.6)
    for box in (CLEARED, ROOF_1, ROOF_2):  # every rectangle is mostly found
        assert np.mean(result.change[box] == 1) > 0.6


def test_index_kinds_name_the_change(synthetic_pair):
    before, after, valid, _ = synthetic_pair
    for name in ("index", "default"):
        kinds = pairwise_methods()[name](before, after, valid, BANDS, 10.0).kinds
        assert np.mean(kinds["vegetation_loss"][CLEARED]) > 0.8
        for roof in (ROOF_1, ROOF_2):
            assert np.mean(kinds["new_bright_surface"][roof]) > 0.8
            assert not kinds["darkening"][roof].any()
        assert kinds["vegetation_gain"].mean() < 0.01  # no vegetation grew
        assert not any(layer[~valid].any() for layer in kinds.values())


def test_index_method_on_rgb_uses_the_fallbacks(synthetic_pair):
    before, after, valid, truth = synthetic_pair
    rgb = [2, 1, 0]  # B04, B03, B02 as red, green, blue
    result = pairwise.index(before[rgb], after[rgb], valid, ["red", "green", "blue"], 0.5)
    assert result.parameters["indices"]["vegetation"] == "GRVI"
    assert np.mean(result.kinds["new_bright_surface"][ROOF_1]) > 0.8
    assert f1_score(result.change, truth, valid) > 0.5


def test_parameters_record_the_run(synthetic_pair):
    before, after, valid, _ = synthetic_pair
    result = pairwise.default(before, after, valid, BANDS, 10.0)
    assert result.parameters["evidence"] == ["irmad_all_bands", "irmad_10m_bands"]
    assert result.parameters["min_area_m2"] == 300.0
    assert result.parameters["fits"]["irmad_all_bands"]["n_fit"] == int(valid.sum())
    diagnostics = result.diagnostics
    assert diagnostics["warnings"] == []
    assert diagnostics["called_fraction"] == pytest.approx(
        np.mean(result.change[valid] == 1))
    # 13 % of the valid pixels changed, the no-change model holds the rest
    assert 0.75 < diagnostics["null"]["null_fraction"] <= 1.0
    assert 0 < diagnostics["expected_false_alarm_fraction"] <= result.parameters["alpha"]
    assert result.parameters["smoothing_sigma_px"] == pairwise.PSF_SIGMA_PX


@pytest.mark.parametrize(("pixel_size_m", "sigma_px"), [(30.0, 0.5), (10.0, 0.5), (0.5, 10.0)])
def test_default_smooths_at_the_finest_resolvable_scale(synthetic_pair, pixel_size_m, sigma_px):
    before, after, valid, _ = synthetic_pair
    result = pairwise.default(before, after, valid, BANDS, pixel_size_m)
    assert result.parameters["smoothing_sigma_px"] == pytest.approx(sigma_px)


def test_default_flags_almost_nothing_when_nothing_changed():
    """Noise and a radiometric gain/offset only: a symmetric score histogram that Otsu alone
    would split in half; the IR-MAD significance test keeps it (nearly) empty."""
    rng = np.random.default_rng(3)
    before = rng.normal(0.2, 0.02, (6, 150, 150)).astype(np.float32)
    after = (1.1 * before + 0.02 + rng.normal(0, 0.02, before.shape)).astype(np.float32)
    result = pairwise.default(before, after, np.ones((150, 150), bool), BANDS, 10.0)
    assert np.mean(result.change == 1) < 0.01
    assert result.diagnostics["warnings"] == []


def test_default_bounds_false_alarms_under_spatially_correlated_residuals():
    """No change, but residuals correlated over tens of pixels (misregistration, haze
    patches): the white-noise significance test passes most pixels, and a histogram split
    (Otsu) would call about half the image. The pair's own no-change model keeps the called
    share near its false-alarm level."""
    rng = np.random.default_rng(5)
    before = rng.normal(0.2, 0.02, (6, 200, 200)).astype(np.float32)
    patches = scipy.ndimage.gaussian_filter(rng.normal(0, 1, (6, 200, 200)), (0, 6, 6))
    after = before + 0.3 * patches / patches.std() * 0.02 + rng.normal(0, 0.01, before.shape)
    result = pairwise.default(before, after.astype(np.float32), np.ones((200, 200), bool),
                              BANDS, 10.0)
    assert thresholds.otsu(result.score[np.isfinite(result.score)]) < 1.0
    assert np.mean(result.change == 1) < 0.03
    assert result.diagnostics["expected_false_alarm_fraction"] <= result.parameters["alpha"]


def test_default_says_when_change_is_widespread():
    """Two thirds of a pair changed (a flood, a tornado path): the result is flagged, not
    silently cut."""
    rng = np.random.default_rng(6)
    before = rng.normal(0.2, 0.02, (6, 150, 150)).astype(np.float32)
    after = before + rng.normal(0, 0.005, before.shape).astype(np.float32)
    after[:, :, :100] = (SOIL[:, None, None] + rng.normal(0, 0.02, (6, 150, 100)))
    result = pairwise.default(before, after.astype(np.float32), np.ones((150, 150), bool),
                              BANDS, 10.0)
    warnings = " ".join(result.diagnostics["warnings"])
    assert any(w in warnings for w in ("widespread change", "no no-change majority",
                                       "no compact no-change mode"))


def test_default_on_rgb_vhr_adds_colour_and_finds_new_roofs():
    """0.5 m RGB: grass and soil texture, two 20 m roofs built on grass, a brightness shift."""
    rng = np.random.default_rng(4)
    grass = np.array([0.25, 0.45, 0.15], np.float32)[:, None, None]  # red, green, blue
    soil = np.array([0.55, 0.45, 0.35], np.float32)[:, None, None]
    roof = np.array([0.50, 0.50, 0.52], np.float32)[:, None, None]
    fraction = scipy.ndimage.gaussian_filter(rng.random((240, 240)), 8)
    fraction = (fraction - fraction.min()) / np.ptp(fraction)
    before = (fraction * grass + (1 - fraction) * soil).astype(np.float32)
    after = before.copy()
    roofs = [(slice(30, 70), slice(40, 80)), (slice(150, 190), slice(140, 180))]
    for box in roofs:
        after[(slice(None), *box)] = roof
    before += rng.normal(0, 0.02, before.shape).astype(np.float32)
    after = 0.95 * after + rng.normal(0, 0.02, after.shape).astype(np.float32)
    truth = np.zeros((240, 240), bool)
    for box in roofs:
        truth[box] = True
    valid = np.ones(truth.shape, bool)
    result = pairwise.default(before, after, valid, ["red", "green", "blue"], 0.5,
                              learned_vhr=False)  # the classic evidence
    assert result.parameters["evidence"] == ["irmad_all_bands", "chroma_change"]
    for box in roofs:
        assert np.mean(result.change[box] == 1) > 0.9
    # smoothing at the 5 m object scale widens objects by up to two sigmas (10 m), no further
    beyond = ~scipy.ndimage.binary_dilation(truth, iterations=20)
    assert np.mean(result.change[beyond] == 1) < 0.01
    with_nir = np.concatenate([before, before[1:2]]), np.concatenate([after, after[1:2]])
    result = pairwise.default(*with_nir, valid, ["red", "green", "blue", "nir"], 0.5)
    assert "chroma_change" not in result.parameters["evidence"]


def test_chroma_change_ignores_brightness_and_sees_colour():
    grey = np.full((3, 2, 2), 0.4, np.float32)
    after = grey.copy()
    after[:, 0, 0] = 0.6  # brighter grey
    after[:, 1, 1] = [0.2, 0.5, 0.2]  # grey to green
    after[:, 0, 1] = np.nan
    chroma = indices.chroma_change(grey, after, ["red", "green", "blue"])
    assert chroma[0, 0] < 1.0 and chroma[1, 1] > 30.0  # CIELAB units, JND ~2.3
    assert np.isnan(chroma[0, 1])
    assert indices.chroma_change(grey[:2], after[:2], ["red", "green"]) is None


def test_gaussian_noise_gain_is_the_spread_of_smoothed_white_noise():
    noise = np.random.default_rng(0).normal(0, 1, (400, 400))
    for sigma in (0.5, 2.0, 10.0):
        smoothed = scipy.ndimage.gaussian_filter(noise, sigma)[40:-40, 40:-40]
        assert smoothed.std() == pytest.approx(pairwise.gaussian_noise_gain(sigma), rel=0.1)


def test_default_beats_cva_on_a_real_oscd_city(data_dir, tmp_path):
    city = "bercy"
    city_dir = data_dir / "oscd" / city
    sitewatch.ingest([city_dir], tmp_path)
    stack = build_stack(tmp_path, from_geojson(city_dir / f"{city}.geojson"),
                        coregistration="none")
    ds = stack.open()
    refl = ds["reflectance"].values
    valid = (ds["mask"].values == 0).all(axis=0)
    with rasterio.open(next((city_dir / "imgs_1").glob("*B02.tif"))) as b02:
        with rasterio.open(city_dir / "cm" / f"{city}-cm.tif") as cm:
            labels = cm.read(1)
        labels = reproject_to_grid(labels, b02.transform, b02.crs, stack.grid, nodata=0)
    scored = valid & (labels > 0)
    truth = labels == 2
    bands = [str(b) for b in ds["band"].values]
    scores = {name: f1_score(pairwise_methods()[name](refl[0], refl[1], valid, bands,
                                                     stack.grid.resolution).change,
                             truth, scored)
              for name in ("default", "cva")}
    assert scores["default"] > scores["cva"] + 0.05


def test_kittler_illingworth_splits_a_rare_bimodal_mixture():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 19_000), rng.normal(8, 1, 1_000)])
    assert 2.5 < thresholds.kittler_illingworth(values) < 6.0


def test_rosin_cuts_where_the_tail_leaves_the_mode():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 20_000), rng.uniform(4, 30, 500)])
    assert 1.5 < thresholds.rosin(values) < 5.0
    # peak in the last bin: no tail, nothing above the threshold
    assert thresholds.rosin(np.arange(10.0).repeat(np.arange(1, 11))) == 9.0


def test_otsu_splits_a_balanced_bimodal_mixture():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 5_000), rng.normal(6, 1, 5_000)])
    assert 2.0 < thresholds.otsu(values) < 4.0


def test_robust_cut_ignores_a_few_outliers():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 10_000), np.full(300, 50.0)])
    assert 2.8 < thresholds.robust_cut(values, 3.0) < 3.3
    z = thresholds.robust_z(values)
    assert abs(np.median(z)) < 0.05 and z[-1] > 40


def test_chi2_threshold_is_the_upper_quantile():
    assert thresholds.chi2_threshold(1, 0.05) == pytest.approx(3.841, abs=1e-3)


def test_minimum_mapping_unit_drops_small_objects():
    change = np.zeros((20, 20), bool)
    change[1:3, 1:3] = True  # 4 pixels = 400 m2 at 10 m
    change[10:12, 10] = True  # 2 pixels = 200 m2
    kept = thresholds.minimum_mapping_unit(change, 300.0, 10.0)
    assert kept[1:3, 1:3].all() and not kept[10:12, 10].any()
