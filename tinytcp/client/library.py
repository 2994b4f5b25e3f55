"""A Deferred-based tinytcp client for both wire formats.

One connection carries many requests at once: each request gets a Deferred, and replies
are matched to requests in the order they were sent, because the server answers in
order.  Whatever the server sends on its own -- chat messages (MSG), the BYE it says
when it shuts down -- goes to an ``on_message`` callback and never fills a request's
slot, so one pushed message cannot shift every later reply onto the wrong request.

The codecs are the server's own (:mod:`tinytcp.protocol.wire`, :mod:`tinytcp.protocol.framing`), so client
and server cannot drift apart.  The command line lives in :mod:`tinytcp.client.cli`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

from twisted.internet import defer, error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IHandshakeListener,
    INegotiated,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import ClientCreator, Factory, Protocol, connectionDone
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from tinytcp.client.tls import TLSSettings, tls_problem
from tinytcp.protocol.core import COMMANDS, Command, Core
from tinytcp.protocol.framing import FrameSplitter
from tinytcp.protocol.reply import Code, Reply
from tinytcp.protocol.wire import (
    CRLF,
    TEXT_PREFIX,
    encode_frame,
    encode_text_reply,
    parse_text_reply,
    parse_text_request,
)

MessageCallback = Callable[[Reply], object]
CloseCallback = Callable[[Failure], object]

MODES = ("text", "binary")

#: the core's commands by word; the account commands join on the first word not found here
_by_name: dict[bytes, Command] = Core(commands=COMMANDS).by_name
_with_accounts = False


def commands_by_name() -> dict[bytes, Command]:
    """Command word (upper case, aliases included) -> command, as the server looks it up.

    With the account commands (REGISTER, LOGIN, LOGOUT), which servers without accounts
    answer with UNKNOWN_COMMAND.  Their module imports twisted.cred, so it is loaded only
    here, never for a run whose words are all the core's.
    """
    global _by_name, _with_accounts
    if not _with_accounts:
        from tinytcp.auth.commands import ACCOUNT_COMMANDS

        _by_name = Core(commands=COMMANDS + ACCOUNT_COMMANDS).by_name
        _with_accounts = True
    return _by_name


def command_named(word: bytes) -> Command | None:
    """The command ``word`` names (any case, aliases too), or None; see :func:`commands_by_name`."""
    word = word.upper()
    command = _by_name.get(word)
    if command is None and not _with_accounts:
        command = commands_by_name().get(word)
    return command


def __getattr__(name: str) -> Any:
    """``COMMANDS_BY_NAME``, the whole table, built on first use (PEP 562)."""
    if name == "COMMANDS_BY_NAME":
        return commands_by_name()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ClientError(Exception):
    """Base class of everything this client raises or errbacks with."""


class ConnectionClosed(ClientError):
    """The connection closed before the reply arrived (or before the request could be sent)."""

    def __init__(self, reason: Failure | None = None) -> None:
        why = reason.getErrorMessage() if reason is not None else "not connected"
        #: one sentence when TLS closed it (an untrusted certificate, say); None otherwise
        self.tls_problem = tls_problem(reason)
        super().__init__(self.tls_problem or f"connection closed: {why}")
        self.reason = reason


class ConnectTimeout(ClientError):
    """Connecting (and, in text mode, getting the WELCOME line) took longer than the timeout."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"no answer within {timeout:g} s")
        self.timeout = timeout


class ReplyTimeout(ClientError):
    """The server sent no reply for ``timeout`` seconds while one was due; the client hung up."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"no reply within {timeout:g} s")
        self.timeout = timeout


class ProtocolError(ClientError):
    """The peer does not speak tinytcp (a text server must start with a WELCOME line)."""


class Refused(ClientError):
    """The server turned the connection away with an ERROR line instead of WELCOME (such as BUSY)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"the server said {reply_line(reply)}")
        self.reply = reply


class RequestError(ClientError, ValueError):
    """The request cannot be sent as given; nothing was sent."""


class UnknownCommand(RequestError):
    """Binary mode: the command word has no binary code, so there is no frame to send."""

    def __init__(self, word: str) -> None:
        super().__init__(f"unknown command {word!r} (no binary code)")
        self.word = word


def request_bytes(line: str | bytes) -> bytes:
    """A request line as bytes without its line ending; refuse text that would be two requests."""
    raw = line.encode("utf-8") if isinstance(line, str) else line
    if raw.endswith(b"\n"):
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    if b"\n" in raw:
        raise RequestError("a request is one line; this one contains a line break")
    return raw


