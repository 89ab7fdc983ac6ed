"""Tests of the scene simulator: reproducibility, geometry of the truth as seen in the pixels,
misregistration, cloud truth, the STAC catalog and the errors users can hit."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pystac
import pytest
import rasterio
import shapely
from pyproj import Geod, Transformer
from pystac.extensions.projection import ProjectionExtension
from scipy import ndimage

from sitewatch.errors import SitewatchError
from sitewatch.simulate import SimulationResult, simulate

S2_SIZE = (2400.0, 1800.0)
VHR_SIZE = (400.0, 400.0)
N_DATES = 6


@pytest.fixture(scope="module")
def s2(tmp_path_factory) -> SimulationResult:
    return simulate(
        tmp_path_factory.mktemp("s2") / "scenes",
        sensor="s2",
        seed=3,
        n_dates=N_DATES,
        size_m=S2_SIZE,
    )


@pytest.fixture(scope="module")
def vhr(tmp_path_factory) -> SimulationResult:
    return simulate(
        tmp_path_factory.mktemp("vhr") / "scenes",
        sensor="vhr",
        seed=1,
        n_dates=N_DATES,
        size_m=VHR_SIZE,
    )


def read(result: SimulationResult, item_id: str, name: str) -> np.ndarray:
    """All bands of one file of one scene, as stored (bands, rows, cols)."""
    with rasterio.open(result.out_dir / item_id / f"{name}.tif") as src:
        return src.read()


def reflectance(result: SimulationResult, item_id: str, name: str) -> np.ndarray:
    """All bands of one file of one scene, as float reflectance (bands, rows, cols)."""
    return read(result, item_id, name).astype(np.float64) / 10000.0


def scenario(result: SimulationResult) -> dict:
    return json.loads(result.truth_path.read_text())["sitewatch:scenario"]


def features(result: SimulationResult, role: str) -> list[dict]:
    truth = json.loads(result.truth_path.read_text())
    return [f for f in truth["features"] if f["properties"]["role"] == role]


def phase_correlation(reference: np.ndarray, moving: np.ndarray, upsample: int = 20):
    """Shift (dx, dy) of ``moving`` relative to ``reference`` in pixels, x right, y down.

    Phase correlation (Kuglin & Hines 1975) refined by a matrix-multiply DFT of the
    cross-power spectrum around the integer peak (Guizar-Sicairos et al., Opt. Lett. 33, 2008).
    """
    window = np.outer(np.hanning(reference.shape[0]), np.hanning(reference.shape[1]))
    f_ref = np.fft.fft2((reference - reference.mean()) * window)
    f_mov = np.fft.fft2((moving - moving.mean()) * window)
    cross = f_mov * np.conj(f_ref)
    cross /= np.maximum(np.abs(cross), 1e-12)
    surface = np.abs(np.fft.ifft2(cross))
    peak = np.array(np.unravel_index(np.argmax(surface), surface.shape), dtype=float)
    size = np.array(surface.shape)
    peak[peak > size // 2] -= size[peak > size // 2]

    span = 3.0  # pixels searched around the integer peak
    offsets = np.arange(-span, span + 1.0 / upsample, 1.0 / upsample)
    kernels = []
    for axis in (0, 1):
        freq = np.fft.fftfreq(size[axis])
        kernels.append(np.exp(2j * np.pi * np.outer(peak[axis] + offsets, freq)))
    fine = np.abs(kernels[0] @ cross @ kernels[1].T)
    r, c = np.unravel_index(np.argmax(fine), fine.shape)
    return peak[1] + offsets[c], peak[0] + offsets[r]


def test_same_seed_same_scenes_other_seed_differs(tmp_path):
    kwargs = dict(sensor="s2", n_dates=N_DATES, size_m=(1200.0, 1200.0))
    first = simulate(tmp_path / "a", seed=7, **kwargs)
    again = simulate(tmp_path / "b", seed=7, **kwargs)
    other = simulate(tmp_path / "c", seed=8, **kwargs)
    for item_id in first.item_ids:
        for band in ("B02", "B08", "B11", "cloud_truth"):
            np.testing.assert_array_equal(read(first, item_id, band), read(again, item_id, band))
    assert first.truth_path.read_text() == again.truth_path.read_text()
    last = first.item_ids[-1]
    assert not np.array_equal(read(first, last, "B04"), read(other, last, "B04"))
    assert first.truth_path.read_text() != other.truth_path.read_text()


def test_compound_measured_from_vhr_pixels(vhr):
    scenes = scenario(vhr)["scenes"]
    first, last = scenes[0], scenes[-1]
    assert last["cloud_fraction"] == 0 and last["nodata_fraction"] == 0
    before = reflectance(vhr, first["item_id"], "image")
    after = reflectance(vhr, last["item_id"], "image")
    dx, dy = last["misregistration_px"]
    after = ndimage.shift(after, (0, -dy, -dx), order=1, mode="nearest")  # co-register
    ratio = np.log(np.maximum(after, 1e-4) / np.maximum(before, 1e-4))
    ratio -= np.median(ratio, axis=(1, 2), keepdims=True)  # radiometric normalisation
    changed = ndimage.binary_opening(np.abs(ratio).max(axis=0) > 0.15, iterations=2)
    objects, count = ndimage.label(changed)
    assert count >= 1
    largest = objects == 1 + np.argmax(ndimage.sum(changed, objects, range(1, count + 1)))
    rows, cols = np.nonzero(ndimage.binary_fill_holes(largest))
    x, y = vhr.transform @ (cols + 0.5, rows + 0.5)
    rect = shapely.minimum_rotated_rectangle(shapely.multipoints(np.column_stack([x, y])))
    corners = shapely.get_coordinates(rect)[:4]
    sides = sorted(np.hypot(*(np.roll(corners, -1, axis=0) - corners).T)[:2])
    width, length = sides

    compound = next(
        f for f in features(vhr, "site") if f["properties"]["type"] == "new_construction"
    )["properties"]
    assert (compound["length_m"], compound["width_m"]) == (270.0, 165.0)
    assert length == pytest.approx(270.0, rel=0.05)
    assert width == pytest.approx(165.0, rel=0.05)

    to_lonlat = Transformer.from_crs(vhr.crs, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(rect.centroid.x, rect.centroid.y)
    crossing = next(
        f for f in features(vhr, "place") if f["properties"]["kind"] == "border crossing"
    )["geometry"]["coordinates"]
    azimuth, _, distance = Geod(ellps="WGS84").inv(crossing[0], crossing[1], lon, lat)
    assert distance == pytest.approx(2600.0, abs=100.0)
    assert azimuth % 360.0 == pytest.approx(270.0, abs=5.0)


def test_recorded_misregistration_is_applied(s2):
    scenes = scenario(s2)["scenes"]
    reference = reflectance(s2, scenes[0]["item_id"], "B08")[0]
    clear = [s for s in scenes[1:] if s["cloud_fraction"] == 0 and s["nodata_fraction"] == 0]
    assert clear
    for scene in clear:
        moving = reflectance(s2, scene["item_id"], "B08")[0]
        measured = phase_correlation(reference, moving)
        assert measured == pytest.approx(scene["misregistration_px"], abs=0.1)
    assert scenes[0]["misregistration_px"] == [0.0, 0.0]
    assert any(np.hypot(*s["misregistration_px"]) > 0.2 for s in scenes[1:])


def test_cloud_truth_marks_bright_clouds_and_dark_shadows(s2):
    scenes = scenario(s2)["scenes"]
    reference = scenes[0]["item_id"]
    cloudy = [s for s in scenes if s["cloud_fraction"] > 0]
    assert cloudy
    for scene in cloudy:
        truth = read(s2, scene["item_id"], "cloud_truth")[0]
        imaged = read(s2, scene["item_id"], "B02")[0] > 0
        blue = reflectance(s2, scene["item_id"], "B02")[0] - reflectance(s2, reference, "B02")[0]
        nir = reflectance(s2, scene["item_id"], "B08")[0] - reflectance(s2, reference, "B08")[0]
        cloud, shadow, clear = (imaged & (truth == k) for k in (1, 2, 0))
        assert cloud.mean() == pytest.approx(scene["cloud_fraction"] * imaged.mean(), abs=0.01)
        assert np.median(blue[cloud]) > 0.15
        assert np.median(np.abs(blue[clear])) < 0.06
        assert np.mean(blue[clear] > 0.15) < 0.02
        if shadow.sum() > 100:
            assert np.median(nir[shadow]) < -0.08


def test_stac_catalog_is_complete_and_consistent(s2):
    catalog = pystac.Catalog.from_file(str(s2.catalog_path))
    items = sorted(catalog.get_items(recursive=True), key=lambda item: item.datetime)
    assert [item.id for item in items] == s2.item_ids
    assert [item.datetime for item in items] == s2.dates
    rows, cols = s2.shape
    for item, scene in zip(items, scenario(s2)["scenes"], strict=True):
        epsg = ProjectionExtension.ext(item).epsg
        assert epsg == 32637
        raw = json.loads((s2.out_dir / item.id / f"{item.id}.json").read_text())
        assert raw["properties"]["proj:epsg"] == epsg  # also for readers of projection v1
        assert item.properties["platform"] == "sentinel-2a"
        assert item.properties["sitewatch:simulated"] is True
        assert item.properties["sitewatch:misregistration_px"] == scene["misregistration_px"]
        assert item.properties["eo:cloud_cover"] == pytest.approx(
            100 * scene["cloud_fraction"], abs=0.01
        )
        assert set(item.assets) == {
            b for b in ("B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B10 B11 B12 cloud_truth").split()
        }
        for key, asset in item.assets.items():
            with rasterio.open(asset.get_absolute_href()) as src:
                assert src.crs.to_epsg() == epsg
                assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
                assert src.transform.c == s2.transform.c and src.transform.f == s2.transform.f
                if key == "cloud_truth":
                    assert asset.roles == ["truth"] and src.transform == s2.transform
                    continue
                gsd = asset.extra_fields["gsd"]
                assert asset.extra_fields["eo:bands"][0]["name"] == key == src.descriptions[0]
                assert src.nodata == 0 and src.dtypes[0] == "uint16"
                assert src.transform.a == gsd and src.shape == (rows * 10 // gsd, cols * 10 // gsd)
    assert {10.0, 20.0, 60.0} == {
        a.extra_fields["gsd"] for a in items[0].assets.values() if "gsd" in a.extra_fields
    }


def test_truth_and_places_geojson(s2):
    truth = json.loads(s2.truth_path.read_text())
    roles = {f["properties"]["role"] for f in truth["features"]}
    assert roles == {"site", "place", "border", "aoi"}
    types = {
        f["properties"]["type"] for f in truth["features"] if f["properties"]["role"] == "site"
    }
    assert types == {"new_construction", "stable_structure", "destruction"}
    for site in features(s2, "site"):
        phases = site["properties"]["phases"]
        assert phases[-1]["end"] is None
        assert all(a["end"] == b["start"] for a, b in itertools.pairwise(phases))
    destroyed = next(f for f in features(s2, "site") if f["properties"]["type"] == "destruction")[
        "properties"
    ]
    assert [p["phase"] for p in destroyed["phases"]] == [
        "intact",
        "destroyed",
        "flattened",
        "debris_removed",
    ]
    border = features(s2, "border")[0]
    assert border["geometry"]["type"] == "LineString"
    assert {border["properties"]["left"], border["properties"]["right"]} == {"Iraq", "Syria"}
    places = json.loads(s2.places_path.read_text())["features"]
    assert {f["properties"]["role"] for f in places} == {"place", "border"}
    assert scenario(s2)["crs"] == "EPSG:32637"


def test_unknown_sensor_is_a_user_error(tmp_path):
    with pytest.raises(SitewatchError, match="unknown sensor 'x'; choose s2 or vhr"):
        simulate(tmp_path / "out", sensor="x")
    assert not (tmp_path / "out").exists()


def test_existing_output_is_never_overwritten(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(SitewatchError, match="not empty"):
        simulate(target, sensor="s2", n_dates=N_DATES, size_m=(600.0, 600.0))
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_too_few_dates_is_a_user_error(tmp_path):
    with pytest.raises(SitewatchError, match="n_dates"):
        simulate(tmp_path / "out", n_dates=3, size_m=(600.0, 600.0))
    assert list(tmp_path.iterdir()) == []


def test_a_relative_output_folder_gives_a_catalog_that_ingests(tmp_path, monkeypatch):
    """Asset links were made relative to the temporary staging folder when the output folder
    was given as a relative path, so the catalog pointed into a folder that no longer exists."""
    import sitewatch

    monkeypatch.chdir(tmp_path)
    result = simulate("relative", sensor="s2", seed=2, n_dates=6, size_m=(600, 600))
    item = json.loads(next(result.out_dir.glob("sim-*/sim-*.json")).read_text())
    assert item["assets"]["B01"]["href"] == "./B01.tif"
    assert len(sitewatch.ingest(["relative/catalog.json"], tmp_path / "ws").scene_ids) == 6
