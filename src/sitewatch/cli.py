"""The ``sitewatch`` command: thin wrappers over the Python API.

User mistakes (:class:`~sitewatch.errors.SitewatchError`) print one line on stderr and exit with
status 2; ``--debug`` shows the traceback instead.

Everything is printed through :class:`PlainConsole`: names, notes, paths and messages appear as
they are written, never read as Rich markup, and without terminal control sequences.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from sitewatch import api
from sitewatch.errors import SitewatchError, disk_full_message, is_disk_full
from sitewatch.version import __version__

app = typer.Typer(
    help="Watch places on Earth through satellite images: what was built, cleared or destroyed, "
    "when, how big, and where.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[ml]" and "[date]" are words, not markup
)
places_app = typer.Typer(help="Reference places and border lines of a workspace.",
                         no_args_is_help=True)
app.add_typer(places_app, name="places")

#: Terminal escape sequences: CSI (colours, cursor moves), OSC (window title, links, clipboard),
#: DCS/SOS/PM/APC strings, and the two-character escapes.
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
                              r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?|\x1b[ -/]*[0-~]?")
#: C0 controls but tab and newline, DEL, and the C1 controls.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` without terminal escape sequences and control characters (tab, newline kept)."""
    return _CONTROL_CHARACTER.sub("", _ESCAPE_SEQUENCE.sub("", text))


class PlainConsole(Console):
    """A console that prints every string as plain text.

    Strings given to :meth:`print`, table cells and titles all become text through
    :meth:`render_str`, which here never reads them as Rich markup or emoji codes (a place named
    ``Gate [/b]`` prints as it is) and removes terminal control characters, so text from a
    workspace, a file or a file name cannot drive the terminal. Styled words are given as
    :class:`~rich.text.Text`.
    """

    def render_str(self, text: str, **options) -> Text:
        """``text`` as plain, printable text, with the style and layout ``options`` of Rich."""
        return super().render_str(printable(text), **{**options, "markup": False,
                                                      "emoji": False})


class _DescriptionColumn(ProgressColumn):
    """The description of a progress task, as plain, printable text."""

    def render(self, task: Task) -> Text:
        return Text(printable(task.description), style="progress.description")


console = PlainConsole(stderr=True)
out = PlainConsole()
_state = {"debug": False}

WorkspaceOption = Annotated[
    Path, typer.Option("--workspace", "-w", help="Workspace directory (holds sitewatch.gpkg).")
]


def _version(value: bool) -> None:
    if value:
        print(f"sitewatch {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    _state["debug"] = debug


@contextlib.contextmanager
def _progress(description: str, total: float | None = None) -> Iterator[Progress]:
    columns = [SpinnerColumn(), _DescriptionColumn(),
               BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}")
               if total else TextColumn("{task.completed:.0f}"), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        progress.add_task(description, total=total)
        yield progress


@contextlib.contextmanager
def _fraction_progress(description: str) -> Iterator[Callable[[str, float], None]]:
    """A progress bar driven by ``step(message, fraction_done)`` callbacks."""
    with _progress(description, total=100) as progress:
        task = progress.task_ids[0]

        def step(message: str, fraction: float) -> None:
            progress.update(task, completed=100 * fraction, description=message)

        yield step


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Image files, band folders, STAC catalogs "
                                                "or items, or folders holding them.")],
    workspace: WorkspaceOption,
    date: Annotated[str | None, typer.Option(
        help="Acquisition date (ISO 8601) for imagery whose metadata and names give none; "
        "applies to every scene of this call.")] = None,
) -> None:
    """Register imagery in a workspace (created if missing) without copying pixels."""
    with _progress("Reading imagery") as progress:
        task = progress.task_ids[0]

        def step(path: str) -> None:
            progress.update(task, advance=1, description=f"Reading {Path(path).name}")

        report = api.ingest(paths, workspace, date=date, on_progress=step)
    for path, reason in report.skipped:
        console.print(Text("skipped", style="yellow"), f"{path}: {reason}", highlight=False)
    out.print(
        f"{len(report.added)} scene(s) added, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged, {len(report.skipped)} file(s) skipped "
        f"-> {workspace}"
    )


AoiOption = Annotated[str | None, typer.Option(
    help="AOI: a GeoJSON polygon file, or a lon/lat bbox 'min_lon,min_lat,max_lon,max_lat'.")]
PlaceOption = Annotated[str | None, typer.Option(
    help="AOI as a circle around this reference place of the workspace (with --radius).")]
RadiusOption = Annotated[float, typer.Option(help="Radius of a --place AOI, metres.")]
StacOption = Annotated[str, typer.Option(
    "--stac", help="STAC API URL, or a known catalogue: earth-search, planetary-computer, cdse.")]
CollectionOption = Annotated[list[str], typer.Option(
    "--collection", help="Collection to search (repeat for several), e.g. sentinel-2-l2a.")]
FromOption = Annotated[str | None, typer.Option(
    "--from", help="Earliest acquisition, YYYY-MM-DD (UTC).")]
ToOption = Annotated[str | None, typer.Option(
    "--to", help="Latest acquisition, YYYY-MM-DD (UTC, the whole day).")]
MaxCloudOption = Annotated[float | None, typer.Option(
    help="Leave out items with more cloud cover (eo:cloud_cover), percent.")]


