"""Watch files: one TOML file that says what to watch, read and checked here; run by
:func:`sitewatch.watchlist.run_watch` (``sitewatch watch run``).

A watch file names the workspace, the imagery, the reference places and border, and one or more
areas of interest; running it takes every AOI through the whole pipeline (ingest, stack, detect,
sites) and writes the report and the exports. Paths are relative to the watch file. Running it
again ingests only what is new or changed (ingest skips unchanged sources), skips an AOI
without new scenes, stacks only the new acquisitions of one that has some (the time series and
sites are redone over every date; :mod:`sitewatch.scale.plan`) and replaces its sites in one
transaction, a site found again keeping its id; analyst assessments, events and notes are never
touched.

Example (every key is documented in ``docs/watch-file.md``)::

    workspace = "workspace"
    report = "report"                     # optional: HTML + PDF report here after each run
    exports = "exports"                   # optional: GeoJSON, GeoPackage, KML/KMZ, CSV here

    [imagery]
    sources = ["imagery/catalog.json", "scenes/*.tif"]
    start = "2018-09-01"                  # optional, ISO dates (UTC)
    end = "2019-09-01"

    [reference]
    files = ["places.geojson"]            # GeoJSON points (places) and lines (borders)

    [[reference.places]]
    name = "Al-Qaim border crossing"
    kind = "border crossing"
    lon = 40.97
    lat = 34.39

    [[reference.borders]]
    name = "Iraq-Syria border"
    left = "Syria"                        # what lies left of the line walking its vertices
    right = "Iraq"
    coordinates = [[40.95, 34.30], [40.98, 34.45]]

    [[aoi]]
    name = "border-crossing"
    place = "Al-Qaim border crossing"     # a circle of radius_m metres around a place,
    radius_m = 3500                       # or bbox = [west, south, east, north] (degrees),
    sensor = "sentinel-2"                 # or geojson = "aoi.geojson"
    methods = ["default", "timeseries"]
"""

from __future__ import annotations

import glob
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from pyproj import CRS
from pyproj.exceptions import CRSError

from sitewatch.detect import TIMESERIES, pairwise_methods
from sitewatch.detect.run import LEARNED
from sitewatch.errors import SitewatchError
from sitewatch.stack.build import COREGISTRATION_METHODS, NORMALISATION_METHODS

#: Keys a watch file may hold, per table ("" = top level).
KEYS = {
    "": {"workspace", "report", "exports", "imagery", "reference", "aoi", "alerts"},
    "imagery": {"sources", "start", "end", "stac"},
    "stac": {"url", "collections", "max_cloud", "assets"},
    "alerts": {"webhook", "webhook_secret_env", "webhook_secret_file", "email_to", "email_from",
               "smtp_host", "smtp_port", "smtp_user", "smtp_password_env",
               "smtp_password_file", "starttls"},
    "reference": {"files", "places", "borders"},
    "place": {"name", "kind", "lon", "lat", "source", "notes"},
    "border": {"name", "kind", "left", "right", "coordinates", "source"},
    "aoi": {"name", "bbox", "geojson", "place", "radius_m", "sensor", "resolution", "epsg",
            "coregistration", "normalisation", "methods", "min_site_area_m2"},
}
#: Detection methods run when an AOI does not list its own.
DEFAULT_METHODS = ("default", "timeseries")


@dataclass(frozen=True)
class AOISpec:
    """One ``[[aoi]]`` table: where, which imagery, how."""

    name: str
    bbox: tuple[float, float, float, float] | None = None
    geojson: Path | None = None
    place: str | None = None
    radius_m: float = 3000.0
    sensor: str | None = None
    resolution: float | None = None
    epsg: int | None = None
    coregistration: str = "global"
    normalisation: str = "irmad"
    methods: tuple[str, ...] = DEFAULT_METHODS
    min_site_area_m2: float | None = None  # None: by pixel size


