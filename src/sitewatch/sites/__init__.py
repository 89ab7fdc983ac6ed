"""Sites: from changed pixels to measured, located, typed and tracked sites.

:mod:`polygons` (change maps to clean outlines), :mod:`signature` (what a site's pixels did, date
by date), :mod:`lifecycle` (change type and phases), :mod:`measure` (size, orientation, MGRS,
distance and bearing to places, side of the border) and :mod:`extract` (the stage: find, track,
store).
"""

from sitewatch.sites.extract import Observation, Site, SitesResult, extract_sites
from sitewatch.sites.lifecycle import Lifecycle, Phase, lifecycle
from sitewatch.sites.measure import Measurements, measure

__all__ = ["Lifecycle", "Measurements", "Observation", "Phase", "Site", "SitesResult",
           "extract_sites", "lifecycle", "measure"]
