"""Running AOIs tile by tile on a task pool: one AOI (:func:`run_tiled`) or several at once
(:func:`run_jobs`, which :func:`sitewatch.watchlist.run_watch_list` calls with every AOI of
its watch files).

Per AOI, with ``R`` its run key (:mod:`sitewatch.scale.plan`) and the workspace ``W``::

    client:  select scenes, bands, grid; R          (reads the GeoPackage)
             sites of R already stored? -> skip     (incremental: nothing new)
    worker:  plan the stack                         -> W/scale/<aoi>-<R>/plan.pkl (client)
    client:  create the empty stack store           -> W/scale/<aoi>-<R>/stack.zarr
    workers: one task per strip of tiles not yet    -> stack.zarr chunks of their cores,
             finished (2 tile rows x up to 6)          W/scale/<aoi>-<R>/tiles/tile-r-c.npz
    client:  assemble, record, extract sites        (:mod:`sitewatch.scale.finalise`)

Workers read the imagery and write only files no other task writes (their chunks, their
result file, each atomic); the client is the only writer of the GeoPackage. The tasks of all
AOIs are in flight together, so a watch list of many small AOIs keeps every worker busy as well
as one large AOI does. A crashed run, rerun, finds the plan and the finished tiles of the same
run key and does only the rest. A run after new imagery arrived has a new key; when the new
scenes are all later than the AOI's last stack it is incremental: only the new acquisitions
are read from the imagery, the earlier ones come from the previous stack
(:mod:`sitewatch.scale.plan`), and the time-series test and sites are redone over the whole
series (they depend on every date). Sites found again keep their ids.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sitewatch.detect import TIMESERIES, DetectResult, detect
from sitewatch.scale.cluster import connect
from sitewatch.scale.finalise import detection_result, finalise, is_current, stack_run_id
from sitewatch.scale.plan import (
    Selection,
    StackOptions,
    StackPlan,
    create_store,
    plan_stack,
    survey_acquisition,
    to_survey,
)
from sitewatch.scale.plan import select as select_aoi
from sitewatch.scale.tiles import Tile, chunk_side, strips, tile_layout
from sitewatch.scale.work import StripReport, process_strip, result_path
from sitewatch.sites import SitesResult
from sitewatch.stack.aoi import AOI
from sitewatch.stack.build import StackResult, slug
from sitewatch.store import Workspace
from sitewatch.store.geopackage import now_iso

#: Default tile core side, pixels (10.24 km of Sentinel-2 at 10 m).
TILE_PX = 1024
#: Default overlap read around each core, pixels (the stack's cloud-mask halo).
OVERLAP_PX = 64
#: Folder of the workspace holding unfinished runs.
SCALE_DIR = "scale"


@dataclass
class AOIJob:
    """One AOI of a run: its inputs, and what became of it."""

    workspace: Path
    aoi: AOI
    options: StackOptions
    min_area_m2: float | None  # None: by the grid's pixel size
    methods: tuple[str, ...] = (TIMESERIES,)  # detections to run and report (see _finish)
    selection: Selection | None = None
    plan: StackPlan | None = None
    tiles: list[Tile] = field(default_factory=list)
    pending: set[str] = field(default_factory=set)
    surveyed: dict = field(default_factory=dict)  # acquisition key -> plan.Surveyed
    surveying: int = 0  # acquisitions whose survey was submitted
    reports: list[StripReport] = field(default_factory=list)
    stack: StackResult | None = None
    detections: list[DetectResult] = field(default_factory=list)
    sites: SitesResult | None = None
    up_to_date: bool = False  # its sites were current: nothing was run
    started: str = ""

    @property
    def run_dir(self) -> Path:
        return self.workspace / SCALE_DIR / f"{slug(self.aoi.name)}-{self.selection.key[:16]}"


@dataclass
class ScaleRun:
    """What a tiled run did: per AOI its sites (None when up to date) and strip reports."""

    jobs: list[AOIJob]
    dashboard_link: str | None

    @property
    def reports(self) -> list[StripReport]:
        return [r for job in self.jobs for r in job.reports]


def run_tiled(
    workspace: str | os.PathLike,
    aoi: AOI,
    *,
    tile_px: int = TILE_PX,
    overlap_px: int = OVERLAP_PX,
    scheduler: str | None = None,
    workers: int | None = None,
    options: StackOptions | None = None,
    min_area_m2: float | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> ScaleRun:
    """Stack, detect and extract the sites of ``aoi`` tile by tile on a task pool.

    Parameters
    ----------
    workspace
        The workspace directory (its imagery ingested).
    aoi
        The area of interest (lon/lat polygon).
    tile_px, overlap_px
        Tile core side and the context read around it, grid pixels
        (:func:`sitewatch.scale.tiles.tile_layout`).
    scheduler, workers
        Where tasks run (:func:`sitewatch.scale.cluster.connect`).
    options
        The stack parameters (defaults of :func:`sitewatch.stack.build_stack`).
    min_area_m2
        Minimum mapping unit of a site, square metres (default: by the grid's pixel size,
        :func:`sitewatch.sites.polygons.default_min_area_m2`).
    on_progress
        Called with one line per step (the dashboard address, tiles done, ...).
    """
    job = AOIJob(Path(workspace).expanduser().resolve(), aoi, options or StackOptions(),
                 min_area_m2)
    return run_jobs([job], tile_px=tile_px, overlap_px=overlap_px, scheduler=scheduler,
                    workers=workers, on_progress=on_progress)


def run_jobs(jobs: Sequence[AOIJob], *, tile_px: int = TILE_PX, overlap_px: int = OVERLAP_PX,
             scheduler: str | None = None, workers: int | None = None,
             on_progress: Callable[[str], None] | None = None) -> ScaleRun:
    """Run ``jobs`` (AOIs, possibly of several workspaces) together on one task pool."""
    say = on_progress or (lambda message: None)
    chunk = chunk_side(tile_px)
    tiling = {"tile_px": tile_px, "overlap_px": overlap_px}
    for job in jobs:
        with Workspace.open(job.workspace) as ws:
            job.selection = select_aoi(ws, job.aoi, job.options, {**tiling,
                                       "min_area_m2": job.min_area_m2})
            job.up_to_date = is_current(ws, job.selection.key, job.methods)
        if job.up_to_date:
            say(f"{job.aoi.name}: no new scenes since the last run; sites unchanged")
    todo = [job for job in jobs if not job.up_to_date]
    if not todo:
        return ScaleRun(list(jobs), None)
    with connect(scheduler, workers) as pool:
        if pool.dashboard_link:
            say(f"Dask dashboard: {pool.dashboard_link}")
        by_key = {}
        for n, job in enumerate(todo):
            job.started = now_iso()
            (job.run_dir / "tiles").mkdir(parents=True, exist_ok=True)
            plan_file = job.run_dir / "plan.pkl"
            if plan_file.exists():
                _start_tiles(pool, job, pickle.loads(plan_file.read_bytes()), tile_px,
                             overlap_px, by_key)
            else:
                acquisitions = to_survey(job.selection)
                job.surveying = len(acquisitions)
                for acquisition in acquisitions:
                    key = f"survey-{n}-{acquisition.key}-{job.selection.key[:16]}"
                    by_key[key] = job
                    pool.submit(key, survey_acquisition, job.selection, acquisition)
        total = sum(len(job.tiles) for job in todo)
        done = 0
        for job in todo:
            if job.plan is not None and not job.pending:
                _finish(job, tile_px, overlap_px, say)
        for key, result in pool.completed():
            job = by_key.pop(key)
            if isinstance(result, tuple):  # one acquisition surveyed
                job.surveyed[result[0].key] = result
                if len(job.surveyed) == job.surveying:
                    key = f"plan-{key.split('-')[1]}-{job.selection.key[:16]}"
                    by_key[key] = job
                    pool.submit(key, plan_stack, job.selection, job.surveyed)
                continue
            if isinstance(result, StackPlan):
                create_store(result, job.run_dir / "stack.zarr", chunk)
                _write_atomic(job.run_dir / "plan.pkl", pickle.dumps(result))
                _start_tiles(pool, job, result, tile_px, overlap_px, by_key)
                total += len(job.tiles)
                say(f"{job.aoi.name}: planned, {len(job.tiles)} tiles "
                    f"({len(job.pending)} strips to run)")
            else:
                job.reports.append(result)
                job.pending.discard(key)
                done += len(result.tiles) + len(result.reused)
                say(f"Tiles done: {done}/{total}")
            if not job.pending:
                _finish(job, tile_px, overlap_px, say)
    return ScaleRun(list(jobs), pool.dashboard_link)


def _start_tiles(pool, job: AOIJob, plan: StackPlan, tile_px: int, overlap_px: int,
                 by_key: dict) -> None:
    """Submit the strips of ``job`` with a tile whose result file is missing."""
    job.plan = plan
    job.tiles = tile_layout(plan.selection.grid, tile_px, overlap_px)
    store = job.run_dir / "stack.zarr"
    tiles_dir = job.run_dir / "tiles"
    for strip in strips(job.tiles):
        if all(result_path(tiles_dir, tile).exists() for tile in strip):
            continue
        key = f"{strip[0].name}-{len(strip)}-{plan.selection.key[:16]}"
        by_key[key] = job
        job.pending.add(key)
        pool.submit(key, process_strip, plan, strip, store, tiles_dir)


def _finish(job: AOIJob, tile_px: int, overlap_px: int, say) -> None:
    """Finalise ``job`` (:func:`sitewatch.scale.finalise.finalise`), then run the pairwise
    methods it lists over the whole stack (windowed, in this process)."""
    say(f"{job.aoi.name}: assembling the layers and extracting sites")
    key = job.selection.key
    with Workspace.open(job.workspace) as ws:
        job.sites = finalise(ws, job.plan, job.tiles, job.run_dir, job.started,
                             tile_px=tile_px, overlap_px=overlap_px,
                             min_area_m2=job.min_area_m2)
        job.stack = StackResult.from_record(ws, stack_run_id(key), job.aoi)
        for method in job.methods:
            if method == TIMESERIES:
                job.detections.append(detection_result(ws, key, job.aoi.name))
            else:
                say(f"{job.aoi.name}: detecting change ({method})")
                job.detections.append(detect(ws, job.aoi.name, method=method))
    say(f"{job.aoi.name}: {len(job.sites.sites)} sites")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
