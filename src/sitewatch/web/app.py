"""The viewer's HTTP interface: a FastAPI (ASGI) application over one workspace.

Routes
    ``GET /``, ``/static/app.js``, ``/static/style.css``, ``/static/vendor/{file}``
        The page, its assets and the map libraries (OpenLayers, proj4js, geographiclib),
        bundled in the package at build time (nothing is fetched from the internet).
    ``GET /api/workspace``
        Name, whether writing is enabled, the AOIs, and the vocabularies of the forms.
    ``GET /api/aois/{aoi}``
        The map of an AOI (:func:`sitewatch.web.content.aoi_map`).
    ``GET /api/aois/{aoi}/imagery/{date}/{z}/{x}/{y}.png``
        Imagery tile (z, x, y) of the AOI's stack on one acquisition date (ISO day), in the
        tile grid of :class:`sitewatch.web.tiles.TileGrid` (given by ``/api/aois/{aoi}``).
    ``GET /api/aois/{aoi}/change/{layer}/{z}/{x}/{y}.png``
        Tile of a change layer (onset, magnitude or kinds) the map lists.
    ``GET /api/aois/{aoi}/exports/{format}``
        The AOI's sites exported on request (geojson, kml, kmz, gpkg or csv;
        :func:`sitewatch.report.exports.export`).
    ``GET /api/sites/{site_id}`` and ``/api/sites/{site_id}/frames/{date}.png``
        The site panel (:func:`sitewatch.web.content.site_panel`) and the site's frame on a date.
    ``POST /api/{assessments,events,notes}``, ``GET|PUT|DELETE /api/{...}/{id}``
        Analyst records (:mod:`sitewatch.web.edits`); a site's records come with its panel.
        Notes cannot be changed, only deleted (:mod:`sitewatch.analyst.records` has no
        ``update_note``).
    ``GET /report``, ``/report.pdf``
        The report built by ``sitewatch report`` in the folder the server was given, if any.

Security
    - Reading is open; every write needs writing enabled (``allow_write`` or a token) and the
      header ``Authorization: Bearer <token>`` (RFC 6750), else 403 or 401. Changes and
      deletions also need ``If-Match: <version>`` (428 without it, 409 when the record changed
      meanwhile).
    - No route takes a file path: the page's assets and the report are fixed files, AOIs,
      sites, dates and records are looked up in the workspace by validated name or id.
    - The ``Host`` header must name an allowed host (loopback names by default), which stops a
      web page from reaching this server through DNS rebinding. Pages are served with a
      Content-Security-Policy that allows this origin only.
    - Errors are JSON ``{"detail": "..."}`` with a 4xx status: 404 unknown AOI, site, date or
      record; 422 invalid input (the message of the first problem).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route signatures, whose
# annotations name types local to create_app.
import ipaddress
import os
import re
import secrets
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, StringConstraints

from sitewatch.analyst.confidence import CREDIBILITY, TERMS
from sitewatch.analyst.records import EVENT_KINDS
from sitewatch.errors import SitewatchError
from sitewatch.report.build import MARKER as REPORT_MARKER
from sitewatch.report.exports import export
from sitewatch.stack import stack_grid
from sitewatch.store import Workspace
from sitewatch.version import __version__
from sitewatch.web.content import EXPORT_FORMATS, aoi_map, site_panel, workspace_summary
from sitewatch.web.edits import KINDS, AnalystEditor, EditConflict, RecordNotFound
from sitewatch.web.imagery import StackImages, StackView
from sitewatch.web.tiles import ChangeLayer, StackTiles, TileOutside, Tiles, change_layers

#: Host names a loopback-bound viewer answers to.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
#: Shortest token accepted from the user (a generated one has 43 characters).
MIN_TOKEN_CHARS = 16
#: Report files served from the report folder, by route.
REPORT_FILES = {"/report": ("report.html", "text/html; charset=utf-8"),
                "/report.pdf": ("report.pdf", "application/pdf")}
#: Media type and file extension of each export format.
EXPORT_TYPES = {"geojson": ("application/geo+json", ".geojson"),
                "kml": ("application/vnd.google-earth.kml+xml", ".kml"),
                "kmz": ("application/vnd.google-earth.kmz", ".kmz"),
                "gpkg": ("application/geopackage+sqlite3", ".gpkg"),
                "csv": ("text/csv; charset=utf-8", ".csv")}
_ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
#: The map libraries' files (copied from their npm packages at build time, see setup.py).
_VENDOR = {"ol.js": "text/javascript; charset=utf-8", "ol.css": "text/css; charset=utf-8",
           "proj4.js": "text/javascript; charset=utf-8",
           "geodesic.js": "text/javascript; charset=utf-8"}
#: How long a browser may keep a tile or a library file, seconds (tile URLs carry the raster's
#: version, :func:`sitewatch.web.content.content_version`).
TILE_MAX_AGE_S = 86_400
_PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
             "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
_REPORT_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
               "frame-ancestors 'none'")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")

# -- request bodies ---------------------------------------------------------------------------
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100,
                                      pattern=r"^[A-Za-z0-9_.:-]+$")]
Short = Annotated[str, StringConstraints(max_length=200)]
Long = Annotated[str, StringConstraints(max_length=10_000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AssessmentIn(_Body):
    site_id: Id
    judgement: Long
    confidence: Short
    author: Short | None = None
    assessed: Short | None = None
    notes: Long | None = None


class AssessmentChange(_Body):
    site_id: Id | None = None
    judgement: Long | None = None
    confidence: Short | None = None
    author: Short | None = None
    assessed: Short | None = None
    notes: Long | None = None


class EventIn(_Body):
    occurred: Short
    kind: Short
    lon: float | None = None
    lat: float | None = None
    site_id: Id | None = None
    description: Long | None = None
    source: Long | None = None
    url: Long | None = None
    credibility: Short | None = None
    author: Short | None = None


class EventChange(_Body):
    occurred: Short | None = None
    kind: Short | None = None
    lon: float | None = None
    lat: float | None = None
    site_id: Id | None = None
    description: Long | None = None
    source: Long | None = None
    url: Long | None = None
    credibility: Short | None = None
    author: Short | None = None


class NoteIn(_Body):
    text: Long
    subject: Id | None = None
    author: Short | None = None


#: Largest request body the viewer reads (bytes): an assessment or a note of 10,000 characters
#: is well under 100 kB.
MAX_BODY_BYTES = 1_000_000


class BodyLimit:
    """ASGI middleware: a request whose body is larger than ``limit`` bytes gets 413, whether
    it declares its size (Content-Length, refused before anything is read) or streams it
    (chunked: answered once the limit is passed, and the app is told the client went away, so
    it stops reading); memory per request stays bounded."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received, refused = 0, False

        async def counted():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > self.limit:
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}  # the app stops reading
            return message

        async def unless_refused(message):
            if not refused:
                await send(message)

        await self.app(scope, counted, unless_refused)

    async def _refuse(self, send) -> None:
        response = JSONResponse({"detail": f"request body larger than {self.limit} bytes"},
                                status_code=413)
        await send({"type": "http.response.start", "status": 413,
                    "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def create_app(workspace: str | os.PathLike, *, token: str | None = None,
               allow_write: bool = False, report_dir: str | os.PathLike | None = None,
               allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The viewer of ``workspace`` as an ASGI application.

    Parameters
    ----------
    workspace
        Workspace directory (holds ``sitewatch.gpkg``).
    token
        The secret a write must present (at least :data:`MIN_TOKEN_CHARS` printable
        characters without spaces); giving one enables writing. With ``allow_write``
        and no token, one is generated (:func:`secrets.token_urlsafe`, 32 bytes). The app's
        ``state.token`` and ``state.writable`` say which.
    allow_write
        Enable writing analyst records (read-only otherwise).
    report_dir
        A folder written by ``sitewatch report`` (``report.html``, ``report.pdf``, and its
        marker file), linked from each site's panel; None for no report.
    allowed_hosts
        Host names the ``Host`` header may carry (any port); ``"*"`` for any. Default: the
        loopback names :data:`LOOPBACK_NAMES`.

    Raises
    ------
    SitewatchError
        ``workspace`` is not a sitewatch workspace, or ``report_dir`` is not a report folder.
    """
    with Workspace.open(workspace) as ws:
        root = ws.root
    report = None
    if report_dir is not None:
        report = Path(report_dir).expanduser().resolve()
        if not (report / REPORT_MARKER).is_file():
            raise SitewatchError(f"not a report folder (no {REPORT_MARKER}); build one with "
                                 "'sitewatch report --out' and give that folder", report)
    if token is not None and (len(token) < MIN_TOKEN_CHARS or not token.isprintable()
                              or any(c.isspace() for c in token)):
        raise SitewatchError(f"a token must be at least {MIN_TOKEN_CHARS} printable characters "
                             "without spaces; leave it out to have one generated")
    writable = allow_write or token is not None
    if writable and token is None:
        token = secrets.token_urlsafe(32)
    hosts = {_host_name(h) for h in (allowed_hosts or LOOPBACK_NAMES)}

    app = FastAPI(title="sitewatch viewer", version=__version__, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.state.token = token if writable else None
    app.state.writable = writable
    images = StackImages()
    tiles = Tiles()
    layers_seen: dict[tuple, dict[str, ChangeLayer]] = {}
    editor = AnalystEditor(root)
    static = resources.files("sitewatch.web") / "static"

    # -- errors and headers --------------------------------------------------------------
    @app.exception_handler(SitewatchError)
    async def _invalid(request: Request, exc: SitewatchError) -> JSONResponse:
        return JSONResponse({"detail": exc.reason}, status_code=422)

    @app.exception_handler(RecordNotFound)
    async def _missing(request: Request, exc: RecordNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(EditConflict)
    async def _conflict(request: Request, exc: EditConflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "current": exc.current}, status_code=409)

    @app.exception_handler(RequestValidationError)
    async def _malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        host = _host_name(request.headers.get("host", ""))
        if "*" not in hosts and host not in hosts:
            return JSONResponse(
                {"detail": f"this viewer does not answer to the host name {host!r}; open it "
                           "at the address printed when it started"}, status_code=400)
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    # -- dependencies ----------------------------------------------------------------------
    def writer(request: Request) -> None:
        if not writable:
            raise HTTPException(403, "this viewer is read-only; restart 'sitewatch serve' "
                                     "with --write (or --token) to record analyst input")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise HTTPException(401, "writing needs the token printed when the viewer "
                                     "started: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(value.strip().encode(), token.encode()):
            raise HTTPException(401, "wrong token: use the one printed when the viewer started",
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def if_match(request: Request) -> str:
        value = request.headers.get("if-match")
        if value is None or not value.strip():
            raise HTTPException(428, "send the record's version in an If-Match header, so that "
                                     "an edit made meanwhile (in another tab) is not "
                                     "overwritten")
        return value.strip().removeprefix("W/").strip('"')

    Writer = Annotated[None, Depends(writer)]
    Version = Annotated[str, Depends(if_match)]
    AoiName = Annotated[str, PathParam(max_length=200)]
    SiteId = Annotated[str, PathParam(max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]
    TileIndex = Annotated[int, PathParam(ge=0, le=2**20)]

    def stack_view(ws: Workspace, aoi: str) -> StackView:
        known = {row["name"]: row for row in workspace_summary(ws)}
        if aoi not in known:
            raise HTTPException(404, f"no AOI {aoi!r} in the workspace; its AOIs are "
                                     f"{', '.join(sorted(known)) or 'none'}")
        if not known[aoi]["has_stack"]:
            raise HTTPException(404, f"AOI {aoi!r} has no stack to show yet; build one with "
                                     "'sitewatch stack'")
        return images.view(ws, aoi)

    def site_row(ws: Workspace, site_id: str) -> dict[str, Any]:
        rows = ws.rows("sites", "site_id = ?", (site_id,))
        if not rows:
            raise HTTPException(404, f"no site {site_id!r} in the workspace")
        if rows[0]["aoi"] is None:
            raise HTTPException(404, f"site {site_id!r} belongs to no AOI")
        return rows[0]

    def time_index(dates: Sequence[str], day: str) -> int:
        if not _DAY.fullmatch(day):
            raise HTTPException(422, f"date {day!r} is not an ISO day such as 2019-05-15")
        if day not in dates:
            raise HTTPException(404, f"no image on {day}; the stack's dates are "
                                     f"{', '.join(dates)}")
        return list(dates).index(day)

    def stack_tiles(ws: Workspace, aoi: str) -> tuple[dict[str, Any], StackTiles]:
        """The AOI's newest stack record and its tiles (cheaper than :func:`stack_view`: one
        query a tile)."""
        rows = ws.rows("rasters", "kind = 'stack' AND aoi = ?", (aoi,), order_by="fid DESC")
        if not rows:
            if not ws.rows("aois", "name = ?", (aoi,)):
                raise HTTPException(404, f"no AOI {aoi!r} in the workspace")
            raise HTTPException(404, f"AOI {aoi!r} has no stack to show yet; build one with "
                                     "'sitewatch stack'")
        return rows[0], tiles.stack(ws.root / rows[0]["path"], stack_grid(rows[0]))

    def aoi_layers(ws: Workspace, aoi: str, record: dict[str, Any],
                   source: StackTiles) -> dict[str, ChangeLayer]:
        """The change layers of the AOI on its newest stack, looked up again only after a
        new change raster was recorded."""
        newest = ws.rows("rasters", "aoi = ? AND kind LIKE 'change:%'", (aoi,),
                         order_by="fid DESC")
        key = (aoi, record["path"], newest[0]["fid"] if newest else None)
        if key not in layers_seen:
            layers_seen[key] = change_layers(ws, aoi, source.grid.grid, source.dates)
        return layers_seen[key]

    def tile_response(png: bytes) -> Response:
        return Response(png, media_type="image/png",
                        headers={"Cache-Control": f"private, max-age={TILE_MAX_AGE_S}"})

    # -- page ------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return Response((static / "index.html").read_bytes(), media_type="text/html",
                        headers={"Content-Security-Policy": _PAGE_CSP,
                                 "Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in _ASSETS:
            raise HTTPException(404, f"no asset {name!r}")
        return Response((static / name).read_bytes(), media_type=_ASSETS[name],
                        headers={"Cache-Control": "no-cache"})

    @app.get("/static/vendor/{name}", include_in_schema=False)
    def library(name: str) -> Response:
        if name not in _VENDOR:
            raise HTTPException(404, f"no library file {name!r}")
        path = static / "vendor" / name
        if not path.is_file():
            raise HTTPException(500, f"the map library file {name} is missing from the "
                                     "installed package: reinstall sitewatch (pip install), "
                                     "whose build copies it from npm")
        return Response(path.read_bytes(), media_type=_VENDOR[name],
                        headers={"Cache-Control": f"private, max-age={TILE_MAX_AGE_S}"})

    # -- reading ---------------------------------------------------------------------------
    @app.get("/api/workspace")
    def workspace_info() -> dict[str, Any]:
        with Workspace.open(root) as ws:
            aois = workspace_summary(ws)
        return {"name": root.name, "sitewatch_version": __version__, "writable": writable,
                "aois": aois, "report": _report_file(report, "/report") is not None,
                "confidence_terms": [{"term": c.term, "low": c.low, "high": c.high}
                                     for c in TERMS],
                "event_kinds": list(EVENT_KINDS), "credibility": list(CREDIBILITY),
                "export_formats": list(EXPORT_FORMATS)}

    @app.get("/api/aois/{aoi}")
    def aoi_content(aoi: AoiName) -> dict[str, Any]:
        with Workspace.open(root) as ws:
            view = stack_view(ws, aoi)
            record, source = stack_tiles(ws, aoi)
            return aoi_map(ws, view, aoi, aoi_layers(ws, aoi, record, source))

    @app.get("/api/aois/{aoi}/imagery/{day}/{z}/{x}/{y}.png")
    def imagery_tile(aoi: AoiName, day: str, z: TileIndex, x: TileIndex,
                     y: TileIndex) -> Response:
        with Workspace.open(root) as ws:
            _, source = stack_tiles(ws, aoi)
        t = time_index(source.dates, day)
        try:
            return tile_response(tiles.imagery_png(source, t, z, x, y))
        except TileOutside as exc:
            raise HTTPException(404, str(exc)) from exc

    @app.get("/api/aois/{aoi}/change/{layer}/{z}/{x}/{y}.png")
    def change_tile(aoi: AoiName, layer: str, z: TileIndex, x: TileIndex,
                    y: TileIndex) -> Response:
        with Workspace.open(root) as ws:
            record, source = stack_tiles(ws, aoi)
            layers = aoi_layers(ws, aoi, record, source)
        if layer not in layers:
            raise HTTPException(404, f"no change layer {layer!r} for AOI {aoi!r}; it has "
                                     f"{', '.join(layers) or 'none (run sitewatch detect)'}")
        try:
            return tile_response(tiles.change_png(layers[layer], source.grid, z, x, y))
        except TileOutside as exc:
            raise HTTPException(404, str(exc)) from exc

    @app.get("/api/aois/{aoi}/exports/{fmt}")
    def aoi_export(aoi: AoiName, fmt: str) -> Response:
        with Workspace.open(root) as ws:
            stack_view(ws, aoi)
        if fmt not in EXPORT_TYPES:
            raise HTTPException(404, f"no export format {fmt!r}; use one of "
                                     f"{', '.join(EXPORT_FORMATS)}")
        media_type, suffix = EXPORT_TYPES[fmt]
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", aoi) + "-sites" + suffix
        with tempfile.TemporaryDirectory(prefix="sitewatch-web-") as folder:
            path = export(root, Path(folder) / name, aoi=aoi, format=fmt)
            data = path.read_bytes()
        return Response(data, media_type=media_type,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/api/sites/{site_id}")
    def site(site_id: SiteId) -> dict[str, Any]:
        with Workspace.open(root) as ws:
            row = site_row(ws, site_id)
            panel = site_panel(ws, images, stack_view(ws, row["aoi"]), row)
        panel["report"] = (f"/report#{site_id}" if _report_file(report, "/report") is not None
                           else None)
        return panel

    @app.get("/api/sites/{site_id}/frames/{day}.png")
    def site_frame(site_id: SiteId, day: str) -> Response:
        with Workspace.open(root) as ws:
            row = site_row(ws, site_id)
            view = stack_view(ws, row["aoi"])
        t = time_index(view.dates, day)
        frames = images.site_frames(view, site_id, view.imagery.to_grid(row["geom"]))
        return Response(frames.pngs[t], media_type="image/png",
                        headers={"Cache-Control": "private, max-age=300"})

    @app.get("/report", include_in_schema=False)
    @app.get("/report.pdf", include_in_schema=False)
    def report_file(request: Request) -> FileResponse:
        route = request.url.path
        path = _report_file(report, route)
        if path is None:
            raise HTTPException(404, "no report: start the viewer with --report pointing at a "
                                     "folder written by 'sitewatch report'")
        headers = {"Content-Security-Policy": _REPORT_CSP} if route == "/report" else {}
        return FileResponse(path, media_type=REPORT_FILES[route][1], headers=headers)

    # -- analyst records -------------------------------------------------------------------
    def record_routes(kind: str, new_model: type[_Body], change_model: type[_Body] | None,
                      id_type: type) -> None:
        base = f"/api/{kind}"
        IdParam = (Annotated[int, PathParam(ge=1)] if id_type is int
                   else Annotated[str, PathParam(max_length=100,
                                                 pattern=r"^[A-Za-z0-9_.:-]+$")])

        def get_record(record_id: IdParam) -> JSONResponse:
            return _record_response(editor.get(kind, record_id))

        def add_record(body: new_model, _: Writer) -> JSONResponse:
            record = editor.add(kind, body.model_dump(exclude_unset=True))
            response = _record_response(record, status_code=201)
            response.headers["Location"] = f"{base}/{record[KINDS[kind].id_field]}"
            return response

        def delete_record(record_id: IdParam, _: Writer, expected: Version) -> JSONResponse:
            return JSONResponse(editor.delete(kind, record_id, expected))

        app.add_api_route(f"{base}/{{record_id}}", get_record, methods=["GET"])
        app.add_api_route(base, add_record, methods=["POST"], status_code=201)
        app.add_api_route(f"{base}/{{record_id}}", delete_record, methods=["DELETE"])
        if change_model is not None:
            def change_record(record_id: IdParam, body: change_model, _: Writer,
                              expected: Version) -> JSONResponse:
                fields = body.model_dump(exclude_unset=True)
                if not fields:
                    raise HTTPException(422, f"nothing to change; give one or more of "
                                             f"{', '.join(change_model.model_fields)}")
                return _record_response(editor.update(kind, record_id, expected, fields))

            app.add_api_route(f"{base}/{{record_id}}", change_record, methods=["PUT"])

    record_routes("assessments", AssessmentIn, AssessmentChange, str)
    record_routes("events", EventIn, EventChange, str)
    record_routes("notes", NoteIn, None, int)
    return app


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IPv4/IPv6 address) is this machine only."""
    name = _host_name(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str:
    """The name of a ``Host`` header or bind address, without port or IPv6 brackets,
    lower-case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def _report_file(report: Path | None, route: str) -> Path | None:
    """The report file served at ``route``, when the report folder holds it."""
    if report is None:
        return None
    path = report / REPORT_FILES[route][0]
    return path if path.is_file() else None


def _record_response(record: dict[str, Any], status_code: int = 200) -> JSONResponse:
    return JSONResponse(record, status_code=status_code,
                        headers={"ETag": f'"{record["version"]}"'})


def _validation_message(exc: RequestValidationError) -> str:
    """The first problem of a rejected request as one line: where, then what."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"] if part not in ("body", "path",
                                                                              "query"))
        problems.append(f"{where or 'request'}: {error['msg']}")
    return "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)"
                                      if len(problems) > 3 else "")
