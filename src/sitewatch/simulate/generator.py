"""Randomised scenarios: the border-compound world with sites of every type placed at random.

The demo's scenario is one case; a method tuned to it fails elsewhere. Each seed here draws a
scene of the same world (desert, irrigated farmland, town edges, the river and its banks) with:

- **sites** of every type, one of each and one more of a random type: new construction
  (scraped ground, then buildings and, on larger sites, a wall), land clearing, demolition of a
  building, destruction followed by flattening and debris removal, and a stable structure;
- sizes (the long side) drawn log-uniformly from :data:`SIZE_RANGE_M` for the sensor, the short
  side 0.4 to 1 times it, a random orientation and a random outline (rectangle, L, irregular);
- each site on a background drawn in turn from :data:`BACKGROUNDS`, wherever the scene has it;
- **decoys**, changes that are not of interest and must not become sites: fields ploughed or
  harvested to bare soil, and the river in flood on one date (the seasonal crop cycles, the
  clouds, shadows and haze of every scene are there anyway);
- acquisition dates with random revisit gaps (:data:`REVISIT_DAYS`) and phase dates drawn
  between them.

A *decoy-only* scene has the decoys and no sites: every site found there is a false one.
Lengths in metres, orientations in degrees clockwise from true north in [0, 180).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from .acquisition import FIRST_DATE
from .instruments import Sensor
from .noise import rng_for
from .scenario import (
    CROSSING_LONLAT,
    Element,
    LocalFrame,
    Scenario,
    Site,
    build_scenario,
    oriented,
    rectangle,
    river_centreline,
    timeline_phases,
    towns,
)

#: Long side of the sites (metres) per sensor: from a few pixels' worth of site to a large
#: compound. Below about 40 m a Sentinel-2 site is under its 2000 m² minimum mapping unit.
SIZE_RANGE_M = {"s2": (40.0, 600.0), "vhr": (20.0, 200.0)}
#: Scene extent (width, height) in metres per sensor.
EXTENT_M = {"s2": (3000.0, 2400.0), "vhr": (1400.0, 900.0)}
#: Grounds a site is placed on, in turn.
BACKGROUNDS = ("desert", "farmland", "town_edge", "river_bank")
#: Site types, one of each per scene.
SITE_TYPES = ("new_construction", "land_clearing", "demolition", "destruction",
              "stable_structure")
#: Outline shapes of a site.
SHAPES = ("rectangle", "L", "irregular")
#: Days between consecutive acquisitions, drawn uniformly.
REVISIT_DAYS = (12, 60)
#: Where scene centres are drawn, local frame (metres from the crossing): from the desert south
#: of the valley to the river, across the towns and the fields.
CENTRE_BOX_M = (-5000.0, 0.0, 3000.0, 2600.0)
#: Clear ground kept between two sites, metres.
SITE_SPACING_M = 60.0
#: Placement attempts per site before it is left out (the loop is bounded).
PLACEMENT_TRIES = 300


def random_dates(sensor: Sensor, n_dates: int, seed: int) -> list[datetime]:
    """``n_dates`` acquisition times from ``FIRST_DATE`` with random revisit gaps."""
    rng = rng_for(seed, "revisits")
    year, month, day = FIRST_DATE
    t = sensor.time_of_day
    when = datetime(year, month, day, t.hour, t.minute, t.second, tzinfo=UTC)
    dates = [when]
    for gap in rng.integers(REVISIT_DAYS[0], REVISIT_DAYS[1] + 1, n_dates - 1):
        when = when + timedelta(days=int(gap))
        dates.append(when)
    return dates


def scene_centre_local(seed: int) -> Point:
    """The centre of a random scene, local frame."""
    rng = rng_for(seed, "scene centre")
    x0, y0, x1, y1 = CENTRE_BOX_M
    return Point(rng.uniform(x0, x1), rng.uniform(y0, y1))


def build_random_scenario(dates: list[datetime], seed: int, sensor: str,
                          extent_local: Polygon, *, with_sites: bool = True) -> Scenario:
    """A randomised scenario on ``dates`` whose sites and decoys lie inside ``extent_local``
    (a polygon of the local frame, metres from the crossing). ``sensor`` ("s2" or "vhr")
    sets the site sizes."""
    world = build_scenario(dates, seed)
    frame = LocalFrame(*CROSSING_LONLAT)
    rng = rng_for(seed, "random sites")
    zones = _zones(extent_local)
    sites: list[Site] = []
    if with_sites:
        types = [*SITE_TYPES, SITE_TYPES[int(rng.integers(len(SITE_TYPES)))]]
        taken: list[BaseGeometry] = []
        for i, site_type in enumerate(types):
            background = BACKGROUNDS[(i + seed) % len(BACKGROUNDS)]
            site = _random_site(i, site_type, background, zones, taken, frame, dates, rng,
                                SIZE_RANGE_M[sensor])
            if site is not None:
                sites.append(site)
    decoys = _decoys(world, extent_local, frame, dates, rng)
    return Scenario(name="random" if with_sites else "random-decoys", dates=tuple(dates),
                    places=world.places, border=world.border, sites=tuple(sites),
                    landscape=world.landscape, decoys=tuple(decoys))


def _zones(extent: Polygon) -> dict[str, BaseGeometry]:
    """The grounds of :data:`BACKGROUNDS` inside ``extent`` (local frame)."""
    river = river_centreline()
    town_union = shapely.union_all(list(towns().values()))
    return {
        "desert": extent.difference(river.buffer(1400.0)).difference(town_union.buffer(200.0)),
        "farmland": extent.intersection(river.buffer(1300.0)).difference(river.buffer(300.0))
                          .difference(town_union.buffer(100.0)),
        "town_edge": extent.intersection(town_union.buffer(150.0).difference(
            town_union.buffer(-150.0))),
        "river_bank": extent.intersection(river.buffer(260.0).difference(river.buffer(100.0))),
    }


def _outline(shape: str, length: float, width: float, rng: np.random.Generator) -> Polygon:
    """A site outline centred on the origin, long axis along +y."""
    if shape == "L":
        cut = box(0.0, 0.0, width / 2, length / 2)
        return rectangle(length, width).difference(cut)
    if shape == "irregular":
        angles = np.linspace(0.0, 2 * np.pi, 18, endpoint=False)
        scale = rng.uniform(0.8, 1.0, angles.size)
        return Polygon(np.column_stack([scale * width / 2 * np.sin(angles),
                                        scale * length / 2 * np.cos(angles)]))
    return rectangle(length, width)


def _random_site(i: int, site_type: str, background: str, zones, taken: list, frame, dates,
                 rng: np.random.Generator, size_range: tuple[float, float]) -> Site | None:
    """One site of ``site_type`` placed on ``background`` (or any ground if the scene lacks
    it), clear of the sites already ``taken``; None when it fits nowhere."""
    lo, hi = size_range
    length = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    width = length * float(rng.uniform(0.4, 1.0))
    theta = float(rng.uniform(0.0, 180.0))
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    local = _outline(shape, length, width, rng)
    grounds = [background] + [b for b in BACKGROUNDS if b != background]
    for ground in grounds:
        zone = zones[ground]
        if zone.is_empty or zone.area < length * width:
            continue
        x0, y0, x1, y1 = zone.bounds
        for _ in range(PLACEMENT_TRIES):
            centre = (float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1)))
            footprint = oriented(local, centre, theta)
            if not zone.contains(footprint):
                continue
            if any(footprint.buffer(SITE_SPACING_M).intersects(t) for t in taken):
                continue
            taken.append(footprint)
            return _site(f"{site_type}_{i}", site_type, ground, shape, local, centre, theta,
                         frame, dates, rng)
    return None


def _site(site_id: str, site_type: str, ground: str, shape: str, local: Polygon, centre,
          theta: float, frame, dates, rng: np.random.Generator) -> Site:
    """The site's elements date by date and its phases."""
    n = len(dates)

    def place(geometry):
        return frame.to_scene(oriented(geometry, centre, theta))

    buildings = _buildings(local, rng)
    structure = tuple(Element(place(b), m, h) for b, m, h in buildings)
    if site_type == "new_construction":
        k0 = int(rng.integers(2, n - 2))
        ground_el = (Element(place(local), "scraped"),)
        walls = ()
        half_width = local.bounds[2]
        if half_width >= 40.0:  # sites 80 m wide or more are walled
            ring = local.difference(local.buffer(-3.0))
            walls = (Element(place(ring), "concrete", 3.0),)
        half = max(1, len(structure) // 2)
        last_build = min(n - 1, k0 + 2)
        states = tuple(() if k < k0 else ground_el if k == k0 else
                       ground_el + walls + structure[:half] if k < last_build else
                       ground_el + walls + structure for k in range(n))
        names = [("cleared", k0), ("under_construction", k0 + 1)]
        if n - 1 - last_build >= 2:
            names.append(("completed", last_build + 1))
    elif site_type == "land_clearing":
        k0 = int(rng.integers(2, n - 1))
        states = tuple(() if k < k0 else (Element(place(local), "scraped"),) for k in range(n))
        names = [("cleared", k0)]
    elif site_type == "demolition":
        k0 = int(rng.integers(2, n - 1))
        base = (Element(place(local), "urban_ground"),)
        states = tuple(base + structure if k < k0 else (Element(place(local), "scraped"),)
                       for k in range(n))
        names = [("intact", 0), ("demolished", k0)]
    elif site_type == "destruction":
        gap = 1 if n < 10 else int(rng.integers(1, 3))
        k0 = int(rng.integers(2, n - 2 * gap))
        base = (Element(place(local), "urban_ground"),)
        destroyed = (Element(place(local), "char"),
                     *(Element(place(b.buffer(2.0)), "rubble") for b, _, _ in buildings),
                     Element(place(local.centroid.buffer(min(12.0, local.area ** 0.5 / 4))),
                             "crater"))
        flattened = (Element(place(local), "rubble"),)
        removed = (Element(place(local), "scraped"),)
        states = tuple(base + structure if k < k0 else destroyed if k < k0 + gap else
                       flattened if k < k0 + 2 * gap else removed for k in range(n))
        names = [("intact", 0), ("destroyed", k0), ("flattened", k0 + gap),
                 ("debris_removed", k0 + 2 * gap)]
    else:  # stable_structure
        base = (Element(place(local), "urban_ground"),)
        states = tuple(base + structure for _ in range(n))
        names = [("completed", 0)]
    footprint = place(local)
    rect = footprint.minimum_rotated_rectangle
    sides = sorted(_sides(rect))
    return Site(id=site_id, name=f"{site_type.replace('_', ' ')} on {ground} ({shape})",
                type=site_type, footprint=footprint, length_m=sides[1], width_m=sides[0],
                orientation_deg=theta % 180.0, phases=timeline_phases(names, dates, rng),
                states=states)


def _sides(rectangle_polygon: Polygon) -> tuple[float, float]:
    (x0, y0), (x1, y1), (x2, y2) = list(rectangle_polygon.exterior.coords)[:3]
    return math.hypot(x1 - x0, y1 - y0), math.hypot(x2 - x1, y2 - y1)


def _buildings(outline: Polygon, rng: np.random.Generator) -> list[tuple[Polygon, str, float]]:
    """Two to eight rectangular buildings inside ``outline`` (local, long axis along y):
    (footprint, roof material, height in metres)."""
    x0, y0, x1, y1 = outline.bounds
    inner = outline.buffer(-min(6.0, 0.1 * (x1 - x0)))
    if inner.is_empty:
        inner = outline
    wanted = int(rng.integers(2, 9))
    found: list[tuple[Polygon, str, float]] = []
    for _ in range(20 * wanted):
        if len(found) == wanted:
            break
        w = float(rng.uniform(0.15, 0.35)) * (x1 - x0)
        h = float(rng.uniform(0.1, 0.3)) * (y1 - y0)
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        candidate = box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        if inner.contains(candidate) and not any(candidate.buffer(2.0).intersects(b)
                                                 for b, _, _ in found):
            material = ("metal_roof", "concrete")[int(rng.integers(2))]
            found.append((candidate, material, float(rng.uniform(3.0, 9.0))))
    if not found:  # an outline too small for several: one building filling its middle
        found.append((affinity.scale(inner, 0.6, 0.6), "concrete", 4.0))
    return found


def _decoys(world: Scenario, extent: Polygon, frame, dates,
            rng: np.random.Generator) -> list[Site]:
    """Fields ploughed to bare soil (up to three) and the river in flood on one date, where the
    scene has them."""
    n = len(dates)
    extent_scene = frame.to_scene(extent)
    decoys = []
    fields = [p for p in world.landscape.parcels[1:] if extent_scene.contains(p.geometry)]
    for j in rng.permutation(len(fields))[:3]:
        field = fields[int(j)].geometry
        k0 = int(rng.integers(2, n - 1))
        soil = (Element(field, "field_soil"),)
        decoys.append(_decoy(f"ploughed_field_{len(decoys)}", "ploughed_field", field,
                             tuple(() if k < k0 else soil for k in range(n)),
                             [("ploughed", k0)], dates, rng))
    river = river_centreline()
    flood_local = river.buffer(100.0 + float(rng.uniform(50.0, 250.0))).intersection(extent)
    if not flood_local.is_empty and flood_local.area > 0:
        k0 = int(rng.integers(1, n - 1))
        flood = frame.to_scene(flood_local)
        decoys.append(_decoy("river_flood", "flood", flood,
                             tuple((Element(flood, "water"),) if k == k0 else ()
                                   for k in range(n)),
                             [("flooded", k0), ("receded", k0 + 1)], dates, rng))
    return decoys


def _decoy(decoy_id, decoy_type, footprint, states, names, dates, rng) -> Site:
    sides = sorted(_sides(footprint.minimum_rotated_rectangle))
    return Site(id=decoy_id, name=decoy_type.replace("_", " "), type=decoy_type,
                footprint=footprint, length_m=sides[1], width_m=sides[0],
                orientation_deg=0.0, phases=timeline_phases(names, dates, rng), states=states)

