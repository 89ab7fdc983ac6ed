"""Acquisition dates: parsing user input, reading metadata, recognising file-name patterns.

All datetimes returned are timezone-aware UTC. Names whose only timestamp is a processing time
(old-style Sentinel-2 ``S2A_OPER_..._TL_`` tile names) are recognised and yield no date, rather
than a wrong one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sitewatch.errors import SitewatchError

#: GDAL metadata keys (any domain) that carry an acquisition time.
METADATA_KEYS = (
    "ACQUISITIONDATETIME",  # GDAL IMAGERY domain (DigitalGlobe, Pleiades, ...)
    "ACQUISITION_DATETIME",
    "ACQUISITION_DATE",
    "DATE_ACQUIRED",
    "SENSING_TIME",
    "DATATAKE_1_DATATAKE_SENSING_START",
    "acquisition_time",  # ENVI header
    "acquisition time",
)

_PROCESSING_TIME_ONLY = re.compile(r"S2[ABCD]_OPER_MSI_L1C_TL_\w{4}_\d{8}T\d{6}_A\d{6}", re.I)
_NAME_PATTERNS = (
    # Sentinel-2 tile band file: T30UWU_20170621T110651_B02
    re.compile(r"T\d{2}[A-Z]{3}_(?P<d>\d{8})T(?P<t>\d{6})"),
    # Sentinel-2 product: S2A_MSIL1C_20190315T081601_...
    re.compile(r"MSIL[12][AC]_(?P<d>\d{8})T(?P<t>\d{6})"),
    # Landsat collection product id: LC08_L1TP_166037_20190315_20190325_01_T1
    re.compile(r"L[CEMOT]0\d_L\w{3}_\d{6}_(?P<d>\d{8})_\d{8}"),
    # generic: 20190315, 2019-03-15, 2019_03_15, optionally followed by T081601
    re.compile(
        r"(?<!\d)(?P<d>(?:19[7-9]\d|20\d\d)[-_]?(?:0[1-9]|1[0-2])[-_]?(?:0[1-9]|[12]\d|3[01]))"
        r"(?:T(?P<t>\d{6}))?(?!\d)"
    ),
)


def parse_user_date(text: str) -> datetime:
    """Parse a date given on the command line or in a file (ISO 8601 or ``YYYYMMDD``).

    Naive values are taken as UTC.
    """
    cleaned = text.strip()
    if re.fullmatch(r"\d{8}", cleaned):
        cleaned = f"{cleaned[:4]}-{cleaned[4:6]}-{cleaned[6:]}"
    try:
        value = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    except ValueError:
        raise SitewatchError(
            f"unparseable date {text!r}; use ISO 8601 such as 2019-03-15 or 2019-03-15T08:30:00Z"
        ) from None
    return as_utc(value)


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def from_metadata(tags: dict[str, str]) -> datetime | None:
    """The acquisition time in a dict of GDAL metadata items, if one of the known keys has it."""
    lowered = {key.lower(): value for key, value in tags.items()}
    for key in METADATA_KEYS:
        value = lowered.get(key.lower())
        if value:
            try:
                return parse_user_date(value.strip("{} ").replace(" ", "T", 1)[:32])
            except SitewatchError:
                continue
    return None


def from_name(name: str) -> datetime | None:
    """The acquisition time written in a file or folder name, if it follows a known pattern."""
    if _PROCESSING_TIME_ONLY.search(name):
        return None
    for pattern in _NAME_PATTERNS:
        match = pattern.search(name)
        if not match:
            continue
        digits = re.sub(r"\D", "", match.group("d"))
        clock = match.groupdict().get("t") or "000000"
        try:
            return datetime.strptime(digits + clock, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            continue
    return None
