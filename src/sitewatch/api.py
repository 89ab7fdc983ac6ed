"""The Python API, one function per CLI command (``sitewatch X`` <-> ``sitewatch.X``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import shapely.geometry

from sitewatch.analyst import records as analyst_records
from sitewatch.errors import SitewatchError
from sitewatch.ingest import IngestReport
from sitewatch.ingest import ingest as _ingest
from sitewatch.places import PlacesReport
from sitewatch.places import import_places as _import_places
from sitewatch.store import Workspace

if TYPE_CHECKING:
    from sitewatch.demo import DemoSummary
    from sitewatch.detect import DetectResult
    from sitewatch.ingest.fetch import FetchRun
    from sitewatch.learn.train import TrainResult
    from sitewatch.report.build import ReportResult
    from sitewatch.simulate import SimulationResult
    from sitewatch.sites import SitesResult
    from sitewatch.stack import StackResult
    from sitewatch.watch import WatchRun
    from sitewatch.watchlist import WatchListRun

PathLike = str | os.PathLike


def ingest(paths: Iterable[PathLike], workspace: PathLike, *, date: str | datetime | None = None,
           on_progress: Callable[[str], None] | None = None) -> IngestReport:
    """Register imagery in ``workspace`` without copying pixels (``sitewatch ingest``)."""
    return _ingest(paths, workspace, date=date, on_progress=on_progress)


def scenes(workspace: PathLike) -> list[dict[str, Any]]:
    """The scenes of ``workspace``, oldest first, footprints as WKT (``sitewatch scenes``)."""
    with Workspace.open(workspace) as ws:
        rows = ws.rows("scenes", order_by="acquired, scene_id")
    for row in rows:
        row["footprint_wkt"] = row.pop("geom").wkt
        row.pop("fid")
    return rows


def aois(workspace: PathLike) -> list[dict[str, Any]]:
    """The AOIs of ``workspace`` by name (``sitewatch aois``), the names ``detect``, ``track``,
    ``report`` and ``export`` take: each with its area (km², on the WGS 84 ellipsoid), the
    dates and pixel size of its newest stack (None before one is built), its number of sites,
    and its outline as WKT."""
    from pyproj import Geod

    from sitewatch.stack import latest_stack

    geod = Geod(ellps="WGS84")
    out = []
    with Workspace.open(workspace) as ws:
        stacked = {r["aoi"] for r in ws.rows("rasters", "kind = 'stack'")}
        for row in ws.rows("aois", order_by="name"):
            stack = latest_stack(ws, row["name"]) if row["name"] in stacked else None
            dates = sorted(a["acquired"][:10] for a in (stack or {}).get(
                "properties", {}).get("acquisitions", []) if a.get("included", True))
            out.append({
                "name": row["name"], "description": row["description"],
                "created_at": row["created_at"],
                "area_km2": abs(geod.geometry_area_perimeter(row["geom"])[0]) / 1e6,
                "stack_dates": dates or None,
                "resolution_m": stack["properties"]["grid"]["resolution"] if stack else None,
                "sites": len(ws.rows("sites", "aoi = ?", (row["name"],))),
                "outline_wkt": row["geom"].wkt})
    return out


def alerts(workspace: PathLike) -> list[dict[str, Any]]:
    """The alerts of ``workspace``, oldest first (``sitewatch alerts list``)."""
    from sitewatch.alerts import alert_rows

    with Workspace.open(workspace) as ws:
        return alert_rows(ws)


def import_places(geojson: PathLike, workspace: PathLike) -> PlacesReport:
    """Import reference places and borders from GeoJSON (``sitewatch places import``)."""
    return _import_places(geojson, workspace)


def places(workspace: PathLike) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The reference places and borders of ``workspace`` (``sitewatch places list``)."""
    with Workspace.open(workspace) as ws:
        place_rows = ws.rows("places", order_by="name")
        border_rows = ws.rows("borders", order_by="name")
    for row in place_rows:
        point = row.pop("geom")
        row.update(lon=point.x, lat=point.y)
        row.pop("fid")
    for row in border_rows:
        line = row.pop("geom")
        row.update(wkt=line.wkt, vertices=len(line.coords))
        row.pop("fid")
    return place_rows, border_rows


