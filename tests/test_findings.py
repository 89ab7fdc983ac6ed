"""Findings in words: the sentences written for stored sites, and the estimative word."""

import re

import pytest

from sitewatch.analyst import findings
from sitewatch.analyst.findings import (
    compass_words,
    duration_words,
    evidence_term,
    findings_summary,
    format_area,
    format_length,
    site_findings,
)

CROSSING = {"name": "Al-Qaim border crossing", "kind": "border crossing", "distance_m": 2604.0,
            "bearing_deg": 270.04, "direction": "W",
            "phrase": "2.6 km W of Al-Qaim border crossing"}
TOWN = {"name": "Al-Qaim", "kind": "town", "distance_m": 1401.0, "bearing_deg": 296.6,
        "direction": "WNW", "phrase": "1.4 km WNW of Al-Qaim"}
BORDER = {"name": "Iraq-Syria border", "side": "Iraq", "distance_m": 561.5, "crosses": False,
          "phrase": "on the Iraq side of the Iraq-Syria border, 560 m from it"}


def _site(change_type, status, phases, *, length, width, area, rectangularity, places=(),
          border=None):
    first = next(p for p in phases if p["after"] is not None)
    return {
        "site_id": f"aoi-{change_type}", "change_type": change_type, "status": status,
        "first_seen": first["first_observed"], "last_seen_unchanged": first["after"],
        "area_m2": area, "length_m": length, "width_m": width, "orientation_deg": 12.0,
        "mgrs": "37S FU 7850 0711",
        "properties": {"phases": phases, "measurements": {
            "rectangularity": rectangularity, "places": list(places), "border": border}},
    }


def _phase(name, first_observed, after):
    return {"phase": name, "first_observed": first_observed, "after": after}


def _observations(scores, phases=None):
    """Observations from ``{date: score}``, each in the phase current on its date."""
    phases = sorted(phases or [], key=lambda p: p["first_observed"])
    out = []
    for observed, score in scores.items():
        current = [p["phase"] for p in phases if p["first_observed"] <= observed]
        out.append({"observed": observed, "phase": current[-1] if current else None,
                    "score": score, "area_m2": 0.0, "length_m": 0.0, "width_m": 0.0})
    return out


@pytest.fixture()
def probability(monkeypatch):
    """Set the calibrated probability the findings read for every scored site."""
    def set_to(value):
        monkeypatch.setattr(findings, "site_probability", lambda site, observations: (
            value if any(o.get("score") is not None for o in observations) else None))
    set_to(0.9)
    return set_to


@pytest.fixture()
def compound(probability):
    phases = [_phase("cleared", "2019-03-01", "2019-02-15"),
              _phase("under_construction", "2019-03-15", "2019-03-01")]
    site = _site("new_construction", "under_construction", phases, length=270.4, width=164.6,
                 area=43_900.0, rectangularity=0.97, places=[CROSSING], border=BORDER)
    scores = {"2019-02-01": None, "2019-02-15": 0.01, "2019-03-01": 0.92, "2019-03-15": 0.3,
              "2019-04-15": 0.2, "2019-05-15": 0.15, "2019-06-15": 0.12}
    return site, _observations(scores, phases)


@pytest.fixture()
def destroyed(probability):
    phases = [_phase("intact", "2018-05-01", None),
              _phase("destroyed", "2018-06-18", "2018-06-03"),
              _phase("flattened", "2018-07-03", "2018-06-18")]
    site = _site("destruction", "flattened", phases, length=40.3, width=24.8, area=980.0,
                 rectangularity=0.93, places=[TOWN])
    scores = {"2018-05-01": None, "2018-05-19": 0.0, "2018-06-03": 0.02, "2018-06-18": 0.45,
              "2018-07-03": 0.3, "2018-07-18": 0.05}
    return site, _observations(scores, phases)


def test_construction_site_in_an_analysts_words(compound):
    assert site_findings(*compound) == (
        "A new rectangular compound measuring 270 x 165 m has very likely been under "
        "construction since March 2019 (about three months as of 15 June 2019), 2.6 km west of "
        "the Al-Qaim border crossing, on the Iraq side of the Iraq-Syria border, 560 m from it. "
        "Cleared between 15 February and 1 March 2019. Construction began between 1 and 15 "
        "March 2019. The change shows on 5 of 7 observed dates up to 15 June 2019.")


