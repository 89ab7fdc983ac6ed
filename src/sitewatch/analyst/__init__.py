"""The analyst layer: human judgement kept beside the automatic findings, and findings in words.

:mod:`confidence` (the estimative words of ICD 203 and the Admiralty credibility scale),
:mod:`records` (assessments, collateral events and notes in the workspace; GeoJSON/CSV export
and import) and :mod:`findings` (the sentences an imagery analyst publishes about a site).
"""

from sitewatch.analyst.confidence import (
    TERMS,
    Confidence,
    confidence_for_probability,
    parse_confidence,
    parse_credibility,
)
from sitewatch.analyst.findings import evidence_term, findings_summary, site_findings
from sitewatch.analyst.records import (
    add_assessment,
    add_event,
    add_note,
    delete_assessment,
    delete_event,
    delete_note,
    export_analyst,
    import_analyst,
    list_assessments,
    list_events,
    list_notes,
    update_assessment,
    update_event,
)

__all__ = ["TERMS", "Confidence", "add_assessment", "add_event", "add_note",
           "confidence_for_probability", "delete_assessment", "delete_event", "delete_note",
           "evidence_term", "export_analyst", "findings_summary", "import_analyst",
           "list_assessments", "list_events", "list_notes", "parse_confidence",
           "parse_credibility", "site_findings", "update_assessment", "update_event"]
