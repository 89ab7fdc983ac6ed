"""Sub-pixel co-registration of a moving image to a reference image on the same grid.

The caller has already resampled both images onto one pixel grid (same shape, same transform);
what is left is the residual misregistration of a few pixels: orthorectification and geolocation
error, which differ from scene to scene. This module measures that residual and undoes it. It works
on plain 2-D numpy arrays (one band, or a combined brightness image); the georeference does not
change, so none is needed here.

Units and conventions
---------------------
* All shifts are in **pixels** of the common grid (multiply by the pixel size for metres).
* Pixel coordinates are (row, col) indices of pixel centres: pixel ``(r, c)`` covers
  ``[r - 0.5, r + 0.5] x [c - 0.5, c + 0.5]``.
* ``dx`` is along columns (+ = right, east on a north-up grid), ``dy`` along rows (+ = down, south
  on a north-up grid). A ground feature at reference pixel ``(row, col)`` appears in ``moving`` at
  ``(row + dy, col + dx)``; :func:`apply_shift` samples ``moving`` there to undo it.

Method
------
:func:`estimate_shift` is phase correlation (Kuglin & Hines 1975) refined to ``1/upsample`` pixel
with the matrix-multiply DFT of Guizar-Sicairos, Thurman & Fienup, "Efficient subpixel image
registration algorithms", Optics Letters 33(2), 156-158 (2008) (``skimage.registration.
phase_cross_correlation``). Three things make it work on multi-date satellite images:

1. It correlates **gradient-magnitude images** (Gaussian derivative, sigma 1 px), not brightness:
   edges (field borders, roads, buildings) stay where they are from season to season while their
   brightness, and even the sign of their contrast, change. Phase correlation on gradients is the
   usual choice for multi-temporal remote sensing, e.g. Scheffler et al., "AROSICS: an automated and
   robust open-source image co-registration software for multi-sensor satellite data", Remote
   Sensing 9(7), 676 (2017), and Leprince et al., "Automatic and precise orthorectification,
   coregistration, and subpixel correlation of satellite images", IEEE TGRS 45(6), 1529-1558 (2007).
2. **Masked pixels** (nodata, cloud, shadow, anything flagged invalid, and non-finite values) are
   filled with the mean of the valid pixels before the gradient is taken (so a nodata value makes no
   edge), the common valid mask ``reference_valid & moving_valid`` is eroded by 2 px (the gradient
   support) and feathered with a raised-cosine taper over ``_MASK_TAPER_PX`` pixels, and this
   weight multiplies both gradient images. skimage's masked correlation (Padfield, IEEE TIP 21(5),
   2012) was not used because it only gives whole-pixel shifts. Using the same weight on both images
   is exact when the mask does not move with the scene, and a good approximation for shifts of a few
   pixels, which is the use case.
3. A 2-D **Tukey window** (alpha 0.5; flat centre, cosine edges) removes the edge discontinuity of
   the periodic FFT, which otherwise pulls the estimate towards zero shift.
4. The normalised cross-power spectrum is weighted by a **Gaussian low-pass**
   (``exp(-f^2 / 2f0^2)``, f0 = 0.15 cycles/pixel) before the peak is located. The highest
   frequencies are mostly noise and aliasing (made worse by the non-linear gradient magnitude),
   and with equal weight they lock the peak towards whole pixels (0.3 px read as 0.22 px on the
   test scenes); weighting them down removes that bias (errors under 0.02 px at moderate noise).
   Removing aliased frequencies from phase correlation follows Stone et al., "A fast direct
   Fourier-based algorithm for subpixel registration of images", IEEE TGRS 39(10), 2235-2243
   (2001); the weighted product is handed to skimage with ``normalization=None`` so it is
   correlated as is.

**Confidence** is the peak-ratio measure used in particle image velocimetry (Keane & Adrian,
"Optimization of particle image velocimeters", Meas. Sci. Technol. 1(11), 1990): on the
whole-pixel (low-pass weighted) phase-correlation surface, ``confidence = 1 - second / first``
where ``first`` is the highest peak and ``second`` the highest value more than
``_PEAK_EXCLUSION_PX`` (3) pixels away from it (clipped to 0..1). Two unrelated images give a
surface of noise whose two highest values are close: confidence typically 0.05, 90 % below 0.2,
rarely up to 0.35 on windows as small as 64 px. A genuinely shifted pair gives one dominant peak:
0.95-0.99 at moderate noise, 0.75 when the noise equals half the scene's standard deviation,
0.5 when it equals it (where the shift is only good to about 0.5 px). It also drops when the
scene is repetitive (two candidate shifts), which is exactly when the shift should not be
trusted. Use windows of 128 px or more and a threshold around 0.3. **Error** is the
translation-invariant normalised RMS error of Fienup (Applied Optics 36(32), 1997), as skimage
reports it, between the windowed gradient images at the estimated sub-pixel shift (0 = identical
up to the shift, 1 = nothing in common); skimage's own figure is meaningless with phase
normalisation, so it is computed here.

:func:`estimate_shift_field` repeats this on overlapping tiles for misregistration that is not one
translation (a small rotation or scale, terrain-dependent error); see :class:`ShiftField` for how
unreliable tiles are replaced and how the tile grid is evaluated per pixel.

Memory and size
---------------
Everything is vectorised numpy; memory is a small multiple of the input (a few complex copies of
the correlated window). The caller should pass windows of at most a few thousand pixels a side.
For a whole scene, estimate the global shift on a central window (e.g. 1024 x 1024, or the window
with the most valid pixels) or on a decimated image (multiply the shift by the decimation factor),
and use :func:`estimate_shift_field` on windows for local error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy import ndimage
from scipy.signal.windows import tukey
from skimage.registration import phase_cross_correlation

__all__ = [
    "CoregistrationWarning",
    "Shift",
    "ShiftField",
    "apply_shift",
    "coregister",
    "estimate_shift",
    "estimate_shift_field",
]

_GRADIENT_SIGMA_PX = 1.0  # Gaussian derivative scale for the gradient-magnitude image
_MASK_ERODE_PX = 2  # valid mask shrunk by this much so no filled pixel feeds a gradient
_MASK_TAPER_PX = 8.0  # raised-cosine feather of the valid mask
_TUKEY_ALPHA = 0.5  # fraction of each axis in the cosine-tapered edges
_LOWPASS_CYCLES_PER_PX = 0.15  # Gaussian low-pass of the cross-power spectrum (see docstring)
_PEAK_EXCLUSION_PX = 3  # neighbourhood of the main peak ignored when looking for the second one
_MIN_VALID_PIXELS = 256  # fewer valid pixels than this: no estimate (confidence 0)


class CoregistrationWarning(UserWarning):
    """The co-registration estimate was not trusted, so it was not applied."""


@dataclass(frozen=True)
class Shift:
    """A translation between a reference and a moving image, in pixels.

    A ground feature at reference pixel ``(row, col)`` appears in ``moving`` at
    ``(row + dy, col + dx)``.

    Attributes
    ----------
    dx
        Shift along columns, pixels; + = right.
    dy
        Shift along rows, pixels; + = down.
    confidence
        0..1, the peak ratio ``1 - second / first`` of the phase-correlation surface (see the
        module docstring). Below about 0.3 the estimate should not be trusted.
    error
        Translation-invariant normalised RMS error (Fienup 1997) between the windowed gradient
        images at the estimated shift, 0..1 (0 = identical up to the shift). NaN when there were
        too few valid pixels to estimate anything.
    """

    dx: float
    dy: float
    confidence: float
    error: float

    @property
    def magnitude(self) -> float:
        """Length of the shift, pixels."""
        return float(np.hypot(self.dx, self.dy))


@dataclass(frozen=True)
class ShiftField:
    """Shifts measured on a grid of overlapping tiles, and their per-pixel interpolation.

    Tile ``(i, j)`` covers rows ``row_starts[i] : row_starts[i] + tile_shape[0]`` and columns
    ``col_starts[j] : col_starts[j] + tile_shape[1]``; its centre is ``(rows[i], cols[j])`` in
    pixel coordinates (pixel-centre indices, so a tile of rows 0..255 is centred on row 127.5).

    Attributes
    ----------
    shape
        ``(height, width)`` of the images, pixels.
    rows, cols
        Tile centres along rows and columns, pixels (increasing; the last tile is placed flush with
        the image edge, so the spacing may be uneven there).
    dx, dy
        ``(len(rows), len(cols))`` shifts per tile, pixels, same convention as :class:`Shift`.
        Tiles that were not kept (see ``kept``) hold the filled value.
    confidence
        Per-tile confidence, 0..1 (0 where the tile had too few valid pixels).
    error
        Per-tile normalised RMS error (NaN where the tile had too few valid pixels).
    measured_dx, measured_dy
        The raw per-tile estimates before rejection and filling (NaN where not measurable).
    kept
        True where the tile's own estimate is used: enough valid pixels, confidence at least
        ``min_confidence``, and not an outlier against its neighbours (normalised median test of
        Westerweel & Scarano, "Universal outlier detection for PIV data", Exp. Fluids 39, 2005).
        The other tiles are filled with the robust affine trend of the kept tiles plus the kept
        tiles' residuals from it, interpolated by inverse-distance weighting (Shepard 1968).
    tile_shape, step
        Tile size and nominal tile spacing, pixels.
    """

    shape: tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    confidence: np.ndarray
    error: np.ndarray
    measured_dx: np.ndarray
    measured_dy: np.ndarray
    kept: np.ndarray
    tile_shape: tuple[int, int]
    step: int
    min_confidence: float = field(default=0.3)

    @property
    def overall_confidence(self) -> float:
        """Median confidence of the tiles that had enough valid pixels, 0..1 (0 if none had)."""
        measured = np.isfinite(self.measured_dx)
        return float(np.median(self.confidence[measured])) if measured.any() else 0.0

    def affine(self) -> np.ndarray:
        """Least-squares affine fit of the kept tiles, weighted by confidence.

        Returns
        -------
        ``(2, 3)`` array ``A``: ``dx = A[0] @ [1, row, col]`` and ``dy = A[1] @ [1, row, col]``,
        pixels. With fewer than three kept tiles (or collinear ones) the fit degenerates to the
        weighted mean shift (zero slopes); with none, to zero.
        """
        rr, cc = np.meshgrid(self.rows, self.cols, indexing="ij")
        k = self.kept
        coef = np.zeros((2, 3))
        if not k.any():
            return coef
        w = np.sqrt(np.maximum(self.confidence[k], 1e-6))
        design = np.column_stack([np.ones(k.sum()), rr[k], cc[k]])
        if k.sum() >= 3 and np.linalg.matrix_rank(design) == 3:
            for i, v in enumerate((self.dx[k], self.dy[k])):
                coef[i] = np.linalg.lstsq(design * w[:, None], v * w, rcond=None)[0]
        else:
            coef[0, 0] = np.average(self.dx[k], weights=w**2)
            coef[1, 0] = np.average(self.dy[k], weights=w**2)
        return coef

    def at(self, row, col, *, method: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
        """The shift at arbitrary pixel coordinates.

        Parameters
        ----------
        row, col
            Pixel coordinates (broadcastable arrays).
        method
            ``"bilinear"``: bilinear interpolation between tile centres, extrapolated linearly
            beyond the outermost centres (half a tile at most); follows local, terrain-dependent
            error. ``"affine"``: the affine fit of :meth:`affine`; smoother, right for a rotation,
            scale or skew of the whole window.

        Returns
        -------
        ``(dy, dx)`` arrays, pixels.
        """
        row = np.asarray(row, dtype=float)
        col = np.asarray(col, dtype=float)
        if method == "affine":
            a = self.affine()
            return a[1, 0] + a[1, 1] * row + a[1, 2] * col, a[0, 0] + a[0, 1] * row + a[0, 2] * col
        if method != "bilinear":
            raise ValueError(f"method must be 'bilinear' or 'affine', not {method!r}")
        row, col = np.broadcast_arrays(row, col)
        i0, ty = _bracket(self.rows, row.ravel())
        j0, tx = _bracket(self.cols, col.ravel())
        i1 = np.minimum(i0 + 1, len(self.rows) - 1)
        j1 = np.minimum(j0 + 1, len(self.cols) - 1)
        out = []
        for g in (self.dy, self.dx):
            v = (
                (1 - ty) * (1 - tx) * g[i0, j0]
                + (1 - ty) * tx * g[i0, j1]
                + ty * (1 - tx) * g[i1, j0]
                + ty * tx * g[i1, j1]
            )
            out.append(v.reshape(row.shape))
        return out[0], out[1]

    def dense(self, *, method: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
        """The shift at every pixel: ``(dy, dx)`` arrays of :attr:`shape`, pixels.

        See :meth:`at` for the methods. Separable, so it costs two ``shape``-sized arrays.
        """
        h, w = self.shape
        if method == "affine":
            return self.at(np.arange(h)[:, None], np.arange(w)[None, :], method="affine")
        if method != "bilinear":
            raise ValueError(f"method must be 'bilinear' or 'affine', not {method!r}")
        i0, ty = _bracket(self.rows, np.arange(h, dtype=float))
        j0, tx = _bracket(self.cols, np.arange(w, dtype=float))
        i1 = np.minimum(i0 + 1, len(self.rows) - 1)
        j1 = np.minimum(j0 + 1, len(self.cols) - 1)
        out = []
        for g in (self.dy, self.dx):
            # interpolate along columns first (ny x w), then along rows (h x w)
            gc = g[:, j0] * (1 - tx) + g[:, j1] * tx
            out.append(gc[i0] * (1 - ty)[:, None] + gc[i1] * ty[:, None])
        return out[0], out[1]


def _bracket(centres: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left neighbour index and fractional position of ``x`` among increasing ``centres``.

    The fraction is outside 0..1 beyond the first/last centre (linear extrapolation); with a single
    centre it is 0 (constant).
    """
    n = len(centres)
    if n == 1:
        return np.zeros(x.shape, dtype=np.intp), np.zeros(x.shape)
    i0 = np.clip(np.searchsorted(centres, x, side="right") - 1, 0, n - 2)
    t = (x - centres[i0]) / (centres[i0 + 1] - centres[i0])
    return i0, t