def test_completed_construction_is_dated_by_months(compound):
    site, observations = compound
    site["status"] = "completed"
    site["properties"]["phases"].append(_phase("completed", "2019-06-15", "2019-05-15"))
    text = site_findings(site, observations)
    assert text.startswith("A new rectangular compound measuring 270 x 165 m was very likely "
                           "built between March and June 2019, 2.6 km west of the Al-Qaim")
    assert "Completed between 15 May and 15 June 2019." in text


def test_destroyed_then_flattened_building(destroyed, probability):
    probability(0.7)
    text = site_findings(*destroyed)
    assert text == (
        "A 40 x 25 m structure was likely destroyed between 3 and 18 June 2018 and has since "
        "been flattened. It is 1.4 km west-northwest of Al-Qaim. Flattened between 18 June and "
        "3 July 2018. The change shows on 3 of 6 observed dates up to 18 July 2018.")


def test_vegetation_loss_site_gives_area_and_extent(probability):
    phases = [_phase("vegetation_lost", "2019-04-15", "2019-03-15")]
    site = _site("vegetation_loss", "vegetation_lost", phases, length=312.0, width=148.0,
                 area=32_400.0, rectangularity=0.55, places=[TOWN], border=BORDER)
    scores = {"2019-02-15": None, "2019-03-15": 0.0, "2019-04-15": 0.6, "2019-05-15": 0.1,
              "2019-06-15": 0.0}
    text = site_findings(site, _observations(scores, phases))
    assert re.match(r"About 3\.2 ha of vegetation \(310 x 150 m overall\) was very likely lost "
                    r"between 15 March and 15 April 2019, 1\.4 km west-northwest of Al-Qaim, "
                    r"on the Iraq side of the Iraq-Syria border, 560 m from it\. ", text)
    assert "rectangular" not in text and text.endswith("3 of 5 observed dates up to 15 June "
                                                       "2019.")


def test_site_without_places_or_border_is_located_by_mgrs(probability):
    probability(0.7)
    phases = [_phase("cleared", "2019-05-15", "2019-04-15")]
    site = _site("land_clearing", "cleared", phases, length=132.4, width=56.2, area=3087.0,
                 rectangularity=0.88)
    scores = {"2019-03-15": None, "2019-04-15": 0.0, "2019-05-15": 0.8, "2019-06-15": 0.0}
    text = site_findings(site, _observations(scores, phases))
    assert text.startswith("A rectangular plot measuring 130 x 56 m was likely cleared between "
                           "15 April and 15 May 2019, at MGRS 37S FU 7850 0711.")
    assert " km " not in text


@pytest.mark.parametrize(("p", "term", "wording"), [
    (0.99, "very likely", r"^A new structure of about 2400 m² \(180 x 48 m overall\) has very "
                          r"likely been under construction since August 2019 \(first seen on "
                          r"15 August 2019, the latest image\)"),
    (0.6, "likely", r"^A new structure of about 2400 m² \(180 x 48 m overall\) has likely "
                    r"been under construction since August 2019"),
    (0.5, "roughly even chance", r"^There is a roughly even chance that a new structure of "
                                 r"about 2400 m² \(180 x 48 m overall\) has been under "
                                 r"construction since August 2019"),
    (0.3, "unlikely", r"^It is unlikely that a new structure of about 2400 m² "),
    (0.1, "very unlikely", r"^It is very unlikely that a new structure "),
    (0.02, "almost no chance", r"^There is almost no chance that a new structure "),
])
def test_estimative_word_follows_the_calibrated_probability(probability, p, term, wording):
    probability(p)
    phases = [_phase("under_construction", "2019-08-15", "2019-07-15")]
    site = _site("new_construction", "under_construction", phases, length=180.4, width=48.2,
                 area=2_400.0, rectangularity=0.3, places=[TOWN])
    observations = _observations({"2019-06-15": 0.0, "2019-07-15": 0.1, "2019-08-15": 0.9},
                                 phases)
    assert evidence_term(site, observations).term == term
    text = site_findings(site, observations)
    assert re.match(wording, text)
    assert "The change shows on 1 of 3 observed dates up to 15 August 2019." in text


