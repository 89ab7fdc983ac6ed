"""Plain sentences for automatic findings, worded as an imagery analyst publishes them.

From a stored site (a row of the ``sites`` layer) and its observations, :func:`site_findings`
writes a short paragraph such as:

    A new rectangular compound measuring 285 x 180 m has very likely been under construction
    since June 2019 (about two months as of 15 August 2019), 2.4 km south-southeast of Abu Kamal,
    on the Syria side of the Iraq-Syria border, 2.3 km from it. Cleared between 15 April and 15
    May 2019. Construction began between 15 May and 15 June 2019. The change shows on 4 of 11
    observed dates up to 15 August 2019.

Wording rules
    - Sizes: the sides of the oriented bounding rectangle rounded to 5 m from 100 m, to 1 m
      below; "rectangular" and "L x W m" only when the footprint fills at least
      :data:`RECTANGULAR` of that rectangle, otherwise the area with the rectangle as its overall
      extent. Areas to two significant figures in m² below 1 ha, then in ha, then km².
    - Places: distance and 16-point direction from the nearest reference place, the compass
      abbreviation spelled out (WNW -> west-northwest); a name ending in a common noun takes
      "the" ("the Al-Qaim border crossing", but "Abu Kamal"). Then the side of the nearest
      border. Without places or borders, the MGRS reference.
    - Dates: a phase happened between the last observed date before it and the first showing
      it, written as that bracket ("between 2 and 15 May 2019"); an ongoing phase is dated by the
      month it was first seen and its duration in words up to the last observation ("about three
      months as of 15 June 2019"). The text depends on the stored dates only, never on today.
    - How sure: the ICD 203 word of :func:`evidence_term` (the site's calibrated probability),
      as an adverb ("very likely", "likely") or as a lead-in ("there is a roughly even chance
      that ...", "it is unlikely that ...").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date

from sitewatch.analyst.confidence import TERMS, Confidence, confidence_for_probability
from sitewatch.sites.lifecycle import TYPES
from sitewatch.sites.measure import format_distance
from sitewatch.sites.probability import site_probability

#: Kinds of reference place that are settlements; any other kind (border crossing, checkpoint,
#: airfield...) is a facility a nearby site is located against first.
SETTLEMENT_KINDS = frozenset({"town", "city", "village", "settlement", "place"})
#: Farthest a facility may be to lead a site's location, metres.
FACILITY_RANGE_M = 10_000.0

#: Highest probability an automatic finding is worded with (the top of "very likely").
AUTOMATIC_CEILING = 0.949
#: Share of its oriented bounding rectangle a footprint must fill to be called rectangular.
RECTANGULAR = 0.85
#: Area from which new construction is a "compound" rather than a "structure", m².
COMPOUND_AREA_M2 = 10_000.0

_BY_TERM = {c.term: c for c in TERMS}
# How each term the evidence can give enters a sentence: (lead-in, adverb).
_HEDGES = {"almost no chance": ("there is almost no chance that ", ""),
           "very unlikely": ("it is very unlikely that ", ""),
           "unlikely": ("it is unlikely that ", ""),
           "roughly even chance": ("there is a roughly even chance that ", ""),
           "likely": ("", "likely"), "very likely": ("", "very likely")}
_COMPASS = {"N": "north", "E": "east", "S": "south", "W": "west"}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
            "eleven", "twelve")
_TYPE_WORDS = {"new_construction": "new construction", "land_clearing": "land clearing",
               "vegetation_loss": "vegetation loss", "unclassified": "unclassified change"}
# Phase -> sentence giving its bracket, when the headline does not.
_PHASE_SENTENCES = {"cleared": "Cleared {}.", "under_construction": "Construction began {}.",
                    "completed": "Completed {}.", "destroyed": "Destroyed {}.",
                    "flattened": "Flattened {}.", "debris_removed": "Debris removed {}.",
                    "demolished": "Demolished {}.", "vegetation_lost": "Vegetation lost {}."}
# First change of a site without a construction phase -> (auxiliary, verb) of its sentence.
_FIRST_CHANGE = {"destroyed": ("was", "destroyed"), "darkened": ("was", "destroyed or burnt"),
                 "demolished": ("was", "demolished"), "cleared": ("was", "cleared"),
                 "vegetation_lost": ("was", "lost"), "new_bright_surface": ("", "appeared"),
                 "changed": ("", "changed")}
# What covered the area of a site that is not a structure, by change type.
_GROUND = {"vegetation_loss": "vegetation", "new_construction": "new bright surface"}
# What a destroyed structure became since, by its latest phase.
_AFTERMATH = {"flattened": "has since been flattened",
              "debris_removed": "the debris has since been removed"}


def evidence_term(site: dict, observations: Sequence[dict]) -> Confidence:
    """How likely the automatic finding is, as an ICD 203 term: the word of the site's calibrated
    probability, through :func:`term_for_probability`. That is the probability ``track`` stored
    with the site (``properties.probability``), or for a site stored without one,
    :func:`sitewatch.sites.probability.site_probability` of its observations.

    Sites of a two-date comparison by the classic ``default`` method carry the probability of
    the pair-site model (:data:`sitewatch.sites.probability.PACKAGED_PAIR_MODEL`). Any other
    site without one (another method, the learned VHR model) gets "roughly even chance": one
    pair of images, uncalibrated, cannot tell a change from an artefact of either image.
    """
    probability = (site.get("properties") or {}).get("probability")
    if probability is None:
        probability = site_probability(site, observations)
    if probability is None:
        return _BY_TERM["roughly even chance"]
    return term_for_probability(probability)


def term_for_probability(probability: float) -> Confidence:
    """The ICD 203 term of an automatic finding of ``probability`` (0..1): the band that holds
    it, but never above "very likely" ("almost certain" is left to an analyst who has checked
    the site)."""
    return confidence_for_probability(min(probability, AUTOMATIC_CEILING))


def site_findings(site: dict, observations: Sequence[dict]) -> str:
    """The findings paragraph of one site (see the module docstring for the wording rules).

    Parameters
    ----------
    site
        A row of the ``sites`` layer: ``change_type``, ``status``, ``first_seen``, ``area_m2``,
        ``length_m``, ``width_m`` (metres), ``mgrs`` and ``properties`` with ``phases`` and
        ``measurements`` (``rectangularity``, ``places``, ``border``).
    observations
        The site's rows of the ``observations`` layer (``observed`` ISO dates, ``score``),
        in any order.
    """
    last = _last(site, observations)
    headline, bracketed = _headline(site, evidence_term(site, observations), last)
    sentences = [headline]
    for phase in _phases(site):
        if phase["phase"] != "intact" and phase["phase"] not in bracketed:
            template = _PHASE_SENTENCES.get(
                phase["phase"], phase["phase"].replace("_", " ").capitalize() + " {}.")
            sentences.append(template.format(_between(phase["after"],
                                                       phase["first_observed"])))
    if observations:
        sentences.append(f"The change shows on {len(_changed(site, observations))} of "
                         f"{len(observations)} observed dates up to {_date(last)}.")
    return " ".join(sentences)


def findings_summary(sites_with_obs: Sequence[tuple[dict, Sequence[dict]]]) -> str:
    """One paragraph for an AOI: how many sites of each change type, over which imagery
    dates, and the headline of the largest (by area)."""
    if not sites_with_obs:
        return "No changed sites were found."
    days = sorted(_day(o["observed"]) for _, obs in sites_with_obs for o in obs)
    counts = Counter(site["change_type"] for site, _ in sites_with_obs)
    order = sorted(counts, key=lambda t: (-counts[t], TYPES.index(t) if t in TYPES else 99, t))
    kinds = _join([f"{_count(counts[t])} of {_TYPE_WORDS.get(t, t.replace('_', ' '))}"
                   for t in order])
    n = len(sites_with_obs)
    span = f" in imagery from {_date(days[0])} to {_date(days[-1])}" if days else ""
    text = f"{_count(n).capitalize()} site{'s' if n > 1 else ''} changed{span}: {kinds}."
    site, observations = max(sites_with_obs, key=lambda pair: pair[0]["area_m2"] or 0.0)
    headline, _ = _headline(site, evidence_term(site, observations), _last(site, observations))
    if n > 1:
        text += f" The largest is {site['site_id']} ({format_area(site['area_m2'])})."
    return f"{text} {headline}"


def format_length(metres: float) -> str:
    """A side length in metres, to 5 m from 100 m and to 1 m below: "285", "40"."""
    return f"{5 * round(metres / 5):.0f}" if metres >= 100.0 else f"{round(metres):.0f}"


def format_area(square_metres: float) -> str:
    """An area to two significant figures: "4600 m²", "5.2 ha", "23 ha", "1.4 km²"."""
    rounded = float(f"{square_metres:.2g}")
    if rounded < 1e4:
        return f"{rounded:.0f} m²"
    unit, size = ("ha", 1e4) if rounded < 1e6 else ("km²", 1e6)
    value = rounded / size
    return f"{value:.1f} {unit}" if value < 10.0 else f"{value:.0f} {unit}"


def duration_words(days: int) -> str:
    """A duration in an analyst's words: "about a week", "about three months", "about a year
    and a half" (weeks below 25 days, months below 11.5 months, then half years)."""
    if days < 4:
        return "a few days"
    if days < 11:
        return "about a week"
    if days < 25:
        return f"about {_count(round(days / 7))} weeks"
    months = round(days / 30.44)
    if months < 12:
        return "about a month" if months == 1 else f"about {_count(months)} months"
    years, half = divmod(round(days / 365.25 * 2), 2)
    if years == 1:
        return "about a year and a half" if half else "about a year"
    return f"about {_count(years)}{' and a half' if half else ''} years"


