"""``sitewatch serve``: a local web viewer in which analysts review sites and record judgement.

The page (bundled in ``static/`` with the map libraries the build copies from npm: no internet
needed) draws an AOI with OpenLayers in its stack's UTM grid: imagery tiles of any acquisition
date at up to the stack's full resolution, change layers (onset, magnitude, kinds) with their
legends, the AOI outline, sites coloured by change type (selectable), reference places and
border lines; a time slider over the dates (cloud-covered ones marked, keyboard driven); a swipe
or side-by-side of two dates; a cursor readout (lat/lon, UTM, MGRS); geodesic measuring of
distance, bearing and area; a permalink. For a chosen site it shows its automatic findings
(measurements, phase timeline, findings text, before/after frames, footprint per date) set
apart from the analyst's assessments, collateral events and notes, which can be added, changed
and deleted there.

:mod:`app` (routes and security), :mod:`content` (what the page shows, from the workspace),
:mod:`tiles` (the tile grid, imagery and change tiles, their cache), :mod:`imagery` (site
frames), :mod:`edits` (versioned analyst writes) and :mod:`server` (:func:`serve`).
"""

from sitewatch.web.app import create_app
from sitewatch.web.server import Ready, serve

__all__ = ["Ready", "create_app", "serve"]