def stack(workspace: PathLike, *, aoi: str | os.PathLike | None = None,
          place: str | None = None, radius_m: float = 3000.0, name: str | None = None,
          resolution: float | None = None, crs: str | int | None = None,
          on_progress: Callable[[str, float], None] | None = None, **options: Any) -> StackResult:
    """Build the analysis-ready stack of an AOI (``sitewatch stack``).

    The AOI is a GeoJSON file or a ``"min_lon,min_lat,max_lon,max_lat"`` string (``aoi``), or
    a circle of ``radius_m`` metres around a workspace reference ``place``. Other options are
    those of :func:`sitewatch.stack.build_stack`.
    """
    from sitewatch.stack import build_stack

    epsg = _parse_epsg(crs)
    with Workspace.open(workspace) as ws:
        region = _region(ws, aoi, place, radius_m, name)
        return build_stack(ws, region, resolution=resolution, epsg=epsg,
                           on_progress=on_progress, **options)


def search(stac: str, collections: Sequence[str], *, aoi: str | os.PathLike | None = None,
           place: str | None = None, radius_m: float = 3000.0,
           workspace: PathLike | None = None, start: str | datetime | None = None,
           end: str | datetime | None = None, max_cloud: float | None = None
           ) -> list[dict[str, Any]]:
    """The items of a STAC API over an AOI and dates, oldest first (``sitewatch search``).

    ``stac`` is an API URL or a catalogue name of :mod:`sitewatch.ingest.catalogues`; the AOI
    is given as for :func:`stack` (a ``place`` needs the ``workspace`` that holds it).
    """
    from sitewatch.ingest import catalogues
    from sitewatch.ingest.search import item_summary, search_items

    catalogue = catalogues.resolve(stac)
    begin, finish = _date_range(start, end)
    max_cloud = _cloud_percent(max_cloud)
    if place is not None:
        if workspace is None:
            raise SitewatchError("--place needs the workspace that holds the place (-w)")
        with Workspace.open(workspace) as ws:
            region = _region(ws, aoi, place, radius_m, None)
    else:
        region = _region(None, aoi, None, radius_m, None)
    items = search_items(catalogue, list(collections), region.polygon, begin, finish,
                         max_cloud=max_cloud)
    return [item_summary(item) for item in items]


def fetch(workspace: PathLike, stac: str, collections: Sequence[str], *,
          aoi: str | os.PathLike | None = None, place: str | None = None,
          radius_m: float = 3000.0, name: str | None = None,
          start: str | datetime | None = None, end: str | datetime | None = None,
          max_cloud: float | None = None, assets: Sequence[str] | None = None,
          workers: int = 4, on_progress: Callable[[str, int, int], None] | None = None
          ) -> FetchRun:
    """Search a STAC API and fetch the AOI's window of every item into the workspace, then
    ingest it (``sitewatch fetch``); see :func:`sitewatch.ingest.fetch.fetch`."""
    from sitewatch.ingest import catalogues
    from sitewatch.ingest.fetch import fetch as _fetch

    catalogue = catalogues.resolve(stac)
    begin, finish = _date_range(start, end)
    max_cloud = _cloud_percent(max_cloud)
    if not 1 <= workers <= 16:
        raise SitewatchError(f"--workers {workers} is not between 1 and 16")
    if place is not None:
        with Workspace.open(workspace) as ws:
            region = _region(ws, aoi, place, radius_m, name)
    else:
        region = _region(None, aoi, None, radius_m, name)
    return _fetch(workspace, catalogue, list(collections), region.polygon, region.name,
                  start=begin, end=finish, max_cloud=max_cloud, assets=assets,
                  workers=workers, on_progress=on_progress)


def _region(ws: Workspace | None, aoi: str | os.PathLike | None, place: str | None,
            radius_m: float, name: str | None):
    """The AOI of ``--aoi FILE|BBOX`` or ``--place NAME --radius M``."""
    from sitewatch.stack import from_bbox, from_geojson, from_place

    if place is not None and aoi is not None:
        raise SitewatchError("give either --aoi or --place, not both")
    if place is not None:
        return from_place(ws, place, radius_m, name)
    if aoi is None:
        raise SitewatchError("give the AOI: --aoi FILE.geojson, --aoi BBOX or --place NAME")
    if os.path.exists(aoi):
        return from_geojson(aoi, name)
    return from_bbox(str(aoi), name)


