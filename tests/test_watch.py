"""Watch files: validation with clear errors, and a whole run on a small simulated scenario."""

import json
import textwrap

import pytest
import shapely

import sitewatch
from sitewatch import Workspace
from sitewatch.errors import SitewatchError
from sitewatch.watch import read_watch_file
from sitewatch.watchlist import run_watch

MINIMAL = """
workspace = "ws"
[imagery]
sources = ["imagery"]
[[aoi]]
name = "a"
bbox = [40.0, 34.0, 40.1, 34.1]
"""


def _write(tmp_path, text, name="watch.toml"):
    (tmp_path / "imagery").mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_minimal_watch_file_resolves_paths_against_its_folder(tmp_path):
    watch = read_watch_file(_write(tmp_path, MINIMAL))
    assert watch.workspace == tmp_path / "ws"
    assert watch.sources == (tmp_path / "imagery",)
    (aoi,) = watch.aois
    assert aoi.bbox == (40.0, 34.0, 40.1, 34.1)
    assert aoi.methods == ("default", "timeseries")
    assert watch.report is None and watch.start is None


@pytest.mark.parametrize("edit, message", [
    (lambda t: t + "colour = 'red'\n", "unknown key(s) colour"),
    (lambda t: t.replace('bbox = [40.0, 34.0, 40.1, 34.1]', 'bbox = [40.1, 34.0, 40.0, 34.1]'),
     "aoi[1].bbox"),
    (lambda t: t.replace('bbox = [40.0, 34.0, 40.1, 34.1]', 'place = "x"\nbbox = [1, 2, 3, 4]'),
     "exactly one of bbox, geojson or place"),
    (lambda t: t.replace('sources = ["imagery"]', 'sources = ["nowhere/*.tif"]'),
     "matches no file"),
    (lambda t: t.replace('[imagery]', '[imagery]\nstart = "last spring"'), "not an ISO date"),
    (lambda t: t + '[[reference.places]]\nname = "x"\nlon = 200\nlat = 0\n',
     "reference.places[1]"),
    (lambda t: t.replace('workspace = "ws"', 'workspace = "ws"\n[oops'), "not valid TOML"),
    (lambda t: t + 'methods = ["default", "magic"]\n', "unknown method(s) magic"),
    (lambda t: t + 'epsg = 99999\n', "EPSG:99999 is not a known CRS"),
    (lambda t: t + 'normalisation = "gamma"\n', "'gamma' is not one of irmad"),
    # issue 21: found before anything is written, not after ingest
    (lambda t: t.replace('[imagery]', '[imagery]\nstart = 2019-05-01\nend = 2019-01-01'),
     "imagery.end: 2019-01-01 is before imagery.start"),
    (lambda t: t.replace('bbox = [40.0, 34.0, 40.1, 34.1]', 'place = "Nowhere"'),
     "aoi[1].place: no reference place named 'Nowhere'"),
    (lambda t: t.replace('[imagery]', '[reference]\nfiles = ["missing.geojson"]\n[imagery]'),
     "reference.files"),
])
def test_mistakes_name_the_file_and_the_key(tmp_path, edit, message):
    path = _write(tmp_path, edit(MINIMAL))
    with pytest.raises(SitewatchError, match="watch.toml") as caught:
        read_watch_file(path)
    assert message in str(caught.value)


