"""Change polygons: clean-up, merging, holes, vectorisation and right-angle simplification."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import shapely
from affine import Affine
from rasterio.features import rasterize
from rasterio.transform import from_origin
from shapely import affinity
from shapely.geometry import Point, Polygon, box

from sitewatch.errors import SitewatchError
from sitewatch.sites.polygons import (
    change_polygons,
    dated_change_polygons,
    half_maximum_footprint,
    rectangularity,
)

#: Upper-left corner of every test grid, metres (a UTM easting/northing).
X0, Y0 = 500_000.0, 4_000_000.0


def grid(pixel_m: float) -> Affine:
    return from_origin(X0, Y0, pixel_m, pixel_m)


def burn(geometry, shape: tuple[int, int], transform: Affine) -> np.ndarray:
    """Pixels whose centre lies in ``geometry``."""
    return rasterize([geometry], out_shape=shape, transform=transform).astype(bool)


def ragged(mask: np.ndarray, seed: int, fraction: float = 0.2) -> np.ndarray:
    """``mask`` with a ``fraction`` of the pixels on either side of its edge flipped."""
    edge = ndi.binary_dilation(mask) & ~ndi.binary_erosion(mask)
    return mask ^ (edge & (np.random.default_rng(seed).random(mask.shape) < fraction))


def rotated_rectangle(length: float, width: float, degrees: float, centre: tuple[float, float]):
    cx, cy = centre
    rectangle = box(cx - length / 2, cy - width / 2, cx + length / 2, cy + width / 2)
    return affinity.rotate(rectangle, degrees, origin=centre)


def sides(polygon: Polygon) -> tuple[float, float]:
    """(length, width) of the minimum rotated rectangle, metres."""
    corners = np.asarray(shapely.oriented_envelope(polygon).exterior.coords)
    edges = np.hypot(*np.diff(corners[:3], axis=0).T)
    return float(edges.max()), float(edges.min())


def corner_angles(polygon: Polygon) -> np.ndarray:
    """Interior angles of the exterior ring, degrees."""
    xy = np.asarray(polygon.exterior.coords)[:-1]
    before, after = np.roll(xy, 1, axis=0) - xy, np.roll(xy, -1, axis=0) - xy
    cosine = np.sum(before * after, axis=1) / (np.hypot(*before.T) * np.hypot(*after.T))
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def mrr_rectangularity(polygon: Polygon) -> float:
    """Area over minimum rotated rectangle area."""
    return polygon.area / shapely.oriented_envelope(polygon).area


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("pixel_m", "length", "width", "size"),
                         [(10.0, 270.0, 165.0, 40), (0.5, 60.0, 40.0, 160), (2.0, 60.0, 40.0, 48)])
def test_rotated_rectangle_comes_out_right_angled(pixel_m, length, width, size, seed):
    transform = grid(pixel_m)
    centre = (X0 + size * pixel_m / 2, Y0 - size * pixel_m / 2)
    truth = rotated_rectangle(length, width, 17.0, centre)
    mask = ragged(burn(truth, (size, size), transform), seed)

    mmu = min(2000.0, truth.area / 2)
    polygons = change_polygons(mask, transform, min_area_m2=mmu)
    pixels, = change_polygons(mask, transform, min_area_m2=mmu, simplify=False)

    assert len(polygons) == 1
    site = polygons[0]
    assert site.is_valid
    found_length, found_width = sides(site)
    assert found_length == pytest.approx(length, rel=0.05)
    assert found_width == pytest.approx(width, rel=0.05)
    assert mrr_rectangularity(site) >= 0.95
    assert np.all(np.abs(corner_angles(site) - 90.0) <= 5.0)
    assert site.area == pytest.approx(pixels.area, rel=0.05)
    assert site.intersection(truth).area / site.union(truth).area > 0.9
    directions = np.degrees(np.arctan2(*np.diff(site.exterior.coords, axis=0)[:, ::-1].T)) % 90
    assert np.all(np.abs(directions - 17.0) <= 3.0)


def compound(with_buildings: bool) -> tuple[np.ndarray, Affine]:
    """A 270 x 160 m walled compound at 10 m: 2-pixel walls broken at a corner and by a 2-pixel
    gate, and, optionally, two inner buildings standing free in the courtyard (3 pixels from the
    walls, farther than the merge distance)."""
    mask = np.zeros((30, 40), dtype=bool)
    rows, cols = slice(5, 21), slice(5, 32)  # 16 x 27 pixels
    mask[rows, cols] = True
    mask[7:19, 7:30] = False  # courtyard, 12 x 23 pixels
    mask[5:7, 29] = False  # broken corner
    mask[19:21, 15:17] = False  # gate, 2 pixels wide
    if with_buildings:
        mask[10:13, 10:15] = True
        mask[13:16, 20:26] = True
    return mask, grid(10.0)


def test_walled_compound_with_inner_buildings_is_one_site():
    mask, transform = compound(with_buildings=True)
    polygons = change_polygons(mask, transform)
    assert len(polygons) == 1
    site = polygons[0]
    assert site.bounds == pytest.approx((X0 + 50, Y0 - 210, X0 + 320, Y0 - 50), abs=1e-6)
    assert len(site.exterior.coords) == 5  # a rectangle
    # The buildings make the courtyard part of the site: no hole, no separate island.
    assert len(site.interiors) == 0


def test_empty_courtyard_stays_a_hole():
    mask, transform = compound(with_buildings=False)
    polygons = change_polygons(mask, transform)
    assert len(polygons) == 1
    site = polygons[0]
    assert len(site.interiors) == 1
    courtyard = Polygon(site.interiors[0])
    assert courtyard.area == pytest.approx(12 * 23 * 100.0, rel=0.05)
    assert site.area == pytest.approx(mask.sum() * 100.0 + 4 * 100.0, rel=0.05)  # gaps closed


def test_small_hole_filled_large_courtyard_kept():
    transform = grid(10.0)
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:35, 5:35] = True
    mask[10, 10] = False  # one pixel, 100 m2
    mask[15:30, 15:30] = False  # 225 pixels, 22 500 m2
    site, = change_polygons(mask, transform, fill_holes_m2=2000.0)
    assert len(site.interiors) == 1
    assert site.area == pytest.approx((900 - 225) * 100.0, rel=0.02)
    site, = change_polygons(mask, transform, fill_holes_m2=30_000.0)
    assert len(site.interiors) == 0


def test_objects_apart_stay_separate_and_merge_within_distance():
    transform = grid(10.0)
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:20, 5:15] = True
    mask[5:20, 18:28] = True  # 3 pixels (30 m) away
    assert len(change_polygons(mask, transform)) == 2  # default merge: 2 pixels = 20 m
    assert len(change_polygons(mask, transform, merge_distance_m=30.0)) == 1
    mask[5:20, 17] = True  # now 2 pixels apart
    assert len(change_polygons(mask, transform)) == 1


def test_specks_and_objects_below_the_mmu_disappear():
    transform = grid(10.0)
    mask = np.zeros((60, 60), dtype=bool)
    mask[10:30, 10:30] = True  # 40 000 m2
    mask[45, 45] = mask[50, 5] = True  # isolated pixels
    mask[5, 50:52] = True  # a 2-pixel speck
    mask[45:49, 20:24] = True  # 16 pixels = 1600 m2 < 2000 m2
    polygons = change_polygons(mask, transform)
    assert len(polygons) == 1
    assert polygons[0].area == pytest.approx(40_000.0, rel=0.01)
    assert len(change_polygons(mask, transform, min_area_m2=1000.0)) == 2


def test_disk_is_smoothed_not_squared():
    transform = grid(1.0)
    disk = Point(X0 + 60, Y0 - 60).buffer(25.0)
    mask = burn(disk, (120, 120), transform)
    site, = change_polygons(mask, transform, min_area_m2=100.0)
    pixel_area = float(mask.sum())
    assert site.is_valid
    assert site.area == pytest.approx(pixel_area, rel=0.05)
    assert site.area == pytest.approx(disk.area, rel=0.05)
    assert len(site.exterior.coords) - 1 >= 16  # rounded, not a rectangle
    assert len(site.exterior.coords) < len(change_polygons(
        mask, transform, min_area_m2=100.0, simplify=False)[0].exterior.coords)  # steps gone
    assert mrr_rectangularity(site) < 0.85
    assert rectangularity(site) < 0.9


def test_rectangularity_measure():
    assert rectangularity(rotated_rectangle(100, 30, 33, (0, 0))) == pytest.approx(1.0)
    assert rectangularity(Point(0, 0).buffer(10, quad_segs=64)) == pytest.approx(0.83, abs=0.01)


def test_coordinates_are_in_the_grid_crs():
    transform = from_origin(X0, Y0, 10.0, 5.0)  # non-square pixels: 10 m wide, 5 m high
    mask = np.zeros((50, 30), dtype=bool)
    mask[12:40, 4:20] = True
    site, = change_polygons(mask, transform)
    left, top = transform @ (4, 12)
    right, bottom = transform @ (20, 40)
    assert site.bounds == pytest.approx((left, bottom, right, top), abs=1e-6)
    assert site.area == pytest.approx(16 * 28 * 50.0)


def test_raw_polygons_are_pixel_exact_and_sorted_largest_first():
    transform = grid(10.0)
    mask = np.zeros((40, 40), dtype=bool)
    mask[2:8, 2:8] = True
    mask[20:35, 20:36] = True
    mask[2:12, 25:35] = True
    polygons = change_polygons(mask, transform, simplify=False)
    assert [p.area for p in polygons] == [240 * 100.0, 100 * 100.0, 36 * 100.0]


def test_diagonal_contact_gives_one_valid_polygon():
    transform = grid(10.0)
    mask = np.zeros((30, 30), dtype=bool)
    mask[5:12, 5:12] = True
    mask[12:19, 12:19] = True  # touches the first square only at a corner
    polygons = change_polygons(mask, transform, merge_distance_m=0.0, simplify=False)
    assert len(polygons) == 1
    assert polygons[0].is_valid


def test_invalid_pixels_are_not_change_and_do_not_block_merging():
    transform = grid(10.0)
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:35, 5:35] = True
    valid = np.ones_like(mask)
    valid[:, 19:21] = False  # a 2-pixel cloud strip across the object
    valid[12:28, 25:31] = False  # an unseen patch inside: 96 pixels, 9600 m2
    mask[12:28, 25:31] = False

    site, = change_polygons(mask, transform, valid=valid)
    assert len(site.interiors) == 0  # unseen patch filled, though larger than fill_holes_m2
    assert site.area == pytest.approx(900 * 100.0, rel=0.02)

    valid[:, 18:22] = False  # a 4-pixel strip is wider than the 20 m merge distance
    assert len(change_polygons(mask, transform, valid=valid)) == 2
    # Seen unchanged, the same patch is a courtyard.
    assert len(change_polygons(mask, transform)[0].interiors) == 1


def test_empty_mask_and_bad_inputs():
    transform = grid(10.0)
    assert change_polygons(np.zeros((10, 10), dtype=bool), transform) == []
    with pytest.raises(SitewatchError, match="north-up"):
        change_polygons(np.ones((10, 10), dtype=bool),
                        transform @ Affine.rotation(10.0))
    with pytest.raises(ValueError, match="valid"):
        change_polygons(np.ones((10, 10), dtype=bool), transform, valid=np.ones((5, 5), bool))
    with pytest.raises(ValueError, match="min_area_m2"):
        change_polygons(np.ones((10, 10), dtype=bool), transform, min_area_m2=-1.0)


@pytest.mark.parametrize("radius_m, pixel_size", [(15.0, (10.0, 10.0)), (0.75, (0.5, 0.5)),
                                                  (25.0, (10.0, 5.0))])
def test_closing_with_a_disk_matches_the_distance_transform_definition(radius_m, pixel_size):
    from scipy import ndimage

    from sitewatch.sites.polygons import _close

    rng = np.random.default_rng(4)
    change = ndimage.binary_dilation(rng.random((120, 150)) > 0.985, iterations=2)
    change[0, 40:50] = True  # an object on the edge
    tolerance = 1e-6 * min(pixel_size)
    dilated = ndimage.distance_transform_edt(~change, sampling=pixel_size) <= radius_m + tolerance
    expected = ndimage.distance_transform_edt(dilated, sampling=pixel_size) > radius_m + tolerance
    closed = _close(change, radius_m, pixel_size)
    assert closed.sum() > change.sum()
    np.testing.assert_array_equal(closed, expected)


def test_dated_polygons_split_regions_that_changed_at_different_times():
    """A compound scraped between days 100 and 130 beside a field whose crop broke between days
    200 and 230: one outline each. Two fragments of one site, two pixels apart and dated alike,
    stay one site; a part whose window a cloud widened (100-160) stays with the compound."""
    transform = Affine(10, 0, 500000, 0, -10, 4000000)
    mask = np.zeros((100, 100), bool)
    earliest, latest = np.zeros((2, 100, 100), np.int32)
    mask[20:40, 20:60], earliest[20:40, 20:60], latest[20:40, 20:60] = True, 100, 130
    latest[20:30, 20:30] = 160  # seen through a cloud one date later
    mask[20:40, 60:90], earliest[20:40, 60:90], latest[20:40, 60:90] = True, 200, 230
    for cols in (slice(10, 30), slice(32, 50)):
        mask[60:70, cols], earliest[60:70, cols], latest[60:70, cols] = True, 300, 330
    undated = change_polygons(mask, transform)
    dated = dated_change_polygons(mask, earliest, latest, transform)
    assert [round(p.area) for p in undated] == [140_000, 40_000]
    assert [round(p.area) for p in dated] == [80_000, 60_000, 40_000]
    assert not dated[0].intersection(dated[1]).area


def test_dated_polygons_keep_a_site_whose_rim_changed_a_date_later():
    """A destroyed building (days 100-130) whose rubble rim was scraped a date later (130-160):
    the rim is too small to be a site and stays with the building."""
    transform = Affine(10, 0, 500000, 0, -10, 4000000)
    mask = np.zeros((60, 60), bool)
    earliest, latest = np.zeros((2, 60, 60), np.int32)
    mask[18:32, 18:32], earliest[18:32, 18:32], latest[18:32, 18:32] = True, 130, 160
    mask[20:30, 20:30], earliest[20:30, 20:30], latest[20:30, 20:30] = True, 100, 130
    dated = dated_change_polygons(mask, earliest, latest, transform, min_area_m2=10_000)
    assert [round(p.area) for p in dated] == [19_600]


def test_half_maximum_footprint_undoes_the_ring_of_mixed_pixels():
    """A 180 x 80 m compound at 10 m, blurred by the sensor: the binary change map has a ring of
    mixed pixels around it; the footprint at half the magnitude has the compound's size."""
    transform = grid(10.0)
    truth = box(X0 + 200.0, Y0 - 380.0, X0 + 380.0, Y0 - 300.0)
    fine = rasterize([truth], out_shape=(600, 600),
                     transform=grid(1.0)).astype(float)
    magnitude = ndi.gaussian_filter(fine, 6.0).reshape(60, 10, 60, 10).mean(axis=(1, 3))
    magnitude += np.random.default_rng(1).normal(0.0, 0.02, magnitude.shape)
    inside = magnitude > 0.1
    binary, = change_polygons(inside, transform, min_area_m2=2000.0)
    assert binary.area > 1.3 * truth.area
    footprint = half_maximum_footprint(inside, magnitude, transform, min_area_m2=2000.0)
    assert abs(footprint.area / truth.area - 1) < 0.1
    assert footprint.intersection(truth).area / footprint.union(truth).area > 0.85


