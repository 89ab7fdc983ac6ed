"""Building damage from a two-date change map and pre-event building footprints.

An analyst reports damage as structures, not pixels: "37 structures destroyed or heavily damaged
in 0.8 km²". Given the buildings standing before the event (a vector layer of footprints in any
format GDAL reads, or a raster mask whose connected objects are the buildings), each footprint is
called **destroyed or heavily damaged** when at least :data:`DAMAGED_SHARE` of its pixels are
changed in the pairwise change map: the roof is gone or replaced by debris over most of its area,
which is how the xBD joint damage scale (Gupta et al. 2019, CVPRW) tells "major damage" and
"destroyed" from "minor" and "none".

The count is a number with its uncertainty. A classifier that calls ``k`` buildings damaged with
building-level precision ``P`` and recall ``R`` implies about ``k * P / R`` truly damaged ones.
``P`` and ``R`` are not known for a new scene; :data:`HELD_OUT_COUNTS` holds the building-level
true positives, false positives and false negatives of the learned RGB model on the xBD Joplin
tiles when they were held out of its training (``bench/vhr.py``). Their 90 % Wilson score
intervals (Wilson 1927, JASA 22:209-212) give the interval of the estimate:
``[k * P_low / R_high, k * P_high / R_low]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio
import rasterio
import rasterio.features
import shapely
from pyproj import CRS, Transformer

from sitewatch.errors import SitewatchError
from sitewatch.sites.records import polygon_window
from sitewatch.stack import Grid

#: Share of a footprint's pixels that must be changed for it to count as destroyed or heavily
#: damaged (most of its roof).
DAMAGED_SHARE = 0.5
#: Building-level tp, fp, fn of the learned RGB model on held-out xBD Joplin tiles
#: (``python bench/vhr.py``, the "xbd buildings" lines of the ``learned (CV)`` row).
HELD_OUT_COUNTS = (29, 10, 196)
#: Standard normal quantile of the two-sided 90 % interval.
_Z90 = 1.6448536269514722


@dataclass(frozen=True)
class DamageCount:
    """Buildings called destroyed or heavily damaged in an area, with the estimate they imply.

    Attributes
    ----------
    buildings
        Footprints inside the valid part of the change map.
    damaged
        Those called destroyed or heavily damaged.
    area_km2
        Area the footprints were assessed over (square kilometres).
    estimate, low, high
        Implied number of truly damaged buildings and its 90 % interval (see module docstring).
    """

    buildings: int
    damaged: int
    area_km2: float
    estimate: float
    low: float
    high: float

    def sentence(self) -> str:
        """The finding as an analyst writes it."""
        return (f"{self.damaged} of {self.buildings} structures destroyed or heavily damaged in "
                f"{self.area_km2:.2f} km² (estimate {self.estimate:.0f}, 90 % interval "
                f"{self.low:.0f}-{self.high:.0f})")

    def to_dict(self) -> dict:
        return {"buildings": self.buildings, "damaged": self.damaged,
                "area_km2": self.area_km2, "estimate": self.estimate,
                "interval_90": [self.low, self.high], "damaged_share": DAMAGED_SHARE}


def wilson_interval(successes: int, trials: int, z: float = _Z90) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (0..1)."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (
        1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def read_footprints(path: str | Path, grid: Grid) -> list[shapely.Polygon]:
    """Building footprints in ``grid``'s CRS from a vector file of polygons (any format and CRS
    GDAL reads) or a raster mask (non-zero pixels; each 8-connected object is one building)."""
    path = Path(path)
    if not path.is_file():
        raise SitewatchError("buildings file not found", path)
    try:
        with rasterio.open(path) as src:
            mask = src.read(1) != 0
            polygons = [shapely.geometry.shape(g) for g, _ in rasterio.features.shapes(
                mask.astype(np.uint8), mask=mask, transform=src.transform, connectivity=8)]
            source = src.crs
    except rasterio.errors.RasterioIOError:
        polygons, source = _read_vector(path)
    if source is None:
        raise SitewatchError("the buildings file has no CRS", path)
    return _reprojected(polygons, CRS.from_user_input(source), CRS.from_epsg(grid.epsg))


def _read_vector(path: Path) -> tuple[list[shapely.Polygon], object]:
    """The polygons of a vector file and its CRS."""
    try:
        meta, _, wkb, _ = pyogrio.raw.read(path)
    except Exception as error:  # noqa: BLE001  (whatever GDAL says, the file is the user's)
        raise SitewatchError(f"neither a raster mask nor a vector layer GDAL reads ({error})",
                             path) from error
    geometries = [g for g in shapely.from_wkb(wkb) if g is not None and not g.is_empty]
    polygons = [part for g in geometries for part in getattr(g, "geoms", [g])
                if isinstance(part, shapely.Polygon)]
    if geometries and not polygons:
        raise SitewatchError("the buildings layer holds no polygons", path)
    return polygons, meta.get("crs")


def assess(change: np.ndarray, grid: Grid,
           footprints: Sequence[shapely.Polygon]) -> list[tuple[shapely.Polygon, float]]:
    """Each footprint inside the valid part of ``change`` (1 change, 0 none, 255 masked) with
    the share of its pixels called changed (0..1). Footprints smaller than a pixel are assessed
    not at all."""
    extent = shapely.box(*rasterio.transform.array_bounds(grid.height, grid.width,
                                                          grid.transform))
    assessed = []
    for footprint in footprints:
        if not footprint.intersects(extent):
            continue
        window, _, inside = polygon_window(footprint, grid)
        if inside.size == 0:
            continue
        values = change[window.toslices()][inside]
        values = values[values != 255]
        if values.size:
            assessed.append((footprint, float(np.mean(values == 1))))
    return assessed


def count_damage(assessed: Sequence[tuple[shapely.Polygon, float]], area_km2: float,
                 held_out: tuple[int, int, int] = HELD_OUT_COUNTS) -> DamageCount:
    """The :class:`DamageCount` of assessed footprints (see module docstring)."""
    damaged = sum(share >= DAMAGED_SHARE for _, share in assessed)
    tp, fp, fn = held_out
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    p_low, p_high = wilson_interval(tp, tp + fp)
    r_low, r_high = wilson_interval(tp, tp + fn)
    estimate = damaged * precision / recall if recall > 0 else float(damaged)
    return DamageCount(len(assessed), damaged, area_km2, estimate,
                       damaged * p_low / max(r_high, 1e-9),
                       damaged * p_high / max(r_low, 1e-9) if r_low > 0 else float("inf"))


def damage_on_change(change: np.ndarray, grid: Grid, buildings: str | Path
                     ) -> tuple[list[tuple[shapely.Polygon, float]], DamageCount]:
    """The footprints of the ``buildings`` file assessed on ``change`` (1 change, 0 none, 255
    masked; :func:`assess`) and their :class:`DamageCount` over the valid area of ``change``."""
    assessed = assess(change, grid, read_footprints(buildings, grid))
    area_km2 = float(np.sum(change != 255)) * grid.resolution ** 2 / 1e6
    return assessed, count_damage(assessed, area_km2)


def _reprojected(polygons: Sequence[shapely.Polygon], source: CRS,
                 target: CRS) -> list[shapely.Polygon]:
    if source == target:
        return list(polygons)
    transformer = Transformer.from_crs(source, target, always_xy=True)
    return [shapely.transform(p, lambda xy: np.column_stack(transformer.transform(*xy.T)))
            for p in polygons]


def stored_damage(ws, aoi: str) -> dict | None:
    """The damage count stored with the newest sites run of ``aoi`` in the open workspace
    ``ws`` (``track --buildings``; the keys of :meth:`DamageCount.to_dict`, ``sentence`` and
    ``buildings_file``), or None when that run counted no buildings."""
    runs = [r for r in ws.rows("runs", "stage = 'sites'", order_by="started_at DESC, run_id DESC")
            if (r["inputs"] or {}).get("aoi") == aoi]
    return (runs[0]["parameters"] or {}).get("damage") if runs else None
