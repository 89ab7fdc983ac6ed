"""How sure: the estimative words analysts use, and the credibility of a source's information.

Estimative probability
    The expressions of likelihood of US Intelligence Community Directive 203, *Analytic
    Standards* (ODNI, 2 January 2015), each standing for a range of probability. Words in one row
    mean the same; the first is the canonical term stored in a workspace:

    =====================================  ============
    words                                  probability
    =====================================  ============
    almost no chance, remote               1-5 %
    very unlikely, highly improbable       5-20 %
    unlikely, improbable                   20-45 %
    roughly even chance, roughly even odds 45-55 %
    likely, probable, probably             55-80 %
    very likely, highly probable           80-95 %
    almost certain(ly), nearly certain     95-99 %
    =====================================  ============

    A percentage is read into the band that holds it; the bands share their ends, and a shared
    end belongs to the higher band (5 % is "very unlikely", 55 % "likely"). 0 % and 100 % fall in
    the end bands: ICD 203 keeps certainty out of estimates.

Information credibility
    The Admiralty (NATO) system's information-credibility scale, AJP-2.1 *Allied Joint Doctrine
    for Intelligence Procedures*: 1 confirmed (by other sources), 2 probably true, 3 possibly
    true, 4 doubtful, 5 improbable, 6 truth cannot be judged. Stored as digit and words, e.g.
    "2 probably true".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sitewatch.errors import SitewatchError


@dataclass(frozen=True)
class Confidence:
    """An estimative term of ICD 203 and its probability range (``low``..``high``, 0..1)."""

    term: str
    low: float
    high: float

    @property
    def range_text(self) -> str:
        """The range in percent, e.g. "55-80 %"."""
        return f"{100 * self.low:.0f}-{100 * self.high:.0f} %"

    def __str__(self) -> str:
        return f"{self.term} ({self.range_text})"


#: The estimative terms, from least to most probable (canonical words).
TERMS: tuple[Confidence, ...] = (
    Confidence("almost no chance", 0.01, 0.05),
    Confidence("very unlikely", 0.05, 0.20),
    Confidence("unlikely", 0.20, 0.45),
    Confidence("roughly even chance", 0.45, 0.55),
    Confidence("likely", 0.55, 0.80),
    Confidence("very likely", 0.80, 0.95),
    Confidence("almost certain", 0.95, 0.99),
)

#: Every word accepted for each canonical term (the canonical word first).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "almost no chance": ("almost no chance", "remote"),
    "very unlikely": ("very unlikely", "highly improbable"),
    "unlikely": ("unlikely", "improbable"),
    "roughly even chance": ("roughly even chance", "roughly even odds"),
    "likely": ("likely", "probable", "probably"),
    "very likely": ("very likely", "highly probable"),
    "almost certain": ("almost certain", "almost certainly", "nearly certain"),
}

#: The Admiralty information-credibility ratings, as stored.
CREDIBILITY: tuple[str, ...] = ("1 confirmed", "2 probably true", "3 possibly true",
                                "4 doubtful", "5 improbable", "6 cannot be judged")

_BY_WORD = {word: c for c in TERMS for word in SYNONYMS[c.term]}
_PERCENT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:%|percent)")
_CREDIBILITY_WORDS = {
    "confirmed by other sources": "1 confirmed",
    "truth cannot be judged": "6 cannot be judged",
    **{rating.split(" ", 1)[1]: rating for rating in CREDIBILITY},
    **{rating[0]: rating for rating in CREDIBILITY},
    **{rating: rating for rating in CREDIBILITY},
}


def parse_confidence(text: str) -> Confidence:
    """The estimative term meant by ``text``: any word of ICD 203 or a percentage ("70%").

    Case and spacing do not matter; "_" and "-" may stand for spaces ("very_likely").

    Raises
    ------
    SitewatchError
        ``text`` is neither an accepted word nor a percentage from 0 to 100.
    """
    words = _normalise(text)
    if words in _BY_WORD:
        return _BY_WORD[words]
    match = _PERCENT.fullmatch(str(text).strip().lower())
    if match and float(match.group(1)) <= 100.0:
        return confidence_for_probability(float(match.group(1)) / 100.0)
    accepted = "; ".join(", ".join(SYNONYMS[c.term]) for c in TERMS)
    raise SitewatchError(f"unknown confidence {text!r}; use a word of ICD 203 ({accepted}) or a "
                         "percentage from 0 to 100 such as 70%")


def confidence_for_probability(p: float) -> Confidence:
    """The estimative term whose band holds probability ``p`` (0..1; shared ends go up)."""
    if not 0.0 <= p <= 1.0:
        raise SitewatchError(f"probability {p:g} is outside 0..1 (0-100 %)")
    return next((c for c in TERMS if p < c.high), TERMS[-1])


def parse_credibility(text: str) -> str:
    """The Admiralty credibility rating meant by ``text``, as stored (e.g. "2 probably true").

    Accepts the digit ("2"), the words ("probably true") or both ("2 probably true").

    Raises
    ------
    SitewatchError
        ``text`` is not a rating of the scale.
    """
    rating = _CREDIBILITY_WORDS.get(_normalise(text))
    if rating is None:
        raise SitewatchError(f"unknown credibility {text!r}; use 1-6 of the Admiralty scale "
                             f"({', '.join(CREDIBILITY)})")
    return rating


def _normalise(text: str) -> str:
    return " ".join(str(text).lower().replace("_", " ").replace("-", " ").split())
