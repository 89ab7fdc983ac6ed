"""The viewer's site frames: PNG pictures of the window around a site on every date of an AOI's
stack, rendered on request and cached (the map itself is drawn from tiles,
:mod:`sitewatch.web.tiles`).

Frames are true colour (the red, green and blue bands that
:func:`sitewatch.report.figures.true_colour_bands` picks, grey from one band when a stack has
no such triple): the square window around a site that the report's before/after figure uses
(three times the site's larger side, at least 64 grid pixels), at most :data:`SITE_FRAME_PX`
pixels a side, on every date of the stack, stretched together over all dates (between the 2nd
and 98th percentile over the clear pixels, stack mask 0, nodata grey, as in the report:
:func:`sitewatch.report.figures.stretch`) so that a change in brightness between two frames is
a change on the ground.

Rendered frames stay in a memory cache (least recently used first out beyond
:data:`CACHE_BYTES`) keyed by stack and site; a re-built stack has another path and so other
keys. Rendering holds one lock, so two cores are never split between two sites.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from PIL import Image

from sitewatch.report.figures import Crop, StackImagery, stretch
from sitewatch.stack import latest_stack
from sitewatch.stack.output import CLEAR, CLOUD, NODATA, SHADOW
from sitewatch.store import Workspace

#: Largest side of a site frame, pixels.
SITE_FRAME_PX = 512
#: Memory the cache of rendered PNGs may hold, bytes.
CACHE_BYTES = 256 * 2**20
#: A date (or a site frame) counts as cloud-covered above this share of cloud or cloud shadow
#: among its pixels with data.
CLOUDY_FRACTION = 0.1
#: Largest side of the mask read to measure cloud cover, pixels (read every n-th pixel).
COVER_SAMPLE_PX = 512
#: zlib level of the PNGs: 1 encodes a picture in two thirds of the time of the default 6 for
#: about 5 % more bytes, the better trade on a local connection.
PNG_COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class StackView:
    """An AOI's newest stack opened for drawing: the stack's workspace path (the cache key),
    the imagery and the share of each date's pixels with data that is cloud or shadow."""

    path: str
    imagery: StackImagery
    obscured: tuple[float, ...]

    @property
    def dates(self) -> tuple[str, ...]:
        return self.imagery.dates


@dataclass(frozen=True)
class SiteFrames:
    """A site's frames: the crop window and, per date, the PNG and the share of the window's
    pixels with data that is cloud or shadow (1.0 when it has no data)."""

    crop: Crop
    pngs: tuple[bytes, ...]
    obscured: tuple[float, ...]


class StackImages:
    """Opens stacks and renders their pictures, keeping both for later requests."""

    def __init__(self, cache_bytes: int = CACHE_BYTES):
        self._views: dict[tuple[str, str], StackView] = {}
        self._cache: OrderedDict[tuple, tuple[bytes | SiteFrames, int]] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._held = 0
        self._lock = threading.Lock()  # guards the caches
        self._render = threading.Lock()  # one picture at a time

    def view(self, ws: Workspace, aoi: str) -> StackView:
        """The newest stack of ``aoi`` (:class:`~sitewatch.errors.SitewatchError` when the AOI
        has none), opened once per stack."""
        path = latest_stack(ws, aoi)["path"]
        key = (aoi, path)
        with self._lock:
            view = self._views.get(key)
        if view is None:
            with self._render:
                imagery = StackImagery.open(ws, aoi)
                view = StackView(path, imagery, _obscured_by_date(ws.root / path, imagery))
            with self._lock:
                self._views[key] = view
        return view

    def site_frames(self, view: StackView, site_id: str, footprint) -> SiteFrames:
        """Render (or recall) every date's frame of the site ``site_id`` whose final
        ``footprint`` (grid CRS) centres the window."""
        key = ("site", view.path, site_id)
        frames = self._recall(key)
        if frames is None:
            with self._render:
                imagery = view.imagery
                crop = imagery.site_crop(footprint, max_px=SITE_FRAME_PX)
                flags = imagery.flags(crop)
                rgb = imagery.true_colour(crop, range(len(imagery.dates)))
                pngs = tuple(_png(frame) for frame in stretch(rgb, flags == CLEAR))
                frames = SiteFrames(crop, pngs, tuple(_obscured_share(f) for f in flags))
            self._keep(key, frames, sum(len(png) for png in pngs))
        return frames

    def _recall(self, key: tuple):
        with self._lock:
            if key not in self._cache:
                return None
            self._cache.move_to_end(key)
            return self._cache[key][0]

    def _keep(self, key: tuple, value: bytes | SiteFrames, size: int) -> None:
        """Cache ``value`` of ``size`` bytes, dropping the least recently used beyond
        :data:`CACHE_BYTES`."""
        with self._lock:
            if key in self._cache:
                return
            self._cache[key] = (value, size)
            self._held += size
            while self._held > self._cache_bytes and len(self._cache) > 1:
                _, (_, dropped) = self._cache.popitem(last=False)
                self._held -= dropped


def _obscured_by_date(store: Path, imagery: StackImagery) -> tuple[float, ...]:
    """Per date, the share of cloud and shadow among the grid's pixels with data, from the
    mask of the Zarr ``store`` read every n-th pixel (at most :data:`COVER_SAMPLE_PX` a side),
    one date at a time straight from Zarr (through dask it takes seven times as long: 0.3 s a
    date of a 10980 px grid)."""
    crop = imagery.crop(None, max_px=COVER_SAMPLE_PX)
    mask = zarr.open_group(str(store), mode="r")["mask"]
    return tuple(_obscured_share(mask[t, crop.rows.start:crop.rows.stop:crop.step,
                                      crop.cols.start:crop.cols.stop:crop.step])
                 for t in range(len(imagery.dates)))


def _obscured_share(flags: np.ndarray) -> float:
    """Share of cloud (2) and cloud shadow (3) among the pixels with data (mask not 1) of one
    date's ``flags``; 1.0 when none has data."""
    with_data = np.count_nonzero(flags != NODATA)
    if with_data == 0:
        return 1.0
    return float(np.count_nonzero((flags == CLOUD) | (flags == SHADOW)) / with_data)


def _png(rgb: np.ndarray) -> bytes:
    """An (rows, cols, 3) uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def pick_before_after(dates: Sequence[str], obscured: Sequence[float],
                      last_unchanged: str | None, first_seen: str | None
                      ) -> tuple[str | None, str]:
    """The dates the viewer first compares for a site (ISO days).

    "After" is the latest date whose site frame is at most :data:`CLOUDY_FRACTION` cloud or
    shadow (the latest date if none is). "Before" is the latest such date on or before the
    site's last unchanged date, or before its first change when that is not known (the latest
    of those dates if none is clear; the first date for a site without dates; None when the
    stack begins with the change).
    """
    clear = {i for i in range(len(dates)) if obscured[i] <= CLOUDY_FRACTION}
    after = max(clear, default=len(dates) - 1)
    if last_unchanged is not None:
        earlier = [i for i, day in enumerate(dates) if day <= last_unchanged]
    elif first_seen is not None:
        earlier = [i for i, day in enumerate(dates) if day < first_seen]
    else:
        return dates[0], dates[after]
    if not earlier:
        return None, dates[after]
    before = max((i for i in earlier if i in clear), default=earlier[-1])
    return dates[before], dates[after]
