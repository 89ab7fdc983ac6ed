"""The report's figures: overview map, annotated before/after crops, timeline and time-lapse.

Imagery comes from an AOI's analysis-ready stack (:mod:`sitewatch.stack`), read one crop window at
a time; vectors (sites, observations, places, borders) from the workspace, reprojected from
EPSG:4326 to the stack's UTM grid with PROJ.

Conventions
    - **True colour**: the red, green and blue bands (Sentinel-2 B04/B03/B02, Landsat TM B3/B2/B1,
      VHR ``red``/``green``/``blue``; a single band in grey when the stack has no such triple),
      each stretched linearly between its 2nd and 98th percentile. The percentiles are taken over
      the clear pixels (mask 0) of everything shown together: both panels of a before/after
      pair, all frames of a time-lapse, so brightness differences between dates are real and
      clouds do not dim the stretch. Nodata is drawn grey.
    - **Geometry**: axes in metres of the grid CRS; images are grid-north-up and the north arrow
      points to true north, turned from grid north by the meridian convergence at the view's
      centre (PROJ ``Proj.get_factors``). Scale bars are 1, 2 or 5 x 10^n metres, about a fifth
      of the view width.
    - **Clear dates** (from the stack mask): before/after images come from dates whose crop is
      at most :data:`CLEAR_CLOUD_FRACTION` cloud or shadow with the site's box clear; time-lapse
      frames from dates whose crop is not mostly cloud (:data:`FRAME_CLOUD_FRACTION`) and whose
      site box is visible; neither from a crop more than half nodata.
    - **Measurements** drawn on a footprint (length and width callouts along the sides of
      shapely's ``minimum_rotated_rectangle``) come from :func:`sitewatch.sites.measure.measure`,
      the same method as the site's stored measurements.
    - **Files**: Matplotlib figures as RGB PNG (outline colours stay exact); time-lapse frames
      (GIF) and their key-frame strip (PNG) with a 256-colour palette (fast octree, no
      dithering) that holds the drawing colours exactly.
    - **Determinism**: Matplotlib's Agg renderer at a fixed dpi, the pixels written by Pillow
      (no date or software key in the files); the same stack and records give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pyproj
import shapely
import xarray as xr
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Patch
from matplotlib.patches import Polygon as PolygonPatch
from matplotlib.ticker import FuncFormatter
from PIL import Image, ImageDraw, ImageFont

from sitewatch.ingest.sensors import LANDSAT_TM, SENTINEL2
from sitewatch.report.palette import OTHER_COLOUR, TYPE_COLOURS, type_colour
from sitewatch.sites.measure import measure
from sitewatch.stack import Grid, latest_stack, open_stack, stack_grid
from sitewatch.stack.output import CLOUD, NODATA, SHADOW
from sitewatch.store import Workspace

#: Resolution of every Matplotlib figure, dots per inch.
DPI = 125
#: A site crop spans at least this many times the site's larger side ...
CROP_FACTOR = 3.0
#: ... and at least this many grid pixels.
MIN_CROP_PX = 64
#: Largest side, in pixels, of the imagery drawn in a before/after panel (larger crops are
#: subsampled), of the overview map, and about that of a time-lapse frame.
PANEL_PX = 600
OVERVIEW_PX = 1200
FRAME_PX = 320
#: Before/after images are chosen among dates whose crop is at most this share cloud or
#: shadow, and the box around the site at most that share ...
CLEAR_CLOUD_FRACTION = 0.1
CLEAR_SITE_CLOUD_FRACTION = 0.01
#: ... time-lapse frames among dates whose crop is not mostly cloud, with the site visible ...
FRAME_CLOUD_FRACTION = 0.5
FRAME_SITE_CLOUD_FRACTION = 0.05
#: ... and both among dates whose crop is at most this share nodata.
MAX_NODATA_FRACTION = 0.5
#: Percentiles of the linear contrast stretch.
STRETCH_PERCENTILES = (2.0, 98.0)
#: Time-lapse frame duration (milliseconds) and the number of key frames in the PDF strip.
FRAME_MS = 1000
KEY_FRAMES = 4
#: Grey drawn where the stack has no data (RGB, 0..255).
NODATA_GREY = 128

#: Span colours of the timeline by phase.
PHASE_COLOURS = {
    "intact": "#BBBBBB",
    "cleared": "#F0E442",
    "under_construction": "#E69F00",
    "completed": "#0072B2",
    "destroyed": "#D55E00",
    "flattened": "#CC79A7",
    "debris_removed": "#999999",
    "demolished": "#CC79A7",
    "vegetation_lost": "#009E73",
    "darkened": "#D55E00",  # two-date comparisons
    "new_bright_surface": "#E69F00",
}
BORDER_COLOUR = "#7A0000"
EVENT_COLOUR = "#0072B2"
UNCHANGED_COLOUR = "#E8E8E8"
_HALO = [patheffects.withStroke(linewidth=2.5, foreground="white")]
_EXACT_COLOURS = sorted({tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in (
    *TYPE_COLOURS.values(), *PHASE_COLOURS.values(), OTHER_COLOUR, BORDER_COLOUR, EVENT_COLOUR,
    UNCHANGED_COLOUR, "#FFFFFF", "#000000", "#444444")})
_COMMON_NAMES = {spec.name: spec.common_name for spec in (*SENTINEL2.values(), *LANDSAT_TM)}


def words(identifier: str | None) -> str:
    """A snake_case identifier as words: ``"new_construction"`` -> ``"new construction"``."""
    return (identifier or "unknown").replace("_", " ")


# -- imagery ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Crop:
    """A pixel window of the grid, read every ``step`` pixels; ``extent`` is (west, east,
    south, north) of the pixels read, metres in the grid CRS."""

    rows: slice
    cols: slice
    step: int
    extent: tuple[float, float, float, float]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the pixels read."""
        return (len(range(self.rows.start, self.rows.stop, self.step)),
                len(range(self.cols.start, self.cols.stop, self.step)))

    @property
    def pixel_m(self) -> float:
        """Ground size of one pixel as read, metres."""
        return (self.extent[1] - self.extent[0]) / self.shape[1]


