"""The report as documents: one self-contained HTML file and one A4 PDF with the same content.

The content (:class:`ReportContent`) is gathered by :mod:`sitewatch.report.build`; this module
only lays it out:

- **HTML** from the Jinja2 template ``templates/report.html.j2`` with the stylesheet
  ``templates/report.css`` inlined and every image embedded as a ``data:`` URI (RFC 2397), so
  the file opens offline and references nothing outside itself. Time-lapses are animated GIFs.
- **PDF** with ReportLab's platypus on A4 in the built-in Helvetica, written with
  ``invariant=1`` (fixed creation date and document id), so the same content gives the same
  bytes. Figures are embedded as JPEG (quality 90); time-lapses are printed as a strip of key
  frames.

Both have the same structure: title block (AOIs, imagery dates, number of scenes, sitewatch
version; no wall-clock time), summary, per AOI its overview map and one section per site
(automatic findings, measurements, before/after, timeline, time-lapse, then the analyst layer
set apart as human judgement), a table of the remaining smaller sites, and an appendix with the
runs and their parameters, the scenes, the stack grids and the commands that reproduce the
report.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import jinja2
from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    Image,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from sitewatch.report.figures import SiteFigures, words
from sitewatch.sites.measure import format_distance
from sitewatch.stack import Grid

TEMPLATES = Path(__file__).parent / "templates"
#: Longest parameter or input value printed in the appendix, characters (the full record stays
#: in the workspace's ``runs`` layer).
MAX_VALUE_CHARS = 240
#: Lists longer than this are printed as their length in the appendix.
MAX_LIST_ITEMS = 6
_MIME = {".png": "image/png", ".gif": "image/gif"}


# -- content --------------------------------------------------------------------------------------
@dataclass
class SiteSection:
    """One site: its record, the findings paragraph, figures (None for a table-only site) and
    the analyst layer. Each event carries ``relation``: how it was matched to the site."""

    site: dict
    findings: str
    figures: SiteFigures | None
    assessments: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)

    @property
    def site_id(self) -> str:
        return self.site["site_id"]

    @property
    def has_analyst_input(self) -> bool:
        return bool(self.assessments or self.events or self.notes)


@dataclass
class AOISection:
    """One AOI: its stack (grid, dates, scenes), overview map and sites, largest first."""

    name: str
    summary: str
    overview: Path
    overview_date: str
    grid: Grid
    dates: tuple[str, ...]
    scenes: list[dict]
    credit: str
    stack_path: str
    sites: list[SiteSection]  # full sections
    other_sites: list[SiteSection]  # listed in a table only

    @property
    def n_sites(self) -> int:
        return len(self.sites) + len(self.other_sites)


@dataclass
class ReportContent:
    """Everything the documents show."""

    title: str
    version: str
    workspace: str
    summary: str
    aois: list[AOISection]
    workspace_notes: list[dict]
    runs: list[dict]
    commands: list[str]

    @property
    def dates(self) -> list[str]:
        return sorted({d for aoi in self.aois for d in aoi.dates})

    @property
    def n_scenes(self) -> int:
        return len({s["scene_id"] for aoi in self.aois for s in aoi.scenes})

    @property
    def warnings(self) -> list[str]:
        """What the detection runs said about their own results when a result is implausible
        (widespread change, no no-change majority), one sentence a warning, with its run."""
        said = []
        for run in self.runs:
            parameters = run.get("parameters") or {}
            for warning in (parameters.get("diagnostics") or {}).get("warnings", []):
                said.append(f"{run['stage']} run {run['run_id']} "
                            f"({parameters.get('method', 'unknown method')}): {warning}.")
        return said

    @property
    def n_sites(self) -> int:
        return sum(aoi.n_sites for aoi in self.aois)

    @property
    def subtitle(self) -> str:
        """AOIs, imagery dates and scene count in one line."""
        dates = self.dates
        span = f"imagery {dates[0]} to {dates[-1]}" if dates else "no imagery"
        names = ", ".join(aoi.name for aoi in self.aois)
        return (f"AOI{'s' if len(self.aois) > 1 else ''}: {names}; {span}; "
                f"{self.n_scenes} scene{'s' if self.n_scenes != 1 else ''}")


# -- shared wording -------------------------------------------------------------------------------
def measurement_rows(site: Mapping) -> list[tuple[str, str]]:
    """The measurements table of a site as (label, value) rows: metres, square metres, degrees
    clockwise from true north, WGS84 lat/lon and MGRS."""
    m = (site.get("properties") or {}).get("measurements") or {}
    lat, lon = site["centroid_lat"], site["centroid_lon"]
    rows = [
        ("Change type", f"{words(site['change_type'])} (status: {words(site['status'])})"),
        ("First seen", _first_seen(site)),
        ("Area", f"{site['area_m2']:,.0f} m² ({site['area_m2'] / 1e4:.2f} ha)"),
        ("Length × width", f"{site['length_m']:.0f} × {site['width_m']:.0f} m"),
        ("Orientation", f"{site['orientation_deg']:.0f}° (long axis, from true north)"),
        ("Centroid", f"{abs(lat):.5f}° {'N' if lat >= 0 else 'S'}, "
                     f"{abs(lon):.5f}° {'E' if lon >= 0 else 'W'}"),
        ("MGRS", site["mgrs"] or "-"),
    ]
    probability = (site.get("properties") or {}).get("probability")
    if probability is not None:
        rows.append(("Probability", f"{probability:.2f} that it is {words(site['change_type'])} "
                                    "(calibrated on labelled sites)"))
    if m.get("rectangularity") is not None:
        rows.append(("Rectangularity", f"{m['rectangularity']:.2f} (area / oriented rectangle)"))
    for place in m.get("places") or []:
        rows.append((f"From {place['name']}",
                     f"{format_distance(place['distance_m'])} {place['direction']} "
                     f"(bearing {place['bearing_deg']:.0f}°)"))
    border = m.get("border")
    if border:
        rows.append(("Border", border["phrase"]))
    return rows


def _first_seen(site: Mapping) -> str:
    if not site.get("first_seen"):
        return "-"
    if site.get("last_seen_unchanged"):
        return (f"{site['first_seen']} (unchanged on {site['last_seen_unchanged']}: began "
                "between the two)")
    return site["first_seen"]


def assessment_line(assessment: Mapping) -> str:
    """ "likely (55-80 %)": the estimative term and its probability range."""
    low, high = assessment.get("probability_low"), assessment.get("probability_high")
    if low is None or high is None:
        return assessment["confidence"]
    return f"{assessment['confidence']} ({100 * low:.0f}-{100 * high:.0f} %)"


def site_row(site: Mapping) -> list[str]:
    """A smaller site as a table row: id, type, status, L × W, area, first seen, location."""
    return [site["site_id"], words(site["change_type"]), words(site["status"]),
            f"{site['length_m']:.0f} × {site['width_m']:.0f}", f"{site['area_m2']:,.0f}",
            site.get("first_seen") or "-", (site.get("properties") or {}).get("location", "")]


SITE_COLUMNS = ["Site", "Type", "Status", "L × W (m)", "Area (m²)", "First seen", "Where"]


def run_items(values: Mapping | None) -> list[tuple[str, str]]:
    """A run's parameters or inputs as (key, value) pairs for the appendix; long lists become
    their length and long values are cut at :data:`MAX_VALUE_CHARS`."""
    items = []
    for key in sorted(values or {}):
        value = values[key]
        if isinstance(value, list) and len(value) > MAX_LIST_ITEMS:
            text = f"[{len(value)} items]"
        else:
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            if len(text) > MAX_VALUE_CHARS:
                text = text[:MAX_VALUE_CHARS] + " …"
        items.append((key, text))
    return items


def scene_rows(scenes: Sequence[Mapping]) -> list[list[str]]:
    """Scenes as table rows: id, sensor, date, cloud cover, resolution, file name."""
    return [[s["scene_id"], s.get("sensor") or s.get("platform") or "-", s["acquired"][:10],
             "-" if s.get("cloud_cover") is None else f"{s['cloud_cover']:.0f} %",
             f"{s['resolution_m']:g} m", Path(s["source"]).name] for s in scenes]


SCENE_COLUMNS = ["Scene", "Sensor", "Date", "Cloud", "Pixel", "File"]


# -- HTML -----------------------------------------------------------------------------------------
def data_uri(path: Path) -> str:
    """The file as an RFC 2397 ``data:`` URI (base64)."""
    payload = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:{_MIME[Path(path).suffix.lower()]};base64,{payload}"


def write_html(content: ReportContent, path: Path) -> Path:
    """Render the report to the self-contained HTML file ``path``."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                                     autoescape=True, undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True)
    environment.filters.update(data_uri=data_uri, words=words)
    environment.globals.update(measurement_rows=measurement_rows,
                               assessment_line=assessment_line, site_row=site_row,
                               run_items=run_items, scene_rows=scene_rows, grid_text=grid_text,
                               method_text=METHOD_TEXT, commands_text=COMMANDS_TEXT,
                               SITE_COLUMNS=SITE_COLUMNS, SCENE_COLUMNS=SCENE_COLUMNS)
    html = environment.get_template("report.html.j2").render(report=content)
    path.write_text(html, encoding="utf-8")
    return path


