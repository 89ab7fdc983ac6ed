"""Writing a simulation to disk: Cloud-Optimized GeoTIFFs, a STAC catalog and GeoJSON truth.

COGs are written with GDAL's COG driver (DEFLATE, horizontal predictor, 512 px tiles,
overviews averaged for reflectance and nearest for classes). The catalog follows STAC 1.x
with the projection, EO and view extensions; GeoJSON follows RFC 7946 (lon/lat, WGS 84),
with the scenario metadata as a top-level foreign member.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pystac
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from pystac.extensions.eo import Band as EOBand
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.view import ViewExtension
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry

from .acquisition import SimulatedAcquisition
from .grid import SceneGrid
from .instruments import Sensor, SensorBand
from .observe import RenderedObservation
from .scenario import Scenario

#: Largest gap (metres) between vertices when projecting polygons to lon/lat.
DENSIFY_M = 100.0


def write_cog(
    path: Path,
    data: np.ndarray,
    grid: SceneGrid,
    transform: Affine,
    descriptions: Sequence[str],
    *,
    nodata: int | None,
    resampling: str = "AVERAGE",
) -> None:
    """Write a (bands, rows, cols) array as a Cloud-Optimized GeoTIFF.

    Parameters
    ----------
    path
        Output file.
    data
        Pixel values; the dtype is kept.
    grid
        Grid giving the CRS.
    transform
        Transform of ``data`` (differs from the grid's for coarser bands).
    descriptions
        One description (band name) per band.
    nodata
        Nodata value, or None.
    resampling
        Overview resampling (GDAL name).
    """
    count, rows, cols = data.shape
    profile = dict(
        driver="COG",
        width=cols,
        height=rows,
        count=count,
        dtype=data.dtype.name,
        crs=grid.crs,
        transform=transform,
        nodata=nodata,
        compress="DEFLATE",
        predictor=2,
        blocksize=512,
        overview_resampling=resampling,
        num_threads="ALL_CPUS",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(descriptions, start=1):
            dst.set_band_description(i, name)


class LonLat:
    """Projects scene-CRS geometries to lon/lat (EPSG:4326), densifying edges first."""

    def __init__(self, grid: SceneGrid):
        self._transformer = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)

    def __call__(self, geom: BaseGeometry) -> BaseGeometry:
        """The geometry in lon/lat."""

        def apply(coords):
            lon, lat = self._transformer.transform(coords[:, 0], coords[:, 1])
            return np.column_stack([lon, lat])

        return shapely.transform(shapely.segmentize(geom, DENSIFY_M), apply)


def _eo_band(band: SensorBand) -> EOBand:
    return EOBand.create(
        name=band.name, common_name=band.common_name, center_wavelength=band.wavelength_um
    )


def _iso(value: date | datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()


def write_scene(
    item_dir: Path,
    observation: RenderedObservation,
    acquisition: SimulatedAcquisition,
    sensor: Sensor,
    grid: SceneGrid,
    to_lonlat: LonLat,
) -> pystac.Item:
    """Write one scene's rasters into ``item_dir`` and describe them as a STAC item."""
    item_dir.mkdir(parents=True)
    footprint = (
        acquisition.swath_edge.valid_polygon(grid) if acquisition.swath_edge else box(*grid.bounds)
    )
    footprint_ll = to_lonlat(footprint)
    item = pystac.Item(
        id=acquisition.item_id,
        geometry=mapping(footprint_ll),
        bbox=list(footprint_ll.bounds),
        datetime=acquisition.datetime,
        properties={
            "platform": sensor.platform,
            "constellation": sensor.constellation,
            "instruments": list(sensor.instruments),
            "gsd": sensor.pixel_m,
            "proj:epsg": grid.crs.to_epsg(),
            "sitewatch:simulated": True,
            "sitewatch:misregistration_px": list(acquisition.shift_px),
        },
    )
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    projection.code = f"EPSG:{grid.crs.to_epsg()}"
    EOExtension.ext(item, add_if_missing=True).cloud_cover = round(
        100.0 * observation.cloud_fraction, 2
    )
    view = ViewExtension.ext(item, add_if_missing=True)
    view.sun_azimuth = acquisition.sun_azimuth_deg
    view.sun_elevation = acquisition.sun_elevation_deg

    def add(key, filename, data, bands, transform, roles, nodata, resampling, title):
        path = item_dir / filename
        write_cog(
            path,
            data,
            grid,
            transform,
            [b.name for b in bands] if bands else ["class"],
            nodata=nodata,
            resampling=resampling,
        )
        asset = pystac.Asset(
            href=str(path), media_type=pystac.MediaType.COG, roles=roles, title=title
        )
        item.add_asset(key, asset)
        asset_projection = ProjectionExtension.ext(asset)
        asset_projection.shape = list(data.shape[1:])
        asset_projection.transform = list(transform)[:6]
        if bands:
            EOExtension.ext(asset).bands = [_eo_band(b) for b in bands]
            asset.extra_fields["gsd"] = bands[0].resolution_m

    if sensor.one_file:
        stack = np.stack([observation.bands[b.name] for b in sensor.bands])
        add(
            "image",
            "image.tif",
            stack,
            sensor.bands,
            grid.transform,
            ["data"],
            0,
            "AVERAGE",
            "Reflectance x 10000",
        )
    else:
        for band in sensor.bands:
            data = observation.bands[band.name][None]
            factor = round(band.resolution_m / grid.pixel_m)
            add(
                band.name,
                f"{band.name}.tif",
                data,
                [band],
                grid.transform @ Affine.scale(factor),
                ["data"],
                0,
                "AVERAGE",
                f"{band.name} reflectance x 10000",
            )
    add(
        "cloud_truth",
        "cloud_truth.tif",
        observation.cloud_truth[None],
        None,
        grid.transform,
        ["truth"],
        None,
        "NEAREST",
        "Cloud truth: 0 clear, 1 cloud, 2 cloud shadow",
    )
    return item


def write_catalog(root: Path, items: list[pystac.Item], sensor: Sensor, seed: int) -> Path:
    """Save a self-contained STAC catalog of ``items`` (assets already under ``root``)."""
    catalog = pystac.Catalog(
        id=f"sitewatch-sim-{sensor.name}",
        description=f"Simulated {sensor.name} scenes (sitewatch.simulate, seed {seed})",
        title="sitewatch simulated scenes",
    )
    catalog.set_self_href(str(root / "catalog.json"))
    for item in items:
        catalog.add_item(item)
        item.set_self_href(str(root / item.id / f"{item.id}.json"))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


def _feature(geometry: BaseGeometry, properties: dict) -> dict:
    return {"type": "Feature", "geometry": mapping(geometry), "properties": properties}


def reference_features(scenario: Scenario, to_lonlat: LonLat) -> list[dict]:
    """GeoJSON features of the reference places and the border."""
    features = [
        _feature(
            to_lonlat(p.point),
            {"role": "place", "name": p.name, "kind": p.kind, "country": p.country},
        )
        for p in scenario.places
    ]
    border = scenario.border
    features.append(
        _feature(
            to_lonlat(border.line),
            {
                "role": "border",
                "name": border.name,
                "kind": "border",
                "left": border.left,
                "right": border.right,
            },
        )
    )
    return features


def site_features(scenario: Scenario, to_lonlat: LonLat) -> list[dict]:
    """GeoJSON features of the sites (role ``site``) and decoys (role ``decoy``), with their
    measurements and phases."""
    return [
        _feature(
            to_lonlat(site.footprint),
            {
                "role": role,
                "id": site.id,
                "name": site.name,
                "type": site.type,
                "length_m": site.length_m,
                "width_m": site.width_m,
                "area_m2": site.length_m * site.width_m,
                "orientation_deg": site.orientation_deg,
                "phases": [
                    {
                        "phase": p.phase,
                        "start": _iso(p.start),
                        "end": _iso(p.end),
                        "first_observed": _iso(p.first_observed),
                    }
                    for p in site.phases
                ],
            },
        )
        for role, group in (("site", scenario.sites), ("decoy", scenario.decoys))
        for site in group
    ]


def write_geojson(path: Path, features: list[dict], **members) -> Path:
    """Write an RFC 7946 FeatureCollection, with optional top-level foreign members."""
    collection = {"type": "FeatureCollection", **members, "features": features}
    path.write_text(json.dumps(collection, indent=1))
    return path


def scene_summaries(
    acquisitions: list[SimulatedAcquisition], observations: list[tuple[float, float]]
) -> list[dict]:
    """Per-scene truth: id, time, applied misregistration, cloud and nodata fractions."""
    return [
        {
            "item_id": a.item_id,
            "datetime": _iso(a.datetime),
            "misregistration_px": list(a.shift_px),
            "cloud_fraction": round(cloud, 4),
            "nodata_fraction": round(nodata, 4),
        }
        for a, (cloud, nodata) in zip(acquisitions, observations, strict=True)
    ]
