"""Shared state of a running tinytcp: settings, the command core, and the open connections.

Both protocols register here, so that shutdown can say goodbye to every client and the
logs can say who connected, for how long and with how many requests.  ``Connection`` holds
what the two protocols share: the connection limit, the idle timeout, backpressure, and the
shutdown drain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IHandshakeListener, INegotiated, IReactorTime
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from tinytcp import __version__
from tinytcp.auth.network import is_local
from tinytcp.protocol import errors
from tinytcp.protocol.core import BYE, Code, Core, Reply, Session, error, no_push

if TYPE_CHECKING:
    from tinytcp.server.tls import ClientCertificates

log = Logger(namespace="tinytcp")

DEFAULT_BANNER = f"tinytcp {__version__} ready; type HELP"

#: sent after ERROR DENIED to a client that protected mode turns away
PROTECTED_HINT = (
    b"protected mode: this server serves only clients on its own machine because it does not require login;"
    b" its operator can add --require-login (accounts, over TLS) or, on a trusted network, --no-protected-mode"
)

#: --max-pending never goes below --max-frame plus this, so one large reply never looks slow
REPLY_ROOM = 64 * 1024

#: on shutdown, a client counts as done sending once it has been quiet this long (seconds)
QUIET = 0.01


@dataclass
class Settings:
    """Every tunable of the service, with the defaults ``twistd tinytcp --help`` shows."""

    banner: str = DEFAULT_BANNER
    max_line: int = 64 * 1024
    max_frame: int = 1024 * 1024
    max_connections: int = 10_000
    max_pending: int = 4 * 1024 * 1024
    idle_timeout: float = 300.0
    shutdown_grace: float = 5.0
    verbose: bool = False
    #: PEM file of the CAs whose client certificates TLS listeners accept (mutual TLS)
    client_ca: str | None = None
    #: TLS listeners refuse clients without such a certificate (needs client_ca)
    require_client_cert: bool = False
    #: the SQLite file of accounts; None (and no --auth checker): no REGISTER, LOGIN, LOGOUT
    accounts: str | None = None
    require_login: bool = False
    allow_register: bool = True
    #: LOGIN and REGISTER over plain TCP from other machines, passwords in clear
    allow_plaintext_login: bool = False
    #: without require_login, only clients on this machine are served (Redis' protected mode)
    protected_mode: bool = True
    bcrypt_rounds: int = 12
    #: failed LOGINs per user name, and per peer address, within login_window seconds
    login_failures: int = 5
    peer_login_failures: int = 20
    login_window: float = 300.0


def describe_peer(address: IAddress) -> str:
    """A short printable form of a peer address for the logs."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    return f"unix:{name.decode(errors='replace') if isinstance(name, bytes) else name or '?'}"


