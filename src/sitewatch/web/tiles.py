"""Map tiles of an AOI: its stack's imagery on any date and its change layers, as PNGs in the
stack's own grid.

Tile grid
    The stack's grid (its UTM CRS, :class:`TileGrid`): origin at the grid's north-west corner,
    :data:`TILE_PX` pixels a side; level ``top`` has the stack's pixel (a tile pixel is a stack
    pixel), each level above it twice the pixel size, level 0 the whole grid in one tile.
    Tile (z, x, y) counts x east and y south of the origin, as OpenLayers' ``TileGrid`` does
    with a top-left origin. No reprojection: the page draws the map in the grid's CRS.

Imagery
    True colour (the bands of :func:`sitewatch.report.figures.true_colour_bands`), each band
    stretched linearly between its 2nd and 98th percentile over the date's clear pixels (one
    full-resolution pixel per overview block), the same stretch for every tile of a date; no
    data transparent. A tile pixel is the mean of the valid stack pixels it covers. Tiles at
    most :data:`DIRECT_MAX` stack pixels per tile pixel read their window of the Zarr stack (one
    to four 512 px chunks, since the tile grid and the chunk grid share their origin); coarser
    tiles read the date's overview, built on the first such request in one pass over the date
    (strip by strip, so memory stays at a few strips): sums and counts of valid pixels over
    :data:`OVERVIEW_FACTOR` x :data:`OVERVIEW_FACTOR` blocks.

Change layers
    The newest ``change:onset``, ``change:magnitude`` and ``change:kinds`` rasters of the AOI
    on the stack's grid (Cloud-Optimised GeoTIFFs written by ``sitewatch detect``), read through
    rasterio with the tile's window and output size, so that GDAL reads the COG's overview
    that fits and only the blocks under the tile (nearest neighbour: onsets and kinds are not
    to be averaged). Each comes with its legend (:meth:`ChangeLayer.legend`).

Rendered tiles stay in a memory cache (least recently used out beyond :data:`CACHE_BYTES`),
keyed by stack or raster path, layer, date and tile.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import rasterio
import zarr
from matplotlib import colormaps
from PIL import Image
from pyproj import CRS
from rasterio.windows import Window

from sitewatch.report.figures import STRETCH_PERCENTILES, true_colour_bands
from sitewatch.stack import Grid, open_stack
from sitewatch.stack.output import CHUNK, CLEAR, NODATA
from sitewatch.store import Workspace

#: Side of a tile, pixels.
TILE_PX = 256
#: Largest number of stack pixels per tile pixel (along a side) read from the stack itself;
#: coarser levels read the overview.
DIRECT_MAX = 4
#: Side of the overview's blocks, stack pixels (twice :data:`DIRECT_MAX`: the finest level
#: read from it).
OVERVIEW_FACTOR = 2 * DIRECT_MAX
#: Threads that build an overview (strips of one Zarr chunk row at a time).
OVERVIEW_THREADS = 2
#: Memory the overviews of a stack may hold, bytes (the dates built first go beyond it):
#: a 10980 px date's overview is 28 MB.
OVERVIEW_BYTES = 512 * 2**20
#: Memory the tile cache may hold, bytes.
CACHE_BYTES = 256 * 2**20
#: zlib level of the PNGs (1: fastest, about 5 % bigger than the default).
PNG_COMPRESS_LEVEL = 1
#: The change layers shown, by the ``rasters`` kind they come from.
CHANGE_LAYERS = {"onset": "change:onset", "magnitude": "change:magnitude",
                 "kinds": "change:kinds"}
#: Colour of each kind of change of ``change:kinds`` (names as sitewatch.detect.pairwise
#: writes them); the first band that is set colours a pixel.
KIND_COLOURS = {"vegetation_loss": "#d95f02", "vegetation_gain": "#1b9e77",
                "new_bright_surface": "#e7298a", "darkening": "#7570b3"}
#: Value of an onset raster where no break was found (sitewatch.detect.run.NO_DAY).
NO_DAY = np.iinfo(np.int32).min
_EPOCH = date(1970, 1, 1)


class TileOutside(LookupError):
    """A tile address outside the tile grid (its message says which levels and tiles exist)."""


@dataclass(frozen=True)
class TileGrid:
    """The tile pyramid of a stack grid (see the module text)."""

    grid: Grid

    @property
    def top(self) -> int:
        """The finest level, whose tile pixel is the stack's pixel."""
        side = max(self.grid.width, self.grid.height)
        return max(0, math.ceil(math.log2(side / TILE_PX)))

    def factor(self, z: int) -> int:
        """Stack pixels per tile pixel (along a side) at level ``z``."""
        return 2 ** (self.top - z)

    def tiles(self, z: int) -> tuple[int, int]:
        """Number of tiles (columns, rows) of level ``z``."""
        span = TILE_PX * self.factor(z)
        return math.ceil(self.grid.width / span), math.ceil(self.grid.height / span)

    def window(self, z: int, x: int, y: int) -> tuple[int, int, int]:
        """First row, first column and side (stack pixels) of tile (z, x, y).

        Raises
        ------
        TileOutside
            No such level or no such tile in it.
        """
        if not 0 <= z <= self.top:
            raise TileOutside(f"no tile level {z}; levels are 0 to {self.top}")
        columns, rows = self.tiles(z)
        if not (0 <= x < columns and 0 <= y < rows):
            raise TileOutside(f"no tile {x}/{y} at level {z}; it has {columns} x {rows} "
                              "tiles")
        span = TILE_PX * self.factor(z)
        return y * span, x * span, span

    def to_dict(self) -> dict:
        """What the page needs for OpenLayers: the CRS (EPSG code and PROJ string for
        proj4js), extent (west, south, east, north, metres), origin, resolutions (metres per
        tile pixel, level 0 first) and tile size."""
        g = self.grid
        with warnings.catch_warnings():
            # A UTM (or other projected) EPSG CRS loses nothing proj4js needs in a PROJ string.
            warnings.simplefilter("ignore", UserWarning)
            definition = CRS.from_epsg(g.epsg).to_proj4()
        return {"epsg": g.epsg, "proj4": definition,
                "extent": list(g.bounds), "origin": [g.west, g.north], "tile_px": TILE_PX,
                "resolutions": [g.resolution * self.factor(z) for z in range(self.top + 1)]}


