"""The passes of an analysis-ready stack, shared by the one-process build
(:func:`sitewatch.stack.build_stack`) and the tiled run on a cluster (:mod:`sitewatch.scale`).

1. **Selection**: the scenes covering the AOI (:func:`select_scenes`), the bands they share
   (:func:`common_bands`) and the grid's pixel size (:func:`auto_resolution`).
2. **Survey** (:func:`survey`): every acquisition read once, decimated to at most
   :data:`PREVIEW_SIZE` pixels a side; its valid and clear fractions, and a :class:`Preview`
   that the next passes reuse instead of reading the AOI again. :func:`choose_reference` takes
   the clearest acquisition unless one is given; :func:`leave_out_unclear` drops those below a
   clear fraction.
3. **Co-registration** (:func:`coregister_acquisitions`) to the reference: a global sub-pixel
   shift by phase correlation on a central window (:mod:`sitewatch.stack.coregister`), applied
   while reading so pixels are resampled once; low-confidence shifts are not applied (warning).
4. **Normalisation** (:func:`fit_normalisations`) fitted on the previews of the valid, clear
   pixels of both dates (:mod:`sitewatch.stack.normalise`), each preview shifted by its
   acquisition's co-registration shift.
5. **Windows** (:func:`stack_window`): one window of one acquisition read onto the grid with a
   halo, masked for clouds and shadows (:mod:`sitewatch.stack.clouds`), locally co-registered if
   asked, cropped, normalised: the reflectance and mask values the store holds.

Units: shifts in grid pixels ``(dx, dy)``; resolutions and pixel sizes in metres.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from rasterio.windows import Window
from scipy import ndimage

from sitewatch.errors import SitewatchError
from sitewatch.stack import provider_masks
from sitewatch.stack.acquisition import Acquisition
from sitewatch.stack.aoi import AOI
from sitewatch.stack.clouds import COMMON_NAMES, CloudMask, cloud_mask
from sitewatch.stack.coregister import (
    CoregistrationWarning,
    apply_shift,
    estimate_shift,
    estimate_shift_field,
)
from sitewatch.stack.grid import Grid
from sitewatch.stack.normalise import Normalisation, fit_normalisation
from sitewatch.stack.output import CLEAR, CLOUD, NODATA, SHADOW
from sitewatch.store import Workspace

#: Longest side (pixels) of the decimated survey images.
PREVIEW_SIZE = 512
#: Side (pixels) of the central window used to estimate each acquisition's shift.
COREGISTRATION_WINDOW = 1024
#: Extra pixels read around each window so cloud/shadow morphology is right at its edges.
HALO = 64
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
    local_residual_px: float | None = None  # largest per-window median local shift, pixels

    @property
    def applied_shift(self) -> tuple[float, float]:
        """The (dx, dy) pixels undone while reading: the estimate if confident, else zero."""
        return self.shift if self.shift_applied else (0.0, 0.0)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, record: dict) -> AcquisitionOutcome:
        """The outcome that :meth:`to_dict` gave ``record``."""
        return cls(**{**record, "shift": tuple(record["shift"])})


@dataclass
class Preview:
    """An acquisition decimated by ``factor`` (average of the valid pixels): ``data`` (bands,
    rows, cols) float32 reflectance, NaN where not valid; ``clear`` (rows, cols), valid and
    free of clouds and shadows."""

    data: np.ndarray
    clear: np.ndarray
    factor: int

    def to_window(self, window: Window) -> np.ndarray:
        """The clear mask brought to the full-resolution pixels of ``window`` (nearest)."""
        rows = np.minimum((window.row_off + np.arange(window.height)) // self.factor,
                          self.clear.shape[0] - 1)
        cols = np.minimum((window.col_off + np.arange(window.width)) // self.factor,
                          self.clear.shape[1] - 1)
        return self.clear[np.ix_(rows, cols)]

    def shifted(self, shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """``data`` and ``clear`` as read with a co-registration ``shift`` (grid pixels),
        interpolated bilinearly at the preview's scale; pixels brought in from outside are not
        clear."""
        dx, dy = shift[0] / self.factor, shift[1] / self.factor
        if dx == 0 and dy == 0:
            return self.data, self.clear
        # A ground feature at reference pixel p shows at p + shift here: sample there.
        data = np.stack([ndimage.shift(np.nan_to_num(band), (-dy, -dx), order=1, cval=0.0)
                         for band in self.data])
        clear = ndimage.shift(self.clear.astype(np.float32), (-dy, -dx), order=1,
                              cval=0.0) > 0.999
        data[:, ~clear] = np.nan
        return data, clear


# -- selection ------------------------------------------------------------------------------

def select_scenes(ws: Workspace, aoi: AOI, sensor: str | None = None,
                  start: datetime | None = None, end: datetime | None = None) -> list[dict]:
    """The ``scenes`` rows covering ``aoi`` acquired between ``start`` and ``end`` (UTC,
    inclusive), of one ``sensor`` (``"any"`` mixes sensors; None requires there be one)."""
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


def common_bands(scenes: list[dict], wanted: Sequence[str] | None = None) -> list[str]:
    """The band names every scene has (``wanted``, checked, when given), in the first scene's
    order."""
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


def auto_resolution(scenes: list[dict], band_names: list[str]) -> float:
    """The finest resolution (metres) among the bands, each band taken at its coarsest over
    scenes, rounded to a standard pixel size when within 10 %."""
    coarsest = {name: 0.0 for name in band_names}
    for scene in scenes:
        for band in scene["bands"]:
            if band["name"] in coarsest:
                coarsest[band["name"]] = max(coarsest[band["name"]], band["resolution_m"])
    finest = min(coarsest.values())
    nearest = min(STANDARD_RESOLUTIONS, key=lambda r: abs(math.log(r / finest)))
    return nearest if abs(nearest / finest - 1) <= 0.1 else round(finest, 2)


# -- survey ---------------------------------------------------------------------------------

def preview_factor(grid: Grid) -> int:
    """Decimation factor bringing the grid's longest side to at most :data:`PREVIEW_SIZE`."""
    return max(1, math.ceil(max(grid.width, grid.height) / PREVIEW_SIZE))