@dataclass
class StackImagery:
    """An AOI's stack opened for drawing.

    ``path`` is the stack store relative to the workspace, ``dates`` the ISO days of the time
    steps, ``scenes`` the workspace scene records of each step (a step may mosaic several),
    ``bands`` the three true-colour band names.
    """

    aoi: str
    path: str
    dataset: xr.Dataset
    grid: Grid
    dates: tuple[str, ...]
    scenes: tuple[tuple[dict, ...], ...]
    bands: tuple[str, str, str]

    @classmethod
    def open(cls, ws: Workspace, aoi: str) -> StackImagery:
        """The newest stack of ``aoi`` in ``ws`` (lazily: nothing is read until drawn)."""
        record = latest_stack(ws, aoi)
        dataset = open_stack(ws.root / record["path"])
        by_id = {row["scene_id"]: row for row in ws.rows("scenes")}
        scenes = tuple(tuple(by_id[s] for s in str(ids).split(",") if s in by_id)
                       for ids in dataset.scene_ids.values)
        dates = tuple(str(t)[:10] for t in dataset.time.values)
        names = tuple(str(b) for b in dataset.band.values)
        return cls(aoi, record["path"], dataset, stack_grid(record), dates,
                   scenes, true_colour_bands(names))

    @property
    def all_scenes(self) -> list[dict]:
        """Every scene of the stack, oldest first."""
        return [scene for step in self.scenes for scene in step]

    def to_grid(self, geometry):
        """``geometry`` (lon/lat, EPSG:4326) in the grid CRS (metres)."""
        transformer = pyproj.Transformer.from_crs(4326, self.grid.epsg, always_xy=True)
        return shapely.transform(geometry, transformer.transform, interleaved=False)

    def crop(self, bounds: tuple[float, float, float, float] | None = None, *,
             max_px: int) -> Crop:
        """The window of ``bounds`` (west, south, east, north in metres; the whole grid when
        None), subsampled so that its larger side has at most ``max_px`` pixels."""
        g = self.grid
        if bounds is None:
            c0, c1, r0, r1 = 0, g.width, 0, g.height
        else:
            west, south, east, north = bounds
            c0 = max(0, math.floor((west - g.west) / g.resolution))
            c1 = min(g.width, math.ceil((east - g.west) / g.resolution))
            r0 = max(0, math.floor((g.north - north) / g.resolution))
            r1 = min(g.height, math.ceil((g.north - south) / g.resolution))
        step = max(1, math.ceil(max(c1 - c0, r1 - r0) / max_px))
        n_cols, n_rows = len(range(c0, c1, step)), len(range(r0, r1, step))
        west = g.west + c0 * g.resolution
        north = g.north - r0 * g.resolution
        return Crop(slice(r0, r1), slice(c0, c1), step,
                    (west, west + n_cols * step * g.resolution,
                     north - n_rows * step * g.resolution, north))

    def site_crop(self, footprint, *, max_px: int) -> Crop:
        """A square window centred on ``footprint`` (grid CRS), :data:`CROP_FACTOR` times its
        larger side and at least :data:`MIN_CROP_PX` pixels wide."""
        west, south, east, north = footprint.bounds
        half = 0.5 * max(CROP_FACTOR * max(east - west, north - south),
                         MIN_CROP_PX * self.grid.resolution)
        cx, cy = 0.5 * (west + east), 0.5 * (south + north)
        return self.crop((cx - half, cy - half, cx + half, cy + half), max_px=max_px)

    def flags(self, crop: Crop, times: Sequence[int] | None = None) -> np.ndarray:
        """Mask flags (time, rows, cols) of ``crop`` on the time steps ``times`` (all when
        None): 0 clear, 1 nodata, 2 cloud, 3 shadow."""
        window = self.dataset["mask"].isel(y=_strided(crop.rows, crop.step),
                                           x=_strided(crop.cols, crop.step))
        if times is not None:
            window = window.isel(time=list(times))
        return np.asarray(window.values)

    def true_colour(self, crop: Crop, times: Sequence[int]) -> np.ndarray:
        """Reflectance of the true-colour bands, (len(times), rows, cols, 3) float32, NaN where
        there is no data."""
        band_index = [list(self.dataset.band.values).index(b) for b in self.bands]
        window = self.dataset["reflectance"].isel(
            time=list(times), band=band_index, y=_strided(crop.rows, crop.step),
            x=_strided(crop.cols, crop.step))
        return np.moveaxis(np.asarray(window.values, dtype=np.float32), 1, -1)

    def credit(self, times: Sequence[int] | None = None) -> str:
        """The imagery credit of the time steps ``times`` (all when None)."""
        steps = range(len(self.dates)) if times is None else times
        return credit_line([scene for t in steps for scene in self.scenes[t]])

    def convergence_deg(self, x: float, y: float) -> float:
        """Meridian convergence at grid point (x, y): degrees clockwise from true north to
        grid north."""
        proj = pyproj.Proj(self.grid.crs)
        lon, lat = proj(x, y, inverse=True)
        return float(proj.get_factors(lon, lat).meridian_convergence)


