"""Evidence out: the analyst's report (HTML and PDF) and the exports QGIS and Google Earth open.

:mod:`figures` (annotated before/after crops, overview map, timeline, time-lapse), :mod:`document`
(self-contained HTML and PDF), :mod:`build` (the stage: gather a workspace's sites, analyst layer
and provenance into one report) and :mod:`exports` (GeoJSON, GeoPackage, KML/KMZ, CSV).
"""