@app.command()
def search(
    stac: StacOption,
    collection: CollectionOption,
    aoi: AoiOption = None,
    place: PlaceOption = None,
    radius: RadiusOption = 3000.0,
    workspace: Annotated[Path | None, typer.Option(
        "--workspace", "-w", help="Workspace holding the --place.")] = None,
    start: FromOption = None,
    end: ToOption = None,
    max_cloud: MaxCloudOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the items of a STAC API over an AOI and dates, oldest first."""
    rows = api.search(stac, collection, aoi=aoi, place=place, radius_m=radius,
                      workspace=workspace, start=start, end=end, max_cloud=max_cloud)
    _print_records(
        rows, as_json, "item(s)",
        ("item", "collection", "acquired", "platform", "cloud %", "baseline", "assets"),
        lambda row: (row["id"], row["collection"] or "", row["datetime"][:19],
                     row["platform"] or "",
                     "" if row["cloud_cover"] is None else f"{row['cloud_cover']:.0f}",
                     row["processing_baseline"] or "", str(len(row["assets"]))))


@app.command()
def fetch(
    workspace: WorkspaceOption,
    stac: StacOption,
    collection: CollectionOption,
    aoi: AoiOption = None,
    place: PlaceOption = None,
    radius: RadiusOption = 3000.0,
    name: Annotated[str | None, typer.Option(
        help="Name of the AOI (its folder under imagery/).")] = None,
    start: FromOption = None,
    end: ToOption = None,
    max_cloud: MaxCloudOption = None,
    assets: Annotated[str | None, typer.Option(
        help="Comma-separated asset keys to fetch (default: the collection's bands and mask)."
    )] = None,
    workers: Annotated[int, typer.Option(help="Assets read at once (1-16).")] = 4,
) -> None:
    """Fetch the AOI's window of every matching STAC item into the workspace, and ingest it.

    Only the tiles under the AOI are read (HTTP range requests); a re-run reads nothing it
    has, and a killed fetch resumes where it stopped.
    """
    with _progress("Fetching") as progress:
        task = progress.task_ids[0]

        def step(item_id: str, done: int, total: int) -> None:
            progress.update(task, advance=1, description=f"{item_id} {done}/{total}")

        run = api.fetch(workspace, stac, collection, aoi=aoi, place=place, radius_m=radius,
                        name=name, start=start, end=end, max_cloud=max_cloud,
                        assets=assets.split(",") if assets else None, workers=workers,
                        on_progress=step)
    report = run.report
    for item_id, reason in report.failed:
        console.print(Text("failed", style="red"), f"{item_id}: {reason}", highlight=False)
    out.print(f"{len(run.found)} item(s) found: {len(report.fetched)} fetched, "
              f"{len(report.complete)} already here, {len(report.outside)} outside the AOI, "
              f"{len(report.failed)} failed; {report.assets_read} asset window(s) read, "
              f"{report.bytes_written / 1e6:.1f} MB written -> {report.catalog}")
    if run.ingested is not None:
        ingested = run.ingested
        out.print(f"{len(ingested.added)} scene(s) added, {len(ingested.updated)} updated, "
                  f"{len(ingested.unchanged)} unchanged -> {workspace}")
    if report.failed:
        raise typer.Exit(1)


alerts_app = typer.Typer(help="Alerts of new sites and phases sent by watch runs.",
                         no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("list")
def alerts_list(
    workspace: WorkspaceOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the alerts of a workspace, oldest first, with their delivery."""
    _print_records(
        api.alerts(workspace), as_json, "alert(s)",
        ("alert", "event", "site", "phase", "created", "webhook", "email", "error"),
        lambda row: (row["alert_id"], row["event"], row["site_id"], row["phase"] or "",
                     row["created_at"][:19], (row["webhook_sent_at"] or "pending")[:19],
                     (row["email_sent_at"] or "pending")[:19], row["last_error"] or ""))


@app.command()
def scenes(
    workspace: WorkspaceOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the scenes registered in a workspace, oldest first."""
    rows = api.scenes(workspace)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} scene(s) in {workspace}")
    for column in ("scene", "acquired", "sensor", "bands", "res (m)", "size (px)", "CRS",
                   "nodata %", "cloud %"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["scene_id"], row["acquired"], row["sensor"] or "-",
            str(len(row["bands"])), f"{row['resolution_m']:g}",
            f"{row['width']}x{row['height']}", f"EPSG:{row['epsg']}" if row["epsg"] else "custom",
            f"{100 * row['nodata_fraction']:.1f}",
            "-" if row["cloud_cover"] is None else f"{row['cloud_cover']:.1f}",
        )
    out.print(table)


@app.command()
def aois(
    workspace: WorkspaceOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the AOIs of a workspace: the names that detect, track, report and export take."""
    _print_records(
        api.aois(workspace), as_json, f"AOI(s) in {workspace}",
        ("aoi", "area (km²)", "stack dates", "res (m)", "sites", "description"),
        lambda row: (row["name"], f"{row['area_km2']:.2f}",
                     (f"{len(row['stack_dates'])} ({row['stack_dates'][0]} to "
                      f"{row['stack_dates'][-1]})") if row["stack_dates"] else "not stacked",
                     "-" if row["resolution_m"] is None else f"{row['resolution_m']:g}",
                     str(row["sites"]), row["description"] or ""))


@places_app.command("import")
def places_import(
    geojson: Annotated[Path, typer.Argument(help="GeoJSON with Point places (name, kind) and "
                                            "LineString borders (name, left, right).")],
    workspace: WorkspaceOption,
) -> None:
    """Import reference places and border lines from GeoJSON (same name replaces)."""
    report = api.import_places(geojson, workspace)
    out.print(f"{len(report.places)} place(s) and {len(report.borders)} border(s) imported")
    if report.skipped:
        left_out = ", ".join(f"feature {n} ({kind})" for n, kind in report.skipped)
        console.print(f"warning: left out {left_out}: only Point places and LineString "
                      "borders are read", style="bold red", markup=False)


@places_app.command("list")
def places_list(
    workspace: WorkspaceOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the reference places and borders of a workspace."""
    places, borders = api.places(workspace)
    if as_json:
        print(json.dumps({"places": places, "borders": borders}, indent=2))
        return
    table = Table(title="Reference places")
    for column in ("name", "kind", "lat", "lon"):
        table.add_column(column)
    for place in places:
        table.add_row(place["name"], place["kind"], f"{place['lat']:.5f}", f"{place['lon']:.5f}")
    out.print(table)
    for border in borders:
        out.print(f"border {border['name']!r}: {border['left_name'] or '?'} on the left, "
                  f"{border['right_name'] or '?'} on the right, {border['vertices']} vertices")


@app.command()
def stack(
    workspace: WorkspaceOption,
    aoi: AoiOption = None,
    place: PlaceOption = None,
    radius: RadiusOption = 3000.0,
    name: Annotated[str | None, typer.Option(help="Name to record the AOI under.")] = None,
    res: Annotated[float | None, typer.Option(
        "--res", help="Pixel size in metres (default: finest common band resolution).")] = None,
    crs: Annotated[str | None, typer.Option(
        help="Output CRS as EPSG:code (default: UTM zone of the AOI centroid).")] = None,
    sensor: Annotated[str | None, typer.Option(
        help="Use only scenes of this sensor (needed when several cover the AOI).")] = None,
    bands: Annotated[str | None, typer.Option(
        help="Comma-separated bands (default: every band common to the scenes).")] = None,
    reference: Annotated[str | None, typer.Option(
        help="Reference acquisition day YYYY-MM-DD (default: the clearest).")] = None,
    normalise: Annotated[str, typer.Option(
        help="Radiometric normalisation: irmad, histogram or none.")] = "irmad",
    coregister: Annotated[str, typer.Option(help="Co-registration: global or none.")] = "global",
    min_clear: Annotated[float, typer.Option(
        help="Leave out acquisitions with a smaller clear-pixel fraction (0..1).")] = 0.3,
    memory_mb: Annotated[int, typer.Option(help="Working-memory budget, MiB.")] = 1024,
) -> None:
    """Build the analysis-ready stack of an AOI: one grid, co-registered, normalised, masked."""
    with _fraction_progress("Stacking") as step:
        result = api.stack(workspace, aoi=aoi, place=place, radius_m=radius, name=name,
                           resolution=res, crs=crs, sensor=sensor,
                           bands=bands.split(",") if bands else None, reference=reference,
                           normalisation=normalise, coregistration=coregister,
                           min_clear_fraction=min_clear, memory_mb=memory_mb,
                           on_progress=step)
    grid = result.grid
    out.print(f"stack of {result.aoi.name!r}: {len(result.included)} acquisition(s) x "
              f"{len(result.bands)} band(s) on EPSG:{grid.epsg}, {grid.width}x{grid.height} px "
              f"at {grid.resolution:g} m; reference {result.reference}")
    table = Table()
    for column in ("acquisition", "clear %", "shift x,y (px)", "confidence", "used", "note"):
        table.add_column(column)
    for a in result.acquisitions:
        confidence = "-" if a.shift_confidence is None else f"{a.shift_confidence:.2f}"
        table.add_row(a.key, f"{100 * a.clear_fraction:.0f}",
                      f"{a.shift[0]:+.2f},{a.shift[1]:+.2f}" + ("" if a.shift_applied else " *"),
                      confidence, "yes" if a.included else "no", a.reason or "")
    out.print(table)
    out.print(f"-> {result.path}  (* shift not applied)")


@app.command()
def detect(
    workspace: WorkspaceOption,
    aoi: Annotated[str, typer.Option(help="Name of a stacked AOI (see 'sitewatch stack').")],
    method: Annotated[str, typer.Option(
        help="default, cva, irmad, pca-kmeans, index, or timeseries (all dates).")] = "default",
    dates: Annotated[tuple[str, str] | None, typer.Option(
        help="Two acquisition days BEFORE AFTER (YYYY-MM-DD) for a pairwise method "
        "(default: the first and the last).")] = None,
) -> None:
    """Detect change in the stack of an AOI and store the change rasters in the workspace."""
    with _fraction_progress("Detecting") as step:
        result = api.detect(workspace, aoi, method=method, dates=dates, on_progress=step)
    _print_detection(result)


@app.command()
def compare(
    before: Annotated[Path, typer.Argument(help="The older image (file or band folder).")],
    after: Annotated[Path, typer.Argument(help="The newer image.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for change.tif, score.tif.")],
    method: Annotated[str, typer.Option(
        help="default, cva, irmad, pca-kmeans or index.")] = "default",
    min_area: Annotated[float | None, typer.Option(
        help="Smallest site written to sites.geojson, m² (default: 20 pixels, at least 50 and "
             "at most 2000).")] = None,
    buildings: Annotated[Path | None, typer.Option(
        help="Pre-event building footprints (vector file or raster mask): count those "
             "destroyed or heavily damaged.")] = None,
) -> None:
    """One-shot change map and sites between two images, without a workspace."""
    with _fraction_progress("Comparing") as step:
        result = api.compare(before, after, out_dir, method=method, min_site_area_m2=min_area,
                             buildings=buildings, on_progress=step)
    _print_detection(result)
    if result.damage:
        out.print(result.damage["sentence"])


def _print_detection(result) -> None:
    changed = ("" if result.changed_fraction is None
               else f", {100 * result.changed_fraction:.2f} % of valid pixels changed")
    out.print(f"{result.method} on {' -> '.join(result.dates[:1] + result.dates[-1:])}"
              f"{changed}")
    for name, path in result.layers.items():
        out.print(f"  {name}: {path}")
    for warning in result.warnings:
        console.print(f"warning: {warning}", style="bold red", markup=False)


@app.command()
def track(
    workspace: WorkspaceOption,
    aoi: Annotated[str, typer.Option(help="Name of a stacked AOI.")],
    min_area: Annotated[float | None, typer.Option(
        help="Smallest site, m² (default: 20 pixels of the stack, at least 300 for a time "
             "series and 50 for a two-date stack, at most 2000).")] = None,
    buildings: Annotated[Path | None, typer.Option(
        help="Pre-event building footprints (vector file or raster mask): count those "
             "destroyed or heavily damaged.")] = None,
) -> None:
    """Find, measure, type and track the sites of an AOI from its stack (replaces its sites)."""
    with _fraction_progress("Tracking sites") as step:
        result = api.track(workspace, aoi, min_area_m2=min_area, buildings=buildings,
                           on_progress=step)
    dropped = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in result.discarded.items())
    out.print(f"{len(result.sites)} site(s) in {aoi!r}" + (f" ({dropped} left out as not of "
                                                          "interest)" if dropped else ""))
    if result.damage:
        out.print(f"Damage: {result.damage['sentence']}")
    _print_sites(api.sites(workspace, aoi=aoi))


@app.command()
def sites(
    workspace: WorkspaceOption,
    aoi: Annotated[str | None, typer.Option(help="Only the sites of this AOI.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_geojson: Annotated[bool, typer.Option("--geojson", help="Print a GeoJSON "
                                             "FeatureCollection (lon/lat).")] = False,
) -> None:
    """List the sites found in a workspace with their measurements and phases."""
    rows = api.sites(workspace, aoi=aoi)
    if as_json:
        print(json.dumps(rows, indent=2))
    elif as_geojson:
        import shapely.geometry

        from sitewatch import geojson

        features = [geojson.feature(
            None if r["geometry"] is None else shapely.geometry.shape(r["geometry"]),
            {k: v for k, v in r.items() if k not in ("observations", "geometry")}, r["site_id"])
            for r in rows]
        print(geojson.dumps(geojson.feature_collection(features), indent=2))
    else:
        _print_sites(rows)


def _print_sites(rows: list[dict]) -> None:
    table = Table()
    for column in ("site", "type", "status", "L x W (m)", "area (m²)", "first change",
                   "where"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["site_id"], row["change_type"].replace("_", " "), row["status"].replace("_", " "),
            f"{row['length_m']:.0f} x {row['width_m']:.0f}", f"{row['area_m2']:.0f}",
            f"{row['last_seen_unchanged']} .. {row['first_seen']}",
            row["properties"].get("location", ""),
        )
    out.print(table)


@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Argument(help="New directory for the imagery, STAC catalog "
                                            "and ground truth.")],
    sensor: Annotated[str, typer.Option(help="s2 (Sentinel-2-like, 10 m) or vhr (0.5 m "
                                        "RGB+NIR).")] = "s2",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same "
                                      "imagery.")] = 0,
    dates: Annotated[int, typer.Option(help="Number of acquisitions (monthly for "
                                       "border-compound, random revisits otherwise).")] = 12,
    scenario: Annotated[str, typer.Option(help="border-compound (the demo's), random (sites "
                                          "of every type, size and ground, with decoys) or "
                                          "random-decoys (decoys only).")] = "border-compound",
) -> None:
    """Simulate a multi-date scene series with ground truth (no download needed)."""
    with _progress(f"Simulating {dates} {sensor} dates"):
        result = api.simulate(out_dir, sensor=sensor, seed=seed, n_dates=dates,
                              scenario=scenario)
    out.print(f"{len(result.item_ids)} scenes -> {result.catalog_path}\n"
              f"ground truth -> {result.truth_path}\nplaces -> {result.places_path}")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the demo (replaced if a "
                                          "previous demo made it).")] = Path("sitewatch-demo"),
    sensor: Annotated[str, typer.Option(help="s2, vhr, or both.")] = "both",
    seed: Annotated[int, typer.Option(help="Random seed of the simulated scenario.")] = 0,
) -> None:
    """Simulate the default border-compound scenario and run every pipeline stage on it."""
    sensors = ("s2", "vhr") if sensor == "both" else (sensor,)
    with _progress("Running the demo", total=5 * len(sensors) + 1) as progress:
        task = progress.task_ids[0]

        def step(message: str) -> None:
            progress.update(task, advance=1, description=message)

        summary = api.demo(out_dir, sensors=sensors, seed=seed, on_progress=step)
    out.print(summary.text())


watch_app = typer.Typer(help="Watch files: what to watch, in one TOML file (see "
                        "docs/watch-file.md).", no_args_is_help=True)
app.add_typer(watch_app, name="watch")


@watch_app.command("run")
def watch_run(
    watch_files: Annotated[list[Path], typer.Argument(help="The watch file(s) (TOML).")],
    scheduler: Annotated[str | None, typer.Option(
        envvar="SITEWATCH_SCHEDULER", help="Dask scheduler address (tcp://host:port) to run "
        "the tiles on; 'inline' runs them in this process.")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Run the tiles on a local Dask cluster of this many worker processes.")] = None,
    tile_px: Annotated[int, typer.Option(help="Tile size, pixels (tiled runs).")] = 1024,
    overlap_px: Annotated[int, typer.Option(help="Tile overlap, pixels (tiled runs).")] = 64,
) -> None:
    """Run the whole pipeline for watch files: ingest what is new, then stack, detect and
    find sites in each AOI with new scenes (only the new acquisitions are stacked), and write
    the exports and report they ask for. AOIs are cut into tiles, run in this process or, with
    --workers or --scheduler, as Dask tasks."""
    with _progress("Running the watch file") as progress:
        task = progress.task_ids[0]

        def step(message: str) -> None:
            # "Tiles done: 5/12", "Fetching ITEM 3/10": the bar shows the count
            count = re.search(r"(\d+)/(\d+)$", message)
            progress.update(task, description=message,
                            **({"completed": int(count[1]), "total": int(count[2])} if count
                               else {}))
            if message.startswith("Dask dashboard"):
                console.print(message)

        if scheduler is None and workers is None and len(watch_files) == 1:
            result = api.watch_run(watch_files[0], on_progress=step)
            runs = [(run.name, "up to date, nothing run" if run.up_to_date else
                     f"{len(run.sites.sites)} site(s) from {len(run.stack.included)} "
                     "acquisitions") for run in result.aois]
            exports, reports, alerts = [result.exports], [result.report], [result.alerts]
        else:
            result = api.watch_run_scaled(watch_files, scheduler=scheduler, workers=workers,
                                          tile_px=tile_px, overlap_px=overlap_px,
                                          on_progress=step)
            runs = [(job.aoi.name, "up to date, nothing run" if job.up_to_date else
                     f"{len(job.sites.sites)} site(s) from {len(job.tiles)} tile(s)")
                    for job in result.run.jobs]
            exports, reports = list(result.exports.values()), list(result.reports.values())
            alerts = list(result.alerts.values())
    out.print(f"{result.new_scenes} new and {result.updated_scenes} updated scene(s)")
    for name, what in runs:
        out.print(f"  {name}: {what}")
    for files in exports:
        for name, path in files.items():
            out.print(f"  {name} -> {path}")
    for report in reports:
        if report is not None:
            out.print(f"  report -> {report.html}\n  report -> {report.pdf}")
    for sent_alerts in alerts:
        if sent_alerts is None:
            continue
        sent = sent_alerts.delivery
        out.print(f"  {len(sent_alerts.recorded)} new alert(s); sent {len(sent.webhook)} by "
                  f"webhook, {len(sent.email)} by email")
        for error in sent.errors:
            console.print(Text("alert not delivered", style="yellow"),
                          f"{error} (sent again on the next run)", highlight=False)


@app.command()
def train(
    dataset_dir: Annotated[Path, typer.Argument(help="OSCD-layout (<city>/imgs_1, imgs_2, cm), "
                                                "LEVIR-layout (A, B, label), SZTAKI AirChange "
                                                "or xBD (images, labels) folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for model.pt, model-card.md "
                                          "and train-log.csv.")],
    layout: Annotated[str, typer.Option(help="oscd, levir, sztaki or xbd.")] = "oscd",
    bands: Annotated[str | None, typer.Option(help="Comma-separated band names (default: "
                                              "all of the layout).")] = None,
    val_city: Annotated[list[str] | None, typer.Option(help="Held-out city (repeat for "
                                                       "more).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when "
                                               "present).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs [30].")] = None,
    steps_per_epoch: Annotated[int | None, typer.Option(help="Optimisation steps per epoch "
                                                        "[one pass over the pixels].")] = None,
    patch: Annotated[int | None, typer.Option(help="Patch side, pixels (multiple of 4) "
                                              "[64].")] = None,
    batch: Annotated[int | None, typer.Option(help="Patches per step [16].")] = None,
    lr: Annotated[float | None, typer.Option(help="AdamW learning rate [3e-3].")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay "
                                                       "[1e-4].")] = None,
    loss: Annotated[str | None, typer.Option(help="bce or bce+dice [bce+dice].")] = None,
    normalise: Annotated[str | None, typer.Option(help="Input standardisation: date (each "
                                                  "date by its own statistics) or dataset "
                                                  "[date].")] = None,
    widths: Annotated[str | None, typer.Option(help="Channels per scale, comma-separated "
                                               "[16,32,64].")] = None,
    change_fraction: Annotated[float | None, typer.Option(help="Share of patches centred on "
                                                          "a change pixel [0.5].")] = None,
    hard_fraction: Annotated[float | None, typer.Option(help="Share of patches centred on "
                                                        "pixels drawn by their loss in the "
                                                        "epoch before [0].")] = None,
    gain_jitter: Annotated[float | None, typer.Option(help="After-date gain jitter "
                                                      "[0.05].")] = None,
    offset_jitter: Annotated[float | None, typer.Option(help="After-date offset jitter "
                                                        "[0.01].")] = None,
    max_shift: Annotated[int | None, typer.Option(help="Largest misregistration "
                                                  "augmentation, pixels [1].")] = None,
    tta: Annotated[bool | None, typer.Option("--tta/--no-tta", help="Average predictions over "
                                             "flips and rotations [no].")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed [0].")] = None,
) -> None:
    """Train the learned change model (needs the [ml] extra: PyTorch). Unset options take the
    recipe's defaults, shown in brackets."""
    recipe = {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "patch": patch,
              "batch": batch, "lr": lr, "weight_decay": weight_decay, "loss": loss,
              "normalise": normalise, "change_fraction": change_fraction,
              "hard_fraction": hard_fraction, "gain_jitter": gain_jitter,
              "offset_jitter": offset_jitter, "max_shift": max_shift, "tta": tta, "seed": seed,
              "widths": tuple(int(w) for w in widths.split(",")) if widths else None}
    with _fraction_progress("Training the change model") as step:
        result = api.train(dataset_dir, out_dir, layout=layout,
                           bands=bands.split(",") if bands else None,
                           val_cities=val_city or (), device=device, on_progress=step,
                           **{k: v for k, v in recipe.items() if v is not None})
    out.print(f"weights -> {result.weights}\ncard -> {result.card}\nlog -> {result.log}")
    if result.validation:
        v = result.validation
        out.print(f"validation: F1 {v['f1']:.3f}, IoU {v['iou']:.3f}, precision "
                  f"{v['precision']:.3f}, recall {v['recall']:.3f}")


@app.command()
def report(
    workspace: WorkspaceOption,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.html, report.pdf "
                                          "and figures/ (replaced if a previous report made "
                                          "it).")],
    aoi: Annotated[str | None, typer.Option(help="Only this AOI (default: every AOI with a "
                                            "stack).")] = None,
    title: Annotated[str | None, typer.Option(help="Title of the report.")] = None,
    full_sites: Annotated[int, typer.Option(help="Largest sites given a full section; the "
                                            "rest are table rows.")] = 12,
) -> None:
    """Write the evidence report: overview maps, annotated before/after images, timelines,
    time-lapses, findings, analyst input and how to reproduce it, as HTML and PDF."""
    with _fraction_progress("Writing the report") as step:
        result = api.report(workspace, out_dir, aoi=aoi, title=title, full_sites=full_sites,
                            on_progress=step)
    out.print(f"{result.n_sites} site(s), {result.n_pages} PDF page(s)\n"
              f"html -> {result.html}\npdf -> {result.pdf}")


@app.command()
def serve(
    workspace: WorkspaceOption,
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs a "
                                      "token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8765,
    write: Annotated[bool, typer.Option("--write", help="Let the page add and edit analyst "
                                        "records (with the token printed at start).")] = False,
    token: Annotated[str | None, typer.Option(envvar="SITEWATCH_TOKEN",
                                              help="Write token (default: a new random "
                                              "one when writing).")] = None,
    report_dir: Annotated[Path | None, typer.Option("--report", help="Report folder the "
                                                    "page links to.")] = None,
) -> None:
    """Open the local web viewer: map, time slider, sites, before/after, analyst records."""
    api.serve(workspace, host=host, port=port, token=token, allow_write=write,
              report_dir=report_dir, on_ready=lambda ready: out.print(ready.message,
                                                                       highlight=False))


@app.command()
def export(
    target: Annotated[Path, typer.Argument(help="A folder (every format), or a file whose "
                                           "extension says the format: .geojson .gpkg .kml "
                                           ".kmz .csv.")],
    workspace: WorkspaceOption,
    aoi: Annotated[str | None, typer.Option(help="Only this AOI's sites.")] = None,
    format: Annotated[str | None, typer.Option(help="geojson, gpkg, kml, kmz or csv, when "
                                               "the file name does not say.")] = None,
) -> None:
    """Export sites, observations, reference places and the analyst layer for QGIS and
    Google Earth (KML time spans step through each site's history)."""
    for name, path in api.export(workspace, target, aoi=aoi, format=format).items():
        out.print(f"{name} -> {path}")


# -- analyst layer: assessments, collateral events, notes ---------------------------------------
assess_app = typer.Typer(help="Analyst assessments of sites, with ICD 203 estimative "
                         "confidence (kept apart from automatic findings).", no_args_is_help=True)
event_app = typer.Typer(help="Collateral events (strikes, visits, reports) with their sources.",
                        no_args_is_help=True)
note_app = typer.Typer(help="Free-text analyst notes about sites, scenes or the workspace.",
                       no_args_is_help=True)
analyst_app = typer.Typer(help="Export or import the analyst layer (assessments, events, notes) "
                          "as GeoJSON or CSV.", no_args_is_help=True)
app.add_typer(assess_app, name="assess")
app.add_typer(event_app, name="event")
app.add_typer(note_app, name="note")
app.add_typer(analyst_app, name="analyst")

ConfidenceHelp = ("ICD 203 word: almost no chance, very unlikely, unlikely, roughly even chance, "
                  "likely (probably), very likely, almost certain; or a percentage such as 70%.")
CredibilityHelp = ("Admiralty credibility of the information: 1 confirmed, 2 probably true, "
                   "3 possibly true, 4 doubtful, 5 improbable, 6 cannot be judged (digit or "
                   "words).")
KindHelp = "strike, visit, construction_report, demolition_report, protest or other."


def _given(**options: object) -> dict[str, object]:
    """The options the user gave (not None); an error if none was."""
    fields = {name: value for name, value in options.items() if value is not None}
    if not fields:
        flags = ", ".join("--" + name.replace("_", "-") for name in options)
        raise SitewatchError(f"nothing to change; give one or more of {flags}")
    return fields


@assess_app.command("add")
def assess_add(
    site: Annotated[str, typer.Argument(help="Site id (see 'sitewatch sites').")],
    judgement: Annotated[str, typer.Argument(help="The judgement, e.g. 'a military compound'.")],
    workspace: WorkspaceOption,
    confidence: Annotated[str, typer.Option(help=ConfidenceHelp)],
    author: Annotated[str | None, typer.Option(help="Who made the judgement.")] = None,
    date: Annotated[str | None, typer.Option(
        help="Day of the assessment, YYYY-MM-DD (default: today, UTC).")] = None,
    notes: Annotated[str | None, typer.Option(help="Reasoning or caveats.")] = None,
) -> None:
    """Record an analyst's judgement of a site."""
    row = api.add_assessment(workspace, site, judgement, confidence, author=author,
                             assessed=date, notes=notes)
    out.print(f"assessment {row['assessment_id']} of {row['site_id']}: {row['confidence']} "
              f"({_percent(row)})", highlight=False)


@assess_app.command("list")
def assess_list(
    workspace: WorkspaceOption,
    site: Annotated[str | None, typer.Option(help="Only the assessments of this site.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the analyst assessments, oldest first."""
    _print_records(
        api.assessments(workspace, site_id=site), as_json, "assessment(s) (analyst judgement)",
        ("id", "site", "judgement", "confidence", "assessed", "author", "notes"),
        lambda row: (row["assessment_id"], row["site_id"], row["judgement"],
                     f"{row['confidence']} ({_percent(row)})", row["assessed"],
                     row["author"] or "-", row["notes"] or ""))


def _print_records(rows: list[dict], as_json: bool, title: str, columns: tuple[str, ...],
                   cells: Callable[[dict], tuple[str, ...]]) -> None:
    """Records (analyst records, alerts, search results) as JSON, or as a table titled with
    their count and ``title``."""
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} {title}")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*cells(row))
    out.print(table)


@assess_app.command("edit")
def assess_edit(
    assessment_id: Annotated[str, typer.Argument(help="Assessment id (A-...).")],
    workspace: WorkspaceOption,
    site: Annotated[str | None, typer.Option(help="Site id.")] = None,
    judgement: Annotated[str | None, typer.Option(help="The judgement.")] = None,
    confidence: Annotated[str | None, typer.Option(help=ConfidenceHelp)] = None,
    author: Annotated[str | None, typer.Option(help="Who made the judgement.")] = None,
    date: Annotated[str | None, typer.Option(help="Day of the assessment, YYYY-MM-DD.")] = None,
    notes: Annotated[str | None, typer.Option(help="Reasoning or caveats ('' clears).")] = None,
) -> None:
    """Change an assessment."""
    fields = _given(site=site, judgement=judgement, confidence=confidence, author=author,
                    date=date, notes=notes)
    renamed = {"site": "site_id", "date": "assessed"}
    row = api.edit_assessment(workspace, assessment_id,
                              **{renamed.get(k, k): v for k, v in fields.items()})
    out.print(f"assessment {row['assessment_id']} of {row['site_id']}: {row['confidence']} "
              f"({_percent(row)})", highlight=False)


@assess_app.command("delete")
def assess_delete(
    assessment_id: Annotated[str, typer.Argument(help="Assessment id (A-...).")],
    workspace: WorkspaceOption,
) -> None:
    """Delete an assessment."""
    row = api.delete_assessment(workspace, assessment_id)
    out.print(f"assessment {row['assessment_id']} of {row['site_id']} deleted", highlight=False)


def _percent(row: dict) -> str:
    return f"{100 * row['probability_low']:.0f}-{100 * row['probability_high']:.0f} %"


@event_app.command("add")
def event_add(
    workspace: WorkspaceOption,
    date: Annotated[str, typer.Option(help="When it occurred: YYYY-MM-DD or an ISO date and "
                                      "time (UTC unless a zone is given).")],
    kind: Annotated[str, typer.Option(help=KindHelp)],
    lon: Annotated[float | None, typer.Option(help="Longitude, degrees (WGS84).")] = None,
    lat: Annotated[float | None, typer.Option(help="Latitude, degrees (WGS84).")] = None,
    site: Annotated[str | None, typer.Option(
        help="Site it concerns; without --lon/--lat the event is placed at its centroid.")] = None,
    description: Annotated[str | None, typer.Option(help="What happened.")] = None,
    source: Annotated[str | None, typer.Option(help="Where it was reported.")] = None,
    url: Annotated[str | None, typer.Option(help="http(s) link to the source.")] = None,
    credibility: Annotated[str | None, typer.Option(help=CredibilityHelp)] = None,
    author: Annotated[str | None, typer.Option(help="Who entered it.")] = None,
) -> None:
    """Record a collateral event from another source."""
    row = api.add_event(workspace, date, kind, lon=lon, lat=lat, site_id=site,
                        description=description, source=source, url=url,
                        credibility=credibility, author=author)
    out.print(f"event {row['event_id']}: {row['kind']} on {row['occurred']} at "
              f"{row['lat']:.5f}, {row['lon']:.5f}", highlight=False)


@event_app.command("list")
def event_list(
    workspace: WorkspaceOption,
    site: Annotated[str | None, typer.Option(help="Only the events of this site.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the collateral events in the order they occurred."""
    _print_records(
        api.events(workspace, site_id=site), as_json, "collateral event(s) (analyst input)",
        ("id", "occurred", "kind", "site", "lat", "lon", "credibility", "source", "description"),
        lambda row: (row["event_id"], row["occurred"], row["kind"].replace("_", " "),
                     row["site_id"] or "-", f"{row['lat']:.5f}", f"{row['lon']:.5f}",
                     row["credibility"] or "-",
                     " ".join(part for part in (row["source"], row["url"]) if part) or "-",
                     row["description"] or ""))


@event_app.command("edit")
def event_edit(
    event_id: Annotated[str, typer.Argument(help="Event id (E-...).")],
    workspace: WorkspaceOption,
    date: Annotated[str | None, typer.Option(help="When it occurred (ISO).")] = None,
    kind: Annotated[str | None, typer.Option(help=KindHelp)] = None,
    lon: Annotated[float | None, typer.Option(help="Longitude, degrees (with --lat).")] = None,
    lat: Annotated[float | None, typer.Option(help="Latitude, degrees (with --lon).")] = None,
    site: Annotated[str | None, typer.Option(help="Site it concerns.")] = None,
    description: Annotated[str | None, typer.Option(help="What happened.")] = None,
    source: Annotated[str | None, typer.Option(help="Where it was reported.")] = None,
    url: Annotated[str | None, typer.Option(help="http(s) link to the source.")] = None,
    credibility: Annotated[str | None, typer.Option(help=CredibilityHelp)] = None,
    author: Annotated[str | None, typer.Option(help="Who entered it.")] = None,
) -> None:
    """Change a collateral event (its place changes only with --lon/--lat, not with --site)."""
    fields = _given(date=date, kind=kind, lon=lon, lat=lat, site=site, description=description,
                    source=source, url=url, credibility=credibility, author=author)
    renamed = {"site": "site_id", "date": "occurred"}
    row = api.edit_event(workspace, event_id, **{renamed.get(k, k): v for k, v in fields.items()})
    out.print(f"event {row['event_id']}: {row['kind']} on {row['occurred']} at "
              f"{row['lat']:.5f}, {row['lon']:.5f}", highlight=False)


@event_app.command("delete")
def event_delete(
    event_id: Annotated[str, typer.Argument(help="Event id (E-...).")],
    workspace: WorkspaceOption,
) -> None:
    """Delete a collateral event."""
    row = api.delete_event(workspace, event_id)
    out.print(f"event {row['event_id']} deleted", highlight=False)


@note_app.command("add")
def note_add(
    text: Annotated[str, typer.Argument(help="The note.")],
    workspace: WorkspaceOption,
    subject: Annotated[str | None, typer.Option(
        help="Site or scene id it is about (default: the whole workspace).")] = None,
    author: Annotated[str | None, typer.Option(help="Who wrote it.")] = None,
) -> None:
    """Attach a note to a site, a scene or the workspace."""
    row = api.add_note(workspace, text, subject=subject, author=author)
    out.print(f"note {row['note_id']} added about {row['subject'] or 'the workspace'}",
              highlight=False)


@note_app.command("list")
def note_list(
    workspace: WorkspaceOption,
    subject: Annotated[str | None, typer.Option(help="Only the notes about this site or "
                                                "scene.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the analyst notes, oldest first."""
    _print_records(
        api.notes(workspace, subject=subject), as_json, "note(s) (analyst input)",
        ("id", "about", "created", "author", "text"),
        lambda row: (str(row["note_id"]), row["subject"] or "workspace", row["created_at"],
                     row["author"] or "-", row["text"]))


@note_app.command("delete")
def note_delete(
    note_id: Annotated[int, typer.Argument(help="Note id (see 'sitewatch note list').")],
    workspace: WorkspaceOption,
) -> None:
    """Delete a note."""
    row = api.delete_note(workspace, note_id)
    out.print(f"note {row['note_id']} deleted", highlight=False)


@analyst_app.command("export")
def analyst_export(
    path: Annotated[Path, typer.Argument(help="Output .geojson, .json or .csv file (replaced).")],
    workspace: WorkspaceOption,
) -> None:
    """Write every assessment, event and note to one GeoJSON or CSV file."""
    counts = api.export_analyst(workspace, path)
    out.print(f"{counts['assessment']} assessment(s), {counts['event']} event(s) and "
              f"{counts['note']} note(s) -> {path}", highlight=False)


@analyst_app.command("import")
def analyst_import(
    path: Annotated[Path, typer.Argument(help="A .geojson, .json or .csv file written by "
                                         "'sitewatch analyst export' (or in its format).")],
    workspace: WorkspaceOption,
) -> None:
    """Import analyst records: all are checked first, then written together (same id updates)."""
    counts = api.import_analyst(workspace, path)
    for kind, outcome in counts.items():
        out.print(f"{kind}s: {outcome['added']} added, {outcome['updated']} updated, "
                  f"{outcome['unchanged']} unchanged", highlight=False)


def main() -> None:
    """Entry point of the ``sitewatch`` console script."""
    try:
        app(standalone_mode=False)
    except SitewatchError as exc:
        if _state["debug"]:
            raise
        console.print(Text("error:", style="bold red"), str(exc), highlight=False,
                      soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except (OSError, sqlite3.Error) as exc:
        if _state["debug"] or not is_disk_full(exc):
            raise
        console.print(Text("error:", style="bold red"), disk_full_message(exc), highlight=False,
                      soft_wrap=True)
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        sys.exit(getattr(exc, "exit_code", getattr(exc, "code", 0)))
    except Exception as exc:  # click usage errors
        if isinstance(exc, _usage_errors()):
            exc.show()
            sys.exit(exc.exit_code)
        raise


def _usage_errors() -> tuple[type[Exception], ...]:
    """The usage-error classes of click and of the copy of click that recent typer vendors."""
    import click

    classes = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as VendoredClickException
    except ImportError:  # typer using the click package itself
        pass
    else:
        classes.append(VendoredClickException)
    return tuple(classes)


if __name__ == "__main__":
    main()
