"""``sitewatch serve``: a local web viewer in which analysts review sites and record judgement.

The page (bundled in ``static/``, no internet needed) shows an AOI's imagery on any
acquisition date with the AOI outline, sites coloured by change type, reference places and
border lines; a time slider over the dates (cloud-covered ones marked); and, for a chosen site,
its automatic findings (measurements, phase timeline, findings text, before/after frames,
footprint per date) set apart from the analyst's assessments, collateral events and notes,
which can be added, changed and deleted there.

:mod:`app` (routes and security), :mod:`content` (what the page shows, from the workspace),
:mod:`imagery` (PNG rendering and caching), :mod:`edits` (versioned analyst writes) and
:mod:`server` (:func:`serve`).
"""

from sitewatch.web.app import create_app
from sitewatch.web.server import Ready, serve

__all__ = ["Ready", "create_app", "serve"]