def compass_words(direction: str) -> str:
    """A 16-point compass abbreviation spelled out: "W" -> "west", "WNW" -> "west-northwest"."""
    words = [_COMPASS[letter] for letter in direction]
    if len(words) == 3:
        return f"{words[0]}-{words[1]}{words[2]}"
    return "".join(words)


# -- headline ------------------------------------------------------------------------------------
def _headline(site: dict, term: Confidence, last: str) -> tuple[str, set[str]]:
    """The first sentence, and the phases whose date bracket it gives."""
    phases = [p for p in _phases(site) if p["phase"] != "intact"] or [
        {"phase": "changed", "first_observed": site["first_seen"],
         "after": site["last_seen_unchanged"]}]
    by_name = {p["phase"]: p for p in phases}
    change_type, location = site["change_type"], _location(site)
    if "under_construction" in by_name:
        subject = _new_object(site)
        start = by_name["under_construction"]["first_observed"]
        if "completed" in by_name:
            when = _months(start, by_name["completed"]["first_observed"])
            return _claim(term, subject, "was", f"built {when}, {location}"), set()
        days = (date.fromisoformat(last) - date.fromisoformat(_day(start))).days
        since = (f"{duration_words(days)} as of {_date(last)}" if days > 0
                 else f"first seen on {_date(last)}, the latest image")
        return _claim(term, subject, "has", f"been under construction since {_month(start)} "
                                            f"({since}), {location}"), set()
    first = phases[0]
    auxiliary, verb = _FIRST_CHANGE.get(first["phase"], ("", first["phase"].replace("_", " ")))
    rest = f"{verb} {_between(first['after'], first['first_observed'])}"
    if change_type in ("destruction", "demolition"):
        aftermath = _AFTERMATH.get(site["status"])
        if aftermath:
            claim = _claim(term, _structure(site), auxiliary, f"{rest} and {aftermath}")
            return f"{claim} It is {location}.", {first["phase"]}
        return _claim(term, _structure(site), auxiliary, f"{rest}, {location}"), {first["phase"]}
    if change_type == "land_clearing" and _rectangular(site):
        subject = f"a rectangular plot measuring {_dimensions(site)}"
    else:
        subject = _extent(site, _GROUND.get(change_type, "ground"))
    if first["phase"] == "new_bright_surface":
        location += ", consistent with construction or ground clearing"
    return _claim(term, subject, auxiliary, f"{rest}, {location}"), {first["phase"]}


