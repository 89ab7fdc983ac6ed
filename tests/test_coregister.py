"""Tests for sitewatch.stack.coregister: sub-pixel shifts on synthetic textured scenes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sitewatch.stack.coregister import (
    CoregistrationWarning,
    Shift,
    ShiftField,
    apply_shift,
    coregister,
    estimate_shift,
    estimate_shift_field,
)

N = 320  # scene side, pixels
PAD = 48  # margin cut off after shifting, so no wrapped-around content enters the crop


def _scene(n: int, rng: np.random.Generator) -> np.ndarray:
    """Multi-scale smoothed noise with rectangles (fields, buildings) and straight roads."""
    img = np.zeros((n, n))
    for sigma, amp in ((1.5, 0.3), (4, 0.5), (12, 0.8), (40, 1.0)):
        img += (
            amp * sigma * ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma, mode="wrap")
        )
    img /= img.std()
    for _ in range(n // 12):
        r, c = rng.integers(0, n - 30, 2)
        h, w = rng.integers(4, 30, 2)
        img[r : r + h, c : c + w] += rng.uniform(-2, 2)
    for _ in range(6):
        k = rng.integers(0, n - 3)
        if rng.random() < 0.5:
            img[k : k + 3, :] += 1.5
        else:
            img[:, k : k + 3] += 1.5
    return ndimage.gaussian_filter(img, 0.7, mode="wrap")


def _fourier_shift(img: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Content at (r, c) moves to (r + dy, c + dx)."""
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(img), (dy, dx))).real


def _pair(dx: float, dy: float, *, seed: int = 0, noise: float = 0.05, n: int = N):
    """Reference and moving crops; moving is shifted by (dy, dx), has gain 0.7, offset 0.3."""
    rng = np.random.default_rng(seed)
    big = _scene(n + 2 * PAD, rng)
    crop = (slice(PAD, PAD + n), slice(PAD, PAD + n))
    ref = big[crop] + noise * rng.standard_normal((n, n))
    mov = 0.7 * _fourier_shift(big, dy, dx)[crop] + 0.3 + 0.7 * noise * rng.standard_normal((n, n))
    return ref, mov


SHIFTS = [(0.3, 0.0), (0.0, 1.7), (4.2, 0.0), (0.0, -4.2), (0.3, -1.7), (4.2, 0.3), (-1.7, 4.2)]


@pytest.mark.parametrize(("seed", "dx", "dy"), [(i, *d) for i, d in enumerate(SHIFTS)])
def test_known_subpixel_shift_is_recovered(seed, dx, dy):
    ref, mov = _pair(dx, dy, seed=seed)
    s = estimate_shift(ref, mov)
    assert isinstance(s, Shift)
    assert abs(s.dx - dx) < 0.1 and abs(s.dy - dy) < 0.1, s
    assert s.confidence > 0.8
    assert 0.0 <= s.error < 0.5


def test_shift_recovered_with_cloud_masked():
    dx, dy = -1.7, 4.2
    ref, mov = _pair(dx, dy, seed=7)
    yy, xx = np.mgrid[:N, :N]
    cloud = (yy - 120) ** 2 + (xx - 170) ** 2 < 75**2  # ~17 % of the image
    mov[cloud] = 6.0  # bright, flat cloud
    s = estimate_shift(ref, mov, moving_valid=~cloud)
    assert abs(s.dx - dx) < 0.15 and abs(s.dy - dy) < 0.15, s
    assert s.confidence > 0.8
    # the mask matters: ignoring it, the cloud edge competes with the scene
    unmasked = estimate_shift(ref, mov)
    assert s.confidence > unmasked.confidence + 0.1 and s.error < unmasked.error
    # NaN (nodata) is treated as invalid without a mask
    mov_nan = mov.copy()
    mov_nan[cloud] = np.nan
    s_nan = estimate_shift(ref, mov_nan)
    assert abs(s_nan.dx - dx) < 0.15 and abs(s_nan.dy - dy) < 0.15, s_nan


