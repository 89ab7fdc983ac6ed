"""The report stage: a workspace's sites, imagery, analyst layer and provenance as one report.

Output folder::

    OUT/
      report.html           self-contained: CSS inline, every image a data: URI
      report.pdf            A4
      figures/              overview maps, before/after pairs, timelines (PNG), time-lapses
                            (GIF) and their key-frame strips (PNG)
      aoi-<name>.geojson    each AOI's outline, for the commands that reproduce the report
      .sitewatch-report     marks the folder as a report that the next one may replace

Sites are ordered by area, largest first; the largest ``full_sites`` of the report get a full
section with figures, the others a table row and their findings. Collateral events are shown
with a site when the analyst linked them to it or they lie within :data:`EVENT_RADIUS_M` of its
footprint.

The folder is built under a temporary name beside ``OUT`` and swapped in when complete, so a
failure leaves a previous report as it was. A non-empty ``OUT`` that is not a previous report
is refused. The content depends on the workspace only (no wall-clock time): the same workspace
gives byte-identical HTML and PDF.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sitewatch import geojson
from sitewatch.analyst.findings import findings_summary, site_findings
from sitewatch.errors import SitewatchError
from sitewatch.report.document import (
    AOISection,
    ReportContent,
    SiteSection,
    write_html,
    write_pdf,
)
from sitewatch.report.figures import StackImagery, overview_map, site_figures
from sitewatch.sites.measure import format_distance
from sitewatch.store import Workspace
from sitewatch.version import __version__

#: File that marks a directory as a sitewatch report, so the next report may replace it.
MARKER = ".sitewatch-report"
#: Sites with a full section (figures and all), the largest first; the rest are listed.
FULL_SITES = 12
#: Collateral events this close to a site's footprint are shown with it, metres.
EVENT_RADIUS_M = 1000.0


@dataclass
class ReportResult:
    """Where the report went and what it holds."""

    html: Path
    pdf: Path
    figures: Path
    n_sites: int
    n_pages: int  # of the PDF


def build_report(
    workspace: str | os.PathLike | Workspace,
    out_dir: str | os.PathLike,
    *,
    aoi: str | None = None,
    title: str | None = None,
    full_sites: int = FULL_SITES,
    on_progress: Callable[[str, float], None] | None = None,
) -> ReportResult:
    """Write the evidence report of ``workspace`` to the folder ``out_dir``.

    Parameters
    ----------
    workspace
        Workspace directory or open workspace.
    out_dir
        Report folder: created, or replaced when it holds a previous report.
    aoi
        Report on this AOI only (default: every AOI with a stack).
    title
        Title of the report (default: "sitewatch report: " and the AOI names).
    full_sites
        How many sites, the largest by area, get a full section with figures.
    on_progress
        Called with a message and the fraction done (0..1).

    Raises
    ------
    SitewatchError
        ``out_dir`` is a file, a non-empty folder that is not a report, or cannot be written;
        the AOI has no stack, or the workspace has none.
    """
    progress = on_progress or (lambda message, fraction: None)
    out = Path(out_dir).expanduser().resolve()
    _check_out(out)
    with Workspace.using(workspace) as ws:
        names = _aoi_names(ws, aoi)
        tmp = _temporary_dir(out)
        try:
            content = _gather(ws, names, tmp, title, max(0, full_sites), aoi, out, progress)
            progress("Writing the HTML report", 0.9)
            write_html(content, tmp / "report.html")
            progress("Writing the PDF report", 0.95)
            n_pages = write_pdf(content, tmp / "report.pdf")
            (tmp / MARKER).write_text("made by sitewatch report; safe to delete\n",
                                      encoding="utf-8")
            _swap(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    progress("Done", 1.0)
    return ReportResult(out / "report.html", out / "report.pdf", out / "figures",
                        content.n_sites, n_pages)


# -- gathering ------------------------------------------------------------------------------------
def _gather(ws: Workspace, names: list[str], tmp: Path, title: str | None, full_sites: int,
            aoi: str | None, out: Path, progress) -> ReportContent:
    figures_dir = tmp / "figures"
    figures_dir.mkdir()
    aoi_rows = {row["name"]: row for row in ws.rows("aois")}
    places, borders = ws.rows("places", order_by="name"), ws.rows("borders", order_by="name")
    events = ws.rows("events", order_by="occurred, event_id")
    notes = ws.rows("notes", order_by="created_at, fid")
    sites = {name: sorted(ws.rows("sites", "aoi = ?", (name,)),
                          key=lambda s: (-(s["area_m2"] or 0.0), s["site_id"])) for name in names}
    ranked = sorted((s for rows in sites.values() for s in rows),
                    key=lambda s: (-(s["area_m2"] or 0.0), s["site_id"]))
    full_ids = {s["site_id"] for s in ranked[:full_sites]}
    steps, done = len(full_ids) + len(names), 0
    sections, pairs, scene_ids, aoi_notes = [], [], set(), []
    for name in names:
        progress(f"Drawing the overview of {name}", 0.9 * done / steps)
        imagery = StackImagery.open(ws, name)
        outline = aoi_rows[name]["geom"] if name in aoi_rows else None
        overview = figures_dir / f"{name}-overview.png"
        shown = overview_map(imagery, overview, aoi_outline=outline, sites=sites[name],
                             places=places, borders=borders)
        done += 1
        full, others, aoi_pairs = [], [], []
        for site in sites[name]:
            site_id = site["site_id"]
            observations = ws.rows("observations", "site_id = ?", (site_id,),
                                   order_by="observed")
            section = SiteSection(
                site, site_findings(site, observations), None,
                assessments=ws.rows("assessments", "site_id = ?", (site_id,),
                                    order_by="assessed, assessment_id"),
                events=_events_near(imagery, site, events),
                notes=[n for n in notes if n["subject"] == site_id])
            if site_id in full_ids:
                progress(f"Drawing {site_id}", 0.9 * done / steps)
                section.figures = site_figures(imagery, figures_dir, site, observations,
                                               section.events)
                full.append(section)
                done += 1
            else:
                others.append(section)
            aoi_pairs.append((site, observations))
        scenes = imagery.all_scenes
        scene_ids |= {s["scene_id"] for s in scenes}
        damage = _damage_sentence(ws, name)
        aoi_notes.append(f"In {name}: {damage}" if damage else "")
        left_out = _left_out_sentence(ws, name)
        aoi_notes.append(f"In {name}: {left_out}" if left_out else "")
        summary = " ".join(filter(None, [findings_summary(aoi_pairs), damage, left_out]))
        sections.append(AOISection(name, summary, overview, shown,
                                   imagery.grid, imagery.dates, scenes, imagery.credit(),
                                   imagery.path, full, others))
        pairs += aoi_pairs
        if outline is not None:
            _write_aoi(tmp / f"aoi-{name}.geojson", name, outline)
    runs = _runs(ws, names)
    return ReportContent(
        title=title or f"sitewatch report: {', '.join(names)}",
        version=__version__,
        workspace=str(ws.root),
        summary=" ".join([findings_summary(pairs), *filter(None, aoi_notes)]),
        aois=sections,
        workspace_notes=[_about(n) for n in notes
                         if n["subject"] is None or n["subject"] in scene_ids],
        runs=runs,
        commands=_commands(ws, runs, [s.name for s in sections if s.name in aoi_rows], aoi,
                           title, out),
    )


def _aoi_names(ws: Workspace, aoi: str | None) -> list[str]:
    stacked = list(dict.fromkeys(r["aoi"] for r in ws.rows("rasters", "kind = 'stack'")))
    if aoi is not None:
        if aoi not in stacked:
            raise SitewatchError(f"no stack for AOI {aoi!r}; build one with 'sitewatch stack' "
                                 f"(stacked AOIs: {', '.join(stacked) or 'none'})", ws.root)
        return [aoi]
    if not stacked:
        raise SitewatchError("the workspace has no stacked AOI to report on; build one with "
                             "'sitewatch stack' and find its sites with 'sitewatch track'",
                             ws.root)
    return stacked


def _events_near(imagery: StackImagery, site: dict, events: Sequence[dict]) -> list[dict]:
    """The events linked to ``site`` or within :data:`EVENT_RADIUS_M` of its footprint, each
    with a ``relation`` saying which."""
    footprint = imagery.to_grid(site["geom"])
    near = []
    for event in events:
        if event["site_id"] == site["site_id"]:
            relation = "linked to this site by the analyst"
        elif event["geom"] is not None:
            distance = footprint.distance(imagery.to_grid(event["geom"]))
            if distance > EVENT_RADIUS_M:
                continue
            relation = ("inside the site's footprint" if distance == 0
                        else f"{format_distance(distance)} from the site's footprint")
        else:
            continue
        near.append({**event, "relation": relation})
    return near


def _about(note: dict) -> dict:
    """A workspace or scene note, its subject (a scene) prefixed to the text."""
    if note["subject"] is None:
        return note
    return {**note, "text": f"On scene {note['subject']}: {note['text']}"}


def _damage_sentence(ws: Workspace, aoi: str) -> str | None:
    """The damage count of the AOI's newest sites run as a sentence ("37 of 120 structures
    destroyed or heavily damaged in 0.80 km² (...)."), or None if it counted no buildings."""
    from sitewatch.sites.damage import stored_damage

    damage = stored_damage(ws, aoi)
    if not damage:
        return None
    sentence = damage["sentence"]
    return sentence[0].upper() + sentence[1:] + "."


