"""Analysis-ready stacks: one co-registered, normalised, cloud-masked time series per AOI.

Modules, in pipeline order: :mod:`aoi` (what area), :mod:`grid` (which pixels),
:mod:`acquisition` and :mod:`resample` (scenes onto the grid), :mod:`coregister`,
:mod:`normalise` and :mod:`mad`, :mod:`clouds` (the three corrections), :mod:`build` (the passes)
and :mod:`output` (the Zarr store).
"""

import lazy_loader

# Names are loaded on first use (as scikit-image does), so importing one module of the
# package does not import every stage it re-exports.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "aoi": ["AOI", "from_bbox", "from_geojson", "from_place"],
        "build": ["AcquisitionOutcome", "StackResult", "build_stack", "latest_stack",
                  "stack_grid"],
        "grid": ["Grid", "grid_for", "utm_epsg"],
        "output": ["open_stack"],
    },
)