@dataclass(frozen=True)
class Cover:
    """How much of a crop each date hides: the shares (0..1) of the crop that are cloud or
    shadow (``cloud``) and nodata (``nodata``), and of the box around the site that are cloud
    or shadow (``site_cloud``)."""

    cloud: np.ndarray
    nodata: np.ndarray
    site_cloud: np.ndarray

    @classmethod
    def of(cls, flags: np.ndarray, crop: Crop, site=None) -> Cover:
        """The cover of a crop from its mask ``flags`` (time, rows, cols); ``site`` is a
        geometry in the grid CRS (without it, ``site_cloud`` is 0)."""
        hidden = (flags == CLOUD) | (flags == SHADOW)
        site_cloud = np.zeros(len(flags))
        if site is not None:
            west, _, _, north = crop.extent
            x0, y0, x1, y1 = site.bounds
            cols = slice(max(0, math.floor((x0 - west) / crop.pixel_m)),
                         math.ceil((x1 - west) / crop.pixel_m))
            rows = slice(max(0, math.floor((north - y1) / crop.pixel_m)),
                         math.ceil((north - y0) / crop.pixel_m))
            if hidden[:, rows, cols].size:
                site_cloud = _share(hidden[:, rows, cols])
        return cls(_share(hidden), _share(flags == NODATA), site_cloud)

    @property
    def obscured(self) -> np.ndarray:
        """Share of the crop hidden by cloud, shadow or nodata, per date."""
        return self.cloud + self.nodata

    def dates(self, max_cloud: float, max_site_cloud: float) -> list[int]:
        """Time indices with at most these cloud shares (crop, site box) and at most
        :data:`MAX_NODATA_FRACTION` nodata."""
        return [t for t in range(len(self.cloud))
                if self.cloud[t] <= max_cloud and self.site_cloud[t] <= max_site_cloud
                and self.nodata[t] <= MAX_NODATA_FRACTION]


def _share(flags: np.ndarray) -> np.ndarray:
    """Per time step, the share of true pixels of a (time, rows, cols) bool array."""
    return flags.reshape(len(flags), -1).mean(axis=1)


def _strided(window: slice, step: int) -> slice:
    return slice(window.start, window.stop, step)


def true_colour_bands(names: Sequence[str]) -> tuple[str, str, str]:
    """The (red, green, blue) band names of a stack, from the Sentinel-2 and Landsat TM band
    tables or names that say red/green/blue; the first band three times (grey) otherwise."""
    by_colour = {}
    for name in names:
        colour = _COMMON_NAMES.get(name, name.lower())
        by_colour.setdefault(colour, name)
    if {"red", "green", "blue"} <= set(by_colour):
        return by_colour["red"], by_colour["green"], by_colour["blue"]
    return names[0], names[0], names[0]


def stretch(rgb: np.ndarray, clear: np.ndarray | None = None) -> np.ndarray:
    """Linear per-band stretch of ``rgb`` (..., 3) between :data:`STRETCH_PERCENTILES` of the
    pixels where ``clear`` is true (all finite pixels when None or when none is clear); returns
    uint8 with nodata (NaN) grey."""
    finite = np.isfinite(rgb).all(axis=-1)
    sample = finite if clear is None else finite & clear
    if not sample.any():
        sample = finite
    out = np.full(rgb.shape, NODATA_GREY, np.uint8)
    if not sample.any():
        return out
    for band in range(rgb.shape[-1]):
        values = rgb[..., band]
        low, high = np.percentile(values[sample], STRETCH_PERCENTILES)
        scaled = (values - low) / max(float(high - low), 1e-6)
        out[..., band] = np.where(finite, np.round(255 * np.clip(scaled, 0, 1)), NODATA_GREY)
    return out


def credit_line(scenes: Sequence[Mapping]) -> str:
    """Imagery credit for ``scenes`` (workspace scene records).

    Simulated scenes (the simulator marks ``sitewatch:simulated``) give "Simulated imagery
    (sitewatch simulator)"; Sentinel-2 gives the credit Copernicus licences require, "Contains
    modified Copernicus Sentinel data 2018-2019" with the acquisition years; other imagery is
    named by platform or sensor and years.
    """
    groups: dict[str, set[int]] = {}
    for scene in scenes:
        properties = scene.get("properties") or {}
        if properties.get("sitewatch:simulated"):
            key = "simulated"
        elif (scene.get("sensor") or "").lower() == "sentinel-2":
            key = "sentinel-2"
        else:
            key = scene.get("platform") or scene.get("sensor") or "unknown source"
        groups.setdefault(key, set()).add(int(scene["acquired"][:4]))
    parts = []
    for key in sorted(groups):
        years = _year_ranges(sorted(groups[key]))
        if key == "simulated":
            parts.append("Simulated imagery (sitewatch simulator)")
        elif key == "sentinel-2":
            parts.append(f"Contains modified Copernicus Sentinel data {years}")
        else:
            parts.append(f"Imagery: {key} {years}")
    return "; ".join(parts) or "Imagery: unknown source"


def _year_ranges(years: list[int]) -> str:
    """``[2016, 2017, 2018, 2020]`` -> ``"2016-2018, 2020"``."""
    runs: list[list[int]] = []
    for year in years:
        if runs and year == runs[-1][-1] + 1:
            runs[-1].append(year)
        else:
            runs.append([year])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


# -- map furniture ------------------------------------------------------------------------------
def nice_length(span_m: float) -> float:
    """The 1, 2 or 5 x 10^n metres nearest below a fifth of ``span_m``."""
    target = max(span_m / 5.0, 1e-3)
    exponent = 10.0 ** math.floor(math.log10(target))
    return max(m * exponent for m in (1.0, 2.0, 5.0) if m * exponent <= target)


def length_label(metres: float) -> str:
    """``"500 m"`` below a kilometre, ``"2 km"`` from one."""
    return f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"


