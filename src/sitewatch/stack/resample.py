"""Reading a registered scene onto the analysis grid, one window at a time.

Each band file is wrapped in a GDAL warped VRT (:class:`rasterio.vrt.WarpedVRT`) whose output
grid is the analysis grid, so any input CRS (geographic, UTM, State Plane...) and any band
resolution (Sentinel-2's 10/20/60 m) come out on the same pixels, and only the requested window is
ever warped. A co-registration shift is applied in the same resampling step by offsetting the
output transform, so pixels are interpolated once.

A band already on the grid's CRS and pixel size, axis-aligned (the common case: Sentinel-2's
10 m bands on a grid in their own UTM zone) skips the warper: the window is read straight from
the file and the remaining offset, a co-registration shift or a source origin off the grid's
lattice, is interpolated in numpy with the same kernel (bilinear or nearest). This gives the
warper's values where all four bilinear neighbours are valid and marks the rest invalid, at a
fraction of its cost.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import MaskFlags, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject
from rasterio.windows import Window

from sitewatch.errors import SitewatchError
from sitewatch.stack.grid import Grid


def reflectance_scale(dtype: str) -> float:
    """Factor from stored values to reflectance-like 0..1 values.

    Sentinel-2 and most multispectral products store reflectance x 10000 in 16-bit integers;
    8-bit imagery (aerial and VHR RGB) is scaled by 1/255, which gives a brightness on the same
    0..1 scale though not a calibrated reflectance. Floats are taken as reflectance already.
    """
    return {"uint8": 1 / 255, "uint16": 1e-4, "int16": 1e-4}.get(dtype, 1.0)


def _same_nodata(a: float | None, b: float | None) -> bool:
    """Whether nodata values ``a`` and ``b`` mark the same pixels (NaN equals NaN)."""
    return a is None or a == b or (b is not None and np.isnan(a) and np.isnan(b))


class SceneReader:
    """Reads the chosen bands of one scene row onto ``grid``; use as a context manager.

    Parameters
    ----------
    scene
        A ``scenes`` row of the workspace (``bands`` records with file, index, nodata).
    band_names
        Bands to read, in output order.
    grid
        The analysis grid.
    shift
        (dx, dy) in grid pixels: a ground feature at reference pixel (row, col) appears in this
        scene at (row + dy, col + dx); reading undoes it.
    resampling
        Bilinear by default (reflectance); use nearest for masks and labels.

    Files read straight keep their decoded blocks, a :class:`BlockCache` each, while the reader
    is open: read a row of overlapping windows left to right through one reader, or
    :meth:`reserve` the union of the windows read in turn.
    """

    def __init__(self, scene: dict, band_names: Sequence[str], grid: Grid,
                 shift: tuple[float, float] = (0.0, 0.0),
                 resampling: Resampling = Resampling.bilinear):
        by_name = {band["name"]: band for band in scene["bands"]}
        missing = [name for name in band_names if name not in by_name]
        if missing:
            raise SitewatchError(f"scene {scene['scene_id']} has no band(s) {missing}")
        self.scene = scene
        self.bands = [by_name[name] for name in band_names]
        self.grid = grid
        self.shift = shift
        self.resampling = resampling
        self._stack = contextlib.ExitStack()
        self._caches: dict[tuple, BlockCache] = {}  # decoded blocks of the files read straight
        # (dataset, band index, scale, offset): dataset is a WarpedVRT on the grid (offset None)
        # or the source file itself when its pixels are the grid's up to an (rows, cols) offset.
        self._bands: list[tuple[rasterio.io.DatasetReader | WarpedVRT, int, float,
                                tuple[float, float] | None]] = []

    def __enter__(self) -> SceneReader:
        transform = self.grid.transform @ Affine.translation(*self.shift)
        opened: dict[str, rasterio.DatasetReader] = {}
        try:
            for band in self.bands:
                if band["file"] not in opened:
                    opened[band["file"]] = self._stack.enter_context(rasterio.open(band["file"]))
                src = opened[band["file"]]
                nodata = band.get("nodata")
                nodata = nodata if nodata is not None else src.nodata
                scale = reflectance_scale(band["dtype"])
                offset = self._pixel_offset(src, transform)
                if offset is not None and _same_nodata(nodata, src.nodata):
                    self._bands.append((src, band["index"], scale, offset))
                    continue
                # Without a nodata value, an alpha band is what marks pixels outside the source.
                vrt = self._stack.enter_context(WarpedVRT(
                    src, crs=self.grid.crs, transform=transform, width=self.grid.width,
                    height=self.grid.height, resampling=self.resampling, src_nodata=nodata,
                    add_alpha=nodata is None,
                ))
                self._bands.append((vrt, band["index"], scale, None))
        except rasterio.errors.RasterioIOError as exc:
            self._stack.close()
            raise SitewatchError(f"cannot read scene {self.scene['scene_id']} ({exc}); was a "
                                 "file moved since ingest?", self.scene["source"]) from exc
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()
        self._caches.clear()

    def _pixel_offset(self, src, transform: Affine) -> tuple[float, float] | None:
        """(rows, cols) position in ``src``'s pixels of the grid pixel (0, 0), when ``src`` has
        the grid's CRS and pixel size without rotation; None when it must be warped."""
        if self.resampling not in (Resampling.bilinear, Resampling.nearest):
            return None
        if src.crs is None or src.crs != self.grid.crs:
            return None
        a, b, _, d, e, _ = src.transform[:6]
        tolerance = 1e-9 * abs(transform.a)
        if (b != 0 or d != 0 or abs(a - transform.a) > tolerance
                or abs(e - transform.e) > tolerance):
            return None
        rows = (transform.f - src.transform.f) / e
        cols = (transform.c - src.transform.c) / a
        return tuple(float(np.round(v)) if abs(v - np.round(v)) < 1e-6 else v
                     for v in (rows, cols))

    def reserve(self, window: Window) -> None:
        """Keep the decoded blocks of ``window`` (grid pixels) of every file read straight, so
        that windows inside it, read in any order, decode each block once."""
        for _, _, dataset, indexes, _, offset in self._groups():
            if offset is None:
                continue
            row, col = (int(np.floor(window_off + v)) for window_off, v in
                        ((window.row_off, offset[0]), (window.col_off, offset[1])))
            cache = self._cache(dataset, indexes)
            cache.capacity = max(cache.capacity, _blocks_touched(
                dataset, indexes, Window(col, row, window.width + 1, window.height + 1)))

    def _cache(self, src, indexes: list[int]) -> BlockCache:
        return self._caches.setdefault((src.name, tuple(indexes)), BlockCache())

    def _read_direct(self, src, indexes: list[int], offset: tuple[float, float],
                     window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Bands ``indexes`` of ``window`` read from the source file in one call and
        interpolated at ``offset``: (bands, rows, cols) float32 in file units, and where every
        one of them is valid (rows, cols)."""
        height, width = int(window.height), int(window.width)
        row, col = window.row_off + offset[0], window.col_off + offset[1]
        if self.resampling == Resampling.nearest:
            row, col = np.floor(row + 0.5), np.floor(col + 0.5)
        row0, col0 = int(np.floor(row)), int(np.floor(col))
        fy, fx = np.float32(row - row0), np.float32(col - col0)
        rows, cols = height + int(fy > 0), width + int(fx > 0)
        r0, c0 = max(row0, 0), max(col0, 0)
        r1, c1 = min(row0 + rows, src.height), min(col0 + cols, src.width)
        if (r0, c0, r1, c1) == (row0, col0, row0 + rows, col0 + cols):  # inside the file
            part_window = Window(c0, r0, c1 - c0, r1 - r0)
            values = _read_blocks(src, indexes, part_window, self._cache(src, indexes))
            valid = _valid_pixels(src, indexes, values, part_window)
        else:
            values = np.zeros((len(indexes), rows, cols), np.float32)
            valid = np.zeros((rows, cols), bool)
            if r1 > r0 and c1 > c0:  # partly inside
                part_window = Window(c0, r0, c1 - c0, r1 - r0)
                inside = (slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0))
                part = _read_blocks(src, indexes, part_window, self._cache(src, indexes))
                values[(slice(None), *inside)] = part
                valid[inside] = _valid_pixels(src, indexes, part, part_window)
        if fy > 0 or fx > 0:
            values[:, ~valid] = 0  # invalid neighbours must not make NaN of valid pixels
        if fy > 0:
            values = (1 - fy) * values[:, :-1] + fy * values[:, 1:]
            valid = valid[:-1] & valid[1:]
        if fx > 0:
            values = (1 - fx) * values[:, :, :-1] + fx * values[:, :, 1:]
            valid = valid[:, :-1] & valid[:, 1:]
        return values, valid

    def _groups(self):
        """(first, last, dataset, indexes, scale, offset) of each run of bands read in one
        call: consecutive bands of one file read directly (a multi-band GeoTIFF), or one
        warped band (offset None)."""
        i = 0
        while i < len(self._bands):
            dataset, index, scale, offset = self._bands[i]
            last = i
            while (offset is not None and last + 1 < len(self._bands)
                   and self._bands[last + 1][0] is dataset
                   and self._bands[last + 1][2:] == (scale, offset)):
                last += 1
            yield i, last, dataset, [b[1] for b in self._bands[i:last + 1]], scale, offset
            i = last + 1

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Bands in ``window`` as float32 (bands, rows, cols) scaled, NaN where invalid; and the
        validity mask (rows, cols): True where every band has data."""
        out = np.empty((len(self._bands), int(window.height), int(window.width)), np.float32)
        valid = np.ones(out.shape[1:], bool)
        for first, last, dataset, indexes, scale, offset in self._groups():
            if offset is None:
                data = dataset.read(indexes[0], window=window, masked=True)
                values, group_valid = data.data[None], ~np.ma.getmaskarray(data)
            else:
                values, group_valid = self._read_direct(dataset, indexes, offset, window)
            np.multiply(values, scale, out=out[first:last + 1], casting="unsafe")
            valid &= group_valid
        np.copyto(out, np.nan, where=~valid)
        return out, valid

    def read_decimated(self, factor: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole grid at ``factor`` times coarser pixels (average of the valid pixels).

        A band read straight from its file is averaged from the file at the nearest whole-pixel
        offset (half a pixel at most, ``0.5 / factor`` of a decimated pixel): by GDAL from its
        overviews when it has some (cloud-optimised GeoTIFFs do), else in numpy strip by strip.
        """
        height = max(1, self.grid.height // factor)
        width = max(1, self.grid.width // factor)
        out = np.empty((len(self._bands), height, width), np.float32)
        valid = np.ones((height, width), bool)
        for first, last, dataset, indexes, scale, offset in self._groups():
            window = None
            if offset is not None:
                row, col = (int(np.floor(v + 0.5)) for v in offset)
                window = Window(col, row, self.grid.width, self.grid.height)
                inside = (row >= 0 and col >= 0 and row + self.grid.height <= dataset.height
                          and col + self.grid.width <= dataset.width)
                if not (inside and dataset.overviews(indexes[0])):
                    values, group_valid = _binned_mean(dataset, indexes, window,
                                                       (height, width))
                    np.multiply(values, scale, out=out[first:last + 1], casting="unsafe")
                    valid &= group_valid
                    continue
            for i, index in enumerate(indexes, first):
                data = dataset.read(index, window=window, out_shape=(height, width),
                                    masked=True, resampling=Resampling.average)
                np.multiply(data.data, scale, out=out[i], casting="unsafe")
                valid &= ~np.ma.getmaskarray(data)
        out[:, ~valid] = np.nan
        return out, valid


class BlockCache:
    """Decoded blocks of one file a reader reads straight, least recently used first out.

    It holds as many blocks as the largest window read so far touched (see
    :func:`_read_blocks`), or as :meth:`SceneReader.reserve` asked, so a reader that sweeps a
    row of overlapping windows left to right decodes each block once: a window's blocks shared
    with the next are the most recently used. Decoding is what a read of a DEFLATE GeoTIFF
    costs (about 15 ms for a 512 x 512 block of 4 float32 bands), and a 1024 px tile read with a
    64 px overlap touches 4 x 4 such blocks for 2 x 2 blocks of its own.
    """

    def __init__(self):
        self._blocks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.capacity = 0  # blocks of one file

    def get(self, key: tuple) -> np.ndarray | None:
        block = self._blocks.get(key)
        if block is not None:
            self._blocks.move_to_end(key)
        return block

    def put(self, key: tuple, block: np.ndarray) -> None:
        self._blocks[key] = block
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)


def _blocks_touched(src, indexes: list[int], window: Window) -> int:
    """How many blocks of ``src`` the part of ``window`` inside the file touches."""
    block_rows, block_cols = src.block_shapes[indexes[0] - 1]
    r0, c0 = max(window.row_off, 0), max(window.col_off, 0)
    r1 = min(window.row_off + window.height, src.height)
    c1 = min(window.col_off + window.width, src.width)
    if r1 <= r0 or c1 <= c0:
        return 0
    return (((r1 - 1) // block_rows - r0 // block_rows + 1)
            * ((c1 - 1) // block_cols - c0 // block_cols + 1))


def _read_blocks(src, indexes: list[int], window: Window,
                 cache: BlockCache | None = None) -> np.ndarray:
    """Bands ``indexes`` of ``window`` as float32, read as the whole blocks of the file that it
    touches when those cover at most four times its area: GDAL reads a window cut across
    blocks of a pixel-interleaved GeoTIFF about half as fast as whole blocks. With a ``cache``
    the blocks are read one by one and kept for the next windows."""
    block_rows, block_cols = src.block_shapes[indexes[0] - 1]
    r0, c0 = window.row_off // block_rows * block_rows, window.col_off // block_cols * block_cols
    r1 = min(-(-(window.row_off + window.height) // block_rows) * block_rows, src.height)
    c1 = min(-(-(window.col_off + window.width) // block_cols) * block_cols, src.width)
    if (r1 - r0) * (c1 - c0) > 4 * window.width * window.height:
        return src.read(indexes, window=window, out_dtype=np.float32)
    if cache is None:
        blocks = src.read(indexes, window=Window(c0, r0, c1 - c0, r1 - r0),
                          out_dtype=np.float32)
        return blocks[:, window.row_off - r0:window.row_off - r0 + window.height,
                      window.col_off - c0:window.col_off - c0 + window.width]
    out = np.empty((len(indexes), int(window.height), int(window.width)), np.float32)
    block_starts = [(row, col) for row in range(r0, r1, block_rows)
                    for col in range(c0, c1, block_cols)]
    cache.capacity = max(cache.capacity, len(block_starts))
    for row, col in block_starts:
        key = (src.name, tuple(indexes), row, col)
        block = cache.get(key)
        if block is None:
            block = src.read(indexes, window=Window(col, row, min(block_cols, src.width - col),
                                                    min(block_rows, src.height - row)),
                             out_dtype=np.float32)
            cache.put(key, block)
        top, left = max(row, window.row_off), max(col, window.col_off)
        bottom = min(row + block.shape[1], window.row_off + window.height)
        right = min(col + block.shape[2], window.col_off + window.width)
        out[:, top - window.row_off:bottom - window.row_off,
            left - window.col_off:right - window.col_off] = \
            block[:, top - row:bottom - row, left - col:right - col]
    return out


def _valid_pixels(src, indexes: list[int], data: np.ndarray, window: Window) -> np.ndarray:
    """Where every band of ``data`` (read from ``window`` of ``src``) holds a finite value that
    is not nodata; GDAL's mask bands are read only when the file has per-dataset masks or an
    alpha band."""
    valid = np.isfinite(data).all(axis=0)
    for index, data_band in zip(indexes, data, strict=True):
        flags = src.mask_flag_enums[index - 1]
        if flags == [MaskFlags.all_valid]:
            continue
        if MaskFlags.nodata in flags and src.nodata is not None:
            if not np.isnan(src.nodata):
                valid &= data_band != np.float32(src.nodata)
            continue
        valid &= src.read_masks(index, window=window) != 0
    return valid


#: Source rows read at once by :func:`_binned_mean`, bounding its memory.
_STRIP_ROWS = 512


def _binned_mean(src, indexes: list[int], window: Window, shape: tuple[int, int]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the valid pixels of ``window`` of bands ``indexes`` in ``shape`` bins (the bins
    of GDAL's average resampling: output pixel ``j`` averages source pixels ``floor(j * n / m)``
    up to ``floor((j + 1) * n / m)``), reading the window in strips of every band at once. A
    pixel is valid where every band is (:func:`_valid_pixels`); parts of the window outside the
    file are invalid; a bin without a valid pixel is invalid. Returns (bands, rows, cols) and
    the bins' validity."""
    height, width = shape
    row_edges = (np.arange(height + 1) * int(window.height)) // height
    col_edges = (np.arange(width) * int(window.width)) // width
    sums = np.zeros((len(indexes), *shape), np.float64)
    counts = np.zeros(shape, np.float64)
    col0 = int(window.col_off)
    c0, c1 = max(col0, 0), min(col0 + int(window.width), src.width)
    cache = BlockCache()  # the blocks two strips share are decoded once
    first = 0
    while first < height:
        last = first + 1
        while last < height and row_edges[last + 1] - row_edges[first] <= _STRIP_ROWS:
            last += 1
        row0 = int(window.row_off) + int(row_edges[first])
        rows = int(row_edges[last] - row_edges[first])
        r0, r1 = max(row0, 0), min(row0 + rows, src.height)
        part_window = Window(c0, r0, c1 - c0, r1 - r0)
        if (r1 - r0, c1 - c0) == (rows, int(window.width)):  # the strip is inside the file
            values = _read_blocks(src, indexes, part_window, cache)
            ok = _valid_pixels(src, indexes, values, part_window)
        else:
            values = np.zeros((len(indexes), rows, int(window.width)), np.float32)
            ok = np.zeros(values.shape[1:], bool)
            if r1 > r0 and c1 > c0:
                part = _read_blocks(src, indexes, part_window, cache)
                inside = (slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0))
                ok[inside] = _valid_pixels(src, indexes, part, part_window)
                values[(slice(None), *inside)] = part
        np.copyto(values, 0, where=~ok)
        bounds = row_edges[first:last + 1] - row_edges[first]
        # Rows summed in float32 (a bin's few hundred values lose nothing a preview shows),
        # twice as fast as in float64 on the full-resolution strip; columns in float64.
        sums[:, first:last] = np.add.reduceat(_row_bin_sums(values, bounds), col_edges,
                                              axis=2, dtype=np.float64)
        counts[first:last] = np.add.reduceat(_row_bin_sums(ok, bounds), col_edges, axis=1,
                                             dtype=np.float64)
        first = last
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).astype(np.float32), counts > 0


def _row_bin_sums(array: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Sums of ``array`` (..., rows, cols) over the row bins ``bounds[i]:bounds[i + 1]``, one
    slice sum per bin: ``np.add.reduceat`` along an axis other than the last is four times
    slower on a strip of a Sentinel-2 scene. Bool arrays give counts."""
    return np.stack([array[..., low:high, :].sum(axis=-2)
                     for low, high in zip(bounds[:-1], bounds[1:], strict=True)], axis=-2)


def reproject_to_grid(array: np.ndarray, transform: Affine, crs, grid: Grid, *,
                      nodata: float | None = None,
                      resampling: Resampling = Resampling.nearest) -> np.ndarray:
    """Bring a 2-D array (labels, masks: nearest by default) from its grid onto ``grid``.

    Pixels of ``grid`` outside the source get ``nodata`` (0 if not given).
    """
    fill = 0 if nodata is None else nodata
    out = np.full(grid.shape, fill, dtype=array.dtype)
    reproject(array, out, src_transform=transform, src_crs=crs, dst_transform=grid.transform,
              dst_crs=grid.crs, resampling=resampling, src_nodata=nodata, dst_nodata=fill)
    return out
