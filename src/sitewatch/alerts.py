"""Alerts: new sites and new phases of known sites, sent once by webhook and by email.

After a watch run, :func:`record_alerts` compares the AOIs' sites with the ``alerts`` table of
the workspace: a site never alerted gives a ``new_site`` alert, a phase of an alerted site that
was not alerted gives a ``new_phase`` alert (the id of an alert is the finding it reports:
AOI, site, phase and the date the phase was first observed, so a rerun that finds the same
sites records nothing). :func:`deliver` then sends every alert not yet delivered to each
channel:

- **Webhook:** one HTTP POST per alert of its JSON document (site, phase, dates, measurements,
  the findings sentence, links to the report and exports), signed with HMAC-SHA256 of the body
  under a shared secret, in the header ``X-Sitewatch-Signature: sha256=<hex>`` (the scheme of
  GitHub's webhooks).
- **Email:** one digest per run of every undelivered alert, over SMTP with STARTTLS
  (:mod:`smtplib`), with login when a user is given.

A channel that fails (receiver down, refused, timed out) leaves its alerts undelivered, with
the error recorded; the next run sends them again. Delivery is recorded per alert and channel
in the same table, in a transaction after each success. Secrets (the webhook secret, the SMTP
password) come from environment variables or files named in the watch file, never from the
watch file itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlparse

import requests

from sitewatch.store import Workspace
from sitewatch.store.geopackage import now_iso

#: Seconds to wait for a webhook receiver or an SMTP server.
SEND_TIMEOUT_S = 20.0
SIGNATURE_HEADER = "X-Sitewatch-Signature"


@dataclass(frozen=True)
class Channels:
    """Where alerts go. ``webhook_secret`` and ``smtp_password`` are the secrets themselves,
    read by the caller from the environment or a file."""

    webhook_url: str | None = None
    webhook_secret: str | None = None
    email_to: tuple[str, ...] = ()
    email_from: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    starttls: bool = True


@dataclass
class Delivery:
    """What one :func:`deliver` did: alert ids sent per channel, and the channels' errors."""

    webhook: list[str] = field(default_factory=list)
    email: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def record_alerts(ws: Workspace, aois: Sequence[str], links: dict[str, str] | None = None
                  ) -> list[str]:
    """Record an alert for every new site and every new phase of a known site of ``aois``;
    returns the ids recorded. ``links`` (name -> path or URL) go into each alert document.

    A new site's alert carries all the phases it has; each phase's key is then covered, so
    only the phases that appear later get their own alerts."""
    alerted_sites: set[str] = set()
    covered: set[str] = set()
    for row in ws.rows("alerts"):
        alerted_sites.add(row["site_id"])
        covered.update(row["properties"].get("covers") or [row["alert_id"]])
    recorded = []
    with ws.transaction() as txn:
        for aoi in aois:
            for site in ws.rows("sites", "aoi = ?", (aoi,), order_by="site_id"):
                phases = (site.get("properties") or {}).get("phases") or []
                keys = [_alert_id(aoi, site["site_id"], phase) for phase in phases or [{}]]
                if site["site_id"] not in alerted_sites:
                    todo = [("new_site", phases[0] if phases else {}, keys)]
                else:  # a site without phases has nothing new to say
                    todo = [("new_phase", phase, [key]) for phase in phases
                            if (key := _alert_id(aoi, site["site_id"], phase)) not in covered]
                if not todo:
                    continue
                observations = ws.rows("observations", "site_id = ?", (site["site_id"],),
                                       order_by="observed")
                for event, phase, covers in todo:
                    document = _document(covers[0], event, site, phase, phases, observations,
                                         links or {}) | {"covers": covers}
                    txn.insert("alerts", {
                        "alert_id": covers[0], "aoi": aoi, "site_id": site["site_id"],
                        "event": event, "phase": phase.get("phase"), "created_at": now_iso(),
                        "properties": document})
                    covered.update(covers)
                    recorded.append(covers[0])
    return recorded


def deliver(ws: Workspace, channels: Channels) -> Delivery:
    """Send every alert not yet delivered to each configured channel (see the module
    docstring); failures are recorded and retried by the next call."""
    delivery = Delivery()
    if channels.webhook_url:
        for row in ws.rows("alerts", "webhook_sent_at IS NULL", order_by="fid"):
            try:
                post_webhook(channels.webhook_url, row["properties"], channels.webhook_secret)
            except (requests.RequestException, OSError) as exc:
                delivery.errors.append(f"webhook {channels.webhook_url}: {_reason(exc)}")
                _record_error(ws, [row["alert_id"]], f"webhook: {_reason(exc)}")
                break  # the receiver is down: the rest waits for the next run
            _mark_sent(ws, [row["alert_id"]], "webhook_sent_at")
            delivery.webhook.append(row["alert_id"])
    if channels.email_to and channels.smtp_host:
        rows = ws.rows("alerts", "email_sent_at IS NULL", order_by="fid")
        if rows:
            try:
                send_digest(channels, [row["properties"] for row in rows])
            except (smtplib.SMTPException, OSError) as exc:
                delivery.errors.append(f"email via {channels.smtp_host}: {_reason(exc)}")
                _record_error(ws, [row["alert_id"] for row in rows], f"email: {_reason(exc)}")
            else:
                _mark_sent(ws, [row["alert_id"] for row in rows], "email_sent_at")
                delivery.email.extend(row["alert_id"] for row in rows)
    return delivery