# -- PDF ------------------------------------------------------------------------------------------
MARGIN = 15 * mm
TEXT_WIDTH = A4[0] - 2 * MARGIN
FIGURE_WIDTH = 140 * mm
PDF_JPEG_QUALITY = 90
ANALYST_BACKGROUND = colors.HexColor("#EAF2FA")
ANALYST_RULE = colors.HexColor("#0072B2")
AUTOMATIC_RULE = colors.HexColor("#E69F00")


def _styles() -> dict[str, ParagraphStyle]:
    sheet = getSampleStyleSheet()
    base = ParagraphStyle("body", parent=sheet["BodyText"], fontName="Helvetica", fontSize=9,
                          leading=11.5, alignment=TA_LEFT, spaceBefore=0, spaceAfter=3)
    return {
        "title": ParagraphStyle("title", parent=sheet["Title"], fontName="Helvetica-Bold",
                                fontSize=22, leading=27, alignment=TA_LEFT),
        "h1": ParagraphStyle("h1", parent=sheet["Heading1"], fontName="Helvetica-Bold",
                             fontSize=15, leading=18, spaceBefore=2, spaceAfter=6),
        "h2": ParagraphStyle("h2", parent=sheet["Heading2"], fontName="Helvetica-Bold",
                             fontSize=12.5, leading=15, spaceBefore=2, spaceAfter=4),
        "h3": ParagraphStyle("h3", parent=sheet["Heading3"], fontName="Helvetica-Bold",
                             fontSize=10, leading=12, spaceBefore=6, spaceAfter=3),
        "body": base,
        "small": ParagraphStyle("small", parent=base, fontSize=7.5, leading=9, spaceAfter=1),
        "caption": ParagraphStyle("caption", parent=base, fontSize=7.5, leading=9,
                                  textColor=colors.HexColor("#444444"), spaceAfter=4),
        "cell": ParagraphStyle("cell", parent=base, fontSize=7.5, leading=9, spaceAfter=0),
        "mono": ParagraphStyle("mono", parent=base, fontName="Courier", fontSize=7, leading=8.5,
                               spaceAfter=0.5, leftIndent=8),
        "analyst": ParagraphStyle("analyst", parent=base, fontSize=8.5, leading=10.5,
                                  spaceAfter=0),
        "analyst_head": ParagraphStyle("analyst_head", parent=base, fontName="Helvetica-Bold",
                                       fontSize=9.5, leading=12, textColor=ANALYST_RULE),
    }


