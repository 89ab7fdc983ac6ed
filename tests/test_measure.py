"""Site measurements: size, true-north orientation, places, border sides, MGRS.

Test geometry is built geodesically on WGS84 (pyproj.Geod) and then projected, so the expected
values do not depend on the projection maths the module itself uses.
"""

from __future__ import annotations

import json

import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from sitewatch.errors import SitewatchError
from sitewatch.sites.measure import compass_point, format_distance, measure

GEOD = pyproj.Geod(ellps="WGS84")
PLACE_LON, PLACE_LAT = 40.97, 34.39          # "Al-Qaim border crossing"
PLACE = {"name": "Al-Qaim border crossing", "kind": "border crossing",
         "geom": Point(PLACE_LON, PLACE_LAT)}


def to_grid(epsg, lon, lat):
    return pyproj.Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)


def to_lonlat(epsg, x, y):
    return pyproj.Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y)


def true_rectangle(lon, lat, length, width, azimuth, epsg):
    """A length x width rectangle centred on (lon, lat), long axis at ``azimuth`` degrees from
    true north, corners laid out geodesically, returned on the grid ``epsg``."""
    corners = []
    for along, across in ((1, 1), (1, -1), (-1, -1), (-1, 1)):
        alon, alat, _ = GEOD.fwd(lon, lat, azimuth if along > 0 else azimuth + 180, length / 2)
        clon, clat, _ = GEOD.fwd(alon, alat, azimuth + 90 * across, width / 2)
        corners.append(to_grid(epsg, clon, clat))
    return Polygon(corners)


def square_at(epsg, lon, lat, side=100.0):
    x, y = to_grid(epsg, lon, lat)
    return box(x - side / 2, y - side / 2, x + side / 2, y + side / 2)


def west_of_place(distance=2600.0):
    lon, lat, _ = GEOD.fwd(PLACE_LON, PLACE_LAT, 270.0, distance)
    return lon, lat


@pytest.mark.parametrize("azimuth", [17.0, 107.0, 163.0])
def test_rectangle_size_and_true_orientation(azimuth):
    # 40.94 E is ~1.9 deg east of zone 37's central meridian: grid north is ~1.1 deg off true.
    rect = true_rectangle(40.94, 34.39, 270.0, 165.0, azimuth, 32637)
    m = measure(rect, 32637)
    assert m.length_m == pytest.approx(270.0, abs=0.5)
    assert m.width_m == pytest.approx(165.0, abs=0.5)
    assert m.orientation_deg == pytest.approx(azimuth % 180.0, abs=0.3)
    assert 0.0 <= m.orientation_deg < 180.0
    assert m.rectangularity == pytest.approx(1.0, abs=1e-3)
    assert m.area_m2 == pytest.approx(270.0 * 165.0, rel=1e-3)
    assert m.perimeter_m == pytest.approx(2 * (270.0 + 165.0), abs=1.0)
    assert m.centroid_lon == pytest.approx(40.94, abs=1e-6)
    assert m.centroid_lat == pytest.approx(34.39, abs=1e-6)


def test_scale_factor_is_corrected_on_the_central_meridian():
    # k = 0.9996 on the central meridian (39 E): uncorrected grid values would be 0.04 % short.
    rect = true_rectangle(39.0, 34.39, 270.0, 165.0, 17.0, 32637)
    m = measure(rect, 32637)
    assert m.length_m == pytest.approx(270.0, abs=0.01)
    assert m.width_m == pytest.approx(165.0, abs=0.01)
    assert m.area_m2 == pytest.approx(44550.0, abs=1.0)
    assert m.orientation_deg == pytest.approx(17.0, abs=0.01)


@pytest.mark.parametrize("lon,lat,epsg", [(40.94, 34.39, 32637), (37.1, 34.39, 32637),
                                          (-47.9, -15.8, 32723), (-43.2, -15.8, 32723)])
def test_meridian_convergence_sign_true_north_line_is_zero(lon, lat, epsg):
    # A thin strip along a meridian, either side of the central meridian, both hemispheres.
    x0, y0 = to_grid(epsg, lon, lat)
    x1, y1 = to_grid(epsg, lon, lat + 0.005)
    strip = LineString([(x0, y0), (x1, y1)]).buffer(5.0, cap_style="flat")
    orientation = measure(strip, epsg).orientation_deg
    assert min(orientation, 180.0 - orientation) < 0.01


def test_place_due_west():
    lon, lat = west_of_place()
    m = measure(square_at(32637, lon, lat), 32637, places=[PLACE])
    (rel,) = m.places
    assert rel.distance_m == pytest.approx(2600.0, abs=5.0)
    assert rel.bearing_deg == pytest.approx(270.0, abs=0.5)
    assert rel.direction == "W"
    assert rel.phrase == "2.6 km W of Al-Qaim border crossing"
    assert rel.kind == "border crossing"