def test_sign_convention_with_a_bright_dot():
    rng = np.random.default_rng(3)
    big = 0.2 * _scene(N + 2 * PAD, rng)
    yy, xx = np.mgrid[: N + 2 * PAD, : N + 2 * PAD]
    big += 40.0 * np.exp(-((yy - 150 - PAD) ** 2 + (xx - 110 - PAD) ** 2) / 2.0)  # a bright dot
    dy, dx = 3, -5  # whole pixels, so the dot stays a clean maximum
    crop = (slice(PAD, PAD + N), slice(PAD, PAD + N))
    ref = big[crop]
    mov = _fourier_shift(big, dy, dx)[crop]
    assert np.unravel_index(np.argmax(ref), ref.shape) == (150, 110)
    assert np.unravel_index(np.argmax(mov), mov.shape) == (150 + dy, 110 + dx)
    s = estimate_shift(ref, mov)
    assert abs(s.dy - dy) < 0.05 and abs(s.dx - dx) < 0.05, s
    aligned = apply_shift(mov, s)
    assert np.unravel_index(np.nanargmax(aligned), aligned.shape) == (150, 110)


def test_apply_then_reestimate_gives_zero():
    ref, mov = _pair(4.2, 0.3, seed=11)
    s = estimate_shift(ref, mov)
    aligned = apply_shift(mov, s)
    # the source of the last 5 columns and the last row lies outside the image
    assert np.isnan(aligned[:, -5:]).all() and np.isnan(aligned[-1]).all()
    assert np.isfinite(aligned[:-1, :-5]).all()
    again = estimate_shift(ref, aligned)  # NaN border counts as invalid
    assert abs(again.dx) < 0.05 and abs(again.dy) < 0.05, again
    assert again.confidence > 0.8


def test_apply_shift_order0_keeps_mask_dtype():
    mask = np.zeros((40, 40), dtype=bool)
    mask[10:20, 10:20] = True
    out = apply_shift(mask, Shift(dx=2.0, dy=-3.0, confidence=1.0, error=0.0), order=0, cval=0)
    assert out.dtype == bool
    assert out[13:23, 8:18].all() and out.sum() == 100


def test_unrelated_images_have_low_confidence_and_are_not_applied():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((256, 256))
    b = rng.standard_normal((256, 256))
    assert estimate_shift(a, b).confidence < 0.3
    s1, s2 = _scene(256, rng), _scene(256, rng)  # two unrelated textured scenes
    assert estimate_shift(s1, s2).confidence < 0.3
    with pytest.warns(CoregistrationWarning, match="confidence"):
        out, est = coregister(a, b)
    assert isinstance(est, Shift) and est.confidence < 0.3
    assert np.array_equal(out, b) and out is not b
    with pytest.warns(CoregistrationWarning):
        out_local, field = coregister(s1, s2, local=True, tile=128)
    assert isinstance(field, ShiftField) and np.array_equal(out_local, s2)


def test_coregister_applies_a_confident_shift():
    ref, mov = _pair(0.3, -1.7, seed=2)
    out, est = coregister(ref, mov)
    assert est.confidence > 0.8
    inner = (slice(8, -8), slice(8, -8))
    before = 1 - np.corrcoef(ref[inner].ravel(), mov[inner].ravel())[0, 1]
    after = 1 - np.corrcoef(ref[inner].ravel(), out[inner].ravel())[0, 1]
    assert after < 0.2 * before


