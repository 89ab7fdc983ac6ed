"""The AOI-wide decisions of a stack, taken once before its tiles run.

Everything :func:`sitewatch.stack.build_stack` decides from the whole AOI is decided here, once,
so every tile applies the same ones and a site cut by a tile edge is the same on both sides:
the scenes and bands, the grid, the reference acquisition, the acquisitions left out, each
acquisition's co-registration shift and its radiometric normalisation. The passes are those of
:mod:`sitewatch.stack.passes` (survey and fits on one decimated read per acquisition, shifts on
a central window of at most 1024 x 1024 pixels).

The *run key* names one result: a SHA-256 of the AOI, the scenes (ids and file fingerprints),
the parameters and the sitewatch version. A new or changed scene changes it, so an unchanged
AOI is skipped and a crashed run finds its finished tiles under the same key. The *base key* is
the same hash without the scenes.

**Incremental runs.** When the AOI's last finished stack has the same base key, all its scenes
are still there unchanged, and every new scene is later than its last acquisition (the usual
case of monitoring: new imagery arrives), the new plan keeps that stack's reference and its
acquisitions' outcomes, surveys, co-registers and normalises only the new acquisitions, and its
store starts as hard links to the old store's chunks (:func:`create_store`); the tiles then
read only the new acquisitions from the imagery (:mod:`sitewatch.scale.work`). A backfilled or
changed scene, or other parameters, recompute the AOI from the imagery.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import zarr

from sitewatch.stack import output, passes
from sitewatch.stack.acquisition import Acquisition, group_acquisitions
from sitewatch.stack.aoi import AOI
from sitewatch.stack.grid import Grid, grid_for
from sitewatch.stack.passes import AcquisitionOutcome
from sitewatch.store import Workspace
from sitewatch.version import __version__

#: GDAL block cache of a worker's tasks, MB. GDAL's default, 5 % of the machine's memory, filled
#: up with a whole scene's blocks during the survey; the readers keep the blocks they reuse
#: (:class:`sitewatch.stack.resample.BlockCache`).
GDAL_CACHE_MB = 64


@dataclass(frozen=True)
class StackOptions:
    """The stack parameters of :func:`sitewatch.stack.build_stack` (same meanings, units)."""

    resolution: float | None = None
    epsg: int | None = None
    bands: tuple[str, ...] | None = None
    sensor: str | None = None
    start: str | None = None  # ISO 8601 UTC
    end: str | None = None
    reference: str | None = None
    coregistration: str = "global"
    normalisation: str = "irmad"
    min_clear_fraction: float = 0.3
    min_shift_confidence: float = 0.3

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Selection:
    """What the workspace says about an AOI before any pixel is read."""

    aoi: AOI
    scenes: list[dict]
    band_names: list[str]
    grid: Grid
    options: StackOptions
    key: str
    base_key: str = ""
    previous: PreviousStack | None = None


@dataclass(frozen=True)
class PreviousStack:
    """A finished stack whose acquisitions a new plan keeps (see *Incremental runs* above)."""

    run_id: str
    path: Path  # its Zarr store
    outcomes: list[dict]  # its acquisitions' outcomes (AcquisitionOutcome.to_dict), time order
    reference: str  # its reference acquisition's key


@dataclass
class StackPlan:
    """The decisions every tile of an AOI applies (see the module docstring)."""

    selection: Selection
    acquisitions: list[Acquisition]
    outcomes: list[AcquisitionOutcome]
    reference: str
    fits: dict = field(default_factory=dict)  # acquisition key -> Normalisation
    reused: int = 0  # leading kept acquisitions whose slices come from the previous store
    previous_store: Path | None = None

    @property
    def kept(self) -> list[tuple[Acquisition, AcquisitionOutcome]]:
        """The included acquisitions and their outcomes, in stack (time) order."""
        return [(a, o) for a, o in zip(self.acquisitions, self.outcomes, strict=True)
                if o.included]

    @property
    def times(self) -> np.ndarray:
        """(time,) datetime64[ns] of the stack's time steps, as the stored stack has them."""
        return np.array([np.datetime64(o.acquired.rstrip("Z"), "ns") for _, o in self.kept])


