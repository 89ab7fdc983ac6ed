"""Ground reflectance on one date: the background plus seasonal vegetation and the sites.

Vegetated parcels take their green cover for the day of year (linear mixing of field soil
and vegetation). Site elements are painted with anti-aliased coverage, ground-level ones
first, then the shadows of raised ones, then the raised ones themselves. A prism of height
``h`` lit from azimuth ``a`` at elevation ``e`` casts a shadow that is the footprint swept
``h / tan(e)`` metres towards ``a + 180``; the sweep is the union of the footprint, its
translate and the parallelogram each edge traces. Shadows keep the diffuse skylight
(:func:`sitewatch.simulate.spectra.shadow_depth`).
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry.base import BaseGeometry

from .acquisition import SimulatedAcquisition
from .grid import SceneGrid, coverage
from .scenario import Element, Landscape
from .spectra import TEXTURE
from .terrain import Background, paint, supersampling


def shadow_of(footprint: BaseGeometry, dx: float, dy: float) -> BaseGeometry:
    """Ground shadow of a prism over ``footprint`` whose top projects to (+dx, +dy) metres."""
    rings = shapely.get_rings(shapely.get_parts(footprint))
    sweeps = [footprint, affinity.translate(footprint, dx, dy)]
    for ring in rings:
        a = shapely.get_coordinates(ring)
        b = np.roll(a, -1, axis=0)
        d = np.array([dx, dy])
        quads = shapely.polygons(np.stack([a, b, b + d, a + d, a], axis=1))
        sweeps.extend(quads[shapely.area(quads) > 1e-9])
    return shapely.union_all(sweeps).difference(footprint)


def _paint_element(image, element: Element, grid: SceneGrid, spectra, grain, factor) -> None:
    window = grid.window(element.geometry)
    if window is None:
        return
    cover = coverage([element.geometry], grid, factor=factor, window=window)
    rows, cols = window.toslices()
    texture = 1.0 + TEXTURE.get(element.material, 0.0) * grain[rows, cols]
    paint(image[:, rows, cols], cover, spectra[element.material], texture)


def _shade(image, shadow: BaseGeometry, grid: SceneGrid, depth, factor) -> None:
    window = grid.window(shadow)
    if window is None or shadow.is_empty:
        return
    cover = coverage([shadow], grid, factor=factor, window=window)
    rows, cols = window.toslices()
    image[:, rows, cols] *= 1.0 - depth[:, None, None] * cover[None]


def ground_reflectance(
    background: Background,
    landscape: Landscape,
    elements: list[Element],
    acquisition: SimulatedAcquisition,
    grid: SceneGrid,
    spectra: dict[str, np.ndarray],
    depth: np.ndarray,
) -> np.ndarray:
    """Surface reflectance (float32, bands x rows x cols) on one date.

    Parameters
    ----------
    background
        Static background on ``grid``.
    landscape
        The scenario's landscape (for the parcels' seasonal cycles).
    elements
        Site elements present on this date.
    acquisition
        The date's conditions (day of year, sun position).
    grid
        Simulation grid.
    spectra
        Material reflectances at the sensor's bands.
    depth
        Per-band shadow depth.
    """
    image = background.reflectance.copy()
    if background.vegetation_weight.any():
        doy = acquisition.datetime.timetuple().tm_yday
        green = np.array(
            [0.0] + [p.green_fraction(doy) for p in landscape.parcels], dtype=np.float32
        )
        cover = background.vegetation_weight * green[background.parcel_index]
        image += (spectra["vegetation"] - spectra["field_soil"])[:, None, None] * cover[None]

    factor = supersampling(grid)
    length_per_m = 1.0 / math.tan(math.radians(max(acquisition.sun_elevation_deg, 5.0)))
    away = math.radians(acquisition.sun_azimuth_deg + 180.0)
    flat = [e for e in elements if e.height_m <= 0]
    raised = [e for e in elements if e.height_m > 0]
    for element in flat:
        _paint_element(image, element, grid, spectra, background.grain, factor)
    for element in raised:
        reach = element.height_m * length_per_m
        shadow = shadow_of(element.geometry, reach * math.sin(away), reach * math.cos(away))
        _shade(image, shadow, grid, depth, factor)
    for element in raised:
        _paint_element(image, element, grid, spectra, background.grain, factor)
    return image