def frame_for(line: str | bytes) -> tuple[int, bytes]:
    """The binary frame ``(code, payload)`` for a command typed as in text mode (``ECHO hi``).

    The word is looked up like the server does (any case, aliases too); the argument
    bytes are the payload, empty when there is none.
    """
    request = parse_text_request(request_bytes(line))
    if request is None:
        raise RequestError("blank request: the server would not answer it")
    command = command_named(request.word)
    if command is None:
        raise UnknownCommand(request.word.decode("utf-8", "backslashreplace"))
    return command.code, request.argument or b""


def reply_line(reply: Reply) -> str:
    """A reply or pushed message as the one line text mode shows, whatever mode it came in.

    Payloads may be any bytes (binary ECHO), so undecodable bytes are shown as escapes.
    """
    if reply.code in TEXT_PREFIX:
        raw = encode_text_reply(reply)[: -len(CRLF)]
    elif reply.code == 0:
        raw = reply.payload  # a text line whose word this client does not know, kept whole
    else:
        raw = b"FRAME %d " % reply.code + reply.payload
    return raw.decode("utf-8", "backslashreplace")


class _Waiting:
    """One request awaiting its reply: the code a reply must carry (None: any) and its Deferred."""

    __slots__ = ("expected", "deferred")

    def __init__(self, expected: int | None) -> None:
        self.expected = expected
        self.deferred: defer.Deferred[Reply] = defer.Deferred()

    def accepts(self, reply: Reply) -> bool:
        """A reply carries its command's code, or ERROR; anything else was not sent for this request."""
        return self.expected is None or reply.code in (self.expected, Code.ERROR)