def cloud_band_keys(scenes: Sequence[dict], band_names: Sequence[str]) -> list[str]:
    """The names under which the cloud tests (:mod:`sitewatch.stack.clouds`, which speak
    Sentinel-2 band names) get each of ``band_names``: a Sentinel-2 band keeps its name, a band
    of another sensor goes by its common name (Landsat TM's ``B3`` is ``red``, not Sentinel-2's
    green ``B03``)."""
    common = {band["name"]: band.get("common_name") for scene in scenes
              if scene.get("sensor") != "sentinel-2" for band in scene["bands"]}
    keys = [common[name] if common.get(name) in COMMON_NAMES else name for name in band_names]
    return keys if len(set(keys)) == len(keys) else list(band_names)


def acquisition_clouds(acq: Acquisition, band_names: Sequence[str], data: np.ndarray,
                       valid: np.ndarray, pixel_size_m: float,
                       provider: tuple[np.ndarray, np.ndarray, list[str]] | None = None
                       ) -> CloudMask:
    """Cloud and shadow masks of ``data`` (bands, rows, cols) of ``acq``; none for 8-bit
    imagery.

    8-bit products (aerial and VHR RGB deliveries) are display-stretched, not reflectance, so
    the spectral thresholds do not apply; such imagery is also normally ordered cloud-free.
    ``provider`` is the (cloud, shadow, kinds) of the masks that came with the imagery
    (:func:`sitewatch.stack.provider_masks.read_masks`), on the same pixels: a pixel either
    marks is masked.
    """
    if all(band["dtype"] == "uint8" for scene in acq.scenes for band in scene["bands"]
           if band["name"] in band_names):
        empty = np.zeros(valid.shape, bool)
        return CloudMask(empty, empty.copy(), None, "none (8-bit imagery)", valid=valid)
    min_area = VHR_MIN_CLOUD_AREA_M2 if pixel_size_m < VHR_PIXEL_M else MIN_CLOUD_AREA_M2
    keys = cloud_band_keys(acq.scenes, band_names)
    bands = {key: data[i] for i, key in enumerate(keys)}
    mask = cloud_mask(bands, pixel_size_m=pixel_size_m, valid=valid,
                      min_cloud_area_m2=min_area, **acq.sun_angles)
    if provider is None:
        return mask
    provider_cloud, provider_shadow, kinds = provider
    cloud = (mask.cloud | provider_cloud) & valid
    shadow = (mask.shadow | provider_shadow) & valid & ~cloud
    return CloudMask(cloud, shadow, mask.probability,
                     f"{mask.method} + provider {'/'.join(kinds)}", valid=valid,
                     params={**mask.params, "provider_masks": kinds})


