"""The tile layout of a grid: square cores that partition it, each read with an overlap.

A tile's *core* is the part of the grid it owns: it writes the stack and the change layers of
those pixels and nothing else, so tiles never write the same pixel. Its *outer* window is the
core plus ``overlap_px`` pixels on every side (clipped to the grid): the context the cloud and
shadow masks need so an object cut by the core's edge is judged whole, as
:data:`sitewatch.stack.build.HALO` does for the blocks of a one-process stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from rasterio.windows import Window

from sitewatch.errors import SitewatchError
from sitewatch.stack.grid import Grid
from sitewatch.stack.output import CHUNK


@dataclass(frozen=True)
class Tile:
    """One tile: its position in the layout and its core and outer windows (grid pixels)."""

    row: int
    col: int
    core: Window
    outer: Window

    @property
    def name(self) -> str:
        return f"tile-{self.row:03d}-{self.col:03d}"


def chunk_side(tile_px: int) -> int:
    """The Zarr chunk side (pixels) of a stack written in tiles of ``tile_px``.

    Chunks must not straddle tile cores, or two workers would rewrite the same chunk file:
    tiles up to :data:`~sitewatch.stack.output.CHUNK` pixels are one chunk each, larger tiles
    must be a multiple of it.
    """
    if tile_px <= 0:
        raise SitewatchError(f"tile size must be a positive number of pixels, got {tile_px}")
    if tile_px <= CHUNK:
        return tile_px
    if tile_px % CHUNK:
        raise SitewatchError(f"tile size {tile_px} px above {CHUNK} must be a multiple of "
                             f"{CHUNK} (the stack's chunk side)")
    return CHUNK


def tile_layout(grid: Grid, tile_px: int, overlap_px: int) -> list[Tile]:
    """The tiles of ``grid``, row by row from the north-west corner.

    Parameters
    ----------
    grid
        The AOI's analysis grid.
    tile_px
        Side of a tile core, pixels (see :func:`chunk_side` for the allowed values).
    overlap_px
        Pixels read around each core for context, not written.
    """
    chunk_side(tile_px)
    if overlap_px < 0:
        raise SitewatchError(f"tile overlap must be zero or more pixels, got {overlap_px}")
    tiles = []
    for r, row in enumerate(range(0, grid.height, tile_px)):
        for c, col in enumerate(range(0, grid.width, tile_px)):
            core = Window(col, row, min(tile_px, grid.width - col),
                          min(tile_px, grid.height - row))
            row0, col0 = max(0, row - overlap_px), max(0, col - overlap_px)
            row1 = min(grid.height, row + core.height + overlap_px)
            col1 = min(grid.width, col + core.width + overlap_px)
            tiles.append(Tile(r, c, core, Window(col0, row0, col1 - col0, row1 - row0)))
    return tiles


#: Tile rows in one strip, and most tile columns: a strip of 2 x 6 tiles of 1024 px with 64 px
#: overlaps decodes 1.75 times the imagery blocks of its cores (512 px blocks), one tile row
#: of 6 tiles 2.3 times, a lone tile 4 times.
STRIP_ROWS, STRIP_MAX_COLS = 2, 6


def strips(tiles: list[Tile]) -> list[list[Tile]]:
    """``tiles`` (as :func:`tile_layout` orders them) in strips: :data:`STRIP_ROWS` tile rows
    by at most :data:`STRIP_MAX_COLS` columns (long rows are split evenly so that one AOI still
    gives the workers several tasks), each strip column by column, north to south. Read in
    that order, neighbouring tiles share the imagery's decoded blocks."""
    by_row: dict[int, list[Tile]] = {}
    for tile in tiles:
        by_row.setdefault(tile.row, []).append(tile)
    rows = sorted(by_row)
    result = []
    for first in range(0, len(rows), STRIP_ROWS):
        band = [tile for row in rows[first:first + STRIP_ROWS] for tile in by_row[row]]
        cols = sorted({tile.col for tile in band})
        parts = -(-len(cols) // STRIP_MAX_COLS)
        bounds = [cols[len(cols) * i // parts] for i in range(parts)] + [cols[-1] + 1]
        for low, high in zip(bounds, bounds[1:], strict=False):
            result.append(sorted((t for t in band if low <= t.col < high),
                                 key=lambda t: (t.col, t.row)))
    return result


def column_windows(strip: list[Tile]) -> list[Window]:
    """The union of the outer windows of each tile column of ``strip``."""
    unions = []
    for col in sorted({tile.col for tile in strip}):
        outer = [tile.outer for tile in strip if tile.col == col]
        row0 = min(w.row_off for w in outer)
        col0 = min(w.col_off for w in outer)
        row1 = max(w.row_off + w.height for w in outer)
        col1 = max(w.col_off + w.width for w in outer)
        unions.append(Window(col0, row0, col1 - col0, row1 - row0))
    return unions
