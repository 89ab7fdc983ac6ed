"""The evidence report on a small simulated workspace: content, self-containment, determinism,
the analyst layer kept apart, degraded workspaces, and a safe output folder."""

import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape
from PIL import Image
from pypdf import PdfReader

import sitewatch
from conftest import simulated_stack
from sitewatch import SitewatchError, Workspace
from sitewatch.analyst.findings import site_findings
from sitewatch.analyst.records import add_assessment, add_event, add_note
from sitewatch.report import build as report_build
from sitewatch.report.build import MARKER, build_report
from sitewatch.report.figures import before_and_after, credit_line, key_frames, nice_length

JUDGEMENT = "The compound is a customs annex under construction."
EVENT_URL = "https://example.org/reports/annex?id=7&lang=en"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tracked simulated workspace (places, border, sites) with no analyst input."""
    root = tmp_path_factory.mktemp("report")
    # 8 dates: with 6 the destroyed building is not yet dated, and the second site of the
    # fixture was a one-date cloud the lifecycle now knows for one
    simulated_stack(root, seed=5, n_dates=8, size_m=(2400, 1800), aoi_name="site",
                    with_places=True)
    found = sitewatch.track(root / "ws", "site")
    assert len(found.sites) >= 2  # the fixture must give a full section and a table row
    return root / "ws"


@pytest.fixture(scope="module")
def analysed(workspace, tmp_path_factory):
    """A copy of the workspace with an assessment, an event and a note on its largest site,
    reported with one full section; the report is built twice into the same folder."""
    ws = tmp_path_factory.mktemp("analysed") / "ws"
    shutil.copytree(workspace, ws)
    with Workspace.open(ws) as w:
        sites = sorted(w.rows("sites"), key=lambda s: -s["area_m2"])
    largest = sites[0]["site_id"]
    add_assessment(ws, largest, JUDGEMENT, "probably", author="A. Analyst",
                   assessed="2019-09-01")
    add_event(ws, "2019-03-01", "construction_report", site_id=largest,
              description="Trucks seen entering", source="Local press", url=EVENT_URL,
              credibility="2", author="A. Analyst")
    add_note(ws, "Check the next pass for roofing.", subject=largest, author="B. Analyst")
    out = ws.parent / "out"
    first = build_report(ws, out, full_sites=1)
    html, pdf = first.html.read_bytes(), first.pdf.read_bytes()
    second = build_report(ws, out, full_sites=1)
    return ws, sites, first, (html, pdf), second


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def _pdf_text(path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def test_html_holds_every_site_and_its_findings_and_is_self_contained(analysed):
    ws, sites, result, _, _ = analysed
    html = result.html.read_text(encoding="utf-8")
    with Workspace.open(ws) as w:
        for site in sites:
            observations = w.rows("observations", "site_id = ?", (site["site_id"],),
                                  order_by="observed")
            assert site["site_id"] in html
            assert str(escape(site_findings(site, observations))) in html
    parser = _Images()
    parser.feed(html)
    # overview + before/after, timeline and time-lapse of the one full section
    assert len(parser.sources) == 4
    assert all(src.startswith(("data:image/png;base64,", "data:image/gif;base64,"))
               for src in parser.sources)
    assert not re.search(r"""src\s*=\s*["']?https?://""", html)
    assert "<link" not in html and "<script" not in html
    assert html.count("<h4>Automatic findings</h4>") == 1 and result.n_sites == len(sites)


def test_pdf_has_title_site_and_appendix_pages_and_names_every_site(analysed):
    _, sites, result, _, _ = analysed
    reader = PdfReader(result.pdf)
    assert len(reader.pages) == result.n_pages
    # title, AOI overview, one full site section, smaller-sites table, appendix
    assert result.n_pages >= 5
    text = _pdf_text(result.pdf)
    for site in sites:
        assert site["site_id"] in text
    assert "Appendix" in text and "Commands that reproduce this report" in text
    assert "sitewatch track" in text


