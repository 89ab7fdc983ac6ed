"""Analysis-ready stacks: one co-registered, normalised, cloud-masked time series per AOI.

Modules, in pipeline order: :mod:`aoi` (what area), :mod:`grid` (which pixels),
:mod:`acquisition` and :mod:`resample` (scenes onto the grid), :mod:`coregister`,
:mod:`normalise` and :mod:`mad`, :mod:`clouds` (the three corrections), :mod:`build` (the passes)
and :mod:`output` (the Zarr store).
"""

from sitewatch.stack.aoi import AOI, from_bbox, from_geojson, from_place
from sitewatch.stack.build import AcquisitionOutcome, StackResult, build_stack, latest_stack
from sitewatch.stack.grid import Grid, grid_for, utm_epsg
from sitewatch.stack.output import open_stack

__all__ = ["AOI", "AcquisitionOutcome", "Grid", "StackResult", "build_stack", "from_bbox",
           "from_geojson", "from_place", "grid_for", "latest_stack", "open_stack", "utm_epsg"]