def post_webhook(url: str, document: dict, secret: str | None) -> None:
    """POST ``document`` as JSON to ``url``, signed with HMAC-SHA256 under ``secret``."""
    body = json.dumps(document, sort_keys=True).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "sitewatch"}
    if secret:
        headers[SIGNATURE_HEADER] = "sha256=" + signature(body, secret)
    response = requests.post(url, data=body, headers=headers, timeout=SEND_TIMEOUT_S,
                             allow_redirects=False)
    response.raise_for_status()


def signature(body: bytes, secret: str) -> str:
    """The hex HMAC-SHA256 of ``body`` under ``secret`` (what a receiver recomputes)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def send_digest(channels: Channels, documents: Sequence[dict]) -> None:
    """One email listing ``documents``, over SMTP with STARTTLS (unless turned off)."""
    message = EmailMessage()
    message["Subject"] = (f"sitewatch: {len(documents)} new finding(s) in "
                          f"{', '.join(sorted({d['aoi'] for d in documents}))}")
    message["From"] = channels.email_from or "sitewatch@localhost"
    message["To"] = ", ".join(channels.email_to)
    lines = []
    for document in documents:
        event = "New site" if document["event"] == "new_site" else "New phase"
        lines.append(f"{event} {document['site']['site_id']} ({document['aoi']}): "
                     f"{document['findings']}")
    links = documents[0].get("links") or {}
    lines += ["", *(f"{name}: {target}" for name, target in links.items())]
    message.set_content("\n".join(lines))
    with smtplib.SMTP(channels.smtp_host, channels.smtp_port, timeout=SEND_TIMEOUT_S) as smtp:
        if channels.starttls:
            smtp.starttls(context=_tls_context(channels.smtp_host))
        if channels.smtp_user:
            smtp.login(channels.smtp_user, channels.smtp_password or "")
        smtp.send_message(message)


def alert_rows(ws: Workspace) -> list[dict]:
    """The workspace's alerts, oldest first (``sitewatch alerts list``)."""
    rows = ws.rows("alerts", order_by="fid")
    for row in rows:
        row.pop("fid")
    return rows


def _tls_context(host: str) -> ssl.SSLContext:
    """The default, verifying context; a loopback server (tests, a local relay) may use a
    self-signed certificate."""
    context = ssl.create_default_context()
    if host in ("127.0.0.1", "::1", "localhost"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _alert_id(aoi: str, site_id: str, phase: dict) -> str:
    when = phase.get("first_observed") or ""
    return f"{aoi}/{site_id}/{phase.get('phase') or 'site'}/{when}"


def _document(alert_id: str, event: str, site: dict, phase: dict, phases: list[dict],
              observations: list[dict], links: dict[str, str]) -> dict:
    from sitewatch.analyst.findings import site_findings  # the sites stage, when alerting

    properties = site.get("properties") or {}
    return {
        "alert_id": alert_id,
        "event": event,
        "aoi": site["aoi"],
        "site": {key: site.get(key) for key in (
            "site_id", "change_type", "status", "first_seen", "last_seen_unchanged", "area_m2",
            "length_m", "width_m", "orientation_deg", "centroid_lat", "centroid_lon", "mgrs")}
        | {"probability": properties.get("probability")},
        "phase": phase or None,
        "phases": phases,
        "findings": site_findings(site, observations),
        "links": dict(links),
    }


def _mark_sent(ws: Workspace, alert_ids: list[str], column: str) -> None:
    sent = now_iso()
    with ws.transaction() as txn:
        for alert_id in alert_ids:
            for row in ws.rows("alerts", "alert_id = ?", (alert_id,)):
                txn.update("alerts", row["fid"], {column: sent, "last_error": None})


def _record_error(ws: Workspace, alert_ids: list[str], error: str) -> None:
    with ws.transaction() as txn:
        for alert_id in alert_ids:
            for row in ws.rows("alerts", "alert_id = ?", (alert_id,)):
                txn.update("alerts", row["fid"], {"last_error": error[:500]})


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def is_loopback_or_https(url: str) -> bool:
    """Whether a webhook ``url`` is https, or http to this machine (never plain http over a
    network: the alert documents locate sites)."""
    parsed = urlparse(url)
    return parsed.scheme == "https" or (
        parsed.scheme == "http" and parsed.hostname in ("127.0.0.1", "::1", "localhost"))


def read_secret(env: dict, variable: str | None, file: Path | None) -> str | None:
    """A secret from the environment variable ``variable`` or the first line of ``file``."""
    if variable:
        return env.get(variable) or None
    if file is not None:
        return file.read_text(encoding="utf-8").splitlines()[0].strip() or None
    return None
