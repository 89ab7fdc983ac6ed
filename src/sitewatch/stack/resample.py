"""Reading a registered scene onto the analysis grid, one window at a time.

Each band file is wrapped in a GDAL warped VRT (:class:`rasterio.vrt.WarpedVRT`) whose output
grid is the analysis grid, so any input CRS (geographic, UTM, State Plane...) and any band
resolution (Sentinel-2's 10/20/60 m) come out on the same pixels, and only the requested window is
ever warped. A co-registration shift is applied in the same resampling step by offsetting the
output transform, so pixels are interpolated once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject
from rasterio.windows import Window

from sitewatch.errors import SitewatchError
from sitewatch.stack.grid import Grid


def reflectance_scale(dtype: str) -> float:
    """Factor from stored values to reflectance-like 0..1 values.

    Sentinel-2 and most multispectral products store reflectance x 10000 in 16-bit integers;
    8-bit imagery (aerial and VHR RGB) is scaled by 1/255, which gives a brightness on the same
    0..1 scale though not a calibrated reflectance. Floats are taken as reflectance already.
    """
    return {"uint8": 1 / 255, "uint16": 1e-4, "int16": 1e-4}.get(dtype, 1.0)


class SceneReader:
    """Reads the chosen bands of one scene row onto ``grid``; use as a context manager.

    Parameters
    ----------
    scene
        A ``scenes`` row of the workspace (``bands`` records with file, index, nodata).
    band_names
        Bands to read, in output order.
    grid
        The analysis grid.
    shift
        (dx, dy) in grid pixels: a ground feature at reference pixel (row, col) appears in this
        scene at (row + dy, col + dx); reading undoes it.
    resampling
        Bilinear by default (reflectance); use nearest for masks and labels.
    """

    def __init__(self, scene: dict, band_names: Sequence[str], grid: Grid,
                 shift: tuple[float, float] = (0.0, 0.0),
                 resampling: Resampling = Resampling.bilinear):
        by_name = {band["name"]: band for band in scene["bands"]}
        missing = [name for name in band_names if name not in by_name]
        if missing:
            raise SitewatchError(f"scene {scene['scene_id']} has no band(s) {missing}")
        self.scene = scene
        self.bands = [by_name[name] for name in band_names]
        self.grid = grid
        self.shift = shift
        self.resampling = resampling
        self._stack = contextlib.ExitStack()
        self._vrts: list[tuple[WarpedVRT, int, float]] = []

    def __enter__(self) -> SceneReader:
        transform = self.grid.transform @ Affine.translation(*self.shift)
        opened: dict[str, rasterio.DatasetReader] = {}
        try:
            for band in self.bands:
                if band["file"] not in opened:
                    opened[band["file"]] = self._stack.enter_context(rasterio.open(band["file"]))
                src = opened[band["file"]]
                nodata = band.get("nodata")
                nodata = nodata if nodata is not None else src.nodata
                # Without a nodata value, an alpha band is what marks pixels outside the source.
                vrt = self._stack.enter_context(WarpedVRT(
                    src, crs=self.grid.crs, transform=transform, width=self.grid.width,
                    height=self.grid.height, resampling=self.resampling, src_nodata=nodata,
                    add_alpha=nodata is None,
                ))
                self._vrts.append((vrt, band["index"], reflectance_scale(band["dtype"])))
        except rasterio.errors.RasterioIOError as exc:
            self._stack.close()
            raise SitewatchError(f"cannot read scene {self.scene['scene_id']} ({exc}); was a "
                                 "file moved since ingest?", self.scene["source"]) from exc
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Bands in ``window`` as float32 (bands, rows, cols) scaled, NaN where invalid; and the
        validity mask (rows, cols): True where every band has data."""
        out = np.empty((len(self._vrts), int(window.height), int(window.width)), np.float32)
        valid = np.ones(out.shape[1:], bool)
        for i, (vrt, index, scale) in enumerate(self._vrts):
            data = vrt.read(index, window=window, masked=True)
            band_valid = ~np.ma.getmaskarray(data)
            out[i] = np.where(band_valid, data.filled(0).astype(np.float32) * scale, np.nan)
            valid &= band_valid
        out[:, ~valid] = np.nan
        return out, valid

    def read_decimated(self, factor: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole grid at ``factor`` times coarser pixels (average resampling)."""
        height = max(1, self.grid.height // factor)
        width = max(1, self.grid.width // factor)
        out = np.empty((len(self._vrts), height, width), np.float32)
        valid = np.ones((height, width), bool)
        for i, (vrt, index, scale) in enumerate(self._vrts):
            data = vrt.read(index, out_shape=(height, width), masked=True,
                            resampling=Resampling.average)
            band_valid = ~np.ma.getmaskarray(data)
            out[i] = np.where(band_valid, data.filled(0).astype(np.float32) * scale, np.nan)
            valid &= band_valid
        out[:, ~valid] = np.nan
        return out, valid


def reproject_to_grid(array: np.ndarray, transform: Affine, crs, grid: Grid, *,
                      nodata: float | None = None,
                      resampling: Resampling = Resampling.nearest) -> np.ndarray:
    """Bring a 2-D array (labels, masks: nearest by default) from its grid onto ``grid``.

    Pixels of ``grid`` outside the source get ``nodata`` (0 if not given).
    """
    fill = 0 if nodata is None else nodata
    out = np.full(grid.shape, fill, dtype=array.dtype)
    reproject(array, out, src_transform=transform, src_crs=crs, dst_transform=grid.transform,
              dst_crs=grid.crs, resampling=resampling, src_nodata=nodata, dst_nodata=fill)
    return out
