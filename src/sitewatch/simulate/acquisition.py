"""When each scene is taken and under which conditions: dates, sun, misregistration,
atmosphere, clouds and swath edge, all drawn from the seed.

The first date is the reference: no misregistration, no cloud, no swath edge. The last
date is also kept clear and complete, so the final state of every site is fully seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from shapely.geometry import Polygon, box

from .grid import SceneGrid
from .instruments import Sensor
from .noise import rng_for

#: Date of the first acquisition; later ones follow monthly on the same day.
FIRST_DATE = (2018, 9, 15)

#: Ground-track azimuth of a descending sun-synchronous orbit at ~34 N (degrees from north).
TRACK_AZIMUTH_DEG = 193.0


@dataclass(frozen=True)
class CloudSpec:
    """A cloud layer: target fraction of the scene covered (0..1) and cloud height (m)."""

    cover: float
    height_m: float


@dataclass(frozen=True)
class SwathEdge:
    """The edge of the imaged swath: a straight line along the ground track.

    Attributes
    ----------
    normal_deg
        Azimuth (degrees clockwise from north) of the normal pointing out of the swath.
    offset_m
        Distance (metres) from the scene centre to the edge along that normal.
    """

    normal_deg: float
    offset_m: float

    def _edge(self, grid: SceneGrid) -> tuple[np.ndarray, np.ndarray]:
        """A point on the edge and the outward unit normal, in grid CRS coordinates."""
        left, bottom, right, top = grid.bounds
        theta = math.radians(self.normal_deg)
        normal = np.array([math.sin(theta), math.cos(theta)])
        centre = np.array([(left + right) / 2.0, (bottom + top) / 2.0])
        return centre + self.offset_m * normal, normal

    def valid_mask(self, grid: SceneGrid) -> np.ndarray:
        """True for pixels whose centre lies inside the swath (bool array of grid shape)."""
        (ex, ey), (nx, ny) = self._edge(grid)
        rows, cols = grid.shape
        x = grid.transform.c + (np.arange(cols) + 0.5) * grid.pixel_m
        y = grid.transform.f - (np.arange(rows) + 0.5) * grid.pixel_m
        return (x[None, :] - ex) * nx + (y[:, None] - ey) * ny < 0

    def valid_polygon(self, grid: SceneGrid) -> Polygon:
        """The imaged part of the scene extent, in the grid CRS."""
        point, normal = self._edge(grid)
        extent = box(*grid.bounds)
        reach = 4.0 * max(extent.bounds[2] - extent.bounds[0], extent.bounds[3] - extent.bounds[1])
        along = np.array([-normal[1], normal[0]]) * reach
        inside = -normal * reach
        half_plane = Polygon(
            [point + along, point - along, point - along + inside, point + along + inside]
        )
        return extent.intersection(half_plane)


@dataclass(frozen=True)
class SimulatedAcquisition:
    """The conditions of one simulated scene.

    Attributes
    ----------
    index
        Position in the time series (0 = reference).
    datetime
        Acquisition time, UTC.
    item_id
        STAC item id, ``sim-<sensor>-YYYYMMDD``.
    sun_azimuth_deg, sun_elevation_deg
        Sun position at the scene centre (degrees; azimuth clockwise from north).
    shift_px
        Misregistration (dx, dy) in grid pixels, x right and y down: a ground feature
        appears at its true pixel position plus this shift.
    gains
        Per-band radiometric gain (calibration and illumination differences).
    haze
        Path reflectance added at 0.49 um (falls as ``wavelength ** -2``).
    cloud
        Cloud layer, or None for a clear scene.
    swath_edge
        Swath edge crossing the scene, or None when the scene is fully imaged.
    """

    index: int
    datetime: datetime
    item_id: str
    sun_azimuth_deg: float
    sun_elevation_deg: float
    shift_px: tuple[float, float]
    gains: tuple[float, ...]
    haze: float
    cloud: CloudSpec | None
    swath_edge: SwathEdge | None


def sun_position(when: datetime, lon: float, lat: float) -> tuple[float, float]:
    """Solar azimuth and elevation in degrees (azimuth clockwise from north).

    Low-precision formulas (declination after Cooper 1969, equation of time after Spencer
    1971; see Duffie & Beckman, *Solar Engineering of Thermal Processes*, 4th ed., ch. 1),
    good to a few tenths of a degree, ample for shadow lengths and directions.
    """
    doy = when.timetuple().tm_yday
    b = 2.0 * math.pi * (doy - 1) / 365.0
    eot_min = 229.18 * (
        0.000075
        + 0.001868 * math.cos(b)
        - 0.032077 * math.sin(b)
        - 0.014615 * math.cos(2 * b)
        - 0.04089 * math.sin(2 * b)
    )
    decl = math.radians(23.45 * math.sin(2.0 * math.pi * (284 + doy) / 365.0))
    utc_h = when.hour + when.minute / 60.0 + when.second / 3600.0
    solar_h = utc_h + lon / 15.0 + eot_min / 60.0
    hour_angle = math.radians(15.0 * (solar_h - 12.0))
    phi = math.radians(lat)
    sin_el = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(hour_angle)
    elevation = math.asin(sin_el)
    azimuth = math.atan2(
        math.sin(hour_angle), math.cos(hour_angle) * math.sin(phi) - math.tan(decl) * math.cos(phi)
    )
    return (math.degrees(azimuth) + 180.0) % 360.0, math.degrees(elevation)


def acquisition_dates(sensor: Sensor, n_dates: int) -> list[datetime]:
    """Monthly acquisition times (UTC) from ``FIRST_DATE`` at the sensor's time of day."""
    year, month, day = FIRST_DATE
    dates = []
    for k in range(n_dates):
        y, m = year + (month - 1 + k) // 12, (month - 1 + k) % 12 + 1
        t = sensor.time_of_day
        dates.append(datetime(y, m, day, t.hour, t.minute, t.second, tzinfo=UTC))
    return dates