def write_pdf(content: ReportContent, path: Path) -> int:
    """Lay the report out as an A4 PDF at ``path``; returns its number of pages."""
    styles = _styles()
    story = _title_page(content, styles)
    for aoi in content.aois:
        story += _aoi_pages(aoi, len(content.aois) > 1, styles)
    story += _appendix(content, styles)
    document = SimpleDocTemplate(
        str(path), pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
        bottomMargin=MARGIN, title=content.title, author=f"sitewatch {content.version}",
        creator=f"sitewatch {content.version}", subject=content.subtitle, invariant=1)

    def footer(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(colors.HexColor("#666666"))
        canvas.drawString(MARGIN, 8 * mm, f"{content.title}  -  sitewatch {content.version}")
        canvas.drawRightString(A4[0] - MARGIN, 8 * mm, f"page {doc.page}")
        canvas.restoreState()

    document.build(story, onFirstPage=footer, onLaterPages=footer)
    return document.page


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(text), style)


def _image(path: Path, width: float, max_height: float | None = None) -> Image:
    """The figure at ``path`` as a JPEG (quality :data:`PDF_JPEG_QUALITY`), which ReportLab
    embeds as it is (PNG pixels it would decode and compress again, several times slower)."""
    with PILImage.open(path) as image:
        aspect = image.height / image.width
        jpeg = io.BytesIO()
        image.convert("RGB").save(jpeg, format="JPEG", quality=PDF_JPEG_QUALITY)
    height = width * aspect
    if max_height is not None and height > max_height:
        width, height = max_height / aspect, max_height
    jpeg.seek(0)
    return Image(jpeg, width=width, height=height)


