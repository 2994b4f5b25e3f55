"""The WebSocket wire format: one text-mode line per WebSocket message, both ways.

A browser speaks exactly what telnet speaks.  Rather than re-implement the text protocol's
promises (connection limit, idle timeout, backpressure, slow consumers, shutdown with BYE),
each WebSocket connection runs a real ``TextProtocol`` whose transport is ``LineTransport``:
every CRLF-ended line the protocol writes becomes one WebSocket text message, and flow
control, closing and addresses go to the TCP transport underneath.  Each message the browser
sends is fed to it as one line.

Twisted's WebSocket layer (``twisted.web.websocket``, 26.10 and later: it hands over whole
messages) joins a message's frames in memory without a limit, so ``--max-line`` is enforced
below it: ``MessageSizeGuard`` reads the frame headers as the bytes arrive, and a message
announced longer than the limit gets ``ERROR LINE_TOO_LONG`` before its payload is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet.interfaces import IConsumer, INegotiated, IPushProducer, ITransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from twisted.web.websocket import WebSocketResource, WebSocketTransport
from wsproto.utilities import LocalProtocolError
from zope.interface import implementer

from tinytcp.protocol import errors
from tinytcp.protocol.core import error
from tinytcp.protocol.lines import LF
from tinytcp.protocol.wire import CRLF, encode_text_reply
from tinytcp.protocol.wsguard import MessageSizeGuard
from tinytcp.server.state import Server, describe_peer
from tinytcp.server.text import TextProtocol
from tinytcp.web.origin import origin_of

log = Logger(namespace="tinytcp")

#: WebSocket close codes (RFC 6455 section 7.4.1)
NORMAL = 1000
GOING_AWAY = 1001
MESSAGE_TOO_BIG = 1009


@implementer(ITransport, IConsumer, IPushProducer)
class LineTransport:
    """The text protocol's transport on a WebSocket: lines out as messages, the rest to TCP."""

    def __init__(self, websocket: Any, server: Server) -> None:
        #: Twisted's WebSocket wire protocol: sendTextMessage, loseConnection(code) and .transport
        self.websocket = websocket
        self.tcp = websocket.transport
        #: the page came over https (wss): credentials do not cross the network in clear. The
        #: bridge does not provide INegotiated itself, since its TLS handshake is long done
        self.secure = INegotiated.providedBy(self.tcp)
        self.server = server
        self.closed = False
        #: the start of a line not yet ended by CRLF (the text protocol writes whole lines)
        self._partial = b""

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self._partial:
            data, self._partial = self._partial + data, b""
        lines = data.split(CRLF)
        self._partial = lines.pop()
        for line in lines:
            self._send(line)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def _send(self, line: bytes) -> None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:  # never from the text protocol, which answers only UTF-8 lines
            send: Callable[[Any], None] = self.websocket.sendBytesMessage
            message: Any = line
        else:
            send, message = self.websocket.sendTextMessage, text
        try:
            send(message)
        except LocalProtocolError:  # the browser already closed the WebSocket
            self.closed = True

    def loseConnection(self, code: int | None = None) -> None:
        """Close the WebSocket (1001 when the server is stopping) once the queued bytes are sent."""
        if self.closed:
            self.tcp.loseConnection()
            return
        self.closed = True
        if code is None:
            code = GOING_AWAY if self.server.stopping else NORMAL
        try:
            self.websocket.loseConnection(code)
        except LocalProtocolError:
            self.tcp.loseConnection()

    def abortConnection(self) -> None:
        self.closed = True
        self.tcp.abortConnection()

    def getPeer(self) -> Any:
        return self.tcp.getPeer()

    def getHost(self) -> Any:
        return self.tcp.getHost()

    # the text protocol is the TCP transport's producer, in place of the HTTP channel it upgraded
    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.tcp.unregisterProducer()
        self.tcp.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.tcp.unregisterProducer()

    def pauseProducing(self) -> None:
        self.tcp.pauseProducing()

    def resumeProducing(self) -> None:
        self.tcp.resumeProducing()

    def stopProducing(self) -> None:
        self.tcp.stopProducing()


