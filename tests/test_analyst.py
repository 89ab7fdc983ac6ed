"""The analyst layer: estimative confidence, assessments, events, notes, export/import, CLI."""

import csv
import json
import re
import sys
from datetime import UTC, datetime

import pytest
import shapely
from typer.testing import CliRunner

from sitewatch import SitewatchError, Workspace, cli
from sitewatch.analyst import (
    TERMS,
    add_assessment,
    add_event,
    add_note,
    confidence_for_probability,
    delete_assessment,
    delete_note,
    export_analyst,
    import_analyst,
    list_assessments,
    list_events,
    list_notes,
    parse_confidence,
    parse_credibility,
    update_assessment,
    update_event,
)

ANALYST_LAYERS = ("assessments", "events", "notes")
#: Centroids (lon, lat) of the fixture's sites; off the footprint centre, as geodesic ones are.
CENTROIDS = {"aoi-001": (40.9402, 34.3899), "aoi-002": (40.9702, 34.3999)}
ALL_LAYERS = ("sites", "observations", *ANALYST_LAYERS)


def _make_workspace(root):
    """A workspace with two sites and one scene, written directly (no pipeline)."""
    with Workspace.open(root, create=True) as ws, ws.transaction() as txn:
        for site_id, (lon, lat) in CENTROIDS.items():
            txn.insert("sites", {
                "geom": shapely.box(lon - 0.001, lat - 0.001, lon + 0.001, lat + 0.001),
                "site_id": site_id, "aoi": "aoi", "change_type": "new_construction",
                "status": "under_construction", "first_seen": "2019-05-15",
                "last_seen_unchanged": "2019-04-15", "area_m2": 20000.0, "length_m": 185.0,
                "width_m": 110.0, "orientation_deg": 0.0, "centroid_lon": lon,
                "centroid_lat": lat, "mgrs": "37S FU 7850 0711",
                "properties": {"phases": [], "measurements": {}, "location": ""}})
        txn.insert("scenes", {
            "geom": shapely.box(40.9, 34.3, 41.0, 34.5), "scene_id": "S-20190515",
            "source": "/data/s.tif", "fingerprint": "1", "acquired": "2019-05-15T00:00:00Z",
            "date_source": "filename", "crs": "EPSG:32637", "width": 10, "height": 10,
            "transform": [0, 10, 0, 0, 0, -10], "resolution_m": 10.0, "bands": [],
            "nodata_fraction": 0.0, "driver": "GTiff", "ingested_at": "2019-06-01T00:00:00Z"})
    return root


def _rows(root, layers=ALL_LAYERS):
    with Workspace.open(root) as ws:
        return {layer: ws.rows(layer) for layer in layers}


@pytest.fixture()
def ws(tmp_path):
    return _make_workspace(tmp_path / "ws")


def _populate(root):
    add_assessment(root, "aoi-001", "A military compound", "probably", author="ana",
                   assessed="2019-07-01", notes="walls and a guard tower")
    add_assessment(root, "aoi-002", "Agricultural storage", "roughly even odds")
    add_event(root, "2019-06-01", "strike", site_id="aoi-001", source="Press agency",
              url="https://example.org/report", credibility="2", description="air strike")
    add_event(root, "2019-06-02T10:30+03:00", "visit", lon=40.95, lat=34.41, author="ana")
    add_note(root, "re-check after the next acquisition", subject="aoi-002", author="ana")
    add_note(root, "AOI chosen from press reports")


# -- estimative confidence ------------------------------------------------------------------------
@pytest.mark.parametrize(("word", "term", "low", "high"), [
    ("almost no chance", "almost no chance", 0.01, 0.05),
    ("remote", "almost no chance", 0.01, 0.05),
    ("very unlikely", "very unlikely", 0.05, 0.20),
    ("highly improbable", "very unlikely", 0.05, 0.20),
    ("unlikely", "unlikely", 0.20, 0.45),
    ("improbable", "unlikely", 0.20, 0.45),
    ("roughly even chance", "roughly even chance", 0.45, 0.55),
    ("roughly even odds", "roughly even chance", 0.45, 0.55),
    ("likely", "likely", 0.55, 0.80),
    ("probable", "likely", 0.55, 0.80),
    ("probably", "likely", 0.55, 0.80),
    ("very likely", "very likely", 0.80, 0.95),
    ("highly probable", "very likely", 0.80, 0.95),
    ("almost certain", "almost certain", 0.95, 0.99),
    ("almost certainly", "almost certain", 0.95, 0.99),
    ("nearly certain", "almost certain", 0.95, 0.99),
    ("  Very_Likely ", "very likely", 0.80, 0.95),
    ("HIGHLY  PROBABLE", "very likely", 0.80, 0.95),
])
def test_every_term_and_synonym_parses_to_its_range(word, term, low, high):
    confidence = parse_confidence(word)
    assert (confidence.term, confidence.low, confidence.high) == (term, low, high)


