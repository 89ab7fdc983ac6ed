"""The warper-free read of grid-aligned bands agrees with GDAL's warped VRT."""

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from conftest import write_geotiff
from sitewatch.stack.grid import Grid
from sitewatch.stack.resample import SceneReader


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[0:120, 0:140]
    data = (2000 + 800 * np.sin(rows / 7) * np.cos(cols / 11)
            + rng.normal(0, 50, rows.shape)).astype(np.uint16)
    data[40:45, 60:70] = 0  # a nodata hole
    path = write_geotiff(tmp_path / "scene.tif", data, nodata=0)
    return {"scene_id": "s", "bands": [{"name": "B08", "file": str(path), "index": 1,
                                        "nodata": 0, "dtype": "uint16"}]}


def _warped(scene, grid, shift, resampling, window):
    with rasterio.open(scene["bands"][0]["file"]) as src, WarpedVRT(
            src, crs=grid.crs, transform=grid.transform @ Affine.translation(*shift),
            width=grid.width, height=grid.height, resampling=resampling, src_nodata=0) as vrt:
        data = vrt.read(1, window=window, masked=True)
    return data.filled(0).astype(np.float32) * 1e-4, ~np.ma.getmaskarray(data)


# The scene's origin is (500000, 3800000) at 10 m; this grid starts 3 px right and 5 px down of
# it and runs past its right edge, so windows hold pixels outside the file.
GRID = Grid(epsg=32637, resolution=10.0, width=150, height=100, west=500_030.0,
            north=3_799_950.0)


@pytest.mark.parametrize("shift", [(0.0, 0.0), (0.37, -1.62), (-2.0, 3.0)])
@pytest.mark.parametrize("resampling", [Resampling.bilinear, Resampling.nearest])
def test_direct_read_matches_the_warper(scene, shift, resampling):
    window = Window(20, 10, 125, 80)
    with SceneReader(scene, ["B08"], GRID, shift, resampling) as reader:
        assert reader._bands[0][3] is not None  # the warper-free path is the one tested
        data, valid = reader.read(window)
    expected, expected_valid = _warped(scene, GRID, shift, resampling, window)
    # Identical validity except on the rim of invalid areas, where GDAL keeps pixels with a
    # partly valid bilinear neighbourhood that the direct read leaves out.
    assert not (valid & ~expected_valid).any()
    assert (expected_valid & ~valid).sum() <= 0.03 * valid.size
    assert valid.sum() > 0.8 * (window.width - 7) * window.height
    np.testing.assert_allclose(data[0][valid], expected[valid], atol=2e-4)
    assert np.isnan(data[0][~valid]).all()


@pytest.mark.parametrize("west", [500_100.0, 500_300.0])  # inside the file; past its edge
def test_decimated_read_is_the_block_average(scene, west):
    grid = Grid(epsg=32637, resolution=10.0, width=120, height=100, west=west,
                north=3_799_900.0)
    with SceneReader(scene, ["B08"], grid) as reader:
        data, valid = reader.read_decimated(4)
        full, full_valid = reader.read(Window(0, 0, grid.width, grid.height))
    assert data.shape == (1, 25, 30)
    blocks = full[0].reshape(25, 4, 30, 4)
    any_valid = full_valid.reshape(25, 4, 30, 4).any(axis=(1, 3))
    assert any_valid.mean() > 0.9
    np.testing.assert_array_equal(valid, any_valid)  # a bin is valid with one valid pixel
    counts = np.isfinite(blocks).sum(axis=(1, 3))
    expected = np.nansum(blocks, axis=(1, 3)) / np.maximum(counts, 1)
    np.testing.assert_allclose(data[0][valid], expected[valid], atol=1e-6)


def test_a_window_outside_the_file_is_all_invalid(scene):
    with SceneReader(scene, ["B08"], GRID) as reader:
        data, valid = reader.read(Window(140, 0, 10, 20))  # the grid runs past the file
    assert data.shape == (1, 20, 10) and not valid.any() and np.isnan(data).all()


def test_reprojected_band_still_goes_through_the_warper(scene):
    grid = Grid(epsg=32638, resolution=10.0, width=50, height=50, west=-100_000.0,
                north=3_800_000.0)
    with SceneReader(scene, ["B08"], grid) as reader:
        assert reader._bands[0][3] is None


