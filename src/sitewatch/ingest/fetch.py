"""Fetching the AOI's window of STAC items into a local, self-contained catalog.

For every item of a search (:mod:`sitewatch.ingest.search`) and every band asset worth having
(:mod:`sitewatch.ingest.catalogues`), only the window that covers the AOI is read, with HTTP
range requests through GDAL's ``/vsicurl/`` (``/vsis3/`` for ``s3://`` hrefs): a Cloud-Optimized
GeoTIFF's header, then the tiles under the window, never the whole file. Each window is written
as a local COG (DEFLATE, internal overviews), and each item as a STAC item beside its files::

    <out>/catalog.json
    <out>/<collection>/<item id>/<item id>.json, B02.tif, B03.tif, ..., SCL.tif

The window is the AOI's bounding box in the item's CRS, widened by :data:`MARGIN_PX` pixels of
the item's coarsest band (for co-registration and edge effects) and snapped outwards to that
band's pixel grid, so every band of an item covers the same ground.

**Resumable and idempotent.** Every file is written to a ``.part`` sibling and renamed into
place when complete, and an item's JSON is written last, so its presence proves the item is
complete: a re-run skips complete items without a single read, and a killed fetch resumes with
the assets it had not finished. **Polite and robust.** The assets of an item are read by at most
``workers`` threads; a read that fails (HTTP 5xx, a timeout, a truncated file) is retried
:data:`READ_RETRIES` times with exponential backoff, by GDAL for each request and here for each
asset, then the item is reported failed with a one-line reason and nothing of it is left
half-written.

**Sentinel-2 processing baseline.** L2A products of baseline 04.00 and later store
``10000 x reflectance + 1000`` (ESA, "Sentinel-2: Processing Baseline 04.00", 2021). The offset
is removed per item from ``s2:processing_baseline``, not from providers' flags, which are wrong
for some items; and since with the offset no valid pixel can be below 1000 (that would be a
negative reflectance), an item whose bands do have such pixels in more than
:data:`OFFSET_ABSENT_SHARE` of the window is taken as already harmonised and left as it is. The
item records what was done (``sitewatch:boa_offset_removed``), so every local file holds
``10000 x reflectance``, the convention of the rest of sitewatch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import numpy as np
import pystac
import rasterio
from rasterio.crs import CRS
from rasterio.errors import CRSError, RasterioError
from rasterio.warp import transform_bounds, transform_geom
from rasterio.windows import Window
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from sitewatch.errors import SitewatchError
from sitewatch.ingest import sensors
from sitewatch.ingest.catalogues import Catalogue
from sitewatch.ingest.search import search_items

if TYPE_CHECKING:
    from sitewatch.ingest import IngestReport
    from sitewatch.store import Workspace

#: Pixels of the coarsest band added around the AOI's box on every side.
MARGIN_PX = 2
#: Retries of one asset after GDAL's own retries, with backoff 1, 2, 4 s.
READ_RETRIES = 3
READ_BACKOFF_S = 1.0
#: GDAL's HTTP settings: its own per-request retries on 429/5xx and timeouts, no directory
#: listing of the asset's folder (one request saved per file), and several ranges per request.
GDAL_HTTP_OPTIONS = {
    "GDAL_HTTP_MAX_RETRY": 3,
    "GDAL_HTTP_RETRY_DELAY": 0.5,
    "GDAL_HTTP_TIMEOUT": 60,
    "GDAL_HTTP_CONNECTTIMEOUT": 10,
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.JP2",
    "VSI_CACHE": "TRUE",
    # forget what was read (and what failed) when a file is closed, so a retry asks the server
    # again rather than GDAL's cache of the failure
    "CPL_VSIL_CURL_NON_CACHED": "/vsicurl/:/vsis3/",
}
#: The Sentinel-2 L2A offset of processing baseline 04.00 and later, in digital numbers.
BOA_ADD_OFFSET = 1000
#: Above this share of valid pixels below the offset, an item does not carry it.
OFFSET_ABSENT_SHARE = 0.01
#: Media type of the files written.
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_RASTER_MEDIA = ("image/tiff", "image/jp2")
_STATE = "fetch-state.json"


@dataclass
class FetchReport:
    """What one fetch did. Item ids in each list; ``failed`` holds (item id, reason)."""

    catalog: Path
    fetched: list[str] = field(default_factory=list)
    complete: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    assets_read: int = 0
    bytes_written: int = 0


@dataclass(frozen=True)
class _Asset:
    """One asset to fetch: its key in the item, the local band name, and its role."""

    key: str
    name: str
    href: str
    is_mask: bool
    bands: tuple[dict, ...]


#: Folder of a workspace that holds fetched imagery, one sub-folder per AOI.
FETCH_DIR = Path("imagery")


@dataclass
class FetchRun:
    """One ``sitewatch fetch``: the items the search found, what was fetched, what ingest did
    (None when no item is complete)."""

    found: list[pystac.Item]
    report: FetchReport
    ingested: IngestReport | None


def fetch(workspace: str | os.PathLike | Workspace, catalogue: Catalogue,
          collections: list[str], geometry: BaseGeometry, aoi_name: str, *,
          start: datetime | None = None, end: datetime | None = None,
          max_cloud: float | None = None, assets: Iterable[str] | None = None,
          workers: int = 4,
          on_progress: Callable[[str, int, int], None] | None = None) -> FetchRun:
    """Search ``catalogue``, fetch the AOI's window of every item found into the workspace's
    ``imagery/<aoi_name>/`` catalog, and ingest it (see :func:`fetch_items`).

    The search comes first: a catalogue that cannot be searched leaves no trace, not even a
    new workspace."""
    from sitewatch.ingest import ingest
    from sitewatch.store import Workspace

    found = search_items(catalogue, collections, geometry, start, end, max_cloud=max_cloud)
    root = (workspace.root if isinstance(workspace, Workspace)
            else Path(workspace).expanduser().resolve())
    report = fetch_items(found, catalogue, geometry, root / FETCH_DIR / _safe_name(aoi_name),
                         assets=assets, workers=workers, on_progress=on_progress)
    has_items = any(link.get("rel") == "item"
                    for link in _read_json(report.catalog).get("links", []))
    ingested = ingest([report.catalog], workspace) if has_items else None
    return FetchRun(found, report, ingested)


def fetch_items(items: Iterable[pystac.Item], catalogue: Catalogue, geometry: BaseGeometry,
                out_dir: str | os.PathLike, *, assets: Iterable[str] | None = None,
                workers: int = 4,
                on_progress: Callable[[str, int, int], None] | None = None) -> FetchReport:
    """Fetch the window of each item over ``geometry`` (lon/lat degrees) into ``out_dir``.

    ``assets`` are the asset keys to fetch (default: the catalogue's band and mask assets for the
    item's collection, else every GeoTIFF or JPEG 2000 asset with role ``data``).
    ``on_progress(item_id, assets_done, assets_total)`` is called as assets complete. Returns
    the :class:`FetchReport`; the catalog at ``report.catalog`` lists every complete item of
    ``out_dir``, of this fetch and earlier ones.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted = tuple(assets) if assets else None
    report = FetchReport(out / "catalog.json")
    for item in items:
        folder = out / (item.collection_id or "items") / item.id
        try:
            status = _fetch_item(item, catalogue, geometry, folder, wanted, workers, report,
                                 on_progress)
        except _AssetFailed as exc:
            report.failed.append((item.id, str(exc)))
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
            continue
        getattr(report, status).append(item.id)
    write_catalog(out)
    return report


class _AssetFailed(Exception):
    """An asset could not be read after every retry; the message names it."""


def _fetch_item(item: pystac.Item, catalogue: Catalogue, geometry: BaseGeometry, folder: Path,
                wanted: tuple[str, ...] | None, workers: int, report: FetchReport,
                on_progress: Callable[[str, int, int], None] | None) -> str:
    chosen = _choose_assets(item, catalogue, wanted)
    crs = _item_crs(item, chosen)
    resolutions = [r for r in (_resolution(item, asset) for asset in chosen) if r]
    if crs is None or not resolutions:  # the item does not say: ask the first asset's header
        crs, resolution = _open_with_retries(chosen[0], catalogue, lambda dataset: (
            dataset.crs, max(abs(dataset.res[0]), abs(dataset.res[1]))))
        resolutions = resolutions or [resolution]
    coarsest = max(resolutions)
    bounds = _window_bounds(geometry, crs, coarsest)
    request = {"crs": crs.to_string(), "bounds": [round(b, 6) for b in bounds],
               "assets": sorted(a.key for a in chosen)}
    item_json = folder / f"{item.id}.json"
    if item_json.exists() and _recorded_request(item_json) == request:
        return "complete"
    state_path = folder / _STATE
    state = _read_json(state_path)
    if state.get("request") != request:  # new, or fetched before for another window: restart
        shutil.rmtree(folder, ignore_errors=True)
        state = {"request": request}
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob("*.part"):
        leftover.unlink()

    todo = [a for a in chosen if not (folder / f"{a.name}.tif").exists()]
    done = len(chosen) - len(todo)

    def read(asset: _Asset):
        return _open_with_retries(asset, catalogue, lambda dataset: _read_window(dataset, bounds))

    windows: dict[str, tuple[np.ndarray, dict]] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for asset, result in zip(todo, pool.map(read, todo), strict=True):
            windows[asset.name] = result
            report.assets_read += 1
    if all(profile is None for _, profile in windows.values()) and not done:
        shutil.rmtree(folder, ignore_errors=True)
        return "outside"
    if "boa_offset_removed" not in state:
        state["boa_offset_removed"] = _boa_offset(item, chosen, windows)
        _write_json(state_path, state)
    offset = state["boa_offset_removed"]
    for asset in todo:
        data, profile = windows.pop(asset.name)
        if profile is None:
            raise _AssetFailed(f"asset {asset.key!r} does not cover the AOI although the "
                               "item's other bands do")
        if offset and not asset.is_mask and asset.name in _reflectance_names(chosen):
            data = _remove_offset(data, profile.get("nodata"), offset)
        report.bytes_written += _write_cog(folder / f"{asset.name}.tif", data, profile)
        done += 1
        if on_progress:
            on_progress(item.id, done, len(chosen))
    _write_json(item_json, _local_item(item, chosen, folder, request, offset))
    state_path.unlink(missing_ok=True)
    return "fetched"


def latest_fetched(out: Path, collections: Iterable[str]) -> datetime | None:
    """The newest acquisition among the complete items of ``collections`` under ``out``."""
    newest = None
    for collection in collections:
        for path in (out / collection).glob("*/*.json"):
            if path.stem != path.parent.name:
                continue
            when = _read_json(path).get("properties", {}).get("datetime")
            try:
                parsed = datetime.fromisoformat(when.replace("Z", "+00:00")) if when else None
            except ValueError:
                continue
            if parsed and (newest is None or parsed > newest):
                newest = parsed
    return newest


def write_catalog(out: Path) -> Path:
    """Write ``out/catalog.json`` linking every complete item under ``out`` (atomically)."""
    links = [{"rel": "item", "href": "./" + path.relative_to(out).as_posix(),
              "type": "application/json"}
             for path in sorted(out.glob("*/*/*.json")) if path.name != _STATE]
    catalog = {"type": "Catalog", "stac_version": "1.1.0", "id": "sitewatch-fetched",
               "description": "Windows of STAC items fetched by sitewatch over an AOI",
               "links": [{"rel": "root", "href": "./catalog.json",
                          "type": "application/json"}, *links]}
    _write_json(out / "catalog.json", catalog)
    return out / "catalog.json"


def gdal_path(href: str, catalogue: Catalogue) -> str:
    """The GDAL path of an asset href: ``/vsicurl/`` for http(s), ``/vsis3/`` for s3, a local
    path as it is. Planetary Computer hrefs are signed here, just before they are read."""
    scheme = urlparse(href).scheme
    if scheme in ("http", "https"):
        if catalogue.signing == "planetary-computer":
            href = _sign_planetary_computer(href)
        return "/vsicurl/" + href
    if scheme == "s3":
        return "/vsis3/" + href[len("s3://"):]
    if scheme in ("", "file"):
        return urlparse(href).path if scheme == "file" else href
    raise SitewatchError(f"asset href {href} has a scheme GDAL cannot read here ({scheme})")


def _sign_planetary_computer(href: str) -> str:
    try:
        import planetary_computer
    except ImportError:
        raise SitewatchError("Planetary Computer assets need the planetary-computer package: "
                             "pip install planetary-computer") from None
    return planetary_computer.sign_url(href)


def _gdal_env(catalogue: Catalogue) -> dict:
    options = dict(GDAL_HTTP_OPTIONS)
    if catalogue.s3_endpoint:
        options.update(AWS_S3_ENDPOINT=catalogue.s3_endpoint, AWS_VIRTUAL_HOSTING="FALSE")
    return options


def _open_with_retries(asset: _Asset, catalogue: Catalogue, use: Callable):
    """``use(dataset)`` on the asset opened through GDAL, retried with backoff on failure."""
    attempt = 0
    while True:
        try:
            with rasterio.Env(**_gdal_env(catalogue)):
                with rasterio.open(gdal_path(asset.href, catalogue)) as dataset:
                    return use(dataset)
        except RasterioError as exc:
            if attempt == READ_RETRIES:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise _AssetFailed(f"asset {asset.key!r} at {asset.href} could not be read "
                                   f"after {READ_RETRIES + 1} attempts: {reason}") from exc
            time.sleep(READ_BACKOFF_S * 2 ** attempt)
            attempt += 1


def _read_window(dataset, bounds: tuple[float, float, float, float]):
    """The pixels of ``dataset`` inside ``bounds`` (its CRS), with the profile of a file that
    holds just them; ``(None, None)`` when the window misses the dataset."""
    west, south, east, north = bounds
    inverse = ~dataset.transform
    col0, row0 = inverse @ (west, north)
    col1, row1 = inverse @ (east, south)
    col_off, row_off = math.floor(min(col0, col1) + 1e-6), math.floor(min(row0, row1) + 1e-6)
    col_end, row_end = math.ceil(max(col0, col1) - 1e-6), math.ceil(max(row0, row1) - 1e-6)
    col_off, row_off = max(col_off, 0), max(row_off, 0)
    col_end, row_end = min(col_end, dataset.width), min(row_end, dataset.height)
    if col_end <= col_off or row_end <= row_off:
        return None, None
    window = Window(col_off, row_off, col_end - col_off, row_end - row_off)
    data = dataset.read(window=window)
    profile = {"driver": "COG", "width": window.width, "height": window.height,
               "count": dataset.count, "dtype": data.dtype.name, "crs": dataset.crs,
               "transform": dataset.window_transform(window), "nodata": dataset.nodata}
    return data, profile


def _write_cog(path: Path, data: np.ndarray, profile: dict) -> int:
    part = path.with_name(path.name + ".part")
    options = {"compress": "DEFLATE", "blocksize": 512, "overview_resampling": "average"}
    if np.issubdtype(data.dtype, np.integer):
        options["predictor"] = 2
    with rasterio.open(part, "w", **profile, **options) as target:
        target.write(data)
    size = part.stat().st_size
    os.replace(part, path)
    return size


def _choose_assets(item: pystac.Item, catalogue: Catalogue,
                   wanted: tuple[str, ...] | None) -> list[_Asset]:
    preset = catalogue.collections.get(item.collection_id or "")
    if wanted:
        missing = [key for key in wanted if key not in item.assets]
        if missing:
            raise _AssetFailed(f"has no asset {', '.join(map(repr, missing))} (it has: "
                               f"{', '.join(sorted(item.assets))})")
        keys, mask = list(wanted), None
    elif preset:
        keys = [key for key in preset.bands if key in item.assets]
        mask = preset.mask if preset.mask in item.assets else None
    else:
        keys = [key for key, asset in item.assets.items() if _is_raster_data(asset)]
        mask = None
    if not keys:
        raise _AssetFailed("has no raster band asset to fetch (give --assets)")
    sentinel2 = sensors.sensor_from_text(" ".join(
        str(item.properties.get(k, "")) for k in ("constellation", "platform"))) == "sentinel-2"
    chosen = []
    for key in [*keys, *([mask] if mask else [])]:
        asset = item.assets[key]
        bands = _bands(asset)
        name = bands[0].get("name") if len(bands) == 1 and bands[0].get("name") else key
        if sentinel2 and key != mask:  # bands named as the rest of sitewatch knows them
            name = sensors.sentinel2_band_name(key, name) or name
            bands = tuple({**band, "name": name} for band in bands) if len(bands) == 1 else bands
        chosen.append(_Asset(key, _safe_name(name), asset.get_absolute_href() or asset.href,
                             key == mask, bands))
    return chosen


def _mask_kind(key: str) -> str:
    lowered = key.lower()
    return "qa_pixel" if lowered == "qa_pixel" else "scl"


def _is_raster_data(asset: pystac.Asset) -> bool:
    media = (asset.media_type or "").split(";")[0].strip()
    return (media in _RASTER_MEDIA and (not asset.roles or "data" in asset.roles))


def _bands(asset: pystac.Asset) -> tuple[dict, ...]:
    """The asset's bands as ``eo:bands`` entries, from STAC 1.0 ``eo:bands`` or 1.1 ``bands``."""
    if asset.extra_fields.get("eo:bands"):
        return tuple(dict(b) for b in asset.extra_fields["eo:bands"])
    bands = []
    for band in asset.extra_fields.get("bands") or ():
        entry = {"name": band.get("name")}
        for key in ("common_name", "center_wavelength"):
            value = band.get(f"eo:{key}", band.get(key))
            if value is not None:
                entry[key] = value
        bands.append(entry)
    return tuple(bands)


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "band"


def _resolution(item: pystac.Item, asset: _Asset) -> float | None:
    source = item.assets[asset.key]
    gsd = source.extra_fields.get("gsd") or source.extra_fields.get("proj:gsd")
    transform = source.extra_fields.get("proj:transform")
    if transform:
        return float(max(abs(transform[0]), abs(transform[4])))
    return float(gsd) if gsd else None


def _item_crs(item: pystac.Item, chosen: list[_Asset]) -> CRS | None:
    """The CRS the item's projection extension gives (``proj:code``, ``proj:epsg``, WKT2),
    on its first chosen asset or the item; None when it gives none."""
    for fields in (item.assets[chosen[0].key].extra_fields, item.properties):
        for key in ("proj:code", "proj:epsg", "proj:wkt2"):
            value = fields.get(key)
            if value:
                try:
                    return CRS.from_epsg(value) if key == "proj:epsg" else \
                        CRS.from_user_input(value)
                except CRSError:
                    continue
    return None


def _window_bounds(geometry: BaseGeometry, crs, coarsest_m: float
                   ) -> tuple[float, float, float, float]:
    """The AOI's box in ``crs``, widened by :data:`MARGIN_PX` coarse pixels and snapped out to
    the coarse grid (the grids of one item share their origin at a multiple of its pixels)."""
    projected = shape(transform_geom("EPSG:4326", crs, mapping(geometry)))
    west, south, east, north = projected.bounds
    pad = MARGIN_PX * coarsest_m
    return (math.floor((west - pad) / coarsest_m) * coarsest_m,
            math.floor((south - pad) / coarsest_m) * coarsest_m,
            math.ceil((east + pad) / coarsest_m) * coarsest_m,
            math.ceil((north + pad) / coarsest_m) * coarsest_m)


def _reflectance_names(chosen: list[_Asset]) -> set[str]:
    """The local names of Sentinel-2 reflectance bands (``B01``...``B12``, ``B8A``)."""
    return {a.name for a in chosen if not a.is_mask and
            (a.name[:3].upper() in {f"B{i:02d}" for i in range(1, 13)} | {"B8A"})}


def _boa_offset(item: pystac.Item, chosen: list[_Asset],
                windows: dict[str, tuple[np.ndarray, dict]]) -> int:
    """The offset to remove from the item's reflectance bands: :data:`BOA_ADD_OFFSET` for a
    Sentinel-2 L2A item of baseline 04.00 or later whose pixels carry it, else 0."""
    baseline = item.properties.get("s2:processing_baseline")
    product = str(item.properties.get("s2:product_type", item.collection_id or "")).upper()
    try:
        baseline = float(baseline)
    except (TypeError, ValueError):
        return 0
    if baseline < 4.0 or "L1C" in product:
        return 0
    below = valid = 0
    for name in _reflectance_names(chosen):
        data, profile = windows.get(name, (None, None))
        if data is None:
            continue
        nodata = profile.get("nodata")
        good = data != (0 if nodata is None else nodata)
        valid += int(good.sum())
        below += int((good & (data < BOA_ADD_OFFSET)).sum())
    if valid and below / valid > OFFSET_ABSENT_SHARE:
        return 0
    return BOA_ADD_OFFSET


def _remove_offset(data: np.ndarray, nodata, offset: int) -> np.ndarray:
    """``data - offset`` on valid pixels, at least 1 so no pixel becomes nodata (0)."""
    nodata = 0 if nodata is None else nodata
    valid = data != nodata
    shifted = np.clip(data.astype(np.int32) - offset, 1, None).astype(data.dtype)
    return np.where(valid, shifted, data)


def _local_item(item: pystac.Item, chosen: list[_Asset], folder: Path, request: dict,
                offset: int) -> dict:
    """The STAC item of the local files: the source's properties, the fetched assets."""
    document = item.to_dict(include_self_link=False, transform_hrefs=False)
    document["links"] = []
    assets = {}
    for asset in chosen:
        path = folder / f"{asset.name}.tif"
        with rasterio.open(path) as dataset:
            transform, shape_ = list(dataset.transform)[:6], [dataset.height, dataset.width]
            footprint = box(*transform_bounds(dataset.crs, "EPSG:4326", *dataset.bounds))
        entry = {"href": f"./{asset.name}.tif", "type": COG_MEDIA_TYPE,
                 "roles": ["cloud", "cloud-shadow"] if asset.is_mask else ["data"],
                 "proj:shape": shape_, "proj:transform": transform,
                 "sitewatch:source_href": asset.href}
        if asset.is_mask:
            entry["sitewatch:mask_kind"] = _mask_kind(asset.key)
        if asset.bands:
            entry["eo:bands"] = list(asset.bands)
        assets[asset.name] = entry
    document["assets"] = assets
    source_geometry = shape(item.geometry) if item.geometry else footprint
    clipped = source_geometry.intersection(footprint)
    document["geometry"] = mapping(clipped if not clipped.is_empty else footprint)
    document["bbox"] = list(shape(document["geometry"]).bounds)
    document["properties"]["sitewatch:fetch"] = request
    document["properties"]["sitewatch:boa_offset_removed"] = offset
    document["properties"]["sitewatch:source_item"] = item.get_self_href()
    return document


def _recorded_request(item_json: Path) -> dict | None:
    return _read_json(item_json).get("properties", {}).get("sitewatch:fetch")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, document: dict) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(document, indent=1), encoding="utf-8")
    os.replace(part, path)