@dataclass(frozen=True)
class StacSource:
    """One ``[[imagery.stac]]`` table: a STAC API and what to fetch from it."""

    url: str  # an API URL or a catalogue name of sitewatch.ingest.catalogues
    collections: tuple[str, ...]
    max_cloud: float | None = None
    assets: tuple[str, ...] | None = None


@dataclass(frozen=True)
class WatchFile:
    """A parsed, validated watch file; every path is absolute."""

    path: Path
    workspace: Path
    sources: tuple[Path, ...]
    start: datetime | None
    end: datetime | None
    reference_files: tuple[Path, ...]
    reference_features: tuple[dict, ...]  # GeoJSON features of the inline places and borders
    aois: tuple[AOISpec, ...]
    report: Path | None = None
    exports: Path | None = None
    stac: tuple[StacSource, ...] = ()
    alerts: Any = None  # sitewatch.alerts.Channels, when the file has an [alerts] table


@dataclass
class AOIRun:
    """What a watch run did for one AOI (stack, detections and sites are None / empty when it
    was up to date: no scene new since its sites were stored)."""

    name: str
    stack: Any  # sitewatch.stack.StackResult
    detections: list = field(default_factory=list)  # sitewatch.detect.DetectResult
    sites: Any = None  # sitewatch.sites.SitesResult
    up_to_date: bool = False


@dataclass
class WatchRun:
    """What one ``watch run`` did."""

    watch: WatchFile
    new_scenes: int
    updated_scenes: int
    aois: list[AOIRun]
    report: Any = None  # sitewatch.report.build.ReportResult
    exports: dict[str, Path] = field(default_factory=dict)
    alerts: Any = None  # sitewatch.watchlist.AlertsRun, when the file has [alerts]