class WebSocketBridge:
    """One browser: WebSocket messages in, text-mode lines to a ``TextProtocol``, its lines out."""

    def __init__(self, server: Server, request: Request, protocol: Callable[[Server], Protocol] = TextProtocol) -> None:
        self.server = server
        self.request = request
        self.max_line = server.settings.max_line
        self.text = protocol(server)
        self.transport: LineTransport | None = None
        self._guard = MessageSizeGuard(self.max_line)
        self._deliver: Callable[[bytes], None] | None = None
        self._refused = False
        #: a message was too long: nothing more is read
        self._stopped = False

    # WebSocketProtocol
    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        """Put the size guard between the TCP stream and Twisted's frame parser.

        Twisted upgrades the HTTP channel by pointing its ``dataReceived`` at the WebSocket
        protocol's; the guard takes that place.  Should a future Twisted upgrade differently,
        the connection is refused rather than served without a size limit.
        """
        self.transport = LineTransport(transport, self.server)
        channel = self.request.channel
        wire_received = getattr(transport, "dataReceived", None)
        if wire_received is None or channel.dataReceived != wire_received:
            log.error("WebSocket: cannot bound message sizes with this Twisted; refusing the connection")
            self._refused = True
            self.transport.abortConnection()
            return
        self._deliver = wire_received
        channel.dataReceived = self.bytes_received

    def negotiationFinished(self) -> None:
        if self._refused or self.transport is None:
            return
        log.info("{peer}: WebSocket opened at /ws", peer=describe_peer(self.transport.getPeer()))
        self.text.makeConnection(self.transport)

    def textMessageReceived(self, message: str) -> None:
        self.line_received(message.encode("utf-8"))

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        data = bytes(data)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            self._answer(errors.BAD_ENCODING)
            return
        self.line_received(data)

    def pongReceived(self, payload: bytes) -> None:
        """The server sends no pings; an unsolicited pong means nothing."""

    def connectionLost(self, reason: Failure) -> None:
        if self.transport is not None:
            self.transport.closed = True
        if self.text.transport is not None:
            self.text.connectionLost(reason)

    # the bytes of the stream, and the lines they carry
    def bytes_received(self, data: bytes) -> None:
        """The TCP stream, before Twisted parses it: stop a message that is too long at its header."""
        if self._stopped or self._deliver is None:
            return
        cut = self._guard.feed(data)
        if cut is None:
            self._deliver(data)
            return
        self._stopped = True
        if cut:
            self._deliver(data[:cut])
        self._too_long()

    def line_received(self, line: bytes) -> None:
        """One message is one request line: no line breaks inside, at most --max-line bytes."""
        if len(line) > self.max_line:  # the guard has refused it already; kept for other callers
            self._too_long()
        elif LF in line:
            self._answer(errors.BAD_ARGUMENTS)
        else:
            self.text.dataReceived(line + b"\n")

    def _answer(self, name: str) -> None:
        """An error about the message itself, in order with the text protocol's replies."""
        if self.transport is None or self.transport.closed:
            return
        log.info("{peer}: ERROR {name}", peer=describe_peer(self.transport.getPeer()), name=name)
        self.transport.write(encode_text_reply(error(name)))

    def _too_long(self) -> None:
        if self.transport is None or self.transport.closed:
            return
        self._answer(errors.LINE_TOO_LONG)
        log.info(
            "{peer}: closing: WebSocket message longer than --max-line ({limit} bytes)",
            peer=describe_peer(self.transport.getPeer()),
            limit=self.max_line,
        )
        self.transport.unregisterProducer()
        self.transport.loseConnection(MESSAGE_TOO_BIG)


class TextWebSocketResource(WebSocketResource):
    """``/ws``: the Origin check, then Twisted's WebSocket handshake, then a ``WebSocketBridge``.

    Browsers send ``Origin`` with every WebSocket handshake; a page from another site could
    otherwise chat as whoever opened it.  By default only the page's own origin (scheme and
    the ``Host`` the browser asked for) is accepted; ``allowed`` adds origins, ``*`` any.
    Clients that send no Origin (not browsers) are accepted, as on the TCP listeners.
    """

    def __init__(
        self, server: Server, allowed: Sequence[str] = (), protocol: Callable[[Server], Protocol] = TextProtocol
    ) -> None:
        super().__init__(self)
        #: not ``server``: twisted.web sets that attribute on resources
        self.tiny = server
        self.any_origin = "*" in allowed
        self.allowed = {origin for origin in map(origin_of, allowed) if origin is not None}
        self.protocol = protocol

    def buildProtocol(self, request: Request) -> WebSocketBridge:
        return WebSocketBridge(self.tiny, request, self.protocol)

    def origin_allowed(self, request: Request) -> bool:
        origin = request.getHeader("origin")
        if origin is None or self.any_origin:
            return True
        claimed = origin_of(origin)
        if claimed is None:
            return False
        if claimed in self.allowed:
            return True
        host = request.getHeader("host")
        scheme = "https" if request.isSecure() else "http"
        return host is not None and claimed == origin_of(f"{scheme}://{host}")

    def render_GET(self, request: Request) -> bytes | int:
        if not self.origin_allowed(request):
            log.info(
                "{peer}: refused WebSocket from origin {origin!r} (--web-origin)",
                peer=describe_peer(request.getClientAddress()),
                origin=request.getHeader("origin"),
            )
            request.setResponseCode(403)
            request.setHeader("content-type", "text/plain; charset=utf-8")
            return b"origin not allowed; see twistd tinytcp --web-origin\n"
        return super().render_GET(request)