@dataclass(frozen=True)
class Stretch:
    """Linear stretch of the three true-colour bands: reflectance ``low`` maps to 0 and
    ``high`` to 255 (each (3,) float)."""

    low: np.ndarray
    high: np.ndarray

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """(..., 3) reflectance as uint8."""
        scaled = (rgb - self.low) / np.maximum(self.high - self.low, 1e-6)
        return np.round(255 * np.clip(scaled, 0, 1)).astype(np.uint8)


@dataclass(frozen=True)
class Overview:
    """A date of the stack in blocks of :data:`OVERVIEW_FACTOR` pixels: per block the sums of
    the valid pixels' reflectance (3, rows, cols) and their count (rows, cols, uint8: at most
    64); and the date's stretch (from one clear full-resolution pixel per block)."""

    sums: np.ndarray
    counts: np.ndarray
    stretch: Stretch

    @property
    def nbytes(self) -> int:
        return self.sums.nbytes + self.counts.nbytes


class StackTiles:
    """Tiles of one stack (a Zarr store read lazily, chunk by chunk) on its ``dates`` (ISO
    days)."""

    def __init__(self, path: Path, grid: Grid):
        self.path = str(path)
        self.grid = TileGrid(grid)
        self.dataset = open_stack(path, dask=False)
        group = zarr.open_group(str(path), mode="r")
        self._reflectance, self._mask = group["reflectance"], group["mask"]
        self.dates = tuple(str(t)[:10] for t in self.dataset.time.values)
        names = [str(b) for b in self.dataset.band.values]
        self.band_index = [names.index(b) for b in true_colour_bands(names)]
        self._overviews: OrderedDict[int, Overview] = OrderedDict()
        self._building = threading.Lock()

    def overview(self, t: int) -> Overview:
        """The overview of time step ``t``, built on first use (one build at a time, since
        each uses every core; tiles of dates already built do not wait)."""
        overview = self._overviews.get(t)
        if overview is None:
            with self._building:
                overview = self._overviews.get(t)
                if overview is None:
                    overview = self._build_overview(t)
                    kept = dict(self._overviews)
                    while kept and overview.nbytes + sum(o.nbytes for o in kept.values()
                                                         ) > OVERVIEW_BYTES:
                        kept.pop(next(iter(kept)))
                    self._overviews = OrderedDict({**kept, t: overview})
        return overview

    def stretch(self, t: int) -> Stretch:
        """The stretch of time step ``t`` (from its overview)."""
        return self.overview(t).stretch

    def render(self, t: int, z: int, x: int, y: int) -> np.ndarray:
        """RGBA (TILE_PX, TILE_PX, 4) uint8 of tile (z, x, y) on time step ``t``."""
        row, col, span = self.grid.window(z, x, y)
        factor = self.grid.factor(z)
        overview = self.overview(t)
        if factor <= DIRECT_MAX:
            sums, counts, _ = self._read_sums(t, row, col, span, span)
            sums, counts = _block_sum(sums, factor), _block_sum(counts, factor)
        else:
            k, step = OVERVIEW_FACTOR, factor // OVERVIEW_FACTOR
            r0, c0, side = row // k, col // k, span // k
            sums = _padded(overview.sums[:, r0:r0 + side, c0:c0 + side], side)
            counts = _padded(overview.counts[r0:r0 + side, c0:c0 + side].astype(np.float32),
                             side)
            sums, counts = _block_sum(sums, step), _block_sum(counts, step)
        valid = counts > 0
        mean = np.moveaxis(sums / np.maximum(counts, 1), 0, -1)
        tile = np.zeros((TILE_PX, TILE_PX, 4), np.uint8)
        tile[..., :3] = overview.stretch.apply(mean)
        tile[..., 3] = np.where(valid, 255, 0)
        return tile

    def _read_sums(self, t: int, row: int, col: int, height: int, width: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Reflectance of the true-colour bands of a window of time step ``t`` as (sums
        (3, height, width), counts, clear counts), zero where invalid or outside the grid.
        Read from the Zarr arrays themselves (xarray's indexing would copy the window twice
        more), bands first as stored."""
        rows = slice(row, min(row + height, self.grid.grid.height))
        cols = slice(col, min(col + width, self.grid.grid.width))
        values = self._reflectance[t, :, rows, cols][self.band_index]
        flags = self._mask[t, rows, cols]
        valid = np.isfinite(values).all(axis=0) & (flags != NODATA)
        np.copyto(values, 0, where=~valid)
        clear = valid & (flags == CLEAR)
        pad = ((0, height - valid.shape[0]), (0, width - valid.shape[1]))
        if any(p[1] for p in pad):
            values = np.pad(values, ((0, 0), *pad))
            valid, clear = np.pad(valid, pad), np.pad(clear, pad)
        return values, valid.astype(np.float32), clear.astype(np.float32)

    def _build_overview(self, t: int) -> Overview:
        g, k = self.grid.grid, OVERVIEW_FACTOR
        width = math.ceil(g.width / k) * k

        def strip(row: int):
            sums, counts, clear = self._read_sums(t, row, 0, CHUNK, width)
            # one full-resolution pixel per block, where clear: the stretch is the one of the
            # pixels themselves (as the report's frames), not of block means, whose narrower
            # spread would saturate the imagery's texture once zoomed in
            picked = clear[::k, ::k] > 0
            pixels = sums[:, ::k, ::k][:, picked]
            return _block_sum(sums, k), _block_sum(counts, k), _block_sum(clear, k), pixels

        with ThreadPoolExecutor(OVERVIEW_THREADS) as pool:
            parts = list(pool.map(strip, range(0, g.height, CHUNK)))
        rows = math.ceil(g.height / k)
        sums = np.concatenate([p[0] for p in parts], axis=1)[:, :rows]
        counts = np.concatenate([p[1] for p in parts])[:rows]
        pixels = np.concatenate([p[3] for p in parts], axis=1)
        if pixels.shape[1]:
            low, high = np.percentile(pixels, STRETCH_PERCENTILES, axis=1)
        elif (counts > 0).any():  # no clear pixel: the valid blocks
            low, high = np.percentile((sums / np.maximum(counts, 1))[:, counts > 0],
                                      STRETCH_PERCENTILES, axis=1)
        else:
            low, high = np.zeros(3), np.ones(3)
        return Overview(sums, counts.astype(np.uint8), Stretch(np.asarray(low, np.float32),
                                              np.asarray(high, np.float32)))


@dataclass(frozen=True)
class ChangeLayer:
    """A change raster of an AOI shown as tiles: ``name`` (a key of :data:`CHANGE_LAYERS`),
    the raster's workspace ``path``, the band names (kinds) and the value range coloured
    (onset: days since 1970-01-01 of the stack's first and last date; magnitude: 0 to its 98th
    percentile)."""

    name: str
    path: Path
    bands: tuple[str, ...]
    low: float
    high: float

    def legend(self) -> dict:
        """The legend the page draws: a colour ramp with its end labels, or classes."""
        if self.name == "kinds":
            return {"title": "Kinds of change", "classes": [
                {"label": band.replace("_", " "), "colour": KIND_COLOURS.get(band, "#ffffff")}
                for band in self.bands]}
        ramp = [_hex(c) for c in _ramp(self.name)[np.linspace(0, 255, 6).astype(int)]]
        if self.name == "onset":
            return {"title": "Onset of change", "ramp": ramp,
                    "labels": [_day(self.low), _day(self.high)]}
        return {"title": "Magnitude of change (reflectance)", "ramp": ramp,
                "labels": [f"{self.low:.2g}", f"{self.high:.2g}"]}

    def render(self, grid: TileGrid, z: int, x: int, y: int) -> np.ndarray:
        """RGBA (TILE_PX, TILE_PX, 4) uint8 of tile (z, x, y); transparent where there is no
        change (or no data)."""
        row, col, span = grid.window(z, x, y)
        factor = grid.factor(z)
        height = min(span, grid.grid.height - row)
        width = min(span, grid.grid.width - col)
        shape = (max(1, round(height / factor)), max(1, round(width / factor)))
        with rasterio.open(self.path) as src:
            data = src.read(window=Window(col, row, width, height), out_shape=(src.count,
                                                                               *shape))
            nodata = src.nodata
        tile = np.zeros((TILE_PX, TILE_PX, 4), np.uint8)
        tile[:shape[0], :shape[1]] = self._colour(data, nodata)
        return tile

    def _colour(self, data: np.ndarray, nodata) -> np.ndarray:
        out = np.zeros((*data.shape[1:], 4), np.uint8)
        if self.name == "kinds":
            for band, name in reversed(list(enumerate(self.bands))):
                out[data[band] == 1] = (*_rgb(KIND_COLOURS.get(name, "#ffffff")), 255)
            return out
        values = data[0].astype(np.float64)
        shown = np.isfinite(values)
        if self.name == "onset":
            shown &= data[0] != NO_DAY
        elif nodata is not None and not np.isnan(nodata):
            shown &= values != nodata
        scaled = (values - self.low) / max(self.high - self.low, 1e-9)
        index = np.round(255 * np.clip(np.nan_to_num(scaled), 0, 1)).astype(np.uint8)
        out[..., :3] = _ramp(self.name)[index]
        out[..., 3] = np.where(shown, 255, 0)
        return out


def change_layers(ws: Workspace, aoi: str, grid: Grid, dates: tuple[str, ...]
                  ) -> dict[str, ChangeLayer]:
    """The change layers of ``aoi`` on ``grid`` (newest run of each kind; rasters of another
    grid, from an older stack, are left out)."""
    layers = {}
    for name, kind in CHANGE_LAYERS.items():
        for record in ws.rows("rasters", "aoi = ? AND kind = ?", (aoi, kind),
                              order_by="fid DESC"):
            path = ws.root / record["path"]
            if not path.is_file():
                continue
            with rasterio.open(path) as src:
                if (src.width, src.height) != (grid.width, grid.height) or \
                        not src.transform.almost_equals(grid.transform):
                    continue
                bands = tuple(d or f"band {i + 1}" for i, d in enumerate(src.descriptions))
                low, high = _value_range(name, src, dates)
            layers[name] = ChangeLayer(name, path, bands, low, high)
            break
    return layers


def _value_range(name: str, src, dates: tuple[str, ...]) -> tuple[float, float]:
    """The values coloured from the first to the last colour of the ramp."""
    if name == "onset":
        first, last = (date.fromisoformat(d) for d in (dates[0], dates[-1]))
        return float((first - _EPOCH).days), float((last - _EPOCH).days)
    if name == "magnitude":
        side = max(1, max(src.width, src.height) // 512)
        sample = src.read(1, out_shape=(max(1, src.height // side),
                                        max(1, src.width // side)))
        sample = sample[np.isfinite(sample)]
        return 0.0, float(np.percentile(sample, 98)) if sample.size else 1.0
    return 0.0, 1.0


class Tiles:
    """Opens stacks for tiling and renders their tiles as PNGs, caching both."""

    def __init__(self, cache_bytes: int = CACHE_BYTES):
        self._stacks: dict[str, StackTiles] = {}
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._held = 0
        self._lock = threading.Lock()

    def stack(self, path: Path, grid: Grid) -> StackTiles:
        """The tiles of the stack at ``path`` (opened once)."""
        key = str(path)
        with self._lock:
            if key not in self._stacks:
                self._stacks[key] = StackTiles(path, grid)
            return self._stacks[key]

    def imagery_png(self, stack: StackTiles, t: int, z: int, x: int, y: int) -> bytes:
        """The PNG of imagery tile (z, x, y) on time step ``t``."""
        return self._cached(("imagery", stack.path, t, z, x, y),
                            lambda: stack.render(t, z, x, y))

    def change_png(self, layer: ChangeLayer, grid: TileGrid, z: int, x: int, y: int
                   ) -> bytes:
        """The PNG of change tile (z, x, y) of ``layer``."""
        return self._cached(("change", str(layer.path), z, x, y),
                            lambda: layer.render(grid, z, x, y))

    def _cached(self, key: tuple, render) -> bytes:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        png = _png(render())
        with self._lock:
            if key not in self._cache:
                self._cache[key] = png
                self._held += len(png)
                while self._held > self._cache_bytes and len(self._cache) > 1:
                    _, dropped = self._cache.popitem(last=False)
                    self._held -= len(dropped)
        return png


def _block_sum(array: np.ndarray, k: int) -> np.ndarray:
    """Sums over k x k blocks of the last two axes (whose lengths are multiples of k)."""
    if k == 1:
        return array
    *lead, h, w = array.shape
    return array.reshape(*lead, h // k, k, w // k, k).sum(axis=(-3, -1))


def _padded(array: np.ndarray, side: int) -> np.ndarray:
    """``array`` padded with zeros to ``side`` x ``side`` (its last two axes)."""
    out = np.zeros((*array.shape[:-2], side, side), array.dtype)
    out[..., :array.shape[-2], :array.shape[-1]] = array
    return out


def _ramp(name: str) -> np.ndarray:
    """(256, 3) uint8 colours of a layer's ramp: viridis for onsets, magma for magnitude."""
    cmap = colormaps["viridis" if name == "onset" else "magma"]
    return np.round(255 * cmap(np.linspace(0, 1, 256))[:, :3]).astype(np.uint8)


def _rgb(colour: str) -> tuple[int, int, int]:
    """A "#rrggbb" colour as its three 0-255 values."""
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


def _day(days: float) -> str:
    return (_EPOCH + timedelta(days=int(days))).isoformat()


def _png(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()

