"""Public STAC APIs that sitewatch knows by name, with the quirks of each.

``sitewatch search`` and ``sitewatch fetch`` take ``--stac`` as a URL or as one of these names.
A preset says which assets of a collection are the bands worth fetching (so a search result's
thumbnails, metadata files and duplicate JPEG 2000 copies are left alone), which asset is the
provider's own cloud or quality mask, and how hrefs are made readable:

- **Earth Search v1** (Element 84): public COGs on AWS, readable as they are.
- **Microsoft Planetary Computer**: blob-storage hrefs need a short-lived SAS token. They are
  signed with the ``planetary-computer`` package just before each read, never at search time, so
  a long fetch does not outlive its tokens.
- **Copernicus Data Space Ecosystem (CDSE)**: assets are JPEG 2000 files on its S3 endpoint,
  read through GDAL's ``/vsis3/`` with the user's own CDSE S3 keys (``AWS_ACCESS_KEY_ID`` and
  ``AWS_SECRET_ACCESS_KEY`` in the environment).

Sentinel-2 L2A products of processing baseline 04.00 and later (from 25 January 2022) store
``reflectance x 10000 + 1000``; see :mod:`sitewatch.ingest.fetch` for how the offset is removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlparse

from sitewatch.errors import SitewatchError

#: Sentinel-2 L2A band assets by their Earth Search / STAC common names.
_S2_COMMON = ("coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir",
              "nir08", "nir09", "swir16", "swir22")
#: The same bands under the ESA band names Planetary Computer uses as asset keys.
_S2_ESA = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
#: Landsat Collection 2 Level-2 surface-reflectance assets (Earth Search, Planetary Computer).
_LANDSAT_C2_L2 = ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22")


@dataclass(frozen=True)
class CollectionAssets:
    """The assets of one collection that make a scene: its bands and its provider mask."""

    bands: tuple[str, ...]
    mask: str | None = None


@dataclass(frozen=True)
class Catalogue:
    """A public STAC API: its URL, its collections' assets, and how its hrefs are read.

    ``signing`` is ``"planetary-computer"`` where hrefs need a SAS token; ``s3_endpoint`` is the
    S3 host of ``s3://`` hrefs that are not on AWS.
    """

    name: str
    url: str
    collections: dict[str, CollectionAssets] = field(default_factory=dict)
    signing: str | None = None
    s3_endpoint: str | None = None


CATALOGUES: dict[str, Catalogue] = {
    "earth-search": Catalogue(
        "earth-search", "https://earth-search.aws.element84.com/v1",
        {"sentinel-2-l2a": CollectionAssets(_S2_COMMON, "scl"),
         "sentinel-2-c1-l2a": CollectionAssets(_S2_COMMON, "scl"),
         "landsat-c2-l2": CollectionAssets(_LANDSAT_C2_L2, "qa_pixel")},
    ),
    "planetary-computer": Catalogue(
        "planetary-computer", "https://planetarycomputer.microsoft.com/api/stac/v1",
        {"sentinel-2-l2a": CollectionAssets(_S2_ESA, "SCL"),
         "landsat-c2-l2": CollectionAssets(_LANDSAT_C2_L2, "qa_pixel")},
        signing="planetary-computer",
    ),
    "cdse": Catalogue(
        "cdse", "https://stac.dataspace.copernicus.eu/v1",
        {"sentinel-2-l2a": CollectionAssets(
            ("B01_60m", "B02_10m", "B03_10m", "B04_10m", "B05_20m", "B06_20m", "B07_20m",
             "B08_10m", "B8A_20m", "B09_60m", "B11_20m", "B12_20m"), "SCL_20m")},
        s3_endpoint="eodata.dataspace.copernicus.eu",
    ),
}


def resolve(stac: str) -> Catalogue:
    """The catalogue ``stac`` names: a preset name, or the URL of any STAC API (http/https).

    A URL that is a preset's URL gets that preset's quirks.
    """
    if stac in CATALOGUES:
        return CATALOGUES[stac]
    parsed = urlparse(stac)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        known = ", ".join(CATALOGUES)
        raise SitewatchError(f"--stac {stac!r} is neither a STAC API URL (http:// or https://) "
                             f"nor a known catalogue ({known})")
    for catalogue in CATALOGUES.values():
        if catalogue.url.rstrip("/") == stac.rstrip("/"):
            return catalogue
    return Catalogue("custom", stac)