def _date_range(start: str | datetime | None, end: str | datetime | None
                ) -> tuple[datetime | None, datetime | None]:
    """``start`` and ``end`` as UTC datetimes; a day given as ``end`` includes its whole day."""
    from datetime import timedelta

    from sitewatch.ingest.dates import as_utc, parse_user_date

    def parse(value, whole_day):
        if value is None:
            return None
        if isinstance(value, datetime):
            return as_utc(value)
        parsed = parse_user_date(value)
        if whole_day and len(value.strip()) in (8, 10):
            parsed += timedelta(days=1, microseconds=-1)
        return parsed

    begin, finish = parse(start, False), parse(end, True)
    if begin and finish and finish < begin:
        raise SitewatchError(f"--to {end} is before --from {start}")
    return begin, finish


def _cloud_percent(max_cloud: float | None) -> float | None:
    if max_cloud is None:
        return None
    from sitewatch.validate import positive_number

    value = positive_number(max_cloud, "--max-cloud, percent", allow_zero=True)
    if value > 100:
        raise SitewatchError(f"--max-cloud {max_cloud} is not a percentage (0-100)")
    return value


def detect(workspace: PathLike, aoi: str, *, method: str = "default",
           dates: Sequence[str] | None = None,
           on_progress: Callable[[str, float], None] | None = None) -> DetectResult:
    """Detect change in the stack of ``aoi`` and store the layers (``sitewatch detect``)."""
    from sitewatch.detect import detect as _detect

    return _detect(workspace, aoi, method=method, dates=dates, on_progress=on_progress)


def compare(before: PathLike, after: PathLike, out_dir: PathLike, *, method: str = "default",
            min_site_area_m2: float | None = None, buildings: PathLike | None = None,
            on_progress: Callable[[str, float], None] | None = None) -> DetectResult:
    """Change between two images written into ``out_dir`` (``sitewatch compare``); the smallest
    site defaults by pixel size (2000 m² at 10 m, 50 m² at 0.5 m); ``buildings``: pre-event
    footprints to count the destroyed or heavily damaged ones (``result.damage``)."""
    from sitewatch.pair import compare as _compare

    return _compare(before, after, out_dir, method=method, min_site_area_m2=min_site_area_m2,
                    buildings=buildings, on_progress=on_progress)


def track(workspace: PathLike, aoi: str, *, min_area_m2: float | None = None,
          buildings: PathLike | None = None,
          on_progress: Callable[[str, float], None] | None = None) -> SitesResult:
    """Find, measure, type and track the sites of a stacked AOI (``sitewatch track``);
    ``buildings``: pre-event footprints to count the destroyed or heavily damaged ones
    (``result.damage``, stored with the run and shown in the report)."""
    from sitewatch.sites import extract_sites

    return extract_sites(workspace, aoi, min_area_m2=min_area_m2, buildings=buildings,
                         on_progress=on_progress)


def sites(workspace: PathLike, *, aoi: str | None = None) -> list[dict[str, Any]]:
    """The sites of ``workspace`` (of one AOI if given), with their observations and footprints
    as GeoJSON geometries in lon/lat (``sitewatch sites``)."""
    with Workspace.open(workspace) as ws:
        rows = ws.rows("sites", "aoi = ?", (aoi,)) if aoi else ws.rows("sites")
        for row in rows:
            row["observations"] = ws.rows("observations", "site_id = ?", (row["site_id"],),
                                          order_by="observed")
    for row in [*rows, *(o for r in rows for o in r["observations"])]:
        geom = row.pop("geom")
        row["geometry"] = None if geom is None else shapely.geometry.mapping(geom)
        row.pop("fid")
    return rows


def add_assessment(workspace: PathLike, site_id: str, judgement: str, confidence: str, *,
                   author: str | None = None, assessed: str | None = None,
                   notes: str | None = None) -> dict[str, Any]:
    """Record an analyst's judgement of a site with ICD 203 confidence (``sitewatch assess
    add``)."""
    return analyst_records.add_assessment(workspace, site_id, judgement, confidence,
                                          author=author, assessed=assessed, notes=notes)


def assessments(workspace: PathLike, *, site_id: str | None = None) -> list[dict[str, Any]]:
    """The analyst assessments, of one site if given (``sitewatch assess list``)."""
    return analyst_records.list_assessments(workspace, site_id)


def edit_assessment(workspace: PathLike, assessment_id: str, **fields: Any) -> dict[str, Any]:
    """Change fields of an assessment: site_id, judgement, confidence, author, assessed, notes
    (``sitewatch assess edit``)."""
    return analyst_records.update_assessment(workspace, assessment_id, **fields)