#: How the report names the changes ``track`` leaves out as not of interest
#: (:data:`sitewatch.sites.lifecycle.NOT_OF_INTEREST`).
LEFT_OUT_WORDS = {"cultivation": ("harvested or ploughed field", "harvested or ploughed fields"),
                  "seasonal_vegetation": ("seasonal vegetation cycle",
                                          "seasonal vegetation cycles"),
                  "transient": ("change that reverted (cloud, shadow, flood water)",
                                "changes that reverted (cloud, shadow, flood water)"),
                  "unclassified": ("change with no site-level event",
                                   "changes with no site-level event")}


def _left_out_sentence(ws: Workspace, aoi: str) -> str | None:
    """What the AOI's newest sites run left out as not of interest, by kind ("Left out as not
    of interest: 3 harvested or ploughed fields, 1 seasonal vegetation cycle."), or None."""
    runs = [r for r in ws.rows("runs", "stage = 'sites'", order_by="started_at DESC, run_id DESC")
            if (r["inputs"] or {}).get("aoi") == aoi]
    counts = (runs[0]["parameters"] or {}).get("discarded") if runs else None
    if not counts:
        return None
    words = {kind: LEFT_OUT_WORDS.get(kind, (kind.replace("_", " "),) * 2) for kind in counts}
    kinds = ", ".join(f"{n} {words[kind][n != 1]}" for kind, n in sorted(counts.items()))
    return f"Left out as not of interest: {kinds}."