def test_terms_are_ordered_and_tile_one_to_ninety_nine_percent():
    assert [c.term for c in TERMS] == ["almost no chance", "very unlikely", "unlikely",
                                       "roughly even chance", "likely", "very likely",
                                       "almost certain"]
    assert TERMS[0].low == 0.01 and TERMS[-1].high == 0.99
    assert all(a.high == b.low for a, b in zip(TERMS, TERMS[1:], strict=False))


@pytest.mark.parametrize(("text", "term"), [
    ("70%", "likely"), ("3 %", "almost no chance"), ("50%", "roughly even chance"),
    ("55%", "likely"), ("5%", "very unlikely"), ("90 percent", "very likely"),
    ("99%", "almost certain"), ("0%", "almost no chance"), ("100%", "almost certain"),
    ("30.5%", "unlikely"),
])
def test_percentage_maps_to_the_canonical_term_of_its_band(text, term):
    assert parse_confidence(text).term == term


def test_probability_and_range_text():
    assert confidence_for_probability(0.9).term == "very likely"
    assert confidence_for_probability(0.2).term == "unlikely"
    assert parse_confidence("probably").range_text == "55-80 %"
    with pytest.raises(SitewatchError, match="outside 0..1"):
        confidence_for_probability(1.2)


@pytest.mark.parametrize("text", ["sure", "150%", "-5%", "", "very"])
def test_unknown_confidence_lists_the_accepted_words(text):
    with pytest.raises(SitewatchError) as error:
        parse_confidence(text)
    message = str(error.value)
    assert "ICD 203" in message and "roughly even odds" in message and "probably" in message


def test_admiralty_credibility_scale():
    assert parse_credibility("2") == "2 probably true"
    assert parse_credibility("Probably True") == "2 probably true"
    assert parse_credibility("2 probably true") == "2 probably true"
    assert parse_credibility("confirmed by other sources") == "1 confirmed"
    assert parse_credibility("6") == "6 cannot be judged"
    with pytest.raises(SitewatchError, match="1 confirmed.*6 cannot be judged"):
        parse_credibility("7")


# -- assessments ----------------------------------------------------------------------------------
def test_assessment_is_stored_with_term_and_probability_range(ws):
    row = add_assessment(ws, "aoi-001", "A military compound", "Probably", author="ana")
    assert re.fullmatch(r"A-[0-9a-f]{8}", row["assessment_id"])
    assert (row["confidence"], row["probability_low"], row["probability_high"]) == (
        "likely", 0.55, 0.80)
    assert row["assessed"] == datetime.now(UTC).date().isoformat()
    assert list_assessments(ws) == [row]
    assert list_assessments(ws, site_id="aoi-002") == []
    stored = _rows(ws, ["assessments"])["assessments"][0]
    assert stored["confidence"] == "likely" and stored["site_id"] == "aoi-001"


def test_assessment_of_unknown_site_is_refused_and_changes_nothing(ws):
    add_assessment(ws, "aoi-001", "compound", "likely")
    before = _rows(ws)
    with pytest.raises(SitewatchError) as error:
        add_assessment(ws, "aoi-999", "compound", "likely")
    message = str(error.value)
    assert str(ws) in message and "aoi-999" in message
    assert "aoi-001" in message and "aoi-002" in message
    assert _rows(ws) == before


def test_assessment_update_and_delete(ws):
    row = add_assessment(ws, "aoi-001", "compound", "likely", notes="first look")
    changed = update_assessment(ws, row["assessment_id"], confidence="10%", notes="")
    assert (changed["confidence"], changed["probability_low"]) == ("very unlikely", 0.05)
    assert changed["notes"] is None and changed["judgement"] == "compound"
    with pytest.raises(SitewatchError, match="judgement is missing"):
        update_assessment(ws, row["assessment_id"], judgement=" ")
    with pytest.raises(SitewatchError, match="not an ISO date"):
        update_assessment(ws, row["assessment_id"], assessed="July 2019")
    assert list_assessments(ws) == [changed]
    assert delete_assessment(ws, row["assessment_id"]) == changed
    assert list_assessments(ws) == []
    with pytest.raises(SitewatchError, match="no assessment"):
        delete_assessment(ws, row["assessment_id"])


