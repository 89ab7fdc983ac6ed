"""The AOI-wide decisions of a stack, taken once before its tiles run.

Everything :func:`sitewatch.stack.build_stack` decides from the whole AOI is decided here, once,
so every tile applies the same ones and a site cut by a tile edge is the same on both sides:
the scenes and bands, the grid, the reference acquisition, the acquisitions left out, each
acquisition's co-registration shift and its radiometric normalisation. The passes are those of
:mod:`sitewatch.stack.build` (survey and fits on decimated reads, shifts on a central window),
so a plan costs a few reads of at most 1024 x 1024 pixels per acquisition whatever the AOI size.

The *run key* names one result: a SHA-256 of the AOI, the scenes (ids and file fingerprints),
the parameters and the sitewatch version. A new or changed scene changes it, so a run with new
imagery recomputes the AOI while an unchanged AOI is skipped; a crashed run finds its finished
tiles under the same key.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from sitewatch import __version__
from sitewatch.stack import build, output
from sitewatch.stack.acquisition import Acquisition, group_acquisitions
from sitewatch.stack.aoi import AOI
from sitewatch.stack.build import AcquisitionOutcome
from sitewatch.stack.grid import Grid, grid_for
from sitewatch.store import Workspace


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


@dataclass
class StackPlan:
    """The decisions every tile of an AOI applies (see the module docstring)."""

    selection: Selection
    acquisitions: list[Acquisition]
    outcomes: list[AcquisitionOutcome]
    reference: str
    fits: dict = field(default_factory=dict)  # acquisition key -> Normalisation

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
    scenes = build._select_scenes(ws, aoi, options.sensor, start, end)
    band_names = build._common_bands(scenes, options.bands)
    resolution = options.resolution or build._auto_resolution(scenes, band_names)
    grid = grid_for(aoi.polygon, resolution, options.epsg)
    document = {
        "aoi": aoi.name, "polygon": aoi.polygon.wkt, "version": __version__,
        "scenes": sorted([s["scene_id"], s["fingerprint"]] for s in scenes),
        "bands": band_names, "grid": grid.to_dict(), "options": options.to_dict(), **extra,
    }
    key = hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()
    return Selection(aoi, scenes, band_names, grid, options, key)


def plan_stack(selection: Selection) -> StackPlan:
    """Survey, choose the reference, co-register and fit the normalisation (reads pixels;
    runs on a worker)."""
    options, grid, band_names = selection.options, selection.grid, selection.band_names
    acquisitions = group_acquisitions(selection.scenes)
    factor = max(1, math.ceil(max(grid.width, grid.height) / build.PREVIEW_SIZE))
    outcomes, previews = build._survey(acquisitions, band_names, grid, factor,
                                       lambda message, fraction: None)
    ref_index = build._choose_reference(outcomes, options.reference)
    for outcome in outcomes:
        if (outcome.clear_fraction < options.min_clear_fraction
                and outcome is not outcomes[ref_index]):
            outcome.included = False
            outcome.reason = (f"clear fraction {outcome.clear_fraction:.2f} below "
                              f"{options.min_clear_fraction:.2f}")
    kept = [(a, o) for a, o in zip(acquisitions, outcomes, strict=True) if o.included]
    ref_acq = acquisitions[ref_index]
    if options.coregistration in ("global", "local"):
        build._coregister(kept, ref_acq, band_names, grid, previews, factor,
                          options.min_shift_confidence)
    fits = {}
    if options.normalisation != "none":
        fits = build._fit_normalisation(kept, ref_acq, band_names, grid, previews, factor,
                                        options.normalisation)
    return StackPlan(selection, acquisitions, outcomes, outcomes[ref_index].key, fits)


def create_store(plan: StackPlan, path: Path, chunk: int) -> None:
    """Create the empty stack store of ``plan`` at ``path`` with ``chunk``-pixel chunks.

    The store is made by :func:`sitewatch.stack.output.create`, whose arrays hold no chunk yet;
    only the chunk side of ``reflectance`` and ``mask`` is then changed in their Zarr v2
    ``.zarray`` metadata, so that every chunk lies inside one tile core. Created beside
    ``path`` and renamed into place.
    """
    selection = plan.selection
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    output.create(tmp, selection.grid, selection.band_names, [o for _, o in plan.kept],
                  selection.aoi.name)
    for name in ("reflectance", "mask"):
        metadata_path = tmp / name / ".zarray"
        metadata = json.loads(metadata_path.read_text())
        metadata["chunks"] = [*metadata["chunks"][:-2], chunk, chunk]
        metadata_path.write_text(json.dumps(metadata, indent=4))
    tmp.rename(path)


def open_store(path: Path) -> zarr.Group:
    """The stack store at ``path``, open for writing blocks."""
    return zarr.open_group(str(path), mode="r+", zarr_format=2)