def _runs(ws: Workspace, names: list[str]) -> list[dict]:
    """The runs that concern the reported AOIs (and those of no AOI: ingest), oldest first."""
    aoi_of = {r["run_id"]: r["aoi"] for r in ws.rows("rasters") if r["run_id"]}
    runs = []
    for run in ws.rows("runs", order_by="started_at, run_id"):
        aoi = (run["inputs"] or {}).get("aoi") or aoi_of.get(run["run_id"])
        if aoi is None or aoi in names:
            runs.append(run)
    return runs


def _commands(ws: Workspace, runs: list[dict], outlined: list[str], aoi: str | None,
              title: str | None, out: Path) -> list[str]:
    """Shell commands that redo the runs, import the places and rebuild this report."""
    workspace = ["-w", str(ws.root)]
    methods = {r["run_id"]: (r["properties"] or {}).get("method")
               for r in ws.rows("rasters", "kind LIKE 'change:%'")}
    sources = sorted({r["source"] for r in (*ws.rows("places"), *ws.rows("borders"))
                      if r["source"]})
    places = [["sitewatch", "places", "import", source, *workspace] for source in sources]
    commands: list[list[str]] = []
    for run in runs:
        parameters, inputs = run["parameters"] or {}, run["inputs"] or {}
        stage = run["stage"]
        if stage == "ingest":
            commands.append(["sitewatch", "ingest", *parameters.get("paths", []), *workspace]
                            + (["--date", parameters["date"]] if parameters.get("date") else []))
        elif stage == "stack":
            commands += places
            places = []
            commands.append(_stack_command(workspace, parameters, inputs["aoi"], outlined))
        elif stage == "detect" and run["run_id"] in methods:
            name = next(r["aoi"] for r in ws.rows("rasters", "run_id = ?", (run["run_id"],)))
            command = ["sitewatch", "detect", *workspace, "--aoi", name,
                       "--method", methods[run["run_id"]]]
            if methods[run["run_id"]] != "timeseries" and parameters.get("dates"):
                command += ["--dates", *parameters["dates"]]
            commands.append(command)
        elif stage == "sites":
            damage = parameters.get("damage") or {}
            commands.append(["sitewatch", "track", *workspace, "--aoi", inputs["aoi"],
                             "--min-area", f"{parameters['min_area_m2']:g}",
                             *(["--buildings", damage["buildings_file"]] if damage else [])])
    commands += places
    report = ["sitewatch", "report", *workspace, "--out", str(out)]
    report += (["--aoi", aoi] if aoi else []) + (["--title", title] if title else [])
    commands.append(report)
    return list(dict.fromkeys(shlex.join(c) for c in commands))


