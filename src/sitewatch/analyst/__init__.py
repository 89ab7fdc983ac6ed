"""The analyst layer: human judgement kept beside the automatic findings, and findings in words.

:mod:`confidence` (the estimative words of ICD 203 and the Admiralty credibility scale),
:mod:`records` (assessments, collateral events and notes in the workspace; GeoJSON/CSV export
and import) and :mod:`findings` (the sentences an imagery analyst publishes about a site).
"""

import lazy_loader

# Names are loaded on first use (as scikit-image does), so importing one module of the
# package does not import every stage it re-exports.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "confidence": [
            "TERMS", "Confidence", "confidence_for_probability", "parse_confidence",
            "parse_credibility",
        ],
        "findings": [
            "evidence_term", "findings_summary", "site_findings",
        ],
        "records": [
            "add_assessment", "add_event", "add_note", "delete_assessment",
            "delete_event", "delete_note", "export_analyst", "import_analyst",
            "list_assessments", "list_events", "list_notes", "update_assessment",
            "update_event",
        ],
    },
)
