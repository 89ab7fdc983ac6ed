"""Detection on a workspace stack and the one-shot compare: storage, records, CLI, errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio

import sitewatch
from conftest import simulated_stack
from sitewatch import SitewatchError, Workspace
from sitewatch.sites.probability import PACKAGED_PAIR_MODEL, packaged_model


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    root = tmp_path_factory.mktemp("detect")
    _, _, stack = simulated_stack(root, seed=5, n_dates=6, size_m=(2400, 1800), aoi_name="site")
    return root / "ws", stack


def test_pairwise_detection_is_stored_georeferenced_and_recorded(stacked):
    ws, stack = stacked
    result = sitewatch.detect(ws, "site")
    assert result.dates == [str(stack.open().time.values[i])[:10] for i in (0, -1)]
    with rasterio.open(result.layers["change"]) as src:
        change = src.read(1)
        assert src.crs.to_epsg() == stack.grid.epsg
        assert src.transform == stack.grid.transform
        assert src.nodata == 255
    assert set(np.unique(change)) <= {0, 1, 255} and (change == 1).any()
    with rasterio.open(result.layers["kinds"]) as src:
        assert "vegetation_loss" in src.descriptions
    with Workspace.open(ws) as w:
        run = w.rows("runs", "run_id = ?", (result.run_id,))[0]
        layers = w.rows("rasters", "run_id = ?", (result.run_id,))
    assert run["stage"] == "detect" and run["parameters"]["method"] == "default"
    # the simulated site is a few per cent of the AOI: no warning, and the record says so
    diagnostics = run["parameters"]["diagnostics"]
    assert result.warnings == diagnostics["warnings"] == []
    assert diagnostics["called_fraction"] == pytest.approx(result.changed_fraction)
    assert set(run["inputs"]["scenes"]) == {s for a in stack.included for s in a.scene_ids}
    assert {r["kind"] for r in layers} == {"change:change", "change:score", "change:kinds"}


def test_chosen_dates_and_methods(stacked):
    ws, stack = stacked
    days = [str(t)[:10] for t in stack.open().time.values]
    result = sitewatch.detect(ws, "site", method="cva", dates=(days[1], days[3]))
    assert result.dates == [days[1], days[3]] and result.method == "cva"
    with pytest.raises(SitewatchError, match="no acquisition on 1999-01-01"):
        sitewatch.detect(ws, "site", dates=("1999-01-01", days[2]))
    for reversed_or_equal in ((days[3], days[1]), (days[2], days[2])):
        with pytest.raises(SitewatchError, match="the first date must be before the second"):
            sitewatch.detect(ws, "site", dates=reversed_or_equal)
    with pytest.raises(SitewatchError, match="smallest site"):
        sitewatch.track(ws, "site", min_area_m2=-5)
    with pytest.raises(SitewatchError, match="unknown method 'magic'"):
        sitewatch.detect(ws, "site", method="magic")
    with pytest.raises(SitewatchError, match="no stack for AOI 'elsewhere'"):
        sitewatch.detect(ws, "elsewhere")


def test_timeseries_detection_writes_onset_layers(stacked):
    ws, stack = stacked
    result = sitewatch.detect(ws, "site", method="timeseries")
    with rasterio.open(result.layers["onset"]) as src:
        onset = src.read(1)
        assert src.tags()["units"] == "days since 1970-01-01"
        nodata = src.nodata
    with rasterio.open(result.layers["persistent"]) as src:
        persistent = src.read(1).astype(bool)
    days = onset[persistent & (onset != nodata)]
    first, last = (np.datetime64(str(t)[:10]).astype(int) for t in stack.open().time.values[[0,
                                                                                              -1]])
    assert days.size and ((days > first) & (days <= last)).all()
    assert result.warnings == [] and 0 < result.changed_fraction < 0.2


def test_compare_two_oscd_folders_without_a_workspace(tmp_path, data_dir):
    city = data_dir / "oscd" / "bercy"
    result = sitewatch.compare(city / "imgs_1", city / "imgs_2", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "change.tif", "kinds.tif", "score.tif", "sites.geojson"]
    sites = json.loads((tmp_path / "out" / "sites.geojson").read_text())["features"]
    assert sites and all(f["properties"]["length_m"] >= f["properties"]["width_m"] > 0
                         for f in sites)
    assert {f["properties"]["phases"][0]["after"] for f in sites} == {"2016-11-30"}
    shipped = packaged_model(PACKAGED_PAIR_MODEL)
    assert shipped.sites >= 100  # fitted on the OSCD objects (bench/calibrate.py pairs)
    assert all(0 < f["properties"]["probability"] < 1 for f in sites)
    lon, lat = sites[0]["properties"]["centroid_lon"], sites[0]["properties"]["centroid_lat"]
    assert 2.2 < lon < 2.5 and 48.7 < lat < 48.95  # Paris region, in lon/lat
    with rasterio.open(tmp_path / "out" / "change.tif") as src:
        assert src.crs.to_epsg() == 32631 and src.res == (10.0, 10.0)
        change = src.read(1)
    assert 0 < (change == 1).mean() < 0.2
    assert result.dates == ["2016-11-30", "2017-08-29"]  # bercy/dates.txt
    with pytest.raises(SitewatchError, match="not older"):
        sitewatch.compare(city / "imgs_2", city / "imgs_1", tmp_path / "swapped")


def test_compare_on_the_command_line(tmp_path, data_dir):
    city = data_dir / "oscd" / "bercy"
    command = [sys.executable, "-m", "sitewatch", "compare", str(city / "imgs_1"),
               str(city / "imgs_2"), "--out", str(tmp_path / "cli"), "--method", "index"]
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "index on 2016-11-30 -> 2017-08-29" in done.stdout
    assert (tmp_path / "cli" / "change.tif").is_file()