# -- events ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "problem"), [
    ({"kind": "bombing"}, "strike, visit, construction_report, demolition_report, protest, "
                          "other"),
    ({"url": "ftp://example.org/x"}, "not an http"),
    ({"url": "example.org/report"}, "not an http"),
    ({"credibility": "certain"}, "Admiralty"),
    ({"occurred": "June 2019"}, "not an ISO date"),
    ({"site_id": "aoi-999"}, "aoi-999"),
    ({"site_id": None, "lon": 40.9}, "both lon and lat"),
    ({"site_id": None}, "needs a place"),
    ({"site_id": None, "lon": 200.0, "lat": 34.0}, "not a WGS84 position"),
])
def test_invalid_event_is_refused_and_changes_nothing(ws, fields, problem):
    before = _rows(ws)
    arguments = {"occurred": "2019-06-01", "kind": "strike", "site_id": "aoi-001", **fields}
    with pytest.raises(SitewatchError) as error:
        add_event(ws, arguments.pop("occurred"), arguments.pop("kind"), **arguments)
    assert problem in str(error.value)
    assert _rows(ws) == before


def test_event_without_position_is_placed_at_its_site_centroid(ws):
    row = add_event(ws, "2019-06-01", "Construction report", site_id="aoi-002",
                    credibility="probably true")
    assert (row["lon"], row["lat"]) == CENTROIDS["aoi-002"]
    assert row["kind"] == "construction_report" and row["credibility"] == "2 probably true"
    assert re.fullmatch(r"E-[0-9a-f]{8}", row["event_id"])
    stored = _rows(ws, ["events"])["events"][0]["geom"]
    assert stored.equals(shapely.Point(CENTROIDS["aoi-002"]))


def test_event_time_is_stored_in_utc_and_place_kept_on_edit(ws):
    row = add_event(ws, "2019-06-02T10:30+03:00", "visit", lon=-3.5, lat=40.25)
    assert row["occurred"] == "2019-06-02T07:30:00Z"
    moved = update_event(ws, row["event_id"], site_id="aoi-001", occurred="2019-06-03")
    assert (moved["lon"], moved["lat"], moved["site_id"]) == (-3.5, 40.25, "aoi-001")
    to_site = update_event(ws, row["event_id"], lon=None, lat=None)
    assert (to_site["lon"], to_site["lat"]) == CENTROIDS["aoi-001"]
    assert list_events(ws, site_id="aoi-001") == [to_site]


# -- notes ----------------------------------------------------------------------------------------
def test_notes_about_a_site_a_scene_and_the_workspace(ws):
    on_site = add_note(ws, "re-check", subject="aoi-001")
    on_scene = add_note(ws, "haze over the east", subject="S-20190515", author="ana")
    general = add_note(ws, "AOI from press reports")
    assert general["subject"] is None and on_scene["author"] == "ana"
    assert list_notes(ws, subject="aoi-001") == [on_site]
    assert len(list_notes(ws)) == 3
    before = _rows(ws)
    with pytest.raises(SitewatchError, match="neither a site nor a scene"):
        add_note(ws, "x", subject="nothing")
    with pytest.raises(SitewatchError, match="text is missing"):
        add_note(ws, "   ")
    assert _rows(ws) == before
    assert delete_note(ws, on_scene["note_id"]) == on_scene
    assert [n["note_id"] for n in list_notes(ws)] == [on_site["note_id"], general["note_id"]]


def test_analyst_writes_never_touch_the_automatic_layers(ws):
    before = _rows(ws, ["sites", "observations"])
    _populate(ws)
    assert _rows(ws, ["sites", "observations"]) == before


# -- export and import ----------------------------------------------------------------------------
def _records(root):
    notes = [{k: v for k, v in n.items() if k != "note_id"} for n in list_notes(root)]
    return list_assessments(root), list_events(root), notes


