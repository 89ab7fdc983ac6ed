"""Searching a STAC API for the items over an area and a time range (pystac-client).

The search asks the API for the AOI's geometry, the collections and the date range, and filters
cloud cover itself as well (``eo:cloud_cover``), since not every server offers the Query or
Filter extension. Requests that fail with HTTP 429 or 5xx, or time out, are retried with
exponential backoff a bounded number of times; an API that cannot be reached or keeps failing
raises a one-line :class:`~sitewatch.errors.SitewatchError` that names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pystac
import pystac_client
import requests
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from urllib3.util.retry import Retry

from sitewatch.errors import SitewatchError
from sitewatch.ingest.catalogues import Catalogue

#: Retries of one API request (HTTP 429/5xx, connection errors, timeouts) and their backoff:
#: 0.5, 1, 2 s between the attempts.
API_RETRIES = 3
API_BACKOFF_S = 0.5
#: Seconds to connect, and to wait for each response.
API_TIMEOUT_S = (10.0, 60.0)
#: At most this many items per search: a search that matches more is refused, so a typo in a
#: date range cannot start a download of thousands of scenes.
MAX_ITEMS = 2000


def open_client(catalogue: Catalogue) -> pystac_client.Client:
    """A pystac-client ``Client`` for ``catalogue`` with bounded retries and timeouts."""
    retry = Retry(total=API_RETRIES, backoff_factor=API_BACKOFF_S,
                  status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=("GET", "POST"), raise_on_status=False)
    stac_io = StacApiIO(timeout=API_TIMEOUT_S, max_retries=retry)
    try:
        # Client.open sets its own timeout on the reader: give it the same
        return pystac_client.Client.open(catalogue.url, stac_io=stac_io, timeout=API_TIMEOUT_S)
    except (requests.RequestException, APIError, pystac.STACError, ValueError) as exc:
        raise SitewatchError(f"the STAC API at {catalogue.url} cannot be used: "
                             f"{_first_line(exc)}") from exc


def search_items(catalogue: Catalogue, collections: Sequence[str], geometry: BaseGeometry,
                 start: datetime | None = None, end: datetime | None = None, *,
                 max_cloud: float | None = None) -> list[pystac.Item]:
    """The items of ``collections`` over ``geometry`` (lon/lat degrees) between ``start`` and
    ``end`` (inclusive, UTC), with at most ``max_cloud`` percent cloud cover when given; oldest
    first.

    An item without ``eo:cloud_cover`` is kept (its clouds are masked by the stack anyway).
    """
    if not collections:
        raise SitewatchError("give at least one --collection to search")
    client = open_client(catalogue)
    interval = (None if start is None and end is None else
                [start.isoformat() if start else "..", end.isoformat() if end else ".."])
    interval = "/".join(interval) if interval else None
    try:
        search = client.search(collections=list(collections), intersects=mapping(geometry),
                               datetime=interval, max_items=MAX_ITEMS + 1, limit=100)
        items = list(search.items())
    except (requests.RequestException, APIError, pystac.STACError) as exc:
        raise SitewatchError(f"the STAC API at {catalogue.url} failed to search: "
                             f"{_first_line(exc)}") from exc
    if len(items) > MAX_ITEMS:
        raise SitewatchError(f"the search matches more than {MAX_ITEMS} items; narrow the "
                             "dates, the AOI or --max-cloud")
    if max_cloud is not None:
        items = [item for item in items
                 if item.properties.get("eo:cloud_cover") is None
                 or float(item.properties["eo:cloud_cover"]) <= max_cloud]
    unique = {item.id: item for item in items}  # a server may page an item twice
    return sorted(unique.values(), key=lambda item: (_acquired(item), item.id))


def item_summary(item: pystac.Item) -> dict:
    """What ``sitewatch search`` shows of an item: id, collection, date, platform, cloud %,
    processing baseline, and its asset keys."""
    return {
        "id": item.id,
        "collection": item.collection_id,
        "datetime": _acquired(item).isoformat(),
        "platform": item.properties.get("platform"),
        "cloud_cover": item.properties.get("eo:cloud_cover"),
        "processing_baseline": item.properties.get("s2:processing_baseline"),
        "assets": sorted(item.assets),
    }


def _acquired(item: pystac.Item) -> datetime:
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise SitewatchError(f"STAC item {item.id!r} has no datetime")
    return when


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout) or "timed out" in str(exc):
        return f"no answer within {API_TIMEOUT_S[1]:g} s, {API_RETRIES + 1} attempts"
    if isinstance(exc, requests.ConnectionError):
        return (f"cannot connect after {API_RETRIES + 1} attempts (is the URL right and the "
                "server up?)")
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