def select(ws: Workspace, aoi: AOI, options: StackOptions, extra: dict) -> Selection:
    """Scenes, bands, grid and run key of ``aoi`` (``extra``: further parameters that change
    the result, such as the tiling, folded into the key)."""
    from datetime import datetime

    start = None if options.start is None else datetime.fromisoformat(options.start)
    end = None if options.end is None else datetime.fromisoformat(options.end)
    scenes = passes.select_scenes(ws, aoi, options.sensor, start, end)
    band_names = passes.common_bands(scenes, options.bands)
    resolution = options.resolution or passes.auto_resolution(scenes, band_names)
    grid = grid_for(aoi.polygon, resolution, options.epsg)
    document = {
        "aoi": aoi.name, "polygon": aoi.polygon.wkt, "version": __version__,
        "scenes": fingerprints(scenes),
        "bands": band_names, "grid": grid.to_dict(), "options": options.to_dict(), **extra,
    }
    key = _sha256(document)
    base_key = _sha256({k: v for k, v in document.items() if k != "scenes"})
    return Selection(aoi, scenes, band_names, grid, options, key, base_key,
                     _previous_stack(ws, aoi, base_key, scenes))


def fingerprints(scenes: list[dict]) -> list[list[str]]:
    """Sorted ``[scene_id, fingerprint]`` pairs of ``scenes`` rows."""
    return sorted([s["scene_id"], s["fingerprint"]] for s in scenes)


def _sha256(document: dict) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def _previous_stack(ws: Workspace, aoi: AOI, base_key: str,
                    scenes: list[dict]) -> PreviousStack | None:
    """The AOI's last finished stack with ``base_key``, if ``scenes`` only add later ones."""
    runs = [r for r in ws.rows("runs", "stage = 'stack'", order_by="finished_at")
            if r["inputs"].get("aoi") == aoi.name and r["inputs"].get("base_key") == base_key]
    finished = {r["inputs"].get("stack_run") for r in ws.rows("runs", "stage = 'sites'")}
    runs = [r for r in runs if r["run_id"] in finished]
    if not runs:
        return None
    run = runs[-1]
    rasters = ws.rows("rasters", "run_id = ? AND kind = 'stack'", (run["run_id"],))
    if not rasters or not _same_band_chunks(ws.root / rasters[0]["path"]):
        return None
    old = {tuple(pair) for pair in run["inputs"].get("scene_fingerprints", [])}
    new = [s for s in scenes if (s["scene_id"], s["fingerprint"]) not in old]
    outcomes = rasters[0]["properties"]["acquisitions"]
    last_day = max(o["acquired"][:10] for o in outcomes)
    current = {(s["scene_id"], s["fingerprint"]) for s in scenes}
    if not old or not old < current or any(s["acquired"][:10] <= last_day for s in new):
        return None
    return PreviousStack(run["run_id"], ws.root / rasters[0]["path"], outcomes,
                         rasters[0]["properties"]["reference"])


def _same_band_chunks(store: Path) -> bool:
    """Whether the stack store ``store`` exists with the band chunking this version writes
    (every band in one chunk; older stores have a chunk per band, and their chunk files cannot
    be shared with a new store)."""
    try:
        reflectance = zarr.open_array(str(store / "reflectance"), mode="r", zarr_format=2)
    except (OSError, ValueError, zarr.errors.BaseZarrError):
        return False
    return reflectance.chunks[1] == reflectance.shape[1]


#: A surveyed acquisition: its outcome so far and its preview (:func:`survey_acquisition`).
Surveyed = tuple[AcquisitionOutcome, passes.Preview]


def to_survey(selection: Selection) -> list[Acquisition]:
    """The acquisitions a plan surveys: every one, or in an incremental run the previous
    stack's reference and the new ones."""
    acquisitions = group_acquisitions(selection.scenes)
    if selection.previous is None:
        return acquisitions
    known = {o["key"] for o in selection.previous.outcomes}
    return [a for a in acquisitions
            if a.key == selection.previous.reference or a.key not in known]


def survey_acquisition(selection: Selection, acquisition: Acquisition) -> Surveyed:
    """:func:`sitewatch.stack.passes.survey` of one acquisition (one decimated read; a task of
    its own, so the acquisitions of an AOI are surveyed in parallel)."""
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20):
        outcomes, previews = passes.survey([acquisition], selection.band_names, selection.grid)
    return outcomes[0], previews[acquisition.key]