def _scale_bar(ax, extent: tuple[float, float, float, float]) -> None:
    west, east, south, north = extent
    length = nice_length(east - west)
    x0, y0 = west + 0.04 * (east - west), south + 0.05 * (north - south)
    height = 0.012 * (north - south)
    ax.add_patch(PolygonPatch([(x0, y0), (x0 + length / 2, y0), (x0 + length / 2, y0 + height),
                               (x0, y0 + height)], closed=True, facecolor="black",
                              edgecolor="black", lw=0.8, zorder=6))
    ax.add_patch(PolygonPatch([(x0 + length / 2, y0), (x0 + length, y0),
                               (x0 + length, y0 + height), (x0 + length / 2, y0 + height)],
                              closed=True, facecolor="white", edgecolor="black", lw=0.8,
                              zorder=6))
    ax.text(x0 + length / 2, y0 + 3 * height, length_label(length), ha="center", va="bottom",
            fontsize=8, path_effects=_HALO, zorder=6)


def _north_arrow(ax, convergence_deg: float) -> None:
    """An arrow to true north: grid north turned anticlockwise by the convergence."""
    angle = math.radians(convergence_deg)
    ax.add_patch(Circle((0.93, 0.86), 0.045, transform=ax.transAxes, facecolor="white",
                        edgecolor="none", alpha=0.6, zorder=5))
    tip = (0.93 - 0.055 * math.sin(angle), 0.825 + 0.055 * math.cos(angle))
    ax.annotate("", xy=tip, xytext=(0.93, 0.825), xycoords="axes fraction",
                arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.5,
                            "mutation_scale": 12}, zorder=6)
    ax.text(tip[0], tip[1] + 0.015, "N", transform=ax.transAxes, ha="center", va="bottom",
            fontsize=9, fontweight="bold", path_effects=_HALO, zorder=6)


def _outline(ax, geometry, colour: str, *, lw: float = 1.8, ls: str = "-",
             zorder: int = 4) -> None:
    for polygon in getattr(geometry, "geoms", [geometry]):
        if polygon.is_empty or polygon.geom_type != "Polygon":
            continue
        ax.add_patch(PolygonPatch(np.asarray(polygon.exterior.coords), closed=True, fill=False,
                                  edgecolor=colour, lw=lw, ls=ls, zorder=zorder))


def _new_figure(width_in: float, height_in: float) -> Figure:
    figure = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    """Render ``figure`` with Agg and write it as an RGB PNG with Pillow, which writes no date
    or software into the file."""
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(path, format="PNG")
    return path


def to_palette(image: Image.Image) -> Image.Image:
    """``image`` with a 256-colour palette: the drawing colours of this module exactly (the
    outlines Pillow draws without anti-aliasing keep their colour; Pillow's own palette mapping
    is approximate, so pixels of those colours are assigned here), the rest by the fast octree
    of the image (which keeps small saturated details better than median cut); no
    dithering."""
    rgb = image.convert("RGB")
    n_adaptive = 256 - len(_EXACT_COLOURS)
    adaptive = rgb.quantize(colors=n_adaptive, method=Image.Quantize.FASTOCTREE,
                            dither=Image.Dither.NONE)
    indices = np.array(adaptive, dtype=np.uint8)
    pixels = np.asarray(rgb).astype(np.uint32)
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    for k, (r, g, b) in enumerate(_EXACT_COLOURS):
        indices[packed == ((r << 16) | (g << 8) | b)] = n_adaptive + k
    palette = (adaptive.getpalette() + [0] * 768)[:3 * n_adaptive]
    out = Image.fromarray(indices)
    out.putpalette(palette + [value for colour in _EXACT_COLOURS for value in colour])
    return out


# -- overview -----------------------------------------------------------------------------------
def overview_date(imagery: StackImagery) -> int:
    """The latest time step whose clear fraction is at least 90 % of the stack's best."""
    fractions = np.asarray(imagery.dataset.clear_fraction.values, dtype=float)
    best = float(np.nanmax(fractions)) if np.isfinite(fractions).any() else 0.0
    usable = [t for t, f in enumerate(fractions) if np.isfinite(f) and f >= 0.9 * best]
    return usable[-1] if usable else len(fractions) - 1