# ---------------------------------------------------------------------------------------------
# preparation: gradient images and weights


def _check_pair(reference: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference = np.asarray(reference, dtype=float)
    moving = np.asarray(moving, dtype=float)
    if reference.ndim != 2 or reference.shape != moving.shape:
        raise ValueError(
            "reference and moving must be 2-D arrays of the same shape (one band on one grid), "
            f"got {reference.shape} and {moving.shape}"
        )
    return reference, moving


def _valid_mask(image: np.ndarray, valid) -> np.ndarray:
    ok = np.isfinite(image)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != image.shape:
            raise ValueError(f"valid mask shape {valid.shape} differs from image {image.shape}")
        ok &= valid
    return ok


def _gradient(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Gradient magnitude (Gaussian derivative, sigma 1 px) with invalid pixels mean-filled."""
    filled = image.copy()
    filled[~valid] = image[valid].mean() if valid.any() else 0.0
    return ndimage.gaussian_gradient_magnitude(filled, _GRADIENT_SIGMA_PX, mode="nearest")


def _mask_weight(valid: np.ndarray) -> np.ndarray:
    """Eroded, raised-cosine-feathered valid mask in 0..1 (1 well inside valid areas)."""
    if valid.all():
        return np.ones(valid.shape)
    # distance to the nearest invalid pixel; the erosion is the first _MASK_ERODE_PX of it
    dist = ndimage.distance_transform_edt(valid)
    t = np.clip((dist - _MASK_ERODE_PX) / _MASK_TAPER_PX, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * t)


def _window(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(tukey(shape[0], _TUKEY_ALPHA), tukey(shape[1], _TUKEY_ALPHA))


def _prepare(reference, moving, reference_valid, moving_valid):
    """Gradient images of both and the common mask weight (full-size)."""
    reference, moving = _check_pair(reference, moving)
    rv = _valid_mask(reference, reference_valid)
    mv = _valid_mask(moving, moving_valid)
    weight = _mask_weight(rv & mv)
    return _gradient(reference, rv), _gradient(moving, mv), weight


# ---------------------------------------------------------------------------------------------
# the core: register two prepared windows


def _register(gref: np.ndarray, gmov: np.ndarray, mweight: np.ndarray, upsample: int) -> Shift:
    """Phase correlation of two gradient windows under a common mask weight."""
    if np.count_nonzero(mweight > 0.5) < _MIN_VALID_PIXELS or min(gref.shape) < 8:
        return Shift(0.0, 0.0, 0.0, float("nan"))
    w = mweight * _window(gref.shape)
    sw = w.sum()
    a = (gref - (w * gref).sum() / sw) * w
    b = (gmov - (w * gmov).sum() / sw) * w
    fa = sfft.fft2(a)
    fb = sfft.fft2(b)
    if not (np.any(a) and np.any(b)):
        return Shift(0.0, 0.0, 0.0, float("nan"))

    # normalised cross-power spectrum (phase correlation), low-pass weighted
    cross = fa * fb.conj()
    mag = np.abs(cross)
    cross /= np.maximum(mag, 100 * np.finfo(float).eps * max(mag.max(), 1e-300))
    cross *= _lowpass(cross.shape)
    confidence = _peak_ratio(sfft.ifft2(cross).real)
    # sub-pixel peak by the upsampled matrix-multiply DFT; passing the weighted product as the
    # "reference spectrum" and ones as the "moving spectrum" makes skimage correlate exactly it
    shift, _, _ = phase_cross_correlation(
        cross, np.ones_like(cross), space="fourier", upsample_factor=upsample, normalization=None
    )
    # skimage returns the shift that moves `moving` onto `reference`: the opposite of ours
    dy, dx = -float(shift[0]), -float(shift[1])
    return Shift(dx=dx, dy=dy, confidence=confidence, error=_rms_error(fa, fb, dy, dx))


def _lowpass(shape: tuple[int, int]) -> np.ndarray:
    """Gaussian weight of the cross-power spectrum, ``exp(-f^2 / (2 f0^2))``, f in cycles/px."""
    fy = sfft.fftfreq(shape[0])
    fx = sfft.fftfreq(shape[1])
    return np.exp(-0.5 * (fy[:, None] ** 2 + fx[None, :] ** 2) / _LOWPASS_CYCLES_PER_PX**2)


def _peak_ratio(surface: np.ndarray) -> float:
    """``1 - second / first`` peak of a (periodic) correlation surface, clipped to 0..1."""
    h, w = surface.shape
    k = int(np.argmax(surface))
    first = surface.flat[k]
    if not first > 0:
        return 0.0
    r, c = divmod(k, w)
    e = _PEAK_EXCLUSION_PX
    rolled = np.roll(surface, (e - r, e - c), axis=(0, 1))  # main peak now at (e, e)
    rolled[: 2 * e + 1, : 2 * e + 1] = -np.inf
    second = max(float(rolled.max()), 0.0)
    return float(np.clip(1.0 - second / first, 0.0, 1.0))


def _rms_error(fa: np.ndarray, fb: np.ndarray, dy: float, dx: float) -> float:
    """Fienup's translation-invariant normalised RMS error at a sub-pixel shift.

    ``1 - |sum_k Fa(k) conj(Fb(k)) exp(-2 pi i k.d)|^2 / (sum |Fa|^2 sum |Fb|^2)``, square-rooted,
    with ``d = (dy, dx)``: the cross-correlation of the two windows evaluated at the estimated
    shift by a single-point DFT.
    """
    h, w = fa.shape
    ry = np.exp(-2j * np.pi * sfft.fftfreq(h) * dy)
    rx = np.exp(-2j * np.pi * sfft.fftfreq(w) * dx)
    cc = np.sum((fa * fb.conj()) * ry[:, None] * rx[None, :])
    amp = np.sum(np.abs(fa) ** 2) * np.sum(np.abs(fb) ** 2)
    if amp == 0:
        return float("nan")
    return float(np.sqrt(abs(1.0 - abs(cc) ** 2 / amp)))


# ---------------------------------------------------------------------------------------------
# public API


def estimate_shift(
    reference,
    moving,
    *,
    reference_valid=None,
    moving_valid=None,
    upsample: int = 100,
) -> Shift:
    """Estimate the sub-pixel translation of ``moving`` relative to ``reference``.

    Parameters
    ----------
    reference, moving
        2-D arrays of the same shape on the same grid (one band or a brightness image; any
        gain/offset difference between them is fine). Non-finite values count as invalid.
    reference_valid, moving_valid
        Optional boolean masks, True where the pixel is usable (not nodata, cloud, shadow...).
    upsample
        Sub-pixel refinement factor: the shift is found to ``1 / upsample`` pixel.

    Returns
    -------
    Shift
        ``dx``, ``dy`` in pixels (a feature at reference ``(row, col)`` is at
        ``(row + dy, col + dx)`` in ``moving``), with ``confidence`` and ``error`` as described in
        the module docstring. Shifts beyond half the image size wrap around and cannot be measured;
        in practice keep them under a quarter of it. With fewer than 256 valid pixels in common
        the result is ``Shift(0, 0, confidence=0, error=nan)``.
    """
    gref, gmov, weight = _prepare(reference, moving, reference_valid, moving_valid)
    return _register(gref, gmov, weight, int(upsample))


def _tile_starts(n: int, tile: int, step: int) -> np.ndarray:
    if tile >= n:
        return np.array([0])
    starts = list(range(0, n - tile + 1, step))
    if starts[-1] + tile < n:
        starts.append(n - tile)
    return np.array(starts)


def estimate_shift_field(
    reference,
    moving,
    *,
    tile: int = 256,
    step: int | None = None,
    min_confidence: float = 0.3,
    min_valid_fraction: float = 0.5,
    reference_valid=None,
    moving_valid=None,
    upsample: int = 100,
    outlier_threshold: float = 2.0,
) -> ShiftField:
    """Estimate a spatially varying shift on a grid of overlapping tiles.

    For misregistration that is not a single translation (a slight rotation or scale, terrain-
    dependent error). Each tile is registered as in :func:`estimate_shift` (the gradient and mask
    weight are computed once on the whole image, the Tukey window per tile).

    Parameters
    ----------
    reference, moving, reference_valid, moving_valid, upsample
        As for :func:`estimate_shift`.
    tile
        Tile side, pixels (capped at the image size). Smaller tiles follow faster-varying error
        but are noisier; 128-512 is the useful range.
    step
        Tile spacing, pixels; default ``tile // 2`` (50 % overlap).
    min_confidence
        Tiles below this confidence are not kept.
    min_valid_fraction
        Tiles whose common valid area (after erosion) is below this fraction are not measured.
    outlier_threshold
        Threshold of the normalised median test (Westerweel & Scarano 2005, with a 0.1 px noise
        floor) against the kept tiles among the 8 neighbours, applied to the residuals from a
        robust affine fit of all kept tiles; kept tiles above it are rejected.

    Returns
    -------
    ShiftField
        Tiles not kept are filled with the robust affine trend of the kept tiles plus their
        residuals interpolated by inverse-distance weighting (power 2); if no tile is kept the
        field is zero everywhere (check :attr:`ShiftField.overall_confidence`).
    """
    gref, gmov, weight = _prepare(reference, moving, reference_valid, moving_valid)
    h, w = gref.shape
    th, tw = min(int(tile), h), min(int(tile), w)
    step = int(step) if step is not None else max(int(tile) // 2, 1)
    rs, cs = _tile_starts(h, th, step), _tile_starts(w, tw, step)
    ny, nx = len(rs), len(cs)
    mdx = np.full((ny, nx), np.nan)
    mdy = np.full((ny, nx), np.nan)
    conf = np.zeros((ny, nx))
    err = np.full((ny, nx), np.nan)
    for i, r0 in enumerate(rs):
        for j, c0 in enumerate(cs):
            sl = (slice(r0, r0 + th), slice(c0, c0 + tw))
            if np.mean(weight[sl] > 0.5) < min_valid_fraction:
                continue
            s = _register(gref[sl], gmov[sl], weight[sl], int(upsample))
            if np.isnan(s.error):
                continue
            mdx[i, j], mdy[i, j], conf[i, j], err[i, j] = s.dx, s.dy, s.confidence, s.error

    kept = np.isfinite(mdx) & (conf >= min_confidence)
    rows = rs + (th - 1) / 2.0
    cols = cs + (tw - 1) / 2.0
    kept &= ~_median_outliers(mdx, mdy, kept, rows, cols, outlier_threshold)
    dx, dy = _fill(mdx, mdy, kept, rows, cols)
    return ShiftField(
        shape=(h, w),
        rows=rows,
        cols=cols,
        dx=dx,
        dy=dy,
        confidence=conf,
        error=err,
        measured_dx=mdx,
        measured_dy=mdy,
        kept=kept,
        tile_shape=(th, tw),
        step=step,
        min_confidence=float(min_confidence),
    )


def _affine_trend(dx, dy, use, rows, cols):
    """Robust affine fit of the tile shifts: ``(trend_dx, trend_dy)`` on the tile grid.

    Least squares on the tiles in ``use``, then once more without the tiles whose residual
    exceeds ``max(3 * 1.4826 * MAD, 0.5 px)``. Fewer than 3 usable tiles: the median shift.
    """
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    design = np.stack([np.ones(rr.size), rr.ravel(), cc.ravel()], axis=1)
    trends = []
    for g in (dx, dy):
        sel = use.ravel().copy()
        if sel.sum() < 3 or np.linalg.matrix_rank(design[sel]) < 3:
            trends.append(np.full(g.shape, np.median(g[use]) if use.any() else 0.0))
            continue
        for _ in range(2):
            coef = np.linalg.lstsq(design[sel], g.ravel()[sel], rcond=None)[0]
            res = np.abs(g.ravel() - design @ coef)
            mad = np.median(res[sel])
            new = use.ravel() & (res <= max(3 * 1.4826 * mad, 0.5))
            if new.sum() < 3 or np.linalg.matrix_rank(design[new]) < 3:
                break
            sel = new
        trends.append((design @ coef).reshape(g.shape))
    return trends[0], trends[1]


def _median_outliers(dx, dy, kept, rows, cols, threshold, eps=0.1) -> np.ndarray:
    """Normalised median test (Westerweel & Scarano 2005) over the 8-neighbourhood of kept tiles.

    Applied to the residuals from a robust affine trend, so a rotation, scale or ramp (whose
    edge tiles differ from all their neighbours in the same direction) is not taken for outliers.
    ``eps`` (pixels) is the noise floor of the test.
    """
    tdx, tdy = _affine_trend(dx, dy, kept, rows, cols)
    rx, ry = dx - tdx, dy - tdy
    ny, nx = dx.shape
    out = np.zeros_like(kept)
    for i, j in zip(*np.nonzero(kept), strict=True):
        i0, i1, j0, j1 = max(i - 1, 0), min(i + 2, ny), max(j - 1, 0), min(j + 2, nx)
        nb = kept[i0:i1, j0:j1].copy()
        nb[i - i0, j - j0] = False
        if nb.sum() < 3:
            continue
        r2 = 0.0
        for g in (rx, ry):
            v = g[i0:i1, j0:j1][nb]
            med = np.median(v)
            r2 += ((g[i, j] - med) / (np.median(np.abs(v - med)) + eps)) ** 2
        out[i, j] = np.sqrt(r2) > threshold
    return out


def _fill(dx, dy, kept, rows, cols):
    """Replace tiles not kept: robust affine trend of the kept tiles plus their residuals
    interpolated by inverse-distance-squared weighting (Shepard 1968)."""
    if kept.all():
        return dx.copy(), dy.copy()
    if not kept.any():
        return np.zeros_like(dx), np.zeros_like(dy)
    trends = _affine_trend(dx, dy, kept, rows, cols)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    bad = ~kept
    d2 = (rr[bad][:, None] - rr[kept][None, :]) ** 2 + (cc[bad][:, None] - cc[kept][None, :]) ** 2
    wts = 1.0 / d2  # distinct tile centres, so d2 > 0
    wts /= wts.sum(axis=1, keepdims=True)
    out = []
    for g, t in zip((dx, dy), trends, strict=True):
        f = g.copy()
        f[bad] = t[bad] + wts @ (g - t)[kept]
        out.append(f)
    return out[0], out[1]


def apply_shift(
    image,
    shift: Shift | ShiftField,
    *,
    order: int = 1,
    cval: float = np.nan,
    field_method: str = "bilinear",
) -> np.ndarray:
    """Resample ``image`` (the moving image, or a band/mask on its grid) onto the reference.

    Output pixel ``(r, c)`` is ``image`` sampled at ``(r + dy, c + dx)``, which undoes the shift
    (``scipy.ndimage.map_coordinates``).

    Parameters
    ----------
    image
        2-D array on the common grid.
    shift
        A :class:`Shift` (one translation) or a :class:`ShiftField` (per-pixel, see
        :meth:`ShiftField.dense`).
    order
        Spline order: 1 (bilinear) for reflectance, 0 (nearest) for masks and labels.
    cval
        Value for output pixels whose source lies outside the image's pixel-centre extent
        (row outside ``[0, height - 1]`` or column outside ``[0, width - 1]``). NaN needs a
        float output, so with the default the result is float; an order-0 resampling with a
        finite ``cval`` keeps the input dtype (for masks and labels).
    field_method
        ``"bilinear"`` or ``"affine"``, for a :class:`ShiftField` only.

    Returns
    -------
    The aligned image, same shape as the input.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    h, w = img.shape
    if isinstance(shift, ShiftField):
        if shift.shape != (h, w):
            raise ValueError(f"shift field is for shape {shift.shape}, image is {(h, w)}")
        dy, dx = shift.dense(method=field_method)
        coords = np.empty((2, h, w))
        coords[0] = dy + np.arange(h)[:, None]
        coords[1] = dx + np.arange(w)[None, :]
    else:
        rows = np.arange(h) + float(shift.dy)
        cols = np.arange(w) + float(shift.dx)
        coords = np.empty((2, h, w))
        coords[0] = rows[:, None]
        coords[1] = cols[None, :]

    keep_dtype = order == 0 and np.isfinite(cval) and not np.issubdtype(img.dtype, np.floating)
    src = img if img.dtype.kind == "f" else img.astype(np.float64)
    out = ndimage.map_coordinates(src, coords, order=order, mode="constant", cval=cval)
    return out.astype(img.dtype) if keep_dtype else out


def coregister(
    reference,
    moving,
    *,
    min_confidence: float = 0.3,
    local: bool = False,
    reference_valid=None,
    moving_valid=None,
    upsample: int = 100,
    tile: int = 256,
    step: int | None = None,
    order: int = 1,
    cval: float = np.nan,
    field_method: str = "bilinear",
) -> tuple[np.ndarray, Shift | ShiftField]:
    """Estimate the misregistration of ``moving`` and undo it, if it can be trusted.

    Parameters
    ----------
    reference, moving, reference_valid, moving_valid, upsample
        As for :func:`estimate_shift`.
    min_confidence
        Apply the estimate only if its confidence (for ``local=True``:
        :attr:`ShiftField.overall_confidence`) is at least this. Otherwise ``moving`` is returned
        unchanged (a copy) and a :class:`CoregistrationWarning` says the shift and its
        confidence.
    local
        False: one translation (:func:`estimate_shift`). True: a tile field
        (:func:`estimate_shift_field` with ``tile``, ``step``, ``min_confidence``), applied with
        ``field_method``.
    order, cval
        Resampling, as for :func:`apply_shift`.

    Returns
    -------
    ``(aligned, estimate)``: the resampled moving image (see :func:`apply_shift` for its dtype;
    ``cval`` where its source was outside the image), or a copy of ``moving`` if the estimate was
    not trusted, and the :class:`Shift` or :class:`ShiftField` that was estimated, applied
    or not.
    """
    moving_arr = np.asarray(moving)
    if local:
        est = estimate_shift_field(
            reference,
            moving_arr,
            tile=tile,
            step=step,
            min_confidence=min_confidence,
            reference_valid=reference_valid,
            moving_valid=moving_valid,
            upsample=upsample,
        )
        conf = est.overall_confidence
        k = est.kept
        what = (
            f"shift field of {k.sum()}/{k.size} confident tiles, median dx="
            f"{np.median(est.dx):.2f} px, dy={np.median(est.dy):.2f} px"
        )
    else:
        est = estimate_shift(
            reference,
            moving_arr,
            reference_valid=reference_valid,
            moving_valid=moving_valid,
            upsample=upsample,
        )
        conf = est.confidence
        what = f"shift dx={est.dx:.2f} px, dy={est.dy:.2f} px"
    if conf < min_confidence:
        warnings.warn(
            f"co-registration not applied: {what} has confidence {conf:.2f} < "
            f"{min_confidence:.2f}; the images may be unrelated, too cloudy or too featureless",
            CoregistrationWarning,
            stacklevel=2,
        )
        return moving_arr.copy(), est
    return apply_shift(moving_arr, est, order=order, cval=cval, field_method=field_method), est
