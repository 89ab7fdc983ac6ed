"""Shared fixtures: the real test data in ../shared/data and small synthetic rasters."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

REPO_ROOT = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    return Path(os.environ.get("SITEWATCH_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real datasets; a missing folder fails the run instead of skipping tests."""
    root = _data_root()
    if not (root / "README.md").is_file():
        pytest.fail(f"test data not found at {root}; set SITEWATCH_TEST_DATA", pytrace=False)
    return root


def write_geotiff(path: Path, data: np.ndarray, *, crs: str | None = "EPSG:32637",
                  transform=None, nodata=None, **profile) -> Path:
    """Write ``data`` (bands, rows, cols) as a GeoTIFF; ``crs=None`` writes no georeference."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    kwargs = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                  dtype=data.dtype)
    if crs is not None:
        kwargs.update(crs=crs, transform=transform or from_origin(500_000, 3_800_000, 10, 10))
    if nodata is not None:
        kwargs["nodata"] = nodata
    kwargs.update(profile)
    with rasterio.open(path, "w", **kwargs) as dst:
        dst.write(data)
    return path


def dump_workspace(root: Path) -> list[str]:
    """Every statement needed to rebuild the workspace database: equal dumps, equal content."""
    conn = sqlite3.connect(root / "sitewatch.gpkg")
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def simulated_stack(root: Path, *, seed: int, n_dates: int, size_m: tuple[float, float],
                    aoi_name: str, with_places: bool = False):
    """Simulate an s2 scenario into ``root``, ingest it and stack its whole extent.

    Returns the :class:`~sitewatch.simulate.SimulationResult`, the parsed truth GeoJSON and the
    :class:`~sitewatch.stack.StackResult`; the workspace is ``root / "ws"``.
    """
    import json

    import shapely

    import sitewatch
    from sitewatch.simulate import simulate
    from sitewatch.stack import build_stack, from_bbox

    result = simulate(root / "imagery", sensor="s2", seed=seed, n_dates=n_dates, size_m=size_m)
    sitewatch.ingest([result.catalog_path], root / "ws")
    if with_places:
        sitewatch.import_places(result.places_path, root / "ws")
    truth = json.loads(result.truth_path.read_text())
    aoi = shapely.geometry.shape(next(f["geometry"] for f in truth["features"]
                                      if f["properties"]["role"] == "aoi"))
    stack = build_stack(root / "ws", from_bbox(",".join(map(str, aoi.bounds)), aoi_name))
    return result, truth, stack
