"""The cloud and shadow masks that come with the imagery: Sentinel-2 L2A SCL, Landsat QA_PIXEL.

A scene whose ingest found a provider mask (``properties["provider_mask"]``: the file and its
kind, see :mod:`sitewatch.ingest.stac`) has it read onto the analysis grid with nearest-neighbour
resampling and the acquisition's applied shift, and the stack masks a pixel as cloud or shadow
when either the provider's mask or sitewatch's own spectral tests say so
(:func:`sitewatch.stack.passes.acquisition_clouds`). The provider's classification sees what the
bands alone do not (the L2A processor uses the atmospheric correction's own products), and the
spectral tests catch what it misses; the union keeps the stack's no-change pixels clean, at the
cost of a few clear pixels.

Classes (ESA, "Sentinel-2 Level-2A Algorithm Theoretical Basis Document", S2-PDGS-MPC-L2A-ATBD,
scene classification; USGS, "Landsat 8-9 Collection 2 Level-2 Science Product Guide", QA_PIXEL):

- SCL: 3 cloud shadow; 8 and 9 cloud of medium and high probability; 10 thin cirrus.
- QA_PIXEL bits: 1 dilated cloud, 2 cirrus, 3 cloud -> cloud; 4 cloud shadow -> shadow.
"""

from __future__ import annotations

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from sitewatch.errors import SitewatchError
from sitewatch.stack.grid import Grid

SCL_CLOUD = (8, 9, 10)
SCL_SHADOW = (3,)
QA_PIXEL_CLOUD_BITS = (1, 2, 3)
QA_PIXEL_SHADOW_BITS = (4,)
#: Kinds of provider masks understood, by the names ingest records.
KINDS = ("scl", "qa_pixel")


def classes_to_masks(kind: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cloud, shadow) boolean masks from the provider's mask ``values`` of ``kind``."""
    values = np.asarray(values)
    if kind == "scl":
        return np.isin(values, SCL_CLOUD), np.isin(values, SCL_SHADOW)
    if kind == "qa_pixel":
        bits = values.astype(np.uint32)
        cloud = np.zeros(values.shape, bool)
        for bit in QA_PIXEL_CLOUD_BITS:
            cloud |= (bits >> bit) & 1 == 1
        shadow = np.zeros(values.shape, bool)
        for bit in QA_PIXEL_SHADOW_BITS:
            shadow |= (bits >> bit) & 1 == 1
        return cloud, shadow
    raise ValueError(f"unknown provider mask kind {kind!r}")


def read_masks(scenes: list[dict], grid: Grid, *, window: Window | None = None,
               factor: int = 1, shift: tuple[float, float] = (0.0, 0.0)
               ) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """The union over ``scenes`` of their provider masks on ``grid``: (cloud, shadow, kinds),
    in ``window`` (full resolution) or over the whole grid ``factor`` times coarser; None when
    no scene has a provider mask.

    ``shift`` is the acquisition's applied shift in grid pixels, as for
    :class:`sitewatch.stack.resample.SceneReader`.
    """
    masked = [scene for scene in scenes
              if ((scene.get("properties") or {}).get("provider_mask") or {}).get("kind")
              in KINDS]
    if not masked:
        return None
    if window is None:
        shape = (max(1, grid.height // factor), max(1, grid.width // factor))
    else:
        shape = (int(window.height), int(window.width))
    cloud, shadow = np.zeros(shape, bool), np.zeros(shape, bool)
    transform = grid.transform @ Affine.translation(*shift)
    for scene in masked:
        record = scene["properties"]["provider_mask"]
        try:
            with rasterio.open(record["file"]) as src, WarpedVRT(
                    src, crs=grid.crs, transform=transform, width=grid.width,
                    height=grid.height, resampling=Resampling.nearest,
                    src_nodata=src.nodata if src.nodata is not None else 0) as vrt:
                values = vrt.read(1, window=window, out_shape=shape,
                                  resampling=Resampling.nearest)
        except rasterio.errors.RasterioIOError as exc:
            raise SitewatchError(f"cannot read the provider mask of scene {scene['scene_id']} "
                                 f"({exc}); was it moved since ingest?", record["file"]) from exc
        scene_cloud, scene_shadow = classes_to_masks(record["kind"], values)
        cloud |= scene_cloud
        shadow |= scene_shadow
    return cloud, shadow & ~cloud, sorted({s["properties"]["provider_mask"]["kind"]
                                           for s in masked})
