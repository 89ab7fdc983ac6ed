"""The sites stage end to end on a simulated border-compound scenario, and its storage."""

import json
import subprocess
import sys

import pyogrio
import pytest
import shapely
from pyproj import Geod

import sitewatch
from conftest import simulated_stack
from sitewatch import Workspace

GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    root = tmp_path_factory.mktemp("sites")
    _, truth, _ = simulated_stack(root, seed=0, n_dates=12, size_m=(3000, 2400),
                                  aoi_name="crossing", with_places=True)
    found = sitewatch.track(root / "ws", "crossing")
    return root / "ws", truth, found


def _truth_site(truth, kind):
    return next(f for f in truth["features"] if f["properties"].get("type") == kind)


def test_compound_found_measured_located_and_dated(tracked):
    ws, truth, found = tracked
    compound = _truth_site(truth, "new_construction")
    true_polygon = shapely.geometry.shape(compound["geometry"])
    rows = sitewatch.sites(ws, aoi="crossing")
    best = max(rows, key=lambda r: shapely.geometry.shape(r["geometry"]).intersection(
        true_polygon).area)
    m = best["properties"]["measurements"]
    assert best["change_type"] == "new_construction"
    assert m["length_m"] == pytest.approx(270, rel=0.1)
    assert m["width_m"] == pytest.approx(165, rel=0.1)
    crossing = next(p for p in m["places"] if p["kind"] == "border crossing")
    place = next(f for f in truth["features"] if f["properties"].get("kind") == "border crossing")
    cx, cy = true_polygon.centroid.coords[0]
    bearing, _, distance = GEOD.inv(*place["geometry"]["coordinates"], cx, cy)
    assert crossing["distance_m"] == pytest.approx(distance, abs=100)
    assert (crossing["bearing_deg"] - bearing % 360 + 180) % 360 - 180 == pytest.approx(0, abs=5)
    assert crossing["direction"] == "W" and m["border"]["side"] == "Syria"
    # construction start within one revisit: first observed in the revisit after the true start
    phases = {p["phase"]: p for p in best["properties"]["phases"]}
    true_start = next(p for p in compound["properties"]["phases"] if p["phase"] == "cleared")
    first = phases.get("cleared", phases.get("under_construction"))
    assert first["after"] <= true_start["start"] <= first["first_observed"]
    assert crossing["phrase"] == "2.6 km W of Al-Qaim border crossing"


def test_observations_track_the_site_through_time(tracked):
    ws, _, found = tracked
    rows = sitewatch.sites(ws, aoi="crossing")
    assert len(rows) == len(found.sites) >= 1
    site = rows[0]
    observed = [o["observed"] for o in site["observations"]]
    assert observed == sorted(observed) and len(observed) >= 6
    areas = [o["area_m2"] for o in site["observations"]]
    assert areas[0] == 0 and areas[-1] > 0  # unchanged at first, changed at the end
    assert all(b >= a for a, b in zip(areas, areas[1:], strict=False))  # one site that grows


def test_sites_layers_open_in_ogr_and_reruns_replace(tracked):
    ws, _, found = tracked
    gpkg = ws / "sitewatch.gpkg"
    info = pyogrio.read_info(gpkg, layer="sites")
    assert info["crs"] == "EPSG:4326" and info["features"] == len(found.sites)
    assert {"length_m", "width_m", "mgrs", "change_type"} <= set(info["fields"])
    again = sitewatch.track(ws, "crossing")
    assert [s.site_id for s in again.sites] == [s.site_id for s in found.sites]  # kept
    with Workspace.open(ws) as w:
        assert w.count("sites") == len(again.sites)
        assert {r["run_id"] for r in w.rows("sites")} == {again.run_id}
        runs = w.rows("runs", "stage = 'sites'")
    assert runs[-1]["parameters"]["discarded"] == again.discarded


def test_a_before_after_pair_gives_sites_from_the_pairwise_change_map(tracked):
    """Three acquisitions are too few for the time series: the pairwise path types and dates
    each site by the two ends of the stack."""
    from datetime import datetime

    from sitewatch.stack import build_stack, from_bbox

    ws, truth, _ = tracked
    aoi = next(f for f in truth["features"] if f["properties"]["role"] == "aoi")
    bbox = ",".join(map(str, shapely.geometry.shape(aoi["geometry"]).bounds))
    stack = build_stack(ws, from_bbox(bbox, "pair"), start=datetime(2019, 4, 1),
                        end=datetime(2019, 6, 30))
    days = [a.key[:10] for a in stack.included]
    assert len(days) == 3
    found = sitewatch.track(ws, "pair")
    assert found.sites
    for site in found.sites:
        (phase,) = site.lifecycle.phases
        assert (phase.after, phase.first_observed) == (days[0], days[-1])
    rows = sitewatch.sites(ws, aoi="pair")
    assert [r["site_id"] for r in rows] == [s.site_id for s in found.sites]
    assert {r["change_type"] for r in rows} <= {"new_construction", "destruction",
                                                "vegetation_loss", "unclassified"}
    for row in rows:  # one observation on each end of the pair, the footprint on the second
        assert [o["observed"] for o in row["observations"]] == [days[0], days[-1]]
        assert row["observations"][-1]["area_m2"] == pytest.approx(row["area_m2"], rel=0.01)


def test_aois_lists_the_names_the_stages_take(tracked):
    """``sitewatch aois`` and ``sitewatch.aois``: each AOI with its stack dates and sites."""
    ws, _, found = tracked
    listed = sitewatch.aois(ws)
    assert [a["name"] for a in listed] == sorted(a["name"] for a in listed)
    aoi = next(a for a in listed if a["name"] == "crossing")
    assert aoi["sites"] == len(found.sites)
    assert len(aoi["stack_dates"]) == 12 and aoi["resolution_m"] == 10.0
    assert 3000 * 2400 / 1e6 * 0.8 < aoi["area_km2"] < 3000 * 2400 / 1e6 * 1.2
    printed = subprocess.run([sys.executable, "-m", "sitewatch", "aois", "-w", str(ws),
                              "--json"], capture_output=True, text=True, check=True)
    assert json.loads(printed.stdout) == listed
