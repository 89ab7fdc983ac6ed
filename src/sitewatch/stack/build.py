"""Build an analysis-ready stack in one process: every acquisition of an AOI on one grid,
co-registered, radiometrically normalised and masked, written window by window.

The passes (selection, survey, co-registration, normalisation, windows) are those of
:mod:`sitewatch.stack.passes`; this module runs them in order for one AOI, writes the windows
(blocks sized from ``memory_mb``) into a Zarr store in a temporary directory, renames it into
place and records it (grid, per-acquisition shifts, fits and exclusions) in the workspace in one
transaction. :mod:`sitewatch.scale` runs the same passes tile by tile on a cluster.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import rasterio
import shapely
from pyproj import Transformer
from rasterio.windows import Window
from shapely.geometry import box

from sitewatch.errors import SitewatchError
from sitewatch.stack import output, passes
from sitewatch.stack.acquisition import group_acquisitions
from sitewatch.stack.aoi import AOI
from sitewatch.stack.grid import Grid, grid_for
from sitewatch.stack.passes import HALO, AcquisitionOutcome
from sitewatch.store import Workspace
from sitewatch.store.geopackage import now_iso
from sitewatch.store.lock import holds_run_lock
from sitewatch.validate import fraction, positive_number
from sitewatch.version import __version__

#: Zarr chunk side (pixels); blocks are multiples of it.
CHUNK = 512
#: Share (percent) of ``memory_mb`` given to GDAL's block cache; the rest sizes the blocks.
GDAL_CACHE_SHARE = 20
#: Smallest memory budget (MiB) a stack can keep to: the smallest block (one chunk with its
#: halo), GDAL's cache floor and the per-acquisition passes before the writing pass.
#: Measured with ``python bench/stack_memory.py --size 2048 --dates 12 --memory-mb M``: the
#: peak resident memory beyond the ~250 MB the program takes with nothing to do was 185 MB at
#: M = 64 and 180 MB at M = 128, whatever M; a budget below it cannot be kept.
MIN_MEMORY_MB = 256
NORMALISATION_METHODS = ("irmad", "histogram", "none")
COREGISTRATION_METHODS = ("global", "local", "none")


@dataclass
class StackResult:
    """A stack written into a workspace."""

    path: Path
    aoi: AOI
    grid: Grid
    bands: list[str]
    reference: str
    run_id: str
    acquisitions: list[AcquisitionOutcome] = field(default_factory=list)

    @property
    def included(self) -> list[AcquisitionOutcome]:
        return [a for a in self.acquisitions if a.included]

    def open(self):
        """The stack as a lazily loaded xarray Dataset."""
        return output.open_stack(self.path)

    @classmethod
    def from_record(cls, ws: Workspace, run_id: str, aoi: AOI) -> StackResult:
        """The stack recorded by run ``run_id`` (its ``rasters`` row) in ``ws``."""
        row = ws.rows("rasters", "run_id = ? AND kind = 'stack'", (run_id,))[0]
        properties = row["properties"]
        outcomes = [AcquisitionOutcome.from_dict(o) for o in properties["acquisitions"]]
        return cls(ws.root / row["path"], aoi, stack_grid(row), properties["bands"],
                   properties["reference"], run_id, outcomes)


def latest_stack(ws: Workspace, aoi: str) -> dict:
    """The newest ``rasters`` record of kind ``stack`` for ``aoi``."""
    rows = ws.rows("rasters", "kind = 'stack' AND aoi = ?", (aoi,), order_by="fid DESC")
    if not rows:
        known = sorted({r["aoi"] for r in ws.rows("rasters", "kind = 'stack'")})
        raise SitewatchError(f"no stack for AOI {aoi!r}; build one with 'sitewatch stack' "
                             f"(stacked AOIs: {', '.join(known) or 'none'})")
    return rows[0]


def stack_grid(record: dict) -> Grid:
    """The grid of a ``rasters`` record of kind ``stack`` (as :func:`latest_stack` gives)."""
    return Grid(**record["properties"]["grid"])


@holds_run_lock("sitewatch stack")
def build_stack(
    workspace: str | Path | Workspace,
    aoi: AOI,
    *,
    resolution: float | None = None,
    epsg: int | None = None,
    bands: Sequence[str] | None = None,
    sensor: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    reference: str | None = None,
    coregistration: str = "global",
    normalisation: str = "irmad",
    min_clear_fraction: float = 0.3,
    min_shift_confidence: float = 0.3,
    memory_mb: int = 1024,
    on_progress: Callable[[str, float], None] | None = None,
) -> StackResult:
    """Build and store the analysis-ready stack of ``aoi`` (see the module docstring).

    ``resolution`` is in metres, ``epsg`` a projected CRS (default: the UTM zone of the AOI),
    ``sensor`` selects the scenes of one sensor (``"any"`` mixes sensors on their common bands),
    ``reference`` an acquisition day (``YYYY-MM-DD``) to register and normalise to,
    ``memory_mb`` the working-memory budget for the writing pass.
    """
    if resolution is not None:
        resolution = positive_number(resolution, "the resolution (--res), metres")
    min_clear_fraction = fraction(min_clear_fraction, "the least clear share (--min-clear)")
    memory_mb = math.ceil(positive_number(memory_mb, "the memory budget (--memory-mb), MB"))
    if memory_mb < MIN_MEMORY_MB:
        raise SitewatchError(f"the memory budget (--memory-mb) must be at least {MIN_MEMORY_MB} "
                             f"MB, the least a stack can keep to; got {memory_mb}")
    if normalisation not in NORMALISATION_METHODS:
        raise SitewatchError(f"unknown normalisation {normalisation!r}; choose one of "
                             f"{', '.join(NORMALISATION_METHODS)}")
    if coregistration not in COREGISTRATION_METHODS:
        raise SitewatchError(f"unknown co-registration {coregistration!r}; choose one of "
                             f"{', '.join(COREGISTRATION_METHODS)}")
    progress = on_progress or (lambda message, fraction: None)
    with contextlib.ExitStack() as cleanup:
        ws = cleanup.enter_context(Workspace.using(workspace))
        # GDAL's block cache would otherwise grow to 5 % of the machine's RAM on its own
        # (rasterio takes this option in bytes).
        cleanup.enter_context(rasterio.Env(
            GDAL_CACHEMAX=max(32, memory_mb * GDAL_CACHE_SHARE // 100) * 2**20))
        scenes = passes.select_scenes(ws, aoi, sensor, start, end)
        band_names = passes.common_bands(scenes, bands)
        resolution = resolution or passes.auto_resolution(scenes, band_names)
        grid = grid_for(aoi.polygon, resolution, epsg)
        acquisitions = group_acquisitions(scenes)
        check_grid_fits(grid, len(band_names), len(acquisitions), ws.root)
        run_id = f"stack-{uuid.uuid4().hex[:12]}"
        started = now_iso()

        progress("Surveying acquisitions", 0.0)
        outcomes, previews = passes.survey(acquisitions, band_names, grid, progress)
        ref_index = passes.choose_reference(outcomes, reference)
        passes.leave_out_unclear(outcomes, ref_index, min_clear_fraction)
        kept = [(a, o) for a, o in zip(acquisitions, outcomes, strict=True) if o.included]
        ref_acq = acquisitions[ref_index]

        if coregistration in ("global", "local"):
            progress("Co-registering", 0.1)
            passes.coregister_acquisitions(kept, ref_acq, band_names, grid, previews,
                                           min_shift_confidence)
        fits = {}
        if normalisation != "none":
            progress("Fitting radiometric normalisation", 0.2)
            fits = passes.fit_normalisations(kept, ref_acq, band_names, previews,
                                             normalisation)

        stacks_dir = ws.root / "rasters" / "stacks"
        stacks_dir.mkdir(parents=True, exist_ok=True)
        final = stacks_dir / f"{slug(aoi.name)}-{run_id}.zarr"
        tmp = stacks_dir / f".{final.name}.tmp"
        try:
            store = output.create(tmp, grid, band_names, [o for _, o in kept], aoi.name)
            block_mb = memory_mb * (100 - GDAL_CACHE_SHARE) // 100
            _write_blocks(store, kept, ref_acq, band_names, grid, fits, block_mb, progress,
                          local=coregistration == "local", min_confidence=min_shift_confidence)
            output.consolidate_metadata(tmp)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        result = StackResult(final, aoi, grid, band_names, outcomes[ref_index].key, run_id,
                             outcomes)
        try:
            _record(ws, result, started, {
                "resolution": resolution, "epsg": grid.epsg, "bands": band_names,
                "sensor": sensor, "reference": reference, "coregistration": coregistration,
                "normalisation": normalisation, "min_clear_fraction": min_clear_fraction,
                "min_shift_confidence": min_shift_confidence, "memory_mb": memory_mb,
            })
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        progress("Done", 1.0)
        return result


def check_grid_fits(grid: Grid, n_bands: int, n_dates: int, folder: Path) -> None:
    """Refuse, before anything is read, a grid whose stack could not be written to ``folder``'s
    disk: even one date of it (float32 reflectance of every band, the least the stack writes,
    before compression) would not fit in the free space. The message gives the grid's size in
    pixels and the uncompressed bytes of the whole stack."""
    pixels = grid.width * grid.height
    one_date = pixels * n_bands * 4
    free = shutil.disk_usage(folder).free
    if one_date > free:
        whole = one_date * n_dates + pixels * n_dates
        raise SitewatchError(
            f"the stack grid is {grid.width} x {grid.height} px at {grid.resolution:g} m: "
            f"{_bytes(whole)} uncompressed for {n_dates} date(s) x {n_bands} band(s), and even "
            f"one date ({_bytes(one_date)}) exceeds the {_bytes(free)} free on the workspace's "
            "disk; use a coarser --res or a smaller AOI", folder)


def _bytes(count: float) -> str:
    """``count`` bytes in decimal units."""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def _block_side(n_bands: int, memory_mb: int) -> int:
    """Block side (a multiple of :data:`CHUNK`) whose working set fits ``memory_mb``.

    Per pixel of a block (with halo) the writing pass holds the bands of the acquisition and of
    the reference as float32, plus masks and cloud-detection temporaries: about
    ``(2 * n_bands + 12) * 4`` bytes, and three times that in copies and resampling buffers (on
    4 bands, going from 512 to 1024 px blocks raised the peak by 235 bytes per added pixel,
    ``bench/stack_memory.py``).
    """
    per_pixel = (2 * n_bands + 12) * 4 * 3
    side = math.isqrt(max(1, memory_mb * 2**20 // per_pixel)) - 2 * HALO
    return max(CHUNK, side // CHUNK * CHUNK)


def _write_blocks(store, kept, ref_acq, band_names, grid: Grid, fits, memory_mb, progress, *,
                  local: bool, min_confidence: float) -> None:
    side = _block_side(len(band_names), memory_mb)
    blocks = [(row, col) for row in range(0, grid.height, side)
              for col in range(0, grid.width, side)]
    total = len(blocks) * len(kept)
    done = 0
    with contextlib.ExitStack() as stack:
        ref_reader = stack.enter_context(ref_acq.reader(band_names, grid)) if local else None
        for t, (acq, outcome) in enumerate(kept):
            with acq.reader(band_names, grid, outcome.applied_shift) as reader:
                for row, col in blocks:
                    progress(f"Writing {acq.key}", 0.25 + 0.75 * done / total)
                    done += 1
                    inner = Window(col, row, min(side, grid.width - col),
                                   min(side, grid.height - row))
                    data, flags = passes.stack_window(
                        reader, acq, outcome, band_names, grid, inner,
                        passes.with_halo(inner, grid), fit=fits.get(acq.key),
                        ref_reader=ref_reader if acq is not ref_acq else None,
                        min_confidence=min_confidence)
                    output.write_block(store, t, inner, data, flags)


def slug(text: str) -> str:
    """``text`` made safe as a file name (letters, digits, ``-`` and ``_``)."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-") or "aoi"


