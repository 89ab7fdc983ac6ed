
import json

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.enums import Resampling

import sitewatch
from conftest import simulated_stack
from sitewatch import SitewatchError, Workspace
from sitewatch.stack import build_stack, from_bbox, from_geojson, grid_for, open_stack
from sitewatch.stack.build import _block_side
from sitewatch.stack.output import CLOUD, NODATA, SHADOW
from sitewatch.stack.resample import SceneReader, reproject_to_grid

OSCD_CITIES = ("aguasclaras", "bercy", "bordeaux", "nantes", "paris", "rennes", "saclay_e")


@pytest.fixture(scope="module")
def oscd_ws(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("oscd-stack")
    sitewatch.ingest([data_dir / "oscd"], root)
    return root


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulated_stack(tmp_path_factory.mktemp("sim"), seed=3, n_dates=6,
                           size_m=(3000, 2400), aoi_name="sim")


def test_grid_is_utm_and_snapped():
    aoi = shapely.box(40.90, 34.36, 40.95, 34.40)
    grid = grid_for(aoi, 10.0)
    assert grid.epsg == 32637
    assert grid.west % 10 == 0 and grid.north % 10 == 0
    south = grid_for(shapely.box(-47.9, -15.9, -47.8, -15.8), 20.0)
    assert south.epsg == 32723 and south.resolution == 20.0
    # neighbouring AOIs share pixel edges
    other = grid_for(shapely.box(40.95, 34.36, 41.00, 34.40), 10.0)
    assert (other.west - grid.west) % 10 == 0


@pytest.mark.parametrize("city", OSCD_CITIES)
def test_every_oscd_city_stacks_onto_a_utm_10m_grid_with_its_labels(oscd_ws, data_dir, city):
    folder = data_dir / "oscd" / city
    result = build_stack(oscd_ws, from_geojson(folder / f"{city}.geojson"),
                         coregistration="none", normalisation="none")
    grid = result.grid
    assert grid.resolution == 10.0 and 32600 < grid.epsg < 32800
    assert len(result.bands) == 13 and len(result.included) == 2
    ds = result.open()
    assert ds.rio.crs.to_epsg() == grid.epsg
    assert ds.reflectance.shape == (2, 13, grid.height, grid.width)
    # every band, 20 and 60 m included, has data on the 10 m grid inside the image
    inside = (ds.mask.isel(time=0) != NODATA).values
    assert inside.mean() > 0.5
    assert np.isfinite(ds.reflectance.isel(time=0).values[:, inside]).all()
    # the label tif has no CRS: it lies on the grid of imgs_1's B02
    b02 = next((folder / "imgs_1").glob("*B02.tif"))
    with rasterio.open(b02) as ref, rasterio.open(folder / "cm" / f"{city}-cm.tif") as cm:
        labels = cm.read(1)
        assert labels.shape == (ref.height, ref.width)
        on_grid = reproject_to_grid(labels, ref.transform, ref.crs, grid, nodata=0)
    assert on_grid.shape == grid.shape
    changed_before = (labels == 2).sum() * 1.0
    changed_after = (on_grid == 2).sum() * 1.0
    assert set(np.unique(on_grid)) <= {0, 1, 2}
    # pixel counts scale with the pixel areas (OSCD's degree pixels are ~10.4 m equal-area)
    assert changed_after == pytest.approx(changed_before, rel=0.25)


def test_simulator_misregistration_recovered(sim):
    _, truth, stack = sim
    applied = {s["datetime"][:10]: s["misregistration_px"]
               for s in truth["sitewatch:scenario"]["scenes"]}
    reference = applied[stack.reference[:10]]
    for outcome in stack.included:
        true = np.subtract(applied[outcome.key[:10]], reference)
        assert outcome.shift_applied or outcome.key == stack.reference
        assert outcome.shift == pytest.approx(tuple(true), abs=0.1), outcome.key


def test_simulator_cloud_mask_matches_truth(sim):
    result, truth, stack = sim
    ds = stack.open()
    grid = stack.grid
    hits = false = missed = 0
    for t, outcome in enumerate(stack.included):
        item = outcome.scene_ids[0]
        with Workspace.open(result.out_dir.parent / "ws") as ws:
            row = ws.rows("scenes", "scene_id = ?", (item,))[0]
        cloud_truth = next(result.out_dir.glob(f"*{row['acquired'][:10].replace('-', '')}"
                                               "/cloud_truth.tif"))
        fake = {"scene_id": item, "bands": [{"name": "truth", "file": str(cloud_truth),
                                             "index": 1, "nodata": None, "dtype": "float32"}]}
        with SceneReader(fake, ["truth"], grid, outcome.applied_shift,
                         Resampling.nearest) as reader:
            labels, _ = reader.read(rasterio.windows.Window(0, 0, grid.width, grid.height))
        true_cloud = labels[0] == 1
        found = ds.mask.isel(time=t).values == CLOUD
        hits += (found & true_cloud).sum()
        false += (found & ~true_cloud).sum()
        missed += (~found & true_cloud).sum()
    precision, recall = hits / (hits + false), hits / (hits + missed)
    print(f"simulator cloud mask: precision {precision:.3f} recall {recall:.3f}")
    assert precision > 0.7 and recall > 0.9  # s2cloudless dilates ~110 m around clouds


def test_stack_reads_back_lazily_with_its_record(sim):
    result, _, stack = sim
    ds = open_stack(stack.path)
    assert ds.reflectance.chunks is not None  # dask-backed: nothing read yet
    assert ds.rio.transform() == stack.grid.transform
    assert list(ds.band.values) == stack.bands
    assert set(np.unique(ds.mask.values)) <= {0, 1, 2, 3}
    assert SHADOW in np.unique(ds.mask.values) or CLOUD in np.unique(ds.mask.values)
    with Workspace.open(result.out_dir.parent / "ws") as ws:
        raster = ws.rows("rasters", "run_id = ?", (stack.run_id,))[0]
        run = ws.rows("runs", "run_id = ?", (stack.run_id,))[0]
        assert ws.rows("aois", "name = ?", ("sim",))
    assert raster["kind"] == "stack" and (ws.root / raster["path"]).is_dir()
    recorded = raster["properties"]["acquisitions"]
    assert [a["shift"] for a in recorded] == [list(a.shift) for a in stack.acquisitions]
    assert any(a["normalisation"] and a["normalisation"]["fits"] for a in recorded)
    assert run["stage"] == "stack" and run["parameters"]["normalisation"] == "irmad"


def test_cloudy_acquisitions_left_out_with_reason(sim):
    result, _, _ = sim
    stack = build_stack(result.out_dir.parent / "ws", from_bbox("40.93,34.38,40.96,34.40", "x"),
                        min_clear_fraction=0.99, normalisation="none")
    excluded = [a for a in stack.acquisitions if not a.included]
    assert excluded and all("clear fraction" in a.reason for a in excluded)
    assert len(stack.open().time) == len(stack.acquisitions) - len(excluded)


def test_xview2_pre_and_post_land_on_one_utm_grid(tmp_path, data_dir):
    sitewatch.ingest([data_dir / "xview2-joplin" / "pre"], tmp_path, date="2011-05-20")
    sitewatch.ingest([data_dir / "xview2-joplin" / "post"], tmp_path, date="2011-05-23")
    with Workspace.open(tmp_path) as ws:
        pre = shapely.union_all([r["geom"] for r in ws.rows("scenes")
                                 if r["acquired"].startswith("2011-05-20")])
        post = shapely.union_all([r["geom"] for r in ws.rows("scenes")
                                  if r["acquired"].startswith("2011-05-23")])
    common = pre.intersection(post)
    stack = build_stack(tmp_path, from_bbox(",".join(map(str, common.bounds)), "joplin"),
                        sensor="unknown", normalisation="histogram")
    assert stack.grid.epsg == 32615 and stack.grid.resolution == 0.6
    assert [len(a.scene_ids) for a in stack.acquisitions] == [4, 6]  # tiles mosaicked per date
    (moving,) = [a for a in stack.acquisitions if a.key != stack.reference]
    print(f"xview2 residual shift of {moving.key} to {stack.reference}: {moving.shift} px "
          f"(confidence {moving.shift_confidence:.2f}, applied {moving.shift_applied})")
    assert all(a.valid_fraction > 0.5 for a in stack.acquisitions)
    assert moving.shift_confidence is not None
    if moving.shift_applied:
        assert np.hypot(*moving.shift) < 20  # a few metres after georeferencing


def test_block_size_follows_the_memory_budget():
    assert _block_side(4, 256) < _block_side(4, 2048)
    side = _block_side(13, 512)
    assert side % 512 == 0 and (side + 128) ** 2 * (2 * 13 + 12) * 12 <= 512 * 2**20 * 1.3


def test_bad_aoi_inputs(sim, tmp_path):
    result, _, _ = sim
    ws = result.out_dir.parent / "ws"
    with pytest.raises(SitewatchError, match="no registered scene covers"):
        build_stack(ws, from_bbox("10,10,10.1,10.1"))
    with pytest.raises(SitewatchError, match="min_lon"):
        from_bbox("1,2,3")
    with pytest.raises(SitewatchError, match="no reference place"), Workspace.open(ws) as w:
        from sitewatch.stack import from_place

        from_place(w, "Atlantis", 1000)
    with pytest.raises(SitewatchError, match="unknown normalisation"):
        build_stack(ws, from_bbox("40.93,34.38,40.96,34.40"), normalisation="magic")
    assert not list((ws / "rasters" / "stacks").glob(".*.tmp"))


@pytest.mark.parametrize(("options", "message"), [
    ({"resolution": 0}, "resolution"), ({"resolution": float("nan")}, "resolution"),
    ({"min_clear_fraction": 2}, "fraction from 0 to 1"), ({"memory_mb": 0}, "memory budget"),
    ({"memory_mb": -5}, "memory budget"), ({"memory_mb": 64}, "at least 256 MB")])
def test_bad_numbers_are_refused_before_anything_is_read(tmp_path, options, message):
    """Issue 21: --res 0, --min-clear 2 and a memory budget of 0 or below were taken."""
    from sitewatch.stack import build_stack, from_bbox

    with pytest.raises(SitewatchError, match=message):
        build_stack(tmp_path / "ws", from_bbox("40.9,34.3,40.95,34.35", "a"), **options)
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize("radius", [float("nan"), float("inf"), 0, -3])
def test_a_place_aoi_needs_a_finite_positive_radius(tmp_path, radius):
    from sitewatch.stack import from_place

    with Workspace.open(tmp_path / "ws", create=True) as ws:
        with pytest.raises(SitewatchError, match="AOI radius"):
            from_place(ws, "anywhere", radius)


def test_an_aoi_and_a_place_together_are_refused(tmp_path):
    """Issue 21: --place used to win silently over --aoi."""
    Workspace.open(tmp_path / "ws", create=True).close()
    with pytest.raises(SitewatchError, match="either --aoi or --place"):
        sitewatch.stack(tmp_path / "ws", aoi="40.9,34.3,40.95,34.35", place="Checkpoint 7")


def test_a_self_intersecting_aoi_is_refused_with_the_reason(tmp_path):
    """Issue 21: a bow-tie AOI used to be stored invalid without a word."""
    path = tmp_path / "bowtie.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [
        [[40.0, 34.0], [40.1, 34.1], [40.1, 34.0], [40.0, 34.1], [40.0, 34.0]]]}))
    with pytest.raises(SitewatchError, match="Self-intersection") as caught:
        from_geojson(path)
    assert str(path) in str(caught.value)


