"""``sitewatch watch run`` on a task pool: every AOI of one or more watch files at once.

The client ingests each watch file's imagery and imports its reference places (GeoPackage
writes, one writer), then the AOIs of all the files run together as tiled jobs
(:func:`sitewatch.scale.run.run_jobs`), then each file's exports and report are written. An AOI
whose scenes did not change since its sites were stored is skipped, so a rerun after new
imagery arrives processes only the AOIs the new scenes cover.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sitewatch.scale.cluster import INLINE
from sitewatch.scale.plan import StackOptions
from sitewatch.scale.run import OVERLAP_PX, TILE_PX, AOIJob, ScaleRun, run_jobs
from sitewatch.store import Workspace
from sitewatch.store.lock import run_lock
from sitewatch.watch import AOIRun, WatchFile, WatchRun, aoi_region, read_watch_file


@dataclass
class WatchListRun:
    """What one run of the watch files did."""

    watches: list[WatchFile]
    new_scenes: int
    updated_scenes: int
    run: ScaleRun
    exports: dict[Path, dict[str, Path]] = field(default_factory=dict)  # per watch file
    reports: dict[Path, object] = field(default_factory=dict)
    alerts: dict[Path, AlertsRun] = field(default_factory=dict)


@dataclass
class AlertsRun:
    """The alerts one watch file's run recorded, and what was delivered (of them and of
    earlier runs' undelivered alerts)."""

    recorded: list[str]
    delivery: object  # sitewatch.alerts.Delivery


def run_watch(path: str | os.PathLike, *,
              on_progress: Callable[[str], None] | None = None) -> WatchRun:
    """Run the whole pipeline for the watch file at ``path`` in this process (see
    :mod:`sitewatch.watch`): the AOIs' tiles run inline, so an AOI without new scenes is
    skipped and new imagery stacks only the new acquisitions."""
    listed = run_watch_list([path], scheduler=INLINE, on_progress=on_progress)
    watch = listed.watches[0]
    aois = [AOIRun(job.aoi.name, job.stack, job.detections, job.sites, job.up_to_date)
            for job in listed.run.jobs]
    return WatchRun(watch, listed.new_scenes, listed.updated_scenes, aois,
                    listed.reports.get(watch.path), listed.exports.get(watch.path, {}),
                    listed.alerts.get(watch.path))


def run_watch_list(
    watch_files: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    tile_px: int = TILE_PX,
    overlap_px: int = OVERLAP_PX,
    on_progress: Callable[[str], None] | None = None,
) -> WatchListRun:
    """Run the watch file(s) ``watch_files`` with the AOIs' tiles on a task pool.

    ``scheduler``, ``workers``: :func:`sitewatch.scale.cluster.connect`; ``tile_px``,
    ``overlap_px``: :func:`sitewatch.scale.tiles.tile_layout` (pixels).
    """
    say = on_progress or (lambda message: None)
    paths = [watch_files] if isinstance(watch_files, str | os.PathLike) else list(watch_files)
    watches = [read_watch_file(path) for path in paths]
    with contextlib.ExitStack() as locks:
        for workspace in dict.fromkeys(watch.workspace for watch in watches):
            locks.enter_context(run_lock(workspace, "sitewatch watch run", create=True))
        return _run_watches(watches, scheduler, workers, tile_px, overlap_px, say)


def _run_watches(watches, scheduler, workers, tile_px: int, overlap_px: int,
                 say: Callable[[str], None]) -> WatchListRun:
    """:func:`run_watch_list` once the workspaces' run locks are held."""
    from sitewatch.ingest import ingest
    from sitewatch.places import import_place_features, import_places

    new = updated = 0
    jobs = []
    for watch in watches:
        if watch.sources:
            say(f"Ingesting {len(watch.sources)} imagery source(s) of {watch.path.name}")
            ingested = ingest(watch.sources, watch.workspace)
            new, updated = new + len(ingested.added), updated + len(ingested.updated)
        for reference in watch.reference_files:
            import_places(reference, watch.workspace)
        if watch.reference_features:
            import_place_features(list(watch.reference_features), watch.workspace, watch.path)
        with Workspace.open(watch.workspace, create=True) as ws:
            for source in watch.stac:
                for spec in watch.aois:
                    added, changed = _fetch_new_items(ws, watch, source,
                                                      aoi_region(spec, ws), say)
                    new, updated = new + added, updated + changed
            for spec in watch.aois:
                options = StackOptions(
                    resolution=spec.resolution, epsg=spec.epsg, sensor=spec.sensor,
                    start=None if watch.start is None else watch.start.isoformat(),
                    end=None if watch.end is None else watch.end.isoformat(),
                    coregistration=spec.coregistration, normalisation=spec.normalisation)
                jobs.append(AOIJob(watch.workspace, aoi_region(spec, ws), options,
                                   spec.min_site_area_m2, spec.methods))
    run = run_jobs(jobs, tile_px=tile_px, overlap_px=overlap_px, scheduler=scheduler,
                   workers=workers, on_progress=say)
    result = WatchListRun(watches, new, updated, run)
    for watch in watches:
        if watch.exports is not None:
            from sitewatch.report.exports import export_all

            say(f"Writing the exports of {watch.path.name}")
            result.exports[watch.path] = export_all(watch.workspace, watch.exports)
        if watch.report is not None:
            from sitewatch.report.build import build_report

            say(f"Writing the report of {watch.path.name}")
            result.reports[watch.path] = build_report(
                watch.workspace, watch.report, on_progress=lambda message, fraction: say(message))
        if watch.alerts is not None:
            result.alerts[watch.path] = _send_alerts(watch, result, say)
    return result


def _send_alerts(watch, result: WatchListRun, say: Callable[[str], None]) -> AlertsRun:
    """Record the watch file's new findings as alerts and deliver what is pending."""
    from sitewatch.alerts import deliver, record_alerts

    links = {}
    if watch.path in result.reports:
        links["report"] = str(result.reports[watch.path].html)
    if watch.exports is not None:
        links["exports"] = str(watch.exports)
    say(f"Sending the alerts of {watch.path.name}")
    with Workspace.open(watch.workspace) as ws:
        recorded = record_alerts(ws, [spec.name for spec in watch.aois], links)
        return AlertsRun(recorded, deliver(ws, watch.alerts))


def _fetch_new_items(ws: Workspace, watch, source, region,
                     say: Callable[[str], None]) -> tuple[int, int]:
    """Fetch and ingest the items of a ``[[imagery.stac]]`` source over one AOI acquired since
    the newest it already holds (within the watch file's dates); (scenes added, updated)."""
    from sitewatch.ingest import catalogues
    from sitewatch.ingest.fetch import FETCH_DIR, fetch, latest_fetched

    catalogue = catalogues.resolve(source.url)
    folder = ws.root / FETCH_DIR / region.name
    start = max(filter(None, (watch.start, latest_fetched(folder, source.collections))),
                default=None)
    say(f"Searching {catalogue.url} for {', '.join(source.collections)} over {region.name}")
    run = fetch(ws, catalogue, list(source.collections), region.polygon, region.name,
                start=start, end=watch.end, max_cloud=source.max_cloud, assets=source.assets,
                on_progress=lambda item, done, total: say(f"Fetching {item} {done}/{total}"))
    for item_id, reason in run.report.failed:
        say(f"could not fetch {item_id} (it is tried again on the next run): {reason}")
    if run.ingested is None:
        return 0, 0
    return len(run.ingested.added), len(run.ingested.updated)
