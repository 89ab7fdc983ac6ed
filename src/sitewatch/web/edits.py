"""Analyst edits from the viewer, safe against two browser tabs editing the same record.

Every record the viewer hands out carries a ``version``: the first 16 hex digits of the SHA-256
of its stored content (canonical JSON, sorted keys), so any change to any field gives another
version. Changing or deleting a record requires the version it was read at (the HTTP
``If-Match`` header, RFC 9110 section 13.1.1); the record is read again and compared under this
module's write lock, immediately before :mod:`sitewatch.analyst.records` writes it in one
workspace transaction (SQLite ``BEGIN IMMEDIATE``). A record changed or deleted since raises
:class:`EditConflict`, so the later edit is refused with a message instead of silently
overwriting the earlier one.

The lock serialises the writes of one server; a write made by another process (the
``sitewatch`` command) between the check and the write is not seen by the check.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sitewatch.analyst import records
from sitewatch.errors import SitewatchError

#: Hex digits of the SHA-256 kept as a record's version.
VERSION_DIGITS = 16


class EditConflict(Exception):
    """An edit was based on a version of a record that is no longer the stored one."""

    def __init__(self, message: str, current: dict | None):
        super().__init__(message)
        self.current = current


class RecordNotFound(Exception):
    """No record of that kind and id in the workspace."""


def version(record: Mapping[str, Any]) -> str:
    """The version of a record as listed by :mod:`sitewatch.analyst.records`."""
    text = json.dumps({k: v for k, v in record.items() if k != "version"}, sort_keys=True,
                      ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:VERSION_DIGITS]


def versioned(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record with its ``version`` added."""
    return {**record, "version": version(record)}


class _Kind:
    """How one kind of analyst record is listed, added, changed and deleted."""

    def __init__(self, word: str, id_field: str, lister: Callable, adder: Callable,
                 updater: Callable | None, deleter: Callable):
        self.word, self.id_field = word, id_field
        self.list, self.add, self.update, self.delete = lister, adder, updater, deleter


KINDS = {
    "assessments": _Kind("assessment", "assessment_id", records.list_assessments,
                         records.add_assessment, records.update_assessment,
                         records.delete_assessment),
    "events": _Kind("event", "event_id", records.list_events, records.add_event,
                    records.update_event, records.delete_event),
    "notes": _Kind("note", "note_id", records.list_notes, records.add_note, None,
                   records.delete_note),
}


class AnalystEditor:
    """Reads and writes the analyst records of the workspace ``root`` for the viewer.

    Every method takes the record kind ("assessments", "events" or "notes") and returns
    records with their ``version``. Invalid values raise
    :class:`~sitewatch.errors.SitewatchError` (from :mod:`sitewatch.analyst.records`).
    """

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()

    def get(self, kind: str, record_id: str | int) -> dict[str, Any]:
        """The stored record; :class:`RecordNotFound` if there is none."""
        record = self._find(kind, record_id)
        if record is None:
            raise RecordNotFound(f"no {KINDS[kind].word} {record_id!r} in the workspace")
        return versioned(record)

    def add(self, kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Add a record; ``fields`` as the keyword arguments of ``records.add_<kind>``."""
        spec = KINDS[kind]
        values = dict(fields)
        with self._lock:
            if kind == "assessments":
                row = spec.add(self.root, values.pop("site_id"), values.pop("judgement"),
                               values.pop("confidence"), **values)
            elif kind == "events":
                row = spec.add(self.root, values.pop("occurred"), values.pop("kind"), **values)
            else:
                row = spec.add(self.root, values.pop("text"), **values)
        return versioned(row)

    def update(self, kind: str, record_id: str | int, expected: str,
               fields: Mapping[str, Any]) -> dict[str, Any]:
        """Change ``fields`` of a record last read at version ``expected``."""
        spec = KINDS[kind]
        if spec.update is None:
            raise SitewatchError(f"a {spec.word} cannot be changed; delete it and add another")
        with self._lock:
            self._check(kind, record_id, expected)
            return versioned(spec.update(self.root, record_id, **fields))

    def delete(self, kind: str, record_id: str | int, expected: str) -> dict[str, Any]:
        """Delete a record last read at version ``expected``; returns it as it was."""
        with self._lock:
            self._check(kind, record_id, expected)
            return versioned(KINDS[kind].delete(self.root, record_id))

    def _find(self, kind: str, record_id: str | int) -> dict[str, Any] | None:
        spec = KINDS[kind]
        return next((row for row in spec.list(self.root)
                     if row[spec.id_field] == record_id), None)

    def _check(self, kind: str, record_id: str | int, expected: str) -> None:
        word = KINDS[kind].word
        current = self._find(kind, record_id)
        if current is None:
            raise RecordNotFound(f"no {word} {record_id!r} in the workspace: it was deleted, "
                                 "perhaps from another tab; reload to see the current records")
        now = version(current)
        if now != expected:
            raise EditConflict(
                f"{word} {record_id} was changed by someone else since you loaded it "
                f"(your version {expected}, stored version {now}); reload it and make your "
                "change again", versioned(current))
