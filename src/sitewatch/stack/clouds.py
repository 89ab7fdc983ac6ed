"""Cloud and cloud-shadow masks for one scene already on the analysis grid.

Two cloud detectors, chosen by :func:`cloud_mask` from the bands it is given:

``"s2cloudless"``
    Sentinel Hub's pixel classifier (LightGBM on ten Sentinel-2 L1C top-of-atmosphere bands;
    Zupanc 2017, "Improving cloud detection with machine learning", Sentinel Hub blog; package
    ``s2cloudless``, whose model file ships inside the wheel: nothing is downloaded). The model is
    per pixel; its authors smooth the probability with a disk and dilate the mask, with
    ``average_over=4, dilation_size=2`` px at 60 m and ``22, 11`` px at 10 m. Those are the same
    ground distances, ~220 m and ~110 m, so the radii here are :data:`S2CLOUDLESS_AVERAGE_M` and
    :data:`S2CLOUDLESS_DILATION_M` divided by the pixel size (22/11 px at 10 m, 11/6 at 20 m,
    4/2 at 60 m), with the authors' probability threshold 0.4. The classifier itself runs on
    ~60 m blocks (:data:`S2CLOUDLESS_CLASSIFY_M`, the resolution of B01/B09/B10 it relies on)
    and its probability is interpolated back to the grid before the smoothing: LightGBM costs
    ~10 us a pixel, 12 s for 1000 x 1000 at 10 m, against 0.3 s on 60 m blocks. Trained on L1C:
    on L2A (surface reflectance, and no B10) it is not used.

``"spectral-temporal"``
    For few bands (Sentinel-2 B02 B03 B04 [B08], or very-high-resolution RGB[+NIR]), tests in the
    spirit of Fmask's potential-cloud tests (Zhu & Woodcock 2012), each a fuzzy membership that is
    0.5 at its threshold, combined by their minimum (a fuzzy AND: ``score > 0.5`` is exactly "all
    tests pass"; the score is returned as ``probability`` but is a heuristic, not calibrated):

    * brightness: the *darkest* band (visible and NIR if given) above :data:`BRIGHT_FLOOR`;
      clouds are bright in every band, while bright soils and sand are dark in blue, vegetation in
      red and blue, water in NIR;
    * whiteness (Fmask): ``sum(|band - mean| / mean)`` over the visible bands below
      :data:`WHITENESS_MAX` (clouds are flat across the visible);
    * haze-optimised transform (Zhang, Guindon & Cihlar 2002): ``HOT = blue - 0.5 red - 0.08``
      above :data:`HOT_MIN` (Fmask uses 0 on top-of-atmosphere reflectance; surface reflectance
      has less blue, hence the slightly negative default);
    * temporal, when a cloud-free ``reference`` of the same place is given: blue brighter than the
      reference by more than :data:`TEMPORAL_BLUE_RISE` (the multitemporal blue test of MAJA,
      Hagolle et al. 2010; cf. Tmask, Zhu & Woodcock 2014). A white roof or a salt flat is bright
      and white on both dates and so is not cloud; where the reference is invalid (NaN or masked)
      the mono-temporal tests decide alone.

    The mask is then cleaned: specks (and holes) below ``min_cloud_area_m2`` are removed (filled)
    and it is dilated by ``cloud_buffer_m``.

Shadows, for both (after Fmask's object matching, Zhu & Woodcock 2012):
    1. dark pixels: NIR *and* the visible mean (the visible mean alone without NIR) below
       :data:`SHADOW_DARK_RATIO` times their local clear-sky background (a ~1 km smooth of the
       non-cloud, not-dark pixels): a shadow darkens every band, while dark vegetation is bright
       in NIR and water is dark in NIR only; with a reference, also below
       :data:`SHADOW_TEMPORAL_RATIO` times the reference (darker than on a clear date, as in
       MAJA's shadow test);
    2. each cloud object is projected away from the sun, ``h * tan(sun zenith)`` metres along the
       sun azimuth + 180 deg, for cloud heights ``h`` in ``cloud_height_range_m`` (200 m..6 km
       by default); an object's match at a height is the fraction of its projection (inside the
       image, not on another cloud) on dark pixels. As in Fmask the nearest good height wins, not
       the global best (far projections meet other clouds' shadows): the top of the first rise to
       0.8 x the object's best match, if that best is at least :data:`SHADOW_MIN_MATCH` and twice
       the scene's dark fraction;
    3. the shadow is the dark pixels connected to the winning projections (within
       :data:`SHADOW_GROW_M` of them), dilated by ``shadow_buffer_m``, outside the cloud.
    Without sun angles, the direction is estimated once for the scene (all clouds share the sun):
    the FFT cross-correlation of the cloud and dark masks gives, for every displacement (for
    zeniths 10..50 deg), the fraction of displaced cloud pixels that land on dark ones; the best
    10-deg sector is used (recorded in ``params["shadow_azimuth_deg"]``).

Azimuths are degrees clockwise from north; the grid is taken as north-up (the ~1 deg between UTM
grid north and true north is neglected). Everything is vectorised numpy / scipy.ndimage; the
only loops are over candidate displacements, never over pixels.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage

from sitewatch.errors import SitewatchError

__all__ = [
    "CloudMask",
    "cloud_mask",
    "normalise_band_names",
    "shadow_offset_px",
    "S2CLOUDLESS_BANDS",
    "SPECTRAL_BANDS",
]

#: Bands the s2cloudless model takes, in its order.
S2CLOUDLESS_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")
#: Bands the spectral-temporal method needs (B08 is used too when present).
SPECTRAL_BANDS = ("B02", "B03", "B04")

#: Common (STAC ``eo``) band names and their Sentinel-2 equivalents.
COMMON_NAMES = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04",
    "rededge1": "B05", "rededge2": "B06", "rededge3": "B07", "rededge": "B05",
    "nir": "B08", "nir08": "B8A", "nir09": "B09", "cirrus": "B10",
    "swir16": "B11", "swir22": "B12",
}

# s2cloudless (authors' values, expressed as ground distances).
S2CLOUDLESS_THRESHOLD = 0.4
S2CLOUDLESS_AVERAGE_M = 220.0
S2CLOUDLESS_DILATION_M = 110.0
S2CLOUDLESS_CLASSIFY_M = 60.0

# Spectral-temporal tests (reflectance 0..1). Each value is where its fuzzy membership is 0.5;
# the second number is the half-width of the linear ramp around it.
BRIGHT_FLOOR = 0.12
BRIGHT_RAMP = 0.04
WHITENESS_MAX = 0.7
WHITENESS_RAMP = 0.2
HOT_MIN = -0.01
HOT_RAMP = 0.03
TEMPORAL_BLUE_RISE = 0.03
TEMPORAL_RAMP = 0.02
SPECTRAL_THRESHOLD = 0.5

# Shadows.
SHADOW_DARK_RATIO = 0.8
SHADOW_TEMPORAL_RATIO = 0.75
SHADOW_BACKGROUND_M = 1000.0
SHADOW_MIN_MATCH = 0.3
SHADOW_GROW_M = 200.0
UNKNOWN_SUN_ZENITH_DEG = (10.0, 50.0)
MAX_SHADOW_STEPS = 120
MAX_SHADOW_SAMPLES = 200_000


@dataclass
class CloudMask:
    """Cloud and cloud-shadow masks of one scene, on its grid.

    ``valid`` is the pixels that had data (all bands finite, not all zero, and inside the
    caller's validity mask); ``cloud`` and ``shadow`` are False outside it. ``params`` records
    how the masks were made (method, thresholds, radii, the sun direction used) for provenance.
    """

    cloud: np.ndarray
    shadow: np.ndarray
    probability: np.ndarray | None
    method: str
    valid: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def clear(self) -> np.ndarray:
        """Pixels that are valid and neither cloud nor shadow."""
        out = ~(self.cloud | self.shadow)
        if self.valid is not None:
            out &= self.valid
        return out


def normalise_band_names(bands: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Bands keyed by Sentinel-2 name (``B01``..``B12``, ``B8A``), as float32 arrays.

    Accepts ``B1``/``b01``/``B8a`` spellings and the common names of :data:`COMMON_NAMES`.
    """
    out: dict[str, np.ndarray] = {}
    for name, arr in bands.items():
        key = str(name).strip()
        low = key.lower()
        if low in COMMON_NAMES:
            s2 = COMMON_NAMES[low]
        elif low.startswith("b") and low[1:].isdigit() and 1 <= int(low[1:]) <= 12:
            s2 = f"B{int(low[1:]):02d}"
        elif low in ("b8a", "b08a"):
            s2 = "B8A"
        else:
            raise SitewatchError(
                f"unknown band name {name!r}: use Sentinel-2 names (B01..B12, B8A) or "
                f"common names ({', '.join(sorted(COMMON_NAMES))})")
        if s2 in out:
            raise SitewatchError(f"band {s2} given twice (as {name!r} and another name)")
        out[s2] = np.asarray(arr, dtype=np.float32)
    shapes = {a.shape for a in out.values()}
    if len(shapes) > 1:
        raise SitewatchError(f"bands are not on one grid: shapes {sorted(shapes)}")
    if shapes and len(next(iter(shapes))) != 2:
        raise SitewatchError(f"bands must be 2-D arrays, got shape {next(iter(shapes))}")
    return out


def shadow_offset_px(distance_m: float, azimuth_deg: float, pixel_size_m: float
                     ) -> tuple[float, float]:
    """(rows, cols) offset of a shadow ``distance_m`` from its cloud, sun at ``azimuth_deg``.

    The shadow lies away from the sun (azimuth + 180); rows grow southwards on a north-up grid.
    """
    az = math.radians(azimuth_deg)
    return distance_m * math.cos(az) / pixel_size_m, -distance_m * math.sin(az) / pixel_size_m


def cloud_mask(
    bands: Mapping[str, np.ndarray],
    *,
    pixel_size_m: float,
    valid: np.ndarray | None = None,
    reference: Mapping[str, np.ndarray] | None = None,
    sun_azimuth_deg: float | None = None,
    sun_zenith_deg: float | None = None,
    method: str = "auto",
    threshold: float | None = None,
    min_cloud_area_m2: float = 1000.0,
    cloud_buffer_m: float = 60.0,
    shadow_buffer_m: float = 30.0,
    cloud_height_range_m: tuple[float, float] = (200.0, 6000.0),
) -> CloudMask:
    """Cloud and cloud-shadow masks of one scene (see the module docstring for the methods).

    Parameters
    ----------
    bands
        Band name -> 2-D reflectance (0..1, float), all on one grid. Sentinel-2 or common names.
    pixel_size_m
        Pixel size of the grid, metres.
    valid
        Optional boolean mask of pixels with data.
    reference
        Optional cloud-free image of the same place on the same grid (at least blue; NIR for the
        shadow test), NaN where it has no clear data. Used by the temporal tests.
    sun_azimuth_deg, sun_zenith_deg
        Sun position (degrees; azimuth clockwise from north). Without them the shadow direction
        is estimated from the scene.
    method
        ``"auto"`` (s2cloudless when its ten L1C bands are given and the package is installed,
        else spectral-temporal), ``"s2cloudless"`` or ``"spectral-temporal"``.
    threshold
        Cloud threshold on the probability/score; default 0.4 (s2cloudless), 0.5 (spectral).
    min_cloud_area_m2, cloud_buffer_m
        Spectral-temporal clean-up: specks and holes smaller than this go; then dilation.
    shadow_buffer_m
        Dilation of the shadow mask.
    cloud_height_range_m
        Cloud heights searched for shadows.
    """
    if not pixel_size_m or not np.isfinite(pixel_size_m) or pixel_size_m <= 0:
        raise SitewatchError(
            f"pixel_size_m must be a positive number of metres, got {pixel_size_m!r}")
    b = normalise_band_names(bands)
    if not b:
        raise SitewatchError("no bands given")
    shape = next(iter(b.values())).shape
    ok = _valid_pixels(b, valid, shape)

    ref = None
    if reference is not None:
        ref = normalise_band_names(reference)
        bad = {k: v.shape for k, v in ref.items() if v.shape != shape}
        if bad:
            raise SitewatchError(f"reference bands not on the scene's grid {shape}: {bad}")
        if "B02" not in ref:
            raise SitewatchError(
                "reference is missing band B02 (blue), needed by the temporal cloud test")

    method = method.lower()
    if method not in ("auto", "s2cloudless", "spectral-temporal"):
        raise SitewatchError(
            f"unknown cloud method {method!r}: use 'auto', 's2cloudless' or 'spectral-temporal'")
    have_s2 = all(k in b for k in S2CLOUDLESS_BANDS)
    if method == "auto":
        method = "spectral-temporal"
        if have_s2:
            if _s2cloudless_available():
                method = "s2cloudless"
            else:
                warnings.warn("s2cloudless is not installed: using the spectral-temporal cloud "
                              "test (pip install s2cloudless)", stacklevel=2)
    required = S2CLOUDLESS_BANDS if method == "s2cloudless" else SPECTRAL_BANDS
    missing = [k for k in required if k not in b]
    if missing:
        raise SitewatchError(
            f"cloud method {method!r} needs bands {', '.join(required)}; missing: "
            f"{', '.join(missing)} (given: {', '.join(sorted(b))})")

    params: dict[str, Any] = {"method": method, "pixel_size_m": float(pixel_size_m)}
    if method == "s2cloudless":
        cloud, prob = _s2cloudless(b, ok, pixel_size_m, threshold, params)
    else:
        cloud, prob = _spectral_temporal(b, ok, ref, pixel_size_m, threshold, min_cloud_area_m2,
                                         cloud_buffer_m, params)
    cloud &= ok

    shadow = _shadows(b, ok, cloud, ref, pixel_size_m, sun_azimuth_deg, sun_zenith_deg,
                      cloud_height_range_m, shadow_buffer_m, params)
    if prob is not None:
        prob = np.where(ok, prob, np.nan).astype(np.float32)
    return CloudMask(cloud=cloud, shadow=shadow & ok & ~cloud, probability=prob, method=method,
                     valid=ok, params=params)


# --------------------------------------------------------------------------- helpers


def _valid_pixels(b: dict[str, np.ndarray], valid, shape) -> np.ndarray:
    ok = np.ones(shape, dtype=bool)
    anyval = np.zeros(shape, dtype=bool)
    for a in b.values():
        ok &= np.isfinite(a)
        anyval |= a != 0
    ok &= anyval
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        if v.shape != shape:
            raise SitewatchError(f"valid mask shape {v.shape} differs from the bands' {shape}")
        ok &= v
    return ok


def _ramp(x: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    """Linear membership: 0 at centre - half_width, 0.5 at centre, 1 at centre + half_width."""
    out = np.subtract(x, centre)  # one temporary, updated in place
    out /= 2.0 * half_width
    out += 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def _disk(radius_px: float) -> np.ndarray:
    r = int(math.ceil(radius_px))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy * yy + xx * xx) <= radius_px * radius_px + 1e-9


def _dilate(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Dilation by a disk of ``radius_px`` (Euclidean distance, cost independent of radius)."""
    if radius_px <= 0 or not mask.any():
        return mask.copy()
    if radius_px < 1.5:
        return ndimage.binary_dilation(mask, structure=_disk(radius_px))
    return ndimage.distance_transform_edt(~mask) <= radius_px


def _remove_small(mask: np.ndarray, min_px: int) -> np.ndarray:
    """Remove 8-connected components, and fill holes, smaller than ``min_px`` pixels."""
    if min_px <= 1:
        return mask
    eight = np.ones((3, 3), dtype=bool)
    lab, n = ndimage.label(mask, structure=eight)
    if n:
        sizes = np.bincount(lab[mask], minlength=n + 1)  # counted over the objects only
        keep = sizes >= min_px
        keep[0] = False
        mask = keep[lab]
    if not mask.any():  # no object, hence no hole (the common window without clouds)
        return mask
    lab, n = ndimage.label(~mask)  # 4-connected background: holes
    if n:
        sizes = np.bincount(lab.ravel())
        small = sizes < min_px
        small[0] = False
        mask = mask | small[lab]
    return mask


def _s2cloudless_available() -> bool:
    try:
        import s2cloudless  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- clouds


def _s2cloudless(b, ok, pixel_size_m, threshold, params):
    try:
        from s2cloudless import S2PixelCloudDetector
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SitewatchError("cloud method 's2cloudless' needs the s2cloudless package: "
                             "pip install s2cloudless, or use method='spectral-temporal'") from exc
    thr = S2CLOUDLESS_THRESHOLD if threshold is None else float(threshold)
    average_over = max(1, round(S2CLOUDLESS_AVERAGE_M / pixel_size_m))
    dilation = max(1, round(S2CLOUDLESS_DILATION_M / pixel_size_m))
    det = S2PixelCloudDetector(threshold=thr, all_bands=False, average_over=average_over,
                               dilation_size=dilation)
    # The classifier runs on ~S2CLOUDLESS_CLASSIFY_M blocks (band means over valid pixels) and
    # its probability is interpolated back: the model is per pixel, LightGBM costs ~10 us a
    # pixel (12 s for 1000 x 1000), and the result is smoothed over ~220 m anyway.
    f = max(1, int(round(S2CLOUDLESS_CLASSIFY_M / pixel_size_m)))
    coarse, counts = zip(*(_block_mean(b[k], ok, f) for k in S2CLOUDLESS_BANDS), strict=True)
    stack = np.stack(coarse, axis=-1)
    have = counts[0] > 0
    cprob = np.zeros(have.shape, dtype=np.float32)
    if have.any():
        cprob[have] = det.get_cloud_probability_maps(stack[have][None, :, None, :])[0, :, 0]
    prob = _upsample(cprob, f, ok.shape) if f > 1 else cprob
    prob = np.where(ok, prob, 0.0).astype(np.float32)
    # Invalid pixels count as clear in the disk average (the authors' post-processing).
    mask = det.get_mask_from_prob(prob[None])[0].astype(bool)
    params.update(threshold=thr, average_over_px=average_over, dilation_size_px=dilation,
                  s2cloudless_average_m=S2CLOUDLESS_AVERAGE_M,
                  s2cloudless_dilation_m=S2CLOUDLESS_DILATION_M,
                  classify_block_px=f)
    return mask, prob


def _spectral_temporal(b, ok, ref, pixel_size_m, threshold, min_area_m2, buffer_m, params):
    blue, green, red = b["B02"], b["B03"], b["B04"]
    nir = b.get("B08")
    with np.errstate(invalid="ignore", divide="ignore"):
        vis = (blue + green + red) / 3.0
        whiteness = (np.abs(blue - vis) + np.abs(green - vis) + np.abs(red - vis)) / vis
        whiteness = np.where(vis > 0, whiteness, np.inf)
    floor = np.minimum(np.minimum(blue, green), red)
    if nir is not None:
        floor = np.minimum(floor, nir)
    hot = blue - 0.5 * red - 0.08
    score = np.minimum(_ramp(floor, BRIGHT_FLOOR, BRIGHT_RAMP),
                       1.0 - _ramp(whiteness, WHITENESS_MAX, WHITENESS_RAMP))
    score = np.minimum(score, _ramp(hot, HOT_MIN, HOT_RAMP))
    temporal = False
    if ref is not None:
        rblue = ref["B02"]
        rok = np.isfinite(rblue) & (rblue > 0)
        rise = _ramp(np.where(rok, blue - rblue, 0.0), TEMPORAL_BLUE_RISE, TEMPORAL_RAMP)
        score = np.where(rok, np.minimum(score, rise), score)
        temporal = bool(rok.any())
    score = np.where(ok, score, 0.0).astype(np.float32)
    thr = SPECTRAL_THRESHOLD if threshold is None else float(threshold)
    mask = score > thr
    min_px = int(round(min_area_m2 / pixel_size_m ** 2))
    mask = _remove_small(mask & ok, min_px)
    mask = _dilate(mask, buffer_m / pixel_size_m)
    params.update(threshold=thr, bright_floor=BRIGHT_FLOOR, whiteness_max=WHITENESS_MAX,
                  hot_min=HOT_MIN, temporal_test=temporal,
                  temporal_blue_rise=TEMPORAL_BLUE_RISE if temporal else None,
                  uses_nir=nir is not None, min_cloud_area_m2=float(min_area_m2),
                  cloud_buffer_m=float(buffer_m))
    return mask, score


# --------------------------------------------------------------------------- shadows


def _block_mean(x: np.ndarray, use: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``x`` over the ``use`` pixels of each f x f block, and each block's ``use`` count."""
    rows, cols = x.shape
    pr, pc = (-rows) % f, (-cols) % f
    xv = np.pad(np.where(use, x, 0.0), ((0, pr), (0, pc)))
    wv = np.pad(use.astype(np.float64), ((0, pr), (0, pc)))
    R, C = xv.shape[0] // f, xv.shape[1] // f
    xs = xv.reshape(R, f, C, f).sum(axis=(1, 3))
    ws = wv.reshape(R, f, C, f).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ws > 0, xs / ws, np.nan), ws


def _upsample(coarse: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear interpolation of f x f block values (at block centres) to ``shape``."""
    R, C = coarse.shape
    zr = np.clip((np.arange(shape[0]) + 0.5) / f - 0.5, 0, R - 1)
    zc = np.clip((np.arange(shape[1]) + 0.5) / f - 0.5, 0, C - 1)
    return ndimage.map_coordinates(coarse, np.meshgrid(zr, zc, indexing="ij"), order=1,
                                   mode="nearest").astype(np.float32)


def _background(x: np.ndarray, use: np.ndarray, pixel_size_m: float) -> np.ndarray:
    """Smooth of ``x`` over ``use`` pixels at ~SHADOW_BACKGROUND_M, computed on ~100 m cells."""
    f = max(1, int(round(100.0 / pixel_size_m)))
    means, ws = _block_mean(x, use, f)
    sigma = SHADOW_BACKGROUND_M / (f * pixel_size_m)
    xs = ndimage.gaussian_filter(np.nan_to_num(means) * ws, sigma, mode="reflect")
    ws_s = ndimage.gaussian_filter(ws, sigma, mode="reflect")
    with np.errstate(invalid="ignore", divide="ignore"):
        coarse = np.where(ws_s > 1e-6 * f * f, xs / ws_s, np.nan)
    if np.isnan(coarse).all():
        return np.full(x.shape, np.nan, dtype=np.float32)
    if np.isnan(coarse).any():  # fill from nearest known cell
        idx = ndimage.distance_transform_edt(np.isnan(coarse), return_distances=False,
                                             return_indices=True)
        coarse = coarse[tuple(idx)]
    return _upsample(coarse, f, x.shape)


def _dark_pixels(b, ok, cloud, ref, pixel_size_m) -> tuple[np.ndarray, str]:
    """Pixels darker than their clear-sky surroundings (and than the reference, if given).

    A shadow darkens every band (only diffuse light reaches it): NIR, where vegetation is bright,
    and the visible mean, where water is brighter than in NIR. With NIR both must drop; the
    background is recomputed once without the first dark pixels so large shadows do not lower it.
    """
    vis = (b["B02"] + b["B03"] + b["B04"]) / 3.0
    tests = [("visible mean", vis)]
    if "B08" in b:
        tests.insert(0, ("B08", b["B08"]))
    clear = ok & ~cloud
    use = clear
    for _ in range(2):
        dark = clear.copy()
        for _, band in tests:
            bg = _background(band, use, pixel_size_m)
            with np.errstate(invalid="ignore"):
                dark &= band < SHADOW_DARK_RATIO * bg
        use = clear & ~dark if (clear & ~dark).any() else clear
    if ref is not None:
        for key, band in tests:
            if key == "B08":
                rband = ref.get("B08")
            elif all(k in ref for k in SPECTRAL_BANDS):
                rband = (ref["B02"] + ref["B03"] + ref["B04"]) / 3.0
            else:
                rband = None
            if rband is None:
                continue
            rok = np.isfinite(rband) & (rband > 0)
            with np.errstate(invalid="ignore"):
                tdark = band < SHADOW_TEMPORAL_RATIO * rband
            # Where the reference is clear, the shadow must be darker than it too.
            dark &= ~rok | tdark
    return dark, " & ".join(k for k, _ in tests)


def _match_scores(lab_s, rr, cc, n_obj, dr, dc, dark, lab):
    """Per object: projected samples that count, and those landing on dark pixels.

    Samples landing on *another* cloud are left out (a shadow may hide under it); samples
    landing on the object's own cloud count as misses, else a projection that mostly overlaps its
    own cloud would be judged by its few remaining pixels.
    """
    rows, cols = dark.shape
    r2 = rr + int(round(dr))
    c2 = cc + int(round(dc))
    inb = (r2 >= 0) & (r2 < rows) & (c2 >= 0) & (c2 < cols)
    r2c, c2c = np.clip(r2, 0, rows - 1), np.clip(c2, 0, cols - 1)
    landed = lab[r2c, c2c]
    seen = inb & ((landed == 0) | (landed == lab_s))
    hit = seen & dark[r2c, c2c]
    n_seen = np.bincount(lab_s, weights=seen, minlength=n_obj + 1)
    n_hit = np.bincount(lab_s, weights=hit, minlength=n_obj + 1)
    return n_seen, n_hit


def _best_distance(lab_s, rr, cc, n_obj, n_tot, distances, azimuth, px, dark, lab, base):
    """Best match and its distance per object along one azimuth.

    The match of a displacement is the fraction of the object's projected pixels, among those
    inside the image and not on another cloud (at least a fifth of them), that land on dark
    pixels. As
    in Fmask, the nearest good match wins rather than the global best: far displacements meet
    other clouds' shadows. Here: the top of the first rise to at least 0.8 x the object's best.
    """
    scores = np.full((len(distances), n_obj + 1), -1.0)
    for i, d in enumerate(distances):
        dr, dc = shadow_offset_px(d, azimuth, px)
        n_seen, n_hit = _match_scores(lab_s, rr, cc, n_obj, dr, dc, dark, lab)
        with np.errstate(invalid="ignore", divide="ignore"):
            scores[i] = np.where(n_seen >= np.maximum(0.2 * n_tot, 1), n_hit / n_seen, -1.0)
    best = scores.max(axis=0)
    first = np.argmax(scores >= np.maximum(0.8 * best, SHADOW_MIN_MATCH)[None, :], axis=0)
    # Climb from there to the top of that first hump (on a 3-step running mean).
    sm = ndimage.uniform_filter1d(scores, 3, axis=0, mode="nearest")
    n = len(distances)
    after = np.arange(n - 1)[:, None] >= first[None, :]
    falls = (sm[1:] < sm[:-1]) & after
    top = np.where(falls.any(axis=0), np.argmax(falls, axis=0), n - 1)
    chosen = scores[top, np.arange(n_obj + 1)]
    good = (best >= SHADOW_MIN_MATCH) & (best >= 2.0 * base)
    good[0] = False
    return chosen, np.asarray(distances)[top], good


def _distances(lo: float, hi: float, px: float) -> np.ndarray:
    n = int(min(MAX_SHADOW_STEPS, max(2, math.ceil((hi - lo) / px) + 1)))
    return np.linspace(lo, hi, n)


def _shadow_direction(cloud, dark, clear, px, d_lo, d_hi) -> float | None:
    """Scene-wide sun azimuth from where dark pixels lie relative to the cloud pixels.

    The cross-correlation (by FFT) of the cloud mask with the dark mask, divided by that with the
    clear mask, gives for every displacement the fraction of displaced cloud pixels that land on
    dark ones. Over the displacements ``d_lo..d_hi`` m that keep at least a quarter of the cloud
    pixels on clear pixels inside the image, each 10-deg sector scores the largest such fraction
    (times the square root of the fraction of cloud pixels in view); the sector scores are
    smoothed (1-2-1) and the best sector's centre wins.
    """
    rows, cols = cloud.shape
    size = (2 * rows, 2 * cols)
    fc = np.conj(sp_fft.rfft2(cloud.astype(np.float32), size))
    num = np.fft.fftshift(sp_fft.irfft2(fc * sp_fft.rfft2(dark.astype(np.float32), size), size))
    den = np.fft.fftshift(sp_fft.irfft2(fc * sp_fft.rfft2(clear.astype(np.float32), size), size))
    yy = np.arange(-rows, rows)[:, None].astype(np.float64)
    xx = np.arange(-cols, cols)[None, :].astype(np.float64)
    dist = np.hypot(yy, xx) * px
    use = (dist >= d_lo) & (dist <= d_hi) & (den > max(0.25 * cloud.sum(), 0.5))
    if not use.any():
        return None
    # Fraction landing on dark, times the square root of the fraction of the cloud in view, so
    # that a displacement matching one small cloud does not beat one matching all of them.
    frac = num[use] / den[use] * np.sqrt(den[use] / cloud.sum())
    # Shadow offset (dy, dx) = d (cos az, -sin az): az = atan2(-dx, dy).
    az = np.degrees(np.arctan2(-np.broadcast_to(xx, use.shape)[use],
                               np.broadcast_to(yy, use.shape)[use])) % 360.0
    sector = (az // 10.0).astype(int) % 36
    order = np.argsort(sector, kind="stable")
    bounds = np.searchsorted(sector[order], np.arange(37))
    prof = np.zeros(36)
    for i in range(36):
        v = frac[order[bounds[i]:bounds[i + 1]]]
        if v.size:
            prof[i] = v.max()
    prof = 0.25 * np.roll(prof, 1) + 0.5 * prof + 0.25 * np.roll(prof, -1)
    if prof.max() <= 0:
        return None
    return float(np.argmax(prof) * 10.0 + 5.0)


def _shadows(b, ok, cloud, ref, px, sun_az, sun_zen, heights, buffer_m, params):
    shadow = np.zeros_like(cloud)
    h_lo, h_hi = float(min(heights)), float(max(heights))
    params.update(cloud_height_range_m=(h_lo, h_hi), shadow_buffer_m=float(buffer_m),
                  shadow_dark_ratio=SHADOW_DARK_RATIO, shadow_min_match=SHADOW_MIN_MATCH,
                  sun_azimuth_deg=sun_az, sun_zenith_deg=sun_zen)
    if not cloud.any():
        params.update(shadow_azimuth_deg=sun_az, shadow_objects_matched=0)
        return shadow
    dark, dark_band = _dark_pixels(b, ok, cloud, ref, px)
    params["shadow_dark_band"] = dark_band
    n_clear = (ok & ~cloud).sum()
    base = float(dark.sum() / n_clear) if n_clear else 1.0

    eight = np.ones((3, 3), dtype=bool)
    lab, n_obj = ndimage.label(cloud, structure=eight)
    rr, cc = np.nonzero(cloud)
    lab_px = lab[rr, cc]
    stride = max(1, int(math.ceil(len(rr) / MAX_SHADOW_SAMPLES)))
    s_rr, s_cc, s_lab = rr[::stride], cc[::stride], lab_px[::stride]
    n_tot = np.bincount(s_lab, minlength=n_obj + 1).astype(float)

    if sun_az is not None and sun_zen is not None:
        tz = math.tan(math.radians(min(float(sun_zen), 85.0)))
        distances = _distances(h_lo * tz, h_hi * tz, px)
        azimuth = float(sun_az)
    else:
        lo = h_lo * math.tan(math.radians(UNKNOWN_SUN_ZENITH_DEG[0]))
        hi = h_hi * math.tan(math.radians(UNKNOWN_SUN_ZENITH_DEG[1]))
        if sun_zen is not None:
            tz = math.tan(math.radians(min(float(sun_zen), 85.0)))
            lo, hi = h_lo * tz, h_hi * tz
        distances = _distances(lo, hi, px)
        if sun_az is not None:
            azimuth = float(sun_az)
        else:
            azimuth = _shadow_direction(cloud, dark, ok & ~cloud, px, lo, hi)
        if azimuth is None:
            params.update(shadow_azimuth_deg=None, shadow_objects_matched=0)
            return shadow

    best, best_d, good = _best_distance(s_lab, s_rr, s_cc, n_obj, n_tot, distances, azimuth, px,
                                        dark, lab, base)
    params.update(shadow_azimuth_deg=azimuth, shadow_objects_matched=int(good.sum()),
                  cloud_objects=int(n_obj))
    if not good.any():
        return shadow
    rows, cols = cloud.shape
    sel = good[lab_px]
    p_rr, p_cc, p_d = rr[sel], cc[sel], best_d[lab_px[sel]]
    for d in np.unique(p_d):
        m = p_d == d
        dr, dc = shadow_offset_px(float(d), azimuth, px)
        r2, c2 = p_rr[m] + int(round(dr)), p_cc[m] + int(round(dc))
        inb = (r2 >= 0) & (r2 < rows) & (c2 >= 0) & (c2 < cols)
        shadow[r2[inb], c2[inb]] = True
    params["shadow_distances_m"] = sorted({round(float(d)) for d in np.unique(best_d[good])})
    if sun_zen is not None:
        tz = math.tan(math.radians(min(float(sun_zen), 85.0)))
        params["cloud_heights_m"] = [round(d / tz) for d in params["shadow_distances_m"]]
    # The shadow: dark pixels connected to the projections, no farther than SHADOW_GROW_M from
    # them (the cloud outline and its shadow differ, and the cloud mask may miss thin edges).
    near = _dilate(shadow, SHADOW_GROW_M / px)
    dlab, _ = ndimage.label(dark & near, structure=eight)
    touched = np.unique(dlab[shadow & dark])
    touched = touched[touched > 0]
    shadow = np.isin(dlab, touched)
    shadow = _dilate(shadow, buffer_m / px)
    return shadow & ok & ~cloud