def delete_assessment(workspace: PathLike, assessment_id: str) -> dict[str, Any]:
    """Delete an assessment; returns it (``sitewatch assess delete``)."""
    return analyst_records.delete_assessment(workspace, assessment_id)


def add_event(workspace: PathLike, occurred: str, kind: str, *, lon: float | None = None,
              lat: float | None = None, site_id: str | None = None,
              description: str | None = None, source: str | None = None,
              url: str | None = None, credibility: str | None = None,
              author: str | None = None) -> dict[str, Any]:
    """Record a collateral event, placed at lon/lat or its site's centroid (``sitewatch event
    add``)."""
    return analyst_records.add_event(workspace, occurred, kind, lon=lon, lat=lat,
                                     site_id=site_id, description=description, source=source,
                                     url=url, credibility=credibility, author=author)


def events(workspace: PathLike, *, site_id: str | None = None) -> list[dict[str, Any]]:
    """The collateral events, of one site if given (``sitewatch event list``)."""
    return analyst_records.list_events(workspace, site_id)


def edit_event(workspace: PathLike, event_id: str, **fields: Any) -> dict[str, Any]:
    """Change fields of a collateral event (``sitewatch event edit``)."""
    return analyst_records.update_event(workspace, event_id, **fields)


def delete_event(workspace: PathLike, event_id: str) -> dict[str, Any]:
    """Delete a collateral event; returns it (``sitewatch event delete``)."""
    return analyst_records.delete_event(workspace, event_id)


def add_note(workspace: PathLike, text: str, *, subject: str | None = None,
             author: str | None = None) -> dict[str, Any]:
    """Attach a note to a site, a scene or the workspace (``sitewatch note add``)."""
    return analyst_records.add_note(workspace, text, subject=subject, author=author)


def notes(workspace: PathLike, *, subject: str | None = None) -> list[dict[str, Any]]:
    """The analyst notes, about one subject if given (``sitewatch note list``)."""
    return analyst_records.list_notes(workspace, subject)


def delete_note(workspace: PathLike, note_id: int) -> dict[str, Any]:
    """Delete a note; returns it (``sitewatch note delete``)."""
    return analyst_records.delete_note(workspace, note_id)


def export_analyst(workspace: PathLike, path: PathLike) -> dict[str, int]:
    """Write the analyst layer to GeoJSON or CSV (``sitewatch analyst export``)."""
    return analyst_records.export_analyst(workspace, path)


def import_analyst(workspace: PathLike, path: PathLike) -> dict[str, dict[str, int]]:
    """Read an analyst GeoJSON or CSV file into the workspace, all or nothing (``sitewatch
    analyst import``)."""
    return analyst_records.import_analyst(workspace, path)


def watch_run(watch_file: PathLike, *,
              on_progress: Callable[[str], None] | None = None) -> WatchRun:
    """Run the whole pipeline for a watch file (``sitewatch watch run``; see
    :mod:`sitewatch.watch` and docs/watch-file.md)."""
    from sitewatch.watchlist import run_watch

    return run_watch(watch_file, on_progress=on_progress)


def watch_run_scaled(watch_files: PathLike | Sequence[PathLike], *,
                     scheduler: str | None = None, workers: int | None = None,
                     tile_px: int = 1024, overlap_px: int = 64,
                     on_progress: Callable[[str], None] | None = None) -> WatchListRun:
    """Run one or more watch files with each AOI cut into overlapping tiles run as tasks on
    Dask distributed (``sitewatch watch run --workers/--scheduler``): a LocalCluster of
    ``workers`` processes, or the cluster at ``scheduler`` (default ``$SITEWATCH_SCHEDULER``);
    finished tiles are kept, so a crashed run resumes. See :mod:`sitewatch.scale`."""
    from sitewatch.watchlist import run_watch_list

    return run_watch_list(watch_files, scheduler=scheduler, workers=workers, tile_px=tile_px,
                          overlap_px=overlap_px, on_progress=on_progress)


