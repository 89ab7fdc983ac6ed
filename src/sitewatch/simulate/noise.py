"""Seeded random fields: independent random streams and spatially correlated noise.

Natural surfaces and clouds have roughly power-law spectra, so texture is made by spectral
synthesis: white Gaussian noise filtered in the Fourier domain by an amplitude
``|k| ** (-beta / 2)``, restricted to a band of physical scales (Voss, "Fractals in nature",
in *The Science of Fractal Images*, Springer 1988, ch. 1). Scales are given in metres, so
the same call gives the same kind of texture on a 10 m and on a 0.5 m grid.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy import ndimage


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """An independent generator for one named part of the simulation.

    Each part (terrain, layout, acquisitions, ...) draws from its own stream, so changing
    how much one part draws (e.g. the number of dates) leaves the others unchanged.
    """
    return np.random.default_rng([seed, zlib.crc32(stream.encode())])


def fractal_noise(
    shape: tuple[int, int],
    pixel_m: float,
    rng: np.random.Generator,
    *,
    beta: float = 2.0,
    min_scale_m: float = 0.0,
    max_scale_m: float = np.inf,
) -> np.ndarray:
    """Zero-mean, unit-variance power-law noise.

    Parameters
    ----------
    shape
        (rows, cols) of the output.
    pixel_m
        Pixel size in metres.
    rng
        Random generator.
    beta
        Spectral exponent: the power spectrum falls as ``|k| ** -beta`` (2 to 3 for terrain,
        higher for smooth fields such as clouds).
    min_scale_m, max_scale_m
        Wavelengths (metres) outside this band are removed.

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape``.
    """
    white = rng.standard_normal(shape, dtype=np.float32)
    ky = np.fft.fftfreq(shape[0], d=pixel_m)[:, None]
    kx = np.fft.rfftfreq(shape[1], d=pixel_m)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = np.inf
    with np.errstate(divide="ignore"):
        wavelength = 1.0 / k
    amplitude = np.where(
        (wavelength >= min_scale_m) & (wavelength <= max_scale_m), k ** (-beta / 2.0), 0.0
    )
    field = np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=shape).astype(np.float32)
    std = field.std()
    return (field - field.mean()) / std if std > 0 else field


def sample(
    field: np.ndarray,
    field_px_m: float,
    shape: tuple[int, int],
    pixel_m: float,
    offset_m: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Bilinearly sample a coarse field at the pixel centres of a finer grid.

    Both grids share their upper-left corner; ``offset_m`` = (east, south) displaces the
    sampling points, in metres, e.g. to read a cloud field where a cloud's shadow falls.
    Points outside the coarse field take the nearest edge value.
    """
    scale = pixel_m / field_px_m
    offset = [(0.5 * pixel_m + off) / field_px_m - 0.5 for off in (offset_m[1], offset_m[0])]
    return ndimage.affine_transform(
        field, [scale, scale], offset=offset, output_shape=shape, order=1, mode="nearest"
    )