def _claim(term: Confidence, subject: str, auxiliary: str, rest: str) -> str:
    """One sentence stating ``subject auxiliary rest`` with the estimative word of ``term``."""
    lead, adverb = _HEDGES[term.term]
    words = " ".join(w for w in (subject, auxiliary, adverb, rest) if w)
    sentence = lead + words
    return sentence[0].upper() + sentence[1:] + "."


def _new_object(site: dict) -> str:
    noun = "compound" if (site["area_m2"] or 0.0) >= COMPOUND_AREA_M2 else "structure"
    if _rectangular(site):
        return f"a new rectangular {noun} measuring {_dimensions(site)}"
    return f"a new {noun} of {_extent(site)}"


def _structure(site: dict) -> str:
    if _rectangular(site):
        return f"a {_dimensions(site)} structure"
    return f"a structure of {_extent(site)}"


def _rectangular(site: dict) -> bool:
    rectangularity = _measurements(site).get("rectangularity")
    return rectangularity is not None and rectangularity >= RECTANGULAR


def _dimensions(site: dict) -> str:
    return f"{format_length(site['length_m'])} x {format_length(site['width_m'])} m"


def _extent(site: dict, what: str = "") -> str:
    """ "about 4.9 ha of ground (395 x 335 m overall)": area first, the rectangle as extent."""
    of = f" of {what}" if what else ""
    return f"about {format_area(site['area_m2'])}{of} ({_dimensions(site)} overall)"


