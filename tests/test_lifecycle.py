"""Change type and phases from site signatures (the medians a site showed on each date)."""

import numpy as np
import pytest

from sitewatch.sites.lifecycle import lifecycle
from sitewatch.sites.signature import DateSignature

DAYS = [f"{year}-{month:02d}-15" for year, month in
        [(2018, 9), (2018, 10), (2018, 11), (2018, 12), (2019, 1), (2019, 2), (2019, 3),
         (2019, 4), (2019, 5), (2019, 6), (2019, 7), (2019, 8)]]


def _signature(rows, ring_vegetation=None):
    """``rows``: per date (brightness, built_up, vegetation, activity, contrast, ring), or None
    for a date that was not observed; ``ring_vegetation``: the ring's vegetation index per
    date (NaN by default)."""
    out = []
    ring_vegetation = ring_vegetation or [np.nan] * len(DAYS)
    for day, row, ring_v in zip(DAYS, rows, ring_vegetation, strict=True):
        if row is None:
            out.append(DateSignature(np.datetime64(day), False, 0.0))
            continue
        brightness, built, vegetation, activity, contrast, ring = row
        out.append(DateSignature(np.datetime64(day), True, 1.0, vegetation, built, brightness,
                                 activity, ring, contrast, ring_v))
    return out


# A 40 x 24 m warehouse seen at 10 m inside a 4400 m2 polygon (the Sentinel-2 demo): the
# destruction moves the polygon's median by less than a full level shift, but nearly all of
# its pixels change; grading brings it back near the old level, still darker than the ground
# around it; scraping the debris away leaves it brighter than its surroundings.
SENTINEL2_WAREHOUSE = [
    (0.217, 0.047, 0.047, np.nan, 0.091, 0.215), (0.217, 0.048, 0.044, 0.455, 0.09, 0.215),
    (0.209, 0.051, 0.049, 0.182, 0.09, 0.211), (0.180, 0.056, 0.026, 0.955, 0.10, 0.221),
    None, (0.207, 0.057, 0.041, 0.955, 0.05, 0.218), None,
    (0.264, 0.034, 0.046, 1.000, 0.06, 0.215), (0.261, 0.036, 0.049, 0.227, 0.06, 0.212),
    (0.261, 0.039, 0.048, 0.000, 0.06, 0.212), (0.266, 0.036, 0.047, 0.000, 0.06, 0.214),
    (0.276, 0.039, 0.042, 0.318, 0.06, 0.224),
]
# The same building at 0.5 m (the VHR demo): the polygon is mostly the building.
VHR_WAREHOUSE = [
    (0.242, -0.085, 0.040, np.nan, 0.089, 0.232), (0.241, -0.085, 0.037, 0.082, 0.09, 0.231),
    (0.238, -0.099, 0.046, 0.040, 0.09, 0.225), (0.177, -0.118, 0.067, 0.803, 0.10, 0.228),
    None, (0.190, -0.119, 0.062, 0.478, 0.06, 0.226), (0.195, -0.114, 0.058, 0.268, 0.06, 0.231),
    (0.306, -0.209, 0.089, 0.995, 0.08, 0.222), (0.300, -0.218, 0.092, 0.039, 0.08, 0.223),
    (0.302, -0.216, 0.090, 0.052, 0.07, 0.232), (0.303, -0.213, 0.090, 0.101, 0.08, 0.224),
    (0.298, -0.220, 0.092, 0.007, 0.07, 0.224),
]


@pytest.mark.parametrize("rows", [SENTINEL2_WAREHOUSE, VHR_WAREHOUSE], ids=["s2", "vhr"])
def test_a_destroyed_building_is_flattened_then_cleared_of_debris(rows):
    life = lifecycle(_signature(rows))
    assert life.change_type == "destruction"
    assert [(p.name, p.first_observed) for p in life.phases] == [
        ("intact", "2018-09-15"), ("destroyed", "2018-12-15"), ("flattened", "2019-02-15"),
        ("debris_removed", "2019-04-15")]
    assert life.phases[2].after == "2018-12-15"  # 2019-01-15 was not observed