def test_shipped_model_never_words_an_automatic_finding_above_very_likely():
    phases = [_phase("cleared", "2019-03-01", "2019-02-15"),
              _phase("under_construction", "2019-03-15", "2019-03-01")]
    site = _site("new_construction", "under_construction", phases, length=270.4, width=164.6,
                 area=43_900.0, rectangularity=0.97, places=[CROSSING], border=BORDER)
    days = ["2019-02-01", "2019-02-15", "2019-03-01", "2019-03-15", "2019-04-15", "2019-05-15"]
    for n in range(1, len(days)):
        for score in (0.0, 0.2, 0.5, 1.0):
            observations = _observations(dict.fromkeys(days, score), phases)
            term = evidence_term({**site, "first_seen": days[-n]}, observations)
            assert term.high <= 0.95


def test_two_date_comparison_is_worded_as_new_surface():
    phases = [_phase("new_bright_surface", "2019-05-20", "2019-05-01")]
    site = _site("new_construction", "new_bright_surface", phases, length=95.0, width=60.0,
                 area=5_100.0, rectangularity=0.6)
    text = site_findings(site, _observations({"2019-05-01": None, "2019-05-20": None}, phases))
    assert text.startswith("There is a roughly even chance that about 5100 m² of new bright "
                           "surface (95 x 60 m overall) appeared between 1 and 20 May 2019, at "
                           "MGRS 37S FU 7850 0711, consistent with construction or ground "
                           "clearing.")


def test_summary_counts_types_and_leads_with_the_largest(compound, destroyed):
    summary = findings_summary([destroyed, compound])
    assert summary.startswith("Two sites changed in imagery from 1 May 2018 to 15 June 2019: "
                              "one of new construction and one of destruction. The largest is "
                              "aoi-new_construction (4.4 ha). A new rectangular compound ")
    assert "Cleared between" not in summary
    assert findings_summary([]) == "No changed sites were found."


@pytest.mark.parametrize(("metres", "text"), [(270.4, "270"), (164.6, "165"), (99.4, "99"),
                                              (40.3, "40"), (1032.0, "1030")])
def test_lengths_round_to_5_m_above_100_m(metres, text):
    assert format_length(metres) == text


@pytest.mark.parametrize(("square_metres", "text"), [
    (73.9, "74 m²"), (4599.9, "4600 m²"), (9_960.0, "1.0 ha"), (51_648.7, "5.2 ha"),
    (230_400.0, "23 ha"), (1_440_000.0, "1.4 km²"), (27_000_000.0, "27 km²")])
def test_areas_in_square_metres_hectares_or_square_kilometres(square_metres, text):
    assert format_area(square_metres) == text


@pytest.mark.parametrize(("days", "text"), [
    (2, "a few days"), (7, "about a week"), (14, "about two weeks"), (31, "about a month"),
    (92, "about three months"), (330, "about eleven months"), (365, "about a year"),
    (548, "about a year and a half"), (913, "about two and a half years")])
def test_durations_in_words(days, text):
    assert duration_words(days) == text


@pytest.mark.parametrize(("abbreviation", "words"), [
    ("W", "west"), ("NE", "northeast"), ("WNW", "west-northwest"), ("SSE", "south-southeast")])
def test_compass_abbreviations_are_spelled_out(abbreviation, words):
    assert compass_words(abbreviation) == words


def test_a_nearby_facility_leads_the_location_before_a_nearer_town():
    town = {**TOWN, "name": "Abu Kamal", "distance_m": 900.0, "direction": "S",
            "phrase": "900 m S of Abu Kamal"}
    crossing = {**CROSSING, "distance_m": 2600.0}
    site = _site("new_construction", "under_construction",
                 [_phase("under_construction", "2019-06-15", "2019-05-15")], length=100.0,
                 width=60.0, area=6000.0, rectangularity=0.9, places=[town, crossing])
    text = site_findings(site, _observations({"2019-05-15": 0.0, "2019-06-15": 0.6,
                                              "2019-07-15": 0.5}))
    assert "2.6 km west of the Al-Qaim border crossing and 900 m south of Abu Kamal" in text