def overview_map(imagery: StackImagery, path: Path, *, aoi_outline=None,
                 sites: Sequence[Mapping] = (), places: Sequence[Mapping] = (),
                 borders: Sequence[Mapping] = ()) -> str:
    """Draw the AOI's overview map to the PNG ``path``; returns the ISO date shown.

    True colour of :func:`overview_date`, the AOI outline (``aoi_outline``, lon/lat), the
    ``sites`` outlines (workspace site records) coloured by change type and labelled with the
    number that ends their id, reference ``places`` inside the map and ``borders`` with the
    names of their sides; axes in km of the grid, scale bar, north arrow, date and credit.
    """
    t = overview_date(imagery)
    crop = imagery.crop(max_px=OVERVIEW_PX)
    rgb = imagery.true_colour(crop, [t])[0]
    image = stretch(rgb, imagery.flags(crop, [t])[0] == 0)
    west, east, south, north = crop.extent
    aspect = (north - south) / (east - west)
    height = 8.0 * aspect * 0.86 + 1.3
    figure = _new_figure(8.0, height)
    ax = figure.add_axes((0.1, 1.0 / height, 0.86, 1 - 1.25 / height))
    ax.imshow(image, extent=crop.extent, interpolation="nearest")
    view = shapely.box(west, south, east, north)
    handles, labels = [], []
    if aoi_outline is not None:
        outline = imagery.to_grid(aoi_outline)
        _outline(ax, outline, "black", lw=2.4, zorder=3)
        _outline(ax, outline, "white", lw=1.2, ls="--", zorder=3)
        handles.append((Line2D([], [], color="black", lw=2.4),
                        Line2D([], [], color="white", ls="--", lw=1.2)))
        labels.append("AOI")
    for border in borders:
        if not _draw_border(ax, imagery.to_grid(border["geom"]).intersection(view), border,
                            crop.extent):
            continue
        handles.append(Line2D([], [], color=BORDER_COLOUR, ls=(0, (6, 2)), lw=1.6))
        labels.append(border["name"])
    for place in places:
        point = imagery.to_grid(place["geom"])
        if not view.contains(point):
            continue
        ax.plot(point.x, point.y, marker="^", color="black", markeredgecolor="white",
                markersize=8, zorder=7)
        ax.text(point.x + 0.012 * (east - west), point.y, place["name"], fontsize=8,
                va="center", path_effects=_HALO, zorder=7)
    types = []
    for site in sites:
        footprint = imagery.to_grid(site["geom"])
        colour = type_colour(site["change_type"])
        _outline(ax, footprint, colour, lw=1.6, zorder=5)
        x0, y0, x1, y1 = footprint.bounds
        ax.text(x1, y1, site_number(site["site_id"]), fontsize=7, color="black",
                fontweight="bold", path_effects=_HALO, zorder=8)
        if site["change_type"] not in types:
            types.append(site["change_type"])
    handles += [Patch(facecolor="none", edgecolor=type_colour(c), lw=1.6) for c in types]
    labels += [words(c) for c in types]
    ax.set_xlim(west, east)
    ax.set_ylim(south, north)
    km = FuncFormatter(lambda value, _: f"{value / 1000:g}")
    ax.xaxis.set_major_formatter(km)
    ax.yaxis.set_major_formatter(km)
    ax.tick_params(labelsize=7)
    crs_name = imagery.grid.crs.name
    ax.set_xlabel(f"Easting (km), EPSG:{imagery.grid.epsg} {crs_name}", fontsize=8)
    ax.set_ylabel("Northing (km)", fontsize=8)
    _scale_bar(ax, crop.extent)
    _north_arrow(ax, imagery.convergence_deg(0.5 * (west + east), 0.5 * (south + north)))
    ax.text(0.99, 0.01, imagery.dates[t], transform=ax.transAxes, ha="right", va="bottom",
            fontsize=9, fontweight="bold", path_effects=_HALO, zorder=8)
    if handles:
        figure.legend(handles, labels, loc="lower center", ncol=min(4, len(handles)),
                      fontsize=7, frameon=False, bbox_to_anchor=(0.5, 0.02))
    legend_note = ". Site labels: the number ending the site id." if sites else "."
    figure.text(0.01, 0.005, imagery.credit([t]) + legend_note, fontsize=6.5, color="#444444")
    _save(figure, path)
    return imagery.dates[t]


def site_number(site_id: str) -> str:
    """The number that ends a site id (``"border-crossing-007"`` -> ``"007"``), or the id."""
    tail = site_id.rsplit("-", 1)[-1]
    return tail if tail.isdigit() else site_id


def _draw_border(ax, line, border: Mapping, view: tuple[float, float, float, float]) -> bool:
    """Draw ``line``, the part of a border inside the ``view`` (west, east, south, north), and
    the names of its sides; False if no part is inside."""
    parts = [p for p in getattr(line, "geoms", [line])
             if p.geom_type == "LineString" and not p.is_empty]
    if not parts:
        return False
    for part in parts:
        x, y = np.asarray(part.coords).T
        ax.plot(x, y, color="white", lw=3.0, zorder=3)
        ax.plot(x, y, color=BORDER_COLOUR, lw=1.6, ls=(0, (6, 2)), zorder=3)
    west, east, south, north = view
    span_m = east - west
    longest = max(parts, key=lambda p: p.length)
    middle = longest.interpolate(0.3, normalized=True)
    ahead = longest.interpolate(min(longest.length, longest.project(middle) + 0.01 * span_m))
    behind = longest.interpolate(max(0.0, longest.project(middle) - 0.01 * span_m))
    direction = np.array([ahead.x - behind.x, ahead.y - behind.y])
    if not np.any(direction):
        return True
    direction /= np.hypot(*direction)
    left = np.array([-direction[1], direction[0]])
    for name, side in ((border.get("left_name"), 1.0), (border.get("right_name"), -1.0)):
        if name:
            x, y = np.array([middle.x, middle.y]) + side * 0.05 * span_m * left
            x = min(max(x, west + 0.06 * span_m), east - 0.06 * span_m)
            y = min(max(y, south + 0.03 * (north - south)), north - 0.03 * (north - south))
            ax.text(x, y, name, fontsize=9, fontstyle="italic", ha="center", va="center",
                    color=BORDER_COLOUR, path_effects=_HALO, zorder=7)
    return True


# -- per-site figures -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SiteFigures:
    """The figures of one site (PNG unless said) and the dates they show (ISO days)."""

    before_after: Path
    timeline: Path
    timelapse: Path  # animated GIF
    key_frames: Path  # the time-lapse's key frames side by side, for print
    before: str | None
    after: str
    frame_dates: tuple[str, ...]


class Footprints:
    """A site's footprint on any date (grid CRS): the latest observed footprint up to that
    date, None before the change; the site's final footprint from the last observed date on."""

    def __init__(self, imagery: StackImagery, site: Mapping, observations: Sequence[Mapping]):
        self.final = imagery.to_grid(site["geom"])
        self._observed = [(o["observed"][:10], None if o["geom"] is None
                           else imagery.to_grid(o["geom"])) for o in observations]
        self._observed.sort(key=lambda item: item[0])

    def on(self, day: str):
        current = None
        for observed, geometry in self._observed:
            if observed > day:
                return current
            current = geometry
        return self.final if self._observed else None