def survey(acquisitions: list[Acquisition], band_names: Sequence[str], grid: Grid,
           progress: Callable[[str, float], None] | None = None
           ) -> tuple[list[AcquisitionOutcome], dict[str, Preview]]:
    """Valid and clear fractions of every acquisition from one decimated read each; returns
    the outcomes and each acquisition's :class:`Preview` by acquisition key."""
    factor = preview_factor(grid)
    outcomes, previews = [], {}
    for i, acq in enumerate(acquisitions):
        if progress is not None:
            progress(f"Surveying {acq.key}", 0.1 * i / len(acquisitions))
        with acq.reader(band_names, grid) as reader:
            data, valid = reader.read_decimated(factor)
        provider = provider_masks.read_masks(acq.scenes, grid, factor=factor)
        mask = acquisition_clouds(acq, band_names, data, valid, grid.resolution * factor,
                                  provider)
        clear = valid & mask.clear
        previews[acq.key] = Preview(data, clear, factor)
        outcomes.append(AcquisitionOutcome(
            key=acq.key, acquired=acq.acquired.strftime("%Y-%m-%dT%H:%M:%SZ"),
            scene_ids=acq.scene_ids, valid_fraction=float(valid.mean()),
            clear_fraction=float(clear.mean()),
        ))
    return outcomes, previews


def choose_reference(outcomes: list[AcquisitionOutcome], reference: str | None = None) -> int:
    """Index of the reference acquisition: the one named by ``reference`` (a ``YYYY-MM-DD``
    day or a scene id), else the clearest (the earliest of equals)."""
    if reference is not None:
        for i, outcome in enumerate(outcomes):
            if outcome.key.startswith(reference) or reference in outcome.scene_ids:
                return i
        raise SitewatchError(f"no acquisition {reference!r} in the AOI; acquisitions: "
                             f"{', '.join(o.key for o in outcomes)}")
    return max(range(len(outcomes)), key=lambda i: (outcomes[i].clear_fraction, -i))


def leave_out_unclear(outcomes: list[AcquisitionOutcome], ref_index: int,
                      min_clear_fraction: float) -> None:
    """Mark the acquisitions clear on less than ``min_clear_fraction`` of the AOI as left
    out, with the reason (never the reference)."""
    for i, outcome in enumerate(outcomes):
        if outcome.clear_fraction < min_clear_fraction and i != ref_index:
            outcome.included = False
            outcome.reason = (f"clear fraction {outcome.clear_fraction:.2f} below "
                              f"{min_clear_fraction:.2f}")


# -- co-registration and normalisation ------------------------------------------------------

