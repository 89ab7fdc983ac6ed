"""Describe GDAL rasters without copying their pixels: bands, CRS, footprint, nodata.

Works for anything GDAL reads (GeoTIFF/COG, ENVI, JPEG2000, VRT...). Pixel reads are limited to
one decimated read of a mask per scene (at most :data:`MASK_READ_SIZE` pixels on a side), so
ingest time does not grow with scene size.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.errors
from pyproj import CRS, Geod, Transformer
from rasterio.enums import Resampling
from shapely.geometry import MultiPolygon, Polygon, box

from sitewatch.errors import SitewatchError
from sitewatch.ingest.records import Band, Scene
from sitewatch.ingest.sensors import BandSpec
from sitewatch.lonlat import polygon_from_ring

#: Longest side, in pixels, of the decimated read used to measure the nodata fraction.
MASK_READ_SIZE = 1024
#: Vertices per footprint edge, so that reprojected edges follow curved graticules.
FOOTPRINT_EDGE_POINTS = 21

_GEOD = Geod(ellps="WGS84")


class NotGeoreferencedError(SitewatchError):
    """The raster cannot be placed on Earth (no CRS, or no geotransform)."""


@contextlib.contextmanager
def open_raster(path: str | os.PathLike) -> Iterator[rasterio.DatasetReader]:
    """Open ``path`` with rasterio, turning GDAL failures into one-line :class:`SitewatchError`."""
    path = Path(path)
    if not path.exists():
        raise SitewatchError("no such file; check the path", path)
    try:
        with warnings.catch_warnings():  # a missing georeference is reported by georeference()
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            dataset = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise SitewatchError(
            f"GDAL cannot read it as a raster ({_first_line(exc)}); is it an image file?", path
        ) from exc
    with dataset:
        yield dataset


def georeference(dataset: rasterio.DatasetReader, path: str | os.PathLike) -> CRS:
    """The dataset's CRS as a pyproj CRS; an error if it has none or only GCPs."""
    if dataset.crs is None:
        gcps, _ = dataset.gcps
        hint = (
            "it has ground control points only: warp it onto a grid with gdalwarp first"
            if gcps
            else "it has no coordinate reference system or geotransform: georeference it first "
            "(for example with QGIS's Georeferencer or gdal_translate -a_srs -a_ullr)"
        )
        raise NotGeoreferencedError(f"cannot place this image on Earth; {hint}", path)
    if dataset.transform.is_identity:
        raise NotGeoreferencedError(
            "the image has a CRS but no geotransform; georeference it first", path
        )
    return CRS.from_user_input(dataset.crs.to_wkt())


def check_complete(dataset: rasterio.DatasetReader, path: str | os.PathLike) -> None:
    """Fail if a GeoTIFF's tiles or strips point past the end of the file (a truncated copy), or
    if it lists fewer of them than its declared size needs (a header that lies about its size).
    Blocks listed with offset 0 are sparse (GDAL's ``SPARSE_OK``) and read as nodata."""
    if dataset.driver != "GTiff":
        return
    size = os.path.getsize(path)
    for bidx in dataset.indexes:
        block_rows, block_cols = dataset.block_shapes[bidx - 1]
        n_rows = math.ceil(dataset.height / block_rows)
        n_cols = math.ceil(dataset.width / block_cols)
        for row in range(n_rows):
            for col in range(n_cols):
                offset = dataset.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=bidx)
                count = dataset.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=bidx)
                if offset is None or count is None:
                    raise SitewatchError(
                        f"its header declares {dataset.width} x {dataset.height} pixels, but "
                        f"the file has no entry for block ({col}, {row}) of band {bidx} (it "
                        f"lists fewer blocks than that size needs): the header is wrong or the "
                        "file is corrupt",
                        path,
                    )
                if int(offset) + int(count) > size:
                    raise SitewatchError(
                        f"the file is truncated or corrupt (a block of band {bidx} ends past "
                        f"byte {size}); copy or download it again",
                        path,
                    )