def test_a_missing_watch_file_is_a_clear_error(tmp_path):
    with pytest.raises(SitewatchError, match="no such watch file"):
        read_watch_file(tmp_path / "absent.toml")


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """A simulated scenario run twice from one watch file (the second run finds nothing new)."""
    from sitewatch.simulate import simulate

    root = tmp_path_factory.mktemp("watch")
    result = simulate(root / "imagery", sensor="s2", seed=3, n_dates=6, size_m=(1800, 1500))
    crossing = next(f for f in json.loads(result.places_path.read_text())["features"]
                    if f["properties"].get("kind") == "border crossing")
    lon, lat = crossing["geometry"]["coordinates"]
    aoi = next(f for f in json.loads(result.truth_path.read_text())["features"]
               if f["properties"]["role"] == "aoi")
    bbox = list(shapely.geometry.shape(aoi["geometry"]).bounds)
    path = root / "watch.toml"
    path.write_text(textwrap.dedent(f"""
        workspace = "ws"
        [imagery]
        sources = ["imagery/catalog.json"]
        [reference]
        files = ["imagery/places.geojson"]
        [[reference.places]]
        name = "Checkpoint 7"
        kind = "checkpoint"
        lon = {lon + 0.01}
        lat = {lat}
        [[aoi]]
        name = "crossing"
        bbox = {bbox}
        methods = ["timeseries"]
    """), encoding="utf-8")
    first = run_watch(path)
    with Workspace.open(root / "ws") as ws, ws.transaction() as txn:
        txn.insert("notes", {"subject": "crossing-001", "text": "seen by analyst",
                             "created_at": "2026-12-02T10:00:00Z"})
    second = run_watch(path)
    return root, first, second


def test_a_watch_run_takes_each_aoi_through_the_pipeline(watched):
    root, first, _ = watched
    (aoi,) = first.aois
    assert first.new_scenes == 6
    assert [d.method for d in aoi.detections] == ["timeseries"]
    assert aoi.stack.grid.resolution == 10
    places = {p["name"] for p in sitewatch.places(root / "ws")[0]}
    assert {"Checkpoint 7", "Al-Qaim border crossing"} <= places
    rows = sitewatch.sites(root / "ws", aoi="crossing")
    assert len(rows) == len(aoi.sites.sites)


def test_running_again_ingests_nothing_runs_nothing_and_keeps_analyst_records(watched):
    root, first, second = watched
    assert second.new_scenes == 0 and second.updated_scenes == 0
    assert second.aois[0].up_to_date and second.aois[0].sites is None
    with Workspace.open(root / "ws") as ws:
        assert ws.count("scenes") == 6
        runs = ws.rows("runs", "stage = 'sites'", order_by="fid")
        assert [r["run_id"] for r in runs] == [first.aois[0].sites.run_id]
        assert ws.count("sites") == len(first.aois[0].sites.sites)
        assert [n["text"] for n in ws.rows("notes")] == ["seen by analyst"]


def test_a_run_killed_before_its_pairwise_detection_is_finished_by_the_next(tmp_path):
    from sitewatch.simulate import simulate

    result = simulate(tmp_path / "imagery", sensor="s2", seed=4, n_dates=6, size_m=(1200, 1000))
    aoi = next(f for f in json.loads(result.truth_path.read_text())["features"]
               if f["properties"]["role"] == "aoi")
    path = tmp_path / "watch.toml"
    path.write_text(textwrap.dedent(f"""
        workspace = "ws"
        [imagery]
        sources = ["imagery/catalog.json"]
        [[aoi]]
        name = "a"
        bbox = {list(shapely.geometry.shape(aoi["geometry"]).bounds)}
        methods = ["default", "timeseries"]
    """), encoding="utf-8")
    run_watch(path)

    def default_runs(ws):
        return [r["run_id"] for r in ws.rows("runs", "stage = 'detect'")
                if r["parameters"].get("method") == "default"]

    with Workspace.open(tmp_path / "ws") as ws, ws.transaction() as txn:
        (killed,) = default_runs(ws)
        txn.delete("runs", "run_id = ?", (killed,))  # as if killed after the sites commit
    resumed = run_watch(path)
    assert not resumed.aois[0].up_to_date
    assert [d.method for d in resumed.aois[0].detections] == ["default", "timeseries"]
    with Workspace.open(tmp_path / "ws") as ws:
        assert len(default_runs(ws)) == 1
    assert run_watch(path).aois[0].up_to_date
