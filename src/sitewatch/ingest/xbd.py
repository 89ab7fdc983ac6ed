"""xBD / xView2 tiles: PNG images georeferenced through their building labels.

An xBD tile (Gupta et al., "xBD: A Dataset for Assessing Building Damage from Satellite
Imagery", CVPRW 2019) is a PNG without georeference, beside a label JSON whose building polygons
are given twice: in pixel coordinates (``features.xy``) and in lon/lat (``features.lng_lat``).
Every vertex is a ground control point, so a least-squares affine fit over all of them gives the
tile's geotransform. ingest writes it into a small VRT in the workspace that points at the
untouched PNG (no pixels copied) and records the fit residual in metres.
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import shapely
from pyproj import CRS

from sitewatch.errors import SitewatchError
from sitewatch.ingest import dates, raster, sensors
from sitewatch.ingest.records import Scene

#: Fewest vertex pairs accepted for the affine fit.
MIN_CONTROL_POINTS = 6
_METRES_PER_DEGREE = 111_320.0


def label_file(image: Path) -> Path | None:
    """The xBD label JSON of ``image`` (``images/x.png`` -> ``labels/x.json``), if present."""
    candidate = image.parent.parent / "labels" / f"{image.stem}.json"
    return candidate if image.suffix.lower() == ".png" and candidate.is_file() else None


def describe(image: Path, labels: Path, vrt_dir: Path) -> Scene:
    """Georeference ``image`` from ``labels``, write its VRT into ``vrt_dir``, describe it."""
    try:
        document = json.loads(labels.read_text(encoding="utf-8"))
        pixel_polys = [shapely.from_wkt(f["wkt"]) for f in document["features"]["xy"]]
        geo_polys = [shapely.from_wkt(f["wkt"]) for f in document["features"]["lng_lat"]]
        metadata = document.get("metadata", {})
    except (OSError, ValueError, KeyError, TypeError, shapely.errors.GEOSException) as exc:
        raise SitewatchError(f"not a readable xBD label file ({exc})", labels) from exc
    pixels = np.concatenate([shapely.get_coordinates(p) for p in pixel_polys] or [np.empty((0, 2))])
    lonlat = np.concatenate([shapely.get_coordinates(p) for p in geo_polys] or [np.empty((0, 2))])
    if len(pixels) < MIN_CONTROL_POINTS or len(pixels) != len(lonlat):
        raise SitewatchError(
            f"cannot georeference {image.name}: its labels give {len(pixels)} matching vertices, "
            f"at least {MIN_CONTROL_POINTS} are needed",
            labels,
        )
    geotransform, residual_m = fit_geotransform(pixels, lonlat)
    with raster.open_raster(image) as dataset:
        width, height, count = dataset.width, dataset.height, dataset.count
        dtype = dataset.dtypes[0]
    vrt_dir.mkdir(parents=True, exist_ok=True)
    vrt = vrt_dir / f"{image.stem}.vrt"
    write_vrt(vrt, image.resolve(), width, height, count, dtype, geotransform)
    scene = raster.describe_file(vrt, band_specs=sensors.RGB if count == 3 else None)
    scene.source = str(image.resolve())
    scene.files = sorted({str(image.resolve()), str(labels.resolve())})
    scene.sensor = sensors.sensor_from_text(metadata.get("sensor", "")) or metadata.get("sensor")
    scene.platform = metadata.get("sensor")
    if metadata.get("capture_date"):
        scene.acquired = dates.parse_user_date(metadata["capture_date"])
        scene.date_source = "sidecar"
    scene.properties = {
        "georeference": "affine fit to xBD label vertices",
        "georeference_rmse_m": round(residual_m, 3),
        "control_points": int(len(pixels)),
        "vrt": str(vrt),
        **{k: v for k, v in metadata.items() if isinstance(v, str | int | float)},
    }
    return scene


def fit_geotransform(pixels: np.ndarray, lonlat: np.ndarray) -> tuple[tuple[float, ...], float]:
    """Least-squares GDAL geotransform mapping pixel (col, row) to (lon, lat).

    Returns the geotransform and the root-mean-square residual in metres.
    """
    design = np.column_stack([np.ones(len(pixels)), pixels[:, 0], pixels[:, 1]])
    coef_x, *_ = np.linalg.lstsq(design, lonlat[:, 0], rcond=None)
    coef_y, *_ = np.linalg.lstsq(design, lonlat[:, 1], rcond=None)
    residual = lonlat - np.column_stack([design @ coef_x, design @ coef_y])
    scale = np.array([_METRES_PER_DEGREE * np.cos(np.radians(lonlat[:, 1].mean())),
                      _METRES_PER_DEGREE])
    rmse = float(np.sqrt(np.mean(np.sum((residual * scale) ** 2, axis=1))))
    return (*coef_x, *coef_y), rmse


def write_vrt(path: Path, image: Path, width: int, height: int, count: int, dtype: str,
              geotransform: tuple[float, ...]) -> None:
    """A GDAL VRT that places ``image`` on EPSG:4326 with ``geotransform``; written atomically."""
    gdal_types = {"uint8": "Byte", "uint16": "UInt16"}
    bands = "".join(
        f'<VRTRasterBand dataType="{gdal_types.get(dtype, "Byte")}" band="{b}">'
        f'<ColorInterp>{("Red", "Green", "Blue")[b - 1] if count == 3 else "Undefined"}'
        f'</ColorInterp><SimpleSource><SourceFilename relativeToVRT="0">{escape(str(image))}'
        f"</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for b in range(1, count + 1)
    )
    raster.write_vrt(path, width, height, CRS.from_epsg(4326).to_wkt(), geotransform, bands)