def test_bands_of_one_file_read_together_match_band_by_band(tmp_path):
    rng = np.random.default_rng(5)
    data = rng.integers(500, 4000, (3, 100, 120)).astype(np.uint16)
    data[1, 10:20, 30:40] = 0  # nodata in one band only
    path = write_geotiff(tmp_path / "three.tif", data, nodata=0, interleave="pixel",
                         tiled=True, blockxsize=32, blockysize=32)
    scene = {"scene_id": "t", "bands": [{"name": n, "file": str(path), "index": i + 1,
                                         "nodata": 0, "dtype": "uint16"}
                                        for i, n in enumerate(("B02", "B03", "B04"))]}
    grid = Grid(epsg=32637, resolution=10.0, width=96, height=80, west=500_040.0,
                north=3_799_900.0)
    with SceneReader(scene, ["B02", "B03", "B04"], grid, (0.4, 0.0)) as reader:
        together, valid = reader.read(Window(0, 0, 96, 80))
    for i, name in enumerate(("B02", "B03", "B04")):
        one = {"scene_id": "t", "bands": [scene["bands"][i]]}
        with SceneReader(one, [name], grid, (0.4, 0.0)) as reader:
            alone, alone_valid = reader.read(Window(0, 0, 96, 80))
        assert not (valid & ~alone_valid).any()
        np.testing.assert_allclose(together[i][valid], alone[0][valid], rtol=1e-6)
    assert not valid[9:21, 25:36].all()  # band B03's hole is invalid for every band
    with SceneReader(scene, ["B02", "B03", "B04"], grid, (1.0, 0.0)) as reader:
        whole, _ = reader.read(Window(0, 0, 96, 80))
        coarse, coarse_valid = reader.read_decimated(4)
    blocks = whole.reshape(3, 20, 4, 24, 4)
    counts = np.isfinite(blocks).sum(axis=(2, 4))
    np.testing.assert_array_equal(coarse_valid, counts[0] > 0)
    expected = np.nansum(blocks, axis=(2, 4)) / np.maximum(counts, 1)
    np.testing.assert_allclose(coarse[:, coarse_valid], expected[:, coarse_valid], atol=1e-6)


def test_a_row_of_overlapping_windows_decodes_each_block_once(tmp_path, monkeypatch):
    """Tiles read west to east through one reader share the blocks they overlap, and read the
    same pixels as fresh readers."""
    from sitewatch.stack import resample

    rng = np.random.default_rng(4)
    data = rng.integers(1, 10000, (2, 120, 200)).astype(np.uint16)
    path = write_geotiff(tmp_path / "tiled.tif", data, nodata=0, tiled=True, blockxsize=32,
                         blockysize=32)
    scene = {"scene_id": "t", "bands": [
        {"name": name, "file": str(path), "index": i, "nodata": 0, "dtype": "uint16"}
        for i, name in enumerate(["B04", "B08"], 1)]}
    grid = Grid(epsg=32637, resolution=10.0, width=200, height=120, west=500_000.0,
                north=3_800_000.0)
    # 20 px overlaps, the last window past the edge
    windows = [Window(col, 20, 60, 70) for col in range(0, 161, 40)]
    decoded = []
    original = resample.BlockCache.put

    def counting_put(cache, key, block):
        decoded.append(key[2:])
        original(cache, key, block)

    monkeypatch.setattr(resample.BlockCache, "put", counting_put)
    with SceneReader(scene, ["B04", "B08"], grid) as reader:
        swept = [reader.read(window) for window in windows]
    assert len(decoded) == len(set(decoded))  # no block decoded twice
    assert len(set(decoded)) == 3 * 7  # block rows 0..2 x block columns 0..6
    for window, (values, valid) in zip(windows, swept, strict=True):
        with SceneReader(scene, ["B04", "B08"], grid) as fresh:
            expected, expected_valid = fresh.read(window)
        np.testing.assert_array_equal(valid, expected_valid)
        np.testing.assert_array_equal(values, expected)
        inside = data[:, 20:90, window.col_off:window.col_off + 60] * 1e-4
        assert valid[:, :inside.shape[2]].all() and not valid[:, inside.shape[2]:].any()
        np.testing.assert_allclose(values[:, :, :inside.shape[2]], inside, rtol=1e-6)


def test_reserved_windows_read_column_by_column_decode_each_block_once(tmp_path, monkeypatch):
    from sitewatch.stack import resample

    data = np.arange(1, 1 + 160 * 200, dtype=np.uint16).reshape(1, 160, 200)
    path = write_geotiff(tmp_path / "tiled.tif", data, nodata=0, tiled=True, blockxsize=32,
                         blockysize=32)
    scene = {"scene_id": "t", "bands": [{"name": "B08", "file": str(path), "index": 1,
                                         "nodata": 0, "dtype": "uint16"}]}
    grid = Grid(epsg=32637, resolution=10.0, width=200, height=160, west=500_000.0,
                north=3_800_000.0)
    # two rows of overlapping windows, read column by column (north, then south)
    windows = [Window(col, row, 60, 70) for col in range(0, 121, 40) for row in (0, 50)]
    decoded = []
    original = resample.BlockCache.put
    monkeypatch.setattr(resample.BlockCache, "put",
                        lambda cache, key, block: (decoded.append(key), original(cache, key,
                                                                                  block)))
    with SceneReader(scene, ["B08"], grid) as reader:
        for col in range(0, 121, 40):
            reader.reserve(Window(col, 0, 60, 120))  # each column's union
        for window in windows:
            values, _ = reader.read(window)
            rows = slice(window.row_off, window.row_off + 70)
            cols = slice(window.col_off, window.col_off + 60)
            np.testing.assert_allclose(values[0], data[0, rows, cols] * 1e-4, rtol=1e-6)
    assert len(decoded) == len(set(decoded)) == 4 * 6  # block rows 0..3 x columns 0..5
