"""Scene simulator: realistic multi-date imagery with ground truth, no download needed.

:func:`simulate` writes a time series of Sentinel-2-like (``"s2"``, 13 bands, 10/20/60 m)
or very-high-resolution (``"vhr"``, RGB+NIR, 0.5 m) scenes of the "border-compound"
scenario (a compound built in 2019 near the Al-Qaim / Abu Kamal border crossing, a stable
neighbour and a destroyed building), with the nuisances real imagery has: seasonal fields,
illumination and haze differences, misregistration, clouds and their shadows, swath edges
and noise. It writes COGs, a STAC catalog, the truth as GeoJSON and the reference places.

Example
-------
>>> from sitewatch.simulate import simulate
>>> result = simulate("demo", sensor="s2", seed=0)      # doctest: +SKIP
>>> result.catalog_path                                  # doctest: +SKIP
PosixPath('demo/catalog.json')
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from shapely.geometry import box

from ..errors import SitewatchError
from .acquisition import acquisition_dates, plan_acquisitions
from .generator import EXTENT_M, build_random_scenario, random_dates, scene_centre_local
from .instruments import get_sensor
from .observe import observe
from .render import ground_reflectance
from .scenario import CROSSING_LONLAT, MIN_DATES, LocalFrame, build_scenario, scene_grid
from .spectra import shadow_depth, spectra
from .terrain import render_background
from .writer import (
    LonLat,
    reference_features,
    scene_summaries,
    site_features,
    write_catalog,
    write_geojson,
    write_scene,
)

__all__ = ["SCENARIOS", "SimulationResult", "simulate"]

#: The scenarios :func:`simulate` draws.
SCENARIOS = ("border-compound", "random", "random-decoys")


@dataclass(frozen=True)
class SimulationResult:
    """Where a simulation was written and on which grid.

    Attributes
    ----------
    out_dir
        The output directory.
    catalog_path, truth_path, places_path
        ``catalog.json`` (STAC), ``truth.geojson`` and ``places.geojson`` in ``out_dir``.
    sensor
        "s2" or "vhr".
    dates
        Acquisition times (UTC), in order.
    crs
        CRS of every raster (EPSG:32637).
    transform
        Transform of the finest grid (10 m for s2, 0.5 m for vhr).
    shape
        (rows, cols) of the finest grid.
    item_ids
        STAC item ids, in date order.
    """

    out_dir: Path
    catalog_path: Path
    truth_path: Path
    places_path: Path
    sensor: str
    dates: list[datetime]
    crs: CRS
    transform: Affine
    shape: tuple[int, int]
    item_ids: list[str]


def simulate(
    out_dir: str | os.PathLike,
    *,
    sensor: str = "s2",
    seed: int = 0,
    n_dates: int = 12,
    size_m: tuple[float, float] | None = None,
    scenario: str = "border-compound",
) -> SimulationResult:
    """Simulate a time series of scenes with ground truth and write it to ``out_dir``.

    Parameters
    ----------
    out_dir
        Directory to create (it may exist if empty). Everything is first written to a
        temporary sibling directory, which is renamed into place at the end, so a failed
        run leaves nothing behind.
    sensor
        "s2" (Sentinel-2-like, 13 bands at 10/20/60 m) or "vhr" (red, green, blue, NIR at
        0.5 m).
    seed
        Random seed; the same arguments give identical pixels and truth.
    n_dates
        Number of monthly acquisitions from 2018-09-15 (at least 6).
    size_m
        (width, height) of the scene in metres, rounded up to whole coarsest pixels.
        Default: 8000 x 6000 m for s2 (compound, crossing, towns, river and fields),
        1400 x 900 m for vhr (the three sites); for the random scenarios
        :data:`sitewatch.simulate.generator.EXTENT_M`.
    scenario
        "border-compound" (the demo's), "random" (sites of every type, sizes, shapes,
        grounds and phase dates drawn from ``seed``, with decoys) or "random-decoys" (the
        decoys of "random" and no site): :mod:`sitewatch.simulate.generator`.

    Returns
    -------
    SimulationResult

    Raises
    ------
    SitewatchError
        For an unknown sensor or scenario, bad ``n_dates`` or ``size_m``, or an ``out_dir``
        that exists and is not empty.
    """
    spec = get_sensor(sensor)
    if isinstance(n_dates, bool) or not isinstance(n_dates, int):
        raise SitewatchError(f"n_dates={n_dates!r} must be a whole number")
    target = Path(out_dir).absolute()  # asset links are made relative to absolute paths
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise SitewatchError(
            "output directory exists and is not empty; choose a new one", path=target
        )
    if scenario not in SCENARIOS:
        raise SitewatchError(f"unknown scenario {scenario!r}; choose one of "
                             f"{', '.join(SCENARIOS)}")
    if scenario == "border-compound":
        grid = scene_grid(spec, size_m)
        dates = acquisition_dates(spec, n_dates)
        world = build_scenario(dates, seed)
    else:
        frame = LocalFrame(*CROSSING_LONLAT)
        grid = scene_grid(spec, size_m or EXTENT_M[spec.name],
                          centre=frame.to_scene(scene_centre_local(seed)))
        if n_dates < MIN_DATES:
            raise SitewatchError(f"n_dates={n_dates} is too few for the {scenario} scenario; "
                                 f"use at least {MIN_DATES}")
        dates = random_dates(spec, n_dates, seed)
        extent = frame.to_local(box(*grid.bounds))
        world = build_random_scenario(dates, seed, spec.name, extent,
                                      with_sites=scenario == "random")
    to_lonlat = LonLat(grid)
    centre = box(*grid.bounds).centroid
    centre_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(
        centre.x, centre.y
    )
    acquisitions = plan_acquisitions(spec, grid, centre_lonlat, n_dates, seed, dates)
    wavelengths = [b.wavelength_um for b in spec.bands]
    library, depth = spectra(wavelengths), shadow_depth(wavelengths)
    background = render_background(world.landscape, grid, library, seed)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    )
    try:
        items, fractions = [], []
        for acquisition in acquisitions:
            elements = [e for site in (*world.decoys, *world.sites)
                        for e in site.states[acquisition.index]]
            ground = ground_reflectance(
                background, world.landscape, elements, acquisition, grid, library, depth
            )
            observation = observe(ground, acquisition, spec, grid, library, depth, seed)
            items.append(
                write_scene(
                    staging / acquisition.item_id, observation, acquisition, spec, grid, to_lonlat
                )
            )
            fractions.append((observation.cloud_fraction, observation.nodata_fraction))
        write_catalog(staging, items, spec, seed)
        references = reference_features(world, to_lonlat)
        aoi = {
            "type": "Feature",
            "geometry": to_lonlat(box(*grid.bounds)).__geo_interface__,
            "properties": {"role": "aoi", "name": "scene extent"},
        }
        write_geojson(
            staging / "truth.geojson",
            references + site_features(world, to_lonlat) + [aoi],
            **{
                "sitewatch:scenario": {
                    "name": world.name,
                    "sensor": spec.name,
                    "seed": seed,
                    "crs": f"EPSG:{grid.crs.to_epsg()}",
                    "pixel_size_m": grid.pixel_m,
                    "misregistration_convention": (
                        "pixels of the finest grid, x right, y down; a ground feature "
                        "appears at its true pixel position plus the shift"
                    ),
                    "dates": [a.datetime.isoformat().replace("+00:00", "Z") for a in acquisitions],
                    "scenes": scene_summaries(acquisitions, fractions),
                }
            },
        )
        write_geojson(staging / "places.geojson", references)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SimulationResult(
        out_dir=target,
        catalog_path=target / "catalog.json",
        truth_path=target / "truth.geojson",
        places_path=target / "places.geojson",
        sensor=spec.name,
        dates=list(dates),
        crs=grid.crs,
        transform=grid.transform,
        shape=grid.shape,
        item_ids=[a.item_id for a in acquisitions],
    )