def test_figures_are_written_and_the_time_lapse_animates(analysed):
    _, sites, result, _, _ = analysed
    largest = sites[0]["site_id"]
    names = {p.name for p in result.figures.iterdir()}
    assert {"site-overview.png", f"{largest}-before-after.png", f"{largest}-timeline.png",
            f"{largest}-timelapse.gif", f"{largest}-key-frames.png"} <= names
    assert not any(n.startswith(sites[1]["site_id"]) for n in names)  # table row only
    with Image.open(result.figures / f"{largest}-timelapse.gif") as gif:
        assert gif.n_frames >= 2
        assert gif.info["duration"] == 1000
    with Image.open(result.figures / f"{largest}-before-after.png") as png:
        assert "Software" not in png.info and png.width >= 800


def test_building_twice_gives_identical_bytes(analysed):
    _, _, _, (html, pdf), second = analysed
    assert second.html.read_bytes() == html
    assert second.pdf.read_bytes() == pdf
    assert (second.html.parent / MARKER).is_file()


def test_analyst_input_appears_in_its_own_labelled_section(analysed):
    _, _, result, _, _ = analysed
    html = result.html.read_text(encoding="utf-8")
    analyst = html[html.index('<div class="analyst">'):]
    analyst = analyst[:analyst.index("</div>")]
    assert "Analyst input (human judgement)" in analyst
    assert "Analyst assessments" in analyst and str(escape(JUDGEMENT)) in analyst
    assert "likely (55-80 %)" in analyst and "A. Analyst" in analyst
    assert "linked to this site by the analyst" in analyst
    assert "Collateral events" in analyst and "Local press" in analyst
    assert f'href="{escape(EVENT_URL)}"' in analyst and "2 probably true" in analyst
    assert "Check the next pass for roofing." in analyst
    automatic = html[html.index("<h4>Automatic findings</h4>"):html.index('<div class="analyst">')]
    assert JUDGEMENT not in automatic
    text = _pdf_text(result.pdf)
    assert "Analyst assessments" in text and "likely (55-80 %)" in text


def test_workspace_without_places_or_analyst_input(workspace, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws)
    with Workspace.open(ws) as w, w.transaction() as txn:
        txn.delete("places", "1 = 1")
        txn.delete("borders", "1 = 1")
        for site in w.rows("sites"):
            properties = site["properties"]
            properties["measurements"].update(places=[], border=None)
            properties["location"] = f"at MGRS {site['mgrs']}"
            txn.update("sites", site["fid"], {"properties": properties})
    result = build_report(ws, tmp_path / "out")
    html = result.html.read_text(encoding="utf-8")
    assert html.count("No analyst assessment, collateral event or note for this site.") == 2
    assert "at MGRS" in html and "From " not in html
    assert result.n_pages >= 5


def test_aoi_without_sites_says_none_were_found(workspace, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws)
    with Workspace.open(ws) as w, w.transaction() as txn:
        txn.delete("observations", "1 = 1")
        txn.delete("sites", "1 = 1")
    result = build_report(ws, tmp_path / "out", aoi="site", title="Nothing here")
    html = result.html.read_text(encoding="utf-8")
    assert "No changed sites were found in this AOI." in html and "<h1>Nothing here</h1>" in html
    assert result.n_sites == 0
    assert "No changed sites were found" in _pdf_text(result.pdf)


def test_foreign_or_unwritable_out_dir_is_refused_and_left_alone(workspace, tmp_path):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("keep me")
    with pytest.raises(SitewatchError, match="not made by 'sitewatch report'"):
        build_report(workspace, foreign)
    assert [p.name for p in foreign.iterdir()] == ["chapter1.tex"]
    a_file = tmp_path / "report.txt"
    a_file.write_text("keep me too")
    with pytest.raises(SitewatchError, match="not a directory"):
        build_report(workspace, a_file)
    with pytest.raises(SitewatchError, match="cannot write a report here"):
        build_report(workspace, a_file / "report")
    assert a_file.read_text() == "keep me too"
    with pytest.raises(SitewatchError, match="no stack for AOI 'elsewhere'"):
        build_report(workspace, tmp_path / "new", aoi="elsewhere")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt", "thesis"]


def test_a_mount_point_as_out_dir_is_refused_before_any_work(workspace, tmp_path, monkeypatch):
    mount = tmp_path / "usb"
    mount.mkdir()
    real_ismount = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda path: Path(path) == mount or
                        real_ismount(path))
    with pytest.raises(SitewatchError, match="is a mount point") as info:
        build_report(workspace, mount)
    assert str(mount / "report") in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["usb"]


