"""What sitewatch knows about sensors: band names, wavelengths, native resolutions.

Wavelengths are band centres in micrometres; resolutions are native ground sampling distances in
metres. Sources: ESA Sentinel-2 MSI User Handbook (spectral response, 2015); USGS Landsat 4-5 TM
and Landsat 7 ETM+ band designations; USDA NAIP four-band product description.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class BandSpec:
    """A sensor band: its name, common name (STAC eo), centre wavelength (um), resolution (m)."""

    name: str
    common_name: str | None
    center_wavelength_um: float | None
    resolution_m: float | None


SENTINEL2 = {
    b.name: b
    for b in (
        BandSpec("B01", "coastal", 0.443, 60.0),
        BandSpec("B02", "blue", 0.490, 10.0),
        BandSpec("B03", "green", 0.560, 10.0),
        BandSpec("B04", "red", 0.665, 10.0),
        BandSpec("B05", "rededge", 0.705, 20.0),
        BandSpec("B06", "rededge", 0.740, 20.0),
        BandSpec("B07", "rededge", 0.783, 20.0),
        BandSpec("B08", "nir", 0.842, 10.0),
        BandSpec("B8A", "nir08", 0.865, 20.0),
        BandSpec("B09", "nir09", 0.945, 60.0),
        BandSpec("B10", "cirrus", 1.375, 60.0),
        BandSpec("B11", "swir16", 1.610, 20.0),
        BandSpec("B12", "swir22", 2.190, 20.0),
    )
}

#: Sentinel-2 band assets by their STAC asset keys (Earth Search v1 and the STAC best practices
#: name them after the band's common name, the red-edge bands numbered), as ESA band names.
SENTINEL2_ASSET_KEYS = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05",
    "rededge2": "B06", "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09",
    "cirrus": "B10", "swir16": "B11", "swir22": "B12",
}

LANDSAT_TM = (
    BandSpec("B1", "blue", 0.485, 30.0),
    BandSpec("B2", "green", 0.560, 30.0),
    BandSpec("B3", "red", 0.660, 30.0),
    BandSpec("B4", "nir08", 0.830, 30.0),
    BandSpec("B5", "swir16", 1.650, 30.0),
    BandSpec("B7", "swir22", 2.215, 30.0),
)

#: Reflective bands of Landsat 8-9 OLI by band number (USGS Landsat 8-9 OLI/TIRS Collection 2
#: Level-2 Science Product Guide): the same numbers as TM name other colours (OLI B4 is red,
#: TM B4 near-infrared), so one-file-per-band Landsat scenes are named by common name.
LANDSAT_OLI_BANDS = {
    1: BandSpec("coastal", "coastal", 0.443, 30.0),
    2: BandSpec("blue", "blue", 0.482, 30.0),
    3: BandSpec("green", "green", 0.561, 30.0),
    4: BandSpec("red", "red", 0.655, 30.0),
    5: BandSpec("nir08", "nir08", 0.865, 30.0),
    6: BandSpec("swir16", "swir16", 1.609, 30.0),
    7: BandSpec("swir22", "swir22", 2.201, 30.0),
}
#: Reflective bands of Landsat 4-5 TM and 7 ETM+ by band number, named by common name.
LANDSAT_TM_BANDS = {int(b.name[1:]): BandSpec(b.common_name, b.common_name,
                                              b.center_wavelength_um, b.resolution_m)
                    for b in LANDSAT_TM}
#: Landsat Collection 1/2 product ids: the sensor letter and the satellite number.
LANDSAT_PRODUCT = re.compile(r"^L([COTEM])0([4-9])_", re.IGNORECASE)

NAIP = (
    BandSpec("red", "red", 0.635, None),
    BandSpec("green", "green", 0.555, None),
    BandSpec("blue", "blue", 0.465, None),
    BandSpec("nir", "nir", 0.830, None),
)

RGB = (
    BandSpec("red", "red", None, None),
    BandSpec("green", "green", None, None),
    BandSpec("blue", "blue", None, None),
)

#: Band-file suffix of Sentinel-2 style one-file-per-band names, e.g. ``..._B8A.tif``.
BAND_FILE = re.compile(r"(?:^|[_\-.])(B(?:0?[1-9]|1[0-2]|8A))\.(?:tiff?|jp2)$", re.IGNORECASE)

_SENSOR_PATTERNS = (
    (re.compile(r"^S2[ABCD]_(?:OPER|MSIL1C|MSIL2A)|^T\d{2}[A-Z]{3}_\d{8}T\d{6}", re.I),
     "sentinel-2"),
    (re.compile(r"^L[CEMOT]0[4-9]_L", re.I), "landsat"),
    (re.compile(r"^m_\d{7}_(?:ne|nw|se|sw)_\d{2}_", re.I), "naip"),
)


def normalise_band_name(name: str) -> str:
    """``b2`` -> ``B02``, ``b8a`` -> ``B8A``: the Sentinel-2 spelling of a band-file suffix."""
    name = name.upper()
    if name == "B8A":
        return name
    return f"B{int(name[1:]):02d}"


def sentinel2_band_name(asset_key: str, eo_name: str | None = None) -> str | None:
    """The ESA name (``B02``...) of a Sentinel-2 band asset from its STAC asset key (``blue``,
    ``B02``, ``B02_10m``) or its ``eo:bands`` name; None if neither names a band."""
    for candidate in (eo_name, asset_key, asset_key.split("_")[0]):
        if not candidate:
            continue
        if BAND_FILE.search(f"_{candidate}.tif"):
            return normalise_band_name(candidate)
        if candidate.lower() in SENTINEL2_ASSET_KEYS:
            return SENTINEL2_ASSET_KEYS[candidate.lower()]
    return None


def landsat_band_specs(product_name: str) -> dict[int, BandSpec] | None:
    """The reflective bands, by band number, of the Landsat product ``product_name`` names
    (``LC08_...``: OLI; ``LT05_...``, ``LE07_...``: TM/ETM+); None if it names none. Thermal
    and QA bands are not among them."""
    match = LANDSAT_PRODUCT.match(product_name)
    if match is None:
        return None
    return LANDSAT_OLI_BANDS if int(match.group(2)) >= 8 else LANDSAT_TM_BANDS


def sensor_from_name(name: str) -> str | None:
    """Guess the sensor family from a file or folder name (None if nothing matches)."""
    for pattern, sensor in _SENSOR_PATTERNS:
        if pattern.search(name):
            return sensor
    return None


def sensor_from_text(text: str) -> str | None:
    """Guess the sensor family from free-text metadata such as ENVI's ``sensor type``."""
    lowered = text.lower()
    if "landsat" in lowered:
        return "landsat"
    if "sentinel-2" in lowered or "sentinel2" in lowered or "sentinel 2" in lowered:
        return "sentinel-2"
    if "worldview" in lowered:
        return "worldview"
    if "quickbird" in lowered:
        return "quickbird"
    return None


def band_table(sensor: str | None, count: int) -> tuple[BandSpec, ...] | None:
    """The band layout of a ``count``-band file from ``sensor``, when it is known."""
    if sensor == "landsat" and count == 6:
        return LANDSAT_TM
    if sensor == "naip" and count == 4:
        return NAIP
    if sensor in {"worldview", "quickbird"} and count == 3:
        return RGB
    return None