def _record(ws: Workspace, result: StackResult, started: str, parameters: dict) -> None:
    to_wgs84 = Transformer.from_crs(result.grid.epsg, 4326, always_xy=True).transform
    footprint = shapely.transform(box(*result.grid.bounds).segmentize(
        result.grid.resolution * 50), to_wgs84, interleaved=False)
    with ws.transaction() as txn:
        if not ws.rows("aois", "name = ?", (result.aoi.name,)):
            txn.insert("aois", {"geom": result.aoi.polygon, "name": result.aoi.name,
                                "created_at": now_iso()})
        txn.insert("rasters", {
            "geom": footprint, "path": str(result.path.relative_to(ws.root)), "kind": "stack",
            "run_id": result.run_id, "aoi": result.aoi.name,
            "properties": {"grid": result.grid.to_dict(), "bands": result.bands,
                           "reference": result.reference,
                           "acquisitions": [a.to_dict() for a in result.acquisitions]},
        })
        txn.insert("runs", {
            "run_id": result.run_id, "stage": "stack", "started_at": started,
            "finished_at": now_iso(), "status": "ok", "sitewatch_version": __version__,
            "parameters": parameters,
            "inputs": {"aoi": result.aoi.name, "aoi_wkt": result.aoi.polygon.wkt,
                       "scenes": [s for a in result.acquisitions for s in a.scene_ids]},
        })