class Server:
    """One per running service; protocols reach it through their factory."""

    def __init__(self, settings: Settings, core: Core | None = None, reactor: IReactorTime | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor  # type: ignore[assignment]
        self.settings = settings
        self.core = core or Core()
        self.reactor: IReactorTime = reactor  # type: ignore[assignment]
        #: the reactor's clock, for the idle timeout
        self.seconds = reactor.seconds
        self.connections: set[Connection] = set()
        self.max_pending = max(settings.max_pending, settings.max_frame + REPLY_ROOM)
        self.stopping = False
        self._drained: list[defer.Deferred[None]] = []
        self.client_certificates: ClientCertificates | None = None
        if settings.client_ca is not None:
            from tinytcp.server.tls import ClientCertificates

            self.client_certificates = ClientCertificates(settings.client_ca, settings.require_client_cert)

    def add(self, connection: Connection) -> None:
        self.connections.add(connection)

    def remove(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if not self.connections and self._drained:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    def shutdown(self) -> defer.Deferred[None]:
        """Answer what every client already sent, say BYE, and fire once all are closed.

        Connections still open after ``shutdown_grace`` seconds are aborted.
        """
        self.stopping = True
        for connection in list(self.connections):
            connection.finish()
        if not self.connections:
            return defer.succeed(None)
        drained: defer.Deferred[None] = defer.Deferred()
        self._drained.append(drained)
        timer = self.reactor.callLater(self.settings.shutdown_grace, self._abort_all)

        def stop_timer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        drained.addBoth(stop_timer)
        return drained

    def _abort_all(self) -> None:
        for connection in list(self.connections):
            log.warn("{peer}: closing: still open after the shutdown grace, aborting", peer=connection.peer)
            connection.transport.abortConnection()


@implementer(IHandshakeListener)
class Connection(TimeoutMixin):
    """What the text and binary protocols share: registry, limits, backpressure, logs.

    It is the transport's streaming producer: when the transport's write buffer passes its
    high-water mark, Twisted calls ``pauseProducing`` and the server stops reading from this
    client until the buffer drains, so a client that never reads cannot grow server memory.
    """

    mode = "?"
    server: Server
    transport: Any
    #: turns a Reply into this mode's bytes
    encode: Callable[[Reply], bytes]
    peer = "?"
    opened = 0.0
    #: no more requests are read or answered (QUIT, an error that closes, shutdown, lost)
    closing = False
    refused = False
    finishing = False
    _active = False
    #: ``Server.seconds()`` when the client last sent something or read replies that waited
    last_active = 0.0
    #: the transport's buffer is past its high-water mark; pushes since then are counted
    _writes_paused = False
    _unread_pushes = 0
    _abort_call: Any = None

    def open_connection(self) -> bool:
        """Register a new connection, or refuse it with BUSY; True when it is served."""
        self.session = Session(self.mode, self.encode, self.push)
        self.session.address = self.transport.getPeer()
        self.session.tls = INegotiated.providedBy(self.transport)
        self.peer = describe_peer(self.session.address)
        self.opened = time.monotonic()
        server = self.server
        if len(server.connections) >= server.settings.max_connections or server.stopping:
            self.closing = self.refused = True
            self.transport.write(self.encode(error(errors.BUSY)))
            log.info(
                "{peer}: closing: refused, {count} connections open (--max-connections)",
                peer=self.peer,
                count=len(server.connections),
            )
            self.transport.loseConnection()
            return False
        if server.settings.protected_mode and not server.settings.require_login and not is_local(self.session.address):
            self.closing = self.refused = True
            self.transport.write(self.encode(Reply(Code.ERROR, b"DENIED " + PROTECTED_HINT)))
            log.info("{peer}: closing: not a local client, and login is not required (protected mode)", peer=self.peer)
            self.transport.loseConnection()
            return False
        server.add(self)
        server.core.room.join(self.session)
        self.callLater = server.reactor.callLater
        self.last_active = server.seconds()
        self.setTimeout(server.settings.idle_timeout or None)
        # over TLS, the TLS layer pauses its producer while it holds what was written before
        # the handshake (the WELCOME line): pausing would stop reading the handshake itself
        if not INegotiated.providedBy(self.transport):
            self.transport.registerProducer(self, True)
        elif server.client_certificates is not None:
            server.client_certificates.ask(self.transport)
        log.info("{peer} connected ({mode})", peer=self.peer, mode=self.mode)
        return True

    def handshakeCompleted(self) -> None:
        """TLS only: the handshake is done, so backpressure can begin (see open_connection)."""
        if not self.closing:
            self.transport.registerProducer(self, True)

    def close_connection(self, reason: Failure) -> None:
        self.closing = True
        self.setTimeout(None)
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        if self.refused:
            return
        self.server.core.room.leave(self.session)
        # the session points back at this protocol (push): break the cycle so that
        # refcounting, not an occasional full GC, frees a closed connection at once
        self.session.push = no_push
        self.server.remove(self)
        log.info(
            "{peer} disconnected after {duration:.3f}s, {requests} requests ({why})",
            peer=self.peer,
            duration=time.monotonic() - self.opened,
            requests=self.session.requests,
            why=reason.getErrorMessage(),
        )

    def activity(self) -> None:
        """The client sent something: restart the idle clock.

        Only a timestamp: moving the timer on every read costs more than the rest of a
        one-request read; timeoutConnection moves it when it fires.
        """
        self._active = True
        self.last_active = self.server.seconds()

    def send(self, data: bytes) -> None:
        """Write replies and pushes; on tinytcp's TCP listeners the transport sends them at once
        when nothing is queued (tinytcp/transport.py)."""
        self.transport.write(data)

    def send_error(self, name: str) -> None:
        self.transport.write(self.encode(error(name)))

    def hang_up(self, why: str) -> None:
        """Close the connection on the server's own initiative, after flushing what is queued."""
        self.closing = True
        # out of the room now, not when the last bytes drain: a closing client gets no more
        # messages, so SAY must not count it and the others should see it leave
        self.server.core.room.leave(self.session)
        log.info("{peer}: closing: {why}", peer=self.peer, why=why)
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def timeoutConnection(self) -> None:
        if self.closing:
            return
        limit = self.server.settings.idle_timeout
        idle = self.server.seconds() - self.last_active
        if idle < limit:
            # active since the timer was set: wait for the rest of the period from then
            self.setTimeout(limit - idle)
        else:
            self.send_error(errors.IDLE_TIMEOUT)
            self.hang_up(f"idle for {self.server.settings.idle_timeout:g}s (--idle-timeout)")

    def push(self, data: bytes) -> None:
        """Send a message the client did not ask for (chat); a client that lets more than
        --max-pending bytes of them pile up unread is a slow consumer and is disconnected."""
        if self.closing:
            return
        if self._writes_paused:
            self._unread_pushes += len(data)
            if self._unread_pushes > self.server.max_pending:
                self.send_error(errors.SLOW_CONSUMER)
                self.hang_up(f"over {self.server.max_pending} bytes of pushed messages unread (--max-pending)")
                self._abort_call = self.server.reactor.callLater(
                    self.server.settings.shutdown_grace, self.transport.abortConnection
                )
                return
        self.send(data)

    # IPushProducer, for the transport
    def pauseProducing(self) -> None:
        # the transport calls this on every write while its buffer is full: count from the first
        if not self._writes_paused:
            self._writes_paused = True
            self._unread_pushes = 0
        if not self.finishing:
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._writes_paused = False
        self.transport.resumeProducing()
        self.last_active = self.server.seconds()

    def stopProducing(self) -> None:
        """The transport is going away; connectionLost does the cleanup."""

    # shutdown
    def finish(self) -> None:
        """On shutdown: read and answer what the client has already sent, then say BYE.

        Reading goes on (backpressure off) until the client has sent nothing for ``QUIET``
        seconds, so requests already in the socket are answered and the close sends no RST
        over them.
        """
        if self.closing:
            return
        self.finishing = True
        self._active = False
        self.transport.resumeProducing()
        self.server.reactor.callLater(QUIET, self._finish_when_quiet)

    def _finish_when_quiet(self) -> None:
        if self.closing:
            return
        if self._active:
            self._active = False
            self.server.reactor.callLater(QUIET, self._finish_when_quiet)
            return
        self.say_goodbye()

    def say_goodbye(self) -> None:
        """Tell the client the server is stopping, and close."""
        if not self.closing:
            self.transport.write(self.encode(BYE))
            self.hang_up("server shutting down")