def _table(rows: list[list[str]], styles, widths: Sequence[float], *,
           header: bool = True) -> Table:
    cells = [[_p(str(value), styles["cell"]) for value in row] for row in rows]
    table = Table(cells, colWidths=list(widths), repeatRows=1 if header else 0)
    commands = [("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#CCCCCC")),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)]
    if header:
        commands += [("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#EEEEEE"))]
    table.setStyle(TableStyle(commands))
    return table


def _title_page(content: ReportContent, styles) -> list:
    story = [Spacer(1, 20 * mm), _p(content.title, styles["title"]), Spacer(1, 4 * mm),
             _p(content.subtitle, styles["body"]),
             _p(f"Generated by sitewatch {content.version} from the workspace "
                f"{content.workspace}.", styles["body"]), Spacer(1, 8 * mm),
             _p("Summary", styles["h1"]), _p(content.summary, styles["body"]),
             *[_p(f"Warning: {w}", styles["body"]) for w in content.warnings],
             Spacer(1, 4 * mm)]
    rows = [["AOI", "Imagery", "Scenes", "Grid", "Sites"]]
    for aoi in content.aois:
        span = f"{aoi.dates[0]} to {aoi.dates[-1]}" if aoi.dates else "-"
        rows.append([aoi.name, span, str(len(aoi.scenes)),
                     f"EPSG:{aoi.grid.epsg}, {aoi.grid.resolution:g} m", str(aoi.n_sites)])
    story.append(_table(rows, styles, [45 * mm, 50 * mm, 18 * mm, 45 * mm, 17 * mm]))
    story.append(Spacer(1, 4 * mm))
    story.append(_p("Automatic findings are written by sitewatch from the imagery; analyst "
                    "assessments, collateral events and notes are human judgement and are "
                    "shown apart, on a blue ground.", styles["small"]))
    if content.workspace_notes:
        story.append(Spacer(1, 4 * mm))
        story.append(_analyst_box("Analyst notes on the workspace (human judgement)",
                                  [_note_text(n) for n in content.workspace_notes], styles))
    story.append(PageBreak())
    return story


def _aoi_pages(aoi: AOISection, several: bool, styles) -> list:
    span = f"{aoi.dates[0]} to {aoi.dates[-1]}" if aoi.dates else "no dates"
    story = [_p(f"AOI {aoi.name}", styles["h1"]),
             _p(f"{len(aoi.dates)} dates ({span}) on EPSG:{aoi.grid.epsg} at "
                f"{aoi.grid.resolution:g} m; {aoi.n_sites} site(s).", styles["body"])]
    if several:
        story.append(_p(aoi.summary, styles["body"]))
    story += [Spacer(1, 3 * mm), _image(aoi.overview, TEXT_WIDTH, 200 * mm),
              _p(f"Overview of {aoi.name} on {aoi.overview_date}, true colour. Site outlines "
                 f"coloured by change type, labelled with the number ending their id. "
                 f"{aoi.credit}.", styles["caption"])]
    for section in aoi.sites:
        story += [PageBreak(), *_site_section(section, styles)]
    if aoi.other_sites:
        story += [PageBreak() if aoi.sites else Spacer(1, 4 * mm),
                  _p(f"Smaller sites of {aoi.name}", styles["h2"]),
                  _p("Listed without figures; the findings of each follow the table.",
                     styles["small"]),
                  _table([SITE_COLUMNS] + [site_row(s.site) for s in aoi.other_sites], styles,
                         [30 * mm, 22 * mm, 22 * mm, 18 * mm, 16 * mm, 18 * mm, 54 * mm])]
        for section in aoi.other_sites:
            story.append(Paragraph(f"<b>{escape(section.site_id)}</b>: "
                                   f"{escape(section.findings)}", styles["small"]))
    if not aoi.n_sites:
        story.append(_p("No changed sites were found in this AOI.", styles["body"]))
    story.append(PageBreak())
    return story


