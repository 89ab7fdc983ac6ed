"""Build an analysis-ready stack: every acquisition of an AOI on one grid, co-registered,
radiometrically normalised and masked, written window by window.

The passes, for a chosen band set and grid:

1. **Survey** (decimated reads, at most :data:`PREVIEW_SIZE` pixels a side): valid and clear
   fraction of every acquisition; the reference acquisition is the clearest one unless given;
   acquisitions whose clear fraction is below ``min_clear_fraction`` are left out, with the
   reason recorded.
2. **Co-registration** of each acquisition to the reference: a global sub-pixel shift by phase
   correlation on gradient images of a central window (:mod:`sitewatch.stack.coregister`), applied
   while warping so pixels are resampled once. Low-confidence shifts are not applied (warning).
   With ``coregistration="local"`` a tiled shift field is then estimated block by block against
   the reference and undoes what a single shift cannot (rotation, scale, terrain).
3. **Normalisation** fitted on the decimated images of the valid, clear pixels of both dates
   (:mod:`sitewatch.stack.normalise`; IR-MAD pseudo-invariant pixels or histogram matching).
4. **Writing**, block by block (blocks sized from ``memory_mb``): warp, mask clouds and shadows
   (:mod:`sitewatch.stack.clouds`) on the block plus a halo, normalise, store into Zarr.

The Zarr store is written to a temporary directory and renamed into place; its record (grid,
per-acquisition shifts, fits and exclusions) lands in the workspace in one transaction.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio.windows import Window
from shapely.geometry import box

from sitewatch import __version__
from sitewatch.errors import SitewatchError
from sitewatch.stack import output
from sitewatch.stack.acquisition import Acquisition, group_acquisitions
from sitewatch.stack.aoi import AOI
from sitewatch.stack.clouds import CloudMask, cloud_mask
from sitewatch.stack.coregister import (
    CoregistrationWarning,
    apply_shift,
    estimate_shift,
    estimate_shift_field,
)
from sitewatch.stack.grid import Grid, grid_for
from sitewatch.stack.normalise import fit_normalisation
from sitewatch.store import Workspace
from sitewatch.store.geopackage import now_iso

#: Longest side (pixels) of the decimated survey images.
PREVIEW_SIZE = 512
#: Side (pixels) of the central window used to estimate each acquisition's shift.
COREGISTRATION_WINDOW = 1024
#: Extra pixels read around each block so cloud/shadow morphology is right at block edges.
HALO = 64
#: Zarr chunk side (pixels); blocks are multiples of it.
CHUNK = 512
#: Share (percent) of ``memory_mb`` given to GDAL's block cache; the rest sizes the blocks.
GDAL_CACHE_SHARE = 20
#: Pixel sizes (metres) that automatic resolutions are rounded to when within 10 %.
STANDARD_RESOLUTIONS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0,
                        4.0, 5.0, 6.0, 7.5, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0,
                        100.0, 250.0, 500.0, 1000.0)

#: Smallest cloud object kept, m². On grids finer than :data:`VHR_PIXEL_M` metres bright roofs,
#: concrete and fresh cleared ground pass the spectral cloud tests object by object; real clouds
#: there are hectares wide, so the floor rises to :data:`VHR_MIN_CLOUD_AREA_M2`.
MIN_CLOUD_AREA_M2 = 1000.0
VHR_MIN_CLOUD_AREA_M2 = 10_000.0
VHR_PIXEL_M = 2.0

#: Mask values stored in the stack's ``mask`` variable.
CLEAR, NODATA, CLOUD, SHADOW = 0, 1, 2, 3

NORMALISATION_METHODS = ("irmad", "histogram", "none")
COREGISTRATION_METHODS = ("global", "local", "none")


@dataclass
class AcquisitionOutcome:
    """What the stack did with one acquisition."""

    key: str
    acquired: str
    scene_ids: list[str]
    valid_fraction: float
    clear_fraction: float
    included: bool = True
    reason: str | None = None
    shift: tuple[float, float] = (0.0, 0.0)
    shift_confidence: float | None = None
    shift_applied: bool = False
    normalisation: dict | None = None
    local_residual_px: float | None = None  # largest per-block median local shift, pixels

    @property
    def applied_shift(self) -> tuple[float, float]:
        """The (dx, dy) pixels undone while warping: the estimate if confident, else zero."""
        return self.shift if self.shift_applied else (0.0, 0.0)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class StackResult:
    """A stack written into a workspace."""

    path: Path
    aoi: AOI
    grid: Grid
    bands: list[str]
    reference: str
    run_id: str
    acquisitions: list[AcquisitionOutcome] = field(default_factory=list)

    @property
    def included(self) -> list[AcquisitionOutcome]:
        return [a for a in self.acquisitions if a.included]

    def open(self):
        """The stack as a lazily loaded xarray Dataset."""
        return output.open_stack(self.path)


def build_stack(
    workspace: str | Path | Workspace,
    aoi: AOI,
    *,
    resolution: float | None = None,
    epsg: int | None = None,
    bands: Sequence[str] | None = None,
    sensor: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    reference: str | None = None,
    coregistration: str = "global",
    normalisation: str = "irmad",
    min_clear_fraction: float = 0.3,
    min_shift_confidence: float = 0.3,
    memory_mb: int = 1024,
    on_progress: Callable[[str, float], None] | None = None,
) -> StackResult:
    """Build and store the analysis-ready stack of ``aoi`` (see the module docstring).

    ``resolution`` is in metres, ``epsg`` a projected CRS (default: the UTM zone of the AOI),
    ``sensor`` selects the scenes of one sensor (``"any"`` mixes sensors on their common bands),
    ``reference`` an acquisition day (``YYYY-MM-DD``) to register and normalise to,
    ``memory_mb`` the working-memory budget for the writing pass.
    """
    if normalisation not in NORMALISATION_METHODS:
        raise SitewatchError(f"unknown normalisation {normalisation!r}; choose one of "
                             f"{', '.join(NORMALISATION_METHODS)}")
    if coregistration not in COREGISTRATION_METHODS:
        raise SitewatchError(f"unknown co-registration {coregistration!r}; choose one of "
                             f"{', '.join(COREGISTRATION_METHODS)}")
    progress = on_progress or (lambda message, fraction: None)
    with contextlib.ExitStack() as cleanup:
        ws = workspace
        if not isinstance(workspace, Workspace):
            ws = cleanup.enter_context(Workspace.open(workspace))
        # GDAL's block cache would otherwise grow to 5 % of the machine's RAM on its own
        # (rasterio takes this option in bytes).
        cleanup.enter_context(rasterio.Env(
            GDAL_CACHEMAX=max(32, memory_mb * GDAL_CACHE_SHARE // 100) * 2**20))
        scenes = _select_scenes(ws, aoi, sensor, start, end)
        band_names = _common_bands(scenes, bands)
        resolution = resolution or _auto_resolution(scenes, band_names)
        grid = grid_for(aoi.polygon, resolution, epsg)
        acquisitions = group_acquisitions(scenes)
        run_id = f"stack-{uuid.uuid4().hex[:12]}"
        started = now_iso()

        progress("Surveying acquisitions", 0.0)
        factor = max(1, math.ceil(max(grid.width, grid.height) / PREVIEW_SIZE))
        outcomes, clear_previews = _survey(acquisitions, band_names, grid, factor, progress)
        ref_index = _choose_reference(outcomes, reference)
        for outcome in outcomes:
            if outcome.clear_fraction < min_clear_fraction and outcome is not outcomes[ref_index]:
                outcome.included = False
                outcome.reason = (f"clear fraction {outcome.clear_fraction:.2f} below "
                                  f"{min_clear_fraction:.2f}")
        kept = [(a, o) for a, o in zip(acquisitions, outcomes, strict=True) if o.included]
        ref_acq = acquisitions[ref_index]

        if coregistration in ("global", "local"):
            progress("Co-registering", 0.1)
            _coregister(kept, ref_acq, band_names, grid, clear_previews, factor,
                        min_shift_confidence)
        fits = {}
        if normalisation != "none":
            progress("Fitting radiometric normalisation", 0.2)
            fits = _fit_normalisation(kept, ref_acq, band_names, grid, clear_previews, factor,
                                      normalisation)

        stacks_dir = ws.root / "rasters" / "stacks"
        stacks_dir.mkdir(parents=True, exist_ok=True)
        final = stacks_dir / f"{_slug(aoi.name)}-{run_id}.zarr"
        tmp = stacks_dir / f".{final.name}.tmp"
        try:
            store = output.create(tmp, grid, band_names, [o for _, o in kept], aoi.name)
            block_mb = memory_mb * (100 - GDAL_CACHE_SHARE) // 100
            _write_blocks(store, kept, ref_acq, band_names, grid, fits, block_mb, progress,
                          local=coregistration == "local", min_confidence=min_shift_confidence)
            output.finalise(tmp)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        result = StackResult(final, aoi, grid, band_names, outcomes[ref_index].key, run_id,
                             outcomes)
        try:
            _record(ws, result, started, {
                "resolution": resolution, "epsg": grid.epsg, "bands": band_names,
                "sensor": sensor, "reference": reference, "coregistration": coregistration,
                "normalisation": normalisation, "min_clear_fraction": min_clear_fraction,
                "min_shift_confidence": min_shift_confidence, "memory_mb": memory_mb,
            })
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        progress("Done", 1.0)
        return result


# -- selection ------------------------------------------------------------------------------

def _select_scenes(ws: Workspace, aoi: AOI, sensor: str | None, start, end) -> list[dict]:
    rows = [r for r in ws.rows("scenes") if r["geom"].intersects(aoi.polygon)]
    if start is not None:
        rows = [r for r in rows if r["acquired"] >= start.strftime("%Y-%m-%dT%H:%M:%SZ")]
    if end is not None:
        rows = [r for r in rows if r["acquired"] <= end.strftime("%Y-%m-%dT%H:%M:%SZ")]
    if not rows:
        raise SitewatchError(f"no registered scene covers the AOI {aoi.name!r} (in the date "
                             "range); ingest imagery of it first")
    sensors = sorted({r["sensor"] or "unknown" for r in rows})
    if sensor == "any":
        return rows
    if sensor is not None:
        rows = [r for r in rows if (r["sensor"] or "unknown") == sensor]
        if not rows:
            raise SitewatchError(f"no {sensor} scene covers the AOI; sensors there: "
                                 f"{', '.join(sensors)}")
    elif len(sensors) > 1:
        raise SitewatchError(f"scenes of several sensors cover the AOI ({', '.join(sensors)}); "
                             "choose one with --sensor")
    return rows


def _common_bands(scenes: list[dict], wanted: Sequence[str] | None) -> list[str]:
    common = [b["name"] for b in scenes[0]["bands"]]
    for scene in scenes[1:]:
        names = {b["name"] for b in scene["bands"]}
        common = [name for name in common if name in names]
    if wanted:
        missing = [name for name in wanted if name not in common]
        if missing:
            raise SitewatchError(f"band(s) {missing} are not in every scene; common bands: "
                                 f"{', '.join(common) or 'none'}")
        return list(wanted)
    if not common:
        raise SitewatchError("the scenes share no band name; choose scenes of one sensor")
    return common


def _auto_resolution(scenes: list[dict], band_names: list[str]) -> float:
    """The finest resolution among the bands, each band taken at its coarsest over scenes,
    rounded to a standard pixel size when within 10 %."""
    coarsest = {name: 0.0 for name in band_names}
    for scene in scenes:
        for band in scene["bands"]:
            if band["name"] in coarsest:
                coarsest[band["name"]] = max(coarsest[band["name"]], band["resolution_m"])
    finest = min(coarsest.values())
    nearest = min(STANDARD_RESOLUTIONS, key=lambda r: abs(math.log(r / finest)))
    return nearest if abs(nearest / finest - 1) <= 0.1 else round(finest, 2)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-") or "aoi"


# -- passes ---------------------------------------------------------------------------------

def _band_dict(names: Sequence[str], data: np.ndarray) -> dict[str, np.ndarray]:
    return {name: data[i] for i, name in enumerate(names)}


def _cloud_mask(acq: Acquisition, band_names, data, valid, pixel_size_m: float) -> CloudMask:
    """Cloud and shadow masks of a block; none for 8-bit imagery.

    8-bit products (aerial and VHR RGB deliveries) are display-stretched, not reflectance, so
    the spectral thresholds do not apply; such imagery is also normally ordered cloud-free.
    """
    if all(band["dtype"] == "uint8" for scene in acq.scenes for band in scene["bands"]
           if band["name"] in band_names):
        empty = np.zeros(valid.shape, bool)
        return CloudMask(empty, empty.copy(), None, "none (8-bit imagery)", valid=valid)
    min_area = VHR_MIN_CLOUD_AREA_M2 if pixel_size_m < VHR_PIXEL_M else MIN_CLOUD_AREA_M2
    return cloud_mask(_band_dict(band_names, data), pixel_size_m=pixel_size_m, valid=valid,
                      min_cloud_area_m2=min_area, **acq.sun_angles)


def _survey(acquisitions: list[Acquisition], band_names, grid: Grid, factor: int,
            progress) -> tuple[list[AcquisitionOutcome], dict[str, np.ndarray]]:
    """Valid and clear fractions from decimated reads; returns the outcomes and each
    acquisition's clear mask at the decimated resolution (reused by the later passes)."""
    outcomes, clear_previews = [], {}
    for i, acq in enumerate(acquisitions):
        progress(f"Surveying {acq.key}", 0.1 * i / len(acquisitions))
        with acq.reader(band_names, grid) as reader:
            data, valid = reader.read_decimated(factor)
        mask = _cloud_mask(acq, band_names, data, valid, grid.resolution * factor)
        clear = valid & mask.clear
        clear_previews[acq.key] = clear
        outcomes.append(AcquisitionOutcome(
            key=acq.key, acquired=acq.acquired.strftime("%Y-%m-%dT%H:%M:%SZ"),
            scene_ids=acq.scene_ids, valid_fraction=float(valid.mean()),
            clear_fraction=float(clear.mean()),
        ))
    return outcomes, clear_previews


