"""The "border-compound" scenario: geography, sites and their timelines (the truth as data).

Modelled on a published open-source analysis of a walled compound built in 2019 next to the
Al-Qaim / Abu Kamal crossing on the Iraq-Syria border. Everything is laid out in metres in a
local azimuthal-equidistant frame centred on the crossing (x east, y true north), where
distances and bearings from the crossing are exact, then projected to the scene CRS
(UTM zone 37N). Geography is approximate: places are near their real positions, the river,
fields, towns and sites are invented.

Sites and their timelines (0-based date indices, ``n`` dates):

* the compound: 270 x 165 m, long axis 17 deg from north, centred 2.6 km due west of the
  crossing; ground scraped at ``n-4``, walls and first buildings at ``n-3``, more buildings
  at ``n-2`` and ``n-1``; still under construction at the last date;
* a stable neighbour: a walled yard with a building, complete from date 1;
* a destroyed building 600 m east-north-east of the compound: intact, destroyed (crater,
  burnt debris), flattened, then the debris removed, leaving scraped ground.

Each phase starts on an event day between two acquisitions; ``first_observed`` is the first
acquisition that shows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.crs import CRS as RasterioCRS
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from ..errors import SitewatchError
from .grid import SceneGrid
from .instruments import Sensor
from .noise import rng_for

SCENARIO_NAME = "border-compound"

#: The scene CRS: WGS 84 / UTM zone 37N.
SCENE_CRS = CRS.from_epsg(32637)

#: The border crossing (lon, lat), origin of the local frame.
CROSSING_LONLAT = (40.970, 34.390)

#: Fewest dates that fit every site's timeline.
MIN_DATES = 6

COMPOUND_CENTRE = (-2600.0, 0.0)
COMPOUND_SIZE = (270.0, 165.0)
COMPOUND_ORIENTATION_DEG = 17.0


@dataclass(frozen=True)
class Element:
    """One painted piece of a site on one date.

    Attributes
    ----------
    geometry
        Footprint polygon in the scene CRS.
    material
        Name of a material in :data:`sitewatch.simulate.spectra.LIBRARY`.
    height_m
        Height above ground (metres); elements above ground cast shadows.
    """

    geometry: BaseGeometry
    material: str
    height_m: float = 0.0


@dataclass(frozen=True)
class Phase:
    """A phase of a site's life: ``start`` (event day) to ``end`` (None while ongoing)."""

    phase: str
    start: date
    end: date | None
    first_observed: datetime


@dataclass(frozen=True)
class Site:
    """A site of interest with its ground truth.

    Attributes
    ----------
    id, name
        Identifier and human-readable name.
    type
        "new_construction", "stable_structure" or "destruction".
    footprint
        Final footprint polygon (scene CRS).
    length_m, width_m
        Sides of the footprint rectangle (metres), length the longer.
    orientation_deg
        Azimuth of the long axis, degrees clockwise from true north, in [0, 180).
    phases
        The site's phases in order.
    states
        Per date, the elements to paint (empty: nothing there yet).
    """

    id: str
    name: str
    type: str
    footprint: Polygon
    length_m: float
    width_m: float
    orientation_deg: float
    phases: tuple[Phase, ...]
    states: tuple[tuple[Element, ...], ...]


@dataclass(frozen=True)
class Place:
    """A reference place: a point with a name, a kind and the country it lies in."""

    name: str
    kind: str
    country: str
    point: Point


@dataclass(frozen=True)
class Border:
    """A national border line; ``left``/``right`` as seen walking along the line."""

    name: str
    left: str
    right: str
    line: LineString


@dataclass(frozen=True)
class Parcel:
    """A vegetated parcel with a seasonal green-cover cycle.

    Green cover fraction on day-of-year ``d`` is ``base + amplitude * exp(-(dd / width)**2)``,
    ``dd`` the circular distance in days from ``peak_doy``.
    """

    geometry: Polygon
    base: float
    amplitude: float
    peak_doy: float
    width_days: float

    def green_fraction(self, doy: int) -> float:
        """Green vegetation cover (0..1) on day-of-year ``doy``."""
        dd = (doy - self.peak_doy + 182.5) % 365.0 - 182.5
        return self.base + self.amplitude * math.exp(-((dd / self.width_days) ** 2))