def resolution_metres(crs: CRS, transform, width: int, height: int) -> float:
    """Pixel size in metres: the side of a square pixel of the same ground area.

    The geotransform's steps, measured geodesically at the raster centre if in degrees (a
    Sentinel-2 band resampled to EPSG:4326 has pixels taller than wide at mid latitudes; their
    area still matches the 10 m original). A rotated geotransform's steps are the lengths of its
    column and row vectors, not its diagonal terms.
    """
    res_x, res_y = math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e)
    if crs.is_projected:
        unit = crs.axis_info[0].unit_conversion_factor
        return float(math.sqrt(res_x * res_y) * unit)
    lon, lat = transform @ (width / 2, height / 2)
    to_geo = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    lon, lat = to_geo.transform(lon, lat)
    _, _, dx = _GEOD.inv(lon, lat, lon + res_x, lat)
    _, _, dy = _GEOD.inv(lon, lat, lon, lat + res_y)
    return float(math.sqrt(dx * dy))


def footprint_4326(crs: CRS, transform, width: int, height: int,
                   path: str | os.PathLike | None = None) -> Polygon | MultiPolygon:
    """The raster's outline as a lon/lat polygon, edges densified before reprojection (cut in
    two at the antimeridian, closed along the pole around one, see
    :func:`sitewatch.lonlat.polygon_from_ring`); a georeference that puts any corner off the
    Earth (latitude beyond 90 degrees, or nowhere) is the file's error, named with ``path``."""
    outline = box(0, 0, width, height).exterior
    steps = np.linspace(0.0, 1.0, 4 * (FOOTPRINT_EDGE_POINTS - 1) + 1)
    cols, rows = zip(*(outline.interpolate(s, normalized=True).coords[0] for s in steps),
                     strict=True)
    xs, ys = transform @ (np.asarray(cols), np.asarray(rows))
    to_wgs84 = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True)
    lons, lats = to_wgs84.transform(xs, ys)
    if not (np.isfinite(lons).all() and np.isfinite(lats).all() and np.abs(lats).max() <= 90):
        reach = np.nanmax(np.abs(lats)) if np.isfinite(lats).any() else float("nan")
        raise SitewatchError(f"its georeference puts it off the Earth (latitude up to "
                             f"{reach:.1f} degrees); check its CRS and geotransform", path)
    return polygon_from_ring(lons, lats)