def _preview_to_window(preview: np.ndarray, factor: int, window: Window) -> np.ndarray:
    """A decimated mask brought to the full-resolution pixels of ``window`` (nearest)."""
    rows = np.minimum((window.row_off + np.arange(window.height)) // factor,
                      preview.shape[0] - 1)
    cols = np.minimum((window.col_off + np.arange(window.width)) // factor,
                      preview.shape[1] - 1)
    return preview[np.ix_(rows, cols)]


def _choose_reference(outcomes: list[AcquisitionOutcome], reference: str | None) -> int:
    if reference is not None:
        for i, outcome in enumerate(outcomes):
            if outcome.key.startswith(reference) or reference in outcome.scene_ids:
                return i
        raise SitewatchError(f"no acquisition {reference!r} in the AOI; acquisitions: "
                             f"{', '.join(o.key for o in outcomes)}")
    return max(range(len(outcomes)), key=lambda i: (outcomes[i].clear_fraction, -i))


def _central_window(grid: Grid) -> Window:
    width = min(grid.width, COREGISTRATION_WINDOW)
    height = min(grid.height, COREGISTRATION_WINDOW)
    return Window((grid.width - width) // 2, (grid.height - height) // 2, width, height)


def _registration_image(band_names, data: np.ndarray) -> np.ndarray:
    """The band used for co-registration: NIR if present (sharp, bright edges), else the mean."""
    for name in ("B08", "nir", "B8A", "B04", "red"):
        if name in band_names:
            return data[band_names.index(name)]
    return np.nanmean(data, axis=0)


def _coregister(kept, ref_acq: Acquisition, band_names, grid: Grid, clear_previews, factor,
                min_confidence) -> None:
    window = _central_window(grid)
    with ref_acq.reader(band_names, grid) as reader:
        ref_data, ref_valid = reader.read(window)
    ref_clear = ref_valid & _preview_to_window(clear_previews[ref_acq.key], factor, window)
    ref_image = _registration_image(band_names, ref_data)
    for acq, outcome in kept:
        if acq is ref_acq:
            outcome.shift_confidence, outcome.shift_applied = 1.0, False
            continue
        with acq.reader(band_names, grid) as reader:
            data, valid = reader.read(window)
        clear = valid & _preview_to_window(clear_previews[acq.key], factor, window)
        if clear.mean() < 0.05 or ref_clear.mean() < 0.05:
            outcome.reason = "too few clear pixels in the central window to co-register"
            continue
        shift = estimate_shift(ref_image, _registration_image(band_names, data),
                               reference_valid=ref_clear, moving_valid=clear)
        outcome.shift = (float(shift.dx), float(shift.dy))
        outcome.shift_confidence = float(shift.confidence)
        outcome.shift_applied = shift.confidence >= min_confidence
        if not outcome.shift_applied:
            warnings.warn(
                f"{acq.key}: co-registration shift ({shift.dx:+.2f}, {shift.dy:+.2f}) px has "
                f"confidence {shift.confidence:.2f} < {min_confidence:.2f}; not applied",
                CoregistrationWarning, stacklevel=3,
            )


def _fit_normalisation(kept, ref_acq: Acquisition, band_names, grid: Grid, clear_previews,
                       factor: int, method: str) -> dict:
    with ref_acq.reader(band_names, grid) as reader:
        ref_data, _ = reader.read_decimated(factor)
    ref_clear = clear_previews[ref_acq.key]
    fits = {}
    for acq, outcome in kept:
        if acq is ref_acq:
            continue
        with acq.reader(band_names, grid, outcome.applied_shift) as reader:
            data, valid = reader.read_decimated(factor)
        try:
            fit = fit_normalisation(ref_data, data,
                                    valid=ref_clear & valid & clear_previews[acq.key],
                                    band_names=band_names, method=method)
        except SitewatchError as exc:
            outcome.reason = f"normalisation not fitted: {exc}"
            continue
        fits[acq.key] = fit
        outcome.normalisation = fit.to_dict()
    return fits


def _block_side(n_bands: int, memory_mb: int) -> int:
    """Block side (a multiple of :data:`CHUNK`) whose working set fits ``memory_mb``.

    Per pixel of a block (with halo) the writing pass holds the bands of the acquisition and of
    the reference as float32, plus masks and cloud-detection temporaries: about
    ``(2 * n_bands + 12) * 4`` bytes, doubled for safety.
    """
    per_pixel = (2 * n_bands + 12) * 4 * 2
    side = math.isqrt(max(1, memory_mb * 2**20 // per_pixel)) - 2 * HALO
    return max(CHUNK, side // CHUNK * CHUNK)


def _write_blocks(store, kept, ref_acq, band_names, grid: Grid, fits, memory_mb, progress, *,
                  local: bool, min_confidence: float) -> None:
    side = _block_side(len(band_names), memory_mb)
    blocks = [(row, col) for row in range(0, grid.height, side)
              for col in range(0, grid.width, side)]
    total = len(blocks) * len(kept)
    done = 0
    with contextlib.ExitStack() as stack:
        ref_reader = stack.enter_context(ref_acq.reader(band_names, grid)) if local else None
        for t, (acq, outcome) in enumerate(kept):
            with acq.reader(band_names, grid, outcome.applied_shift) as reader:
                for row, col in blocks:
                    progress(f"Writing {acq.key}", 0.25 + 0.75 * done / total)
                    done += 1
                    inner = Window(col, row, min(side, grid.width - col),
                                   min(side, grid.height - row))
                    outer = _with_halo(inner, grid)
                    data, valid = reader.read(outer)
                    masks = _cloud_mask(acq, band_names, data, valid, grid.resolution)
                    cloud, shadow = masks.cloud, masks.shadow
                    if ref_reader is not None and acq is not ref_acq:
                        data, valid, cloud, shadow = _local_correction(
                            ref_reader, outer, band_names, data, valid & masks.clear,
                            (data, valid, cloud, shadow), outcome, min_confidence)
                    crop = (slice(inner.row_off - outer.row_off,
                                  inner.row_off - outer.row_off + inner.height),
                            slice(inner.col_off - outer.col_off,
                                  inner.col_off - outer.col_off + inner.width))
                    data, valid = data[(slice(None), *crop)], valid[crop]
                    flags = np.full(valid.shape, CLEAR, np.uint8)
                    flags[shadow[crop]] = SHADOW
                    flags[cloud[crop]] = CLOUD
                    flags[~valid] = NODATA
                    if acq.key in fits:
                        data = fits[acq.key].apply(data)
                    output.write_block(store, t, inner, data, flags)


def _local_correction(ref_reader, window: Window, band_names, data, clear, layers, outcome,
                      min_confidence):
    """Undo the residual, spatially varying misregistration of one block (after the global
    shift) with a tiled shift field estimated against the reference block."""
    ref_data, ref_valid = ref_reader.read(window)
    field = estimate_shift_field(_registration_image(band_names, ref_data),
                                 _registration_image(band_names, data),
                                 reference_valid=ref_valid, moving_valid=clear,
                                 min_confidence=min_confidence)
    if field.overall_confidence < min_confidence:
        return layers
    residual = float(np.median(np.hypot(field.dx, field.dy)))
    outcome.local_residual_px = max(outcome.local_residual_px or 0.0, residual)
    data, valid, cloud, shadow = layers
    data = np.stack([apply_shift(band, field) for band in data])
    valid = apply_shift(valid, field, order=0, cval=False) & np.isfinite(data).all(axis=0)
    cloud = apply_shift(cloud, field, order=0, cval=False)
    shadow = apply_shift(shadow, field, order=0, cval=False)
    return data, valid, cloud, shadow


def _with_halo(window: Window, grid: Grid) -> Window:
    row0 = max(0, window.row_off - HALO)
    col0 = max(0, window.col_off - HALO)
    row1 = min(grid.height, window.row_off + window.height + HALO)
    col1 = min(grid.width, window.col_off + window.width + HALO)
    return Window(col0, row0, col1 - col0, row1 - row0)


def _record(ws: Workspace, result: StackResult, started: str, parameters: dict) -> None:
    to_wgs84 = Transformer.from_crs(result.grid.epsg, 4326, always_xy=True).transform
    footprint = shapely.transform(box(*result.grid.bounds).segmentize(
        result.grid.resolution * 50), to_wgs84, interleaved=False)
    with ws.transaction() as txn:
        if not ws.rows("aois", "name = ?", (result.aoi.name,)):
            txn.insert("aois", {"geom": result.aoi.polygon, "name": result.aoi.name,
                                "created_at": now_iso()})
        txn.insert("rasters", {
            "geom": footprint, "path": str(result.path.relative_to(ws.root)), "kind": "stack",
            "run_id": result.run_id, "aoi": result.aoi.name,
            "properties": {"grid": result.grid.to_dict(), "bands": result.bands,
                           "reference": result.reference,
                           "acquisitions": [a.to_dict() for a in result.acquisitions]},
        })
        txn.insert("runs", {
            "run_id": result.run_id, "stage": "stack", "started_at": started,
            "finished_at": now_iso(), "status": "ok", "sitewatch_version": __version__,
            "parameters": parameters,
            "inputs": {"aoi": result.aoi.name, "aoi_wkt": result.aoi.polygon.wkt,
                       "scenes": [s for a in result.acquisitions for s in a.scene_ids]},
        })
