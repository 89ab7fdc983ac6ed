"""``sitewatch demo``: the whole pipeline on the built-in simulated scenario.

Simulates the default border-compound scenario (:mod:`sitewatch.simulate`) for each requested
sensor, ingests the imagery into one workspace and imports the scenario's reference places and
border; then writes the scenario as a watch file (``watch.toml``: one AOI per sensor, see
:mod:`sitewatch.watch`) and runs it through stack, detect, sites, exports and report, ending with
a summary. Needs no network and no data beyond the package.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shapely.geometry import box

from sitewatch.detect import DetectResult
from sitewatch.errors import SitewatchError
from sitewatch.ingest import ingest
from sitewatch.places import import_places
from sitewatch.simulate import simulate
from sitewatch.sites import SitesResult
from sitewatch.stack import AOI, StackResult, from_place
from sitewatch.store import Workspace
from sitewatch.watchlist import run_watch

#: File that marks a directory as made by the demo, so a re-run may replace it.
MARKER = ".sitewatch-demo"
#: Pipeline stages the demo runs, in order.
STAGES = ("simulate", "ingest", "places", "stack", "detect", "sites", "exports", "report")
#: Sites listed per sensor in the summary (largest first).
SUMMARY_SITES = 5
#: The Sentinel-2 AOI: a circle around the border crossing holding every site, metres.
S2_AOI_RADIUS_M = 3500.0
CROSSING = "Al-Qaim border crossing"
#: The watch file the demo writes and runs, and its exports folder, inside the demo folder.
WATCH_FILE = "watch.toml"
EXPORTS = "exports"
REPORT = "report"


@dataclass
class SensorSummary:
    sensor: str
    scenes: int
    first: str
    last: str
    bands: list[str]
    resolutions_m: list[float]
    epsg: int | None
    mean_cloud_cover: float | None
    scenes_with_nodata: int
    stack: StackResult | None = None
    detections: list[DetectResult] = field(default_factory=list)
    sites: SitesResult | None = None

    def stack_text(self) -> str:
        if self.stack is None:
            return ""
        st, grid = self.stack, self.stack.grid
        used = st.included
        shifts = [max(abs(a.shift[0]), abs(a.shift[1])) for a in used if a.shift_applied]
        left_out = [f"{a.key[:10]} ({a.reason})" for a in st.acquisitions if not a.included]
        return (
            f"    stack {st.aoi.name!r}: {len(used)} of {len(st.acquisitions)} acquisitions on "
            f"{grid.width}x{grid.height} px at {grid.resolution:g} m, reference "
            f"{st.reference[:10]}, co-registration shifts up to "
            f"{max(shifts, default=0.0):.2f} px"
            + (f"; left out: {', '.join(left_out)}" if left_out else "")
        ) + "".join(
            f"\n    detect {d.method}: {100 * (d.changed_fraction or 0):.1f} % of valid pixels "
            f"changed ({d.dates[0]} .. {d.dates[-1]})" for d in self.detections
        ) + (self.sites_text() if self.sites is not None else "")

    def sites_text(self) -> str:
        found = self.sites
        dropped = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in found.discarded.items())
        lines = [f"\n    sites: {len(found.sites)} found"
                 + (f" ({dropped} left out)" if dropped else "")]
        for site in sorted(found.sites, key=lambda s: -s.measurements.area_m2)[:SUMMARY_SITES]:
            lines.append("\n      " + site_sentence(site))
        return "".join(lines)


@dataclass
class DemoSummary:
    """What the demo produced and found."""

    out_dir: Path
    workspace: Path
    seed: int
    sensors: list[SensorSummary] = field(default_factory=list)
    places: list[tuple[str, str]] = field(default_factory=list)
    borders: list[str] = field(default_factory=list)
    stages: tuple[str, ...] = STAGES
    watch_file: Path | None = None
    exports: dict[str, Path] = field(default_factory=dict)
    report: object | None = None  # sitewatch.report.build.ReportResult

    def text(self) -> str:
        lines = [f"sitewatch demo: simulated border-compound scenario (seed {self.seed})",
                 f"  workspace: {self.workspace} (open sitewatch.gpkg in QGIS)"]
        for s in self.sensors:
            cloud = "-" if s.mean_cloud_cover is None else f"{s.mean_cloud_cover:.1f} %"
            res = "/".join(f"{r:g}" for r in s.resolutions_m)
            lines.append(
                f"  {s.sensor}: {s.scenes} scenes {s.first} .. {s.last}, {len(s.bands)} bands "
                f"at {res} m, EPSG:{s.epsg}, mean cloud cover {cloud}, "
                f"{s.scenes_with_nodata} with nodata edges"
            )
            if s.stack is not None:
                lines.append(s.stack_text())
        lines.append("  reference places: " + ", ".join(f"{n} ({k})" for n, k in self.places))
        lines.append("  borders: " + ", ".join(self.borders))
        lines.append("  stages run: " + ", ".join(self.stages))
        if self.exports:
            lines.append("  exports: " + ", ".join(
                str(p.relative_to(self.out_dir)) for p in self.exports.values()))
        if self.report is not None:
            lines.append(f"  report: {self.report.html} and {self.report.pdf} "
                         f"({self.report.n_pages} pages)")
        if self.watch_file is not None:
            lines.append(f"  re-run with: sitewatch watch run {self.watch_file}")
        return "\n".join(lines)


def run_demo(
    out_dir: str | os.PathLike = "sitewatch-demo",
    *,
    sensors: Sequence[str] = ("s2", "vhr"),
    seed: int = 0,
    on_progress: Callable[[str], None] | None = None,
) -> DemoSummary:
    """Run the demo into ``out_dir`` (replacing a previous demo there) and summarise it."""
    out = Path(out_dir).expanduser().resolve()
    _prepare(out)
    workspace = out / "workspace"
    summary = DemoSummary(out_dir=out, workspace=workspace, seed=seed)
    places_file = None
    for sensor in sensors:
        if on_progress:
            on_progress(f"Simulating {sensor} imagery")
        result = simulate(out / f"imagery-{sensor}", sensor=sensor, seed=seed)
        if on_progress:
            on_progress(f"Ingesting {sensor} imagery")
        ingest([result.catalog_path], workspace)
        places_file = result.places_path
    if on_progress:
        on_progress("Importing reference places")
    if places_file is not None:
        import_places(places_file, workspace)
    with Workspace.open(workspace) as ws:
        rows = ws.rows("scenes", order_by="acquired")
        summary.places = [(p["name"], p["kind"]) for p in ws.rows("places", order_by="name")]
        summary.borders = [b["name"] for b in ws.rows("borders", order_by="name")]
    for sensor in sensors:
        sensor_rows = [r for r in rows if _sensor_of(r) == sensor]
        summary.sensors.append(_summarise(sensor, sensor_rows))
    with Workspace.open(workspace) as ws:
        aois = {s.sensor: (from_place(ws, CROSSING, S2_AOI_RADIUS_M, "border-crossing")
                           if s.sensor == "s2" else
                           _vhr_aoi([r for r in rows if _sensor_of(r) == s.sensor]))
                for s in summary.sensors}
    sensor_names = {_sensor_of(r): r["sensor"] for r in rows}
    summary.watch_file = _write_watch_file(out, places_file, [
        (aois[s.sensor], sensor_names[s.sensor]) for s in summary.sensors])
    run = run_watch(summary.watch_file, on_progress=on_progress)
    for sensor_summary, aoi_run in zip(summary.sensors, run.aois, strict=True):
        sensor_summary.stack = aoi_run.stack
        sensor_summary.detections = aoi_run.detections
        sensor_summary.sites = aoi_run.sites
    summary.exports = run.exports
    summary.report = run.report
    return summary


def site_sentence(site) -> str:
    """One line on a site: type, size, phases with dates, where (relative to the crossing)."""
    m, life = site.measurements, site.lifecycle
    crossing = next((p for p in m.places if p.kind == "border crossing"), None)
    where = crossing.phrase if crossing else m.location_phrase()
    phases = ", ".join(f"{p.name.replace('_', ' ')} {p.first_observed}"
                       + (f" (after {p.after})" if p.after else "") for p in life.phases)
    return (f"{site.site_id}: {life.change_type.replace('_', ' ')}, "
            f"{m.length_m:.0f} x {m.width_m:.0f} m, {where}; {phases}")


def _write_watch_file(out: Path, places_file: Path | None,
                      aois: Sequence[tuple[AOI, str]]) -> Path:
    """The demo as a watch file (docs/watch-file.md) in ``out``, so it can be edited and
    re-run with ``sitewatch watch run``."""
    lines = ['# The sitewatch demo as a watch file: edit it and run',
             f'#   sitewatch watch run {out / WATCH_FILE}',
             'workspace = "workspace"', f'exports = "{EXPORTS}"', f'report = "{REPORT}"', '',
             '[imagery]', 'sources = ["imagery-*/catalog.json"]', '']
    if places_file is not None:
        lines += ['[reference]', f'files = ["{places_file.relative_to(out).as_posix()}"]', '']
    for aoi, sensor in aois:
        lines += ['[[aoi]]', f'name = "{aoi.name}"']
        if aoi.name == "border-crossing":
            lines += [f'place = "{CROSSING}"', f'radius_m = {S2_AOI_RADIUS_M:g}']
        else:
            lines += ["bbox = [" + ", ".join(f"{v:.6f}" for v in aoi.polygon.bounds) + "]"]
        lines += [f'sensor = "{sensor}"', 'methods = ["default", "timeseries"]', '']
    path = out / WATCH_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _vhr_aoi(rows: list[dict]) -> AOI:
    """The area every VHR scene covers (the compound's surroundings), trimmed by 5 %."""
    common = rows[0]["geom"]
    for row in rows[1:]:
        common = common.intersection(row["geom"])
    west, south, east, north = common.bounds
    trim_x, trim_y = 0.05 * (east - west), 0.05 * (north - south)
    return AOI("compound", box(west + trim_x, south + trim_y, east - trim_x, north - trim_y))


def _prepare(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise SitewatchError(
                "exists and was not made by 'sitewatch demo'; choose another --out directory",
                out,
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by sitewatch demo; safe to delete\n", encoding="utf-8")


def _sensor_of(row: dict) -> str:
    return "s2" if row["sensor"] == "sentinel-2" else "vhr"


def _summarise(sensor: str, rows: list[dict]) -> SensorSummary:
    if not rows:
        raise SitewatchError(f"the simulated {sensor} imagery produced no scenes")
    clouds = [r["cloud_cover"] for r in rows if r["cloud_cover"] is not None]
    bands = rows[0]["bands"]
    return SensorSummary(
        sensor=sensor,
        scenes=len(rows),
        first=rows[0]["acquired"][:10],
        last=rows[-1]["acquired"][:10],
        bands=[b["name"] for b in bands],
        resolutions_m=sorted({b["resolution_m"] for b in bands}),
        epsg=rows[0]["epsg"],
        mean_cloud_cover=sum(clouds) / len(clouds) if clouds else None,
        scenes_with_nodata=sum(r["nodata_fraction"] > 0 for r in rows),
    )