def train(dataset_dir: PathLike, out_dir: PathLike, *, layout: str = "oscd",
          bands: Sequence[str] | None = None, val_cities: Sequence[str] = (),
          device: str | None = None,
          on_progress: Callable[[str, float], None] | None = None, **recipe) -> TrainResult:
    """Train the learned change model on an OSCD- or LEVIR-layout dataset (``sitewatch
    train``); writes model.pt, model-card.md and train-log.csv into ``out_dir``. ``recipe``:
    fields of :class:`sitewatch.learn.train.Recipe` (epochs, lr, loss, widths, ...). Use the
    weights with ``SITEWATCH_MODEL=out_dir/model.pt`` and ``--method learned``."""
    from sitewatch.learn import register_learned_method

    if not register_learned_method():
        raise SitewatchError("training needs PyTorch: pip install 'sitewatch[ml]' (torch 2.13.0)")
    from sitewatch.learn.train import Recipe
    from sitewatch.learn.train import train as _train

    unknown = sorted(set(recipe) - set(Recipe.__dataclass_fields__))
    if unknown:
        raise SitewatchError(f"unknown training setting(s) {unknown}")
    return _train(dataset_dir, layout, out_dir, bands=bands, val_cities=val_cities,
                  device=device, on_progress=on_progress, **recipe)


def report(workspace: PathLike, out_dir: PathLike, *, aoi: str | None = None,
           title: str | None = None, full_sites: int = 12,
           on_progress: Callable[[str, float], None] | None = None) -> ReportResult:
    """Write the evidence report (self-contained HTML and PDF) of ``workspace`` into
    ``out_dir`` (``sitewatch report``); see :func:`sitewatch.report.build.build_report`."""
    from sitewatch.report.build import build_report

    return build_report(workspace, out_dir, aoi=aoi, title=title, full_sites=full_sites,
                        on_progress=on_progress)


def serve(workspace: PathLike, *, host: str = "127.0.0.1", port: int = 8765,
          token: str | None = None, allow_write: bool = False,
          report_dir: PathLike | None = None, on_ready: Callable[[Any], None] | None = None
          ) -> None:
    """Serve the local web viewer of ``workspace`` until interrupted (``sitewatch serve``);
    see :func:`sitewatch.web.serve`."""
    from sitewatch.web import serve as _serve

    _serve(workspace, host=host, port=port, token=token, allow_write=allow_write,
           report_dir=report_dir, on_ready=on_ready)


def export(workspace: PathLike, target: PathLike, *, aoi: str | None = None,
           format: str | None = None) -> dict[str, os.PathLike]:
    """Export the sites, observations, reference places and analyst layer (``sitewatch
    export``): every format into ``target`` when it is a folder (or has no extension),
    otherwise the one format its extension (or ``format``) names. Returns format -> path."""
    from pathlib import Path

    from sitewatch.report.exports import export as _export
    from sitewatch.report.exports import export_all

    target = Path(target)
    if format is None and (target.is_dir() or not target.suffix):
        return export_all(workspace, target, aoi=aoi)
    path = _export(workspace, target, aoi=aoi, format=format)
    return {path.suffix.lstrip(".").lower(): path}


def _parse_epsg(crs: str | int | None) -> int | None:
    """The EPSG code of ``--crs`` (``EPSG:<code>`` or a bare code), checked against PROJ's
    registry before anything is read."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    if crs is None:
        return None
    text = str(crs).upper().removeprefix("EPSG:")
    if not text.isdigit():
        raise SitewatchError(f"--crs {crs!r} is not EPSG:<code>, e.g. EPSG:32637")
    try:
        CRS.from_epsg(int(text))
    except CRSError:
        raise SitewatchError(f"--crs {crs}: EPSG:{text} is not a known CRS") from None
    return int(text)


def simulate(out_dir: PathLike, *, sensor: str = "s2", seed: int = 0, n_dates: int = 12,
             scenario: str = "border-compound") -> SimulationResult:
    """Simulate a scenario into ``out_dir`` (``sitewatch simulate``): the demo's
    border-compound, or the randomised ``random`` / ``random-decoys``
    (:mod:`sitewatch.simulate.generator`)."""
    from sitewatch.simulate import simulate as _simulate

    return _simulate(out_dir, sensor=sensor, seed=seed, n_dates=n_dates, scenario=scenario)


def demo(out_dir: PathLike = "sitewatch-demo", *, sensors: Sequence[str] = ("s2", "vhr"),
         seed: int = 0, on_progress: Callable[[str], None] | None = None) -> DemoSummary:
    """Simulate the default scenario and run every pipeline stage on it (``sitewatch demo``)."""
    from sitewatch.demo import run_demo

    return run_demo(out_dir, sensors=sensors, seed=seed, on_progress=on_progress)
