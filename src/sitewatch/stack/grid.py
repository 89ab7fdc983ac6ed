"""The analysis grid: one metric (UTM) raster grid per AOI.

The CRS is the UTM zone of the AOI centroid (WGS 84, EPSG 326xx north / 327xx south) unless one
is given; the pixel size is the finest resolution the scenes share unless given; the origin is
snapped to a multiple of the pixel size, so the grids of neighbouring AOIs line up pixel for
pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import shapely
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import Polygon

from sitewatch.errors import SitewatchError


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: ``epsg``, pixel ``resolution`` (metres), size and origin."""

    epsg: int
    resolution: float
    width: int
    height: int
    west: float  # metres, left edge
    north: float  # metres, top edge

    @property
    def crs(self) -> CRS:
        return CRS.from_epsg(self.epsg)

    @property
    def transform(self) -> Affine:
        return Affine(self.resolution, 0.0, self.west, 0.0, -self.resolution, self.north)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in metres."""
        return (self.west, self.north - self.height * self.resolution,
                self.west + self.width * self.resolution, self.north)

    def to_dict(self) -> dict:
        return {"epsg": self.epsg, "resolution": self.resolution, "width": self.width,
                "height": self.height, "west": self.west, "north": self.north}


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 UTM zone holding (lon, lat), degrees."""
    zone = min(60, int((lon + 180.0) // 6.0) + 1)
    return (32600 if lat >= 0 else 32700) + zone


def grid_for(aoi: Polygon, resolution: float, epsg: int | None = None) -> Grid:
    """The snapped grid covering ``aoi`` (lon/lat polygon) at ``resolution`` metres."""
    if resolution <= 0:
        raise SitewatchError(f"pixel size must be positive metres, got {resolution}")
    centroid = aoi.centroid
    epsg = epsg or utm_epsg(centroid.x, centroid.y)
    crs = CRS.from_epsg(epsg)
    if not crs.is_projected:
        raise SitewatchError(f"EPSG:{epsg} is not a projected (metric) CRS; give a UTM zone")
    to_grid = Transformer.from_crs(4326, crs, always_xy=True).transform
    west, south, east, north = shapely.transform(aoi.segmentize(0.001), to_grid,
                                                interleaved=False).bounds
    west = math.floor(west / resolution) * resolution
    north = math.ceil(north / resolution) * resolution
    east = math.ceil(east / resolution) * resolution
    south = math.floor(south / resolution) * resolution
    width = round((east - west) / resolution)
    height = round((north - south) / resolution)
    return Grid(epsg, float(resolution), width, height, float(west), float(north))
