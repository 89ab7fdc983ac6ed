"""Running the viewer: bind a socket, say where and how to write, serve with uvicorn.

The server listens on 127.0.0.1 unless told otherwise. Listening on any other address makes
the workspace readable from other machines, so it needs a token (then writing needs it too);
without one :func:`serve` refuses to start and says why.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn

from sitewatch.errors import SitewatchError
from sitewatch.web.app import LOOPBACK_NAMES, create_app, is_loopback

#: Addresses that mean "every interface of this machine".
ANY_ADDRESS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class Ready:
    """A started viewer: its address, whether writing is enabled and with which token, whether
    other machines can reach it, and how to stop it (``stop()``, from any thread)."""

    url: str
    token: str | None
    writable: bool
    exposed: bool
    stop: Callable[[], None]

    @property
    def message(self) -> str:
        """What to tell the person who started it, a few lines."""
        lines = [f"sitewatch viewer at {self.url}"]
        if self.exposed:
            lines.append("listening beyond this machine: anyone who can reach it can read the "
                         "workspace; writing needs the token")
        if self.writable:
            lines.append(f"writing enabled; token: {self.token}")
            lines.append(f"open {self.url}#token={self.token} to edit (the token stays in "
                         "this browser tab)")
        else:
            lines.append("read-only (start with --write to record analyst input)")
        lines.append("press Ctrl+C to stop")
        return "\n".join(lines)


def serve(workspace: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8765,
          token: str | None = None, allow_write: bool = False,
          on_ready: Callable[[Ready], None] | None = None,
          report_dir: str | os.PathLike | None = None) -> None:
    """Serve the viewer of ``workspace`` until stopped (Ctrl+C or ``Ready.stop``).

    Parameters
    ----------
    workspace
        Workspace directory.
    host, port
        Address to listen on; port 0 picks a free one.
    token, allow_write
        Writing is enabled by either; without a token one is generated and reported.
    on_ready
        Called with a :class:`Ready` once the socket listens; default: print its message.
    report_dir
        Folder of a report built by ``sitewatch report``, linked from the site panels.

    Raises
    ------
    SitewatchError
        ``host`` is not a loopback address and no token was given, the address cannot be
        bound (port in use, unknown host), or the workspace or report folder is invalid.
    """
    loopback = is_loopback(host)
    if not loopback and token is None:
        raise SitewatchError(
            f"refusing to listen on {host or 'all interfaces'} without a token: other machines "
            "could read the workspace; give --token (writing then needs it too) or listen on "
            "127.0.0.1")
    if loopback:
        allowed = LOOPBACK_NAMES
    elif host in ANY_ADDRESS:
        allowed = ("*",)
    else:
        allowed = (*LOOPBACK_NAMES, host)
    app = create_app(workspace, token=token, allow_write=allow_write, report_dir=report_dir,
                     allowed_hosts=allowed)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    sock = _listen(host, port)
    try:
        shown = f"[{host}]" if ":" in host else host or "0.0.0.0"
        ready = Ready(f"http://{shown}:{sock.getsockname()[1]}/", app.state.token,
                      app.state.writable, not loopback,
                      lambda: setattr(server, "should_exit", True))
        (on_ready or (lambda r: print(r.message, flush=True)))(ready)
        server.run(sockets=[sock])
    finally:
        sock.close()


def _listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` and listening."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise SitewatchError(f"cannot listen on {host!r}: {exc}; give an address of this "
                             "machine such as 127.0.0.1") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise SitewatchError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose "
                             "another port with --port") from exc
    return sock
