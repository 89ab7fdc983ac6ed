"""Sites keep their ids across re-runs; new sites never take a number used before."""

from types import SimpleNamespace

import shapely
from pyproj import Transformer
from shapely.geometry import box

from sitewatch import Workspace
from sitewatch.sites.identity import carry_identities

EPSG = 32637
TO_LONLAT = Transformer.from_crs(EPSG, 4326, always_xy=True).transform


def _stored(ws, site_id, footprint):
    with ws.transaction() as txn:
        txn.insert("sites", {"site_id": site_id, "aoi": "crossing",
                             "geom": shapely.transform(footprint, TO_LONLAT, interleaved=False)})


def test_found_again_keeps_its_id_and_new_sites_get_unused_numbers(tmp_path):
    with Workspace.open(tmp_path / "ws", create=True) as ws:
        _stored(ws, "crossing-001", box(600_000, 3_900_000, 600_270, 3_900_165))
        _stored(ws, "crossing-002", box(601_000, 3_900_000, 601_040, 3_900_024))
        _stored(ws, "crossing-003", box(602_000, 3_900_000, 602_100, 3_900_100))
        with ws.transaction() as txn:  # an assessment of a site that has since vanished
            txn.insert("assessments", {"assessment_id": "a1", "site_id": "crossing-007",
                                       "judgement": "storage", "confidence": "probably",
                                       "assessed": "2019-08-01"})
        sites = [
            # the compound, grown by 40 m and found first this time
            SimpleNamespace(site_id="crossing-001",
                            footprint=box(600_000, 3_900_000, 600_310, 3_900_165)),
            # a new site next to nothing stored
            SimpleNamespace(site_id="crossing-002",
                            footprint=box(605_000, 3_900_000, 605_100, 3_900_100)),
            # the small building, shifted by 10 m (overlap 75 % of it)
            SimpleNamespace(site_id="crossing-003",
                            footprint=box(601_010, 3_900_000, 601_050, 3_900_024)),
            # touches the compound's corner only: not the compound
            SimpleNamespace(site_id="crossing-004",
                            footprint=box(600_260, 3_900_155, 600_460, 3_900_355)),
        ]
        carry_identities(ws, "crossing", sites, EPSG)
    assert [s.site_id for s in sites] == ["crossing-001", "crossing-008", "crossing-002",
                                          "crossing-009"]


def test_one_stored_site_goes_to_one_new_site_only(tmp_path):
    with Workspace.open(tmp_path / "ws", create=True) as ws:
        _stored(ws, "crossing-001", box(600_000, 3_900_000, 600_200, 3_900_100))
        parts = [SimpleNamespace(site_id="x", footprint=box(600_120, 3_900_000, 600_260,
                                                             3_900_100)),
                 SimpleNamespace(site_id="y", footprint=box(600_000, 3_900_000, 600_120,
                                                             3_900_100))]
        carry_identities(ws, "crossing", parts, EPSG)
    # both parts overlap the stored site (57 % and 100 % of them): the larger overlap keeps it
    assert [s.site_id for s in parts] == ["crossing-002", "crossing-001"]
