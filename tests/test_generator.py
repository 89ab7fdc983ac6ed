"""The randomised scenarios: sites of every type, size, shape and ground, decoys, revisits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from shapely.geometry import box

from sitewatch.errors import SitewatchError
from sitewatch.simulate import simulate
from sitewatch.simulate.generator import (
    REVISIT_DAYS,
    SITE_TYPES,
    SIZE_RANGE_M,
    build_random_scenario,
    random_dates,
    scene_centre_local,
)
from sitewatch.simulate.instruments import get_sensor
from sitewatch.simulate.scenario import CROSSING_LONLAT, LocalFrame


def _scenario(seed: int, sensor: str = "s2", with_sites: bool = True):
    spec = get_sensor(sensor)
    centre = scene_centre_local(seed)
    extent = box(centre.x - 1500, centre.y - 1200, centre.x + 1500, centre.y + 1200)
    return build_random_scenario(random_dates(spec, 12, seed), seed, sensor, extent,
                                 with_sites=with_sites), extent


@pytest.mark.parametrize("seed", [0, 7, 21])
def test_each_seed_draws_every_site_type_apart_inside_the_scene(seed):
    scenario, extent = _scenario(seed)
    frame = LocalFrame(*CROSSING_LONLAT)
    extent_scene = frame.to_scene(extent)
    assert set(SITE_TYPES) <= {s.type for s in scenario.sites}
    lo, hi = SIZE_RANGE_M["s2"]
    for i, site in enumerate(scenario.sites):
        assert extent_scene.contains(site.footprint)
        # sides from the footprint's own oriented rectangle; an irregular outline is a little
        # smaller than the length it was drawn with
        assert 0.75 * lo <= site.length_m <= hi * 1.01 and site.width_m <= site.length_m
        assert len(site.states) == 12
        for other in scenario.sites[i + 1:]:
            assert not site.footprint.intersects(other.footprint)
        starts = [p.start for p in site.phases]
        assert starts == sorted(starts)
        assert scenario.dates[0].date() <= starts[0] <= starts[-1] <= scenario.dates[-1].date()


def test_a_seed_is_the_same_scenario_and_another_seed_another():
    first, _ = _scenario(3)
    again, _ = _scenario(3)
    other, _ = _scenario(4)
    assert [s.footprint.wkt for s in first.sites] == [s.footprint.wkt for s in again.sites]
    assert [s.footprint.wkt for s in first.sites] != [s.footprint.wkt for s in other.sites]


def test_revisit_gaps_are_random_within_their_range():
    dates = random_dates(get_sensor("s2"), 30, seed=5)
    gaps = np.diff([d.toordinal() for d in dates])
    assert gaps.min() >= REVISIT_DAYS[0] and gaps.max() <= REVISIT_DAYS[1]
    assert len(set(gaps.tolist())) > 5


def test_decoy_only_scenes_have_decoys_and_no_site():
    for seed in range(6):
        scenario, _ = _scenario(seed, with_sites=False)
        assert scenario.sites == ()
        if scenario.decoys:
            break
    assert scenario.decoys, "no decoy in six seeds"
    assert {d.type for d in scenario.decoys} <= {"ploughed_field", "flood"}


def test_simulate_writes_sites_and_decoys_to_the_truth(tmp_path):
    result = simulate(tmp_path / "random", sensor="s2", seed=11, scenario="random",
                      size_m=(1500, 1200), n_dates=6)
    truth = json.loads(result.truth_path.read_text())
    roles = [f["properties"]["role"] for f in truth["features"]]
    assert roles.count("site") >= 3
    assert truth["sitewatch:scenario"]["name"] == "random"
    aoi = shapely.geometry.shape(next(f["geometry"] for f in truth["features"]
                                      if f["properties"]["role"] == "aoi"))
    for feature in truth["features"]:
        if feature["properties"]["role"] == "site":
            assert aoi.contains(shapely.geometry.shape(feature["geometry"]))
    with pytest.raises(SitewatchError, match="unknown scenario 'moon'"):
        simulate(tmp_path / "moon", scenario="moon")