def test_a_failed_build_leaves_the_previous_report(analysed, monkeypatch):
    ws, _, result, _, _ = analysed
    before = result.html.read_bytes()

    def broken(content, path):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_build, "write_pdf", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_report(ws, result.html.parent, full_sites=1)
    assert result.html.read_bytes() == before and result.pdf.is_file()
    assert [p.name for p in result.html.parent.parent.iterdir()
            if p.name.startswith(".")] == []


def test_credit_line_names_the_source_and_years():
    s2 = {"sensor": "sentinel-2", "platform": "sentinel-2a", "properties": {}}
    assert credit_line([{**s2, "acquired": "2018-09-15T08:03:00Z"},
                        {**s2, "acquired": "2019-08-15T08:03:00Z"}]) == \
        "Contains modified Copernicus Sentinel data 2018-2019"
    assert credit_line([{**s2, "acquired": "2016-01-01", "properties":
                         {"sitewatch:simulated": True}}]) == \
        "Simulated imagery (sitewatch simulator)"
    assert credit_line([{"sensor": None, "platform": "naip", "acquired": "2012-06-01"},
                        {"sensor": None, "platform": "naip", "acquired": "2014-06-01"}]) == \
        "Imagery: naip 2012, 2014"


def test_scale_bar_lengths_and_key_frames():
    assert nice_length(960.0) == 100.0 and nice_length(7010.0) == 1000.0
    assert nice_length(330.0) == 50.0
    days = ["2019-01-15", "2019-02-15", "2019-03-15", "2019-05-15", "2019-06-15", "2019-07-15"]
    assert key_frames(days, "2019-05-15") == [0, 2, 3, 5]
    assert key_frames(days, "2019-05-15", before="2019-02-15") == [0, 1, 3, 5]
    assert key_frames(days[:2], "2019-02-15") == [0, 1]


def test_before_and_after_skip_cloudy_dates():
    days = ["2019-01-15", "2019-02-15", "2019-03-15", "2019-04-15", "2019-05-15", "2019-06-15"]
    site = {"first_seen": "2019-04-15", "last_seen_unchanged": "2019-03-15"}
    obscured = np.array([0.0, 0.0, 0.6, 0.0, 0.1, 0.9])
    # the last unchanged date is cloudy: the clear date before it; the latest clear date after
    assert before_and_after(days, [0, 1, 3, 4], obscured, site) == (1, 4)
    assert before_and_after(days, [0, 1, 2, 3, 4], obscured, site) == (2, 4)
    # nothing clear after the change: the least obscured later date
    assert before_and_after(days, [0, 1], obscured, site) == (1, 3)
    # the stack starts with the change
    assert before_and_after(days, [0, 5], obscured, {"first_seen": "2019-01-15"}) == (None, 5)


def test_report_shows_the_warnings_a_detection_gave_about_itself():
    from sitewatch.report.document import ReportContent

    runs = [{"stage": "detect", "run_id": "detect-1", "parameters": {
                "method": "default",
                "diagnostics": {"warnings": ["widespread change: 41 % of the valid pixels"]}}},
            {"stage": "stack", "run_id": "stack-1", "parameters": {}}]
    content = ReportContent(title="t", version="0", workspace="ws", summary="s", aois=[],
                            workspace_notes=[], runs=runs, commands=[])
    assert content.warnings == ["detect run detect-1 (default): widespread change: 41 % of "
                                "the valid pixels."]


def test_the_summary_counts_what_track_left_out_by_kind(analysed):
    """The changes ``track`` read as not of interest (crop cycles, ploughed fields, polygons
    without an event) are counted in the AOI summary, each by its own kind."""
    ws, _, result, _, _ = analysed
    with Workspace.open(ws) as w:
        (run,) = w.rows("runs", "stage = 'sites'")
    left_out = run["parameters"]["discarded"]
    assert left_out  # the fixture must leave something out
    html = result.html.read_text(encoding="utf-8")
    sentence = re.search(r"Left out as not of interest: ([^.<]+)\.", html)
    assert sentence is not None
    words = {"seasonal_vegetation": "seasonal vegetation cycle",
             "unclassified": "change with no site-level event",
             "cultivation": "harvested or ploughed field"}
    for kind, n in left_out.items():
        plural = words[kind].replace("cycle", "cycles").replace("change ", "changes ").replace(
            "field", "fields")
        assert f"{n} {words[kind] if n == 1 else plural}" in sentence.group(1)
