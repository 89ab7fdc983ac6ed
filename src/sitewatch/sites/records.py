"""The records the sites stage makes: a site and its observations, with the geometry helpers
they are built with (a polygon's grid window, a grid-CRS geometry in lon/lat).

Footprints are in the grid CRS (metres); measurements are geodesic (metres, square metres,
degrees).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import rasterio.features
import rasterio.windows
import shapely
from pyproj import Transformer

from sitewatch.sites.lifecycle import Lifecycle
from sitewatch.sites.measure import Measurements
from sitewatch.stack import Grid


@dataclass
class Observation:
    date: str
    phase: str | None
    footprint: shapely.Polygon | shapely.MultiPolygon | None  # grid CRS; None if not yet changed
    area_m2: float
    length_m: float
    width_m: float
    activity: float | None


@dataclass
class Site:
    """One tracked site of an AOI (footprints in the grid CRS, measurements geodesic)."""

    site_id: str
    footprint: shapely.Polygon
    lifecycle: Lifecycle
    measurements: Measurements
    observations: list[Observation] = field(default_factory=list)
    probability: float | None = None  # calibrated, when known at extraction (two-date sites)


def polygon_window(polygon, grid: Grid):
    """The grid window around ``polygon`` (grid CRS), its transform, and the polygon's pixels
    in it as a bool mask: rasterising only there keeps the cost to the polygon's size."""
    window = rasterio.windows.from_bounds(*polygon.bounds, transform=grid.transform)
    window = window.round_offsets().round_lengths()
    window = window.intersection(rasterio.windows.Window(0, 0, grid.width, grid.height))
    transform = rasterio.windows.transform(window, grid.transform)
    shape = (int(window.height), int(window.width))
    inside = rasterio.features.rasterize([polygon], out_shape=shape,
                                         transform=transform).astype(bool)
    return window, transform, inside


def to_lonlat(geometry, epsg: int):
    """A grid-CRS geometry in EPSG:4326 (lon, lat)."""
    transformer = Transformer.from_crs(epsg, 4326, always_xy=True)
    return shapely.transform(geometry, transformer.transform, interleaved=False)
