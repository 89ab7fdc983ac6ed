"""Surface and cloud reflectance spectra, and how much light a shadow removes.

Spectra are top-of-canopy/top-of-surface reflectance factors (0..1) sampled at the
Sentinel-2 MSI band centres (ESA, *Sentinel-2 User Handbook*, 2015, table 1). They are
rounded, plausible values shaped after the ASTER/ECOSTRESS spectral library (Meerdink et al.,
*Remote Sens. Environ.* 230, 2019): desert sand and gravel rise from blue to SWIR; green
vegetation has the red-edge step (low red, high NIR, so NDVI ~0.8); water is dark beyond
the green; concrete is flat and bright; burnt debris is dark everywhere. At 1.375 um (B10)
water vapour absorbs nearly all light from the surface, so surfaces are near zero there and
only high clouds are bright, which is what makes B10 a cirrus band. Other sensors' bands
are linearly interpolated in wavelength.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Wavelengths (micrometres) at which the library is tabulated: the S2 MSI band centres.
LIBRARY_WAVELENGTHS_UM = np.array(
    [0.443, 0.490, 0.560, 0.665, 0.705, 0.740, 0.783, 0.842, 0.865, 0.945, 1.375, 1.610, 2.190]
)

#: Reflectance (0..1) per material at ``LIBRARY_WAVELENGTHS_UM``.
LIBRARY: dict[str, tuple[float, ...]] = {
    "sand": (0.14, 0.17, 0.23, 0.30, 0.33, 0.35, 0.36, 0.38, 0.39, 0.37, 0.010, 0.45, 0.41),
    "gravel": (0.09, 0.11, 0.15, 0.20, 0.22, 0.23, 0.24, 0.25, 0.26, 0.25, 0.007, 0.31, 0.29),
    "scraped": (0.20, 0.24, 0.31, 0.39, 0.42, 0.44, 0.45, 0.47, 0.48, 0.46, 0.012, 0.53, 0.48),
    "field_soil": (0.08, 0.10, 0.13, 0.17, 0.19, 0.20, 0.21, 0.23, 0.24, 0.23, 0.006, 0.30, 0.26),
    "vegetation": (0.03, 0.04, 0.08, 0.04, 0.11, 0.30, 0.38, 0.42, 0.43, 0.40, 0.004, 0.21, 0.10),
    "water": (0.07, 0.08, 0.09, 0.05, 0.04, 0.03, 0.02, 0.015, 0.012, 0.006, 0.001, 0.004, 0.003),
    "concrete": (0.22, 0.26, 0.29, 0.31, 0.32, 0.32, 0.32, 0.33, 0.33, 0.32, 0.010, 0.38, 0.34),
    "metal_roof": (0.33, 0.35, 0.36, 0.37, 0.37, 0.37, 0.37, 0.37, 0.37, 0.36, 0.010, 0.33, 0.29),
    "asphalt": (0.06, 0.07, 0.08, 0.09, 0.10, 0.10, 0.11, 0.11, 0.12, 0.12, 0.004, 0.14, 0.13),
    "urban_ground": (0.11, 0.13, 0.16, 0.20, 0.22, 0.23, 0.23, 0.24, 0.25, 0.24, 0.007, 0.30, 0.28),
    "rubble": (0.15, 0.17, 0.19, 0.21, 0.22, 0.22, 0.23, 0.24, 0.24, 0.24, 0.008, 0.28, 0.26),
    "char": (0.04, 0.045, 0.05, 0.055, 0.06, 0.065, 0.07, 0.075, 0.078, 0.08, 0.003, 0.10, 0.09),
    "scar": (0.09, 0.11, 0.14, 0.18, 0.20, 0.21, 0.22, 0.23, 0.24, 0.23, 0.006, 0.29, 0.27),
    "crater": (0.05, 0.06, 0.07, 0.09, 0.10, 0.11, 0.11, 0.12, 0.12, 0.12, 0.004, 0.15, 0.14),
    "cloud": (0.55, 0.56, 0.57, 0.58, 0.58, 0.58, 0.58, 0.58, 0.58, 0.52, 0.30, 0.42, 0.26),
}

#: Relative amplitude of the fine texture laid on each material (rough rubble, smooth roofs).
TEXTURE: dict[str, float] = {
    "scraped": 0.03,
    "concrete": 0.02,
    "metal_roof": 0.02,
    "asphalt": 0.04,
    "rubble": 0.25,
    "char": 0.30,
    "scar": 0.12,
    "crater": 0.20,
    "urban_ground": 0.10,
}


def spectra(wavelengths_um: Sequence[float]) -> dict[str, np.ndarray]:
    """Reflectance of every library material at the given band centres.

    Returns
    -------
    dict
        Material name to a float32 array with one reflectance per band.
    """
    wl = np.asarray(wavelengths_um, dtype=float)
    return {
        name: np.interp(wl, LIBRARY_WAVELENGTHS_UM, values).astype(np.float32)
        for name, values in LIBRARY.items()
    }


def shadow_depth(wavelengths_um: Sequence[float]) -> np.ndarray:
    """Fraction of surface reflectance removed in a full shadow, per band (float32).

    A shadow removes the direct sunbeam and keeps the diffuse skylight. Skylight is mostly
    Rayleigh scattering, whose share grows as ``wavelength ** -4``, so shadows are less deep
    in the blue (about 0.58) than in the NIR (about 0.74).
    """
    wl = np.asarray(wavelengths_um, dtype=float)
    return (0.75 - 0.25 * (0.443 / wl) ** 4).astype(np.float32)
