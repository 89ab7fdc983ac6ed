"""Scenes from local static STAC catalogs, collections and items (read with pystac).

Each item becomes one scene. Its datetime, platform, constellation, ``eo:cloud_cover`` and other
properties come from the item; its bands are the item's raster assets with role ``data`` (or no
role), read from disk to learn their grid. Assets are resolved relative to the item file, so a
self-contained catalog can be moved as a folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pystac
from pystac.stac_io import DefaultStacIO

from sitewatch.errors import SitewatchError
from sitewatch.ingest import raster, sensors
from sitewatch.ingest.records import Scene
from sitewatch.ingest.sensors import BandSpec

_RASTER_MEDIA = ("image/tiff", "image/jp2", "application/x-hdf")
#: Marks the items read from an ItemCollection file (see :func:`describe_item`).
_IN_ITEM_COLLECTION = "sitewatch:in_item_collection"


class LocalStacIO(DefaultStacIO):
    """pystac's reader for files on disk only: a link to an ``http(s)`` or other remote href
    is refused with a :class:`SitewatchError` instead of being downloaded (ingest works
    offline and reads nothing it was not given)."""

    def read_text_from_href(self, href: str) -> str:
        if _is_remote(href):
            raise SitewatchError(f"the catalog links to {href}, which is not on this machine; "
                                 "ingest reads local catalogs only and downloads nothing")
        return super().read_text_from_href(href)


def _is_remote(href: str) -> bool:
    """Whether ``href`` is a URL of another machine (http, https, s3...), not a local path."""
    scheme = urlparse(href).scheme
    return scheme not in ("", "file") and len(scheme) > 1  # one letter: a Windows drive


def is_stac_json(path: Path) -> bool:
    """True if ``path`` is a JSON file that declares a STAC version."""
    if path.suffix.lower() != ".json":
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return '"stac_version"' in head


def read_items(path: Path) -> list[pystac.Item]:
    """All items of a catalog/collection (recursively), the one item of an item file, or the
    items of an ItemCollection (a GeoJSON FeatureCollection of items, as STAC API searches
    return; their relative asset hrefs are read against the file's folder)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SitewatchError(f"not a readable STAC file ({exc}); check its JSON", path) from exc
    if isinstance(document, dict) and document.get("type") == "FeatureCollection":
        try:
            items = list(pystac.ItemCollection.from_dict(document, preserve_dict=False))
        except (pystac.STACError, KeyError, TypeError, ValueError) as exc:
            raise SitewatchError(f"not a readable STAC ItemCollection ({exc})", path) from exc
        for item in items:
            item.extra_fields[_IN_ITEM_COLLECTION] = True
            if item.get_self_href() is None:
                item.set_self_href(str(path.resolve()))
        return items
    try:
        kinds = {"Catalog": pystac.Catalog, "Collection": pystac.Collection}
        kind = kinds.get(document.get("type")) if isinstance(document, dict) else None
        # Catalog.from_file keeps the reader for the links it resolves later; read_file does not.
        stac_object = (kind.from_file(str(path), stac_io=LocalStacIO()) if kind else
                       pystac.read_file(str(path), stac_io=LocalStacIO()))
    except SitewatchError as exc:
        raise SitewatchError(exc.reason, path) from None
    except (pystac.STACError, json.JSONDecodeError, KeyError, ValueError) as exc:
        raise SitewatchError(f"not a readable STAC file ({exc}); check its JSON", path) from exc
    if isinstance(stac_object, pystac.Item):
        return [stac_object]
    try:
        return list(stac_object.get_items(recursive=True))
    except (pystac.STACError, FileNotFoundError, json.JSONDecodeError) as exc:
        if isinstance(exc.__cause__, SitewatchError):  # LocalStacIO refused a remote link
            raise SitewatchError(exc.__cause__.reason, path) from None
        raise SitewatchError(
            f"a linked catalog or item cannot be read ({exc}); is the catalog complete?", path
        ) from exc


def describe_item(item: pystac.Item) -> Scene:
    """Describe one STAC item as a scene, its bands from its data assets."""
    item_path = Path(item.get_self_href() or item.id).resolve()
    masks = {key: kind for key, asset in item.assets.items()
             if (kind := provider_mask_kind(key, asset))}
    data_assets = {
        key: asset for key, asset in item.assets.items()
        if (not asset.roles or "data" in asset.roles) and key not in masks
        and (asset.media_type is None or asset.media_type.split(";")[0] in _RASTER_MEDIA)
    }
    if not data_assets:
        raise SitewatchError(f"STAC item {item.id!r} has no raster data assets", item_path)
    platform = item.properties.get("platform")
    sensor = _sensor(item)
    band_files: dict[str, Path] = {}
    specs: dict[str, BandSpec] = {}
    for key, asset in data_assets.items():
        if _is_remote(asset.href):
            raise SitewatchError(
                f"STAC item {item.id!r}: asset {key!r} is at {asset.href}, not on this machine; "
                "ingest reads local files only; 'sitewatch fetch' reads the AOI's window of "
                "such items from their STAC API into the workspace", item_path)
        href = Path(asset.get_absolute_href() or asset.href)
        if not href.exists():
            raise SitewatchError(
                f"STAC item {item.id!r}: asset {key!r} points to {href}, which does not exist",
                item_path,
            )
        band_files[key] = href
        eo_bands = asset.extra_fields.get("eo:bands") or []
        if len(eo_bands) == 1:
            band = eo_bands[0]
            specs[key] = BandSpec(band.get("name", key), band.get("common_name"),
                                  band.get("center_wavelength"), asset.extra_fields.get("gsd"))
    if len(band_files) == 1:
        (only,) = band_files.values()
        eo_bands = next(iter(data_assets.values())).extra_fields.get("eo:bands") or []
        table = tuple(BandSpec(b.get("name", f"band{i + 1}"), b.get("common_name"),
                               b.get("center_wavelength"), None)
                      for i, b in enumerate(eo_bands)) or None
        scene = raster.describe_file(only, band_specs=table, nodata=_nodata(sensor))
    else:
        if sensor == "sentinel-2":
            specs = {k: _sentinel2_spec(k, specs.get(k)) for k in band_files}
            names = {k: spec.name if spec else k for k, spec in specs.items()}
            if len(set(names.values())) == len(names):  # bands go by their ESA names
                band_files = {names[k]: path for k, path in band_files.items()}
                specs = {names[k]: spec for k, spec in specs.items()}
        scene = raster.describe_band_files(item_path.parent, band_files, band_specs=specs,
                                           nodata=_nodata(sensor))
    # the items of one ItemCollection share its file: their ids tell them apart
    scene.source = (f"{item_path}#{item.id}" if item.extra_fields.get(_IN_ITEM_COLLECTION)
                    else str(item_path))
    scene.files = sorted({*scene.files, str(item_path)})
    scene.acquired = item.datetime or item.common_metadata.start_datetime
    scene.date_source = "stac" if scene.acquired else None
    scene.sensor = sensor
    scene.platform = platform
    scene.cloud_cover = item.properties.get("eo:cloud_cover")
    scene.properties = {"stac_item_id": item.id, **item.properties}
    for key, kind in sorted(masks.items())[:1]:
        asset = item.assets[key]
        if _is_remote(asset.href):
            continue  # its bands are remote too, and refused above
        path = Path(asset.get_absolute_href() or asset.href)
        if not path.exists():
            raise SitewatchError(f"STAC item {item.id!r}: mask asset {key!r} points to {path}, "
                                 "which does not exist", item_path)
        scene.properties["provider_mask"] = {"file": str(path), "kind": kind, "asset": key}
        scene.files = sorted({*scene.files, str(path)})
    return scene


def provider_mask_kind(key: str, asset: pystac.Asset) -> str | None:
    """``"scl"`` for a Sentinel-2 L2A scene classification asset, ``"qa_pixel"`` for a Landsat
    Collection 2 pixel quality asset, else None (see :mod:`sitewatch.stack.provider_masks`)."""
    kind = asset.extra_fields.get("sitewatch:mask_kind")
    if kind:
        return str(kind)
    lowered = key.lower()
    if lowered == "scl" or lowered.startswith("scl_"):
        return "scl"
    if lowered == "qa_pixel":
        return "qa_pixel"
    return None


def _sentinel2_spec(key: str, spec: BandSpec | None) -> BandSpec | None:
    """A Sentinel-2 band under its ESA name (``B02``), whatever the asset key (``blue``,
    ``B02_10m``) or its ``eo:bands`` name, the item's own wavelength and GSD kept."""
    name = sensors.sentinel2_band_name(key, spec.name if spec else None)
    if name is None:
        return spec
    known = sensors.SENTINEL2[name]
    if spec is None:
        return known
    return BandSpec(name, spec.common_name or known.common_name,
                    spec.center_wavelength_um or known.center_wavelength_um,
                    spec.resolution_m or known.resolution_m)


def _sensor(item: pystac.Item) -> str | None:
    text = " ".join(
        str(item.properties.get(key, "")) for key in ("constellation", "platform", "instruments")
    )
    return sensors.sensor_from_text(text) or item.properties.get("constellation")


def _nodata(sensor: str | None) -> float | None:
    # Sentinel-2 L1C/L2A products mark nodata with 0 even when files do not say so.
    return 0.0 if sensor == "sentinel-2" else None