def site_figures(imagery: StackImagery, out_dir: Path, site: Mapping,
                 observations: Sequence[Mapping], events: Sequence[Mapping]) -> SiteFigures:
    """Draw the before/after pair, timeline, time-lapse GIF and key-frame strip of ``site``
    (a workspace site record) into ``out_dir``, files named by the site id.

    The crop window is read once, on the dates drawn only.
    """
    footprints = Footprints(imagery, site, observations)
    crop = imagery.site_crop(footprints.final, max_px=PANEL_PX)
    flags = imagery.flags(crop)
    cover = Cover.of(flags, crop, footprints.final)
    clear = cover.dates(CLEAR_CLOUD_FRACTION, CLEAR_SITE_CLOUD_FRACTION)
    before, after = before_and_after(imagery.dates, clear, cover.obscured, site)
    frames = cover.dates(FRAME_CLOUD_FRACTION, FRAME_SITE_CLOUD_FRACTION) or [after]
    pair = [t for t in (before, after) if t is not None]
    times = sorted({*frames, *pair})
    rgb = dict(zip(times, imagery.true_colour(crop, times), strict=True))
    stem = site["site_id"]
    pair_png = before_after(imagery, out_dir / f"{stem}-before-after.png", site, footprints,
                            crop, before, after, np.stack([rgb[t] for t in pair]),
                            flags[pair] == 0)
    line = timeline(out_dir / f"{stem}-timeline.png", site, observations, events)
    gif, strip = timelapse(imagery, out_dir / f"{stem}-timelapse.gif",
                           out_dir / f"{stem}-key-frames.png", site, footprints, crop, frames,
                           np.stack([rgb[t] for t in frames]), flags[frames] == 0,
                           None if before is None else imagery.dates[before])
    return SiteFigures(pair_png, line, gif, strip,
                       None if before is None else imagery.dates[before], imagery.dates[after],
                       tuple(imagery.dates[t] for t in frames))


def before_and_after(dates: Sequence[str], clear: Sequence[int], obscured: np.ndarray,
                     site: Mapping) -> tuple[int | None, int]:
    """Time indices of the before and after images of ``site``.

    Before: the site's ``last_seen_unchanged`` date, or else the latest date before
    ``first_seen``, among the ``clear`` dates; the least obscured date before ``first_seen``
    when none of those is clear; None when the stack starts after the change. After: the latest
    clear date after the before image (the least obscured such date when none is clear).
    """
    first_seen = site.get("first_seen") or dates[-1]
    unchanged = site.get("last_seen_unchanged")
    earlier = [t for t in range(len(dates)) if dates[t] < first_seen]
    before = None
    if unchanged in dates and dates.index(unchanged) in clear:
        before = dates.index(unchanged)
    elif [t for t in earlier if t in clear]:
        before = [t for t in earlier if t in clear][-1]
    elif earlier:
        before = min(earlier, key=lambda t: (obscured[t], -t))
    candidates = [t for t in range(len(dates)) if before is None or t > before]
    later = [t for t in clear if t in candidates]
    after = later[-1] if later else min(candidates, key=lambda t: (obscured[t], -t))
    return before, after


def before_after(imagery: StackImagery, path: Path, site: Mapping, footprints: Footprints,
                 crop: Crop, before: int | None, after: int, rgb: np.ndarray,
                 clear: np.ndarray) -> Path:
    """The annotated before/after pair of ``site`` on ``crop`` (PNG at ``path``) from the
    reflectance ``rgb`` (dates, rows, cols, 3) of ``before`` (if any) and ``after``, with the
    dates' ``clear`` masks.

    After: the footprint of that date, solid, with length and width callouts along its minimum
    rotated rectangle. Before (the ground before the change): the after footprint dashed, for
    reference. Both: the site id and type, acquisition date, scale bar and north arrow; the
    credit below.
    """
    times = [t for t in (before, after) if t is not None]
    images = stretch(rgb, clear)
    figure = _new_figure(8.0, 4.45)
    colour = type_colour(site["change_type"])
    west, east, south, north = crop.extent
    convergence = imagery.convergence_deg(0.5 * (west + east), 0.5 * (south + north))
    for n, (t, image) in enumerate(zip(times, images, strict=True)):
        ax = figure.add_axes((0.01 + 0.5 * n, 0.055, 0.48, 0.87))
        ax.imshow(image, extent=crop.extent, interpolation="nearest")
        day = imagery.dates[t]
        footprint = footprints.on(day) if t == after else None
        if footprint is None:
            _outline(ax, footprints.final, "white", lw=1.2, ls="--")
            note = f"dashed: footprint of {imagery.dates[after]}"
        else:
            _outline(ax, footprint, colour, lw=2.0)
            _callouts(ax, footprint, imagery.grid.epsg, crop.extent, colour)
            note = None
        ax.set_xlim(west, east)
        ax.set_ylim(south, north)
        ax.set_xticks([])
        ax.set_yticks([])
        role = "Before" if t == before else "After"
        ax.set_title(f"{role}: {day}", fontsize=10, fontweight="bold")
        ax.text(0.02, 0.98, f"{site['site_id']}\n{words(site['change_type'])}",
                transform=ax.transAxes, va="top", ha="left", fontsize=8, zorder=8,
                bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "alpha": 0.85,
                      "edgecolor": colour})
        if note:
            ax.text(0.98, 0.02, note, transform=ax.transAxes, ha="right", va="bottom",
                    fontsize=7, path_effects=_HALO, zorder=8)
        _scale_bar(ax, crop.extent)
        _north_arrow(ax, convergence)
    figure.text(0.01, 0.012, imagery.credit(times), fontsize=7, color="#444444")
    return _save(figure, path)


