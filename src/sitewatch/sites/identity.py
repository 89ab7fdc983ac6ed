"""Site identities that survive a re-run: a site found again keeps its id.

Every run of the sites stage redraws the AOI's sites from the current change layers, so a
new acquisition, a re-run with other parameters or a tiled run would otherwise renumber them
and the analyst's assessments, events and notes (keyed by ``site_id``) would point at another
site. Before the new sites are stored, each takes the id of the stored site it overlaps most,
one to one, when the overlap covers at least :data:`MIN_OVERLAP` of the smaller of the two
footprints (a site that grew or shrank is the same site). A site without such a match gets a
number never used in the AOI before, by a stored site or by an analyst record, so a record
of a site that has since vanished never moves to a new one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import shapely
from pyproj import Transformer

from sitewatch.store import Workspace

#: Intersection over the smaller footprint's area above which two footprints are one site.
MIN_OVERLAP = 0.3
#: Layers and the column in which they name sites of an AOI.
REFERENCING_COLUMNS = (("sites", "site_id"), ("assessments", "site_id"),
                       ("events", "site_id"), ("notes", "subject"))


def site_number_id(aoi: str, number: int) -> str:
    """The id of site ``number`` of ``aoi``: ``<aoi>-001``."""
    return f"{aoi}-{number:03d}"


def carry_identities(ws: Workspace, aoi: str, sites: Sequence, epsg: int) -> None:
    """Give ``sites`` (with ``site_id`` and a ``footprint`` in EPSG ``epsg`` metres) the ids of
    the stored sites of ``aoi`` they match, and fresh numbers otherwise (see the module
    docstring); changes ``site.site_id`` in place."""
    to_grid = Transformer.from_crs(4326, epsg, always_xy=True).transform
    stored = [(row["site_id"], shapely.transform(row["geom"], to_grid, interleaved=False))
              for row in ws.rows("sites", "aoi = ?", (aoi,)) if row["geom"] is not None]
    pairs = []
    for i, site in enumerate(sites):
        for j, (_, footprint) in enumerate(stored):
            if not site.footprint.intersects(footprint):
                continue
            smaller = min(site.footprint.area, footprint.area)
            overlap = site.footprint.intersection(footprint).area / smaller if smaller else 0.0
            if overlap >= MIN_OVERLAP:
                pairs.append((overlap, i, j))
    matched: dict[int, str] = {}
    used_stored: set[int] = set()
    for _, i, j in sorted(pairs, key=lambda p: (-p[0], p[1], p[2])):
        if i not in matched and j not in used_stored:
            matched[i] = stored[j][0]
            used_stored.add(j)
    number = _highest_number(ws, aoi)
    for i, site in enumerate(sites):
        if i in matched:
            site.site_id = matched[i]
        else:
            number += 1
            site.site_id = site_number_id(aoi, number)


def _highest_number(ws: Workspace, aoi: str) -> int:
    """The highest site number of ``aoi`` used by a stored site or an analyst record."""
    pattern = re.compile(rf"^{re.escape(aoi)}-(\d+)$")
    highest = 0
    for layer, column in REFERENCING_COLUMNS:
        for row in ws.rows(layer, f"{column} LIKE ?", (f"{aoi}-%",)):
            found = pattern.match(row[column] or "")
            if found:
                highest = max(highest, int(found.group(1)))
    return highest
