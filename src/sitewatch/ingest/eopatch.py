"""eo-learn EOPatch folders: time stacks saved as NumPy arrays, registered date by date.

An EOPatch (sentinel-hub/eo-learn) stores per-date features as ``.npy`` arrays of shape
(time, rows, cols, channels) under ``data/`` and ``mask/``, the acquisition times in
``timestamps.json`` and the extent in ``bbox.geojson`` (a polygon with its CRS). A ``.npy`` file
is a short header followed by the raw array, so each date can be exposed to GDAL as a VRT of
``VRTRawRasterBand``s pointing into the arrays at the right byte offset: nothing is copied.
Nodata comes from ``mask/IS_DATA`` and cloud cover from ``mask/CLM`` when present.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import shapely
from pyproj import CRS
from rasterio.transform import from_bounds

from sitewatch.errors import SitewatchError
from sitewatch.ingest import dates, raster
from sitewatch.ingest.records import Scene

_GDAL_TYPES = {"float32": "Float32", "float64": "Float64", "uint8": "Byte", "bool": "Byte",
               "uint16": "UInt16", "int16": "Int16", "int32": "Int32", "uint32": "UInt32"}


def is_eopatch(folder: Path) -> bool:
    """True if ``folder`` looks like a saved EOPatch (timestamps, bbox and a data folder)."""
    return (folder / "timestamps.json").is_file() and (folder / "bbox.geojson").is_file() and (
        folder / "data").is_dir()


def describe(folder: Path, vrt_dir: Path) -> list[Scene]:
    """One scene per timestamp of the EOPatch at ``folder``; VRTs are written into ``vrt_dir``."""
    folder = folder.resolve()
    try:
        timestamps = json.loads((folder / "timestamps.json").read_text(encoding="utf-8"))
        bbox = json.loads((folder / "bbox.geojson").read_text(encoding="utf-8"))
        crs = CRS.from_user_input(bbox["crs"]["properties"]["name"])
        bounds = shapely.geometry.shape(bbox).bounds
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SitewatchError(f"not a readable EOPatch ({exc})", folder) from exc
    features = {path.stem: path for path in sorted((folder / "data").glob("*.npy"))}
    masks = {path.stem: path for path in sorted((folder / "mask").glob("*.npy"))}
    layouts = {name: _npy_layout(path) for name, path in {**features, **masks}.items()}
    temporal = {name: lay for name, lay in layouts.items() if lay[1][0] == len(timestamps)}
    if not any(name in temporal for name in features):
        raise SitewatchError(
            f"no data/ array has one slice per timestamp ({len(timestamps)})", folder
        )
    _, shape, _ = next(iter(temporal.values()))
    rows, cols = shape[1], shape[2]
    transform = from_bounds(*bounds, cols, rows)
    out = vrt_dir / f"eopatch-{folder.name}-{hashlib.sha1(str(folder).encode()).hexdigest()[:6]}"
    out.mkdir(parents=True, exist_ok=True)
    is_data = np.load(masks["IS_DATA"], mmap_mode="r") if "IS_DATA" in temporal else None
    clouds = np.load(masks["CLM"], mmap_mode="r") if "CLM" in temporal else None
    scenes = []
    for index, stamp in enumerate(timestamps):
        vrt = out / f"t{index:03d}.vrt"
        _write_vrt(vrt, temporal, index, cols, rows, crs, transform.to_gdal(),
                   {**features, **masks})
        scene = raster.describe_file(vrt)
        valid = None if is_data is None else np.asarray(is_data[index]).astype(bool)
        if valid is not None:
            scene.nodata_fraction = float(1.0 - valid.mean())
        if clouds is not None:
            cloudy = np.asarray(clouds[index]).astype(bool)
            if valid is not None:
                cloudy &= valid
            scene.cloud_cover = round(100.0 * float(cloudy.sum()) / max(1, int(
                valid.sum() if valid is not None else cloudy.size)), 2)
        scene.source = f"{folder}#{index:03d}"
        scene.files = sorted(str(p) for p in {**features, **masks}.values()) + [
            str(folder / "timestamps.json"), str(folder / "bbox.geojson")]
        scene.acquired = dates.parse_user_date(stamp)
        scene.date_source = "sidecar"
        scene.properties = {"eopatch": str(folder), "time_index": index, "vrt": str(vrt)}
        scenes.append(scene)
    return scenes


def _npy_layout(path: Path) -> tuple[int, tuple[int, ...], np.dtype]:
    """Header length (bytes), shape and dtype of a C-ordered ``.npy`` file."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(handle)
        offset = handle.tell()
    if fortran:
        raise SitewatchError("Fortran-ordered arrays are not supported", path)
    return offset, shape, dtype


def _write_vrt(path: Path, layouts: dict, index: int, cols: int, rows: int, crs: CRS,
               geotransform: tuple[float, ...], files: dict[str, Path]) -> None:
    bands = []
    for number, (name, (offset, shape, dtype)) in enumerate(layouts.items(), start=1):
        channels = shape[3] if len(shape) == 4 else 1
        size = dtype.itemsize
        image_offset = offset + index * rows * cols * channels * size
        order = "MSB" if dtype.byteorder == ">" else "LSB"
        bands.append(
            f'<VRTRasterBand dataType="{_GDAL_TYPES[dtype.name]}" band="{number}" '
            f'subClass="VRTRawRasterBand"><Description>{escape(name)}</Description>'
            f'<SourceFilename relativetoVRT="0">{escape(str(files[name]))}</SourceFilename>'
            f"<ImageOffset>{image_offset}</ImageOffset><PixelOffset>{channels * size}"
            f"</PixelOffset><LineOffset>{cols * channels * size}</LineOffset>"
            f"<ByteOrder>{order}</ByteOrder></VRTRasterBand>"
        )
    raster.write_vrt(path, cols, rows, crs.to_wkt(), geotransform, "".join(bands))
