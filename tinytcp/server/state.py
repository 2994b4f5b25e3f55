"""Shared state of a running tinytcp: settings, the command core, and the open connections.

Both protocols register here (tinytcp/server/connection.py), so that shutdown can say
goodbye to every client and the logs can say who connected, for how long and with how many
requests.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.logger import Logger

from tinytcp import __version__
from tinytcp.ops import status
from tinytcp.protocol.core import Core

if TYPE_CHECKING:
    from tinytcp.server.tls import ClientCertificates


class Connection(Protocol):
    """What the server needs of a connection (tinytcp/server/connection.py has the class)."""

    peer: str
    transport: Any

    def finish(self) -> None: ...


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
    say_rate: float = 5.0
    say_burst: int = 10
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
    #: Redis URL of the chat room shared with other processes and machines (None: this process only)
    redis: str | None = None
    #: seconds a crashed node's nicks stay taken in the shared room
    redis_ttl: float = 30.0


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
        self.core.room.limit_rate(settings.say_rate, settings.say_burst, reactor.seconds)
        self.connections: set[Connection] = set()
        self.max_pending = max(settings.max_pending, settings.max_frame + REPLY_ROOM)
        self.stopping = False
        self._drained: list[defer.Deferred[None]] = []
        #: counters for INFO and /metrics (tinytcp.ops.status)
        self.stats = status.Stats()
        #: which worker of how many this process is (1 of 1 without --workers), for INFO
        self.worker = 1
        self.workers = 1
        self.core.status = functools.partial(status.info, self)
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
