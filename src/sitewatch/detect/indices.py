"""Spectral indices that say what kind of change happened, from whichever bands an image has.

Bands are found by name (:func:`band_roles`): Sentinel-2 (``B02`` blue ... ``B12``), Landsat 4-7
TM/ETM+ (``B1`` blue, ``B2`` green, ``B3`` red, ``B4`` NIR, ``B5`` SWIR 1.6 um, ``B7`` SWIR
2.2 um) or common names (``blue``, ``green``, ``red``, ``nir``, ``swir16``, ``swir22``). Inputs
are reflectance 0..1; every index is unitless. A missing band gives the fallback named below.

- NDVI, normalised difference vegetation index (Rouse et al. 1974; Tucker 1979): ``(NIR - red) /
  (NIR + red)``. Without NIR (RGB imagery) the green-red vegetation index GRVI, ``(green - red) /
  (green + red)`` (Tucker 1979; Motohka et al. 2010, Remote Sensing 2(10):2369-2387) stands in.
- Built-up / bare-soil index: NDBI ``(SWIR1 - NIR) / (SWIR1 + NIR)`` (Zha, Gao & Ni 2003, IJRS
  24(3):583-594) when a 1.6 um SWIR band is present; otherwise a visible-brightness contrast,
  ``(VIS - NIR) / (VIS + NIR)`` with ``VIS`` the mean visible reflectance (the SWIR-free form of
  the bare-soil index of Rikimaru et al. 2002), and for RGB alone the negated GRVI (non-vegetated,
  bright-neutral ground scores high).
- Brightness: mean reflectance of the visible bands (all bands when none is named), a proxy of
  albedo: new roofs, concrete and cleared soil raise it; burn scars, debris, water and shadow
  lower it.

:func:`chroma_change` measures colour change apart from brightness: the distance between the two
dates in the CIELAB a*b* plane (CIE 1976), for imagery whose only bands are visible ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import skimage.color

#: Band names of each role, first match wins (Sentinel-2, Landsat 4-7, common names).
ROLES: dict[str, tuple[str, ...]] = {
    "blue": ("B02", "B1", "blue"),
    "green": ("B03", "B2", "green"),
    "red": ("B04", "B3", "red"),
    "nir": ("B08", "B8A", "B4", "nir", "nir08"),
    "swir1": ("B11", "B5", "swir16", "swir1"),
    "swir2": ("B12", "B7", "swir22", "swir2"),
}

#: Names of the indices :func:`change_indices` computes.
INDEX_NAMES = ("vegetation", "built_up", "brightness")


def band_roles(band_names: Sequence[str]) -> dict[str, int]:
    """Index in ``band_names`` of each role (``blue``, ``green``, ``red``, ``nir``, ``swir1``,
    ``swir2``) that is present; names are matched case-insensitively."""
    lookup = {name.lower(): i for i, name in enumerate(band_names)}
    roles = {}
    for role, candidates in ROLES.items():
        found = [lookup[c.lower()] for c in candidates if c.lower() in lookup]
        if found:
            roles[role] = found[0]
    return roles


def normalised_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)``, 0 where ``a + b`` is 0 (both dark), NaN where an input is NaN."""
    total = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total != 0, (a - b) / total, 0.0).astype(np.float32, copy=False)


def indices(image: np.ndarray, band_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Vegetation, built-up and brightness indices of one ``(bands, rows, cols)`` image.

    Returns ``{"vegetation", "built_up", "brightness"}`` (rows, cols) float32 arrays; which
    formula each uses with these bands is :func:`index_formulas`. An index the bands cannot give
    is all NaN.
    """
    roles = band_roles(band_names)
    visible = [roles[r] for r in ("blue", "green", "red") if r in roles]
    brightness = image[visible or slice(None)].mean(axis=0)
    formulas = index_formulas(band_names)
    if formulas["vegetation"] == "NDVI":
        vegetation = normalised_difference(image[roles["nir"]], image[roles["red"]])
    elif formulas["vegetation"] == "GRVI":
        vegetation = normalised_difference(image[roles["green"]], image[roles["red"]])
    else:
        vegetation = np.full(image.shape[1:], np.nan, np.float32)
    if formulas["built_up"] == "NDBI":
        built_up = normalised_difference(image[roles["swir1"]], image[roles["nir"]])
    elif formulas["built_up"] == "VIS-NIR":
        built_up = normalised_difference(brightness, image[roles["nir"]])  # mean visible
    elif formulas["built_up"] == "-GRVI":
        built_up = -vegetation
    else:
        built_up = np.full(image.shape[1:], np.nan, np.float32)
    return {"vegetation": vegetation, "built_up": built_up,
            "brightness": brightness.astype(np.float32, copy=False)}


def index_formulas(band_names: Sequence[str]) -> dict[str, str]:
    """Which formula :func:`indices` uses for each index with these bands (``"none"`` if none)."""
    roles = band_roles(band_names)
    if {"nir", "red"} <= roles.keys():
        vegetation = "NDVI"
    elif {"green", "red"} <= roles.keys():
        vegetation = "GRVI"
    else:
        vegetation = "none"
    if {"swir1", "nir"} <= roles.keys():
        built_up = "NDBI"
    elif "nir" in roles and roles.keys() & {"blue", "green", "red"}:
        built_up = "VIS-NIR"
    elif vegetation == "GRVI":
        built_up = "-GRVI"
    else:
        built_up = "none"
    has_visible = bool(roles.keys() & {"blue", "green", "red"})
    return {"vegetation": vegetation, "built_up": built_up,
            "brightness": "mean visible" if has_visible else "mean all bands"}


def index_changes(before: np.ndarray, after: np.ndarray,
                  band_names: Sequence[str]) -> dict[str, np.ndarray]:
    """``after - before`` of each index of :func:`indices` (rows, cols float32)."""
    first = indices(before, band_names)
    second = indices(after, band_names)
    return {name: second[name] - first[name] for name in INDEX_NAMES}


def chroma_change(before: np.ndarray, after: np.ndarray,
                  band_names: Sequence[str]) -> np.ndarray | None:
    """Colour change apart from brightness: ``sqrt(da*^2 + db*^2)`` in CIELAB (CIE 1976).

    ``before`` and ``after`` are ``(bands, rows, cols)`` with values 0..1; their red, green and
    blue bands are read as sRGB (skimage.color.rgb2lab, D65), which is what RGB photographs and
    aerial mosaics are. The lightness axis ``L*`` is left out: hue and saturation are what tell
    a grey roof from the lawn or the bare soil it replaced, and they move less than lightness
    with sun angle and exposure between the dates. Returns ``(rows, cols)`` float32 (NaN where
    an input is NaN), or ``None`` when red, green or blue is missing.
    """
    roles = band_roles(band_names)
    if not {"red", "green", "blue"} <= roles.keys():
        return None
    rgb = [roles["red"], roles["green"], roles["blue"]]
    lab = [skimage.color.rgb2lab(np.moveaxis(np.clip(np.nan_to_num(image[rgb]), 0.0, 1.0), 0, -1))
           for image in (before, after)]
    distance = np.hypot(*(lab[1][..., 1:] - lab[0][..., 1:]).transpose(2, 0, 1))
    missing = ~(np.isfinite(before[rgb]).all(axis=0) & np.isfinite(after[rgb]).all(axis=0))
    return np.where(missing, np.nan, distance).astype(np.float32)