def _callouts(ax, footprint, epsg: int, extent, colour: str) -> None:
    """Length and width, dimension-line style, along two sides of the footprint's minimum
    rotated rectangle (the upper long side and the right short side)."""
    if footprint.area <= 0:
        return
    measured = measure(footprint, epsg)
    rectangle = shapely.minimum_rotated_rectangle(footprint)
    if rectangle.geom_type != "Polygon":
        return
    corners = np.asarray(rectangle.exterior.coords)[:4]
    centre = corners.mean(axis=0)
    sides = [(corners[i], corners[(i + 1) % 4]) for i in range(4)]
    first, second = [sides[0], sides[2]], [sides[1], sides[3]]
    long_pair, short_pair = ((first, second) if np.hypot(*(sides[0][1] - sides[0][0]))
                             >= np.hypot(*(sides[1][1] - sides[1][0])) else (second, first))
    offset = 0.05 * (extent[1] - extent[0])
    upper = max(long_pair, key=lambda side: _outward(side, centre) @ np.array([0.3, 1.0]))
    right = max(short_pair, key=lambda side: _outward(side, centre) @ np.array([1.0, 0.3]))
    _dimension(ax, upper, centre, offset, f"{measured.length_m:.0f} m", colour)
    _dimension(ax, right, centre, offset, f"{measured.width_m:.0f} m", colour)


def _outward(side, centre: np.ndarray) -> np.ndarray:
    normal = 0.5 * (side[0] + side[1]) - centre
    return normal / max(float(np.hypot(*normal)), 1e-9)


def _dimension(ax, side, centre: np.ndarray, offset: float, text: str, colour: str) -> None:
    a, b = side
    normal = _outward(side, centre)
    pa, pb = a + offset * normal, b + offset * normal
    for corner, end in ((a, pa), (b, pb)):
        reach = end + 0.25 * offset * normal
        ax.plot([corner[0], reach[0]], [corner[1], reach[1]], color="white", lw=0.8, zorder=6)
    ax.annotate("", xy=tuple(pb), xytext=tuple(pa),
                arrowprops={"arrowstyle": "<|-|>", "color": colour, "lw": 1.4,
                            "mutation_scale": 9, "shrinkA": 0, "shrinkB": 0}, zorder=7)
    angle = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))
    angle = (angle + 90.0) % 180.0 - 90.0
    x, y = 0.5 * (pa + pb) + 0.9 * offset * normal
    ax.text(x, y, text, rotation=angle, rotation_mode="anchor", ha="center", va="center",
            fontsize=9, fontweight="bold", color="black", path_effects=_HALO, zorder=8)


# -- timeline ------------------------------------------------------------------------------------
def timeline(path: Path, site: Mapping, observations: Sequence[Mapping],
             events: Sequence[Mapping]) -> Path:
    """The site's life on a date axis (PNG at ``path``).

    Phases as coloured spans from the date they were first observed; before each, hatched, the
    interval since the last observation before it (the phase began somewhere in it: the
    uncertainty the revisit allows); observation dates as ticks; analyst ``events`` (records of
    the events layer) as labelled stars.
    """
    observed = sorted(o["observed"][:10] for o in observations)
    phases = (site.get("properties") or {}).get("phases") or []
    event_days = [str(e["occurred"])[:10] for e in events]
    days = observed + event_days + [p["first_observed"] for p in phases]
    days += [p["after"] for p in phases if p.get("after")]
    first, last = _num(min(days)), _num(max(days))
    pad = max(10.0, 0.03 * (last - first))
    figure = _new_figure(8.0, 2.6 if events else 2.1)
    ax = figure.add_axes((0.03, 0.3 if events else 0.36, 0.94, 0.66 if events else 0.6))
    handles, seen = [], set()
    start = observed[0] if observed else None
    if phases and start and phases[0].get("after") and start < phases[0]["after"]:
        ax.broken_barh([(_num(start), _num(phases[0]["after"]) - _num(start))], (0.6, 0.8),
                       facecolors=UNCHANGED_COLOUR, edgecolors="none")
        handles.append(Patch(facecolor=UNCHANGED_COLOUR, label="unchanged"))
    for i, phase in enumerate(phases):
        name = phase["phase"]
        colour = PHASE_COLOURS.get(name, OTHER_COLOUR)
        begin = _num(phase["first_observed"])
        if phase.get("after"):
            ax.broken_barh([(_num(phase["after"]), begin - _num(phase["after"]))], (0.6, 0.8),
                           facecolors="white", edgecolors=colour, hatch="////", lw=0.0)
        end = (_num(phases[i + 1]["after"] or phases[i + 1]["first_observed"])
               if i + 1 < len(phases) else _num(observed[-1]) if observed else begin)
        ax.broken_barh([(begin, max(end - begin, 3.0))], (0.6, 0.8), facecolors=colour,
                       edgecolors="none")
        near_end = begin > first + 0.8 * (last - first)
        ax.text(begin + (3.0 if near_end else 0.0), 1.45 + 0.25 * (i % 2),
                f"{words(name)} {phase['first_observed']}", fontsize=7,
                ha="right" if near_end else "left", va="bottom")
        if name not in seen:
            seen.add(name)
            handles.append(Patch(facecolor=colour, label=words(name)))
    if any(p.get("after") for p in phases):
        handles.append(Patch(facecolor="white", edgecolor="#555555", hatch="////",
                             label="began in this interval"))
    ax.vlines([_num(d) for d in observed], 0.2, 0.5, color="black", lw=1.0)
    handles.append(Line2D([], [], color="black", lw=1.0, label="observed (clear)"))
    for n, event in enumerate(sorted(events, key=lambda e: str(e["occurred"]))):
        x = _num(str(event["occurred"])[:10])
        ax.plot(x, 2.2, marker="*", color=EVENT_COLOUR, markersize=10, zorder=5)
        side = "right" if x > first + 0.75 * (last - first) else "left" if x < first + 0.25 * (
            last - first) else "center"
        ax.text(x, 2.4 + 0.3 * (n % 2), f"{words(event['kind'])} ({str(event['occurred'])[:10]})",
                fontsize=7, ha=side, va="bottom", color=EVENT_COLOUR)
    if events:
        handles.append(Line2D([], [], color=EVENT_COLOUR, marker="*", lw=0, markersize=9,
                              label="analyst event"))
    ax.set_ylim(0.0, 3.0 if events else 2.0)
    ax.set_xlim(first - pad, last + pad)
    ax.set_yticks([])
    for spine in ("left", "right", "top"):
        ax.spines[spine].set_visible(False)
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.tick_params(labelsize=7)
    figure.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=7,
                  frameon=False, bbox_to_anchor=(0.5, 0.0))
    return _save(figure, path)