def test_open_ground_that_brightens_is_cleared_then_built_on():
    rows = [(0.20, 0.0, 0.05, 0.05, 0.02, 0.20)] * 7 + [
        (0.29, 0.0, 0.05, 0.9, 0.08, 0.20), (0.29, 0.0, 0.05, 0.3, 0.08, 0.20),
        (0.30, 0.0, 0.05, 0.3, 0.08, 0.20), (0.30, 0.0, 0.05, 0.2, 0.08, 0.20),
        (0.30, 0.0, 0.05, 0.2, 0.08, 0.20)]
    life = lifecycle(_signature(rows))
    assert life.change_type == "new_construction"
    assert [p.name for p in life.phases] == ["cleared", "under_construction"]
    assert life.phases[0].first_observed == "2019-04-15"


def test_greening_is_not_construction():
    rows = [(0.21, 0.05, 0.08, 0.05, 0.02, 0.21)] * 6 + [
        (0.20, -0.01, 0.15, 0.6, 0.03, 0.21)] * 6
    assert lifecycle(_signature(rows)).change_type == "seasonal_vegetation"


# A compound built in a field (the signature of a 190 x 120 m compound in the simulator's
# farmland): the winter crop greens up, then the field is scraped and built on. The vegetation
# rises and falls as a crop's does, but the ground left is twice as bright as the field's soil.
COMPOUND_IN_FARMLAND = [
    (0.161, 0.068, 0.105, np.nan, 0.016, 0.16), (0.153, 0.077, 0.111, 0.0, 0.012, 0.16),
    (0.164, 0.070, 0.101, 0.01, 0.015, 0.16), (0.154, 0.077, 0.111, 0.01, 0.012, 0.16),
    (0.135, 0.074, 0.218, 0.0, 0.014, 0.14), (0.132, -0.035, 0.275, 0.0, 0.031, 0.14),
    (0.133, -0.137, 0.389, 0.09, 0.045, 0.14), None,
    (0.348, 0.016, 0.039, 1.0, 0.198, 0.15), (0.359, 0.011, 0.032, 0.04, 0.211, 0.15),
    (0.336, 0.014, 0.038, 0.0, 0.219, 0.15), (0.357, 0.008, 0.025, 0.12, 0.226, 0.15),
]


def test_construction_in_a_field_is_not_a_crop_cycle():
    life = lifecycle(_signature(COMPOUND_IN_FARMLAND))
    assert life.change_type == "new_construction"
    assert life.phases[0].name == "cleared" and life.phases[0].first_observed == "2019-05-15"
    assert life.phases[0].after == "2019-03-15"  # 2019-04-15 was not observed


def test_a_harvest_back_to_the_same_soil_stays_a_crop_cycle():
    """The same field harvested instead: the vegetation falls and the ground is its own soil
    again, a little brighter for the stubble."""
    harvested = [row if row is None or i < 8 else (0.185, 0.07, 0.06, 0.9 if i == 8 else 0.05,
                                                     0.02, 0.16)
                 for i, row in enumerate(COMPOUND_IN_FARMLAND)]
    assert lifecycle(_signature(harvested)).change_type == "seasonal_vegetation"


def test_a_cloud_over_the_site_alone_and_its_return_are_no_event():
    """Desert whose brightness jumps on one date (a small unmasked cloud over the polygon, its
    ring hardly touched) and is back on the next: neither the jump nor the return is a change."""
    rows = [(0.215, 0.094, 0.088, 0.0, 0.04, 0.237)] * 9 + [
        (0.266, 0.048, 0.058, 0.46, 0.36, 0.25), (0.213, 0.096, 0.091, 0.46, 0.04, 0.235),
        (0.212, 0.094, 0.091, 0.0, 0.04, 0.235)]
    assert lifecycle(_signature(rows)).change_type == "unclassified"


def test_an_unmasked_shadow_over_the_whole_site_is_no_event():
    """Every pixel of the polygon darkens on one date (strong activity, the shape of the
    shadow) and is back, contrast and all, on the next: no site."""
    rows = [(0.20, 0.115, 0.05, 0.0, 0.055, 0.20)] * 9 + [
        (0.086, 0.109, -0.016, 0.95, 0.13, 0.193), (0.20, 0.114, 0.048, 0.95, 0.039, 0.197),
        (0.206, 0.111, 0.044, 0.0, 0.038, 0.203)]
    assert lifecycle(_signature(rows)).change_type == "unclassified"