def _stack_command(workspace: list[str], parameters: dict, name: str,
                   outlined: list[str]) -> list[str]:
    command = ["sitewatch", "stack", *workspace, "--name", name]
    if name in outlined:
        command += ["--aoi", f"aoi-{name}.geojson"]
    options = (("--res", "resolution"), ("--sensor", "sensor"), ("--reference", "reference"),
               ("--normalise", "normalisation"), ("--coregister", "coregistration"),
               ("--min-clear", "min_clear_fraction"))
    for option, key in options:
        if parameters.get(key) is not None:
            value = parameters[key]
            command += [option, f"{value:g}" if isinstance(value, float) else str(value)]
    if parameters.get("epsg"):
        command += ["--crs", f"EPSG:{parameters['epsg']}"]
    if parameters.get("bands"):
        command += ["--bands", ",".join(parameters["bands"])]
    return command


def _write_aoi(path: Path, name: str, outline) -> None:
    document = geojson.feature_collection([geojson.feature(outline, {"name": name})])
    path.write_text(geojson.dumps(document) + "\n", encoding="utf-8")


# -- the output folder ----------------------------------------------------------------------------
def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SitewatchError("exists and is not a directory; choose another --out directory",
                             out)
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise SitewatchError("exists, is not empty and was not made by 'sitewatch report'; "
                             "choose another --out directory", out)
    if os.path.ismount(out):
        raise SitewatchError("is a mount point, and a report replaces its whole folder; give a "
                             f"folder inside it, such as {out / 'report'}", out)


def _temporary_dir(out: Path) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise SitewatchError(f"cannot write a report here ({exc.strerror or exc}); choose "
                             "another --out directory", out) from exc


def _swap(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` in place of ``out`` (two renames; the old report is
    deleted only once the new one is in place)."""
    tmp.chmod(0o755)
    old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
    try:
        if out.exists():
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except OSError:
            if old.exists():
                os.replace(old, out)  # the previous report back in its place
            raise
    except OSError as exc:
        raise SitewatchError(f"cannot put the report in place ({exc.strerror or exc}); choose "
                             "another --out directory", out) from exc
    shutil.rmtree(old, ignore_errors=True)