def test_an_unknown_epsg_code_is_refused_before_anything_is_read(tmp_path):
    """Issue 21: --crs EPSG:99999 gave a traceback."""
    Workspace.open(tmp_path / "ws", create=True).close()
    with pytest.raises(SitewatchError, match="EPSG:99999 is not a known CRS"):
        sitewatch.stack(tmp_path / "ws", aoi="40.9,34.3,40.95,34.35", crs="EPSG:99999")


def test_a_grid_whose_stack_cannot_fit_on_the_disk_is_refused_up_front(tmp_path, data_dir):
    """Issue 21: --res 0.001 on a 500 m box started building a 470k x 450k px grid."""
    city = data_dir / "oscd" / "bercy"
    sitewatch.ingest([city / "imgs_1"], tmp_path / "ws")
    aoi = from_geojson(city / "bercy.geojson")
    box = shapely.box(*shapely.Point(aoi.polygon.centroid).buffer(0.003).bounds)
    with pytest.raises(SitewatchError, match=r"px at 0.001 m: .* TB uncompressed") as caught:
        build_stack(tmp_path / "ws", type(aoi)("tiny", box), resolution=0.001)
    assert "use a coarser --res" in str(caught.value)
    assert not list((tmp_path / "ws" / "rasters").glob("**/*.zarr"))


def test_a_deleted_stack_folder_gives_one_line_naming_it(tmp_path, data_dir):
    """Issue 21: detect, track and report gave a FileNotFoundError traceback."""
    import shutil

    city = data_dir / "oscd" / "bercy"
    sitewatch.ingest([city], tmp_path / "ws")
    stack = build_stack(tmp_path / "ws", from_geojson(city / "bercy.geojson"))
    shutil.rmtree(stack.path)
    for command in (lambda: sitewatch.detect(tmp_path / "ws", "bercy"),
                    lambda: sitewatch.track(tmp_path / "ws", "bercy")):
        with pytest.raises(SitewatchError, match="stack recorded in the workspace is missing"):
            command()