@dataclass(frozen=True)
class Landscape:
    """The static background (scene CRS).

    ``layers`` are (material, geometries) pairs painted in order over the desert;
    ``parcels`` are the riparian strip (first) and the fields, whose green cover changes
    with the season.
    """

    layers: tuple[tuple[str, tuple[BaseGeometry, ...]], ...]
    parcels: tuple[Parcel, ...]


@dataclass(frozen=True)
class Scenario:
    """Everything true about the simulated world, independent of any sensor."""

    name: str
    dates: tuple[datetime, ...]
    places: tuple[Place, ...]
    border: Border
    sites: tuple[Site, ...]
    landscape: Landscape
    #: Changes that are not of interest (ploughed fields, floods), painted like sites and
    #: written to the truth as decoys: a site found on one is a false site.
    decoys: tuple[Site, ...] = ()


class LocalFrame:
    """Azimuthal-equidistant frame (metres, x east, y north) centred on the crossing."""

    def __init__(self, lon: float, lat: float):
        aeqd = CRS.from_proj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m")
        self._to_scene = Transformer.from_crs(aeqd, SCENE_CRS, always_xy=True)
        self._to_lonlat = Transformer.from_crs(aeqd, "EPSG:4326", always_xy=True)
        self._to_local = Transformer.from_crs(SCENE_CRS, aeqd, always_xy=True)

    def to_scene(self, geom):
        """Project a local geometry (or array of geometries) to the scene CRS."""
        return shapely.transform(geom, self._xy(self._to_scene))

    def to_local(self, geom):
        """Project a scene-CRS geometry back to the local frame."""
        return shapely.transform(geom, self._xy(self._to_local))

    def to_lonlat(self, geom):
        """Project a local geometry to longitude/latitude (EPSG:4326)."""
        return shapely.transform(geom, self._xy(self._to_lonlat))

    @staticmethod
    def _xy(transformer: Transformer):
        def apply(coords: np.ndarray) -> np.ndarray:
            x, y = transformer.transform(coords[:, 0], coords[:, 1])
            return np.column_stack([x, y])

        return apply


def oriented(geom: BaseGeometry, centre: tuple[float, float], azimuth_deg: float):
    """Place a shape drawn with its long axis along +y at ``centre``, rotated to azimuth."""
    return affinity.translate(affinity.rotate(geom, -azimuth_deg, origin=(0, 0)), *centre)


def rectangle(length: float, width: float) -> Polygon:
    """A rectangle centred on the origin, ``length`` along y and ``width`` along x."""
    return box(-width / 2, -length / 2, width / 2, length / 2)


def _event_day(dates: tuple[datetime, ...], index: int, rng: np.random.Generator) -> date:
    """A day strictly between dates[index-1] and dates[index]: when a change first seen at
    ``index`` happened."""
    before, after = dates[index - 1].date(), dates[index].date()
    return before + timedelta(days=int(rng.integers(1, (after - before).days)))


def timeline_phases(names_and_indices, dates, rng) -> tuple[Phase, ...]:
    """Phases from (name, first date index) pairs; index 0 means "since the start"."""
    starts = [
        dates[0].date() if i == 0 else _event_day(dates, i, rng) for _, i in names_and_indices
    ]
    return tuple(
        Phase(name, starts[j], starts[j + 1] if j + 1 < len(starts) else None, dates[i])
        for j, (name, i) in enumerate(names_and_indices)
    )