@pytest.mark.parametrize("length, width", [(57.0, 33.0), (124.0, 66.0)])
def test_half_maximum_footprint_places_edges_between_pixels(length, width):
    """A 57 x 33 m site off the 10 m pixel grid: an outline of whole pixels is 50 or 60 m long,
    the iso-line at half the magnitude is within 3 m of the true length and width."""
    transform = grid(10.0)
    truth = box(X0 + 203.0, Y0 - 347.0, X0 + 203.0 + length, Y0 - 347.0 + width)
    fine = rasterize([truth], out_shape=(600, 600), transform=grid(1.0)).astype(float)
    magnitude = ndi.gaussian_filter(fine, 5.0).reshape(60, 10, 60, 10).mean(axis=(1, 3))
    inside = magnitude > 0.1
    footprint = half_maximum_footprint(inside, magnitude, transform, min_area_m2=300.0)
    found_length, found_width = sides(footprint)
    assert abs(found_length - length) < 3.0 and abs(found_width - width) < 3.0


def test_half_maximum_footprint_keeps_the_outline_without_a_plateau():
    transform = grid(10.0)
    inside = np.zeros((40, 40), bool)
    inside[10:30, 10:30] = True
    assert half_maximum_footprint(inside, np.zeros((40, 40)), transform,
                                  min_area_m2=2000.0) is None
    split = np.where(inside, 0.1, 0.0)
    split[10:30, 10:13] = split[10:30, 27:30] = 1.0  # two strong walls, a weak middle
    assert half_maximum_footprint(inside, split, transform, min_area_m2=200.0) is None
