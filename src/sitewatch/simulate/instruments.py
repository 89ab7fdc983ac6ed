"""The simulated sensors: their bands, resolutions, noise and STAC identity.

``s2`` follows the Sentinel-2 MSI (ESA, *Sentinel-2 User Handbook*, 2015): 13 bands at
10, 20 and 60 m, delivered as reflectance x 10000 in uint16 with 0 as nodata (the L1C
convention). ``vhr`` is a generic very-high-resolution multispectral imager (four bands at
0.5 m, like a pan-sharpened WorldView or Pleiades product).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from ..errors import SitewatchError
from ..ingest.sensors import SENTINEL2


@dataclass(frozen=True)
class SensorBand:
    """One spectral band.

    Attributes
    ----------
    name
        Band name, also the raster band description and the STAC asset key (s2).
    common_name
        STAC EO common name ("blue", "nir", ...).
    wavelength_um
        Centre wavelength in micrometres.
    resolution_m
        Native pixel size in metres.
    """

    name: str
    common_name: str | None
    wavelength_um: float
    resolution_m: float


@dataclass(frozen=True)
class Sensor:
    """A simulated imaging sensor.

    Attributes
    ----------
    name
        "s2" or "vhr".
    bands
        The bands, in file order.
    pixel_m
        Finest pixel size (metres): the grid every band is rendered on.
    extent_unit_m
        Scene width and height are rounded up to multiples of this (the coarsest pixel).
    default_size_m
        Default (width, height) of the scene in metres.
    noise_sigma
        Standard deviation of the additive sensor noise, in reflectance units.
    time_of_day
        Acquisition time (UTC), the same every date as for a sun-synchronous orbit.
    platform, constellation, instruments
        STAC common metadata.
    one_file
        True if all bands go into one multi-band file, False for one file per band.
    """

    name: str
    bands: tuple[SensorBand, ...]
    pixel_m: float
    extent_unit_m: float
    default_size_m: tuple[float, float]
    noise_sigma: float
    time_of_day: time
    platform: str
    constellation: str
    instruments: tuple[str, ...]
    one_file: bool

    @property
    def resolutions_m(self) -> tuple[float, ...]:
        """Distinct band resolutions, finest first."""
        return tuple(sorted({b.resolution_m for b in self.bands}))


#: Sentinel-2 MSI bands, from the table ingest uses (ESA MSI User Handbook).
_S2_BANDS = tuple(SensorBand(b.name, b.common_name, b.center_wavelength_um, b.resolution_m)
                  for b in SENTINEL2.values())

_VHR_BANDS = (
    SensorBand("red", "red", 0.660, 0.5),
    SensorBand("green", "green", 0.545, 0.5),
    SensorBand("blue", "blue", 0.480, 0.5),
    SensorBand("nir", "nir", 0.830, 0.5),
)

SENSORS: dict[str, Sensor] = {
    "s2": Sensor(
        name="s2",
        bands=_S2_BANDS,
        pixel_m=10.0,
        extent_unit_m=60.0,
        default_size_m=(8000.0, 6000.0),
        noise_sigma=0.003,
        time_of_day=time(8, 3, 0),
        platform="sentinel-2a",
        constellation="sentinel-2",
        instruments=("msi",),
        one_file=False,
    ),
    "vhr": Sensor(
        name="vhr",
        bands=_VHR_BANDS,
        pixel_m=0.5,
        extent_unit_m=1.0,
        default_size_m=(1400.0, 900.0),
        noise_sigma=0.006,
        time_of_day=time(7, 48, 0),
        platform="sitewatch-vhr",
        constellation="sitewatch-simulated",
        instruments=("vhr-ms",),
        one_file=True,
    ),
}


def get_sensor(name: str) -> Sensor:
    """The sensor called ``name``; SitewatchError if there is none."""
    try:
        return SENSORS[name]
    except (KeyError, TypeError):
        raise SitewatchError(f"unknown sensor {name!r}; choose s2 or vhr") from None