def _compound(frame: LocalFrame, dates, rng) -> Site:
    n = len(dates)
    length, width = COMPOUND_SIZE
    theta = COMPOUND_ORIENTATION_DEG

    def place(g):
        return frame.to_scene(oriented(g, COMPOUND_CENTRE, theta))

    outer = rectangle(length, width)
    wall = outer.difference(rectangle(length - 6.0, width - 6.0)).difference(
        box(width / 2 - 4, -6, width / 2 + 1, 6)
    )  # 3 m walls, gate in the east wall
    buildings = [
        [
            (-60, 90, -20, 110, "metal_roof", 5.0),
            (-60, 60, -20, 80, "metal_roof", 5.0),
            (20, 95, 60, 115, "concrete", 4.0),
        ],
        [
            (-55, -40, 5, -10, "concrete", 8.0),
            (20, 40, 60, 55, "metal_roof", 4.5),
            (20, 15, 60, 30, "metal_roof", 4.5),
            (-78, 128, -72, 134, "concrete", 9.0),
            (72, -134, 78, -128, "concrete", 9.0),
        ],
        [
            (-60, -110, -20, -95, "metal_roof", 4.5),
            (20, -110, 60, -95, "metal_roof", 4.5),
            (20, -80, 60, -65, "concrete", 5.0),
        ],
    ]
    ground = (Element(place(outer), "scraped"),)
    walls = (Element(place(wall), "concrete", 3.5),)
    apron = (Element(place(box(-70, -80, -25, -50)), "asphalt"),)
    built = [
        tuple(Element(place(box(x0, y0, x1, y1)), m, h) for x0, y0, x1, y1, m, h in group)
        for group in buildings
    ]
    by_index = {
        n - 4: ground,
        n - 3: ground + walls + built[0],
        n - 2: ground + walls + built[0] + built[1],
        n - 1: ground + apron + walls + built[0] + built[1] + built[2],
    }
    states = tuple(by_index.get(k, ()) for k in range(n))
    return Site(
        id="compound",
        name="New walled compound",
        type="new_construction",
        footprint=place(outer),
        length_m=length,
        width_m=width,
        orientation_deg=theta,
        phases=timeline_phases([("cleared", n - 4), ("under_construction", n - 3)], dates, rng),
        states=states,
    )


def _stable_neighbour(frame: LocalFrame, dates, rng) -> Site:
    centre, theta, length, width = (-2850.0, 300.0), 105.0, 70.0, 50.0

    def place(g):
        return frame.to_scene(oriented(g, centre, theta))

    yard = rectangle(length, width)
    state = (
        Element(place(yard), "urban_ground"),
        Element(place(yard.difference(rectangle(length - 5, width - 5))), "concrete", 3.0),
        Element(place(box(-7, -5, 7, 25)), "metal_roof", 6.0),
    )
    return Site(
        id="stable_yard",
        name="Walled yard (stable)",
        type="stable_structure",
        footprint=place(yard),
        length_m=length,
        width_m=width,
        orientation_deg=theta,
        phases=timeline_phases([("completed", 1)], dates, rng),
        states=tuple(() if k == 0 else state for k in range(len(dates))),
    )