# -- location ------------------------------------------------------------------------------------
def _location(site: dict) -> str:
    """The nearest reference place, led by the nearest facility (a border crossing, a
    checkpoint: any place that is not a settlement) when one is within
    :data:`FACILITY_RANGE_M`, as analysts locate a site against what it serves; then the
    border."""
    measurements = _measurements(site)
    places = measurements.get("places") or []
    chosen = places[:1]
    facility = next((p for p in places if p.get("kind") not in SETTLEMENT_KINDS), None)
    if (facility is not None and places and facility is not places[0]
            and facility["distance_m"] <= FACILITY_RANGE_M):
        chosen = [facility, places[0]]
    words = [f"at {_the(p['name'])}" if p["phrase"].startswith("at ") else
             f"{format_distance(p['distance_m'])} {compass_words(p['direction'])} of "
             f"{_the(p['name'])}" for p in chosen]
    parts = [" and ".join(words)] if words else []
    if measurements.get("border"):
        parts.append(measurements["border"]["phrase"])
    return ", ".join(parts) if parts else f"at MGRS {site['mgrs']}"


def _the(name: str) -> str:
    """"the" before a name ending in a common noun ("Al-Qaim border crossing")."""
    last = name.split()[-1]
    return f"the {name}" if last[:1].islower() else name


# -- dates and counts ----------------------------------------------------------------------------
def _phases(site: dict) -> list[dict]:
    return list((site.get("properties") or {}).get("phases") or [])


def _measurements(site: dict) -> dict:
    return (site.get("properties") or {}).get("measurements") or {}


def _changed(site: dict, observations: Sequence[dict]) -> list[dict]:
    """The observations from the site's first change on."""
    first = site.get("first_seen")
    if first is None:
        return []
    return [o for o in observations if _day(o["observed"]) >= first[:10]]


def _last(site: dict, observations: Sequence[dict]) -> str:
    """The last observed date (ISO day); the first change when there are no observations."""
    return max((_day(o["observed"]) for o in observations), default=site["first_seen"][:10])


def _day(value: str) -> str:
    return str(value)[:10]


def _date(day: str) -> str:
    d = date.fromisoformat(_day(day))
    return f"{d.day} {_MONTHS[d.month - 1]} {d.year}"


def _month(day: str) -> str:
    d = date.fromisoformat(_day(day))
    return f"{_MONTHS[d.month - 1]} {d.year}"


def _between(after: str | None, first: str) -> str:
    """ "between 2 and 15 May 2019": the bracket in which a phase began."""
    if after is None:
        return f"by {_date(first)}"
    a, b = date.fromisoformat(_day(after)), date.fromisoformat(_day(first))
    if (a.year, a.month) == (b.year, b.month):
        return f"between {a.day} and {_date(first)}"
    if a.year == b.year:
        return f"between {a.day} {_MONTHS[a.month - 1]} and {_date(first)}"
    return f"between {_date(after)} and {_date(first)}"


def _months(start: str, end: str) -> str:
    """ "between June and October 2019", or "in June 2019" within one month."""
    a, b = date.fromisoformat(_day(start)), date.fromisoformat(_day(end))
    if (a.year, a.month) == (b.year, b.month):
        return f"in {_month(end)}"
    if a.year == b.year:
        return f"between {_MONTHS[a.month - 1]} and {_month(end)}"
    return f"between {_month(start)} and {_month(end)}"


def _count(n: int) -> str:
    return _NUMBERS[n] if n < len(_NUMBERS) else str(n)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