def plan_acquisitions(
    sensor: Sensor, grid: SceneGrid, centre_lonlat: tuple[float, float], n_dates: int, seed: int,
    dates: list[datetime] | None = None,
) -> list[SimulatedAcquisition]:
    """Draw the conditions of every scene, on ``dates`` (default: :func:`acquisition_dates`).

    About a third of the inner dates are cloudy (5 to 35 % cover, clouds 0.8 to 2 km high)
    and about a fifth lose 5 to 25 % of the scene beyond a swath edge. Misregistration is
    0.2 to 2 pixels in a random direction, rounded to 0.01 pixel (the rounded value is the
    one applied). Gains vary by a few percent per band, haze up to 0.05 reflectance.
    """
    rng = rng_for(seed, "acquisitions")
    inner = np.arange(1, n_dates - 1)
    n_cloudy = max(1, round(0.3 * inner.size)) if inner.size else 0
    n_edge = max(1, round(0.2 * inner.size)) if inner.size else 0
    cloudy = set(rng.choice(inner, n_cloudy, replace=False).tolist()) if n_cloudy else set()
    edged = set(rng.choice(inner, n_edge, replace=False).tolist()) if n_edge else set()
    half_width = grid.shape[1] * grid.pixel_m / 2.0

    plans = []
    for k, when in enumerate(dates or acquisition_dates(sensor, n_dates)):
        azimuth, elevation = sun_position(when, *centre_lonlat)
        if k == 0:
            shift = (0.0, 0.0)
        else:
            magnitude, angle = rng.uniform(0.2, 2.0), rng.uniform(0.0, 2.0 * math.pi)
            shift = (round(magnitude * math.cos(angle), 2), round(magnitude * math.sin(angle), 2))
        gains = tuple(float(g) for g in rng.normal(1.0, 0.03, len(sensor.bands)).round(4))
        haze = round(float(rng.uniform(0.0, 0.05)), 4)
        cloud = (
            CloudSpec(
                cover=round(float(rng.uniform(0.05, 0.35)), 3),
                height_m=round(float(rng.uniform(800.0, 2000.0)), 1),
            )
            if k in cloudy
            else None
        )
        edge = (
            SwathEdge(
                normal_deg=(TRACK_AZIMUTH_DEG + rng.choice([90.0, 270.0])) % 360.0,
                offset_m=round(float(rng.uniform(0.5, 0.9)) * half_width, 1),
            )
            if k in edged
            else None
        )
        plans.append(
            SimulatedAcquisition(
                index=k,
                datetime=when,
                item_id=f"sim-{sensor.name}-{when:%Y%m%d}",
                sun_azimuth_deg=round(azimuth, 2),
                sun_elevation_deg=round(elevation, 2),
                shift_px=shift,
                gains=gains,
                haze=haze,
                cloud=cloud,
                swath_edge=edge,
            )
        )
    return plans