def nodata_fraction(dataset: rasterio.DatasetReader, nodata: float | None,
                    path: str | os.PathLike) -> float:
    """Fraction of pixels of band 1 that are nodata, from a decimated read (0..1)."""
    scale = max(1, math.ceil(max(dataset.width, dataset.height) / MASK_READ_SIZE))
    shape = (max(1, dataset.height // scale), max(1, dataset.width // scale))
    try:
        if nodata is not None and dataset.nodata is None:
            data = dataset.read(1, out_shape=shape, resampling=Resampling.nearest)
            invalid = data == nodata
        else:
            mask = dataset.read_masks(1, out_shape=shape, resampling=Resampling.nearest)
            invalid = mask == 0
    except rasterio.errors.RasterioError as exc:
        raise SitewatchError(
            f"cannot read its pixels ({_first_line(exc)}); the file may be truncated or corrupt",
            path,
        ) from exc
    return float(invalid.mean())


def describe_file(
    path: str | os.PathLike,
    *,
    band_specs: tuple[BandSpec, ...] | None = None,
    nodata: float | None = None,
) -> Scene:
    """Describe a single (multi-band) raster file as a :class:`Scene` without a date."""
    path = Path(path).resolve()
    with open_raster(path) as dataset:
        crs = georeference(dataset, path)
        check_complete(dataset, path)
        resolution = resolution_metres(crs, dataset.transform, dataset.width, dataset.height)
        nodata = dataset.nodata if dataset.nodata is not None else nodata
        bands = [
            _band(dataset, path, bidx, resolution, nodata,
                  band_specs[bidx - 1] if band_specs and len(band_specs) >= bidx else None)
            for bidx in dataset.indexes
            if dataset.colorinterp[bidx - 1].name != "alpha"
        ]
        return Scene(
            source=str(path),
            files=sorted({str(path), *map(str, _existing(dataset.files))}),
            bands=bands,
            crs_wkt=crs.to_wkt(),
            epsg=crs.to_epsg(),
            footprint=footprint_4326(crs, dataset.transform, dataset.width, dataset.height,
                                     path),
            nodata_fraction=nodata_fraction(dataset, nodata, path),
            driver=dataset.driver,
            properties=_metadata(dataset),
        )


def describe_band_files(
    folder: str | os.PathLike,
    band_files: dict[str, Path],
    *,
    band_specs: dict[str, BandSpec] | None = None,
    nodata: float | None = None,
) -> Scene:
    """Describe a one-file-per-band folder (Sentinel-2 style) as one :class:`Scene`; a band
    with a spec in ``band_specs`` (keyed like ``band_files``) takes the spec's name."""
    folder = Path(folder).resolve()
    bands: list[Band] = []
    crs_seen: CRS | None = None
    finest: tuple[float, Path] | None = None
    for name, path in band_files.items():
        with open_raster(path) as dataset:
            crs = georeference(dataset, path)
            if crs_seen is not None and crs != crs_seen:
                raise SitewatchError(
                    f"band {name} is in a different CRS from the other bands of {folder.name}; "
                    "a scene's band files must share one CRS",
                    path,
                )
            crs_seen = crs
            check_complete(dataset, path)
            resolution = resolution_metres(crs, dataset.transform, dataset.width, dataset.height)
            spec = (band_specs or {}).get(name)
            band_nodata = dataset.nodata if dataset.nodata is not None else nodata
            bands.append(_band(dataset, path.resolve(), 1, resolution, band_nodata, spec,
                               spec.name if spec else name))
            if finest is None or resolution < finest[0]:
                finest = (resolution, path)
    assert crs_seen is not None and finest is not None
    with open_raster(finest[1]) as dataset:
        band_nodata = dataset.nodata if dataset.nodata is not None else nodata
        footprint = footprint_4326(crs_seen, dataset.transform, dataset.width, dataset.height,
                                   finest[1])
        fraction = nodata_fraction(dataset, band_nodata, finest[1])
        driver = dataset.driver
    return Scene(
        source=str(folder),
        files=sorted(str(p.resolve()) for p in band_files.values()),
        bands=bands,
        crs_wkt=crs_seen.to_wkt(),
        epsg=crs_seen.to_epsg(),
        footprint=footprint,
        nodata_fraction=fraction,
        driver=driver,
    )


def _band(dataset, path: Path, bidx: int, resolution: float, nodata: float | None,
          spec: BandSpec | None, name: str | None = None) -> Band:
    description = dataset.descriptions[bidx - 1]
    if name is None:
        short_description = description if description and len(description) <= 24 else None
        name = (spec.name if spec else None) or _colour_name(dataset, bidx) \
            or short_description or f"band{bidx}"
    return Band(
        name=name,
        file=str(path),
        index=bidx,
        width=dataset.width,
        height=dataset.height,
        transform=tuple(dataset.transform.to_gdal()),
        resolution_m=round(resolution, 4),
        dtype=dataset.dtypes[bidx - 1],
        nodata=None if nodata is None else float(nodata),
        common_name=spec.common_name if spec else _colour_name(dataset, bidx),
        center_wavelength_um=spec.center_wavelength_um if spec else None,
    )


def _colour_name(dataset, bidx: int) -> str | None:
    interp = dataset.colorinterp[bidx - 1].name
    return interp if interp in {"red", "green", "blue"} else None


def _metadata(dataset) -> dict[str, str]:
    tags = dict(dataset.tags())
    with contextlib.suppress(rasterio.errors.RasterioError):
        tags.update({f"IMAGERY:{k}": v for k, v in dataset.tags(ns="IMAGERY").items()})
    with contextlib.suppress(rasterio.errors.RasterioError):
        tags.update({f"ENVI:{k}": v for k, v in dataset.tags(ns="ENVI").items()})
    return tags


def _existing(files: list[str]) -> list[str]:
    return [str(Path(f).resolve()) for f in files if Path(f).is_file()]


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def write_vrt(path: Path, width: int, height: int, crs_wkt: str,
              geotransform: tuple[float, ...], bands_xml: str) -> None:
    """Write a GDAL VRT document (the given ``<VRTRasterBand>`` elements on a georeferenced
    grid) to ``path``, atomically: written beside it, then renamed into place."""
    document = (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        f"<SRS>{escape(crs_wkt)}</SRS>"
        f"<GeoTransform>{', '.join(repr(float(v)) for v in geotransform)}</GeoTransform>"
        f"{bands_xml}</VRTDataset>\n"
    )
    tmp = path.with_suffix(".vrt.tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(path)