@pytest.mark.parametrize("suffix", [".geojson", ".csv"])
def test_export_then_import_into_a_fresh_workspace_gives_equal_records(tmp_path, suffix):
    source = _make_workspace(tmp_path / "a")
    _populate(source)
    path = tmp_path / f"analyst{suffix}"
    assert export_analyst(source, path) == {"assessment": 2, "event": 2, "note": 2}
    target = _make_workspace(tmp_path / "b")
    counts = import_analyst(target, path)
    assert {kind: c["added"] for kind, c in counts.items()} == {
        "assessment": 2, "event": 2, "note": 2}
    assert _records(target) == _records(source)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_geojson_export_labels_every_record_as_analyst(ws, tmp_path):
    _populate(ws)
    path = tmp_path / "analyst.geojson"
    export_analyst(ws, path)
    features = json.loads(path.read_text())["features"]
    assert {f["properties"]["origin"] for f in features} == {"analyst"}
    by_record = {}
    for feature in features:
        by_record.setdefault(feature["properties"]["record"], []).append(feature)
    assert {k: len(v) for k, v in by_record.items()} == {"assessment": 2, "event": 2, "note": 2}
    assert all(f["geometry"] is None for f in by_record["assessment"] + by_record["note"])
    strike = next(f for f in by_record["event"] if f["properties"]["kind"] == "strike")
    assert strike["geometry"] == {"type": "Point", "coordinates": list(CENTROIDS["aoi-001"])}
    assert strike["properties"]["credibility"] == "2 probably true"


def test_reimport_does_not_duplicate_and_updates_changed_records(ws, tmp_path):
    _populate(ws)
    path = tmp_path / "analyst.csv"
    export_analyst(ws, path)
    before = _records(ws)
    again = import_analyst(ws, path)
    assert {kind: c["unchanged"] for kind, c in again.items()} == {
        "assessment": 2, "event": 2, "note": 2}
    assert _records(ws) == before
    rows = list(csv.DictReader(path.open(newline="")))
    rows[0]["judgement"] = "A police compound"
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    counts = import_analyst(ws, path)
    assert counts["assessment"] == {"added": 0, "updated": 1, "unchanged": 1}
    assessments = list_assessments(ws)
    assert len(assessments) == 2 and "A police compound" in [a["judgement"] for a in assessments]


def test_csv_export_quotes_formula_text_and_reads_it_back_as_written(ws, tmp_path):
    add_note(ws, "=HYPERLINK(\"http://evil\",\"click\")", subject="aoi-001")
    path = tmp_path / "analyst.csv"
    export_analyst(ws, path)
    (row,) = [r for r in csv.DictReader(path.open(newline="")) if r["record"] == "note"]
    assert row["text"] == "'=HYPERLINK(\"http://evil\",\"click\")"
    target = tmp_path / "b"
    _make_workspace(target)
    import_analyst(target, path)
    assert [n["text"] for n in list_notes(target)] == ["=HYPERLINK(\"http://evil\",\"click\")"]


def test_records_without_ids_are_recognised_on_reimport(ws, tmp_path):
    path = tmp_path / "by-hand.csv"
    path.write_text("record,site_id,judgement,confidence,assessed,occurred,kind,lon,lat\n"
                    "assessment,aoi-001,A depot,70%,2019-08-01,,,,\n"
                    "event,aoi-001,,,,2019-08-02,protest,40.5,34.25\n")
    first = import_analyst(ws, path)
    assert (first["assessment"]["added"], first["event"]["added"]) == (1, 1)
    again = import_analyst(ws, path)
    assert again["assessment"] == again["event"] == {"added": 0, "updated": 0, "unchanged": 1}
    assert [a["confidence"] for a in list_assessments(ws)] == ["likely"]
    assert [(e["kind"], e["lon"], e["lat"]) for e in list_events(ws)] == [("protest", 40.5, 34.25)]


def test_import_with_one_bad_row_writes_nothing_and_names_the_row(ws, tmp_path):
    add_assessment(ws, "aoi-001", "compound", "likely")
    before = _rows(ws)
    path = tmp_path / "analyst.csv"
    path.write_text("record,site_id,judgement,confidence,occurred,kind,url,text\n"
                    "assessment,aoi-002,storage,unlikely,,,,\n"
                    "event,aoi-001,,,2019-06-01,strike,ftp://nowhere,\n"
                    "note,,,,,,,fine note\n")
    with pytest.raises(SitewatchError) as error:
        import_analyst(ws, path)
    assert str(error.value).startswith(str(path)) and "row 2" in str(error.value)
    assert "ftp://nowhere" in str(error.value)
    assert _rows(ws) == before


def test_import_with_one_bad_feature_writes_nothing_and_names_the_feature(ws, tmp_path):
    _populate(ws)
    path = tmp_path / "analyst.geojson"
    export_analyst(ws, path)
    document = json.loads(path.read_text())
    document["features"][2]["properties"]["kind"] = "earthquake"
    path.write_text(json.dumps(document))
    target = _make_workspace(tmp_path / "fresh")
    before = _rows(target)
    with pytest.raises(SitewatchError, match=r"analyst\.geojson: feature 3: unknown event kind"):
        import_analyst(target, path)
    assert _rows(target) == before


