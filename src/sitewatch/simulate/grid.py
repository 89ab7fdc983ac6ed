"""The simulation grid and anti-aliased rasterisation of vector shapes onto it.

Shapes are rasterised by supersampling: each pixel is split into ``factor x factor``
sub-pixels, the shape is burned in at that resolution (pixel-centre rule) and the result is
block-averaged, which gives the fraction of each pixel the shape covers. Features narrower
than a pixel (a 3 m wall on a 10 m grid) therefore still leave a proportional trace, as they
do in a real sensor's point-spread function.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio import features
from rasterio.crs import CRS
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry


@dataclass(frozen=True)
class SceneGrid:
    """A north-up raster grid.

    Attributes
    ----------
    crs
        Coordinate reference system of the grid (projected, metres).
    transform
        Affine transform from (col, row) to (x, y) of pixel corners.
    shape
        (rows, cols).
    """

    crs: CRS
    transform: Affine
    shape: tuple[int, int]

    @property
    def pixel_m(self) -> float:
        """Pixel size in metres."""
        return self.transform.a

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        left, top = self.transform.c, self.transform.f
        rows, cols = self.shape
        return left, top - rows * self.pixel_m, left + cols * self.pixel_m, top

    def window(self, geom: BaseGeometry, margin_px: int = 1) -> Window | None:
        """The pixel window covering ``geom`` plus a margin, clipped to the grid, or None."""
        minx, miny, maxx, maxy = geom.bounds
        col0, row0 = ~self.transform @ (minx, maxy)
        col1, row1 = ~self.transform @ (maxx, miny)
        c0 = max(math.floor(col0) - margin_px, 0)
        r0 = max(math.floor(row0) - margin_px, 0)
        c1 = min(math.ceil(col1) + margin_px, self.shape[1])
        r1 = min(math.ceil(row1) + margin_px, self.shape[0])
        if c1 <= c0 or r1 <= r0:
            return None
        return Window(c0, r0, c1 - c0, r1 - r0)


def coverage(
    geoms: Iterable[BaseGeometry],
    grid: SceneGrid,
    *,
    factor: int = 4,
    window: Window | None = None,
) -> np.ndarray:
    """Fraction (0..1) of each pixel covered by the union of ``geoms``.

    Parameters
    ----------
    geoms
        Polygons in the grid's CRS.
    grid
        The target grid.
    factor
        Sub-pixels per pixel side.
    window
        Restrict the output to this window of the grid (default: the whole grid).

    Returns
    -------
    numpy.ndarray
        float32 array of the window's (or grid's) shape.
    """
    if window is None:
        window = Window(0, 0, grid.shape[1], grid.shape[0])
    rows, cols = int(window.height), int(window.width)
    shapes = [(g, 1) for g in geoms if not g.is_empty]
    if not shapes:
        return np.zeros((rows, cols), dtype=np.float32)
    transform = grid.transform @ Affine.translation(window.col_off, window.row_off)
    fine = features.rasterize(
        shapes,
        out_shape=(rows * factor, cols * factor),
        transform=transform @ Affine.scale(1.0 / factor),
        fill=0,
        dtype="uint8",
    )
    return fine.reshape(rows, factor, cols, factor).mean(axis=(1, 3), dtype=np.float32)


def labels(pairs: Iterable[tuple[BaseGeometry, int]], grid: SceneGrid) -> np.ndarray:
    """Integer label of the shape touching each pixel (0 where none), int32 of grid shape."""
    shapes = list(pairs)
    if not shapes:
        return np.zeros(grid.shape, dtype=np.int32)
    return features.rasterize(
        shapes,
        out_shape=grid.shape,
        transform=grid.transform,
        fill=0,
        all_touched=True,
        dtype="int32",
    )
