"""A site's temporal signature: what its pixels did, date by date, against its surroundings.

For every acquisition of the stack, over the site's clear pixels: the median vegetation,
built-up and brightness indices (:mod:`sitewatch.detect.indices`), and the fraction of the site's
pixels that changed since the previous clear acquisition. "Changed" is judged against the local
noise: the spread (1.4826 x MAD) of the same brightness difference over a ring of surrounding
ground, so a scene-wide illumination residual or haze does not count as activity on the site. A date
whose ring as a whole darkens or brightens and comes back on the next observed date (an unmasked
cloud shadow or haze over the site) is set to not observed, and activity is judged between the
dates around it. Only a window around the site is read from the stack.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio.features
import scipy.ndimage
import xarray as xr
from shapely.geometry.base import BaseGeometry

from sitewatch.detect.indices import indices
from sitewatch.stack import Grid

#: Width of the ring of surroundings used as the local noise reference, metres.
RING_M = 150.0
#: A site pixel "changed" between two dates when its brightness moved by more than this many
#: local noise standard deviations.
CHANGE_SIGMA = 3.0
#: Brightness (reflectance) by which a date's surrounding ring must stand out from both the
#: observed dates around it, in the same direction, to be read as an unmasked shadow or haze.
RING_SPIKE = 0.04
#: Percentile of the site pixels' brightness difference from the ring that measures how much
#: the site stands out: the 90th, so a structure filling a tenth of the polygon counts.
CONTRAST_PERCENTILE = 90
#: Fewest clear site pixels for a date to count as observed.
MIN_CLEAR_PIXELS = 3


@dataclass
class DateSignature:
    """One acquisition seen over one site (indices are medians over the clear site pixels)."""

    date: np.datetime64
    observed: bool  # enough clear pixels
    clear_fraction: float
    vegetation: float = np.nan
    built_up: float = np.nan
    brightness: float = np.nan
    activity: float = np.nan  # fraction of site pixels changed since the previous observed date
    ring_brightness: float = np.nan  # median brightness of the surrounding ring
    contrast: float = np.nan  # 90th percentile of |brightness - ring median| over the site
    ring_vegetation: float = np.nan  # median vegetation index of the surrounding ring
    ring_built_up: float = np.nan  # median built-up index of the surrounding ring


def site_signature(dataset: xr.Dataset, grid: Grid, footprint: BaseGeometry) -> list[DateSignature]:
    """The signature of ``footprint`` (grid CRS) over every time step of ``dataset``."""
    pad = int(np.ceil(RING_M / grid.resolution)) + 2
    west, south, east, north = footprint.bounds
    col0 = max(0, int((west - grid.west) // grid.resolution) - pad)
    col1 = min(grid.width, int(np.ceil((east - grid.west) / grid.resolution)) + pad)
    row0 = max(0, int((grid.north - north) // grid.resolution) - pad)
    row1 = min(grid.height, int(np.ceil((grid.north - south) / grid.resolution)) + pad)
    window = grid.transform @ rasterio.Affine.translation(col0, row0)
    shape = (row1 - row0, col1 - col0)
    inside = rasterio.features.rasterize([footprint], out_shape=shape, transform=window,
                                         all_touched=False).astype(bool)
    if not inside.any():  # thinner than a pixel: take the pixels it touches
        inside = rasterio.features.rasterize([footprint], out_shape=shape, transform=window,
                                             all_touched=True).astype(bool)
    ring = (scipy.ndimage.binary_dilation(inside, iterations=pad - 2)
            & ~scipy.ndimage.binary_dilation(inside, iterations=2))
    # Activity is judged away from the outline, where a residual sub-pixel misregistration of a
    # high-contrast edge would otherwise read as change; tiny sites keep all their pixels.
    core = scipy.ndimage.binary_erosion(inside)
    core = core if core.sum() >= MIN_CLEAR_PIXELS else inside
    region = dict(y=slice(row0, row1), x=slice(col0, col1))
    reflectance = dataset.reflectance.isel(**region).values
    clear = (dataset["mask"].isel(**region) == 0).values & np.isfinite(reflectance).all(axis=1)
    bands = [str(b) for b in dataset.band.values]
    out: list[DateSignature] = []
    per_date = []
    for t, date in enumerate(dataset.time.values):
        ok = clear[t] & inside
        fraction = float(ok.sum() / inside.sum())
        if ok.sum() < max(MIN_CLEAR_PIXELS, 0.5 * inside.sum()):
            out.append(DateSignature(date, False, fraction))
            per_date.append(None)
            continue
        values = indices(reflectance[t], bands)
        signature = DateSignature(
            date, True, fraction,
            *(float(np.median(values[k][ok])) for k in ("vegetation", "built_up", "brightness")))
        ring_ok = clear[t] & ring
        if ring_ok.any():
            signature.ring_brightness = float(np.median(values["brightness"][ring_ok]))
            signature.ring_vegetation = float(np.median(values["vegetation"][ring_ok]))
            signature.ring_built_up = float(np.median(values["built_up"][ring_ok]))
            signature.contrast = float(np.percentile(
                np.abs(values["brightness"][ok] - signature.ring_brightness), CONTRAST_PERCENTILE))
        out.append(signature)
        per_date.append(values["brightness"])
    for t in _illumination_spikes(out):
        out[t].observed = False
    previous: tuple[np.ndarray, np.ndarray] | None = None
    for t, signature in enumerate(out):
        if not signature.observed:
            continue
        brightness = per_date[t]
        if previous is not None:
            before, before_clear = previous
            both = clear[t] & before_clear
            diff = brightness - before
            reference = diff[both & ring]
            if reference.size >= 10:
                sigma = 1.4826 * float(np.median(np.abs(reference - np.median(reference))))
                sigma = max(sigma, 1e-4)
                moved = np.abs(diff - np.median(reference)) > CHANGE_SIGMA * sigma
                site = both & core
                signature.activity = float(moved[site].mean()) if site.any() else np.nan
        previous = (brightness, clear[t])
    return out


def _illumination_spikes(signature: list[DateSignature]) -> list[int]:
    """Dates whose surroundings darkened or brightened as a whole and came back on the next
    observed date: an unmasked cloud shadow or haze over the site and its ring, not a change
    of the site. They are set to not observed, so activity is judged against the dates around
    them."""
    observed = [t for t, s in enumerate(signature)
                if s.observed and not np.isnan(s.ring_brightness)]
    spikes = []
    for prev, t, nxt in zip(observed, observed[1:], observed[2:], strict=False):
        ring = [signature[i].ring_brightness for i in (prev, t, nxt)]
        down, up = ring[0] - ring[1], ring[2] - ring[1]
        if (min(down, up) >= RING_SPIKE or max(down, up) <= -RING_SPIKE):
            spikes.append(t)
    return spikes