def _num(day: str) -> float:
    return float(mdates.date2num(date.fromisoformat(day[:10])))


# -- time-lapse ----------------------------------------------------------------------------------
def timelapse(imagery: StackImagery, gif_path: Path, strip_path: Path, site: Mapping,
              footprints: Footprints, crop: Crop, times: Sequence[int], rgb: np.ndarray,
              clear: np.ndarray, before: str | None) -> tuple[Path, Path]:
    """The time-lapse of ``site`` over the time steps ``times`` (GIF, :data:`FRAME_MS` per
    frame, looping) and a strip of up to :data:`KEY_FRAMES` key frames (PNG, see
    :func:`key_frames`; ``before`` is the day of the before image). ``rgb`` (dates, rows, cols,
    3) is the reflectance of ``crop`` on those dates, ``clear`` their clear masks."""
    images = stretch(rgb, clear)
    colour = tuple(int(type_colour(site["change_type"])[i:i + 2], 16) for i in (1, 3, 5))
    frames = [_frame(image, imagery, crop, footprints, imagery.dates[t], site, colour)
              for t, image in zip(times, images, strict=True)]
    palette_frames = [to_palette(frame) for frame in frames]
    palette_frames[0].save(gif_path, format="GIF", save_all=True,
                           append_images=palette_frames[1:], duration=FRAME_MS, loop=0,
                           optimize=False)
    keys = key_frames([imagery.dates[t] for t in times], site.get("first_seen"), before)
    chosen = [frames[k] for k in keys]
    gap = 8
    strip = Image.new("RGB", (sum(f.width for f in chosen) + gap * (len(chosen) - 1),
                              max(f.height for f in chosen)), "white")
    x = 0
    for frame in chosen:
        strip.paste(frame, (x, 0))
        x += frame.width + gap
    to_palette(strip).save(strip_path, format="PNG")
    return gif_path, strip_path


def key_frames(days: Sequence[str], first_seen: str | None,
               before: str | None = None) -> list[int]:
    """Indices of up to :data:`KEY_FRAMES` frames that tell the story, distinct and in time
    order: the first; the ``before`` day (the clear image before the change) if it is a frame,
    else the last frame before ``first_seen``; the first frame from ``first_seen``; the last."""
    chosen = {0, len(days) - 1}
    if before in days:
        chosen.add(days.index(before))
    elif first_seen and [d for d in days if d < first_seen]:
        chosen.add(max(i for i, d in enumerate(days) if d < first_seen))
    if first_seen and [d for d in days if d >= first_seen]:
        chosen.add(min(i for i, d in enumerate(days) if d >= first_seen))
    return sorted(chosen)[:KEY_FRAMES]


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    family = FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")
    return ImageFont.truetype(findfont(family), size)


def _frame(image: np.ndarray, imagery: StackImagery, crop: Crop, footprints: Footprints,
           day: str, site: Mapping, colour: tuple[int, int, int]) -> Image.Image:
    """One time-lapse frame: the crop about :data:`FRAME_PX` wide (a small crop upscaled by
    whole-pixel replication, a large one averaged down), the footprint of the date, the date and
    phase on a header, scale bar, and the credit on a footer."""
    rows, cols = image.shape[:2]
    if max(rows, cols) <= FRAME_PX:
        scale = max(1, round(FRAME_PX / max(rows, cols)))
        size, resampling = (cols * scale, rows * scale), Image.Resampling.NEAREST
    else:
        scale = FRAME_PX / max(rows, cols)
        size, resampling = (round(cols * scale), round(rows * scale)), Image.Resampling.BOX
    picture = Image.fromarray(image).resize(size, resampling)
    header, footer = 22, 16
    frame = Image.new("RGB", (picture.width, picture.height + header + footer), "black")
    frame.paste(picture, (0, header))
    draw = ImageDraw.Draw(frame)
    west, _, _, north = crop.extent
    metres_per_px = (crop.extent[1] - crop.extent[0]) / picture.width

    def to_frame(x: float, y: float) -> tuple[float, float]:
        return (x - west) / metres_per_px, header + (north - y) / metres_per_px

    footprint = footprints.on(day)
    for polygon in getattr(footprint, "geoms", [footprint]) if footprint is not None else []:
        if polygon.geom_type == "Polygon":
            draw.line([to_frame(x, y) for x, y in polygon.exterior.coords], fill=colour,
                      width=2)
    phase = _phase_on(site, day)
    draw.text((5, 3), day + (f"  {words(phase)}" if phase else ""), fill="white",
              font=_font(12, bold=True))
    length = nice_length(picture.width * metres_per_px)
    bar = length / metres_per_px
    y0 = header + picture.height - 10
    draw.rectangle((8, y0, 8 + bar, y0 + 4), fill="white", outline="black")
    draw.text((8, y0 - 15), length_label(length), fill="white", font=_font(11, bold=True),
              stroke_width=2, stroke_fill="black")
    draw.text((5, header + picture.height + 2), imagery.credit([imagery.dates.index(day)]),
              fill="#CCCCCC", font=_font(9))
    return frame


def _phase_on(site: Mapping, day: str) -> str | None:
    current = None
    for phase in (site.get("properties") or {}).get("phases") or []:
        if phase["first_observed"] <= day:
            current = phase["phase"]
    return current
