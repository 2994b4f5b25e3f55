"""The HTTP side of ``--web-port``: the page at ``/``, its two files, and the WebSocket at ``/ws``.

The page is three small files shipped in the package (``static/``) and read once at start;
it loads nothing from other hosts, which the Content-Security-Policy header also enforces,
so it works offline on a LAN.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web import pages, resource, server
from twisted.web.iweb import IRequest

from tinytcp.server.state import Server, describe_peer
from tinytcp.server.text import TextProtocol
from tinytcp.server.websocket import TextWebSocketResource

log = Logger(namespace="tinytcp")

#: file name -> content type; the page is index.html, served at /
FILES = {
    "index.html": "text/html; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
}

#: only this server's own files and its own WebSocket
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def static_file(name: str) -> bytes:
    """One file of the page, from the installed package."""
    return resources.files("tinytcp.web").joinpath("static", name).read_bytes()


class PageFile(resource.Resource):
    """One file of the page, with the headers that keep it self-contained and fresh."""

    isLeaf = True

    def __init__(self, content: bytes, content_type: str) -> None:
        super().__init__()
        self.content = content
        self.content_type = content_type

    def render(self, request: server.Request) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader("allow", "GET, HEAD")
            request.setHeader("content-type", "text/plain; charset=utf-8")
            return b"only GET and HEAD here\n"
        return super().render(request)

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader("content-type", self.content_type)
        request.setHeader("content-security-policy", POLICY)
        request.setHeader("x-content-type-options", "nosniff")
        request.setHeader("referrer-policy", "no-referrer")
        request.setHeader("cache-control", "no-cache")
        return self.content

    def render_HEAD(self, request: server.Request) -> bytes:
        self.render_GET(request)
        return b""


class Root(resource.Resource):
    """The site's root; any path it does not know is a plain 404."""

    def getChild(self, path: bytes, request: IRequest) -> resource.IResource:
        return pages.notFound()


def make_root(
    tiny: Server, origins: Sequence[str] = (), protocol: Callable[[Server], Protocol] = TextProtocol
) -> resource.Resource:
    """The resource tree: ``/`` (the page), ``/style.css``, ``/app.js`` and ``/ws``."""
    root = Root()
    for name, content_type in FILES.items():
        page = PageFile(static_file(name), content_type)
        root.putChild(b"" if name == "index.html" else name.encode("ascii"), page)
    root.putChild(b"ws", TextWebSocketResource(tiny, origins, protocol))
    return root


class PageRequest(server.Request):
    """A request to the page's site, whose resources take no body: one is counted, never stored.

    twisted.web keeps any request body, in memory or in a temporary file, whatever its size;
    here a body past --max-line bytes closes the connection instead.
    """

    body_limit = 64 * 1024
    _body = 0
    _refused = False

    def gotLength(self, length: int | None) -> None:
        self.content = io.BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._body += len(data)
        if self._body > self.body_limit:
            self._refused = True
            log.info(
                "{peer}: closing: HTTP request body over {limit} bytes",
                peer=describe_peer(self.getClientAddress()),
                limit=self.body_limit,
            )
            self.channel.transport.loseConnection()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """A refused request is not answered: its connection is closing."""
        if not self._refused:
            super().requestReceived(command, path, version)


def make_site(
    tiny: Server,
    origins: Sequence[str] = (),
    reactor: Any = None,
    protocol: Callable[[Server], Protocol] = TextProtocol,
) -> server.Site:
    """The HTTP factory for a --web-port listener.

    An HTTP connection that asks for nothing more is closed after --idle-timeout (Twisted's
    default is 12 hours); a WebSocket is then timed by its text protocol instead.
    """

    class Request(PageRequest):
        body_limit = tiny.settings.max_line

    site = server.Site(
        make_root(tiny, origins, protocol),
        requestFactory=Request,
        timeout=tiny.settings.idle_timeout or None,
        reactor=reactor,
    )
    site.noisy = False
    site.displayTracebacks = False
    return site
