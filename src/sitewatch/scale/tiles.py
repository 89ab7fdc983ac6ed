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


#: Most tiles in one strip task: long rows are split so that a single AOI still gives the
#: workers several tasks.
MAX_STRIP_TILES = 8


def strips(tiles: list[Tile]) -> list[list[Tile]]:
    """``tiles`` (as :func:`tile_layout` orders them) in strips: runs of adjacent tiles of one
    tile row, of at most :data:`MAX_STRIP_TILES` and as even as the row allows. A strip is read
    west to east so that neighbouring tiles share the imagery's decoded blocks."""
    rows: dict[int, list[Tile]] = {}
    for tile in tiles:
        rows.setdefault(tile.row, []).append(tile)
    result = []
    for row in rows.values():
        row.sort(key=lambda tile: tile.col)
        parts = -(-len(row) // MAX_STRIP_TILES)
        bounds = [len(row) * i // parts for i in range(parts + 1)]
        result += [row[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    return result