def plan_stack(selection: Selection, surveyed: dict[str, Surveyed] | None = None) -> StackPlan:
    """Choose the reference, co-register and fit the normalisation, from the ``surveyed``
    acquisitions of :func:`to_survey` by key (surveyed now when not given); only for the new
    acquisitions in an incremental run. Reads pixels: runs on a worker."""
    if surveyed is None:
        surveyed = {a.key: survey_acquisition(selection, a) for a in to_survey(selection)}
    previews = {key: preview for key, (_, preview) in surveyed.items()}
    if selection.previous is not None:
        return _plan_increment(selection, surveyed, previews)
    options = selection.options
    acquisitions = group_acquisitions(selection.scenes)
    outcomes = [surveyed[a.key][0] for a in acquisitions]
    ref_index = passes.choose_reference(outcomes, options.reference)
    passes.leave_out_unclear(outcomes, ref_index, options.min_clear_fraction)
    kept = [(a, o) for a, o in zip(acquisitions, outcomes, strict=True) if o.included]
    fits = _register_and_fit(selection, kept, acquisitions[ref_index], previews)
    return StackPlan(selection, acquisitions, outcomes, outcomes[ref_index].key, fits)


def _register_and_fit(selection: Selection, kept: list, ref_acq: Acquisition,
                      previews: dict[str, passes.Preview]) -> dict:
    """Co-register the ``kept`` (acquisition, outcome) pairs to ``ref_acq`` and fit their
    normalisations, as the selection's options ask; returns the fits by acquisition key."""
    options = selection.options
    if options.coregistration in ("global", "local"):
        passes.coregister_acquisitions(kept, ref_acq, selection.band_names, selection.grid,
                                       previews, options.min_shift_confidence)
    if options.normalisation == "none":
        return {}
    return passes.fit_normalisations(kept, ref_acq, selection.band_names, previews,
                                     options.normalisation)


def _plan_increment(selection: Selection, surveyed: dict[str, Surveyed],
                    previews: dict[str, passes.Preview]) -> StackPlan:
    """The plan of an incremental run: the previous stack's decisions for its acquisitions,
    the passes for the new ones against its reference."""
    options, previous = selection.options, selection.previous
    acquisitions = group_acquisitions(selection.scenes)
    known = {o["key"]: o for o in previous.outcomes}
    old = [AcquisitionOutcome.from_dict(known[a.key]) for a in acquisitions if a.key in known]
    new = [a for a in acquisitions if a.key not in known]
    ref_acq = next(a for a in acquisitions if a.key == previous.reference)
    outcomes = [surveyed[a.key][0] for a in new]
    passes.leave_out_unclear(outcomes, -1, options.min_clear_fraction)
    kept = [(a, o) for a, o in zip(new, outcomes, strict=True) if o.included]
    fits = _register_and_fit(selection, kept, ref_acq, previews)
    return StackPlan(selection, acquisitions, old + outcomes, previous.reference, fits,
                     reused=sum(o.included for o in old), previous_store=previous.path)


def create_store(plan: StackPlan, path: Path, chunk: int) -> None:
    """Create the empty stack store of ``plan`` at ``path`` with ``chunk``-pixel chunks.

    The store is made by :func:`sitewatch.stack.output.create` with ``chunk``-pixel chunks, so
    that every chunk lies inside one tile core; its arrays hold no chunk yet. Created beside
    ``path`` and renamed into place.
    """
    selection = plan.selection
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    output.create(tmp, selection.grid, selection.band_names, [o for _, o in plan.kept],
                  selection.aoi.name, chunk=chunk)
    if plan.reused:
        for name in ("reflectance", "mask"):
            _link_chunks(plan.previous_store / name, tmp / name, plan.reused)
    tmp.rename(path)


def _link_chunks(source: Path, target: Path, times: int) -> None:
    """Hard-link (or, where the file system cannot, copy) the chunks of the first ``times``
    time steps of the array ``source`` into ``target`` (same chunking; chunk files are never
    rewritten, so sharing them is safe)."""
    previous, new = (zarr.open_array(str(a), mode="r", zarr_format=2) for a in (source, target))
    if previous.chunks != new.chunks or previous.shape[1:] != new.shape[1:]:
        raise RuntimeError(f"{source}: chunks {previous.chunks} differ from the new "
                           f"store's {new.chunks}")
    for chunk in source.iterdir():
        if not chunk.name.startswith(".") and int(chunk.name.split(".")[0]) < times:
            try:
                os.link(chunk, target / chunk.name)
            except OSError:  # a file system without hard links, or another device
                shutil.copyfile(chunk, target / chunk.name)


def open_store(path: Path) -> zarr.Group:
    """The stack store at ``path``, open for writing blocks."""
    return zarr.open_group(str(path), mode="r+", zarr_format=2)
