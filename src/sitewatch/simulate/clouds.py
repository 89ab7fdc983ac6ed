"""Cumulus-like clouds and the shadows they cast.

A cloud field is power-law noise (clouds have steep, roughly ``k ** -3`` spectra; Cahalan &
Snider, *Remote Sens. Environ.* 28, 1989) thresholded at the quantile that gives the wanted
cover, with a soft edge, giving a cloud opacity between 0 and 1. The field is interpolated
to the image grid before thresholding, so cloud edges stay smooth at any pixel size.
A cloud at height ``h`` casts its shadow ``h / tan(sun elevation)`` metres away from the
sun, so the shadow opacity at a point is the cloud opacity at that point displaced towards
the sun. The field is made on a coarse grid padded by that displacement, so clouds just
outside the scene still cast shadows into it. The ~1 degree between grid north and true
north is neglected here.
"""

from __future__ import annotations

import math

import numpy as np

from .acquisition import CloudSpec
from .grid import SceneGrid
from .noise import fractal_noise, sample

#: Pixel size (metres) of the grid the cloud field is made on before resampling.
CLOUD_FIELD_PX_M = 20.0

#: Width of the soft cloud edge, in standard deviations of the cloud field.
EDGE_SOFTNESS = 0.3


def cloud_layers(
    spec: CloudSpec,
    sun_azimuth_deg: float,
    sun_elevation_deg: float,
    grid: SceneGrid,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Cloud opacity and cloud-shadow opacity on ``grid`` (float32, 0..1 each).

    Parameters
    ----------
    spec
        Cover fraction and cloud height.
    sun_azimuth_deg, sun_elevation_deg
        Sun position (degrees, azimuth clockwise from north).
    grid
        The image grid.
    rng
        Random generator for the cloud field.
    """
    reach = spec.height_m / math.tan(math.radians(max(sun_elevation_deg, 5.0)))
    pad = reach + 4.0 * CLOUD_FIELD_PX_M
    rows, cols = grid.shape
    height_m, width_m = rows * grid.pixel_m, cols * grid.pixel_m
    coarse_shape = (
        math.ceil((height_m + 2 * pad) / CLOUD_FIELD_PX_M),
        math.ceil((width_m + 2 * pad) / CLOUD_FIELD_PX_M),
    )
    field = fractal_noise(
        coarse_shape, CLOUD_FIELD_PX_M, rng, beta=3.0, min_scale_m=60.0, max_scale_m=6000.0
    )
    p0 = int(pad // CLOUD_FIELD_PX_M)
    inner = field[p0 : coarse_shape[0] - p0, p0 : coarse_shape[1] - p0]
    threshold = np.float32(np.quantile(inner, 1.0 - spec.cover))

    def opacity(offset_m):
        values = sample(field, CLOUD_FIELD_PX_M, grid.shape, grid.pixel_m, offset_m)
        values -= threshold
        values *= 1.0 / EDGE_SOFTNESS
        values += 0.5
        return np.clip(values, 0.0, 1.0, out=values)

    sun = math.radians(sun_azimuth_deg)
    towards_sun = (reach * math.sin(sun), -reach * math.cos(sun))  # (east, south) metres
    cloud = opacity((pad, pad))
    shadow = opacity((pad + towards_sun[0], pad + towards_sun[1]))
    return cloud, shadow