def test_places_sorted_by_distance_and_inside_place_is_at():
    lon, lat = west_of_place(850.0)
    far = {"name": "Husaybah", "kind": "town", "geom": Point(*GEOD.fwd(lon, lat, 0, 12400)[:2])}
    inside = {"name": "Depot", "kind": "facility", "geom": Point(*GEOD.fwd(lon, lat, 45, 20)[:2])}
    m = measure(square_at(32637, lon, lat), 32637, places=[far, PLACE, inside])
    assert [p.name for p in m.places] == ["Depot", "Al-Qaim border crossing", "Husaybah"]
    assert m.places[0].phrase == "at Depot"
    assert m.places[1].phrase == "850 m W of Al-Qaim border crossing"
    assert m.places[2].phrase == "12 km S of Husaybah"


def test_southern_hemisphere_other_zone():
    plon, plat = -47.9, -15.8
    lon, lat, _ = GEOD.fwd(plon, plat, 135.0, 4200.0)
    rect = true_rectangle(lon, lat, 270.0, 165.0, 17.0, 32723)
    m = measure(rect, 32723, places=[{"name": "Brasilia", "kind": "city",
                                      "geom": Point(plon, plat)}])
    assert m.length_m == pytest.approx(270.0, abs=0.5)
    assert m.width_m == pytest.approx(165.0, abs=0.5)
    assert m.orientation_deg == pytest.approx(17.0, abs=0.3)
    assert m.places[0].bearing_deg == pytest.approx(135.0, abs=0.5)
    assert m.places[0].phrase == "4.2 km SE of Brasilia"
    assert m.mgrs.startswith("23L ")


def test_mgrs_grid_zone_and_format():
    m = measure(square_at(32637, 40.94, 34.39), 32637)
    assert m.mgrs.startswith("37S ")
    zone, square, easting, northing = m.mgrs.split()
    assert len(square) == 2 and len(easting) == len(northing) == 4  # 10 m precision


NORTHWARD = {"name": "Iraq-Syria", "left_name": "Syria", "right_name": "Iraq",
             "geom": LineString([(PLACE_LON, 34.2), (PLACE_LON, 34.6)])}


def test_border_west_of_northward_line_is_left():
    m = measure(square_at(32637, *west_of_place()), 32637, places=[PLACE], borders=[NORTHWARD])
    b = m.border
    assert b.side == "Syria" and not b.crosses
    assert b.distance_m == pytest.approx(2550.0, abs=5.0)   # 100 m square: 50 m nearer
    assert b.phrase == "on the Syria side of the Iraq-Syria border, 2.5 km from it"
    assert m.location_phrase() == ("2.6 km W of Al-Qaim border crossing, on the Syria side of "
                                   "the Iraq-Syria border, 2.5 km from it")


def test_border_east_is_right_and_reversed_line_flips():
    lon, lat, _ = GEOD.fwd(PLACE_LON, PLACE_LAT, 90.0, 1300.0)
    site = square_at(32637, lon, lat)
    assert measure(site, 32637, borders=[NORTHWARD]).border.side == "Iraq"
    southward = dict(NORTHWARD, geom=LineString(NORTHWARD["geom"].coords[::-1]))
    assert measure(site, 32637, borders=[southward]).border.side == "Syria"
    unnamed = dict(NORTHWARD, right_name=None)
    b = measure(site, 32637, borders=[unnamed]).border
    assert b.side is None and b.phrase == "1.3 km from the Iraq-Syria border"


def test_border_straddling_footprint():
    b = measure(square_at(32637, PLACE_LON, PLACE_LAT, 300.0), 32637,
                borders=[NORTHWARD]).border
    assert b.crosses and b.distance_m == 0.0
    assert b.phrase == "straddling the Iraq-Syria border"


def test_nearest_border_is_reported():
    far = dict(NORTHWARD, name="Far line", geom=LineString([(40.5, 34.2), (40.5, 34.6)]))
    m = measure(square_at(32637, *west_of_place()), 32637, borders=[far, NORTHWARD])
    assert m.border.name == "Iraq-Syria"


def test_border_side_at_a_sharp_vertex():
    # North, then a 135 deg right turn to the south-east. The right side is the acute wedge
    # between the legs; a point just north of the vertex is nearest to the vertex itself, right
    # of the first leg's line but left of the second's: it lies on the left.
    epsg = 32637
    vx, vy = to_grid(epsg, PLACE_LON, PLACE_LAT)
    line = LineString([to_lonlat(epsg, vx, vy - 3000), to_lonlat(epsg, vx, vy),
                       to_lonlat(epsg, vx + 3000, vy - 3000)])
    border = {"name": "Bent line", "left_name": "L", "right_name": "R", "geom": line}
    north = box(vx + 40, vy + 90, vx + 60, vy + 110)     # centroid (50, 100) from the vertex
    wedge = box(vx + 490, vy - 1010, vx + 510, vy - 990)  # inside the acute wedge
    assert measure(north, epsg, borders=[border]).border.side == "L"
    assert measure(wedge, epsg, borders=[border]).border.side == "R"
    assert measure(wedge, epsg, borders=[border]).border.phrase.startswith("on the R side of "
                                                                             "the Bent line")