# A field green on every date before its event (no bare date of its own to compare with): the
# crop is ploughed under in 2019-05, or the field is scraped and built on. Its neighbours are
# ploughed or fallow soil from 2019-05 on (ring vegetation index 0.1), green before.
GREEN_BEFORE = [(0.135, -0.10, 0.40, 0.0 if i else np.nan, 0.02, 0.14) for i in range(8)]
RING_GREEN_THEN_BARE = [0.35] * 8 + [0.10] * 4


def _after(brightness):
    return [(brightness, 0.07, 0.08, 0.9, 0.03, 0.14)] + [(brightness, 0.07, 0.08, 0.05, 0.03,
                                                           0.14)] * 3


def test_a_green_field_ploughed_to_its_neighbours_soil_is_cultivation():
    life = lifecycle(_signature(GREEN_BEFORE + _after(0.138), RING_GREEN_THEN_BARE))
    assert life.change_type == "cultivation"
    assert life.first_change == "2019-05-15"


def test_a_green_field_scraped_brighter_than_its_neighbours_soil_is_construction():
    life = lifecycle(_signature(GREEN_BEFORE + _after(0.30), RING_GREEN_THEN_BARE))
    assert life.change_type in ("new_construction", "land_clearing")
    assert life.phases[0].first_observed == "2019-05-15"


def test_without_bare_soil_to_compare_with_it_stays_vegetation_loss():
    """Neighbours green on every date: nothing tells ploughing from another loss."""
    life = lifecycle(_signature(GREEN_BEFORE + _after(0.138), [0.35] * 12))
    assert life.change_type == "vegetation_loss"


def test_a_cloud_over_the_site_alone_then_a_darker_scene_is_no_event():
    """A small cloud over a 20 x 20 m polygon on one date (the signature of a VHR decoy scene):
    on the next date the whole scene is darker by 0.015 and the site with it, which leaves the
    site's own brightness and built-up index more than half an event's shift from before, but
    not against its surroundings."""
    quiet = [(0.224, -0.213, 0.10, 0.0, 0.027, 0.238)] * 9
    rows = quiet + [(0.570, -0.001, -0.01, 1.0, 0.339, 0.235),
                    (0.208, -0.239, 0.10, 1.0, 0.031, 0.227),
                    (0.214, -0.229, 0.10, 0.0, 0.030, 0.232)]
    signature = _signature(rows)
    for date, ring_built in zip(signature, [-0.216] * 9 + [-0.222, -0.234, -0.225],
                                strict=True):
        date.ring_built_up = ring_built
    assert lifecycle(signature).change_type == "unclassified"
    for date in signature:  # without the ring, the darker scene reads as a change that held
        date.ring_built_up = np.nan
    assert lifecycle(signature).change_type != "unclassified"


def test_a_green_field_in_bare_land_ploughed_to_darker_soil_is_cultivation():
    """A green field in bare land (the signature of a Sentinel-2 decoy): it stands out from
    its surroundings but holds no structure, and its ploughed topsoil is darker than the bare
    ground around it, which scraped ground never is."""
    rows = [(0.110, -0.05, 0.42, 0.0, 0.105, 0.205)] * 6 + [
        (0.142, 0.137, 0.13, 0.95, 0.067, 0.206)] + [(0.150, 0.13, 0.13, 0.0, 0.065, 0.212)] * 5
    life = lifecycle(_signature(rows, [0.10] * 12))
    assert life.change_type == "cultivation"
    assert life.first_change == "2019-03-15"


def test_a_site_dark_on_two_dates_and_back_as_before_is_transient():
    """A shadow over the polygon on two dates in a row (the signature of a Sentinel-2 decoy
    scene): the darkening holds past one date, but on the last date the site is as it was, so
    nothing lasting happened there."""
    rows = [(0.255, 0.101, 0.09, 0.0, 0.025, 0.250)] * 9 + [
        (0.124, 0.105, 0.04, 1.0, 0.145, 0.243), (0.152, 0.091, 0.06, 0.0, 0.114, 0.244),
        (0.257, 0.099, 0.10, 1.0, 0.020, 0.251)]
    signature = _signature(rows)
    for date, ring_built in zip(signature, [0.100] * 9 + [0.098, 0.092, 0.099], strict=True):
        date.ring_built_up = ring_built
    life = lifecycle(signature)
    assert life.change_type == "transient"
    assert life.first_change == "2019-06-15"
    signature[-1].brightness = 0.150  # still dark on the last date: a change that held
    assert lifecycle(signature).change_type not in ("transient", "unclassified")