@pytest.mark.parametrize(("feature", "problem"), [
    ({"record": "site", "origin": "analyst"}, "record 'site' is not one of"),
    ({"record": "assessment", "origin": "automatic", "site_id": "aoi-001",
      "judgement": "x", "confidence": "likely"}, "origin 'automatic'"),
    ({"record": "assessment", "site_id": "aoi-001", "judgment": "x", "confidence": "likely"},
     "unknown field(s) judgment"),
])
def test_import_refuses_foreign_or_misspelt_records(ws, tmp_path, feature, problem):
    path = tmp_path / "in.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": None, "properties": feature}]}))
    with pytest.raises(SitewatchError) as error:
        import_analyst(ws, path)
    assert "feature 1" in str(error.value) and problem in str(error.value)


def test_failed_export_leaves_the_existing_file_and_no_temporary_files(ws, tmp_path):
    _populate(ws)
    with pytest.raises(SitewatchError, match="unknown format"):
        export_analyst(ws, tmp_path / "analyst.kml")
    target = tmp_path / "out.geojson"
    target.mkdir()
    (target / "keep").write_text("old")
    with pytest.raises(SitewatchError, match="cannot write"):
        export_analyst(ws, target)
    assert (target / "keep").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.geojson", "ws"]


# -- command line ---------------------------------------------------------------------------------
def test_cli_add_list_edit_delete(ws, tmp_path):
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(cli.app, [*map(str, args)], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return result.output

    added = run("assess", "add", "-w", ws, "aoi-001", "A military compound", "--confidence",
                "probably", "--author", "ana")
    assessment_id = re.search(r"A-[0-9a-f]{8}", added).group()
    assert "likely (55-80 %)" in added
    listed = json.loads(run("assess", "list", "-w", ws, "--json"))
    assert [(a["assessment_id"], a["author"]) for a in listed] == [(assessment_id, "ana")]
    assert "A military compound" in run("assess", "list", "-w", ws, "--site", "aoi-001")
    assert "very likely (80-95 %)" in run("assess", "edit", "-w", ws, assessment_id,
                                          "--confidence", "85%")
    run("event", "add", "-w", ws, "--date", "2019-06-01", "--kind", "strike", "--site",
        "aoi-002", "--url", "https://example.org/r", "--credibility", "3")
    run("event", "add", "-w", ws, "--date", "2019-06-05", "--kind", "visit", "--lon", "-3.5",
        "--lat", "40.25")
    events = json.loads(run("event", "list", "-w", ws, "--json"))
    assert [(e["kind"], e["lon"], e["credibility"]) for e in events] == [
        ("strike", CENTROIDS["aoi-002"][0], "3 possibly true"), ("visit", -3.5, None)]
    assert "3 possibly true" in run("event", "list", "-w", ws)
    run("event", "delete", "-w", ws, events[1]["event_id"])
    run("note", "add", "-w", ws, "check the roof", "--subject", "aoi-001")
    notes = json.loads(run("note", "list", "-w", ws, "--json"))
    assert [n["text"] for n in notes] == ["check the roof"]
    exported = tmp_path / "analyst.geojson"
    assert "1 assessment(s), 1 event(s) and 1 note(s)" in run("analyst", "export", "-w", ws,
                                                             exported)
    assert "assessments: 0 added, 0 updated, 1 unchanged" in run("analyst", "import", "-w", ws,
                                                                exported)
    run("note", "delete", "-w", ws, notes[0]["note_id"])
    assert "deleted" in run("assess", "delete", "-w", ws, assessment_id)
    assert json.loads(run("assess", "list", "-w", ws, "--json")) == []
    assert len(json.loads(run("event", "list", "-w", ws, "--json"))) == 1


@pytest.mark.parametrize(("args", "words"), [
    (["assess", "add", "aoi-999", "x", "--confidence", "likely"], "no site 'aoi-999'"),
    (["assess", "add", "aoi-001", "x", "--confidence", "sure"], "unknown confidence 'sure'"),
    (["event", "add", "--date", "2019-06-01", "--kind", "bomb", "--site", "aoi-001"],
     "unknown event kind 'bomb'"),
    (["assess", "edit", "A-00000000"], "nothing to change"),
])
def test_cli_user_mistake_exits_2_with_one_line(ws, monkeypatch, capsys, args, words):
    monkeypatch.setattr(sys, "argv", ["sitewatch", *args, "-w", str(ws)])
    before = _rows(ws)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in lines[0]
    assert _rows(ws) == before
