"""The static background: desert, river, fields, towns and roads as reflectance on a grid.

The desert mixes bright sand and darker gravel (the mix set by a low-frequency field) under
a multiplicative brightness texture: multi-scale power-law noise, transverse dune ridges
(140 m wavelength, crests running 30 deg east of north, only where there is sand) and a
pixel-scale grain. Landscape layers and vegetated parcels are painted over it with their
anti-aliased pixel coverage, so the background reflectance of a pixel is a linear mixture
of materials (the standard linear mixing model; Keshava & Mustard, *IEEE Signal Process.
Mag.* 19(1), 2002).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grid import SceneGrid, coverage, labels
from .noise import fractal_noise, rng_for
from .scenario import Landscape
from .spectra import TEXTURE

#: Dune wavelength (m) and crest azimuth (degrees from north).
DUNE_WAVELENGTH_M = 140.0
DUNE_CREST_DEG = 30.0


@dataclass(frozen=True)
class Background:
    """What stays the same from date to date, on the simulation grid.

    Attributes
    ----------
    reflectance
        Background reflectance with vegetation at zero cover, float32 (bands, rows, cols).
    vegetation_weight
        Fraction of each pixel that is vegetated parcel, times its density (0..1), float32.
    parcel_index
        Index into the landscape's parcels, plus one (0: no parcel), int32.
    grain
        Unit-variance pixel-scale noise used to texture painted materials, float32.
    """

    reflectance: np.ndarray
    vegetation_weight: np.ndarray
    parcel_index: np.ndarray
    grain: np.ndarray


def supersampling(grid: SceneGrid) -> int:
    """Sub-pixels per side when rasterising: about 2 m sub-pixels, at least 2."""
    return max(2, round(grid.pixel_m / 2.0))


def desert(grid: SceneGrid, spectra: dict[str, np.ndarray], rng: np.random.Generator):
    """Desert reflectance (bands, rows, cols) and the grain field, both float32."""
    px = grid.pixel_m
    rows, cols = grid.shape
    sandiness = fractal_noise(grid.shape, px, rng, beta=3.0, min_scale_m=300.0, max_scale_m=8000.0)
    sand = 1.0 / (1.0 + np.exp(-2.5 * (sandiness + 0.3)))
    relief = fractal_noise(grid.shape, px, rng, beta=2.0, max_scale_m=2000.0)
    grain = fractal_noise(grid.shape, px, rng, beta=1.0, max_scale_m=max(8.0, 4 * px))

    east = (np.arange(cols, dtype=np.float32) + 0.5) * px
    north = -(np.arange(rows, dtype=np.float32) + 0.5) * px
    normal = np.radians(DUNE_CREST_DEG + 90.0)
    across = east[None, :] * np.sin(normal) + north[:, None] * np.cos(normal)
    dunes = 1.0 + 0.05 * sand * np.sin(2 * np.pi * across / DUNE_WAVELENGTH_M + 2.0 * sandiness)
    brightness = np.exp(0.06 * relief) * dunes * (1.0 + 0.03 * grain)

    mix = (
        sand[None] * spectra["sand"][:, None, None]
        + (1.0 - sand[None]) * spectra["gravel"][:, None, None]
    )
    return (mix * brightness[None]).astype(np.float32), grain


def paint(
    image: np.ndarray, cover: np.ndarray, spectrum: np.ndarray, texture: np.ndarray | float = 1.0
) -> None:
    """Mix a material into ``image`` in place: ``(1 - cover) * image + cover * spectrum``.

    ``image`` is (bands, rows, cols); ``cover`` and ``texture`` broadcast over the bands.
    """
    image *= 1.0 - cover[None]
    image += (cover * texture)[None] * spectrum[:, None, None]


def render_background(
    landscape: Landscape, grid: SceneGrid, spectra: dict[str, np.ndarray], seed: int
) -> Background:
    """Rasterise the static landscape onto ``grid``.

    Parameters
    ----------
    landscape
        The scenario's static landscape.
    grid
        Simulation grid.
    spectra
        Material reflectances at the sensor's bands.
    seed
        Seed of the simulation.
    """
    rng = rng_for(seed, "terrain")
    image, grain = desert(grid, spectra, rng)
    factor = supersampling(grid)

    density = np.clip(
        0.8 + 0.2 * fractal_noise(grid.shape, grid.pixel_m, rng, beta=2.0, max_scale_m=300.0),
        0.0,
        1.0,
    )
    parcel_cover = coverage([p.geometry for p in landscape.parcels], grid, factor=factor)
    soil_texture = 1.0 + 0.05 * grain
    paint(image, parcel_cover, spectra["field_soil"], soil_texture)
    vegetation_weight = (parcel_cover * density * soil_texture).astype(np.float32)
    parcel_index = labels(((p.geometry, i + 1) for i, p in enumerate(landscape.parcels)), grid)

    for material, geoms in landscape.layers:
        cover = coverage(geoms, grid, factor=factor)
        paint(image, cover, spectra[material], 1.0 + TEXTURE.get(material, 0.0) * grain)
        vegetation_weight *= 1.0 - cover
    return Background(image, vegetation_weight, parcel_index, grain)