def read_watch_file(path: str | os.PathLike) -> WatchFile:
    """Parse and validate a watch file; every mistake names the file and the key."""
    path = Path(path).expanduser().resolve()
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SitewatchError("no such watch file; check the path", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SitewatchError(f"cannot be read ({exc})", path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise SitewatchError(f"is not valid TOML ({exc})", path) from exc
    base = path.parent
    check = _Checker(path)
    check.keys(document, "")
    imagery = check.table(document, "imagery", required=True)
    check.keys(imagery, "imagery")
    stac = _stac_sources(check, imagery.get("stac", []))
    sources = _sources(check, base, check.strings(imagery, "sources", "imagery",
                                                  required=not stac))
    reference = check.table(document, "reference")
    check.keys(reference, "reference")
    aois = document.get("aoi")
    if not isinstance(aois, list) or not aois:
        raise SitewatchError("needs at least one [[aoi]] table (name and bbox, geojson or "
                             "place)", path)
    specs = tuple(_aoi(check, base, table, n) for n, table in enumerate(aois, start=1))
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise SitewatchError(f"AOI names must differ, got {names}", path)
    start = check.date(imagery, "start", "imagery")
    end = check.date(imagery, "end", "imagery", end_of_day=True)
    if start is not None and end is not None and end < start:
        raise check.fail("imagery.end", f"{end:%Y-%m-%d} is before imagery.start "
                                        f"({start:%Y-%m-%d})")
    reference_files = tuple(base / f for f in check.strings(reference, "files", "reference"))
    for file in reference_files:
        if not file.is_file():
            raise check.fail("reference.files", f"{file} is not a file")
    reference_features = tuple(
        [_place_feature(check, t, n) for n, t in enumerate(reference.get("places", []), 1)]
        + [_border_feature(check, t, n) for n, t in enumerate(reference.get("borders", []), 1)])
    workspace = base / check.string(document, "workspace", "", required=True)
    _check_aoi_places(check, specs, reference_files, reference_features, workspace)
    return WatchFile(
        path=path,
        workspace=workspace,
        sources=sources,
        start=start,
        end=end,
        reference_files=reference_files,
        reference_features=reference_features,
        aois=specs,
        report=_optional_path(check, base, document, "report"),
        exports=_optional_path(check, base, document, "exports"),
        stac=stac,
        alerts=_alerts(check, base, document.get("alerts")),
    )


def aoi_region(spec: AOISpec, ws):
    """The :class:`~sitewatch.stack.AOI` of an ``[[aoi]]`` table (a ``place`` is looked up in
    the workspace ``ws``)."""
    from shapely.geometry import box

    from sitewatch.stack import AOI, from_geojson, from_place

    if spec.bbox is not None:
        return AOI(spec.name, box(*spec.bbox))
    if spec.geojson is not None:
        return from_geojson(spec.geojson, spec.name)
    return from_place(ws, spec.place, spec.radius_m, spec.name)


class _Checker:
    """Type checks with messages that name the watch file and the offending key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, message: str) -> SitewatchError:
        return SitewatchError(f"{where}: {message}", self.path)

    def keys(self, table: dict, kind: str, where: str | None = None) -> None:
        unknown = sorted(set(table) - KEYS[kind])
        if unknown:
            raise self.fail(where or kind or "top level",
                            f"unknown key(s) {', '.join(unknown)}; allowed: "
                            f"{', '.join(sorted(KEYS[kind]))}")

    def table(self, document: dict, key: str, *, required: bool = False) -> dict:
        value = document.get(key, None)
        if value is None:
            if required:
                raise self.fail(f"[{key}]", "missing table")
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return value

    def string(self, table: dict, key: str, where: str, *, required: bool = False) -> str | None:
        value = table.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(_at(where, key), "must be a non-empty string")
        return value

    def strings(self, table: dict, key: str, where: str, *, required: bool = False) -> list[str]:
        value = table.get(key, [] if not required else None)
        if isinstance(value, str):
            value = [value]
        if (not isinstance(value, list) or not all(isinstance(v, str) for v in value)
                or (required and not value)):
            raise self.fail(_at(where, key), "must be a string or a list of strings")
        return value

    def number(self, table: dict, key: str, where: str, *, positive: bool = False
               ) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(_at(where, key), f"must be a number, got {value!r}")
        if positive and value <= 0:
            raise self.fail(_at(where, key), f"must be positive, got {value}")
        return float(value)

    def date(self, table: dict, key: str, where: str, *, end_of_day: bool = False
             ) -> datetime | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise self.fail(_at(where, key), f"{value!r} is not an ISO date") from None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, date):
            return datetime.combine(value, time.max if end_of_day else time.min, UTC)
        raise self.fail(_at(where, key), f"{value!r} is not a date")


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _sources(check: _Checker, base: Path, patterns: Sequence[str]) -> tuple[Path, ...]:
    found: list[Path] = []
    for pattern in patterns:
        full = base / pattern
        matches = sorted(glob.glob(str(full))) if glob.has_magic(pattern) else [str(full)]
        if not matches or not all(Path(m).exists() for m in matches):
            raise check.fail("imagery.sources", f"{pattern!r} matches no file or folder "
                                                f"(relative to {base})")
        found.extend(Path(m) for m in matches)
    return tuple(dict.fromkeys(found))


def _check_aoi_places(check: _Checker, specs: Sequence[AOISpec],
                      reference_files: Sequence[Path], reference_features: Sequence[dict],
                      workspace: Path) -> None:
    """Every ``place`` an AOI names is a place of the watch file's references or already of
    the workspace, so that a typo stops the run before anything is written."""
    from sitewatch.geojson import features, read_geojson
    from sitewatch.store import GPKG_NAME, Workspace

    wanted = [(number, spec.place) for number, spec in enumerate(specs, start=1) if spec.place]
    if not wanted:
        return
    known = {f["properties"].get("name") for f in reference_features
             if f["geometry"]["type"] == "Point"}
    for file in reference_files:
        known |= {(feature.get("properties") or {}).get("name")
                  for feature in features(read_geojson(file, "reference file"))
                  if isinstance(feature, dict)
                  and (feature.get("geometry") or {}).get("type") == "Point"}
    if any(place not in known for _, place in wanted) and (workspace / GPKG_NAME).is_file():
        with Workspace.open(workspace) as ws:
            known |= {row["name"] for row in ws.rows("places")}
    for number, place in wanted:
        if place not in known:
            listed = ", ".join(sorted(str(name) for name in known if name)) or "none"
            raise check.fail(f"aoi[{number}].place", f"no reference place named {place!r} in "
                             f"[reference] or the workspace (known: {listed})")


def _stac_sources(check: _Checker, tables: Any) -> tuple[StacSource, ...]:
    from sitewatch.ingest.catalogues import resolve

    if not isinstance(tables, list):
        raise check.fail("imagery.stac", "must be [[imagery.stac]] tables")
    sources = []
    for number, table in enumerate(tables, start=1):
        where = f"imagery.stac[{number}]"
        if not isinstance(table, dict):
            raise check.fail(where, "must be a table")
        check.keys(table, "stac", where)
        url = check.string(table, "url", where, required=True)
        try:
            resolve(url)
        except SitewatchError as exc:
            raise check.fail(_at(where, "url"), exc.reason) from None
        max_cloud = check.number(table, "max_cloud", where)
        if max_cloud is not None and not 0 <= max_cloud <= 100:
            raise check.fail(_at(where, "max_cloud"), f"must be a percentage, got {max_cloud}")
        assets = check.strings(table, "assets", where)
        sources.append(StacSource(
            url, tuple(check.strings(table, "collections", where, required=True)), max_cloud,
            tuple(assets) or None))
    return tuple(sources)


def _alerts(check: _Checker, base: Path, table: Any):
    """The ``[alerts]`` channels, with their secrets read from the environment or files."""
    if table is None:
        return None
    from sitewatch.alerts import Channels, is_loopback_or_https, read_secret

    if not isinstance(table, dict):
        raise check.fail("alerts", "must be a table")
    for clear in ("webhook_secret", "smtp_password"):
        if clear in table:
            raise check.fail(f"alerts.{clear}", f"secrets are never read from the watch file; "
                             f"name an environment variable ({clear}_env) or a file "
                             f"({clear}_file)")
    check.keys(table, "alerts")
    webhook = check.string(table, "webhook", "alerts")
    if webhook is not None and not is_loopback_or_https(webhook):
        raise check.fail("alerts.webhook", f"{webhook!r} must be an https:// URL (or http:// "
                         "to this machine)")
    secrets = {}
    for name in ("webhook_secret", "smtp_password"):
        variable = check.string(table, f"{name}_env", "alerts")
        file = check.string(table, f"{name}_file", "alerts")
        path = None if file is None else base / file
        if variable and variable not in os.environ:
            raise check.fail(f"alerts.{name}_env", f"the environment variable {variable} is "
                             "not set")
        if path is not None and not path.is_file():
            raise check.fail(f"alerts.{name}_file", f"{path} is not a file")
        secrets[name] = read_secret(os.environ, variable, path)
    email_to = check.strings(table, "email_to", "alerts")
    smtp_host = check.string(table, "smtp_host", "alerts")
    if email_to and not smtp_host:
        raise check.fail("alerts.smtp_host", "email_to needs the SMTP server (smtp_host)")
    if not webhook and not email_to:
        raise check.fail("alerts", "give a webhook, or email_to and smtp_host")
    port = check.number(table, "smtp_port", "alerts", positive=True)
    if port is not None and (port != int(port) or port > 65535):
        raise check.fail("alerts.smtp_port", f"{port} is not a port number")
    starttls = table.get("starttls", True)
    if not isinstance(starttls, bool):
        raise check.fail("alerts.starttls", "must be true or false")
    return Channels(webhook_url=webhook, webhook_secret=secrets["webhook_secret"],
                    email_to=tuple(email_to), email_from=check.string(table, "email_from",
                                                                      "alerts"),
                    smtp_host=smtp_host, smtp_port=int(port or 587),
                    smtp_user=check.string(table, "smtp_user", "alerts"),
                    smtp_password=secrets["smtp_password"], starttls=starttls)


def _optional_path(check: _Checker, base: Path, document: dict, key: str) -> Path | None:
    value = check.string(document, key, "")
    return None if value is None else base / value


def _place_feature(check: _Checker, table: Any, number: int) -> dict:
    where = f"reference.places[{number}]"
    if not isinstance(table, dict):
        raise check.fail(where, "must be a table")
    check.keys(table, "place", where)
    lon, lat = check.number(table, "lon", where), check.number(table, "lat", where)
    if lon is None or lat is None or not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise check.fail(where, "needs lon (-180..180) and lat (-90..90) in degrees")
    properties = {k: table[k] for k in ("name", "kind", "source", "notes") if k in table}
    check.string(table, "name", where, required=True)
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": properties}


def _border_feature(check: _Checker, table: Any, number: int) -> dict:
    where = f"reference.borders[{number}]"
    if not isinstance(table, dict):
        raise check.fail(where, "must be a table")
    check.keys(table, "border", where)
    check.string(table, "name", where, required=True)
    coordinates = table.get("coordinates")
    if (not isinstance(coordinates, list) or len(coordinates) < 2
            or not all(isinstance(c, list) and len(c) == 2
                       and all(isinstance(v, int | float) for v in c) for c in coordinates)):
        raise check.fail(_at(where, "coordinates"),
                         "must list at least two [lon, lat] pairs (degrees)")
    properties = {k: table[k] for k in ("name", "kind", "left", "right", "source")
                  if k in table}
    return {"type": "Feature", "geometry": {"type": "LineString", "coordinates": coordinates},
            "properties": properties}


def _aoi(check: _Checker, base: Path, table: Any, number: int) -> AOISpec:
    where = f"aoi[{number}]"
    if not isinstance(table, dict):
        raise check.fail(where, "must be a table")
    check.keys(table, "aoi", where)
    name = check.string(table, "name", where, required=True)
    given = [k for k in ("bbox", "geojson", "place") if k in table]
    if len(given) != 1:
        raise check.fail(where, "give exactly one of bbox, geojson or place")
    bbox = table.get("bbox")
    if bbox is not None:
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, int | float) for v in bbox)):
            raise check.fail(_at(where, "bbox"), "must be [west, south, east, north] degrees")
        west, south, east, north = map(float, bbox)
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            raise check.fail(_at(where, "bbox"), f"{bbox} is not a lon/lat box "
                                                 "(west < east, south < north)")
        bbox = (west, south, east, north)
    geojson = check.string(table, "geojson", where)
    methods = tuple(check.strings(table, "methods", where)) or DEFAULT_METHODS
    known = sorted({*pairwise_methods(), LEARNED, TIMESERIES})
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise check.fail(_at(where, "methods"), f"unknown method(s) {', '.join(unknown)}; "
                                                f"choose from {', '.join(known)}")
    epsg = None if table.get("epsg") is None else int(check.number(table, "epsg", where))
    if epsg is not None:
        try:
            CRS.from_epsg(epsg)
        except CRSError:
            raise check.fail(_at(where, "epsg"), f"EPSG:{epsg} is not a known CRS") from None
    for key, choices in (("coregistration", COREGISTRATION_METHODS),
                         ("normalisation", NORMALISATION_METHODS)):
        value = check.string(table, key, where)
        if value is not None and value not in choices:
            raise check.fail(_at(where, key), f"{value!r} is not one of {', '.join(choices)}")
    return AOISpec(
        name=name,
        bbox=bbox,
        geojson=None if geojson is None else base / geojson,
        place=check.string(table, "place", where),
        radius_m=check.number(table, "radius_m", where, positive=True) or 3000.0,
        sensor=check.string(table, "sensor", where),
        resolution=check.number(table, "resolution", where, positive=True),
        epsg=epsg,
        coregistration=check.string(table, "coregistration", where) or "global",
        normalisation=check.string(table, "normalisation", where) or "irmad",
        methods=methods,
        min_site_area_m2=check.number(table, "min_site_area_m2", where, positive=True),
    )