def _site_section(section: SiteSection, styles) -> list:
    site, figures = section.site, section.figures
    rows = measurement_rows(site)
    half = (len(rows) + 1) // 2
    paired = [[*rows[i], *(rows[i + half] if i + half < len(rows) else ("", ""))]
              for i in range(half)]
    table = _table(paired, styles, [24 * mm, 63 * mm, 24 * mm, 69 * mm], header=False)
    story = [_p(f"{site['site_id']}: {words(site['change_type'])}", styles["h2"]),
             _p("Automatic findings", styles["h3"]),
             _boxed([_p(section.findings, styles["body"]), Spacer(1, 2 * mm), table],
                    AUTOMATIC_RULE)]
    if figures is not None:
        before = figures.before or "no earlier clear image"
        story += [Spacer(1, 2 * mm), _image(figures.before_after, FIGURE_WIDTH),
                  _p(f"Before ({before}) and after ({figures.after}), true colour. Outline: "
                     "footprint on the after date with the sides of its minimum rotated "
                     "rectangle; dashed: the same footprint for reference.", styles["caption"]),
                  _image(figures.timeline, FIGURE_WIDTH),
                  _p("Timeline: phases from the date first observed; hatched, the interval in "
                     "which each began; ticks, clear observations.", styles["caption"]),
                  _image(figures.key_frames, FIGURE_WIDTH, 42 * mm),
                  _p(f"Key frames of the time-lapse ({len(figures.frame_dates)} clear dates "
                     f"from {figures.frame_dates[0]} to {figures.frame_dates[-1]}; the HTML "
                     "report animates all of them).", styles["caption"])]
    story.append(KeepTogether([_analyst_section(section, styles)]))
    return story


def _boxed(flowables: list, rule) -> Table:
    box = Table([[flowables]], colWidths=[TEXT_WIDTH])
    box.setStyle(TableStyle([("LINEBEFORE", (0, 0), (0, -1), 2.5, rule),
                             ("LEFTPADDING", (0, 0), (-1, -1), 6)]))
    return box


def _analyst_section(section: SiteSection, styles):
    if not section.has_analyst_input:
        return _analyst_box("Analyst input (human judgement)",
                            ["No analyst assessment, collateral event or note for this site."],
                            styles)
    lines: list[str] = []
    if section.assessments:
        lines.append("<b>Analyst assessments</b>")
        for a in section.assessments:
            lines.append(f"<b>{escape(assessment_line(a))}</b>: {escape(a['judgement'])} "
                         f"({escape(a.get('author') or 'unknown author')}, "
                         f"{escape(str(a['assessed'])[:10])})"
                         + (f". {escape(a['notes'])}" if a.get("notes") else ""))
    if section.events:
        lines.append("<b>Collateral events</b>")
        for e in section.events:
            lines.append(_event_markup(e))
    if section.notes:
        lines.append("<b>Notes</b>")
        lines += [escape(_note_text(n)) for n in section.notes]
    return _analyst_box("Analyst input (human judgement)", lines, styles, markup=True)


def _event_markup(event: Mapping) -> str:
    parts = [f"{escape(str(event['occurred'])[:16])} <b>{escape(words(event['kind']))}</b>"]
    if event.get("description"):
        parts.append(escape(event["description"]))
    source = escape(event.get("source") or "source not given")
    if event.get("url"):
        url = escape(event["url"], {'"': "&quot;"})
        source += f' <a href="{url}" color="#0072B2">{escape(event["url"])}</a>'
    parts.append(f"source: {source}")
    parts.append(f"credibility: {escape(event.get('credibility') or 'not rated')}")
    parts.append(escape(event["relation"]))
    if event.get("author"):
        parts.append(f"entered by {escape(event['author'])}")
    return "; ".join(parts)