def _central_window(grid: Grid) -> Window:
    width = min(grid.width, COREGISTRATION_WINDOW)
    height = min(grid.height, COREGISTRATION_WINDOW)
    return Window((grid.width - width) // 2, (grid.height - height) // 2, width, height)


def registration_image(band_names: Sequence[str], data: np.ndarray) -> np.ndarray:
    """The band used for co-registration: NIR if present (sharp, bright edges), else the mean."""
    for name in ("B08", "nir", "B8A", "B04", "red"):
        if name in band_names:
            return data[list(band_names).index(name)]
    return np.nanmean(data, axis=0)


def coregister_acquisitions(kept: list[tuple[Acquisition, AcquisitionOutcome]],
                            ref_acq: Acquisition, band_names: Sequence[str], grid: Grid,
                            previews: dict[str, Preview], min_confidence: float) -> None:
    """Estimate every kept acquisition's global shift to ``ref_acq`` on the central
    :data:`COREGISTRATION_WINDOW` pixels; record it in its outcome, applied when its confidence
    reaches ``min_confidence`` (a :class:`CoregistrationWarning` otherwise)."""
    window = _central_window(grid)
    with ref_acq.reader(band_names, grid) as reader:
        ref_data, ref_valid = reader.read(window)
    ref_clear = ref_valid & previews[ref_acq.key].to_window(window)
    ref_image = registration_image(band_names, ref_data)
    for acq, outcome in kept:
        if acq is ref_acq:
            outcome.shift_confidence, outcome.shift_applied = 1.0, False
            continue
        with acq.reader(band_names, grid) as reader:
            data, valid = reader.read(window)
        clear = valid & previews[acq.key].to_window(window)
        if clear.mean() < 0.05 or ref_clear.mean() < 0.05:
            outcome.reason = "too few clear pixels in the central window to co-register"
            continue
        shift = estimate_shift(ref_image, registration_image(band_names, data),
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


def fit_normalisations(kept: list[tuple[Acquisition, AcquisitionOutcome]],
                       ref_acq: Acquisition, band_names: Sequence[str],
                       previews: dict[str, Preview], method: str) -> dict[str, Normalisation]:
    """Fit each kept acquisition's radiometric normalisation to ``ref_acq`` on the previews'
    jointly clear pixels (the acquisition's preview shifted by its applied shift); returns the
    fits by acquisition key and records them (or why not) in the outcomes."""
    reference = previews[ref_acq.key]
    fits = {}
    for acq, outcome in kept:
        if acq is ref_acq:
            continue
        data, clear = previews[acq.key].shifted(outcome.applied_shift)
        try:
            fit = fit_normalisation(reference.data, data, valid=reference.clear & clear,
                                    band_names=band_names, method=method)
        except SitewatchError as exc:
            outcome.reason = f"normalisation not fitted: {exc}"
            continue
        fits[acq.key] = fit
        outcome.normalisation = fit.to_dict()
    return fits


# -- windows --------------------------------------------------------------------------------

def with_halo(window: Window, grid: Grid, halo: int = HALO) -> Window:
    """``window`` grown by ``halo`` pixels on every side, within the grid."""
    row0 = max(0, window.row_off - halo)
    col0 = max(0, window.col_off - halo)
    row1 = min(grid.height, window.row_off + window.height + halo)
    col1 = min(grid.width, window.col_off + window.width + halo)
    return Window(col0, row0, col1 - col0, row1 - row0)


def stack_window(reader, acq: Acquisition, outcome: AcquisitionOutcome,
                 band_names: Sequence[str], grid: Grid, inner: Window, outer: Window, *,
                 fit: Normalisation | None = None, ref_reader=None,
                 min_confidence: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """One window of one acquisition as the store holds it: (bands, rows, cols) normalised
    reflectance, NaN where not valid, and (rows, cols) uint8 mask values (``CLEAR``,
    ``NODATA``, ``CLOUD``, ``SHADOW``) of ``inner``.

    ``reader`` reads ``acq`` onto the grid with its applied shift; the clouds are found on
    ``outer`` (``inner`` plus a halo, see :func:`with_halo`) so that their morphology is right
    at the edges. With a ``ref_reader`` (local co-registration) the window's residual shift
    field to the reference is estimated and undone.
    """
    data, valid = reader.read(outer)
    provider = provider_masks.read_masks(acq.scenes, grid, window=outer,
                                         shift=outcome.applied_shift)
    masks = acquisition_clouds(acq, band_names, data, valid, grid.resolution, provider)
    cloud, shadow = masks.cloud, masks.shadow
    if ref_reader is not None:
        data, valid, cloud, shadow = _correct_locally(
            ref_reader, outer, band_names, (data, valid, cloud, shadow), valid & masks.clear,
            outcome, min_confidence)
    crop = (slice(inner.row_off - outer.row_off, inner.row_off - outer.row_off + inner.height),
            slice(inner.col_off - outer.col_off, inner.col_off - outer.col_off + inner.width))
    data, valid = data[(slice(None), *crop)], valid[crop]
    flags = np.full(valid.shape, CLEAR, np.uint8)
    flags[shadow[crop]] = SHADOW
    flags[cloud[crop]] = CLOUD
    flags[~valid] = NODATA
    if fit is not None:
        data = fit.apply(data)
    return data, flags


def _correct_locally(ref_reader, window: Window, band_names, layers, clear, outcome,
                     min_confidence):
    """Undo the residual, spatially varying misregistration of one window (after the global
    shift) with a tiled shift field estimated against the reference window."""
    ref_data, ref_valid = ref_reader.read(window)
    data, valid, cloud, shadow = layers
    field = estimate_shift_field(registration_image(band_names, ref_data),
                                 registration_image(band_names, data),
                                 reference_valid=ref_valid, moving_valid=clear,
                                 min_confidence=min_confidence)
    if field.overall_confidence < min_confidence:
        return layers
    residual = float(np.median(np.hypot(field.dx, field.dy)))
    outcome.local_residual_px = max(outcome.local_residual_px or 0.0, residual)
    data = np.stack([apply_shift(band, field) for band in data])
    valid = apply_shift(valid, field, order=0, cval=False) & np.isfinite(data).all(axis=0)
    cloud = apply_shift(cloud, field, order=0, cval=False)
    shadow = apply_shift(shadow, field, order=0, cval=False)
    return data, valid, cloud, shadow
