"""Sites: from changed pixels to measured, located, typed and tracked sites.

:mod:`polygons` (change maps to clean outlines), :mod:`signature` (what a site's pixels did, date
by date), :mod:`lifecycle` (change type and phases), :mod:`measure` (size, orientation, MGRS,
distance and bearing to places, side of the border), :mod:`records` (a site and its
observations), :mod:`pairwise` (sites of a two-date change map), :mod:`damage` (buildings
destroyed or heavily damaged) and :mod:`extract` (the stage: find, track, store).
"""

import lazy_loader

# Names are loaded on first use (as scikit-image does), so importing one module of the
# package does not import every stage it re-exports.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "extract": ["SitesResult", "extract_sites"],
        "records": ["Observation", "Site"],
        "lifecycle": ["Lifecycle", "Phase", "lifecycle"],
        "measure": ["Measurements", "measure"],
    },
)