def _note_text(note: Mapping) -> str:
    return (f"{note['text']} ({note.get('author') or 'unknown author'}, "
            f"{str(note['created_at'])[:10]})")


def _analyst_box(title: str, lines: Sequence[str], styles, *, markup: bool = False) -> Table:
    rows = [[_p(title, styles["analyst_head"])]]
    rows += [[Paragraph(line if markup else escape(line), styles["analyst"])] for line in lines]
    box = Table(rows, colWidths=[TEXT_WIDTH])
    box.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), ANALYST_BACKGROUND),
                             ("LINEBEFORE", (0, 0), (0, -1), 2.5, ANALYST_RULE),
                             ("LEFTPADDING", (0, 0), (-1, -1), 6),
                             ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                             ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)]))
    return box


def _appendix(content: ReportContent, styles) -> list:
    story = [_p("Appendix", styles["h1"]), _p("A. Method and runs", styles["h2"]),
             _p(METHOD_TEXT, styles["body"]), Spacer(1, 2 * mm)]
    for run in content.runs:
        finished = run.get("finished_at") or "not finished"
        head = (f"<b>{escape(run['stage'])}</b> {escape(run['run_id'])}: "
                f"{escape(run['started_at'])} to {escape(finished)}, {escape(run['status'])}, "
                f"sitewatch {escape(run['sitewatch_version'])}")
        items = [f"parameter {escape(k)} = {escape(v)}" for k, v in run_items(run["parameters"])]
        items += [f"input {escape(k)} = {escape(v)}" for k, v in run_items(run["inputs"])]
        story.append(KeepTogether([Paragraph(head, styles["small"]),
                                   *[Paragraph(i, styles["mono"]) for i in items],
                                   Spacer(1, 1.5 * mm)]))
    for aoi in content.aois:
        story += [_p(f"B. Scenes of {aoi.name}", styles["h2"]),
                  _p(aoi.credit + ".", styles["small"]),
                  _table([SCENE_COLUMNS] + scene_rows(aoi.scenes), styles,
                         [50 * mm, 28 * mm, 19 * mm, 13 * mm, 13 * mm, 57 * mm]),
                  _p(f"C. Stack grid of {aoi.name}", styles["h2"]),
                  _p(grid_text(aoi), styles["body"])]
    story += [_p("D. Commands that reproduce this report", styles["h2"]),
              _p(COMMANDS_TEXT, styles["small"])]
    story += [Paragraph(escape(c), styles["mono"]) for c in content.commands]
    return story


def grid_text(aoi: AOISection) -> str:
    """The stack grid in one sentence: CRS, pixel size, size, bounds and store path."""
    g = aoi.grid
    west, south, east, north = g.bounds
    return (f"EPSG:{g.epsg} ({g.crs.name}), {g.resolution:g} m pixels, {g.width} × {g.height} "
            f"px; bounds west {west:.0f}, south {south:.0f}, east {east:.0f}, north "
            f"{north:.0f} m; store {aoi.stack_path} in the workspace.")


METHOD_TEXT = (
    "Each AOI's scenes were put on one UTM grid as an analysis-ready stack (co-registration, "
    "radiometric normalisation, cloud and shadow masks); change was detected per pixel over "
    "the time series; changed pixels became site polygons whose temporal signature gives the "
    "change type and phases, each dated between the last observation before it and the first "
    "showing it. Sizes are the sides of the minimum-area oriented rectangle on the grid, "
    "corrected to the WGS84 ellipsoid; distances and bearings are geodesic on WGS84. The "
    "wording of the automatic findings uses the estimative terms of ICD 203. Every stage "
    "recorded its parameters in the workspace; they follow, oldest first (long values are cut; "
    "the full records are in the workspace's runs layer).")
COMMANDS_TEXT = ("Run from this report's folder: the AOI outlines the stacks were built on are "
                 "written beside the report as GeoJSON.")
