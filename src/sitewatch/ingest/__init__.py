"""Register imagery in a workspace without copying pixels.

``ingest(paths, workspace)`` finds the scenes at the given paths (see
:mod:`sitewatch.ingest.discover`), describes each (bands, CRS, footprint, nodata fraction,
acquisition date, sensor) and records them in one transaction: either every scene of the call is
registered or, on any error, none is. Re-ingesting an unchanged source changes nothing; a source
whose files changed since is updated in place.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sitewatch.errors import SitewatchError
from sitewatch.ingest import dates, discover, eopatch, raster, sensors, stac, xbd
from sitewatch.ingest.records import Band, Scene
from sitewatch.store import GPKG_NAME, Workspace
from sitewatch.store.geopackage import now_iso
from sitewatch.version import __version__

__all__ = ["Band", "IngestReport", "Scene", "ingest", "describe"]

#: Sub-folder of a workspace holding VRTs that georeference sources which lack it (xBD PNGs).
GEOREF_DIR = Path("rasters") / "georef"


@dataclass
class IngestReport:
    """What one ingest call did; scene ids in each list."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def scene_ids(self) -> list[str]:
        return self.added + self.updated + self.unchanged


def describe(
    paths: Iterable[str | os.PathLike],
    *,
    date: str | datetime | None = None,
    fallback_date: str | datetime | None = None,
    georef_dir: str | os.PathLike | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[list[Scene], list[tuple[str, str]]]:
    """Describe the scenes at ``paths``; returns them and the (path, reason) pairs skipped.

    ``date`` sets the acquisition time of every scene found (for sources that do not say, such
    as tiles of one acquisition); it overrides dates found in metadata. ``fallback_date`` is
    used only for scenes whose sources give no date. ``georef_dir``
    receives the VRTs of xBD tiles and EOPatches.
    """
    candidates = [c for path in paths for c in discover.discover(path)]
    scenes: list[Scene] = []
    skipped: list[tuple[str, str]] = []
    for candidate in candidates:
        if on_progress:
            on_progress(str(candidate.path))
        if candidate.kind == "unreadable":
            skipped.append((str(candidate.path), candidate.reason))
            continue
        try:
            scenes.extend(_describe(candidate, georef_dir))
        except raster.NotGeoreferencedError as exc:
            if candidate.explicit:
                raise
            skipped.append((str(candidate.path), exc.reason))
    if not scenes:
        reasons = "; ".join(f"{Path(p).name}: {r}" for p, r in skipped[:3])
        raise SitewatchError(f"no georeferenced imagery found ({reasons})")
    _assign_dates(scenes, date, fallback_date)
    return scenes, skipped


def ingest(
    paths: Iterable[str | os.PathLike],
    workspace: str | os.PathLike | Workspace,
    *,
    date: str | datetime | None = None,
    fallback_date: str | datetime | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> IngestReport:
    """Register the imagery at ``paths`` in ``workspace`` (created if missing).

    All or nothing: on any error no scene of this call is recorded.
    """
    paths = list(paths)
    for path in paths:  # fail on a typo before creating a workspace
        if not Path(path).expanduser().exists():
            raise SitewatchError("no such file or folder; check the path", path)
    owns = not isinstance(workspace, Workspace)
    root = workspace.root if not owns else Path(workspace).expanduser().resolve()
    leftovers = _Leftovers(root)
    try:
        ws = Workspace.open(workspace, create=True) if owns else workspace
        try:
            scenes, skipped = describe(paths, date=date, fallback_date=fallback_date,
                                       georef_dir=root / GEOREF_DIR, on_progress=on_progress)
            report = IngestReport(skipped=skipped)
            _record(ws, scenes, report, {"paths": [str(p) for p in paths],
                                         "date": None if date is None else str(date)})
        finally:
            if owns:
                ws.close()
    except BaseException:
        leftovers.remove()
        raise
    return report


class _Leftovers:
    """Files an ingest call creates before its transaction, removed again if the call fails."""

    def __init__(self, root: Path):
        self.root = root
        self.root_existed = root.exists()
        self.gpkg_existed = (root / GPKG_NAME).exists()
        georef = root / GEOREF_DIR
        self.vrts_before = set(georef.rglob("*.vrt")) if georef.is_dir() else set()

    def remove(self) -> None:
        if not self.root_existed:
            shutil.rmtree(self.root, ignore_errors=True)
            return
        georef = self.root / GEOREF_DIR
        for vrt in (set(georef.rglob("*.vrt")) if georef.is_dir() else set()) - self.vrts_before:
            vrt.unlink(missing_ok=True)
        if not self.gpkg_existed:
            (self.root / GPKG_NAME).unlink(missing_ok=True)


def _record(ws: Workspace, scenes: list[Scene], report: IngestReport, parameters: dict) -> None:
    seen: dict[str, str] = {}
    started = now_iso()
    with ws.transaction() as txn:
        for scene in scenes:
            if scene.source in seen:
                continue
            seen[scene.source] = scene.scene_id
            row = scene.to_row()
            existing = ws.rows("scenes", "source = ?", (scene.source,))
            if not existing:
                txn.insert("scenes", row)
                report.added.append(row["scene_id"])
            elif existing[0]["fingerprint"] == row["fingerprint"]:
                report.unchanged.append(existing[0]["scene_id"])
            else:
                txn.delete("scenes", "fid = ?", (existing[0]["fid"],))
                txn.insert("scenes", row)
                report.updated.append(row["scene_id"])
        if report.added or report.updated:
            txn.insert("runs", {
                "run_id": f"ingest-{uuid.uuid4().hex[:12]}", "stage": "ingest",
                "started_at": started, "finished_at": now_iso(), "status": "ok",
                "sitewatch_version": __version__, "parameters": parameters,
                "inputs": {"added": report.added, "updated": report.updated},
            })


def _describe(candidate: discover.Candidate, georef_dir: Path | None) -> list[Scene]:
    if candidate.kind == "stac":
        return [stac.describe_item(item) for item in stac.read_items(candidate.path)]
    if candidate.kind == "xbd":
        if georef_dir is None:
            raise SitewatchError("xBD tiles need a workspace to hold their georeference",
                                 candidate.path)
        return [xbd.describe(candidate.path, candidate.labels, georef_dir)]
    if candidate.kind == "eopatch":
        if georef_dir is None:
            raise SitewatchError("EOPatches need a workspace to hold their VRTs", candidate.path)
        return eopatch.describe(candidate.path, georef_dir)
    if candidate.kind == "band_folder":
        return [_describe_band_folder(candidate)]
    return [_describe_file(candidate.path)]


def _describe_file(path: Path) -> Scene:
    sensor = sensors.sensor_from_name(path.name)
    probe = raster.describe_file(path)
    text = " ".join(str(v) for k, v in probe.properties.items() if "sensor" in k.lower())
    sensor = sensor or sensors.sensor_from_text(text)
    table = sensors.band_table(sensor, len(probe.bands))
    scene = raster.describe_file(path, band_specs=table) if table else probe
    scene.sensor = sensor
    acquired = dates.from_metadata(probe.properties)
    scene.acquired, scene.date_source = (acquired, "metadata") if acquired else (
        dates.from_name(path.name), "filename")
    return scene


def _describe_band_folder(candidate: discover.Candidate) -> Scene:
    folder = candidate.path
    band_files = dict(candidate.band_files)
    names = [p.name for p in band_files.values()]
    sensor = sensors.sensor_from_name(names[0]) or sensors.sensor_from_name(folder.name)
    if sensor is None and set(band_files) <= set(sensors.SENTINEL2):
        sensor = "sentinel-2"
    specs = sensors.SENTINEL2 if sensor == "sentinel-2" else None
    landsat = sensors.landsat_band_specs(names[0]) if sensor == "landsat" else None
    if landsat is not None:  # by common name, thermal and QA bands left out
        numbered = {name: int(name.removeprefix("B")) for name in band_files}
        band_files = {name: path for name, path in band_files.items()
                      if numbered[name] in landsat}
        specs = {name: landsat[numbered[name]] for name in band_files}
    scene = raster.describe_band_files(folder, band_files, band_specs=specs,
                                       nodata=0.0 if sensor == "sentinel-2" else None)
    scene.sensor = sensor
    sidecar = _oscd_date(folder)
    if sidecar is not None:
        scene.acquired, scene.date_source = sidecar, "sidecar"
        scene.properties["dates_file"] = str(folder.parent / "dates.txt")
    else:
        scene.acquired = dates.from_name(names[0]) or dates.from_name(folder.name)
        scene.date_source = "filename"
    return scene


def _oscd_date(folder: Path) -> datetime | None:
    """OSCD layout: ``<city>/imgs_N/`` takes ``date_N`` from ``<city>/dates.txt``."""
    dates_file = folder.parent / "dates.txt"
    if not dates_file.is_file() or not folder.name.startswith("imgs_"):
        return None
    key = f"date_{folder.name.removeprefix('imgs_')}"
    for line in dates_file.read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return dates.parse_user_date(value.strip())
    raise SitewatchError(f"has no {key} line for {folder.name}/", dates_file)


def _assign_dates(scenes: list[Scene], date: str | datetime | None,
                  fallback_date: str | datetime | None) -> None:
    for value, source, scenes_to_set in (
        (date, "user", scenes),
        (fallback_date, "fallback", [s for s in scenes if s.acquired is None]),
    ):
        if value is None:
            continue
        value = dates.parse_user_date(value) if isinstance(value, str) else dates.as_utc(value)
        for scene in scenes_to_set:
            scene.acquired, scene.date_source = value, source
    for scene in scenes:
        if scene.acquired is None:
            raise SitewatchError(
                "no acquisition date in its metadata or file name; give it with "
                "--date YYYY-MM-DD",
                scene.source,
            )