@implementer(IHandshakeListener)
class Client(Protocol):
    """What both modes share: the queue of requests awaiting replies, timeouts and hooks.

    ``on_message(reply)`` gets every message that is not a reply: code MSG, and anything
    that arrives while no request is waiting or that does not carry the waiting request's
    code (such as the BYE the server says when it shuts down).  ``on_close(reason)`` is
    called once when the connection is gone, after every waiting request has failed with
    :class:`ConnectionClosed`.  With a ``timeout``, a server that owes a reply and sends
    nothing for that long is taken as stuck: the oldest request fails with
    :class:`ReplyTimeout` and the connection is dropped.
    """

    mode: ClassVar[str] = "?"
    transport: Any
    #: text mode: the banner from the server's WELCOME line; None in binary mode
    banner: str | None = None

    def __init__(
        self,
        on_message: MessageCallback | None = None,
        on_close: CloseCallback | None = None,
        timeout: float | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self.on_message = on_message
        self.on_close = on_close
        self.timeout = timeout
        self._clock = clock
        self._waiting: deque[_Waiting] = deque()
        self._timer: Any = None
        self._closed_waiters: list[defer.Deferred[None]] = []
        #: why the connection closed; None while it is open (or not yet made)
        self.close_reason: Failure | None = None
        # fires with this client once it can be used (text mode: after WELCOME); connect() waits on it
        self._ready: defer.Deferred[Client] = defer.Deferred(self._cancel_ready)

    @property
    def pending(self) -> int:
        """How many requests still wait for their reply."""
        return len(self._waiting)

    @property
    def is_open(self) -> bool:
        """Whether the connection is up, so requests can still be answered."""
        return self.transport is not None and self.close_reason is None

    def request(self, line: str | bytes) -> defer.Deferred[Reply]:
        """Send one command line (``"ECHO hi"``, ``"TIME"``); the Deferred fires with its Reply.

        Fails with :class:`RequestError` (nothing sent) for a blank or multi-line request,
        or, in binary mode, a word with no binary code.
        """
        raise NotImplementedError

    def quit(self) -> defer.Deferred[Reply]:
        """Ask the server to say BYE and close; fires with the BYE reply."""
        return self.request("QUIT")

    def close(self) -> defer.Deferred[None]:
        """Hang up without QUIT; requests still waiting fail with ConnectionClosed."""
        if self.is_open:
            self.transport.loseConnection()
        return self.when_closed()

    def when_closed(self) -> defer.Deferred[None]:
        """A Deferred that fires once the connection is gone (at once if it already is); cancellable."""
        if self.close_reason is not None:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred(self._closed_waiters.remove)
        self._closed_waiters.append(waiter)
        return waiter

    def _send(self, data: bytes, expected: int | None) -> defer.Deferred[Reply]:
        if not self.is_open:
            return defer.fail(ConnectionClosed(self.close_reason))
        waiting = _Waiting(expected)
        self._waiting.append(waiting)
        if len(self._waiting) == 1:
            self._start_timer()
        self.transport.write(data)
        return waiting.deferred

    def _received(self, reply: Reply) -> None:
        """Hand a decoded message to the request it answers, or to on_message."""
        if reply.code == Code.MSG or not self._waiting or not self._waiting[0].accepts(reply):
            if self.on_message is not None:
                self.on_message(reply)
            return
        waiting = self._waiting.popleft()
        self._stop_timer()
        if self._waiting:
            self._start_timer()
        if not waiting.deferred.called:  # a cancelled request still owns its reply: drop it
            waiting.deferred.callback(reply)

    def _start_timer(self) -> None:
        if self.timeout is not None:
            self._timer = self._reactor().callLater(self.timeout, self._timed_out)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        assert self.timeout is not None
        oldest = self._waiting[0].deferred
        if not oldest.called:
            oldest.errback(ReplyTimeout(self.timeout))
        self.transport.abortConnection()

    def _reactor(self) -> IReactorTime:
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor
        return self._clock

    def _cancel_ready(self, ready: defer.Deferred[Client]) -> None:
        if self.is_open:
            self.transport.abortConnection()

    def handshakeCompleted(self) -> None:
        """Over TLS: the handshake is done (text mode still waits for WELCOME)."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.close_reason = reason
        self._stop_timer()
        waiting, self._waiting = self._waiting, deque()
        for request in waiting:
            if not request.deferred.called:
                request.deferred.errback(ConnectionClosed(reason))
        if not self._ready.called:
            self._ready.errback(ConnectionClosed(reason))
        if self.on_close is not None:
            self.on_close(reason)
        waiters, self._closed_waiters = self._closed_waiters, []
        for waiter in waiters:
            waiter.callback(None)


class TextClient(Client, LineOnlyReceiver):
    """Text mode: consumes the WELCOME line, then one reply line per request line."""

    mode = "text"
    delimiter = b"\n"
    #: longest line accepted from the server before hanging up
    MAX_LENGTH = 16 * 1024 * 1024

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not self._ready.called:
            self._welcome(line)
            return
        self._received(parse_text_reply(line))

    def _welcome(self, line: bytes) -> None:
        word, _, banner = line.partition(b" ")
        if word == b"ERROR":
            self._ready.errback(Refused(parse_text_reply(line)))
            self.transport.loseConnection()
            return
        if word != b"WELCOME":
            shown = line[:80].decode("utf-8", "backslashreplace")
            self._ready.errback(ProtocolError(f"not a tinytcp text server: it said {shown!r}, not WELCOME"))
            self.transport.loseConnection()
            return
        self.banner = banner.decode("utf-8", "backslashreplace")
        self._ready.callback(self)

    def request(self, line: str | bytes) -> defer.Deferred[Reply]:
        try:
            raw = request_bytes(line)
        except RequestError:
            return defer.fail()
        request = parse_text_request(raw)
        if request is None:
            return defer.fail(RequestError("blank request: the server would not answer it"))
        command = command_named(request.word)
        return self._send(raw + CRLF, command.code if command is not None else None)


class BinaryClient(Client):
    """Binary mode: one frame per request; text-style command lines are turned into frames."""

    mode = "binary"
    #: longest payload accepted from the server before hanging up
    max_frame = 16 * 1024 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        Client.__init__(self, *args, **kwargs)
        self.frames = FrameSplitter(self.max_frame)
        self.closing = False

    def connectionMade(self) -> None:
        # over TLS, ready once the handshake is done, so a certificate problem fails connect()
        if not INegotiated.providedBy(self.transport):
            self._ready.callback(self)

    def handshakeCompleted(self) -> None:
        if not self._ready.called:
            self._ready.callback(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closing = True
        self.frames = FrameSplitter(self.max_frame)
        Client.connectionLost(self, reason)

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        for code, payload in self.frames.frames(data):
            self._received(Reply(code, payload))
            if self.closing:
                return
        if self.frames.too_large is not None:
            self.closing = True
            self.transport.loseConnection()

    def request(self, line: str | bytes) -> defer.Deferred[Reply]:
        try:
            code, payload = frame_for(line)
        except RequestError:
            return defer.fail()
        return self.request_frame(code, payload)

    def request_frame(self, code: int, payload: bytes) -> defer.Deferred[Reply]:
        """Send frame ``(code, payload)`` as it is; the Deferred fires with the reply frame."""
        return self._send(encode_frame(code, payload), code)


PROTOCOLS: dict[str, type[Client]] = {"text": TextClient, "binary": BinaryClient}


def is_ip_address(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address (no name to resolve)."""
    return isIPAddress(host) or isIPv6Address(host)


@implementer(IStreamClientEndpoint)
class TCPAddressEndpoint:
    """Plain TCP to an IP address, with ``reactor.connectTCP`` alone (tinytcp-client's default).

    What ``HostnameEndpoint`` does for a host that is already an address, without its
    name resolution in a thread and without importing ``twisted.internet.endpoints``,
    which imports pyOpenSSL whenever it is installed: a one-shot plain TCP command
    starts faster.  Like ``ClientCreator``, which it uses, it fires on the reactor turn
    after the connection is made, so a connection lost in between reaches the protocol
    first: fine for tinytcp's clients, whose ``connect()`` waits on their own readiness,
    but not under ``wrapClientTLS``, whose wrapper has let go of the protocol by then.
    TLS goes over ``HostnameEndpoint``.
    """

    def __init__(self, reactor: Any, host: str, port: int, timeout: float = 30) -> None:
        if not is_ip_address(host):
            raise ValueError(f"not an IP address: {host!r}")
        self._reactor = reactor
        self._host = host
        self._port = port
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"<TCPAddressEndpoint {self._host}:{self._port}>"

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[Any]:
        """Fires with the connected protocol; cancelling it stops the attempt."""
        kind = IPv6Address if isIPv6Address(self._host) else IPv4Address
        peer = kind("TCP", self._host, self._port)
        creator = ClientCreator(self._reactor, protocolFactory.buildProtocol, peer)
        return creator.connectTCP(self._host, self._port, timeout=self._timeout)


def connect(
    endpoint: IStreamClientEndpoint | str,
    mode: str = "text",
    *,
    on_message: MessageCallback | None = None,
    on_close: CloseCallback | None = None,
    timeout: float | None = None,
    tls: TLSSettings | None = None,
    reactor: Any = None,
) -> defer.Deferred[Client]:
    """Connect in ``mode`` ("text" or "binary"); fires with a ready :class:`Client`.

    ``endpoint`` is an endpoint or a client endpoint description such as
    ``"tcp:127.0.0.1:40000"``, ``"unix:/run/tinytcp.sock"`` or Twisted's
    ``"tls:HOST:PORT:trustRoots=FOLDER"``.  ``tls`` wraps it in TLS (see
    :class:`TLSSettings`); a handshake or certificate problem fails with
    :class:`ConnectionClosed` whose ``tls_problem`` says what went wrong.  ``timeout``
    bounds connecting (text mode: until WELCOME, which is then in ``client.banner``; over
    TLS: until the handshake) and then every reply; it fails with :class:`ConnectTimeout`
    or :class:`ReplyTimeout`.  Bad TLS files raise ``TLSConfigError`` at once.
    """
    if mode not in PROTOCOLS:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if reactor is None:
        from twisted.internet import reactor
    where = endpoint
    if isinstance(where, str) or tls is not None:
        from twisted.internet import endpoints  # imports pyOpenSSL when installed: only when needed

        if isinstance(where, str):
            where = endpoints.clientFromString(reactor, where)
        if tls is not None:
            where = endpoints.wrapClientTLS(tls.creator(), where)
    factory = Factory.forProtocol(
        partial(PROTOCOLS[mode], on_message=on_message, on_close=on_close, timeout=timeout, clock=reactor)
    )
    factory.noisy = False
    connecting: defer.Deferred[Any] = where.connect(factory)
    connecting.addCallback(lambda client: client._ready)
    if timeout is not None:
        connecting.addTimeout(timeout, reactor, onTimeoutCancel=lambda result, after: Failure(ConnectTimeout(after)))
        connecting.addErrback(_connect_timed_out, timeout)
    return connecting


def _connect_timed_out(failure: Failure, timeout: float) -> Failure:
    """The connector's own timeout (the same bound, which may fire first) is a ConnectTimeout too."""
    if failure.check(error.TimeoutError):
        return Failure(ConnectTimeout(timeout))
    return failure
