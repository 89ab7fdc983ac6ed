"""From ground reflectance to the sensor's digital numbers on one date.

The chain, in order:

1. misregistration: the ground image is shifted by ``shift_px`` (Fourier shift), so a
   ground feature appears at its pixel position plus the shift;
2. cloud shadows darken the ground (direct beam removed, skylight kept);
3. atmosphere: a path reflectance (haze) falling as ``wavelength ** -2`` and varying
   smoothly across the scene, the matching loss of surface contrast, and a per-band gain;
4. clouds are blended over the result with their opacity;
5. bands coarser than the grid are block-averaged to their native resolution (a box
   point-spread function), then sensor noise is added per band at that resolution;
6. values are quantised to reflectance x 10000 in uint16, 0 reserved for nodata, and pixels
   beyond the swath edge are set to nodata.

Cloud truth (0 clear, 1 cloud, 2 cloud shadow) marks pixels where the cloud or shadow
opacity is at least :data:`TRUTH_OPACITY`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft

from .acquisition import SimulatedAcquisition
from .clouds import cloud_layers
from .grid import SceneGrid
from .instruments import Sensor
from .noise import fractal_noise, rng_for, sample

#: Opacity from which a pixel counts as cloud (or cloud shadow) in the truth.
TRUTH_OPACITY = 0.25

#: Reflectance scale of the digital numbers.
SCALE = 10000.0

#: Pixel size (metres) of the grid the haze field is made on.
HAZE_FIELD_PX_M = 200.0

CLEAR, CLOUD, SHADOW = 0, 1, 2


@dataclass(frozen=True)
class RenderedObservation:
    """One simulated scene.

    Attributes
    ----------
    bands
        Band name to uint16 array at the band's native resolution (0 = nodata).
    cloud_truth
        uint8 array on the grid: 0 clear, 1 cloud, 2 cloud shadow.
    cloud_fraction, nodata_fraction
        Fraction (0..1) of imaged pixels that are cloud, and of all pixels that are nodata.
    """

    bands: dict[str, np.ndarray]
    cloud_truth: np.ndarray
    cloud_fraction: float
    nodata_fraction: float


def _haze_pattern(grid: SceneGrid, rng: np.random.Generator) -> np.ndarray:
    """Smooth field of mean 1 (0.6..1.4) modulating the haze across the scene."""
    rows, cols = grid.shape
    coarse = (
        max(2, int(np.ceil(rows * grid.pixel_m / HAZE_FIELD_PX_M)) + 1),
        max(2, int(np.ceil(cols * grid.pixel_m / HAZE_FIELD_PX_M)) + 1),
    )
    field = fractal_noise(coarse, HAZE_FIELD_PX_M, rng, beta=3.0)
    pattern = 1.0 + 0.4 * np.tanh(field)
    return sample(pattern.astype(np.float32), HAZE_FIELD_PX_M, grid.shape, grid.pixel_m)


def shift_image(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Shift the last two axes of ``image`` by (dx, dy) pixels, x right and y down.

    ``out[..., r, c] = image[..., r - dy, c - dx]`` for a band-limited image, by the Fourier
    shift theorem (a shift multiplies the spectrum by ``exp(-2 pi i (ky dy + kx dx))``), so
    the shift a phase correlation measures is exactly the one applied. The image is padded
    by reflection first, so content leaving one edge does not wrap round to the other.
    """
    if dx == 0 and dy == 0:
        return image.copy()
    rows, cols = image.shape[-2:]
    pad = int(np.ceil(max(abs(dx), abs(dy)))) + 8
    shape = (
        fft.next_fast_len(rows + 2 * pad, real=True),
        fft.next_fast_len(cols + 2 * pad, real=True),
    )
    widths = [(0, 0)] * (image.ndim - 2) + [
        (pad, shape[0] - rows - pad),
        (pad, shape[1] - cols - pad),
    ]
    spectrum = fft.rfft2(np.pad(image, widths, mode="reflect"), workers=-1)
    ramp_y = np.exp(-2j * np.pi * dy * fft.fftfreq(shape[0])).astype(spectrum.dtype)
    ramp_x = np.exp(-2j * np.pi * dx * fft.rfftfreq(shape[1])).astype(spectrum.dtype)
    spectrum *= ramp_y[:, None]
    spectrum *= ramp_x[None, :]
    shifted = fft.irfft2(spectrum, s=shape, workers=-1)
    return shifted[..., pad : pad + rows, pad : pad + cols].astype(image.dtype)


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks of the last two axes."""
    if factor == 1:
        return image
    *lead, rows, cols = image.shape
    blocks = image.reshape(*lead, rows // factor, factor, cols // factor, factor)
    return blocks.mean(axis=(-3, -1))


def observe(
    ground: np.ndarray,
    acquisition: SimulatedAcquisition,
    sensor: Sensor,
    grid: SceneGrid,
    spectra: dict[str, np.ndarray],
    depth: np.ndarray,
    seed: int,
) -> RenderedObservation:
    """Simulate what the sensor records of ``ground`` on one date.

    Parameters
    ----------
    ground
        Surface reflectance, float32 (bands, rows, cols) on ``grid``.
    acquisition
        The date's conditions.
    sensor
        The sensor (bands, resolutions, noise).
    grid
        Simulation grid (the sensor's finest resolution).
    spectra
        Material reflectances at the sensor's bands (for the cloud spectrum).
    depth
        Per-band shadow depth.
    seed
        Seed of the simulation.
    """
    rng = rng_for(seed, f"observe-{acquisition.index}")
    dx, dy = acquisition.shift_px
    image = shift_image(ground, dx, dy)

    truth = np.zeros(grid.shape, dtype=np.uint8)
    cloud = None
    if acquisition.cloud is not None:
        cloud, shadow = cloud_layers(
            acquisition.cloud, acquisition.sun_azimuth_deg, acquisition.sun_elevation_deg, grid, rng
        )
        image *= 1.0 - depth[:, None, None] * shadow[None]
        truth[shadow >= TRUTH_OPACITY] = SHADOW
        truth[cloud >= TRUTH_OPACITY] = CLOUD

    pattern = _haze_pattern(grid, rng)
    clear = None if cloud is None else 1.0 - cloud
    for i, band in enumerate(sensor.bands):
        haze = np.float32(acquisition.haze * (0.49 / band.wavelength_um) ** 2) * pattern
        layer = image[i]
        layer *= 1.0 - haze
        layer += haze
        if cloud is not None:
            layer *= clear
            layer += np.float32(spectra["cloud"][i]) * cloud
        layer *= np.float32(acquisition.gains[i])

    valid = (
        acquisition.swath_edge.valid_mask(grid)
        if acquisition.swath_edge is not None
        else np.ones(grid.shape, dtype=bool)
    )
    bands = {}
    for resolution in sensor.resolutions_m:
        factor = round(resolution / grid.pixel_m)
        index = [i for i, b in enumerate(sensor.bands) if b.resolution_m == resolution]
        coarse = _block_mean(image[index], factor)
        coarse += sensor.noise_sigma * rng.standard_normal(coarse.shape, dtype=np.float32)
        coarse *= SCALE
        np.rint(coarse, out=coarse)
        np.clip(coarse, 1, np.iinfo(np.uint16).max, out=coarse)
        digital = coarse.astype(np.uint16)
        imaged = _block_mean(valid.astype(np.float32), factor) == 1.0
        digital[:, ~imaged] = 0
        bands.update({sensor.bands[i].name: digital[j] for j, i in enumerate(index)})

    truth[~valid] = CLEAR
    n_valid = int(valid.sum())
    return RenderedObservation(
        bands=bands,
        cloud_truth=truth,
        cloud_fraction=float((truth == CLOUD).sum() / n_valid) if n_valid else 0.0,
        nodata_fraction=1.0 - n_valid / valid.size,
    )