def test_to_dict_is_json_serialisable():
    m = measure(square_at(32637, *west_of_place()), 32637, places=[PLACE], borders=[NORTHWARD])
    d = json.loads(json.dumps(m.to_dict()))
    assert d["places"][0]["direction"] == "W" and d["border"]["side"] == "Syria"
    assert set(d) >= {"area_m2", "length_m", "width_m", "orientation_deg", "mgrs"}


def test_multipolygon_and_no_context():
    x, y = to_grid(32637, 40.94, 34.39)
    two = MultiPolygon([box(x, y, x + 100, y + 50), box(x + 200, y, x + 300, y + 50)])
    m = measure(two, 32637)
    assert m.rectangularity == pytest.approx(2 / 3, abs=1e-3)
    assert m.places == () and m.border is None
    assert m.location_phrase() == f"at MGRS {m.mgrs}"


@pytest.mark.parametrize("bearing,word", [(0, "N"), (11.2, "N"), (11.3, "NNE"), (90, "E"),
                                          (247.5, "WSW"), (270, "W"), (348.8, "N"),
                                          (359.9, "N"), (-90, "W")])
def test_compass_points(bearing, word):
    assert compass_point(bearing) == word


@pytest.mark.parametrize("metres,text", [(847, "850 m"), (994, "990 m"), (996, "1.0 km"),
                                         (2600, "2.6 km"), (9949, "9.9 km"), (9951, "10 km"),
                                         (27400, "27 km")])
def test_distance_wording(metres, text):
    assert format_distance(metres) == text


def test_user_mistakes_raise_sitewatch_error():
    rect = square_at(32637, 40.94, 34.39)
    with pytest.raises(SitewatchError, match="not a projected CRS in metres"):
        measure(rect, 4326)
    with pytest.raises(SitewatchError, match="not a conformal"):
        measure(rect, 6933)                                    # equal-area: angles distorted
    with pytest.raises(SitewatchError, match="no area"):
        measure(Polygon(), 32637)
    bad = dict(NORTHWARD, geom=LineString([(40.9, 34.3), (40.9, 34.3)]))
    with pytest.raises(SitewatchError, match="two or more distinct points"):
        measure(rect, 32637, borders=[bad])


def _geodesic_area(footprint, epsg):
    """Area of a grid-CRS polygon on the WGS84 ellipsoid, from its densified lon/lat ring."""
    ring = shapely.segmentize(footprint, 1.0).exterior.coords
    lons, lats = zip(*(to_lonlat(epsg, x, y) for x, y in ring), strict=True)
    lons = np.unwrap(np.radians(lons), period=2 * np.pi)  # continuous across the antimeridian
    area, _ = GEOD.polygon_area_perimeter(np.degrees(lons), lats)
    return abs(area)


@pytest.mark.parametrize("case, epsg, place, offset", [
    # 2 km from a place at 85 N, on the polar stereographic grid (UTM stops at 84 N)
    ("near the north pole", 32661, (10.0, 85.0), (137.0, 2000.0)),
    # site in UTM zone 37 measured from a place across the 42 E zone edge, in zone 38
    ("across a UTM zone edge", 32637, (42.02, 34.4), (260.0, 3500.0)),
    # site west of the antimeridian in zone 60, place east of it (lon -179.99)
    ("across the antimeridian", 32660, (-179.99, -16.5), (280.0, 2400.0)),
])
def test_distance_bearing_and_area_agree_with_pyproj_geod(case, epsg, place, offset):
    plon, plat = place
    azimuth, distance = offset
    lon, lat, _ = GEOD.fwd(plon, plat, azimuth, distance)
    footprint = true_rectangle(lon, lat, 120.0, 80.0, 30.0, epsg)
    m = measure(footprint, epsg, places=[{"name": "P", "kind": "place",
                                          "geom": Point(plon, plat)}])
    bearing, _, expected = GEOD.inv(plon, plat, m.centroid_lon, m.centroid_lat)
    (rel,) = m.places
    assert rel.distance_m == pytest.approx(expected, abs=0.01), case
    assert rel.distance_m == pytest.approx(distance, abs=1.0), case
    assert (rel.bearing_deg - bearing % 360 + 180) % 360 - 180 == pytest.approx(0, abs=1e-6)
    assert (rel.bearing_deg - azimuth + 180) % 360 - 180 == pytest.approx(0, abs=0.1), case
    assert m.area_m2 == pytest.approx(_geodesic_area(footprint, epsg), rel=1e-3), case
    assert m.area_m2 == pytest.approx(120.0 * 80.0, rel=1e-3), case
    assert m.length_m == pytest.approx(120.0, abs=0.2) and m.width_m == pytest.approx(80.0, abs=0.2)