def _warped_pair(kind: str, n: int = 384, seed: int = 4):
    """Moving image with a smooth, spatially varying shift; returns ref, mov, true shift (r, c)."""
    rng = np.random.default_rng(seed)
    big = _scene(n + 2 * PAD, rng)
    if kind == "ramp":  # dx grows linearly from 0 to 2 px across the image

        def true_shift(r, c):
            return np.zeros_like(c, dtype=float), 2.0 * np.asarray(c, float) / (n - 1)

        yy, xx = np.mgrid[:n, :n].astype(float)
        src_r, src_c = yy, xx / (1 + 2.0 / (n - 1))  # moving (r, c) came from reference here
    else:  # rotation by 0.3 degrees about the image centre
        th = np.deg2rad(0.3)
        c0 = (n - 1) / 2

        def true_shift(r, c):
            r, c = np.asarray(r, float) - c0, np.asarray(c, float) - c0
            return (np.sin(th) * c + np.cos(th) * r) - r, (np.cos(th) * c - np.sin(th) * r) - c

        yy, xx = np.mgrid[:n, :n].astype(float) - c0
        src_r = np.cos(th) * yy - np.sin(th) * xx + c0  # inverse rotation
        src_c = np.sin(th) * yy + np.cos(th) * xx + c0
    ref = big[PAD : PAD + n, PAD : PAD + n] + 0.05 * rng.standard_normal((n, n))
    mov = ndimage.map_coordinates(big, [src_r + PAD, src_c + PAD], order=3)
    mov = mov + 0.05 * rng.standard_normal((n, n))
    return ref, mov, true_shift


@pytest.mark.parametrize("kind", ["ramp", "rotation"])
def test_shift_field_recovers_varying_shift(kind):
    ref, mov, true_shift = _warped_pair(kind)
    field = estimate_shift_field(ref, mov, tile=128, step=64)
    assert field.dx.shape == (len(field.rows), len(field.cols)) == (5, 5)
    assert field.kept.all() and field.overall_confidence > 0.8
    rr, cc = np.meshgrid(field.rows, field.cols, indexing="ij")
    tdy, tdx = true_shift(rr, cc)
    assert np.abs(field.dx - tdx).max() < 0.2 and np.abs(field.dy - tdy).max() < 0.2
    assert np.ptp(tdx) > 1.0  # the test has a real gradient to find
    # dense field: equal to the tiles at their centres, and right at a pixel between them
    ddy, ddx = field.dense()
    assert ddx.shape == ref.shape
    assert ddx[int(rr[2, 2]), int(cc[2, 2])] == pytest.approx(field.dx[2, 2], abs=0.05)
    pdy, pdx = true_shift(300, 40)
    assert abs(ddx[300, 40] - pdx) < 0.2 and abs(ddy[300, 40] - pdy) < 0.2

    inner = (slice(16, -16), slice(16, -16))

    def residual(img):
        return np.sqrt(np.nanmean((img[inner] - ref[inner]) ** 2))

    global_shift = estimate_shift(ref, mov)
    res_global = residual(apply_shift(mov, global_shift))
    res_field = residual(apply_shift(mov, field))
    res_affine = residual(apply_shift(mov, field, field_method="affine"))
    assert res_field < 0.7 * res_global
    assert res_affine < 0.7 * res_global
    # after applying the field, what is left is a fraction of the original shift
    again = estimate_shift_field(ref, apply_shift(mov, field), tile=128, step=128)
    assert np.abs(again.dx).max() < 0.1 and np.abs(again.dy).max() < 0.1


def test_shift_field_fills_masked_tiles():
    ref, mov, true_shift = _warped_pair("ramp", seed=8)
    invalid = np.zeros(ref.shape, dtype=bool)
    invalid[:160, 224:] = True  # a cloud covering the top-right tiles
    mov[invalid] = np.nan
    field = estimate_shift_field(ref, mov, tile=128, step=64)
    assert not field.kept[0, -1] and np.isnan(field.measured_dx[0, -1])
    assert field.kept[-1, 0]
    assert np.isfinite(field.dx).all()
    rr, cc = np.meshgrid(field.rows, field.cols, indexing="ij")
    _, tdx = true_shift(rr, cc)
    # filled from the confident neighbours: right to within their spread
    assert abs(field.dx[0, -1] - tdx[0, -1]) < 0.5
    assert np.abs(field.dx - tdx)[field.kept].max() < 0.2