def _destroyed_building(frame: LocalFrame, dates, rng) -> Site:
    n = len(dates)
    gap = 2 if n >= 10 else 1
    hit = max(1, (n - 1 - 2 * gap) // 2)
    centre, theta, length, width = (-2056.0, 254.0), 65.0, 40.0, 24.0

    def place(g):
        return frame.to_scene(oriented(g, centre, theta))

    footprint = rectangle(length, width)
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    radii = 30.0 * (1 + 0.25 * rng.uniform(-1, 1, angles.size))
    scar = Polygon(np.column_stack([radii * np.sin(angles), radii * np.cos(angles) + 4.0]))
    intact = (Element(place(footprint), "concrete", 7.0),)
    destroyed = (
        Element(place(scar), "char"),
        Element(place(footprint.buffer(3.0)), "rubble"),
        Element(place(Point(2.0, 5.0).buffer(6.0)), "crater"),
        Element(place(box(-12, -20, -9, -8)), "concrete", 4.0),
        Element(place(box(6, 14, 12, 17)), "concrete", 3.0),
    )
    flattened = (Element(place(scar), "scar"), Element(place(footprint.buffer(5.0)), "rubble"))
    cleared = (Element(place(footprint.buffer(8.0)), "scraped"),)
    states = tuple(
        intact
        if k < hit
        else destroyed
        if k < hit + gap
        else flattened
        if k < hit + 2 * gap
        else cleared
        for k in range(n)
    )
    return Site(
        id="destroyed_building",
        name="Destroyed warehouse",
        type="destruction",
        footprint=place(footprint),
        length_m=length,
        width_m=width,
        orientation_deg=theta,
        phases=timeline_phases(
            [
                ("intact", 0),
                ("destroyed", hit),
                ("flattened", hit + gap),
                ("debris_removed", hit + 2 * gap),
            ],
            dates,
            rng,
        ),
        states=states,
    )


def river_centreline() -> LineString:
    x = np.linspace(-7000.0, 5000.0, 600)
    y = (
        2550.0
        + 300.0 * np.sin(2 * np.pi * x / 3800.0 + 0.8)
        + 120.0 * np.sin(2 * np.pi * x / 1300.0 + 2.0)
        - 0.08 * x
    )
    return LineString(np.column_stack([x, y]))


def towns() -> dict[str, Polygon]:
    def blob(cx, cy, rx, ry):
        return affinity.scale(Point(cx, cy).buffer(1.0, 32), rx, ry)

    return {
        "Abu Kamal": blob(-3700.0, 2100.0, 1100.0, 600.0),
        "Al-Qaim": blob(2000.0, 1500.0, 900.0, 500.0),
    }


def _houses(town: Polygon, rng: np.random.Generator) -> np.ndarray:
    """Small house footprints (array of local polygons) on a street grid inside ``town``."""
    minx, miny, maxx, maxy = town.bounds
    gx, gy = np.meshgrid(np.arange(minx, maxx, 24.0), np.arange(miny, maxy, 24.0))
    keep = shapely.contains_xy(town, gx, gy) & (rng.random(gx.shape) < 0.75)
    cx, cy = gx[keep], gy[keep]
    half = rng.uniform(4.0, 9.0, (2, cx.size))
    return shapely.box(cx - half[0], cy - half[1], cx + half[0], cy + half[1])


def _parcels(floodplain: Polygon, rng: np.random.Generator) -> list[Parcel]:
    """Rectangular fields on a grid rotated 12 deg, clipped to the floodplain.

    Crops: winter cereal (green peak mid-March), summer crop (peak early August), orchards
    (evergreen) and fallow, as in irrigated Euphrates-valley agriculture.
    """
    minx, miny, maxx, maxy = floodplain.bounds
    step_x, step_y, gap = 170.0, 120.0, 8.0
    cx, cy = np.meshgrid(np.arange(minx, maxx, step_x), np.arange(miny, maxy, step_y))
    cells = shapely.box(
        cx - (step_x - gap) / 2,
        cy - (step_y - gap) / 2,
        cx + (step_x - gap) / 2,
        cy + (step_y - gap) / 2,
    ).ravel()
    cells = np.array([affinity.rotate(c, -12.0, origin=floodplain.centroid) for c in cells])
    clipped = shapely.intersection(cells, floodplain)
    keep = shapely.area(clipped) > 0.4 * (step_x - gap) * (step_y - gap)
    crops = {  # name: (probability, base, amplitude, peak day-of-year, width in days)
        "winter": (0.4, 0.05, 0.80, 75.0, 45.0),
        "summer": (0.3, 0.05, 0.75, 215.0, 35.0),
        "orchard": (0.15, 0.45, 0.15, 150.0, 80.0),
        "fallow": (0.15, 0.02, 0.0, 0.0, 1.0),
    }
    names = list(crops)
    choice = rng.choice(len(names), size=keep.sum(), p=[crops[c][0] for c in names])
    parcels = []
    for geom, c in zip(clipped[keep], choice, strict=True):
        _, base, amplitude, peak, width = crops[names[c]]
        parcels.append(
            Parcel(
                geom, base, amplitude * rng.uniform(0.8, 1.1), peak + rng.uniform(-15, 15), width
            )
        )
    return parcels


def _landscape(frame: LocalFrame, border_local: LineString, seed: int) -> Landscape:
    rng = rng_for(seed, "landscape")
    river_line = river_centreline()
    river = river_line.buffer(90.0)
    banks = river_line.buffer(260.0).difference(river)
    town_shapes = towns()
    roads = [
        LineString([(-3700, 1900), (-2900, 1350), (-1500, 600), (0, 0)]),
        LineString([(0, 0), (900, 700), (2000, 1400)]),
        LineString([(0, 0), (350, -1400), (700, -4000)]),
    ]
    tracks = [LineString([(-1750, 730), (-2300, 100), (-2350, -4000)])]
    crossing = [box(-150, -60, 150, 60), box(-120, 70, -40, 95), box(40, -95, 120, -70)]
    road_union = shapely.union_all([r.buffer(40.0) for r in roads])
    floodplain = (
        river_line.buffer(1300.0)
        .difference(river_line.buffer(260.0))
        .difference(shapely.union_all(list(town_shapes.values())).buffer(50.0))
        .difference(road_union)
    )
    fields = _parcels(floodplain, rng)
    houses = np.concatenate([_houses(t, rng) for t in town_shapes.values()])
    riparian = Parcel(banks, 0.45, 0.2, 120.0, 90.0)

    def scene(geoms):
        return tuple(frame.to_scene(np.asarray(geoms, dtype=object)).tolist())

    layers = (
        ("urban_ground", scene(list(town_shapes.values()))),
        ("concrete", scene(houses)),
        ("scraped", scene([border_local.buffer(4.0)] + [t.buffer(3.0) for t in tracks])),
        ("asphalt", scene([r.buffer(6.0) for r in roads] + [crossing[0]])),
        ("metal_roof", scene(crossing[1:])),
        ("water", scene([river])),
    )
    parcels = tuple(
        Parcel(frame.to_scene(p.geometry), p.base, p.amplitude, p.peak_doy, p.width_days)
        for p in [riparian, *fields]
    )
    return Landscape(layers=layers, parcels=parcels)


def build_scenario(dates: list[datetime], seed: int) -> Scenario:
    """The border-compound scenario for the given acquisition dates.

    Raises
    ------
    SitewatchError
        If there are fewer than :data:`MIN_DATES` dates.
    """
    if len(dates) < MIN_DATES:
        raise SitewatchError(
            f"n_dates={len(dates)} is too few for the border-compound scenario; "
            f"use at least {MIN_DATES}"
        )
    dates = tuple(dates)
    frame = LocalFrame(*CROSSING_LONLAT)
    rng = rng_for(seed, "timeline")
    border_local = LineString(
        [(1300, -4800), (400, -1400), (0, 0), (-450, 1300), (-900, 2600), (-1600, 4800)]
    )
    town_shapes = towns()
    places = (
        Place(
            "Al-Qaim border crossing",
            "border crossing",
            "Iraq/Syria",
            frame.to_scene(Point(0.0, 0.0)),
        ),
        Place("Abu Kamal", "town", "Syria", frame.to_scene(town_shapes["Abu Kamal"].centroid)),
        Place("Al-Qaim", "town", "Iraq", frame.to_scene(town_shapes["Al-Qaim"].centroid)),
    )
    return Scenario(
        name=SCENARIO_NAME,
        dates=dates,
        places=places,
        border=Border(
            "Iraq-Syria border", left="Syria", right="Iraq", line=frame.to_scene(border_local)
        ),
        sites=(
            _compound(frame, dates, rng),
            _stable_neighbour(frame, dates, rng),
            _destroyed_building(frame, dates, rng),
        ),
        landscape=_landscape(frame, border_local, seed),
    )


def scene_centre(sensor_name: str) -> Point:
    """Centre of the default scene (scene CRS): between compound and crossing for s2,
    on the compound for vhr."""
    frame = LocalFrame(*CROSSING_LONLAT)
    local = Point(-1300.0, 300.0) if sensor_name == "s2" else Point(*COMPOUND_CENTRE)
    return frame.to_scene(local)


def scene_grid(sensor: Sensor, size_m: tuple[float, float] | None = None,
               centre: Point | None = None) -> SceneGrid:
    """The scene grid: north-up UTM 37N at the sensor's finest pixel size.

    The extent (default ``sensor.default_size_m``) is rounded up to whole coarsest pixels
    and centred on ``centre`` (scene CRS; default :func:`scene_centre`), with its corner
    snapped to a multiple of the coarsest pixel size, so every band's pixels nest exactly.

    Raises
    ------
    SitewatchError
        If ``size_m`` is not two positive numbers.
    """
    width, height = sensor.default_size_m if size_m is None else _size(size_m)
    unit = sensor.extent_unit_m
    width, height = math.ceil(width / unit) * unit, math.ceil(height / unit) * unit
    centre = scene_centre(sensor.name) if centre is None else centre
    left = math.floor((centre.x - width / 2) / unit) * unit
    bottom = math.floor((centre.y - height / 2) / unit) * unit
    px = sensor.pixel_m
    return SceneGrid(
        crs=RasterioCRS.from_epsg(SCENE_CRS.to_epsg()),
        transform=Affine(px, 0.0, left, 0.0, -px, bottom + height),
        shape=(round(height / px), round(width / px)),
    )


def _size(size_m) -> tuple[float, float]:
    try:
        width, height = (float(v) for v in size_m)
    except (TypeError, ValueError):
        raise SitewatchError(f"size_m={size_m!r} must be (width, height) in metres") from None
    if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
        raise SitewatchError(f"size_m={size_m!r} must be two positive numbers of metres")
    return width, height
